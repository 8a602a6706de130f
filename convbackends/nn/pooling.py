"""Pooling layers, as ``torch.nn``'s: max, average, adaptive average, adaptive max and
max unpooling, in 1, 2 and 3 spatial dims.

Each forward is one call of the matching :mod:`convbackends.functional` function, run
inside ``set_backend(layer.backend)`` when the layer has a backend (see
:attr:`Module.backend`); ``output_shape`` comes from the :class:`~convbackends.PoolSpec`
that call builds. Every layer takes ``data_format`` (see :mod:`convbackends.nn.layout`):
channels last, the forward computes in that layout and the backward on channels-first views.
"""

import contextlib
import math

import numpy as np

from .. import functional as F
from .. import grad as G
# The public default-backend block; the package binds it before it imports nn.
from .. import set_backend
from ..spec import adaptive_pool_spec, pool_spec, unpool_spec
from ..spec.geometry import adaptive_windows
from ..spec.layout import CHANNELS_FIRST, check_data_format
from .layout import first_shape, first_view, in_layout
from .module import Module, _batched, _explain, _non_defaults, _repr_backend, _unbatched_like

__all__ = ["MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
           "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
           "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "MaxUnpool1d",
           "MaxUnpool2d", "MaxUnpool3d"]


def _run(layer, name, *args, **kwargs):
    """``functional.{name}{nd}d(*args, **kwargs)`` with ``layer.backend`` as the default.

    A default backend that lacks the op altogether leaves it to ``"auto"``, so pooling
    layers of a model set to a convolution-only backend still run; ``None`` keeps the
    caller's default.
    """
    func = getattr(F, f"{name}{layer._nd}d")
    with _as_default(layer):
        return func(*args, data_format=layer.data_format, **kwargs)


def _run_grad(layer, name, *args, **kwargs):
    """``grad.{name}{nd}d_input(*args, **kwargs)`` in the block the forward ran in."""
    func = getattr(G, f"{name}{layer._nd}d_input")
    with _as_default(layer):
        return func(*args, **kwargs)


def _batched_shape(shape, nd):
    return (1,) + tuple(shape) if len(shape) == nd + 1 else tuple(shape)


def _planes(a):
    """A batched ``(N, C, *spatial)`` array as ``(N*C, prod(spatial))``."""
    return a.reshape(a.shape[0] * a.shape[1], -1)


def _scatter_add(grad, indices, input_shape, nd):
    """The gradient of a max over windows: each output's gradient added at its maximum,
    ``indices`` flat into each input plane (a window with index -1 passes nothing on)."""
    grad, indices = _batched(grad, nd), _batched(np.asarray(indices), nd)
    full = _batched_shape(input_shape, nd)
    planes, plane = full[0] * full[1], math.prod(full[2:])
    idx = _planes(indices)
    flat = idx + (np.arange(planes, dtype=np.int64) * plane)[:, None]
    valid = idx >= 0
    summed = np.bincount(flat[valid], weights=_planes(grad)[valid],
                         minlength=planes * plane)
    return summed.astype(grad.dtype).reshape(tuple(input_shape))


def _spread_adaptive(grad, input_shape, nd):
    """Adaptive average pooling's input gradient: each window's gradient over its size,
    spread over the window (the windows of :func:`~convbackends.spec.geometry.
    adaptive_windows`). Averaging over a box is one average per dim, so the spreading is
    one ``(out, L)`` matrix per dim, applied in turn."""
    g = _batched(grad, nd).astype(np.float64)
    for d, length in enumerate(_batched_shape(input_shape, nd)[2:]):
        out = g.shape[2 + d]
        starts, ends = adaptive_windows(length, out)
        spread = np.zeros((out, length))
        for i, (a, b) in enumerate(zip(starts, ends)):
            spread[i, a:b] = 1.0 / (b - a)
        g = np.moveaxis(np.tensordot(g, spread, axes=([2 + d], [0])), -1, 2 + d)
    return g.astype(grad.dtype).reshape(tuple(input_shape))


