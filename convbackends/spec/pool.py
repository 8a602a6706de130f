"""The normalised description of one pooling or unpooling call.

:func:`pool_spec` (max and average pooling), :func:`adaptive_pool_spec` and
:func:`unpool_spec` validate a call once, with PyTorch's wording, and return a frozen
:class:`PoolSpec`. The spec also answers the geometry kernels need as small int64 arrays:
each dimension's average divisors and adaptive windows.
"""

import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import ShapeError
from .conv import PADDING_STRINGS
from .geometry import (adaptive_windows, as_int, output_length, padding_pairs, per_dim,
                       same_pool_pairs, tap_counts, unpool_default_length)
from .layout import (CHANNELS_FIRST, check_data_format, layout_name, shape_to_first,
                     shape_to_last)
from .messages import shape_str

__all__ = ["PoolSpec", "POOL_OPS", "ADAPTIVE_OPS", "pool_spec", "adaptive_pool_spec",
           "unpool_spec", "invalid_index_error"]

POOL_OPS = ("max_pool", "max_pool_with_indices", "avg_pool", "adaptive_avg_pool",
            "adaptive_max_pool", "max_unpool")
ADAPTIVE_OPS = ("adaptive_avg_pool", "adaptive_max_pool")


@dataclass(frozen=True)
class PoolSpec:
    """The normalised geometry of one pooling call.

    ``op`` is one of :data:`POOL_OPS`. For the adaptive ops ``kernel``, ``stride``,
    ``padding`` and ``dilation`` are empty and ``adaptive_output`` holds the requested output
    size; window ``i`` along a dimension of length ``L`` covers
    ``[floor(i*L/out), ceil((i+1)*L/out))``. For ``"max_unpool"`` the input is the pooled
    array and ``unpool_output`` the spatial size it is scattered back into. ``divisor_override``
    (average pooling) replaces every window's divisor. ``data_format`` is the layout of
    input and output (``input_shape`` and ``output_shape`` are in it); indices are flat into
    each ``(n, c)`` plane in either layout.
    """

    op: str
    batch: int
    channels: int
    input_spatial: tuple
    kernel: tuple = ()
    stride: tuple = ()
    padding: tuple = ()
    dilation: tuple = ()
    ceil_mode: bool = False
    count_include_pad: bool = True
    dtype: str = "float32"
    adaptive_output: tuple = ()
    divisor_override: int = None
    unpool_output: tuple = ()
    data_format: str = CHANNELS_FIRST

    @property
    def ndim(self):
        return len(self.input_spatial)

    @property
    def adaptive(self):
        return self.op in ADAPTIVE_OPS

    @property
    def output_spatial(self):
        if self.adaptive:
            return tuple(self.adaptive_output)
        if self.op == "max_unpool":
            return tuple(self.unpool_output)
        return tuple(output_length(L, k, s, pb, pa, d, self.ceil_mode) for L, k, s, (pb, pa), d
                     in zip(self.input_spatial, self.kernel, self.stride, self.padding,
                            self.dilation))

    @property
    def input_shape(self):
        """The input's shape, in ``data_format``."""
        return shape_to_last((self.batch, self.channels) + tuple(self.input_spatial),
                             self.data_format)

    @property
    def output_shape(self):
        """The output's shape, in ``data_format``."""
        return shape_to_last((self.batch, self.channels) + self.output_spatial,
                             self.data_format)

    @property
    def macs(self):
        """Window taps summed or compared: the pooling analogue of multiply-accumulates."""
        if self.adaptive or self.op == "max_unpool":
            return self.batch * self.channels * math.prod(self.input_spatial)
        return self.batch * self.channels * math.prod(self.output_spatial) * math.prod(self.kernel)

    @property
    def flops(self):
        return self.macs

    @property
    def itemsize(self):
        return np.dtype(self.dtype).itemsize

    def divisor_counts(self):
        """Average pooling's divisors, one int64 array per spatial dim.

        The divisor of a window is the product of its position's entries across the dims
        (the window is a box, so the count of its taps that count is separable). A
        ``divisor_override`` sits in the first dim's array, with ones in the others.
        """
        if self.divisor_override is not None:
            out = self.output_spatial
            return (np.full(out[0], self.divisor_override, np.int64),) + tuple(
                np.ones(o, np.int64) for o in out[1:])
        return tuple(tap_counts(L, k, s, pb, pa, d, o, self.count_include_pad)
                     for L, k, s, (pb, pa), d, o in zip(
                         self.input_spatial, self.kernel, self.stride, self.padding,
                         self.dilation, self.output_spatial))

    def adaptive_windows(self):
        """Adaptive pooling's windows: per spatial dim, int64 arrays ``(starts, ends)``."""
        return tuple(adaptive_windows(L, o)
                     for L, o in zip(self.input_spatial, self.adaptive_output))

    def replace(self, **changes):
        """A copy with some fields changed (the spec itself is immutable)."""
        return replace(self, **changes)


