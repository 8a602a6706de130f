"""GoogLeNet (Szegedy et al. 2014) as the lectures tabulate it: the stem with LRN, nine
inception modules, global average pooling, dropout and one FC layer; optional auxiliary
classifiers. Module names follow torchvision's ``GoogLeNet``."""

from collections import namedtuple

import numpy as np

from ..errors import ConvError, ShapeError
from ..nn import (AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Linear, LocalResponseNorm,
                  MaxPool2d, Module, ReLU, Sequential)
from ..nn.container import _chain, _join
from ..nn.layout import set_data_format
from ..nn.module import _non_defaults, _tape, _with_path
from ..spec.layout import CHANNELS_FIRST, CHANNELS_LAST, check_data_format
from .init import kaiming_normal_fan_out

__all__ = ["googlenet", "GoogLeNet", "GoogLeNetOutputs", "Inception", "InceptionAux",
           "BasicConv2d", "Concat"]

# The lectures' table: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) per module.
INCEPTION_TABLE = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}

#: What a GoogLeNet with auxiliary classifiers returns in training mode (torchvision's
#: order: the main logits, then the classifier after 4d, then the one after 4a).
GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])


def _located(error, prefix):
    return _with_path(error, prefix) if prefix else error


class BasicConv2d(Sequential):
    """A convolution followed by ReLU; children ``conv`` and ``relu``.

    torchvision's ``BasicConv2d`` is convolution (no bias), BatchNorm, ReLU; the lectures'
    GoogLeNet has no BatchNorm, so here the convolution has a bias and there is no ``bn``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *,
                 backend=None, dtype=np.float32, rng=None):
        super().__init__({"conv": Conv2d(in_channels, out_channels, kernel_size, stride,
                                         padding, dtype=dtype, rng=rng),
                          "relu": ReLU(inplace=True)}, backend=backend)


class Concat(Module):
    """Concatenate its inputs along ``dim`` (the channels, ``-3``, for images batched or
    not): ``cat(a, b, ...)``. No parameters; its backward splits the gradient. With
    ``data_format="channels_last"`` the channels are the last dim, and it joins there
    (``dim`` names the channels-first position)."""

    def __init__(self, dim=-3, *, data_format=CHANNELS_FIRST):
        super().__init__()
        self._dim = dim
        self.data_format = check_data_format(data_format)

    @property
    def dim(self):
        """The dim it joins along: ``-1`` channels last."""
        return -1 if self.data_format == CHANNELS_LAST else self._dim

    def forward(self, *arrays):
        arrays = [np.asarray(a) for a in arrays]
        self.output_shape(*(a.shape for a in arrays))
        y = np.concatenate(arrays, axis=self.dim)
        self._keep(y, tuple(a.shape[self.dim] for a in arrays))
        return y

    def _backward(self, grad_output):
        """The gradient of each input: its slice of ``grad_output`` along ``dim``."""
        grad, (sizes,) = self._take(grad_output)
        return tuple(np.split(grad, np.cumsum(sizes)[:-1], axis=self.dim))

    def output_shape(self, *input_shapes):
        shapes = [tuple(s) for s in input_shapes]
        if not shapes:
            raise ShapeError("Concat: expected at least one input")
        dim = self.dim % len(shapes[0])
        rest = {s[:dim] + s[dim + 1:] for s in shapes}
        if len(rest) != 1 or len({len(s) for s in shapes}) != 1:
            raise ShapeError(f"Concat: sizes of tensors must match except in dimension "
                             f"{self.dim}, got {[list(s) for s in shapes]}")
        s = shapes[0]
        return s[:dim] + (sum(t[dim] for t in shapes),) + s[dim + 1:]

    def extra_repr(self):
        return f"dim={self.dim}" + _non_defaults(self, (("data_format", CHANNELS_FIRST),))


class Inception(Module):
    """An inception module: four branches on the same input, concatenated on channels.

    ``branch1`` 1x1 conv; ``branch2`` 1x1 reduce, 3x3 conv (pad 1); ``branch3`` 1x1
    reduce, 5x5 conv (pad 2); ``branch4`` 3x3/1 max pooling (pad 1), 1x1 projection; each
    convolution a :class:`BasicConv2d` (ReLU after it). ``cat`` joins them: the output has
    ``ch1x1 + ch3x3 + ch5x5 + pool_proj`` channels at the input's size. torchvision's names
    (``branch2.1.conv.weight``); unlike torchvision, whose ``branch3`` has a 3x3
    convolution, ``branch3`` is the paper's 5x5.
    """

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, *,
                 backend=None, dtype=np.float32, rng=None):
        super().__init__()
        gen = np.random.default_rng(rng)
        kw = dict(dtype=dtype, rng=gen)
        self.branch1 = BasicConv2d(in_channels, ch1x1, 1, **kw)
        self.branch2 = Sequential(BasicConv2d(in_channels, ch3x3red, 1, **kw),
                                  BasicConv2d(ch3x3red, ch3x3, 3, padding=1, **kw))
        self.branch3 = Sequential(BasicConv2d(in_channels, ch5x5red, 1, **kw),
                                  BasicConv2d(ch5x5red, ch5x5, 5, padding=2, **kw))
        self.branch4 = Sequential(MaxPool2d(3, 1, 1, ceil_mode=True),
                                  BasicConv2d(in_channels, pool_proj, 1, **kw))
        self.cat = Concat(-3)
        if backend is not None:
            self.backend = backend

    def _branches(self):
        return (("branch1", self.branch1), ("branch2", self.branch2),
                ("branch3", self.branch3), ("branch4", self.branch4))

    def forward(self, x):
        return self.cat(*(branch(x) for _, branch in self._branches()))

    def _backward(self, grad_output):
        """Each branch's backward on its channels of the gradient; the four input
        gradients add."""
        parts = self.cat.backward(grad_output)
        grads = [branch.backward(g) for (_, branch), g in zip(self._branches(), parts)]
        total = grads[0]
        for g in grads[1:]:
            total = total + g
        return total

    def layer_shapes(self, input_shape, prefix=""):
        shape = tuple(input_shape)
        outs = []
        for name, branch in self._branches():
            outs.append((yield from _chain([(name, branch)], shape, prefix)))
        try:
            out = self.cat.output_shape(*outs)
        except ConvError as error:
            raise _located(error, prefix) from error
        yield _join(prefix, "cat"), self.cat, outs[0], out

    def _receptive_field(self, walk, field):
        """The widest of the four branches' fields."""
        fields = [walk.run(branch, field) for _, branch in self._branches()]
        return walk.row(self.cat, field, walk.merge(*fields))