def _as_default(layer):
    """The block a pooling layer runs in: ``set_backend(layer.backend)``, or nothing."""
    return contextlib.nullcontext() if layer.backend is None else set_backend(layer.backend)


def _explain_call(layer, input_shape, dtype, op, **params):
    """:func:`convbackends.explain` for ``op`` as the layer's forward calls it: inside the
    layer's default-backend block, so it reports the backend that would actually run (a
    backend without the op at all leaves it to ``"auto"``)."""
    with _as_default(layer):
        return _explain(tuple(input_shape), op=op,
                        dtype=np.dtype(np.float32 if dtype is None else dtype).name,
                        data_format=layer.data_format, **params)


def _shape(spec, batched):
    """The output shape of a call, unbatched for unbatched input."""
    return spec.output_shape if batched else spec.output_shape[1:]


class _PoolNd(Module):
    """Shared by the max and average pooling layers: geometry, shapes, repr.

    Subclasses give ``_spec(input_shape)`` and ``_repr_defaults``, the ``(name, default)``
    pairs ``repr`` shows when they differ.
    """

    _nd = None
    _repr_defaults = ()

    def __init__(self, kernel_size, stride, padding, ceil_mode, backend, data_format):
        super().__init__(backend=backend)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode = ceil_mode
        self.data_format = check_data_format(data_format)

    def output_shape(self, input_shape):
        return _shape(*self._spec(input_shape))

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}" + _non_defaults(
            self, self._repr_defaults + (("data_format", CHANNELS_FIRST),))
        return _repr_backend(s, self.backend)


class _MaxPoolNd(_PoolNd):
    _repr_defaults = (("stride", None), ("padding", 0), ("dilation", 1),
                      ("return_indices", False), ("ceil_mode", False))

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False, *, backend=None, data_format=CHANNELS_FIRST):
        super().__init__(kernel_size, stride, padding, ceil_mode, backend, data_format)
        self.dilation, self.return_indices = dilation, return_indices

    def _spec(self, input_shape):
        op = "max_pool_with_indices" if self.return_indices else "max_pool"
        return pool_spec(f"max_pool{self._nd}d", op, input_shape, self._nd, self.kernel_size,
                         self.stride, self.padding, self.dilation, self.ceil_mode,
                         data_format=self.data_format)

    def explain(self, input_shape, dtype=None):
        op = "max_pool_with_indices" if self.return_indices else "max_pool"
        return _explain_call(self, input_shape, dtype, op,
                             kernel_size=self.kernel_size, stride=self.stride,
                             padding=self.padding, dilation=self.dilation,
                             ceil_mode=self.ceil_mode)

    def forward(self, x):
        """The window maxima, or ``(values, indices)`` with ``return_indices``."""
        result = _run(self, "max_pool", x, self.kernel_size, self.stride, self.padding,
                      self.dilation, self.ceil_mode, return_indices=self.return_indices)
        values = result[0] if self.return_indices else result
        self._keep(values, x)
        return result

    def _backward(self, grad_output):
        """Through :func:`convbackends.grad.max_pool2d_input` (and 1d, 3d); with
        ``return_indices``, ``grad_output`` is the values' gradient."""
        grad, (x,) = self._take(grad_output)
        nd, layout = self._nd, self.data_format
        x, grad = first_view(x, nd, layout), first_view(grad, nd, layout)
        result = _run_grad(self, "max_pool", _batched(x, nd), _batched(grad, nd),
                           self.kernel_size, self.stride, self.padding, self.dilation,
                           self.ceil_mode)
        return in_layout(_unbatched_like(result, x.shape), nd, layout)


class MaxPool1d(_MaxPoolNd):
    """1-D max pooling, as ``torch.nn.MaxPool1d``; see :class:`MaxPool2d`."""
    _nd = 1


