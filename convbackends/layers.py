"""PyTorch-like layers over NumPy parameters, called as ``layer(x)``.

Constructors take PyTorch's arguments and defaults; layers with parameters also take
keyword-only ``backend=None``, ``dtype=np.float32`` and ``rng=None`` (a
:class:`numpy.random.Generator` or a seed) for PyTorch's default initialisation
distributions. ``state_dict()`` uses PyTorch's key names, so
``{k: v.numpy() for k, v in model.state_dict().items()}`` of a PyTorch twin loads unchanged.

Convolutions and pooling run through :mod:`convbackends.functional` on the layer's
``backend``; the other layers are NumPy expressions. Every layer also knows, from shapes
alone, its ``output_shape(input_shape)`` and its ``macs(input_shape)``, which is how
:func:`convbackends.models.summary` tabulates a model without running it.
"""

import math

import numpy as np

from . import dispatch
from . import functional as F
from .errors import ShapeError, UnsupportedError
from .policy import AutoPolicy
from .spec import (PADDING_MODES, adaptive_pool_spec, check_dtypes, conv_spec, per_dim,
                   pool_spec)

__all__ = ["Module", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
           "ConvTranspose3d", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d",
           "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
           "AdaptiveAvgPool3d", "BatchNorm2d", "LocalResponseNorm", "ReLU", "Tanh",
           "Linear", "Dropout", "Flatten", "Sequential", "BasicBlock"]


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _uniform(gen, shape, bound, dtype):
    """U(-bound, bound) drawn straight in ``dtype`` (no float64 temporary for big layers)."""
    a = gen.random(shape, dtype=np.dtype(dtype).type)
    a *= 2 * bound
    a -= bound
    return a


