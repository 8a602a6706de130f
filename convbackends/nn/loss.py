"""Losses, as ``torch.nn``'s: CrossEntropyLoss and MSELoss.

``loss = criterion(logits, target)`` returns a float (an array with
``reduction="none"``), and ``criterion.backward()`` the gradient of the logits, in their
dtype, ready for ``model.backward``. Values and gradients are computed in float64.
"""

import numpy as np

from ..errors import DTypeError, ShapeError
from .module import Module, _non_defaults, _tape

__all__ = ["CrossEntropyLoss", "MSELoss"]

_REDUCTIONS = ("none", "mean", "sum")


class _Loss(Module):
    """Shared by the losses: ``reduction``, and a backward whose ``grad_output`` defaults to
    1 (the gradient of the loss itself)."""

    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ShapeError(f"{reduction!r} is not a valid value for reduction; expected "
                             f"one of {list(_REDUCTIONS)}")
        self.reduction = reduction

    def backward(self, grad_output=None):
        """The gradient of the last call's input (the logits), in their dtype.

        ``grad_output`` is the gradient of the loss: 1 by default. With
        ``reduction="none"`` it is one value per loss element (default: all ones, the
        gradient of their sum). Each call serves one backward.
        """
        return super().backward(grad_output)

    def _keep(self, output, *saved):
        # A loss keeps its last call in either mode: what it keeps is small, and a loss is
        # rarely switched to evaluation along with the model.
        self._push(np.asarray(output, self._dtype), saved)

    def _take(self, grad_output):
        tape = _tape(self)
        if tape and grad_output is None:
            grad_output = np.ones(tape[-1][0][0])
        grad, saved = super()._take(grad_output)
        return grad.astype(np.float64), saved

    def _reduce(self, losses, denominator):
        """The per-element ``losses`` reduced: the loss value, a float (or an array in the
        input's dtype for ``"none"``)."""
        if self.reduction == "none":
            return losses.astype(self._dtype)
        total = losses.sum()
        return float(total / denominator if self.reduction == "mean" else total)

    def _scale(self, grad, denominator):
        """The factor on each element's gradient: ``grad_output``, per element or over the
        mean's denominator."""
        if self.reduction == "none":
            return grad
        return grad / denominator if self.reduction == "mean" else grad

    def extra_repr(self):
        return _non_defaults(self, (("reduction", "mean"),)).lstrip(", ")