class MaxPool2d(_MaxPoolNd):
    """2-D max pooling, as ``torch.nn.MaxPool2d``.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Default: ``kernel_size``.
    padding : int, pairs, "valid" or "same"
        Padding is ``-inf``. Default: 0
    dilation : int or (int, int). Default: 1
    return_indices : bool
        Return ``(values, indices)``: ``indices`` (int64, the values' shape) holds each
        maximum's position in its ``(n, c)`` plane, flattened as ``h * W + w``, as
        :class:`MaxUnpool2d` takes it. Default: False
    ceil_mode : bool
        Round the output size up instead of down. Default: False
    backend : str or backend object, optional
        Default: the current default backend.

    Input ``(N, C, H, W)`` or ``(C, H, W)``; output size per dim
    ``floor((L + 2*padding - dilation*(k - 1) - 1) / stride) + 1``.
    """
    _nd = 2


class MaxPool3d(_MaxPoolNd):
    """3-D max pooling, as ``torch.nn.MaxPool3d``; see :class:`MaxPool2d`."""
    _nd = 3


class _AvgPoolNd(_PoolNd):
    _repr_defaults = (("stride", None), ("padding", 0), ("ceil_mode", False),
                      ("count_include_pad", True), ("divisor_override", None))

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None, *, backend=None,
                 data_format=CHANNELS_FIRST):
        super().__init__(kernel_size, stride, padding, ceil_mode, backend, data_format)
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def _spec(self, input_shape):
        return pool_spec(f"avg_pool{self._nd}d", "avg_pool", input_shape, self._nd,
                         self.kernel_size, self.stride, self.padding, 1, self.ceil_mode,
                         self.count_include_pad, divisor_override=self.divisor_override,
                         data_format=self.data_format)

    def explain(self, input_shape, dtype=None):
        options = ({} if self.divisor_override is None
                   else {"divisor_override": self.divisor_override})
        return _explain_call(self, input_shape, dtype, "avg_pool",
                             kernel_size=self.kernel_size, stride=self.stride,
                             padding=self.padding, ceil_mode=self.ceil_mode,
                             count_include_pad=self.count_include_pad, **options)

    def forward(self, x):
        # avg_pool1d, like PyTorch's, takes no divisor_override (AvgPool1d never has one).
        options = ({} if self.divisor_override is None
                   else {"divisor_override": self.divisor_override})
        y = _run(self, "avg_pool", x, self.kernel_size, self.stride, self.padding,
                 self.ceil_mode, self.count_include_pad, **options)
        self._keep(y, np.shape(x))
        return y

    def _backward(self, grad_output):
        """Through :func:`convbackends.grad.avg_pool2d_input` (and 1d, 3d)."""
        grad, (shape,) = self._take(grad_output)
        nd, layout = self._nd, self.data_format
        shape, grad = first_shape(shape, nd, layout), first_view(grad, nd, layout)
        result = _run_grad(self, "avg_pool", _batched_shape(shape, nd), _batched(grad, nd),
                           self.kernel_size, self.stride, self.padding, self.ceil_mode,
                           self.count_include_pad, self.divisor_override)
        return in_layout(result.reshape(shape), nd, layout)


class AvgPool1d(_AvgPoolNd):
    """1-D average pooling, as ``torch.nn.AvgPool1d`` (no ``divisor_override``); see
    :class:`AvgPool2d`."""

    _nd = 1

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, *, backend=None, data_format=CHANNELS_FIRST):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad,
                         backend=backend, data_format=data_format)


class AvgPool2d(_AvgPoolNd):
    """2-D average pooling, as ``torch.nn.AvgPool2d``.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Default: ``kernel_size``.
    padding : int, pairs, "valid" or "same". Default: 0
    ceil_mode : bool. Default: False
    count_include_pad : bool
        Whether padding taps count in the divisor. Default: True
    divisor_override : int, optional
        Divide every window's sum by this instead of its tap count. Default: None
    backend : str or backend object, optional
    """
    _nd = 2


class AvgPool3d(_AvgPoolNd):
    """3-D average pooling, as ``torch.nn.AvgPool3d``; see :class:`AvgPool2d`."""
    _nd = 3


