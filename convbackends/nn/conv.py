"""Convolution layers: Conv1d/2d/3d and ConvTranspose1d/2d/3d, as ``torch.nn``'s.

Each forward is one call of :func:`convbackends.conv` or :func:`convbackends.conv_transpose`
on the layer's ``backend``; ``output_shape`` and ``macs`` come from the same
:class:`~convbackends.ConvSpec` the call builds. ``data_format="channels_last"`` takes and
gives ``(N, *spatial, C)`` (see :mod:`convbackends.nn.layout`); weights keep PyTorch's layout.
"""

import math

import numpy as np

from .. import functional as F
from .. import grad as G
from ..errors import ShapeError
from ..spec import PADDING_MODES, conv_spec, per_dim
from ..spec.layout import CHANNELS_FIRST, check_data_format
from .layout import first_view, in_layout
from .module import Module, _batched, _explain, _repr_backend, _uniform, _unbatched_like

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
           "ConvTranspose3d"]


class _ConvNd(Module):
    """Shared by Conv1d/2d/3d and ConvTranspose1d/2d/3d: validation and weight creation."""

    _parameters = ("weight", "bias")
    _nd = None
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", output_padding=0, *,
                 backend=None, dtype=np.float32, rng=None, data_format=CHANNELS_FIRST):
        super().__init__(backend=backend)
        nd = self._nd
        self.data_format = check_data_format(data_format)
        if groups <= 0:
            raise ShapeError("groups must be a positive integer")
        if in_channels % groups:
            raise ShapeError("in_channels must be divisible by groups")
        if out_channels % groups:
            raise ShapeError("out_channels must be divisible by groups")
        if padding_mode not in PADDING_MODES:
            raise ShapeError(f"padding_mode must be one of {list(PADDING_MODES)}, but got "
                             f"padding_mode={padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = per_dim(kernel_size, nd, "kernel_size")
        self.stride = per_dim(stride, nd, "stride")
        self.dilation = per_dim(dilation, nd, "dilation")
        self.output_padding = per_dim(output_padding, nd, "output_padding")
        if isinstance(padding, str) and padding == "same" and any(s != 1 for s in self.stride):
            raise ShapeError("padding='same' is not supported for strided convolutions")
        self.padding = padding
        self.padding_mode = padding_mode
        shape = ((in_channels, out_channels // groups) if self._transposed
                 else (out_channels, in_channels // groups)) + self.kernel_size
        # PyTorch: kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        # fan_in taken from weight dim 1; the bias uses the same bound.
        bound = 1.0 / math.sqrt(shape[1] * math.prod(self.kernel_size))
        gen = np.random.default_rng(rng)
        self.weight = _uniform(gen, shape, bound, dtype)
        self.bias = _uniform(gen, (out_channels,), bound, dtype) if bias else None

    def forward(self, x):
        if self._transposed:
            y = F.conv_transpose(x, self.weight, self.bias, self.stride, self.padding,
                                 self.output_padding, self.groups, self.dilation,
                                 backend=self.backend, data_format=self.data_format)
        else:
            y = F.conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                       self.groups, self.padding_mode, backend=self.backend,
                       data_format=self.data_format)
        self._keep(y, x)     # the weight's gradient needs the input
        return y

    def _backward(self, grad_output):
        """Input and weight gradients through :mod:`convbackends.grad` on the layer's
        backend, with the layer's geometry; the bias gradient sums over batch and space.
        Channels last, on channels-first views of the input and gradient."""
        grad, (x,) = self._take(grad_output)
        nd, layout = self._nd, self.data_format
        x, grad = first_view(x, nd, layout), first_view(grad, nd, layout)
        xb, gb = _batched(x, nd), _batched(grad, nd)
        if self._transposed:
            params = dict(stride=self.stride, padding=self.padding,
                          output_padding=self.output_padding, groups=self.groups,
                          dilation=self.dilation, backend=self.backend)
            grad_input = getattr(G, f"conv_transpose{nd}d_input")
            grad_weight = getattr(G, f"conv_transpose{nd}d_weight")
        else:
            params = dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                          groups=self.groups, padding_mode=self.padding_mode,
                          backend=self.backend)
            grad_input = getattr(G, f"conv{nd}d_input")
            grad_weight = getattr(G, f"conv{nd}d_weight")
        self._add_grad("weight", grad_weight(xb, self.weight.shape, gb, **params))
        if self.bias is not None:
            self._add_grad("bias", gb.sum(axis=(0,) + tuple(range(2, gb.ndim)),
                                          dtype=np.float64))
        return in_layout(_unbatched_like(grad_input(xb.shape, self.weight, gb, **params),
                                         x.shape), nd, layout)

    def _spec(self, input_shape):
        op = "conv_transpose" if self._transposed else "conv"
        return conv_spec(type(self).__name__.lower(), input_shape, self.weight.shape,
                         None if self.bias is None else self.bias.shape, op=op,
                         stride=self.stride, padding=self.padding, dilation=self.dilation,
                         groups=self.groups, output_padding=self.output_padding,
                         dtype=self.weight.dtype, data_format=self.data_format)

    def output_shape(self, input_shape):
        spec, batched = self._spec(input_shape)
        return spec.output_shape if batched else spec.output_shape[1:]

    def macs(self, input_shape):
        return self._spec(input_shape)[0].macs

    def explain(self, input_shape, dtype=None):
        """The :func:`convbackends.explain` report of this layer's call on ``input_shape``
        (in the weight's dtype, on ``self.backend``, ``None`` being the default)."""
        params = dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                      groups=self.groups, data_format=self.data_format)
        if self._transposed:
            params["output_padding"] = self.output_padding
        return _explain(tuple(input_shape), self.weight.shape,
                        op="conv_transpose" if self._transposed else "conv",
                        dtype=self.weight.dtype.name, padding_mode=self.padding_mode,
                        bias=self.bias is not None, backend=self.backend, **params)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        defaults = {"stride": (1,) * self._nd, "padding": 0, "dilation": (1,) * self._nd,
                    "groups": 1, "padding_mode": "zeros", "output_padding": (0,) * self._nd,
                    "data_format": CHANNELS_FIRST}
        for name, default in defaults.items():
            value = getattr(self, name)
            if value != default and not (name == "padding" and value == (0,) * self._nd):
                s += f", {name}={value!r}"
        if self.bias is None:
            s += ", bias=False"
        return _repr_backend(s, self.backend)


class Conv1d(_ConvNd):
    """1-D convolution layer, as ``torch.nn.Conv1d``; input ``(N, C_in, L)``."""
    _nd = 1


class Conv2d(_ConvNd):
    """2-D convolution layer, as ``torch.nn.Conv2d``; input ``(N, C_in, H, W)``.

    ``weight`` has shape ``(out_channels, in_channels // groups, kH, kW)``, ``bias``
    ``(out_channels,)``; output size per dim
    ``floor((L + 2*padding - dilation*(k - 1) - 1) / stride) + 1``.
    """
    _nd = 2


class Conv3d(_ConvNd):
    """3-D convolution layer, as ``torch.nn.Conv3d``; input ``(N, C_in, D, H, W)``."""
    _nd = 3


class _ConvTransposeNd(_ConvNd):
    """Shared by ConvTranspose1d/2d/3d: PyTorch's argument order, zero padding only."""

    _transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros", *,
                 backend=None, dtype=np.float32, rng=None, data_format=CHANNELS_FIRST):
        if padding_mode != "zeros":
            raise ShapeError(f"Only 'zeros' padding mode is supported for "
                             f"{type(self).__name__}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, output_padding, backend=backend,
                         dtype=dtype, rng=rng, data_format=data_format)


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution layer, as ``torch.nn.ConvTranspose1d``."""
    _nd = 1


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution layer, as ``torch.nn.ConvTranspose2d``.

    ``weight`` has shape ``(in_channels, out_channels // groups, kH, kW)``; output size
    ``(L - 1)*stride - 2*padding + dilation*(k - 1) + output_padding + 1``.
    """
    _nd = 2


class ConvTranspose3d(_ConvTransposeNd):
    """3-D transposed convolution layer, as ``torch.nn.ConvTranspose3d``."""
    _nd = 3