class InceptionAux(Sequential):
    """An auxiliary classifier (after inception 4a and 4d): ``avgpool`` adaptive 4x4 (the
    paper's 5x5/3 average pooling at 14x14), ``conv`` 1x1 128 + ReLU, ``flatten``,
    ``fc1`` 1024, ``relu``, ``dropout`` 70%, ``fc2`` ``num_classes``; torchvision's names
    (its pooling is functional)."""

    def __init__(self, in_channels, num_classes, dropout=0.7, *, backend=None,
                 dtype=np.float32, rng=None):
        gen = np.random.default_rng(rng)
        kw = dict(dtype=dtype, rng=gen)
        super().__init__({
            "avgpool": AdaptiveAvgPool2d((4, 4)),
            "conv": BasicConv2d(in_channels, 128, 1, **kw), "flatten": Flatten(),
            "fc1": Linear(2048, 1024, **kw), "relu": ReLU(inplace=True),
            "dropout": Dropout(dropout, rng=gen), "fc2": Linear(1024, num_classes, **kw),
        }, backend=backend)


# The main path, in forward order; the auxiliary classifiers branch off after these.
_MAIN = ("conv1", "maxpool1", "norm1", "conv2", "conv3", "norm2", "maxpool2",
         "inception3a", "inception3b", "maxpool3", "inception4a", "inception4b",
         "inception4c", "inception4d", "inception4e", "maxpool4", "inception5a",
         "inception5b", "avgpool", "flatten", "dropout", "fc")