def _check_positive(values, message):
    if any(v <= 0 for v in values):
        raise ShapeError(message)


def _pool_input(func, x_shape, nd, data_format):
    """The batched, channels-first shape of the input, and whether it was batched."""
    data_format = check_data_format(data_format)
    x_shape = tuple(x_shape)
    if len(x_shape) not in (nd + 1, nd + 2):
        if data_format == CHANNELS_FIRST:
            layouts = "(C, *spatial) or (N, C, *spatial)"
        else:
            layouts = (f"{layout_name(data_format, nd, batched=False)} or "
                       f"{layout_name(data_format, nd)} in {data_format}")
        raise ShapeError(f"{func}: Expected {nd + 1}D or {nd + 2}D input {layouts}, but got "
                         f"input of size: {shape_str(x_shape)}")
    batched = len(x_shape) == nd + 2
    full = shape_to_first(x_shape if batched else (1,) + x_shape, data_format)
    if any(s <= 0 for s in full[1:]):
        raise ShapeError(f"{func}: Expected input with non-zero channel and spatial sizes, "
                         f"but got input of size: {shape_str(x_shape)}")
    return full, batched


def _window(nd, kernel_size, stride):
    kernel = per_dim(kernel_size, nd, "kernel_size")
    stride = kernel if stride is None or (isinstance(stride, (list, tuple)) and not stride) \
        else per_dim(stride, nd, "stride")
    _check_positive(kernel, "kernel_size must be greater than zero")
    _check_positive(stride, "stride should be greater than zero")
    return kernel, stride


def pool_spec(func, op, x_shape, nd, kernel_size, stride=None, padding=0, dilation=1,
              ceil_mode=False, count_include_pad=True, dtype="float32", divisor_override=None,
              data_format=CHANNELS_FIRST):
    """Validate one max or average pooling call and return ``(spec, batched)``.

    ``op`` is ``"max_pool"``, ``"max_pool_with_indices"`` or ``"avg_pool"``; ``x_shape`` is
    in ``data_format``.
    """
    full, batched = _pool_input(func, x_shape, nd, data_format)
    kernel, stride = _window(nd, kernel_size, stride)
    dilation = per_dim(dilation, nd, "dilation")
    _check_positive(dilation, "dilation should be greater than zero")
    if divisor_override is not None:
        divisor_override = as_int(divisor_override, "divisor_override")
        if divisor_override == 0:
            raise ShapeError("divisor must be not zero")
    spatial = full[2:]
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ShapeError(f"Invalid padding string {padding!r}, should be one of "
                             f"{set(PADDING_STRINGS)}")
        pairs = (((0, 0),) * nd if padding == "valid"
                 else same_pool_pairs(spatial, kernel, stride, dilation))
    else:
        pairs = padding_pairs(padding, nd)
    spec = PoolSpec(op=op, batch=full[0], channels=full[1], input_spatial=tuple(spatial),
                    kernel=kernel, stride=stride, padding=pairs, dilation=dilation,
                    ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad),
                    dtype=np.dtype(dtype).name, divisor_override=divisor_override,
                    data_format=data_format)
    out = spec.output_spatial
    if any(o <= 0 for o in out):
        raise ShapeError(f"Given input size: {shape_str(full[1:])}. Calculated output size: "
                         f"{shape_str((full[1],) + out)}. Output size is too small")
    return spec, batched


