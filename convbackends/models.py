"""Classic networks built from :mod:`convbackends.layers`, and :func:`summary`.

Every builder returns a :class:`~convbackends.layers.Sequential` whose state-dict keys are
those of the PyTorch model of the same layout (torchvision's for AlexNet, VGG-16 and
ResNet-18), so trained PyTorch weights load with ``load_state_dict``. ``backend=`` is set on
every layer inside (convolutions run on it; pooling runs on it where it pools, see
:attr:`convbackends.layers.Module.backend`); ``rng=`` draws every initial weight from one
generator, so a seed gives the same model.

>>> import convbackends as cb
>>> s = cb.models.summary(cb.models.lenet5(rng=0), (1, 1, 32, 32))
>>> s.total_params
61706
"""

import math
from dataclasses import dataclass

import numpy as np

from .dispatch import _bytes
from .layers import (AdaptiveAvgPool2d, AvgPool2d, BasicBlock, BatchNorm2d, Conv2d, Dropout,
                     Flatten, Linear, LocalResponseNorm, MaxPool2d, ReLU, Sequential, Tanh,
                     _rng)

__all__ = ["lenet5", "alexnet", "vgg16", "resnet18", "summary", "Summary", "SummaryRow"]

# VGG configuration D: output channels of each 3x3 convolution, "M" a 2x2 max pooling.
_VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                 512, 512, 512, "M")


def lenet5(*, num_classes=10, backend=None, dtype=np.float32, rng=None):
    """LeNet-5 (LeCun et al. 1998) on ``(N, 1, 32, 32)`` input: 61,706 parameters.

    C1 6@5x5 (28x28), S2 2x2 average pooling (14x14), C3 16@5x5 (10x10), S4 (5x5),
    C5 120@5x5 (1x1), F6 84, output ``num_classes``, tanh after C1, C3, C5 and F6. Each
    subsampling layer is a plain average (the paper's also has a trainable gain and bias
    per map) and C3 connects to all six maps (the paper's uses a fixed sparse table).

    Children: ``c1, tanh1, s2, c3, tanh3, s4, c5, tanh5, flatten, f6, tanh6, output``.
    """
    gen = _rng(rng)
    kw = dict(dtype=dtype, rng=gen)
    return Sequential({
        "c1": Conv2d(1, 6, 5, **kw), "tanh1": Tanh(), "s2": AvgPool2d(2),
        "c3": Conv2d(6, 16, 5, **kw), "tanh3": Tanh(), "s4": AvgPool2d(2),
        "c5": Conv2d(16, 120, 5, **kw), "tanh5": Tanh(), "flatten": Flatten(),
        "f6": Linear(120, 84, **kw), "tanh6": Tanh(),
        "output": Linear(84, num_classes, **kw),
    }, backend=backend)


def alexnet(*, num_classes=1000, dropout=0.5, backend=None, dtype=np.float32, rng=None):
    """AlexNet as the lectures tabulate it, on ``(N, 3, 227, 227)``: 62,378,344 parameters.

    CONV1 96 11x11/4 (55x55) - MAXPOOL 3x3/2 (27x27) - NORM - CONV2 256 5x5 pad 2 - MAXPOOL
    (13x13) - NORM - CONV3 384, CONV4 384, CONV5 256 3x3 pad 1 - MAXPOOL (6x6) - FC 4096 -
    FC 4096 - FC ``num_classes``, ReLU after every convolution and hidden FC. NORM is
    ``LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)`` (the paper's constants). Unlike
    torchvision's variant (64, 192, 384, 256, 256 channels, no NORM) the channel counts are
    the paper's, without its two-GPU split. The layout and keys follow torchvision:
    ``features``, ``avgpool`` (adaptive 6x6, the identity at 227x227), ``flatten``,
    ``classifier`` (Dropout before each hidden FC, keys ``classifier.1``, ``.4``, ``.6``).
    """
    gen = _rng(rng)
    kw = dict(dtype=dtype, rng=gen)
    features = Sequential(
        Conv2d(3, 96, 11, 4, **kw), ReLU(inplace=True), MaxPool2d(3, 2),
        LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        Conv2d(96, 256, 5, padding=2, **kw), ReLU(inplace=True), MaxPool2d(3, 2),
        LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        Conv2d(256, 384, 3, padding=1, **kw), ReLU(inplace=True),
        Conv2d(384, 384, 3, padding=1, **kw), ReLU(inplace=True),
        Conv2d(384, 256, 3, padding=1, **kw), ReLU(inplace=True), MaxPool2d(3, 2))
    classifier = Sequential(
        Dropout(dropout, rng=gen), Linear(256 * 6 * 6, 4096, **kw), ReLU(inplace=True),
        Dropout(dropout, rng=gen), Linear(4096, 4096, **kw), ReLU(inplace=True),
        Linear(4096, num_classes, **kw))
    return Sequential({"features": features, "avgpool": AdaptiveAvgPool2d((6, 6)),
                       "flatten": Flatten(), "classifier": classifier}, backend=backend)


