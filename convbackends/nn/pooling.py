"""Pooling layers, as ``torch.nn``'s: max, average, adaptive average, adaptive max and
max unpooling, in 1, 2 and 3 spatial dims.

Each forward is one call of the matching :mod:`convbackends.functional` function, run
inside ``set_backend(layer.backend)`` when the layer has a backend (see
:attr:`Module.backend`); ``output_shape`` comes from the :class:`~convbackends.PoolSpec`
that call builds.
"""

import contextlib

from .. import functional as F
# The public default-backend block; the package binds it before it imports nn.
from .. import set_backend
from ..spec import adaptive_pool_spec, pool_spec, unpool_spec
from .module import Module, _non_defaults, _repr_backend

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
    block = contextlib.nullcontext() if layer.backend is None else set_backend(layer.backend)
    with block:
        return func(*args, **kwargs)


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

    def __init__(self, kernel_size, stride, padding, ceil_mode, backend):
        super().__init__(backend=backend)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode = ceil_mode

    def output_shape(self, input_shape):
        return _shape(*self._spec(input_shape))

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}" + _non_defaults(self, self._repr_defaults)
        return _repr_backend(s, self.backend)


class _MaxPoolNd(_PoolNd):
    _repr_defaults = (("stride", None), ("padding", 0), ("dilation", 1),
                      ("return_indices", False), ("ceil_mode", False))

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False, *, backend=None):
        super().__init__(kernel_size, stride, padding, ceil_mode, backend)
        self.dilation, self.return_indices = dilation, return_indices

    def _spec(self, input_shape):
        op = "max_pool_with_indices" if self.return_indices else "max_pool"
        return pool_spec(f"max_pool{self._nd}d", op, input_shape, self._nd, self.kernel_size,
                         self.stride, self.padding, self.dilation, self.ceil_mode)

    def forward(self, x):
        """The window maxima, or ``(values, indices)`` with ``return_indices``."""
        return _run(self, "max_pool", x, self.kernel_size, self.stride, self.padding,
                    self.dilation, self.ceil_mode, return_indices=self.return_indices)


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
                 count_include_pad=True, divisor_override=None, *, backend=None):
        super().__init__(kernel_size, stride, padding, ceil_mode, backend)
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def _spec(self, input_shape):
        return pool_spec(f"avg_pool{self._nd}d", "avg_pool", input_shape, self._nd,
                         self.kernel_size, self.stride, self.padding, 1, self.ceil_mode,
                         self.count_include_pad, divisor_override=self.divisor_override)

    def forward(self, x):
        # avg_pool1d, like PyTorch's, takes no divisor_override (AvgPool1d never has one).
        options = ({} if self.divisor_override is None
                   else {"divisor_override": self.divisor_override})
        return _run(self, "avg_pool", x, self.kernel_size, self.stride, self.padding,
                    self.ceil_mode, self.count_include_pad, **options)


class AvgPool1d(_AvgPoolNd):
    """1-D average pooling, as ``torch.nn.AvgPool1d`` (no ``divisor_override``); see
    :class:`AvgPool2d`."""

    _nd = 1

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, *, backend=None):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad,
                         backend=backend)


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

    def __init__(self, output_size, *, backend=None):
        super().__init__(backend=backend)
        self.output_size = output_size

    def output_shape(self, input_shape):
        return _shape(*adaptive_pool_spec(f"{self._op}{self._nd}d", input_shape, self._nd,
                                          self.output_size, op=self._op))

    def extra_repr(self):
        return _repr_backend(f"output_size={self.output_size!r}", self.backend)


class _AdaptiveAvgPoolNd(_AdaptivePoolNd):
    _op = "adaptive_avg_pool"

    def forward(self, x):
        return _run(self, "adaptive_avg_pool", x, self.output_size)


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

    def __init__(self, output_size, return_indices=False, *, backend=None):
        super().__init__(output_size, backend=backend)
        self.return_indices = return_indices

    def forward(self, x):
        """The window maxima, or ``(values, indices)`` with ``return_indices``."""
        return _run(self, "adaptive_max_pool", x, self.output_size, self.return_indices)

    def extra_repr(self):
        s = f"output_size={self.output_size!r}" + _non_defaults(
            self, (("return_indices", False),))
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

    def __init__(self, kernel_size, stride=None, padding=0, *, backend=None):
        super().__init__(backend=backend)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x, indices, output_size=None):
        """Scatter ``x`` to ``indices``; see the class docstring for ``output_size``."""
        return _run(self, "max_unpool", x, indices, self.kernel_size, self.stride,
                    self.padding, output_size)

    def output_shape(self, input_shape, output_size=None):
        """The output shape for pooled input of ``input_shape`` (and ``output_size``)."""
        return _shape(*unpool_spec(f"max_unpool{self._nd}d", input_shape, input_shape,
                                   self._nd, self.kernel_size, self.stride, self.padding,
                                   output_size))

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}" + _non_defaults(
            self, (("stride", None), ("padding", 0)))
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
