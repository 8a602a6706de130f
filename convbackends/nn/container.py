"""Layers made of layers: Sequential, as ``torch.nn.Sequential``, and ResNet's BasicBlock.

A container's ``layer_shapes`` says how data flows through its children, which is how
``output_shape`` and :func:`convbackends.models.summary` follow a model without running it.
"""

import numpy as np

from ..errors import ArgumentTypeError, ShapeError
from .activation import ReLU
from .conv import Conv2d
from .module import Module, _with_path
from .norm import BatchNorm2d

__all__ = ["Sequential", "BasicBlock"]


def _join(prefix, name):
    """The state-dict prefix of child ``name`` inside ``prefix``."""
    return f"{prefix}.{name}" if prefix else name


def _chain(named_layers, shape, prefix):
    """Yield the :meth:`Module.layer_shapes` rows of layers applied in order; return the
    final shape (a child's output is its last row's output)."""
    for name, layer in named_layers:
        for row in layer.layer_shapes(shape, _join(prefix, name)):
            shape = row[3]
            yield row
    return shape


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
                raise ArgumentTypeError(f"Sequential: {name!r} is a {type(layer).__name__}, "
                                        f"not a Module")
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

    def _backward(self, grad_output):
        """Each layer's backward, last layer first."""
        grad = grad_output
        for layer in reversed(self.children()):
            grad = layer.backward(grad)
        return grad

    def layer_shapes(self, input_shape, prefix=""):
        yield from _chain(self.named_children(), tuple(input_shape), prefix)


def _shortcut_error(shortcut, main):
    return ShapeError(f"BasicBlock: the shortcut gives {list(shortcut)} but the residual "
                      f"branch gives {list(main)}; a downsample module is needed")


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
        gen = np.random.default_rng(rng)
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
        shortcut = x if self.downsample is None else self.downsample(x)
        if np.shape(shortcut) != out.shape:
            raise _shortcut_error(np.shape(shortcut), out.shape)
        out += shortcut
        return self.relu(out)

    def _backward(self, grad_output):
        """The gradient after the final ReLU goes both ways, through the residual branch
        and the shortcut, and the two input gradients add."""
        grad = self.relu.backward(grad_output)      # the second ReLU call's, kept last
        main = self.conv1.backward(self.bn1.backward(self.relu.backward(
            self.conv2.backward(self.bn2.backward(grad)))))
        shortcut = grad if self.downsample is None else self.downsample.backward(grad)
        return main + shortcut

    def layer_shapes(self, input_shape, prefix=""):
        shape = tuple(input_shape)
        main = yield from _chain(((name, getattr(self, name)) for name in
                                  ("conv1", "bn1", "relu", "conv2", "bn2")), shape, prefix)
        if self.downsample is not None:
            shape = yield from _chain([("downsample", self.downsample)], shape, prefix)
        if shape != main:
            error = _shortcut_error(shape, main)
            if not prefix:
                raise error
            raise _with_path(error, prefix)
        yield from self.relu.layer_shapes(main, _join(prefix, "relu"))