class Module:
    """Base of every layer: parameters, buffers, children, train/eval, backend, state dicts.

    Subclasses list their parameter names in ``_parameters`` and their buffer names in
    ``_buffers``; any attribute that is a :class:`Module` is a child, named by the attribute.
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
        ``None`` means the current default (see :func:`convbackends.set_backend`). A pooling
        layer whose backend computes no pooling at all (``im2col``, ``fft``, ``winograd``)
        pools on ``"auto"`` instead, so ``model.backend = "im2col"`` runs every convolution
        on im2col; a backend that pools but declines one geometry still raises.
        """
        return self._backend

    @backend.setter
    def backend(self, value):
        self._backend = value
        for child in self.children():
            child.backend = value

    def train(self, mode=True):
        """Set training mode (``True``) or evaluation mode on this module and all below it."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode: Dropout is the identity, BatchNorm uses its running statistics."""
        return self.train(False)

    def _named_tensors(self, prefix="", names=None):
        for name in self._parameters + self._buffers if names is None else names(self):
            value = getattr(self, name)
            if value is not None:
                yield prefix + name, value
        for child_name, child in self.named_children():
            yield from child._named_tensors(f"{prefix}{child_name}.", names)

    def named_parameters(self):
        """``(key, array)`` for every parameter (no buffers), keys as in :meth:`state_dict`."""
        return list(self._named_tensors(names=lambda m: m._parameters))

    def parameters(self):
        return [p for _, p in self.named_parameters()]

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
        # Convert everything before writing anything, so a bad value changes nothing.
        values = {k: np.asarray(state_dict[k], dtype=own[k].dtype) for k in own
                  if k in state_dict}
        for key, value in values.items():
            own[key][...] = value
        return self

    def output_shape(self, input_shape):
        """The shape ``self(x)`` has for ``x`` of ``input_shape``, from shapes alone."""
        if not self.named_children():
            raise NotImplementedError(f"{type(self).__name__} does not define output_shape()")
        shape = tuple(input_shape)
        for *_, shape in self.layer_shapes(shape):
            pass
        return shape

    def layer_shapes(self, input_shape, prefix=""):
        """Yield ``(name, layer, input_shape, output_shape)`` for each leaf layer a forward
        on ``input_shape`` runs, in order, without computing anything.

        Leaf layers yield themselves; containers override this to say how data flows.
        """
        if self.named_children():
            raise NotImplementedError(f"{type(self).__name__} has children but does not "
                                      f"define layer_shapes()")
        shape = tuple(input_shape)
        yield prefix or type(self).__name__, self, shape, self.output_shape(shape)

    def macs(self, input_shape):
        """Multiply-accumulates of one forward on ``input_shape`` (0 for this layer kind)."""
        return 0

    def extra_repr(self):
        return ""

    def __repr__(self):
        children = self.named_children()
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        body = "\n".join(f"  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in children)
        return f"{type(self).__name__}(\n{body}\n)"


class _Elementwise(Module):
    """A layer whose output has its input's shape."""

    def output_shape(self, input_shape):
        return tuple(input_shape)


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _chain(named_layers, shape, prefix):
    """Yield the :meth:`Module.layer_shapes` rows of layers applied in order; return the
    final shape (a child's output is its last row's output)."""
    for name, layer in named_layers:
        for row in layer.layer_shapes(shape, _join(prefix, name)):
            shape = row[3]
            yield row
    return shape


def _non_defaults(layer, defaults):
    """``", name=value"`` for each ``(name, default)`` whose value differs."""
    return "".join(f", {name}={getattr(layer, name)!r}" for name, default in defaults
                   if getattr(layer, name) != default)


def _repr_backend(s, backend):
    if backend is None:
        return s
    return f"{s}, backend={backend!r}" if s else f"backend={backend!r}"


# ----------------------------------------------------------------------------- convolution


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
        self.padding = padding
        self.padding_mode = padding_mode
        shape = ((in_channels, out_channels // groups) if self._transposed
                 else (out_channels, in_channels // groups)) + self.kernel_size
        # PyTorch: kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        # fan_in taken from weight dim 1; the bias uses the same bound.
        bound = 1.0 / math.sqrt(shape[1] * math.prod(self.kernel_size))
        gen = _rng(rng)
        self.weight = _uniform(gen, shape, bound, dtype)
        self.bias = _uniform(gen, (out_channels,), bound, dtype) if bias else None

    def forward(self, x):
        if self._transposed:
            return F.conv_transpose(x, self.weight, self.bias, self.stride, self.padding,
                                    self.output_padding, self.groups, self.dilation,
                                    backend=self.backend)
        return F.conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups, self.padding_mode, backend=self.backend)

    def _spec(self, input_shape):
        op = "conv_transpose" if self._transposed else "conv"
        return conv_spec(type(self).__name__.lower(), input_shape, self.weight.shape,
                         None if self.bias is None else self.bias.shape, op=op,
                         stride=self.stride, padding=self.padding, dilation=self.dilation,
                         groups=self.groups, output_padding=self.output_padding,
                         dtype=self.weight.dtype)

    def output_shape(self, input_shape):
        spec, batched = self._spec(input_shape)
        return spec.output_shape if batched else spec.output_shape[1:]

    def macs(self, input_shape):
        return self._spec(input_shape)[0].macs

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


# ----------------------------------------------------------------------------- pooling


def _pool_backend(backend, op):
    """The backend a pooling layer names for ``op`` (see :attr:`Module.backend`).

    An unavailable backend is passed on, so the call says what is missing.
    """
    if backend is None:
        return None
    obj = dispatch.get_backend(backend) if isinstance(backend, str) else backend
    if (isinstance(obj, AutoPolicy) or obj.available() is not None
            or callable(getattr(obj, op, None))):
        return backend
    return "auto"


class _PoolNd(Module):
    """Shared by the max and average pooling layers: geometry, shapes, repr."""

    _nd = None
    _op = None

    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode, count_include_pad,
                 backend):
        super().__init__(backend=backend)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        self.count_include_pad = count_include_pad

    def _spec(self, input_shape):
        return pool_spec(f"{self._op}{self._nd}d", self._op, input_shape, self._nd,
                         self.kernel_size, self.stride, self.padding, self.dilation,
                         self.ceil_mode, self.count_include_pad)

    def output_shape(self, input_shape):
        spec, batched = self._spec(input_shape)
        return spec.output_shape if batched else spec.output_shape[1:]

    def forward(self, x):
        func = getattr(F, f"{self._op}{self._nd}d")
        backend = _pool_backend(self.backend, self._op)
        if self._op == "max_pool":
            return func(x, self.kernel_size, self.stride, self.padding, self.dilation,
                        self.ceil_mode, backend=backend)
        return func(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                    self.count_include_pad, backend=backend)

    def extra_repr(self):
        s = f"kernel_size={self.kernel_size}" + _non_defaults(self, (
            ("stride", None), ("padding", 0), ("dilation", 1), ("ceil_mode", False),
            ("count_include_pad", True)))
        return _repr_backend(s, self.backend)


class _MaxPoolNd(_PoolNd):
    _op = "max_pool"

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False, *, backend=None):
        if return_indices:
            raise UnsupportedError(f"{type(self).__name__}: return_indices=True is not "
                                   f"supported")
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode, True, backend)


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
        Only ``False`` (the default) is supported.
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
    _op = "avg_pool"

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None, *, backend=None):
        if divisor_override is not None:
            raise UnsupportedError(f"{type(self).__name__}: divisor_override is not "
                                   f"supported")
        super().__init__(kernel_size, stride, padding, 1, ceil_mode, count_include_pad,
                         backend)