def adaptive_pool_spec(func, x_shape, nd, output_size, dtype="float32",
                       op="adaptive_avg_pool", data_format=CHANNELS_FIRST):
    """Validate an adaptive pooling call; ``None`` in output_size keeps that size."""
    full, batched = _pool_input(func, x_shape, nd, data_format)
    if isinstance(output_size, (list, tuple)):
        if len(output_size) != nd:
            raise ShapeError(f"{func}: output_size must be an int or {nd} values, got "
                             f"{tuple(output_size)!r}")
        sizes = tuple(full[2 + i] if s is None else as_int(s, "output_size")
                      for i, s in enumerate(output_size))
    else:
        sizes = (as_int(output_size, "output_size"),) * nd
    _check_positive(sizes, f"{func}: output_size must be positive, got {sizes}")
    spec = PoolSpec(op=op, batch=full[0], channels=full[1], input_spatial=tuple(full[2:]),
                    dtype=np.dtype(dtype).name, adaptive_output=sizes,
                    data_format=data_format)
    return spec, batched


def _unpool_size(nd, spatial, kernel, stride, pairs, output_size):
    """PyTorch's ``max_unpool`` output size: the default, or a checked ``output_size``."""
    default = [unpool_default_length(L, k, s, pb, pa)
               for L, k, s, (pb, pa) in zip(spatial, kernel, stride, pairs)]
    if output_size is None:
        return tuple(default)
    sizes = [as_int(v, "output_size") for v in output_size]
    if len(sizes) == nd + 2:
        sizes, output_size = sizes[2:], output_size[2:]
    if len(sizes) != nd:
        raise ShapeError(f"output_size should be a sequence containing {nd} or {nd + 2} "
                         f"elements, but it has a length of '{len(sizes)}'")
    for d, (size, base, s) in enumerate(zip(sizes, default, stride)):
        if not base - s < size < base + s:
            raise ShapeError(f'invalid output_size "{output_size}" (dim {d} must be between '
                             f'{base - s} and {base + s})')
    return tuple(sizes)


def unpool_spec(func, x_shape, indices_shape, nd, kernel_size, stride=None, padding=0,
                output_size=None, dtype="float32", data_format=CHANNELS_FIRST):
    """Validate one ``max_unpool`` call and return ``(spec, batched)``.

    ``indices_shape`` must equal ``x_shape`` (the indices ``max_pool`` returned with it).
    ``output_size`` with N and C given too is in ``data_format``.
    """
    full, batched = _pool_input(func, x_shape, nd, data_format)
    if tuple(indices_shape) != tuple(x_shape):
        raise ShapeError(f"Expected shape of indices to be same as that of the input tensor "
                         f"({shape_str(x_shape)}) but got indices tensor with shape: "
                         f"{shape_str(indices_shape)}")
    kernel, stride = _window(nd, kernel_size, stride)
    pairs = padding_pairs(padding, nd)
    if output_size is not None and not isinstance(output_size, (list, tuple)):
        output_size = tuple(output_size)
    if (output_size is not None and len(output_size) == nd + 2
            and data_format != CHANNELS_FIRST):
        output_size = tuple(output_size[1:-1])
    sizes = _unpool_size(nd, full[2:], kernel, stride, pairs, output_size)
    _check_positive(sizes, f"{func}: the output size {tuple(sizes)} must be positive")
    spec = PoolSpec(op="max_unpool", batch=full[0], channels=full[1],
                    input_spatial=tuple(full[2:]), kernel=kernel, stride=stride,
                    padding=pairs, dilation=(1,) * nd, dtype=np.dtype(dtype).name,
                    unpool_output=sizes, data_format=data_format)
    return spec, batched


def invalid_index_error(index, spec):
    """PyTorch's error for a ``max_unpool`` index outside the output plane.

    PyTorch reports the last bad index in scan order, and names a 1-D plane of length ``L``
    ``Lx1`` (it unpools 1-D as 2-D).
    """
    sizes = tuple(spec.unpool_output) + ((1,) if spec.ndim == 1 else ())
    return ShapeError(f"Found an invalid max index: {index} (output volumes are of size "
                      f"{'x'.join(str(v) for v in sizes)})")
