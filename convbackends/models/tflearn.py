"""The small CNN of the lectures' TFLearn example, for 32x32 colour images."""

import numpy as np

from ..nn import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sequential
from ..nn.layout import set_data_format
from ..spec.layout import CHANNELS_FIRST

__all__ = ["tflearn_cnn"]


def tflearn_cnn(*, num_classes=10, backend=None, dtype=np.float32, rng=None,
                data_format=CHANNELS_FIRST):
    """The lectures' TFLearn network on ``(N, 3, 32, 32)``: 2,159,114 parameters.

    conv 32 3x3 ReLU (32x32) - max pool 2 (16x16) - conv 64 3x3 ReLU - conv 64 3x3 ReLU -
    max pool 2 (8x8) - FC 512 ReLU - dropout 0.5 - FC ``num_classes``. The softmax of the
    example's last layer belongs to the loss here (:class:`~convbackends.nn.CrossEntropyLoss`
    applies it to the logits), and the example trains with Adam at learning rate 0.001.

    TFLearn's ``conv_2d`` pads ``'same'`` by default, so every convolution keeps its input
    size (``padding="same"``: one pixel each side); its ``max_pool_2d`` strides by the
    kernel size. The weights start as PyTorch's layers start (TFLearn draws its own), and
    the FC layers read the 64x8x8 maps in channel-major order (TFLearn's are channels-last).

    Children: ``conv1, relu1, pool1, conv2, relu2, conv3, relu3, pool2, flatten, fc1, relu4,
    dropout, fc2``.

    ``data_format="channels_last"``: ``(N, H, W, C)`` input, the channels-first model's
    outputs for the same ``state_dict`` (see :mod:`convbackends.nn.layout`).
    """
    gen = np.random.default_rng(rng)
    kw = dict(dtype=dtype, rng=gen)
    return set_data_format(Sequential({
        "conv1": Conv2d(3, 32, 3, padding="same", **kw), "relu1": ReLU(inplace=True),
        "pool1": MaxPool2d(2),
        "conv2": Conv2d(32, 64, 3, padding="same", **kw), "relu2": ReLU(inplace=True),
        "conv3": Conv2d(64, 64, 3, padding="same", **kw), "relu3": ReLU(inplace=True),
        "pool2": MaxPool2d(2), "flatten": Flatten(),
        "fc1": Linear(64 * 8 * 8, 512, **kw), "relu4": ReLU(inplace=True),
        "dropout": Dropout(0.5, rng=gen),
        "fc2": Linear(512, num_classes, **kw),
    }, backend=backend), data_format)
