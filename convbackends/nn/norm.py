"""Normalisation layers, as ``torch.nn``'s: BatchNorm1d/2d/3d and LocalResponseNorm.

They are NumPy expressions (no backend computes them); statistics are summed in float64
so they stay exact to the input's precision on large activations.
"""

import numpy as np

from ..errors import ShapeError
from ..spec.layout import CHANNELS_FIRST, CHANNELS_LAST, check_data_format
from .layout import first_view, in_layout
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
                 rng=None, data_format=CHANNELS_FIRST):
        super().__init__(backend=backend)
        self.data_format = check_data_format(data_format)
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
        channels = input_shape[-1 if self.data_format == CHANNELS_LAST else 1]
        if channels != self.num_features:
            where = "" if self.data_format == CHANNELS_FIRST else " (last dim, channels_last)"
            raise ShapeError(f"{type(self).__name__}: expected input with "
                             f"{self.num_features} channels{where}, got input of size "
                             f"{list(input_shape)}")
        return input_shape

    def _first(self, a):
        """A channels-last array as the channels-first view the statistics are taken on."""
        return first_view(a, a.ndim - 2, self.data_format)

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
        x = self._first(x)
        if self.training or not self.track_running_stats:
            mean, var = self._batch_statistics(x)
        else:
            mean, var = self.running_mean.astype(np.float64), self.running_var
        inv_std = 1.0 / np.sqrt(np.asarray(var, np.float64) + self.eps)
        scale = inv_std if self.weight is None else inv_std * self.weight
        shift = -mean * scale + (0.0 if self.bias is None else self.bias)
        y = x * _per_channel(scale, x.ndim).astype(x.dtype)
        y += _per_channel(shift, x.ndim).astype(x.dtype)
        y = in_layout(y, x.ndim - 2, self.data_format)
        self._keep(y, x, mean, inv_std)    # training mode uses batch statistics
        return y

    def _backward(self, grad_output):
        """The gradient through the batch statistics, as PyTorch's (in float64):
        ``weight * inv_std * (g - mean(g) - x_hat * mean(g * x_hat))`` per channel, with
        ``x_hat = (x - mean) * inv_std``; ``weight``'s gradient ``sum(g * x_hat)``,
        ``bias``'s ``sum(g)``."""
        grad, (x, mean, inv_std) = self._take(grad_output)
        grad = self._first(grad)
        axes = (0,) + tuple(range(2, x.ndim))
        count = x.size // x.shape[1]
        x_hat = x - _per_channel(mean, x.ndim)
        x_hat *= _per_channel(inv_std, x.ndim)
        g = grad.astype(np.float64)
        sum_g = g.sum(axis=axes)
        planes = x.shape[:2] + (-1,)
        sum_g_x_hat = np.einsum("ijk,ijk->j", g.reshape(planes), x_hat.reshape(planes))
        if self.weight is not None:
            self._add_grad("weight", sum_g_x_hat)
        if self.bias is not None:
            self._add_grad("bias", sum_g)
        scale = inv_std if self.weight is None else inv_std * self.weight
        x_hat *= _per_channel(sum_g_x_hat / count, x.ndim)
        g -= _per_channel(sum_g / count, x.ndim)
        g -= x_hat
        g *= _per_channel(scale, x.ndim)
        return in_layout(g.astype(x.dtype), x.ndim - 2, self.data_format)

    def extra_repr(self):
        s = f"{self.num_features}" + _non_defaults(self, (
            ("eps", 1e-5), ("momentum", 0.1), ("affine", True), ("track_running_stats", True),
            ("data_format", CHANNELS_FIRST)))
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
    data_format : {"channels_first", "channels_last"}
        Channels last, the channel axis is the last one (``(N, H, W, C)``) and the output
        has the input's layout. Default: "channels_first"
    """

    _input_dims = (4,)


class BatchNorm3d(_BatchNorm):
    """Batch normalisation over ``(N, C, D, H, W)``, as ``torch.nn.BatchNorm3d``; see
    :class:`BatchNorm2d`."""
    _input_dims = (5,)


def _channel_window_sum(a, before, after):
    """``sum(a[:, c - before : c + after + 1])`` for every channel ``c`` (channels outside
    the input count as zero): ``before + after + 1`` shifted slices summed, exact, unlike a
    cumulative sum's differences."""
    channels = a.shape[1]
    pads = [(0, 0)] * a.ndim
    pads[1] = (before, after)
    padded = np.pad(a, pads)
    return sum(padded[:, i:i + channels] for i in range(before + after + 1))


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
    data_format : {"channels_first", "channels_last"}
        Channels last, the window runs along the last axis. Default: "channels_first"
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0, *, data_format=CHANNELS_FIRST):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k
        self.data_format = check_data_format(data_format)

    def forward(self, x):
        x = np.asarray(x)
        if x.ndim < 3:
            raise ShapeError(f"LocalResponseNorm: expected input (N, C, *) with 3 or more "
                             f"dims, got input of size {list(x.shape)}")
        x = first_view(x, x.ndim - 2, self.data_format)
        y = in_layout(x / self._base(x) ** self.beta, x.ndim - 2, self.data_format)
        self._keep(y, x)
        return y

    def _base(self, x):
        """``k + alpha/size * sum(x[c']**2)`` over each channel's window."""
        window = _channel_window_sum(np.square(x), self.size // 2, (self.size - 1) // 2)
        return self.k + self.alpha / self.size * window

    def _backward(self, grad_output):
        """``g * d**-beta - 2*alpha*beta/size * x * sum(g * x * d**(-beta - 1))``, the sum
        over the channels whose window holds each channel (``d`` the forward's base)."""
        grad, (x,) = self._take(grad_output)
        grad = first_view(grad, x.ndim - 2, self.data_format)
        base = self._base(x)
        scaled = base ** -self.beta
        grad_x = grad * scaled
        through = grad * x * scaled / base
        # Channel c' is in the windows of c' - (size-1)//2 .. c' + size//2.
        spread = _channel_window_sum(through, (self.size - 1) // 2, self.size // 2)
        grad_x -= (2 * self.alpha * self.beta / self.size) * x * spread
        return in_layout(grad_x.astype(x.dtype, copy=False), x.ndim - 2, self.data_format)

    def extra_repr(self):
        return f"{self.size}" + _non_defaults(self, (("alpha", 1e-4), ("beta", 0.75),
                                                     ("k", 1.0),
                                                     ("data_format", CHANNELS_FIRST)))
