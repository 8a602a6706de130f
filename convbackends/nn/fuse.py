"""Inference fusion: a model rewritten so that each convolution does its neighbours' work.

``fuse(model)`` (or ``model.fuse()``) returns an evaluation-mode copy in which

- an eval-mode BatchNorm right after a convolution is folded into its weight and bias
  (``w' = w * s``, ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``,
  computed in float64 and rounded once);
- a ReLU or Tanh after it (and ResNet's residual add before that ReLU) runs as the
  convolution's
  epilogue (:func:`convbackends.conv`'s ``residual=`` and ``activation=``): no extra pass
  over the output, no extra array;
- the folded weights are prepacked once: C-contiguous, in the call's dtype and immutable
  (backed by ``bytes``), so a backend may keep what it derives from them (Winograd's
  transformed filters) without checking them on every call;
- each convolution's output buffer is reused by its next call of the same shape, unless the
  previous output is still referenced anywhere (the caller kept it, or a view of it).

The layers that did the folded work stay in place as :class:`Identity`, so a ``Sequential``
keeps its indices and the convolutions keep their ``state_dict`` names. A fused model gives
the unfused model's outputs within the float32 bound; it runs forward only (``backward``
and train-mode forwards raise :class:`~convbackends.UnsupportedError`) — fuse again after
changing the original's weights.
"""

import copy
import sys
import threading
import weakref

import numpy as np

from .. import functional as F
from ..errors import UnsupportedError
from .activation import Identity, ReLU, Tanh
from .container import BasicBlock, Sequential
from .conv import _ConvNd
from .module import Module
from .norm import BatchNorm1d, BatchNorm2d, BatchNorm3d, _BatchNorm

__all__ = ["fuse", "FusedConv", "FusedBasicBlock"]

_BATCH_NORM = {1: BatchNorm1d, 2: BatchNorm2d, 3: BatchNorm3d}
_ACTIVATIONS = {ReLU: "relu", Tanh: "tanh"}
# Output buffers per thread (a thread never reuses another's) and per layer.
_BUFFERS = threading.local()
# sys.getrefcount of a buffer that nothing outside the cache holds: the cache's dict, the
# local name, and getrefcount's own argument.
_UNREFERENCED = 3
_REUSES_BUFFERS = sys.implementation.name == "cpython"


def fuse(model):
    """An evaluation-mode copy of ``model`` rewritten for inference (see the module text).

    ``model`` itself is not changed. Every ``Sequential`` (at any depth) has its
    ``Conv -> BatchNorm -> ReLU``, ``Conv -> BatchNorm`` and ``Conv -> ReLU`` (or ``Tanh``)
    runs fused, and
    every :class:`~convbackends.nn.BasicBlock` becomes a :class:`FusedBasicBlock`.
    """
    return _fused(copy.deepcopy(model).eval())


def _fused(module):
    if isinstance(module, BasicBlock) and not isinstance(module, FusedBasicBlock):
        return FusedBasicBlock.from_block(module)
    for name, child in module.named_children():
        setattr(module, name, _fused(child))
    if isinstance(module, Sequential):
        _fuse_runs(module)
    return module


def _fuse_runs(sequential):
    """Fold each run of ``Conv [BatchNorm] [ReLU]`` into its convolution, in place."""
    named = sequential.named_children()
    i = 0
    while i < len(named):
        name, layer = named[i]
        if not _fusable_conv(layer):
            i += 1
            continue
        j, norm, activation = i + 1, None, None
        if j < len(named) and _folds_into(named[j][1], layer):
            norm, j = named[j][1], j + 1
        if j < len(named) and type(named[j][1]) in _ACTIVATIONS:
            activation, j = _ACTIVATIONS[type(named[j][1])], j + 1
        if j > i + 1:
            setattr(sequential, name, FusedConv.from_layers(layer, norm, activation))
            for absorbed, _ in named[i + 1:j]:
                setattr(sequential, absorbed, Identity())
        i = j


def _fusable_conv(layer):
    return (isinstance(layer, _ConvNd) and not layer._transposed
            and not isinstance(layer, FusedConv))


def _folds_into(norm, conv):
    """An eval-mode BatchNorm of the convolution's dims over its output channels that uses
    running statistics."""
    return (type(norm) is _BATCH_NORM.get(conv._nd) and norm.track_running_stats
            and norm.running_mean is not None and norm.num_features == conv.out_channels
            and norm.data_format == conv.data_format)


def _frozen(a, dtype):
    """``a`` as an immutable C-contiguous array: its memory is a ``bytes`` object, so not
    even resetting the ``writeable`` flag can change it."""
    a = np.ascontiguousarray(a, dtype)
    return np.frombuffer(a.tobytes(), dtype).reshape(a.shape)


