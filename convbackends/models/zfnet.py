"""ZFNet (Zeiler and Fergus 2013): AlexNet with a 7x7/2 first layer and 512, 1024, 512
filters in CONV3-5, as the lectures tabulate it."""

import numpy as np

from ..nn import (AdaptiveAvgPool2d, Conv2d, Dropout, Flatten, Linear, LocalResponseNorm,
                  MaxPool2d, ReLU, Sequential)
from ..nn.layout import set_data_format
from ..spec.layout import CHANNELS_FIRST

__all__ = ["zfnet"]


def zfnet(*, num_classes=1000, dropout=0.5, backend=None, dtype=np.float32, rng=None,
          data_format=CHANNELS_FIRST):
    """ZFNet on ``(N, 3, 224, 224)``: 107,627,624 parameters.

    CONV1 96 7x7/2 pad 1 (110x110) - MAXPOOL 3x3/2 (55x55) - NORM - CONV2 256 5x5/2
    (26x26) - MAXPOOL 3x3/2 (13x13) - NORM - CONV3 512, CONV4 1024, CONV5 512 3x3 pad 1 -
    MAXPOOL 3x3/2 (6x6) - FC 4096 - FC 4096 - FC ``num_classes``, ReLU after every
    convolution and hidden FC.

    The lectures' changes to AlexNet are CONV1 (7x7 stride 2 instead of 11x11 stride 4) and
    the 512, 1024, 512 filters of CONV3-5 (the paper's larger variant; its base model keeps
    384, 384, 256). The rest of the geometry is the paper's (its Fig. 3): CONV1 pads by 1,
    CONV2 has stride 2 and the first two poolings round up (``ceil_mode``), which gives the
    paper's 110, 55, 26, 13, 13, 6 maps on a 224x224 image and keeps AlexNet's 6x6x512
    input to FC6. NORM is AlexNet's ``LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2)``
    (the paper's "contrast normalisation across feature maps"). The layout and keys are
    :func:`~convbackends.models.alexnet`'s: ``features.0`` (CONV1), ``.4``, ``.8``,
    ``.10``, ``.12``, an adaptive 6x6 ``avgpool`` (the identity at 224x224, so smaller
    inputs also run), ``flatten``, ``classifier.1``, ``.4``, ``.6``. PyTorch's default
    initialisation.

    ``data_format="channels_last"``: ``(N, H, W, C)`` input, the channels-first model's
    outputs for the same ``state_dict`` (see :mod:`convbackends.nn.layout`).
    """
    gen = np.random.default_rng(rng)
    kw = dict(dtype=dtype, rng=gen)
    features = Sequential(
        Conv2d(3, 96, 7, 2, 1, **kw), ReLU(inplace=True), MaxPool2d(3, 2, ceil_mode=True),
        LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        Conv2d(96, 256, 5, 2, **kw), ReLU(inplace=True), MaxPool2d(3, 2, ceil_mode=True),
        LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        Conv2d(256, 512, 3, padding=1, **kw), ReLU(inplace=True),
        Conv2d(512, 1024, 3, padding=1, **kw), ReLU(inplace=True),
        Conv2d(1024, 512, 3, padding=1, **kw), ReLU(inplace=True), MaxPool2d(3, 2))
    classifier = Sequential(
        Dropout(dropout, rng=gen), Linear(512 * 6 * 6, 4096, **kw), ReLU(inplace=True),
        Dropout(dropout, rng=gen), Linear(4096, 4096, **kw), ReLU(inplace=True),
        Linear(4096, num_classes, **kw))
    return set_data_format(Sequential({"features": features, "avgpool": AdaptiveAvgPool2d((6, 6)),
                       "flatten": Flatten(), "classifier": classifier}, backend=backend), data_format)