def _kaiming_normal_fan_out(model, gen):
    """torchvision's initialisation of VGG and ResNet convolutions:
    N(0, 2 / (out_channels * kernel area)), biases zero."""
    for m in model.modules():
        if isinstance(m, Conv2d):
            std = math.sqrt(2.0 / (m.weight.shape[0] * math.prod(m.kernel_size)))
            m.weight[...] = gen.standard_normal(m.weight.shape, dtype=m.weight.dtype.type)
            m.weight *= m.weight.dtype.type(std)
            if m.bias is not None:
                m.bias[...] = 0


def vgg16(*, num_classes=1000, dropout=0.5, backend=None, dtype=np.float32, rng=None):
    """VGG-16 (configuration D) on ``(N, 3, 224, 224)``: 138,357,544 parameters.

    Thirteen 3x3 convolutions (stride 1, pad 1, ReLU) in blocks of 64, 64 | 128, 128 |
    256 x3 | 512 x3 | 512 x3, each block closed by 2x2 max pooling, then adaptive 7x7
    average pooling (the identity at 224x224) and FC 4096, 4096, ``num_classes`` with
    Dropout. torchvision's layout and keys; convolutions are initialised as torchvision
    does (N(0, 2/fan_out), bias zero), the FC layers keep PyTorch's default (torchvision
    draws N(0, 0.01), which takes seconds for 124M weights).
    """
    gen = _rng(rng)
    layers, channels = [], 3
    for v in _VGG16_CONFIG:
        if v == "M":
            layers.append(MaxPool2d(2, 2))
        else:
            layers += [Conv2d(channels, v, 3, padding=1, dtype=dtype, rng=gen),
                       ReLU(inplace=True)]
            channels = v
    kw = dict(dtype=dtype, rng=gen)
    classifier = Sequential(
        Linear(512 * 7 * 7, 4096, **kw), ReLU(inplace=True), Dropout(dropout, rng=gen),
        Linear(4096, 4096, **kw), ReLU(inplace=True), Dropout(dropout, rng=gen),
        Linear(4096, num_classes, **kw))
    model = Sequential({"features": Sequential(*layers), "avgpool": AdaptiveAvgPool2d((7, 7)),
                        "flatten": Flatten(), "classifier": classifier}, backend=backend)
    _kaiming_normal_fan_out(model, gen)
    return model


def _resnet_stage(inplanes, planes, blocks, stride, dtype, gen):
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = Sequential(Conv2d(inplanes, planes, 1, stride, bias=False, dtype=dtype,
                                       rng=gen),
                                BatchNorm2d(planes, dtype=dtype))
    first = BasicBlock(inplanes, planes, stride, downsample, dtype=dtype, rng=gen)
    return Sequential(first, *(BasicBlock(planes, planes, dtype=dtype, rng=gen)
                               for _ in range(blocks - 1)))