class _AdaptivePoolNd(Module):
    """Shared by the adaptive pooling layers: ``output_size``, shapes, repr."""

    _nd = None
    _op = None

    def __init__(self, output_size, *, backend=None, data_format=CHANNELS_FIRST):
        super().__init__(backend=backend)
        self.output_size = output_size
        self.data_format = check_data_format(data_format)

    def output_shape(self, input_shape):
        return _shape(*adaptive_pool_spec(f"{self._op}{self._nd}d", input_shape, self._nd,
                                          self.output_size, op=self._op,
                                          data_format=self.data_format))

    def explain(self, input_shape, dtype=None):
        return _explain_call(self, input_shape, dtype, self._op, output_size=self.output_size)

    def extra_repr(self):
        s = f"output_size={self.output_size!r}" + _non_defaults(
            self, (("data_format", CHANNELS_FIRST),))
        return _repr_backend(s, self.backend)


class _AdaptiveAvgPoolNd(_AdaptivePoolNd):
    _op = "adaptive_avg_pool"

    def forward(self, x):
        y = _run(self, "adaptive_avg_pool", x, self.output_size)
        self._keep(y, np.shape(x))
        return y

    def _backward(self, grad_output):
        """Where every output size divides its input size the windows are a plain average
        pooling's (kernel = stride = L / out), and the gradient goes through
        :func:`convbackends.grad.avg_pool2d_input`; otherwise each window's gradient is
        spread over its window."""
        grad, (shape,) = self._take(grad_output)
        nd, layout = self._nd, self.data_format
        shape, grad = first_shape(shape, nd, layout), first_view(grad, nd, layout)
        lengths, outs = _batched_shape(shape, nd)[2:], _batched(grad, nd).shape[2:]
        if any(out == 0 or length % out for length, out in zip(lengths, outs)):
            return in_layout(_spread_adaptive(grad, shape, nd), nd, layout)
        kernel = tuple(length // out for length, out in zip(lengths, outs))
        result = _run_grad(self, "avg_pool", _batched_shape(shape, nd), _batched(grad, nd),
                           kernel, kernel)
        return in_layout(result.reshape(shape), nd, layout)


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    """1-D adaptive average pooling, as ``torch.nn.AdaptiveAvgPool1d``."""
    _nd = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    """2-D adaptive average pooling, as ``torch.nn.AdaptiveAvgPool2d``.

    ``output_size`` is an int or ``(H_out, W_out)`` (``None`` keeps that size); window ``i``
    along a dim of length ``L`` averages ``[floor(i*L/out), ceil((i+1)*L/out))``.
    """
    _nd = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    """3-D adaptive average pooling, as ``torch.nn.AdaptiveAvgPool3d``."""
    _nd = 3


class _AdaptiveMaxPoolNd(_AdaptivePoolNd):
    _op = "adaptive_max_pool"

    def __init__(self, output_size, return_indices=False, *, backend=None,
                 data_format=CHANNELS_FIRST):
        super().__init__(output_size, backend=backend, data_format=data_format)
        self.return_indices = return_indices

    def forward(self, x):
        """The window maxima, or ``(values, indices)`` with ``return_indices``."""
        values, indices = _run(self, "adaptive_max_pool", x, self.output_size, True)
        self._keep(values, np.shape(x), indices)
        return (values, indices) if self.return_indices else values

    def _backward(self, grad_output):
        """Each output's gradient added at its maximum; with ``return_indices``,
        ``grad_output`` is the values' gradient."""
        grad, (shape, indices) = self._take(grad_output)
        nd, layout = self._nd, self.data_format
        return in_layout(_scatter_add(first_view(grad, nd, layout),
                                      first_view(indices, nd, layout),
                                      first_shape(shape, nd, layout), nd), nd, layout)

    def extra_repr(self):
        s = f"output_size={self.output_size!r}" + _non_defaults(
            self, (("return_indices", False), ("data_format", CHANNELS_FIRST)))
        return _repr_backend(s, self.backend)


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    """1-D adaptive max pooling, as ``torch.nn.AdaptiveMaxPool1d``; see
    :class:`AdaptiveMaxPool2d`."""
    _nd = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    """2-D adaptive max pooling, as ``torch.nn.AdaptiveMaxPool2d``.

    Window ``i`` along a dim of length ``L`` takes the maximum of
    ``[floor(i*L/out), ceil((i+1)*L/out))``, so windows overlap where ``out`` does not
    divide ``L``.

    Parameters
    ----------
    output_size : int or (int, int)
        ``(H_out, W_out)``; ``None`` keeps that size.
    return_indices : bool
        Return ``(values, indices)``, the indices as :class:`MaxPool2d` gives them.
        Default: False
    backend : str or backend object, optional
    """
    _nd = 2


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    """3-D adaptive max pooling, as ``torch.nn.AdaptiveMaxPool3d``; see
    :class:`AdaptiveMaxPool2d`."""
    _nd = 3


class _MaxUnpoolNd(Module):
    _nd = None

    def __init__(self, kernel_size, stride=None, padding=0, *, backend=None,
                 data_format=CHANNELS_FIRST):
        super().__init__(backend=backend)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.data_format = check_data_format(data_format)

    def forward(self, x, indices, output_size=None):
        """Scatter ``x`` to ``indices``; see the class docstring for ``output_size``."""
        y = _run(self, "max_unpool", x, indices, self.kernel_size, self.stride,
                 self.padding, output_size)
        self._keep(y, np.shape(x), indices)
        return y

    def _backward(self, grad_output):
        """The gradient of the values: ``grad_output`` read at ``indices`` (the indices
        have none)."""
        grad, (shape, indices) = self._take(grad_output)
        nd, layout = self._nd, self.data_format
        grad, shape = first_view(grad, nd, layout), first_shape(shape, nd, layout)
        indices = _batched(first_view(indices, nd, layout), nd)
        picked = np.take_along_axis(_planes(_batched(grad, nd)), _planes(indices), axis=1)
        return in_layout(picked.reshape(shape), nd, layout)

    def output_shape(self, input_shape, output_size=None):
        """The output shape for pooled input of ``input_shape`` (and ``output_size``)."""
        return _shape(*unpool_spec(f"max_unpool{self._nd}d", input_shape, input_shape,
                                   self._nd, self.kernel_size, self.stride, self.padding,
                                   output_size, data_format=self.data_format))

    def explain(self, input_shape, dtype=None, output_size=None):
        """As :meth:`Module.explain`, with the forward's ``output_size``."""
        return _explain_call(self, input_shape, dtype, "max_unpool",
                             kernel_size=self.kernel_size, stride=self.stride,
                             padding=self.padding, output_size=output_size)

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}" + _non_defaults(
            self, (("stride", None), ("padding", 0), ("data_format", CHANNELS_FIRST)))
        return _repr_backend(s, self.backend)


class MaxUnpool1d(_MaxUnpoolNd):
    """1-D max unpooling, as ``torch.nn.MaxUnpool1d``; see :class:`MaxUnpool2d`."""
    _nd = 1


class MaxUnpool2d(_MaxUnpoolNd):
    """2-D max unpooling, as ``torch.nn.MaxUnpool2d``: the partial inverse of
    :class:`MaxPool2d` with ``return_indices=True``.

    ``unpool(values, indices)`` is zero everywhere but at ``indices`` (positions in each
    ``(n, c)`` plane, flattened as ``h * W_out + w``), which receive ``values``.

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Default: ``kernel_size``.
    padding : int or (int, int). Default: 0
    backend : str or backend object, optional

    The output size per dim is ``(L - 1)*stride - 2*padding + kernel_size``, or the
    forward's ``output_size`` (``(H_out, W_out)``, or the full shape), which must lie
    strictly within ``stride`` of it: a pooling that dropped trailing input (odd sizes)
    is undone to its input's size that way.
    """
    _nd = 2


class MaxUnpool3d(_MaxUnpoolNd):
    """3-D max unpooling, as ``torch.nn.MaxUnpool3d``; see :class:`MaxUnpool2d`."""
    _nd = 3
