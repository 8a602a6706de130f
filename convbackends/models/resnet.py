"""ResNet-18 (He et al. 2015) in torchvision's layout."""

import numpy as np

from ..nn import (AdaptiveAvgPool2d, BasicBlock, BatchNorm2d, Conv2d, Flatten, Linear,
                  MaxPool2d, ReLU, Sequential)
from .init import kaiming_normal_fan_out
from ..nn.layout import set_data_format
from ..spec.layout import CHANNELS_FIRST

__all__ = ["resnet18"]


def _stage(inplanes, planes, blocks, stride, dtype, gen):
    """``blocks`` BasicBlocks; the first takes ``stride`` and, where the shape changes, a
    1x1 convolution + BatchNorm shortcut."""
    downsample = None
    if stride != 1 or inplanes != planes:
        downsample = Sequential(Conv2d(inplanes, planes, 1, stride, bias=False, dtype=dtype,
                                       rng=gen),
                                BatchNorm2d(planes, dtype=dtype))
    first = BasicBlock(inplanes, planes, stride, downsample, dtype=dtype, rng=gen)
    return Sequential(first, *(BasicBlock(planes, planes, dtype=dtype, rng=gen)
                               for _ in range(blocks - 1)))


def resnet18(*, num_classes=1000, backend=None, dtype=np.float32, rng=None,
             data_format=CHANNELS_FIRST):
    """ResNet-18 (He et al. 2015) on ``(N, 3, 224, 224)``: 11,689,512 parameters.

    ``conv1`` 64 7x7/2 pad 3, ``bn1``, ``relu``, ``maxpool`` 3x3/2 pad 1, then
    ``layer1``..``layer4`` of two :class:`~convbackends.nn.BasicBlock` each (64, 128,
    256, 512 channels; the first block of layers 2-4 has stride 2 and a 1x1 conv + BN
    ``downsample``), global average pooling ``avgpool``, ``flatten``, ``fc``.
    torchvision's layout, state-dict keys and initialisation (convolutions
    N(0, 2/fan_out), BatchNorm weight 1 and bias 0, ``fc`` PyTorch's default).

    ``data_format="channels_last"``: ``(N, H, W, C)`` input, the channels-first model's
    outputs for the same ``state_dict`` (see :mod:`convbackends.nn.layout`).
    """
    gen = np.random.default_rng(rng)
    stages, inplanes = {}, 64
    for i, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), 1):
        stages[f"layer{i}"] = _stage(inplanes, planes, 2, stride, dtype, gen)
        inplanes = planes
    model = Sequential({
        "conv1": Conv2d(3, 64, 7, 2, 3, bias=False, dtype=dtype, rng=gen),
        "bn1": BatchNorm2d(64, dtype=dtype), "relu": ReLU(inplace=True),
        "maxpool": MaxPool2d(3, 2, 1), **stages, "avgpool": AdaptiveAvgPool2d((1, 1)),
        "flatten": Flatten(), "fc": Linear(512, num_classes, dtype=dtype, rng=gen),
    }, backend=backend)
    kaiming_normal_fan_out(model, gen)
    return set_data_format(model, data_format)