def resnet18(*, num_classes=1000, backend=None, dtype=np.float32, rng=None):
    """ResNet-18 (He et al. 2015) on ``(N, 3, 224, 224)``: 11,689,512 parameters.

    ``conv1`` 64 7x7/2 pad 3, ``bn1``, ``relu``, ``maxpool`` 3x3/2 pad 1, then
    ``layer1``..``layer4`` of two :class:`~convbackends.layers.BasicBlock` each (64, 128,
    256, 512 channels; the first block of layers 2-4 has stride 2 and a 1x1 conv + BN
    ``downsample``), global average pooling ``avgpool``, ``flatten``, ``fc``.
    torchvision's layout, state-dict keys and initialisation (convolutions
    N(0, 2/fan_out), BatchNorm weight 1 and bias 0, ``fc`` PyTorch's default).
    """
    gen = _rng(rng)
    stages, inplanes = {}, 64
    for i, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), 1):
        stages[f"layer{i}"] = _resnet_stage(inplanes, planes, 2, stride, dtype, gen)
        inplanes = planes
    model = Sequential({
        "conv1": Conv2d(3, 64, 7, 2, 3, bias=False, dtype=dtype, rng=gen),
        "bn1": BatchNorm2d(64, dtype=dtype), "relu": ReLU(inplace=True),
        "maxpool": MaxPool2d(3, 2, 1), **stages, "avgpool": AdaptiveAvgPool2d((1, 1)),
        "flatten": Flatten(), "fc": Linear(512, num_classes, dtype=dtype, rng=gen),
    }, backend=backend)
    _kaiming_normal_fan_out(model, gen)
    return model


# ----------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class SummaryRow:
    """One layer of a :class:`Summary`.

    Attributes
    ----------
    name : str
        The layer's state-dict prefix (``"features.0"``, ``"layer1.0.conv1"``).
    kind : str
        Its class name.
    output_shape : tuple of int
    params : int
        Parameters of this layer (buffers such as BatchNorm's running statistics excluded).
    macs : int
        Multiply-accumulates of convolutions and linear layers; 0 for the others.
    activation_bytes : int
        Bytes of the layer's output array.
    """

    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int
    activation_bytes: int


@dataclass(frozen=True)
class Summary:
    """A per-layer table of a model for one input shape; ``str()`` renders it.

    ``total_activation_bytes`` adds every layer's output: what one forward writes, not its
    peak memory (the layers do not work in place).
    """

    input_shape: tuple
    rows: tuple

    @property
    def total_params(self):
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self):
        return sum(r.macs for r in self.rows)

    @property
    def total_activation_bytes(self):
        return sum(r.activation_bytes for r in self.rows)

    def __str__(self):
        table = [("layer", "type", "output shape", "params", "MACs", "activation")]
        table += [(r.name, r.kind, str(list(r.output_shape)), f"{r.params:,}", f"{r.macs:,}",
                   _bytes(r.activation_bytes)) for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(6)]
        lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(row, widths))) for row in table]
        lines.insert(1, "-" * len(lines[0]))
        lines += ["-" * len(lines[0]),
                  f"input {list(self.input_shape)}: {self.total_params:,} parameters, "
                  f"{self.total_macs:,} MACs, {_bytes(self.total_activation_bytes)} of "
                  f"layer outputs"]
        return "\n".join(lines)


def summary(model, input_shape):
    """Tabulate ``model`` layer by layer for input of ``input_shape``, without running it.

    Shapes come from each layer's ``output_shape`` (the same validation as a forward, so
    an input the model cannot take raises :class:`~convbackends.ShapeError`); nothing is
    computed, so it is immediate even for VGG-16.

    Parameters
    ----------
    model : convbackends.layers.Module
    input_shape : tuple of int
        ``(N, C, H, W)`` for the models here.

    Returns
    -------
    Summary
        ``rows`` (one :class:`SummaryRow` per layer run: ``name``, ``kind``,
        ``output_shape``, ``params``, ``macs``, ``activation_bytes``) and the totals
        ``total_params``, ``total_macs``, ``total_activation_bytes``. The activation bytes
        use the dtype of the model's parameters (float32 when it has none).
    """
    params = model.parameters()
    itemsize = params[0].dtype.itemsize if params else np.dtype(np.float32).itemsize
    rows = []
    seen = set()
    for name, layer, shape_in, shape_out in model.layer_shapes(tuple(input_shape)):
        # A layer run twice (BasicBlock's relu) owns its parameters once.
        count = 0 if id(layer) in seen else sum(p.size for p in layer.parameters())
        seen.add(id(layer))
        rows.append(SummaryRow(name, type(layer).__name__, tuple(shape_out), count,
                               layer.macs(shape_in), math.prod(shape_out) * itemsize))
    return Summary(tuple(input_shape), tuple(rows))
