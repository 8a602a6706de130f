"""AlexNet (Krizhevsky et al. 2012) with the paper's channel counts."""

import numpy as np

from ..nn import (AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Linear, LocalResponseNorm,
                  MaxPool2d, ReLU, Sequential)
from ..nn.layout import set_data_format
from ..spec.layout import CHANNELS_FIRST

__all__ = ["alexnet"]


def alexnet(*, num_classes=1000, dropout=0.5, backend=None, dtype=np.float32, rng=None,
            data_format=CHANNELS_FIRST):
    """AlexNet as the lectures tabulate it, on ``(N, 3, 227, 227)``: 62,378,344 parameters.

    CONV1 96 11x11/4 (55x55) - MAXPOOL 3x3/2 (27x27) - NORM - CONV2 256 5x5 pad 2 - MAXPOOL
    (13x13) - NORM - CONV3 384, CONV4 384, CONV5 256 3x3 pad 1 - MAXPOOL (6x6) - FC 4096 -
    FC 4096 - FC ``num_classes``, ReLU after every convolution and hidden FC. NORM is
    ``LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)`` (the paper's constants). Unlike
    torchvision's variant (64, 192, 384, 256, 256 channels, no NORM) the channel counts are
    the paper's, without its two-GPU split. The layout and keys follow torchvision:
    ``features``, ``avgpool`` (adaptive 6x6, the identity at 227x227), ``flatten``,
    ``classifier`` (Dropout before each hidden FC, keys ``classifier.1``, ``.4``, ``.6``).

    ``data_format="channels_last"``: ``(N, H, W, C)`` input, the channels-first model's
    outputs for the same ``state_dict`` (see :mod:`convbackends.nn.layout`).
    """
    gen = np.random.default_rng(rng)
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
    return set_data_format(Sequential({"features": features, "avgpool": AdaptiveAvgPool2d((6, 6)),
                       "flatten": Flatten(), "classifier": classifier}, backend=backend), data_format)