class AvgPool1d(_AvgPoolNd):
    """1-D average pooling, as ``torch.nn.AvgPool1d``; see :class:`AvgPool2d`."""

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
    divisor_override : None
        Only ``None`` (the default) is supported.
    backend : str or backend object, optional
    """
    _nd = 2


class AvgPool3d(_AvgPoolNd):
    """3-D average pooling, as ``torch.nn.AvgPool3d``; see :class:`AvgPool2d`."""
    _nd = 3


class _AdaptiveAvgPoolNd(Module):
    _nd = None

    def __init__(self, output_size, *, backend=None):
        super().__init__(backend=backend)
        self.output_size = output_size

    def forward(self, x):
        func = getattr(F, f"adaptive_avg_pool{self._nd}d")
        return func(x, self.output_size,
                    backend=_pool_backend(self.backend, "adaptive_avg_pool"))

    def output_shape(self, input_shape):
        spec, batched = adaptive_pool_spec(f"adaptive_avg_pool{self._nd}d", input_shape,
                                           self._nd, self.output_size)
        return spec.output_shape if batched else spec.output_shape[1:]

    def extra_repr(self):
        return _repr_backend(f"output_size={self.output_size!r}", self.backend)


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


# ----------------------------------------------------------------------------- normalisation


class BatchNorm2d(Module):
    """Batch normalisation over ``(N, C, H, W)``, as ``torch.nn.BatchNorm2d``.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel. In training mode
    ``mean`` and ``var`` are the batch's (biased variance) and, with
    ``track_running_stats``, update ``running_mean`` and ``running_var`` (unbiased batch
    variance) as ``running = (1 - momentum)*running + momentum*batch``; in evaluation mode
    the running statistics are used.

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
    backend, rng
        Accepted as on every layer with parameters; normalisation is a NumPy expression
        and its initialisation is deterministic.
    dtype : numpy dtype. Default: float32
    """

    _parameters = ("weight", "bias")
    _buffers = ("running_mean", "running_var", "num_batches_tracked")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, backend=None, dtype=np.float32, rng=None):
        super().__init__(backend=backend)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = np.ones(num_features, dtype) if affine else None
        self.bias = np.zeros(num_features, dtype) if affine else None
        self.running_mean = np.zeros(num_features, dtype) if track_running_stats else None
        self.running_var = np.ones(num_features, dtype) if track_running_stats else None
        self.num_batches_tracked = np.array(0, np.int64) if track_running_stats else None

    def output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise ShapeError(f"expected 4D input (got {len(input_shape)}D input)")
        if input_shape[1] != self.num_features:
            raise ShapeError(f"BatchNorm2d: expected input with {self.num_features} "
                             f"channels, got input of size {list(input_shape)}")
        return input_shape

    def _batch_statistics(self, x):
        count = x.size // x.shape[1]
        if count <= 1:
            raise ShapeError(f"Expected more than 1 value per channel when training, got "
                             f"input size {list(x.shape)}")
        # float64 sums keep the statistics exact to float32 on large activations.
        mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
        var = np.square(x - mean[:, None, None].astype(x.dtype), dtype=np.float64).mean(
            axis=(0, 2, 3))
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
        x = np.asarray(x)
        self.output_shape(x.shape)
        if self.training or not self.track_running_stats:
            mean, var = self._batch_statistics(x)
        else:
            mean, var = self.running_mean.astype(np.float64), self.running_var
        scale = 1.0 / np.sqrt(np.asarray(var, np.float64) + self.eps)
        if self.affine:
            scale = scale * self.weight
        shift = -mean * scale + (self.bias if self.affine else 0.0)
        y = x * scale.astype(x.dtype)[:, None, None]
        y += shift.astype(x.dtype)[:, None, None]
        return y

    def extra_repr(self):
        s = f"{self.num_features}" + _non_defaults(self, (
            ("eps", 1e-5), ("momentum", 0.1), ("affine", True), ("track_running_stats", True)))
        return _repr_backend(s, self.backend)


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


# ----------------------------------------------------------------------------- element-wise


class ReLU(_Elementwise):
    """``max(x, 0)``, as ``torch.nn.ReLU``; ``inplace`` is accepted for PyTorch code, but
    the input is never modified."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        return np.maximum(x, 0)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class Tanh(_Elementwise):
    """``tanh(x)``, as ``torch.nn.Tanh``."""

    def forward(self, x):
        return np.tanh(x)


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
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, inplace
        self._rng = _rng(rng)

    def forward(self, x):
        x = np.asarray(x)
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return np.zeros_like(x)
        keep = self._rng.random(x.shape) >= self.p
        return np.where(keep, x * x.dtype.type(1 / (1 - self.p)), x.dtype.type(0))

    def extra_repr(self):
        return _non_defaults(self, (("p", 0.5), ("inplace", False))).lstrip(", ")