_AUX_AFTER = {"inception4a": "aux1", "inception4d": "aux2"}


class GoogLeNet(Module):
    """GoogLeNet; see :func:`googlenet`. ``aux1`` and ``aux2`` are ``None`` without
    auxiliary classifiers.

    In training mode with auxiliary classifiers a forward returns
    :class:`GoogLeNetOutputs` ``(logits, aux_logits2, aux_logits1)`` and ``backward``
    takes the three gradients as a tuple (``None`` for a head that gets none) or the
    logits' gradient alone; otherwise it returns the logits.
    """

    def __init__(self, num_classes=1000, aux_logits=False, dropout=0.4, aux_dropout=0.7, *,
                 dtype=np.float32, rng=None):
        super().__init__()
        gen = np.random.default_rng(rng)
        kw = dict(dtype=dtype, rng=gen)
        self.aux_logits = aux_logits
        self.conv1 = BasicConv2d(3, 64, 7, 2, 3, **kw)
        self.maxpool1 = MaxPool2d(3, 2, ceil_mode=True)
        self.norm1 = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.conv2 = BasicConv2d(64, 64, 1, **kw)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1, **kw)
        self.norm2 = LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.maxpool2 = MaxPool2d(3, 2, ceil_mode=True)
        channels = 192
        for name, table in INCEPTION_TABLE.items():
            setattr(self, f"inception{name}", Inception(channels, *table, **kw))
            channels = table[0] + table[2] + table[4] + table[5]
            if name == "3b":
                self.maxpool3 = MaxPool2d(3, 2, ceil_mode=True)
            elif name == "4e":
                self.maxpool4 = MaxPool2d(3, 2, ceil_mode=True)
        self.aux1 = InceptionAux(512, num_classes, aux_dropout, **kw) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, aux_dropout, **kw) if aux_logits else None
        self.avgpool = AdaptiveAvgPool2d((1, 1))
        self.flatten = Flatten()
        self.dropout = Dropout(dropout, rng=gen)
        self.fc = Linear(1024, num_classes, **kw)

    def _runs_aux(self):
        return self.aux_logits and self.training

    def forward(self, x):
        aux = {}
        for name in _MAIN:
            x = getattr(self, name)(x)
            if name in _AUX_AFTER and self._runs_aux():
                aux[_AUX_AFTER[name]] = getattr(self, _AUX_AFTER[name])(x)
        self._keep(x, bool(aux))
        if aux:
            return GoogLeNetOutputs(x, aux["aux2"], aux["aux1"])
        return x

    def _backward(self, grad_output):
        """Back through the main path; at the outputs of 4d and 4a the auxiliary
        classifiers' input gradients add in."""
        if isinstance(grad_output, (tuple, list)):
            if len(grad_output) != 3:
                raise ShapeError(f"GoogLeNet: backward() takes the logits' gradient or "
                                 f"three gradients (logits, aux_logits2, aux_logits1), got "
                                 f"{len(grad_output)}")
            main, *heads = grad_output
            heads = dict(zip(("aux2", "aux1"), heads))
        else:
            main, heads = grad_output, {}
        grad, (with_aux,) = self._take(main)
        if not with_aux and any(g is not None for g in heads.values()):
            raise ShapeError("GoogLeNet: the last forward returned no auxiliary outputs "
                             "(aux_logits=False, or evaluation mode)")
        for name in reversed(_MAIN):
            head = _AUX_AFTER.get(name)
            if head is not None and with_aux:
                aux = getattr(self, head)
                if heads.get(head) is None:
                    for m in aux.modules():     # no gradient for it: let its forward go
                        _tape(m).clear()
                else:
                    grad = grad + aux.backward(heads[head])
            grad = getattr(self, name).backward(grad)
        return grad

    def layer_shapes(self, input_shape, prefix=""):
        """The main path's rows, with each auxiliary classifier's after the module it
        branches from when a forward runs it (training mode)."""
        shape = tuple(input_shape)
        for name in _MAIN:
            shape = yield from _chain([(name, getattr(self, name))], shape, prefix)
            if name in _AUX_AFTER and self._runs_aux():
                head = _AUX_AFTER[name]
                yield from _chain([(head, getattr(self, head))], shape, prefix)

    def _receptive_field(self, walk, field):
        for name in _MAIN:
            field = walk.run(getattr(self, name), field)
            if name in _AUX_AFTER and self._runs_aux():
                walk.run(getattr(self, _AUX_AFTER[name]), field)
        return field

    def extra_repr(self):
        return "aux_logits=True" if self.aux_logits else ""


