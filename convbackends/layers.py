"""PyTorch-like layers over NumPy parameters, called as ``layer(x)``.

Constructors take PyTorch's arguments and defaults, plus keyword-only ``backend=None``,
``dtype=np.float32`` and ``rng=None`` (a :class:`numpy.random.Generator` or a seed) for
PyTorch's default initialisation distributions. ``state_dict()`` uses PyTorch's key names,
so ``{k: v.numpy() for k, v in model.state_dict().items()}`` of a PyTorch twin loads
unchanged.
"""

import math

import numpy as np

from . import functional as F
from .errors import ShapeError
from .spec import PADDING_MODES, per_dim

__all__ = ["Module", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
           "ConvTranspose3d", "Sequential"]


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


class Module:
    """Base of every layer: parameters, buffers, children, train/eval, backend, state dicts.

    Subclasses list their parameter names in ``_parameters`` and their buffer names in
    ``_buffers``; any attribute that is a :class:`Module` is a child.
    """

    _parameters = ()
    _buffers = ()

    def __init__(self, *, backend=None):
        self.training = True
        self._backend = backend

    def forward(self, x):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def named_children(self):
        return [(k, v) for k, v in vars(self).items() if isinstance(v, Module)]

    def children(self):
        return [m for _, m in self.named_children()]

    def modules(self):
        """This module and every module below it, depth first."""
        yield self
        for child in self.children():
            yield from child.modules()

    @property
    def backend(self):
        """The backend every convolution and pooling inside this module runs on.

        Setting it sets it on every child too (a ``Sequential`` sets all its layers at once).
        """
        return self._backend

    @backend.setter
    def backend(self, value):
        self._backend = value
        for child in self.children():
            child.backend = value

    def train(self, mode=True):
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def _named_tensors(self, prefix=""):
        for name in self._parameters + self._buffers:
            value = getattr(self, name)
            if value is not None:
                yield prefix + name, value
        for child_name, child in self.named_children():
            yield from child._named_tensors(f"{prefix}{child_name}.")

    def state_dict(self):
        """Parameters and buffers by PyTorch's key names (the arrays themselves, not copies)."""
        return dict(self._named_tensors())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays in by PyTorch key; all-or-nothing.

        With ``strict`` (the default, as in PyTorch) missing and unexpected keys are errors;
        wrongly shaped entries always are. Every problem is listed in one
        :class:`ShapeError` and nothing is changed.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        wrong = [f"{k}: expected shape {list(own[k].shape)}, got "
                 f"{list(np.shape(state_dict[k]))}"
                 for k in own if k in state_dict and np.shape(state_dict[k]) != own[k].shape]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if wrong:
            problems.append("size mismatch: " + "; ".join(wrong))
        if problems:
            raise ShapeError(f"Error(s) in loading state_dict for {type(self).__name__}: "
                             + ". ".join(problems))
        for key, target in own.items():
            if key in state_dict:
                target[...] = np.asarray(state_dict[key], dtype=target.dtype)
        return self

    def extra_repr(self):
        return ""

    def __repr__(self):
        children = self.named_children()
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        body = "\n".join(f"  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in children)
        return f"{type(self).__name__}(\n{body}\n)"


class _ConvNd(Module):
    """Shared by Conv1d/2d/3d and ConvTranspose1d/2d/3d: validation and weight creation."""

    _parameters = ("weight", "bias")
    _nd = None
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", output_padding=0, *,
                 backend=None, dtype=np.float32, rng=None):
        super().__init__(backend=backend)
        nd = self._nd
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
        self.padding = padding if isinstance(padding, str) else padding
        self.padding_mode = padding_mode
        shape = ((in_channels, out_channels // groups) if self._transposed
                 else (out_channels, in_channels // groups)) + self.kernel_size
        # PyTorch: kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        # fan_in taken from weight dim 1; the bias uses the same bound.
        bound = 1.0 / math.sqrt(shape[1] * math.prod(self.kernel_size))
        gen = _rng(rng)
        self.weight = gen.uniform(-bound, bound, shape).astype(dtype)
        self.bias = gen.uniform(-bound, bound, out_channels).astype(dtype) if bias else None

    def forward(self, x):
        if self._transposed:
            return F.conv_transpose(x, self.weight, self.bias, self.stride, self.padding,
                                    self.output_padding, self.groups, self.dilation,
                                    backend=self.backend)
        return F.conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups, self.padding_mode, backend=self.backend)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        defaults = {"stride": (1,) * self._nd, "padding": 0, "dilation": (1,) * self._nd,
                    "groups": 1, "padding_mode": "zeros", "output_padding": (0,) * self._nd}
        for name, default in defaults.items():
            value = getattr(self, name)
            if value != default and not (name == "padding" and value == (0,) * self._nd):
                s += f", {name}={value!r}"
        if self.bias is None:
            s += ", bias=False"
        if self.backend is not None:
            s += f", backend={self.backend!r}"
        return s


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
    _transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros", *,
                 backend=None, dtype=np.float32, rng=None):
        if padding_mode != "zeros":
            raise ShapeError(f"Only 'zeros' padding mode is supported for "
                             f"{type(self).__name__}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, output_padding, backend=backend,
                         dtype=dtype, rng=rng)


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


class Sequential(Module):
    """Layers applied in order; children are named ``"0"``, ``"1"``, ... as in PyTorch."""

    def __init__(self, *layers, backend=None):
        super().__init__(backend=None)
        for i, layer in enumerate(layers):
            setattr(self, str(i), layer)
        if backend is not None:
            self.backend = backend

    def __getitem__(self, index):
        return self.children()[index]

    def __len__(self):
        return len(self.children())

    def forward(self, x):
        for layer in self.children():
            x = layer(x)
        return x