class Flatten(Module):
    """Merge dims ``start_dim..end_dim`` into one, as ``torch.nn.Flatten``.

    Parameters
    ----------
    start_dim : int. Default: 1
    end_dim : int. Default: -1
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        start, end = (d % max(len(shape), 1) for d in (self.start_dim, self.end_dim))
        if start > end:
            raise ShapeError(f"Flatten: start_dim {self.start_dim} comes after end_dim "
                             f"{self.end_dim} for input of size {list(shape)}")
        return shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]

    def forward(self, x):
        x = np.asarray(x)
        return x.reshape(self.output_shape(x.shape))

    def extra_repr(self):
        return _non_defaults(self, (("start_dim", 1), ("end_dim", -1))).lstrip(", ")


class Linear(Module):
    """``y = x @ weight.T + bias``, as ``torch.nn.Linear``; input ``(*, in_features)``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool. Default: True
    backend : accepted as on every layer with parameters (a matrix product needs none)
    dtype : numpy dtype. Default: float32
    rng : numpy.random.Generator or seed, optional
        ``weight`` ``(out_features, in_features)`` and ``bias`` ``(out_features,)`` are
        drawn from U(-1/sqrt(in_features), 1/sqrt(in_features)), as PyTorch's
        ``kaiming_uniform_(a=sqrt(5))`` and bias rule give.
    """

    _parameters = ("weight", "bias")

    def __init__(self, in_features, out_features, bias=True, *, backend=None,
                 dtype=np.float32, rng=None):
        super().__init__(backend=backend)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        gen = _rng(rng)
        self.weight = _uniform(gen, (out_features, in_features), bound, dtype)
        self.bias = _uniform(gen, (out_features,), bound, dtype) if bias else None

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if not shape or shape[-1] != self.in_features:
            rows = math.prod(shape[:-1]) if shape else 1
            raise ShapeError(f"mat1 and mat2 shapes cannot be multiplied "
                             f"({rows}x{shape[-1] if shape else 0} and "
                             f"{self.in_features}x{self.out_features})")
        return shape[:-1] + (self.out_features,)

    def macs(self, input_shape):
        return math.prod(tuple(input_shape)[:-1]) * self.in_features * self.out_features

    def forward(self, x):
        x = np.asarray(x)
        check_dtypes("linear", x, self.weight, self.bias)
        self.output_shape(x.shape)
        y = x @ self.weight.T
        if self.bias is not None:
            y += self.bias
        return y

    def extra_repr(self):
        s = f"in_features={self.in_features}, out_features={self.out_features}"
        if self.bias is None:
            s += ", bias=False"
        return _repr_backend(s, self.backend)


# ----------------------------------------------------------------------------- containers


class Sequential(Module):
    """Layers applied in order, as ``torch.nn.Sequential``.

    ``Sequential(a, b, c)`` names its children ``"0"``, ``"1"``, ...; ``Sequential(d)`` with
    one dict (name -> layer, as PyTorch's ``OrderedDict`` form) keeps the given names, which
    become the state-dict key prefixes. ``backend=`` sets the backend of every layer inside.
    """

    def __init__(self, *layers, backend=None):
        super().__init__(backend=None)
        named = (layers[0].items() if len(layers) == 1 and isinstance(layers[0], dict)
                 else ((str(i), layer) for i, layer in enumerate(layers)))
        for name, layer in named:
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: {name!r} is a {type(layer).__name__}, not a "
                                f"Module")
            setattr(self, name, layer)
        if backend is not None:
            self.backend = backend

    def __getitem__(self, index):
        """The layer at ``index``; a slice gives a ``Sequential`` of the same layers (shared,
        not copied) under their names, as in PyTorch."""
        if isinstance(index, slice):
            return Sequential(dict(self.named_children()[index]))
        return self.children()[index]

    def __len__(self):
        return len(self.children())

    def forward(self, x):
        for layer in self.children():
            x = layer(x)
        return x

    def layer_shapes(self, input_shape, prefix=""):
        yield from _chain(self.named_children(), tuple(input_shape), prefix)


class BasicBlock(Module):
    """The residual unit of ResNet-18/34, as torchvision's ``BasicBlock``.

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, where both convolutions are
    3x3 without bias (the first with ``stride``) and the shortcut is the identity, or
    ``downsample`` (torchvision: ``Sequential(Conv2d 1x1 with stride, BatchNorm2d)``) where
    the shape changes.

    Parameters
    ----------
    inplanes, planes : int
        Input and output channels.
    stride : int. Default: 1
    downsample : Module, optional
        Applied to ``x`` for the shortcut. Default: None (identity)
    backend, dtype, rng
        As for :class:`Conv2d`.
    """

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, *, backend=None,
                 dtype=np.float32, rng=None):
        super().__init__(backend=None)
        gen = _rng(rng)
        self.conv1 = Conv2d(inplanes, planes, 3, stride, 1, bias=False, dtype=dtype, rng=gen)
        self.bn1 = BatchNorm2d(planes, dtype=dtype)
        self.relu = ReLU(inplace=True)
        self.conv2 = Conv2d(planes, planes, 3, 1, 1, bias=False, dtype=dtype, rng=gen)
        self.bn2 = BatchNorm2d(planes, dtype=dtype)
        self.downsample = downsample
        self.stride = stride
        if backend is not None:
            self.backend = backend

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)

    def layer_shapes(self, input_shape, prefix=""):
        shape = tuple(input_shape)
        main = yield from _chain(((name, getattr(self, name)) for name in
                                  ("conv1", "bn1", "relu", "conv2", "bn2")), shape, prefix)
        if self.downsample is not None:
            shape = yield from _chain([("downsample", self.downsample)], shape, prefix)
        if shape != main:
            raise ShapeError(f"BasicBlock: the shortcut gives {list(shape)} but the residual "
                             f"branch gives {list(main)}; a downsample module is needed")
        yield from self.relu.layer_shapes(main, _join(prefix, "relu"))