def _output_buffer(layer, shape, dtype):
    """``layer``'s cached output array of ``shape``, or a new one when the last is still
    referenced outside the cache (``None`` where reference counts are not CPython's)."""
    if not _REUSES_BUFFERS:
        return None
    per_layer = getattr(_BUFFERS, "per_layer", None)
    if per_layer is None:
        per_layer = _BUFFERS.per_layer = weakref.WeakKeyDictionary()
    cache = per_layer.setdefault(layer, {})
    key = (shape, dtype)
    buf = cache.get(key)
    if buf is None or sys.getrefcount(buf) > _UNREFERENCED:
        buf = np.empty(shape, dtype)
        cache[key] = buf
    return buf


class FusedConv(_ConvNd):
    """A convolution with its BatchNorm folded in and its activation (and an optional
    residual) as epilogue: ``activation(conv(x, weight', bias') + residual)``.

    Made by :func:`fuse` (or :meth:`from_layers`); geometry, ``backend``, ``output_shape``,
    ``macs`` and ``explain`` are the original convolution's. ``activation`` is ``None``,
    ``"relu"`` or ``"tanh"``.
    """

    activation = None

    @classmethod
    def from_layers(cls, conv, norm=None, activation=None):
        fused = cls.__new__(cls)
        fused.__dict__.update(copy.copy(vars(conv)))
        fused._nd = conv._nd
        fused.activation = activation
        weight = conv.weight.astype(np.float64)
        bias = (np.zeros(conv.out_channels) if conv.bias is None
                else conv.bias.astype(np.float64))
        if norm is not None:
            scale = 1.0 / np.sqrt(norm.running_var.astype(np.float64) + norm.eps)
            if norm.weight is not None:
                scale = scale * norm.weight
            shift = 0.0 if norm.bias is None else norm.bias.astype(np.float64)
            weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
            bias = (bias - norm.running_mean) * scale + shift
        dtype = conv.weight.dtype
        fused.weight = _frozen(weight, dtype)
        fused.bias = (None if norm is None and conv.bias is None else _frozen(bias, dtype))
        fused._output_shapes = {}
        return fused.eval()

    def forward(self, x, residual=None):
        """``activation(conv(x) + residual)``; ``residual`` (the output's shape) optional."""
        if self.training:
            raise UnsupportedError(f"{type(self).__name__} is fused for inference: its "
                                   f"BatchNorm is folded in; train the unfused model")
        out = None
        shape, dtype = np.shape(x), getattr(x, "dtype", None)
        if dtype == self.weight.dtype and isinstance(x, np.ndarray):
            out_shape = self._output_shapes.get(shape)
            if out_shape is None:
                out_shape = self._output_shapes[shape] = self.output_shape(shape)
            out = _output_buffer(self, out_shape, dtype)
        return F.conv(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                      self.groups, self.padding_mode, backend=self.backend, out=out,
                      activation=self.activation, residual=residual,
                      data_format=self.data_format)

    def _backward(self, grad_output):
        raise UnsupportedError(f"{type(self).__name__} is fused for inference and has no "
                               f"backward; train the unfused model")

    def __getstate__(self):
        state = super().__getstate__()
        state["_output_shapes"] = {}
        return state

    def extra_repr(self):
        s = super().extra_repr()
        return s + (f", activation={self.activation!r}" if self.activation else "")


class FusedBasicBlock(BasicBlock):
    """A :class:`~convbackends.nn.BasicBlock` whose convolutions carry its BatchNorms, its
    ReLUs and the residual add: ``conv2(conv1(x), residual=shortcut(x))``."""

    @classmethod
    def from_block(cls, block):
        fused = cls.__new__(cls)
        fused.__dict__.update(vars(block))
        fused.conv1 = FusedConv.from_layers(block.conv1, block.bn1, "relu")
        fused.conv2 = FusedConv.from_layers(block.conv2, block.bn2, "relu")
        fused.bn1, fused.bn2, fused.relu = Identity(), Identity(), Identity()
        if block.downsample is not None:
            fused.downsample = _fused(block.downsample)
        return fused.eval()

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.conv2(self.conv1(x), residual=shortcut)

    def _backward(self, grad_output):
        raise UnsupportedError("FusedBasicBlock is fused for inference and has no backward; "
                               "train the unfused model")


def _fuse_method(self):
    """An evaluation-mode copy rewritten for inference: BatchNorm folded into the
    convolutions, ReLU and residual adds as their epilogues, weights prepacked, output
    buffers reused; see :func:`convbackends.nn.fuse`. This module is not changed."""
    return fuse(self)


# Every layer's ``fuse()``: attached here, where fusion lives, so that the base class need
# not import the layers that fusion rewrites.
Module.fuse = _fuse_method
