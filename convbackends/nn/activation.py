"""Element-wise layers, as ``torch.nn``'s: ReLU, Tanh, Dropout and Identity (NumPy
expressions)."""

import numpy as np

from ..errors import ShapeError
from .module import _Elementwise, _non_defaults

__all__ = ["ReLU", "Tanh", "Dropout", "Identity"]


class ReLU(_Elementwise):
    """``max(x, 0)``, as ``torch.nn.ReLU``; ``inplace`` is accepted for PyTorch code, but
    the input is never modified."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        y = np.maximum(x, 0)
        if self.training:
            self._keep(y, ~(y <= 0))    # NaN passes its gradient on, as in PyTorch
        return y

    def _backward(self, grad_output):
        grad, (positive,) = self._take(grad_output)
        return np.where(positive, grad, grad.dtype.type(0))

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Tanh(_Elementwise):
    """``tanh(x)``, as ``torch.nn.Tanh``."""

    def forward(self, x):
        y = np.tanh(x)
        self._keep(y, y)
        return y

    def _backward(self, grad_output):
        """``g * (1 - y**2)``, from the output."""
        grad, (y,) = self._take(grad_output)
        return grad * (1 - np.square(y))


class Dropout(_Elementwise):
    """Zero each element with probability ``p`` in training, as ``torch.nn.Dropout``.

    Kept elements are scaled by ``1 / (1 - p)``, so evaluation mode is the identity. The
    zeros are drawn from the layer's own generator.

    Parameters
    ----------
    p : float in [0, 1]. Default: 0.5
    inplace : bool
        Accepted for PyTorch code; the input is never modified. Default: False
    rng : numpy.random.Generator or seed, optional
    """

    def __init__(self, p=0.5, inplace=False, *, rng=None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ShapeError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, inplace
        self._rng = np.random.default_rng(rng)

    def forward(self, x):
        x = np.asarray(x)
        if not self.training or self.p == 0:
            self._keep(x, None)
            return x
        if self.p == 1:
            y = np.zeros_like(x)
            self._keep(y, False)
            return y
        keep = self._rng.random(x.shape) >= self.p
        y = np.where(keep, x * x.dtype.type(1 / (1 - self.p)), x.dtype.type(0))
        self._keep(y, keep)
        return y

    def _backward(self, grad_output):
        """The same mask as the forward's: ``g / (1 - p)`` where the element was kept,
        zero where it was dropped."""
        grad, (keep,) = self._take(grad_output)
        if keep is None:        # p = 0: the identity
            return grad
        if keep is False:       # p = 1: everything dropped
            return np.zeros_like(grad)
        return np.where(keep, grad * grad.dtype.type(1 / (1 - self.p)), grad.dtype.type(0))

    def extra_repr(self):
        return _non_defaults(self, (("p", 0.5), ("inplace", False))).lstrip(", ")


class Identity(_Elementwise):
    """The input itself, as ``torch.nn.Identity`` (constructor arguments are ignored); what
    :func:`convbackends.nn.fuse` leaves where a folded BatchNorm or ReLU was."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        self._keep(x)
        return x

    def _backward(self, grad_output):
        grad, _ = self._take(grad_output)
        return grad
