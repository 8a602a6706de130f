"""The normalised description of one convolution or transposed convolution call.

:func:`conv_spec` validates a call's shapes and parameters once (PyTorch's wording where
PyTorch has one) and returns a frozen :class:`ConvSpec`; backends read only the spec.
"""

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ShapeError
from .geometry import (as_int, output_length, padding_pairs, per_dim, same_conv_pairs,
                       transposed_output_length)
from .layout import (CHANNELS_FIRST, check_data_format, layout_name, shape_to_first,
                     shape_to_last)
from .messages import shape_str, size_str

__all__ = ["ConvSpec", "conv_spec", "padded_spec", "PADDING_STRINGS", "PADDING_MODES"]

PADDING_STRINGS = ("valid", "same")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_DIM_NAMES = {1: ("width",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def _check_positive(values, message):
    if any(v <= 0 for v in values):
        raise ShapeError(message)


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
    data_format : {"channels_first", "channels_last"}
        The layout of input and output: ``input_shape`` and ``output_shape`` are
        ``(N, C, *spatial)`` or ``(N, *spatial, C)``; the weight's layout never changes.

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
    data_format: str = CHANNELS_FIRST

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
        """The input's shape, in ``data_format``."""
        return shape_to_last((self.batch, self.in_channels) + tuple(self.input_spatial),
                             self.data_format)

    @property
    def weight_shape(self):
        if self.transposed:
            return (self.in_channels, self.out_channels // self.groups) + tuple(self.kernel)
        return (self.out_channels, self.in_channels // self.groups) + tuple(self.kernel)

    @property
    def output_shape(self):
        """The output's shape, in ``data_format``."""
        return shape_to_last((self.batch, self.out_channels) + self.output_spatial,
                             self.data_format)

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



def _check_channels(x_shape, full_x, expected, data_format, prefix):
    """The input's channel count against the weight's, in the input's layout."""
    if full_x[1] == expected:
        return
    if data_format == CHANNELS_FIRST:
        raise ShapeError(f"{prefix}expected input{shape_str(x_shape)} to have {expected} "
                         f"channels, but got {full_x[1]} channels instead")
    nd = len(full_x) - 2
    raise ShapeError(f"{prefix}expected input of shape "
                     f"{layout_name(data_format, nd, expected, len(x_shape) == nd + 2)} in "
                     f"{data_format}, but got input of size {shape_str(x_shape)} "
                     f"(C={full_x[1]})")


def conv_spec(func, x_shape, w_shape, bias_shape=None, *, op="conv", stride=1, padding=0,
              dilation=1, groups=1, output_padding=0, dtype="float32",
              data_format=CHANNELS_FIRST):
    """Validate one (transposed) convolution call and return ``(spec, batched)``.

    ``func`` names the public function in messages (``"conv2d"``). ``x_shape`` may lack the
    batch dimension (unbatched input), in which case ``batched`` is ``False`` and the spec
    has ``batch == 1``. ``x_shape`` is in ``data_format``; the weight's shape is always
    PyTorch's.
    """
    data_format = check_data_format(data_format)
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    nd = len(w_shape) - 2
    if nd not in (1, 2, 3):
        raise ShapeError(f"{func}: weight must have 3, 4 or 5 dimensions "
                         f"(channels, channels / groups, *kernel), got weight of size "
                         f"{shape_str(w_shape)}")
    if len(x_shape) not in (nd + 1, nd + 2):
        raise ShapeError(f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) input to "
                         f"{func}, but got input of size: {shape_str(x_shape)}")
    batched = len(x_shape) == nd + 2
    full_x = shape_to_first(x_shape if batched else (1,) + x_shape, data_format)
    transposed = op == "conv_transpose"

    stride = per_dim(stride, nd, "stride")
    dilation = per_dim(dilation, nd, "dilation")
    output_padding = per_dim(output_padding, nd, "output_padding")
    groups = as_int(groups, "groups")
    _check_positive(stride, "non-positive stride is not supported")
    _check_positive(dilation, "dilation should be greater than zero")
    if groups <= 0:
        raise ShapeError("non-positive groups is not supported")
    if any(p < 0 for p in output_padding):
        raise ShapeError("negative output_padding is not supported")
    kernel = w_shape[2:]
    if any(k <= 0 for k in kernel) or any(s <= 0 for s in full_x[1:]) or w_shape[0] <= 0:
        raise ShapeError(f"{func}: empty dimensions are not supported: input of size "
                         f"{shape_str(x_shape)}, weight of size {shape_str(w_shape)}")

    if w_shape[0] % groups:
        raise ShapeError(f"Given groups={groups}, expected weight to be divisible by {groups} "
                         f"at dimension 0, but got weight of size {shape_str(w_shape)} instead")
    if transposed:
        in_channels, out_channels = w_shape[0], w_shape[1] * groups
        _check_channels(x_shape, full_x, in_channels, data_format,
                        f"Given transposed=1, weight of size {shape_str(w_shape)}, ")
    else:
        in_channels, out_channels = w_shape[1] * groups, w_shape[0]
        _check_channels(x_shape, full_x, in_channels, data_format,
                        f"Given groups={groups}, weight of size {shape_str(w_shape)}, ")
    if bias_shape is not None and tuple(bias_shape) != (out_channels,):
        raise ShapeError(f"Given weight of size {shape_str(w_shape)}, expected bias to be "
                         f"1-dimensional with {out_channels} elements, but got bias of size "
                         f"{shape_str(bias_shape)} instead")

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
            pairs = same_conv_pairs(kernel, dilation)
    else:
        pairs = padding_pairs(padding, nd)

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
            raise ShapeError(f"Calculated padded input size per channel: {size_str(padded)}. "
                             f"Kernel size: {size_str(effective)}. Kernel size can't be "
                             f"greater than actual input size")
    spec = ConvSpec(op=op, batch=full_x[0], in_channels=in_channels,
                    out_channels=out_channels, input_spatial=tuple(spatial),
                    kernel=tuple(kernel), stride=stride, padding=pairs, dilation=dilation,
                    groups=groups, dtype=np.dtype(dtype).name,
                    has_bias=bias_shape is not None, output_padding=output_padding,
                    data_format=data_format)
    if any(o <= 0 for o in spec.output_spatial):
        raise ShapeError(f"Given input size per channel: {size_str(spatial)}. Calculated "
                         f"output size per channel: {size_str(spec.output_spatial)}. Output "
                         f"size is too small")
    return spec, batched


def padded_spec(spec, padding_mode):
    """The spec a backend sees once a non-zero ``padding_mode`` has padded the input."""
    if padding_mode not in PADDING_MODES:
        raise ShapeError(f"padding_mode must be one of {list(PADDING_MODES)}, but got "
                         f"padding_mode={padding_mode!r}")
    if padding_mode == "zeros" or not spec.has_padding:
        return spec
    if spec.transposed:
        raise ShapeError(f"Only 'zeros' padding mode is supported for transposed "
                         f"convolution, got padding_mode={padding_mode!r}")
    for L, (pb, pa) in zip(spec.input_spatial, spec.padding):
        if padding_mode == "reflect" and max(pb, pa) >= L:
            raise ShapeError(f"Padding size should be less than the corresponding input "
                             f"dimension, but got: padding ({pb}, {pa}) for an input "
                             f"dimension of size {L} (padding_mode='reflect')")
        if padding_mode == "circular" and max(pb, pa) > L:
            raise ShapeError(f"Padding value causes wrapping around more than once: padding "
                             f"({pb}, {pa}) for an input dimension of size {L} "
                             f"(padding_mode='circular')")
    return spec.replace(input_spatial=spec.padded_spatial, padding=((0, 0),) * spec.ndim)
