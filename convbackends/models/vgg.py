"""VGG-16 and VGG-19 (Simonyan and Zisserman 2014), configurations D and E, in
torchvision's layout."""

import numpy as np

from ..nn import (AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU,
                  Sequential)
from .init import kaiming_normal_fan_out
from ..nn.layout import set_data_format
from ..spec.layout import CHANNELS_FIRST

__all__ = ["vgg16", "vgg19"]

# Output channels of each 3x3 convolution, "M" a 2x2 max pooling. Configuration E is D
# with a fourth 3x3 convolution in each of the last three blocks.
_CONFIGS = {
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"),
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"),
}
_VGG16_CONFIG = _CONFIGS["D"]


def _features(dtype, gen, config=_VGG16_CONFIG, first_padding=1, ceil_mode=False):
    """The convolution stack of ``config``, torchvision's ``features``: a Conv2d 3x3 pad 1
    and a ReLU per number, a 2x2/2 MaxPool2d per ``"M"``. ``first_padding`` and
    ``ceil_mode`` are FCN's changes (pad 100 on the first convolution, pooling that rounds
    up); the keys stay ``features.N``."""
    layers, channels = [], 3
    for v in config:
        if v == "M":
            layers.append(MaxPool2d(2, 2, ceil_mode=ceil_mode))
        else:
            pad = first_padding if not layers else 1
            layers += [Conv2d(channels, v, 3, padding=pad, dtype=dtype, rng=gen),
                       ReLU(inplace=True)]
            channels = v
    return Sequential(*layers)


def _vgg(config, num_classes, dropout, backend, dtype, rng, data_format):
    """VGG of ``config`` in torchvision's layout: ``features``, ``avgpool`` (adaptive 7x7),
    ``flatten``, ``classifier``."""
    gen = np.random.default_rng(rng)
    features = _features(dtype, gen, _CONFIGS[config])
    kw = dict(dtype=dtype, rng=gen)
    classifier = Sequential(
        Linear(512 * 7 * 7, 4096, **kw), ReLU(inplace=True), Dropout(dropout, rng=gen),
        Linear(4096, 4096, **kw), ReLU(inplace=True), Dropout(dropout, rng=gen),
        Linear(4096, num_classes, **kw))
    model = Sequential({"features": features, "avgpool": AdaptiveAvgPool2d((7, 7)),
                        "flatten": Flatten(), "classifier": classifier}, backend=backend)
    kaiming_normal_fan_out(model, gen)
    return set_data_format(model, data_format)


def vgg16(*, num_classes=1000, dropout=0.5, backend=None, dtype=np.float32, rng=None,
          data_format=CHANNELS_FIRST):
    """VGG-16 (configuration D) on ``(N, 3, 224, 224)``: 138,357,544 parameters.

    Thirteen 3x3 convolutions (stride 1, pad 1, ReLU) in blocks of 64, 64 | 128, 128 |
    256 x3 | 512 x3 | 512 x3, each block closed by 2x2 max pooling, then adaptive 7x7
    average pooling (the identity at 224x224) and FC 4096, 4096, ``num_classes`` with
    Dropout. torchvision's layout and keys; convolutions are initialised as torchvision
    does (N(0, 2/fan_out), bias zero), the FC layers keep PyTorch's default (torchvision
    draws N(0, 0.01), which takes seconds for 124M weights).

    ``data_format="channels_last"``: ``(N, H, W, C)`` input, the channels-first model's
    outputs for the same ``state_dict`` (see :mod:`convbackends.nn.layout`).
    """
    return _vgg("D", num_classes, dropout, backend, dtype, rng, data_format)


def vgg19(*, num_classes=1000, dropout=0.5, backend=None, dtype=np.float32, rng=None,
          data_format=CHANNELS_FIRST):
    """VGG-19 (configuration E) on ``(N, 3, 224, 224)``: 143,667,240 parameters.

    VGG-16 with a fourth 3x3 convolution in each of the last three blocks: 64, 64 |
    128, 128 | 256 x4 | 512 x4 | 512 x4, sixteen convolutions in all, then the same
    classifier. torchvision's layout and keys (``features.0`` ... ``features.34``, the
    last pooling ``features.36``; ``classifier.0``, ``.3``, ``.6``) and the same
    initialisation as :func:`vgg16`.

    ``data_format="channels_last"``: ``(N, H, W, C)`` input, the channels-first model's
    outputs for the same ``state_dict`` (see :mod:`convbackends.nn.layout`).
    """
    return _vgg("E", num_classes, dropout, backend, dtype, rng, data_format)