def _float_input(name, x):
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise DTypeError(f"{name}: expected float32 or float64 input, got {x.dtype}")
    return x


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits against class indices (or class probabilities), as
    ``torch.nn.CrossEntropyLoss``.

    Input ``(N, C)``, ``(N, C, d1, ...)`` or ``(C,)``, the classes along dim 1 (dim 0 for
    1-D input). Target: int class indices of the input's shape without the class dim (as
    PyTorch's), or float probabilities of the input's shape.

    Parameters
    ----------
    weight : array_like (C,), optional
        Per-class weight. For class indices the ``"mean"`` divides by the summed weights of
        the targets, as PyTorch's. Default: None (all ones)
    ignore_index : int
        Targets of this class add nothing and count nothing (class indices only).
        Default: -100
    reduction : {"mean", "sum", "none"}. Default: "mean"
    label_smoothing : float in [0, 1]
        Mix the target with the uniform distribution: ``(1 - e) * target + e / C``.
        Default: 0.0
    """

    def __init__(self, weight=None, *, ignore_index=-100, reduction="mean",
                 label_smoothing=0.0):
        super().__init__(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ShapeError(f"label_smoothing must be between 0.0 and 1.0. Got: "
                             f"{label_smoothing}")
        self.weight = None if weight is None else np.asarray(weight, np.float64)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input, target):
        x = _float_input("cross_entropy", input)
        if x.ndim == 0:
            raise ShapeError("cross_entropy: expected input (N, C, ...) or (C,), got a "
                             "0-D input")
        class_dim = 1 if x.ndim >= 2 else 0
        classes = x.shape[class_dim]
        if self.weight is not None and self.weight.shape != (classes,):
            raise ShapeError(f"cross_entropy: weight has size {list(self.weight.shape)}, "
                             f"expected [{classes}] (one per class)")
        self._dtype = x.dtype
        z = np.moveaxis(x, class_dim, -1).reshape(-1, classes).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        weight = np.ones(classes) if self.weight is None else self.weight
        smoothing = self.label_smoothing
        target = np.asarray(target)
        if np.issubdtype(target.dtype, np.floating):
            if target.shape != x.shape:
                raise ShapeError(f"cross_entropy: probability targets need the input's size "
                                 f"{list(x.shape)}, got {list(target.shape)}")
            t = np.moveaxis(target, class_dim, -1).reshape(-1, classes).astype(np.float64)
            if smoothing:
                t = t * (1 - smoothing) + smoothing / classes
            weighted = t * weight                       # (M, C)
            losses = -(weighted * log_p).sum(axis=1)
            denominator = len(losses)
            coefficient, picked = weighted.sum(axis=1), weighted
        else:
            if not np.issubdtype(target.dtype, np.integer):
                raise DTypeError(f"cross_entropy: expected int class indices or float "
                                 f"probabilities as target, got {target.dtype}")
            expected = x.shape[:class_dim] + x.shape[class_dim + 1:]
            if target.shape != expected:
                raise ShapeError(f"cross_entropy: expected target size {list(expected)}, "
                                 f"got {list(target.shape)}")
            t = target.reshape(-1).astype(np.int64)
            valid = t != self.ignore_index
            bad = valid & ((t < 0) | (t >= classes))
            if bad.any():
                raise ShapeError(f"cross_entropy: Target {t[bad][0]} is out of bounds "
                                 f"(classes 0..{classes - 1})")
            t = np.where(valid, t, 0)
            rows = np.arange(len(t))
            w_t = weight[t] * valid                     # each target's weight, 0 if ignored
            losses = -(1 - smoothing) * w_t * log_p[rows, t]
            # The gradient of row i is coefficient_i * p_i - picked_i.
            picked = np.zeros_like(log_p)
            picked[rows, t] = (1 - smoothing) * w_t
            coefficient = (1 - smoothing) * w_t
            if smoothing:
                spread = (smoothing / classes) * valid
                losses -= spread * (log_p @ weight)
                picked += spread[:, None] * weight
                coefficient = coefficient + spread * weight.sum()
            denominator = w_t.sum()
        out_shape = x.shape[:class_dim] + x.shape[class_dim + 1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = self._reduce(losses.reshape(out_shape), denominator)
        self._keep(loss, log_p, coefficient, picked, denominator, x.shape, class_dim)
        return loss

    def _backward(self, grad_output):
        grad, (log_p, coefficient, picked, denominator, shape, class_dim) = \
            self._take(grad_output)
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.reshape(self._scale(grad, denominator), -1)
        rows = np.exp(log_p)
        rows *= (coefficient * scale)[:, None]
        rows -= picked * scale[:, None]
        moved = shape[:class_dim] + shape[class_dim + 1:] + (shape[class_dim],)
        return np.moveaxis(rows.reshape(moved), -1, class_dim).astype(self._dtype)

    def extra_repr(self):
        return _non_defaults(self, (("ignore_index", -100), ("reduction", "mean"),
                                    ("label_smoothing", 0.0))).lstrip(", ")


class MSELoss(_Loss):
    """Mean squared error, as ``torch.nn.MSELoss``: ``(input - target)**2``, reduced.

    ``target`` broadcasts to the input's shape.

    Parameters
    ----------
    reduction : {"mean", "sum", "none"}. Default: "mean"
    """

    def __init__(self, *, reduction="mean"):
        super().__init__(reduction)

    def forward(self, input, target):
        x = _float_input("mse_loss", input)
        target = np.asarray(target)
        try:
            shape = np.broadcast_shapes(x.shape, target.shape)
        except ValueError:
            shape = None
        if shape != x.shape:
            raise ShapeError(f"mse_loss: target of size {list(target.shape)} does not "
                             f"broadcast to the input's size {list(x.shape)}")
        self._dtype = x.dtype
        diff = x.astype(np.float64) - target
        with np.errstate(invalid="ignore"):     # the mean of nothing is NaN, as PyTorch's
            loss = self._reduce(np.square(diff), diff.size)
        self._keep(loss, diff)
        return loss

    def _backward(self, grad_output):
        grad, (diff,) = self._take(grad_output)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (2 * diff * self._scale(grad, diff.size)).astype(self._dtype)
