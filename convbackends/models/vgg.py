"""VGG-16 (Simonyan and Zisserman 2014), configuration D, in torchvision's layout."""

import numpy as np

from ..nn import (AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU,
                  Sequential)
from .init import kaiming_normal_fan_out

__all__ = ["vgg16"]

# Configuration D: output channels of each 3x3 convolution, "M" a 2x2 max pooling.
_VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                 512, 512, 512, "M")


def _features(dtype, gen):
    """The convolution stack of configuration D, torchvision's ``features``."""
    layers, channels = [], 3
    for v in _VGG16_CONFIG:
        if v == "M":
            layers.append(MaxPool2d(2, 2))
        else:
            layers += [Conv2d(channels, v, 3, padding=1, dtype=dtype, rng=gen),
                       ReLU(inplace=True)]
            channels = v
    return Sequential(*layers)


def vgg16(*, num_classes=1000, dropout=0.5, backend=None, dtype=np.float32, rng=None):
    """VGG-16 (configuration D) on ``(N, 3, 224, 224)``: 138,357,544 parameters.

    Thirteen 3x3 convolutions (stride 1, pad 1, ReLU) in blocks of 64, 64 | 128, 128 |
    256 x3 | 512 x3 | 512 x3, each block closed by 2x2 max pooling, then adaptive 7x7
    average pooling (the identity at 224x224) and FC 4096, 4096, ``num_classes`` with
    Dropout. torchvision's layout and keys; convolutions are initialised as torchvision
    does (N(0, 2/fan_out), bias zero), the FC layers keep PyTorch's default (torchvision
    draws N(0, 0.01), which takes seconds for 124M weights).
    """
    gen = np.random.default_rng(rng)
    features = _features(dtype, gen)
    kw = dict(dtype=dtype, rng=gen)
    classifier = Sequential(
        Linear(512 * 7 * 7, 4096, **kw), ReLU(inplace=True), Dropout(dropout, rng=gen),
        Linear(4096, 4096, **kw), ReLU(inplace=True), Dropout(dropout, rng=gen),
        Linear(4096, num_classes, **kw))
    model = Sequential({"features": features, "avgpool": AdaptiveAvgPool2d((7, 7)),
                        "flatten": Flatten(), "classifier": classifier}, backend=backend)
    kaiming_normal_fan_out(model, gen)
    return model
