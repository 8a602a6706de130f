"""Argument normalisation and validation: one immutable description per call.

Every public function turns its arguments into a :class:`ConvSpec` or :class:`PoolSpec`
here, once, so backends see one geometry (padding always as ``(before, after)`` pairs) and
never parse user arguments. All shape checks live here, with PyTorch's wording where PyTorch
has one.
"""

import math
import operator
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import DTypeError, ShapeError

__all__ = ["ConvSpec", "PoolSpec", "output_length", "transposed_output_length",
           "conv_spec", "pool_spec", "adaptive_pool_spec", "check_dtypes"]

SUPPORTED_DTYPES = ("float32", "float64")
PADDING_STRINGS = ("valid", "same")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_DIM_NAMES = {1: ("width",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def output_length(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode=False):
    """Output length of a sliding window along one dimension.

    ``floor((L + pad_before + pad_after - dilation*(kernel-1) - 1) / stride) + 1``; with
    ``ceil_mode`` the division rounds up, but (as in PyTorch) the last window must start
    inside the input or the leading padding.
    """
    span = length + pad_before + pad_after - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= length + pad_before:
        out -= 1
    return out


def transposed_output_length(length, kernel, stride, pad_before, pad_after, dilation,
                             output_padding):
    """``(L - 1)*stride - pad_before - pad_after + dilation*(kernel - 1) + output_padding + 1``."""
    return ((length - 1) * stride - pad_before - pad_after + dilation * (kernel - 1)
            + output_padding + 1)


@dataclass(frozen=True)
class ConvSpec:
    """The normalised geometry of one convolution or transposed convolution call.

    Attributes
    ----------
    op : {"conv", "conv_transpose"}
    batch, in_channels, out_channels, groups : int
    input_spatial, kernel, stride, dilation, output_padding : tuple of int, one per spatial dim
    padding : tuple of (before, after) pairs, one per spatial dim (zeros only: a non-zero
        ``padding_mode`` has already been applied to the input)
    dtype : str, ``"float32"`` or ``"float64"``
    has_bias : bool

    ``weight_shape`` is ``(out_channels, in_channels // groups, *kernel)`` for ``"conv"`` and
    ``(in_channels, out_channels // groups, *kernel)`` for ``"conv_transpose"``.
    """

    op: str
    batch: int
    in_channels: int
    out_channels: int
    input_spatial: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int = 1
    dtype: str = "float32"
    has_bias: bool = False
    output_padding: tuple = field(default=None)

    def __post_init__(self):
        if self.output_padding is None:
            object.__setattr__(self, "output_padding", (0,) * len(self.kernel))

    @property
    def ndim(self):
        """Number of spatial dimensions (1, 2 or 3)."""
        return len(self.kernel)

    @property
    def transposed(self):
        return self.op == "conv_transpose"

    @property
    def output_spatial(self):
        if self.transposed:
            return tuple(transposed_output_length(L, k, s, pb, pa, d, op)
                         for L, k, s, (pb, pa), d, op in zip(
                             self.input_spatial, self.kernel, self.stride, self.padding,
                             self.dilation, self.output_padding))
        return tuple(output_length(L, k, s, pb, pa, d) for L, k, s, (pb, pa), d in zip(
            self.input_spatial, self.kernel, self.stride, self.padding, self.dilation))

    @property
    def padded_spatial(self):
        return tuple(L + pb + pa for L, (pb, pa) in zip(self.input_spatial, self.padding))

    @property
    def input_shape(self):
        return (self.batch, self.in_channels) + tuple(self.input_spatial)

    @property
    def weight_shape(self):
        if self.transposed:
            return (self.in_channels, self.out_channels // self.groups) + tuple(self.kernel)
        return (self.out_channels, self.in_channels // self.groups) + tuple(self.kernel)

    @property
    def output_shape(self):
        return (self.batch, self.out_channels) + self.output_spatial

    @property
    def has_padding(self):
        return any(p for pair in self.padding for p in pair)

    @property
    def macs(self):
        """Multiply-accumulates of the direct formula.

        ``N * C_out * prod(output) * (C_in / groups) * prod(kernel)`` for convolution; for
        transposed convolution every input element meets ``C_out / groups * prod(kernel)``
        weights.
        """
        taps = math.prod(self.kernel)
        if self.transposed:
            return (self.batch * self.in_channels * math.prod(self.input_spatial)
                    * (self.out_channels // self.groups) * taps)
        return (self.batch * self.out_channels * math.prod(self.output_spatial)
                * (self.in_channels // self.groups) * taps)

    @property
    def flops(self):
        return 2 * self.macs

    @property
    def itemsize(self):
        return np.dtype(self.dtype).itemsize

    def replace(self, **changes):
        """A copy with some fields changed (the spec itself is immutable)."""
        return replace(self, **changes)


@dataclass(frozen=True)
class PoolSpec:
    """The normalised geometry of one pooling call.

    ``op`` is ``"max_pool"``, ``"avg_pool"`` or ``"adaptive_avg_pool"``. For the adaptive op
    ``kernel``, ``stride``, ``padding`` and ``dilation`` are empty and ``adaptive_output``
    holds the requested output size; window ``i`` along a dimension of length ``L`` covers
    ``[floor(i*L/out), ceil((i+1)*L/out))``.
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

    @property
    def ndim(self):
        return len(self.input_spatial)

    @property
    def output_spatial(self):
        if self.op == "adaptive_avg_pool":
            return tuple(self.adaptive_output)
        return tuple(output_length(L, k, s, pb, pa, d, self.ceil_mode) for L, k, s, (pb, pa), d
                     in zip(self.input_spatial, self.kernel, self.stride, self.padding,
                            self.dilation))

    @property
    def input_shape(self):
        return (self.batch, self.channels) + tuple(self.input_spatial)

    @property
    def output_shape(self):
        return (self.batch, self.channels) + self.output_spatial

    @property
    def macs(self):
        """Window taps summed or compared: the pooling analogue of multiply-accumulates."""
        if self.op == "adaptive_avg_pool":
            return self.batch * self.channels * math.prod(self.input_spatial)
        return self.batch * self.channels * math.prod(self.output_spatial) * math.prod(self.kernel)

    @property
    def flops(self):
        return self.macs

    @property
    def itemsize(self):
        return np.dtype(self.dtype).itemsize

    def replace(self, **changes):
        return replace(self, **changes)


def _shape_str(shape):
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _size_str(values):
    return "(" + " x ".join(str(v) for v in values) + ")"


def _int(value, name):
    if isinstance(value, (bool, np.bool_)):
        raise ShapeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ShapeError(f"{name} must be an integer, got {value!r}") from None


def per_dim(value, nd, name):
    """An int or one int per spatial dim -> tuple of ``nd`` ints."""
    if isinstance(value, (list, tuple)):
        if len(value) != nd:
            raise ShapeError(f"{name} must be an int or {nd} ints (one per spatial dimension), "
                             f"got {tuple(value)!r}")
        return tuple(_int(v, name) for v in value)
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return per_dim(value.tolist(), nd, name)
    return (_int(value, name),) * nd


def _padding_pairs(padding, nd, name="padding"):
    """int / per-dim ints / per-dim (before, after) pairs -> pairs (no strings)."""
    if isinstance(padding, np.ndarray):
        padding = padding.tolist()
    if isinstance(padding, (list, tuple)):
        if len(padding) != nd:
            raise ShapeError(
                f"{name} must be an int, 'valid', 'same', {nd} ints or {nd} (before, after) "
                f"pairs (one per spatial dimension), got {tuple(padding)!r}")
        pairs = []
        for p in padding:
            if isinstance(p, (list, tuple, np.ndarray)):
                if len(p) != 2:
                    raise ShapeError(f"{name} pairs must be (before, after), got {tuple(p)!r}")
                pairs.append((_int(p[0], name), _int(p[1], name)))
            else:
                v = _int(p, name)
                pairs.append((v, v))
        pairs = tuple(pairs)
    else:
        v = _int(padding, name)
        pairs = ((v, v),) * nd
    if any(p < 0 for pair in pairs for p in pair):
        raise ShapeError("negative padding is not supported")
    return pairs


def _check_positive(values, message):
    if any(v <= 0 for v in values):
        raise ShapeError(message)


def check_dtypes(func, x, weight=None, bias=None):
    """The dtype rules of CONTRACT §1; returns the common dtype name."""
    xd = np.dtype(x.dtype)
    if weight is None:
        if xd.name not in SUPPORTED_DTYPES:
            raise DTypeError(f"{func}: input dtype {xd.name} is not supported; "
                             f"use one of {', '.join(SUPPORTED_DTYPES)}")
        return xd.name
    wd = np.dtype(weight.dtype)
    if xd.name not in SUPPORTED_DTYPES or wd.name not in SUPPORTED_DTYPES or xd != wd:
        raise DTypeError(
            f"{func}: input dtype {xd.name} and weight dtype {wd.name}: both must be the same "
            f"floating dtype, one of {', '.join(SUPPORTED_DTYPES)} (convert with .astype())")
    if bias is not None and np.dtype(bias.dtype) != xd:
        raise DTypeError(f"{func}: bias dtype {np.dtype(bias.dtype).name} differs from "
                         f"input and weight dtype {xd.name}")
    return xd.name


def conv_spec(func, x_shape, w_shape, bias_shape=None, *, op="conv", stride=1, padding=0,
              dilation=1, groups=1, output_padding=0, dtype="float32"):
    """Validate one (transposed) convolution call and return ``(spec, batched)``.

    ``func`` names the public function in messages (``"conv2d"``). ``x_shape`` may lack the
    batch dimension (unbatched input), in which case ``batched`` is ``False`` and the spec
    has ``batch == 1``.
    """
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    nd = len(w_shape) - 2
    if nd not in (1, 2, 3):
        raise ShapeError(f"{func}: weight must have 3, 4 or 5 dimensions "
                         f"(channels, channels / groups, *kernel), got weight of size "
                         f"{_shape_str(w_shape)}")
    if len(x_shape) not in (nd + 1, nd + 2):
        raise ShapeError(f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to "
                         f"{func}, but got input of size: {_shape_str(x_shape)}")
    batched = len(x_shape) == nd + 2
    full_x = x_shape if batched else (1,) + x_shape
    transposed = op == "conv_transpose"

    stride = per_dim(stride, nd, "stride")
    dilation = per_dim(dilation, nd, "dilation")
    output_padding = per_dim(output_padding, nd, "output_padding")
    groups = _int(groups, "groups")
    _check_positive(stride, "non-positive stride is not supported")
    _check_positive(dilation, "dilation should be greater than zero")
    if groups <= 0:
        raise ShapeError("non-positive groups is not supported")
    if any(p < 0 for p in output_padding):
        raise ShapeError("negative output_padding is not supported")
    kernel = w_shape[2:]
    if any(k <= 0 for k in kernel) or any(s <= 0 for s in full_x[1:]) or w_shape[0] <= 0:
        raise ShapeError(f"{func}: empty dimensions are not supported: input of size "
                         f"{_shape_str(x_shape)}, weight of size {_shape_str(w_shape)}")

    if w_shape[0] % groups:
        raise ShapeError(f"Given groups={groups}, expected weight to be divisible by {groups} "
                         f"at dimension 0, but got weight of size {_shape_str(w_shape)} instead")
    if transposed:
        in_channels, out_channels = w_shape[0], w_shape[1] * groups
        if full_x[1] != in_channels:
            raise ShapeError(f"Given transposed=1, weight of size {_shape_str(w_shape)}, "
                             f"expected input{_shape_str(x_shape)} to have {in_channels} "
                             f"channels, but got {full_x[1]} channels instead")
    else:
        in_channels, out_channels = w_shape[1] * groups, w_shape[0]
        if full_x[1] != in_channels:
            raise ShapeError(f"Given groups={groups}, weight of size {_shape_str(w_shape)}, "
                             f"expected input{_shape_str(x_shape)} to have {in_channels} "
                             f"channels, but got {full_x[1]} channels instead")
    if bias_shape is not None and tuple(bias_shape) != (out_channels,):
        raise ShapeError(f"Given weight of size {_shape_str(w_shape)}, expected bias to be "
                         f"1-dimensional with {out_channels} elements, but got bias of size "
                         f"{_shape_str(bias_shape)} instead")

    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ShapeError(f"Invalid padding string {padding!r}, should be one of "
                             f"{set(PADDING_STRINGS)}")
        if transposed and padding == "same":
            raise ShapeError(f"{func}: padding='same' is not supported for transposed "
                             f"convolution; give the elements to remove as ints or pairs")
        if padding == "valid":
            pairs = ((0, 0),) * nd
        else:
            if any(s != 1 for s in stride):
                raise ShapeError("padding='same' is not supported for strided convolutions")
            totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
            pairs = tuple((t // 2, t - t // 2) for t in totals)
    else:
        pairs = _padding_pairs(padding, nd)

    spatial = full_x[2:]
    if transposed:
        names = _DIM_NAMES[nd]
        for i, (p, s, d) in enumerate(zip(output_padding, stride, dilation)):
            if p >= s and p >= d:
                raise ShapeError(
                    "output padding must be smaller than either stride or dilation, but got "
                    + " ".join(f"output_padding_{n}: {v}" for n, v in zip(names, output_padding))
                    + " " + " ".join(f"stride_{n}: {v}" for n, v in zip(names, stride))
                    + " " + " ".join(f"dilation_{n}: {v}" for n, v in zip(names, dilation)))
    else:
        padded = [L + pb + pa for L, (pb, pa) in zip(spatial, pairs)]
        effective = [d * (k - 1) + 1 for d, k in zip(dilation, kernel)]
        if any(e > p for e, p in zip(effective, padded)):
            raise ShapeError(f"Calculated padded input size per channel: {_size_str(padded)}. "
                             f"Kernel size: {_size_str(effective)}. Kernel size can't be "
                             f"greater than actual input size")
    spec = ConvSpec(op=op, batch=full_x[0], in_channels=in_channels,
                    out_channels=out_channels, input_spatial=tuple(spatial),
                    kernel=tuple(kernel), stride=stride, padding=pairs, dilation=dilation,
                    groups=groups, dtype=np.dtype(dtype).name,
                    has_bias=bias_shape is not None, output_padding=output_padding)
    if any(o <= 0 for o in spec.output_spatial):
        raise ShapeError(f"Given input size per channel: {_size_str(spatial)}. Calculated "
                         f"output size per channel: {_size_str(spec.output_spatial)}. Output "
                         f"size is too small")
    return spec, batched


def _same_pool_pairs(spatial, kernel, stride, dilation):
    """TensorFlow's SAME for pooling: ``ceil(L / stride)`` outputs, extra padding after."""
    pairs = []
    for L, k, s, d in zip(spatial, kernel, stride, dilation):
        out = -(-L // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - L, 0)
        pairs.append((total // 2, total - total // 2))
    return tuple(pairs)


def _pool_input(func, x_shape, nd):
    x_shape = tuple(x_shape)
    if len(x_shape) not in (nd + 1, nd + 2):
        raise ShapeError(f"{func}: Expected {nd + 1}D or {nd + 2}D input "
                         f"(C, *spatial) or (N, C, *spatial), but got input of size: "
                         f"{_shape_str(x_shape)}")
    batched = len(x_shape) == nd + 2
    full = x_shape if batched else (1,) + x_shape
    if any(s <= 0 for s in full[1:]):
        raise ShapeError(f"{func}: Expected input with non-zero channel and spatial sizes, "
                         f"but got input of size: {_shape_str(x_shape)}")
    return full, batched


def pool_spec(func, op, x_shape, nd, kernel_size, stride=None, padding=0, dilation=1,
              ceil_mode=False, count_include_pad=True, dtype="float32"):
    """Validate one max/avg pooling call and return ``(spec, batched)``."""
    full, batched = _pool_input(func, x_shape, nd)
    kernel = per_dim(kernel_size, nd, "kernel_size")
    stride = kernel if stride is None or (isinstance(stride, (list, tuple)) and not stride) \
        else per_dim(stride, nd, "stride")
    dilation = per_dim(dilation, nd, "dilation")
    _check_positive(kernel, "kernel_size must be greater than zero")
    _check_positive(stride, "stride should be greater than zero")
    _check_positive(dilation, "dilation should be greater than zero")
    spatial = full[2:]
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ShapeError(f"Invalid padding string {padding!r}, should be one of "
                             f"{set(PADDING_STRINGS)}")
        pairs = (((0, 0),) * nd if padding == "valid"
                 else _same_pool_pairs(spatial, kernel, stride, dilation))
    else:
        pairs = _padding_pairs(padding, nd)
    spec = PoolSpec(op=op, batch=full[0], channels=full[1], input_spatial=tuple(spatial),
                    kernel=kernel, stride=stride, padding=pairs, dilation=dilation,
                    ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad),
                    dtype=np.dtype(dtype).name)
    out = spec.output_spatial
    if any(o <= 0 for o in out):
        raise ShapeError(f"Given input size: {_shape_str(full[1:])}. Calculated output size: "
                         f"{_shape_str((full[1],) + out)}. Output size is too small")
    return spec, batched


def adaptive_pool_spec(func, x_shape, nd, output_size, dtype="float32"):
    """Validate an adaptive average pooling call; ``None`` in output_size keeps that size."""
    full, batched = _pool_input(func, x_shape, nd)
    if isinstance(output_size, (list, tuple)):
        if len(output_size) != nd:
            raise ShapeError(f"{func}: output_size must be an int or {nd} values, got "
                             f"{tuple(output_size)!r}")
        sizes = tuple(full[2 + i] if s is None else _int(s, "output_size")
                      for i, s in enumerate(output_size))
    else:
        sizes = (_int(output_size, "output_size"),) * nd
    _check_positive(sizes, f"{func}: output_size must be positive, got {sizes}")
    spec = PoolSpec(op="adaptive_avg_pool", batch=full[0], channels=full[1],
                    input_spatial=tuple(full[2:]), dtype=np.dtype(dtype).name,
                    adaptive_output=sizes)
    return spec, batched