def googlenet(*, num_classes=1000, aux_logits=False, dropout=0.4, aux_dropout=0.7,
              backend=None, dtype=np.float32, rng=None, data_format=CHANNELS_FIRST):
    """GoogLeNet (Szegedy et al. 2014) on ``(N, 3, 224, 224)``: 6,998,552 parameters
    (13,378,280 with the auxiliary classifiers).

    Stem ``conv1`` 7x7/2 64 (112x112), ``maxpool1`` 3x3/2 (56x56), ``norm1`` LRN,
    ``conv2`` 1x1 64, ``conv3`` 3x3 192, ``norm2`` LRN, ``maxpool2`` 3x3/2 (28x28); then
    inception 3a, 3b, ``maxpool3`` (14x14), 4a-4e, ``maxpool4`` (7x7), 5a, 5b (1024
    channels), global average pooling ``avgpool``, ``flatten``, ``dropout`` 40%, ``fc``
    ``num_classes``. Each inception module is an :class:`Inception` with the lectures'
    channel counts (:data:`INCEPTION_TABLE`). ReLU follows every convolution.

    The lectures' network, not torchvision's variant: LRN in the stem
    (``LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1)``, the reference Caffe model's
    constants), no BatchNorm (every convolution has a bias), 5x5 convolutions in
    ``branch3`` and 3x3/2 pooling at ``maxpool4``, as the paper's table. Poolings round
    up (``ceil_mode``) as the reference model's do; a 3x3/2 pooling needs at least two
    rows, so inputs from 31x31 up run (the average pooling adapts). Module names are
    torchvision's (``conv1.conv.weight``, ``inception3a.branch2.1.conv.weight``,
    ``aux1.fc2.bias``), with a ``conv.bias`` where torchvision has ``bn``; the LRN
    layers ``norm1``, ``norm2`` have no parameters.

    With ``aux_logits`` the two auxiliary classifiers (:class:`InceptionAux`, after 4a and
    4d; dropout ``aux_dropout``) run in training mode, where the forward returns
    :class:`GoogLeNetOutputs`; evaluation mode returns the logits. Convolutions are drawn
    N(0, 2/fan_out) with zero bias (without BatchNorm, PyTorch's default would shrink the
    activations layer by layer), FC layers PyTorch's default.

    ``data_format="channels_last"`` takes ``(N, 224, 224, 3)`` and gives the same logits
    as the channels-first model with the same ``state_dict`` (see
    :mod:`convbackends.nn.layout`).
    """
    gen = np.random.default_rng(rng)
    model = GoogLeNet(num_classes, aux_logits, dropout, aux_dropout, dtype=dtype, rng=gen)
    kaiming_normal_fan_out(model, gen)
    if backend is not None:
        model.backend = backend
    return set_data_format(model, data_format)
