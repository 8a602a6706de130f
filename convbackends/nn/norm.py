"""Normalisation layers, as ``torch.nn``'s: BatchNorm1d/2d/3d and LocalResponseNorm.

They are NumPy expressions (no backend computes them); statistics are summed in float64
so they stay exact to the input's precision on large activations.
"""

import numpy as np

from ..errors import ShapeError
from .module import Module, _Elementwise, _non_defaults, _repr_backend

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LocalResponseNorm"]


class _BatchNorm(Module):
    """Shared by BatchNorm1d/2d/3d: one channel per index of dim 1, statistics over every
    other dim; subclasses give ``_input_dims``, the input ranks they take."""

    _parameters = ("weight", "bias")
    _buffers = ("running_mean", "running_var", "num_batches_tracked")
    _input_dims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, bias=True, backend=None, dtype=np.float32,
                 rng=None):
        super().__init__(backend=backend)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = np.ones(num_features, dtype) if affine else None
        self.bias = np.zeros(num_features, dtype) if affine and bias else None
        self.running_mean = np.zeros(num_features, dtype) if track_running_stats else None
        self.running_var = np.ones(num_features, dtype) if track_running_stats else None
        self.num_batches_tracked = np.array(0, np.int64) if track_running_stats else None

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) not in self._input_dims:
            expected = " or ".join(f"{n}D" for n in self._input_dims)
            raise ShapeError(f"expected {expected} input (got {len(input_shape)}D input)")
        if input_shape[1] != self.num_features:
            raise ShapeError(f"{type(self).__name__}: expected input with "
                             f"{self.num_features} channels, got input of size "
                             f"{list(input_shape)}")
        return input_shape

    def _batch_statistics(self, x):
        """The batch's per-channel mean and biased variance (float64); in training with
        ``track_running_stats`` also updates the running statistics."""
        count = x.size // x.shape[1]
        if count <= 1:
            raise ShapeError(f"Expected more than 1 value per channel when training, got "
                             f"input size {list(x.shape)}")
        axes = (0,) + tuple(range(2, x.ndim))
        mean = x.mean(axis=axes, dtype=np.float64)
        centred = x - _per_channel(mean, x.ndim).astype(x.dtype)
        var = np.square(centred, dtype=np.float64).mean(axis=axes)
        if self.track_running_stats:
            self.num_batches_tracked += 1
            factor = (1.0 / self.num_batches_tracked if self.momentum is None
                      else self.momentum)
            self.running_mean *= 1 - factor
            self.running_mean += (factor * mean).astype(self.running_mean.dtype)
            self.running_var *= 1 - factor
            self.running_var += (factor * var * count / (count - 1)).astype(
                self.running_var.dtype)
        return mean, var

    def forward(self, x):
        """``(x - mean) / sqrt(var + eps) * weight + bias``, as one scale and one shift."""
        x = np.asarray(x)
        self.output_shape(x.shape)
        if self.training or not self.track_running_stats:
            mean, var = self._batch_statistics(x)
        else:
            mean, var = self.running_mean.astype(np.float64), self.running_var
        scale = 1.0 / np.sqrt(np.asarray(var, np.float64) + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean * scale + (0.0 if self.bias is None else self.bias)
        y = x * _per_channel(scale, x.ndim).astype(x.dtype)
        y += _per_channel(shift, x.ndim).astype(x.dtype)
        return y

    def extra_repr(self):
        s = f"{self.num_features}" + _non_defaults(self, (
            ("eps", 1e-5), ("momentum", 0.1), ("affine", True), ("track_running_stats", True)))
        if self.affine and self.bias is None:
            s += ", bias=False"
        return _repr_backend(s, self.backend)


def _per_channel(values, ndim):
    """``(C,)`` values shaped to broadcast along dim 1 of an ``ndim``-D input."""
    return values.reshape((-1,) + (1,) * (ndim - 2))


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over ``(N, C)`` or ``(N, C, L)``, as ``torch.nn.BatchNorm1d``;
    see :class:`BatchNorm2d`."""
    _input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over ``(N, C, H, W)``, as ``torch.nn.BatchNorm2d``.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel, the statistics taken
    over ``N, H, W``. In training mode ``mean`` and ``var`` are the batch's (biased
    variance) and, with ``track_running_stats``, update ``running_mean`` and
    ``running_var`` (unbiased batch variance) as
    ``running = (1 - momentum)*running + momentum*batch``; in evaluation mode the running
    statistics are used.

    Parameters
    ----------
    num_features : int
        ``C``.
    eps : float. Default: 1e-5
    momentum : float or None
        ``None`` takes the cumulative average (factor ``1 / num_batches_tracked``).
        Default: 0.1
    affine : bool
        Learnable ``weight`` (ones) and ``bias`` (zeros) of shape ``(C,)``. Default: True
    track_running_stats : bool
        Keep ``running_mean`` (zeros), ``running_var`` (ones) and ``num_batches_tracked``
        (int64, shape ``()``); without them both modes use batch statistics. Default: True
    bias : bool
        With ``affine``, whether there is a ``bias`` (PyTorch's keyword). Default: True
    backend, rng
        Accepted as on every layer with parameters; normalisation is a NumPy expression
        and its initialisation is deterministic.
    dtype : numpy dtype. Default: float32
    """

    _input_dims = (4,)


class BatchNorm3d(_BatchNorm):
    """Batch normalisation over ``(N, C, D, H, W)``, as ``torch.nn.BatchNorm3d``; see
    :class:`BatchNorm2d`."""
    _input_dims = (5,)


class LocalResponseNorm(_Elementwise):
    """Local response normalisation across channels, as ``torch.nn.LocalResponseNorm``.

    ``y[c] = x[c] / (k + alpha/size * sum(x[c']**2))**beta`` over the ``size`` channels
    ``c - size//2 <= c' <= c + (size - 1)//2`` (those outside ``0..C-1`` count as zero).
    Input ``(N, C, *)``.

    Parameters
    ----------
    size : int
    alpha : float. Default: 1e-4
    beta : float. Default: 0.75
    k : float. Default: 1.0
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim < 3:
            raise ShapeError(f"LocalResponseNorm: expected input (N, C, *) with 3 or more "
                             f"dims, got input of size {list(x.shape)}")
        channels = x.shape[1]
        pads = [(0, 0)] * x.ndim
        pads[1] = (self.size // 2, (self.size - 1) // 2)
        squares = np.pad(np.square(x), pads)
        # `size` shifted slices summed: exact, unlike a cumulative sum's differences.
        window = sum(squares[:, i:i + channels] for i in range(self.size))
        return x / (self.k + self.alpha / self.size * window) ** self.beta

    def extra_repr(self):
        return f"{self.size}" + _non_defaults(self, (("alpha", 1e-4), ("beta", 0.75),
                                                     ("k", 1.0)))
