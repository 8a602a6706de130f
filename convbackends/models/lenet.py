"""LeNet-5 (LeCun et al. 1998)."""

import numpy as np

from ..nn import AvgPool2d, Conv2d, Flatten, Linear, Sequential, Tanh
from ..nn.layout import set_data_format
from ..spec.layout import CHANNELS_FIRST

__all__ = ["lenet5"]


def lenet5(*, num_classes=10, backend=None, dtype=np.float32, rng=None,
           data_format=CHANNELS_FIRST):
    """LeNet-5 (LeCun et al. 1998) on ``(N, 1, 32, 32)`` input: 61,706 parameters.

    C1 6@5x5 (28x28), S2 2x2 average pooling (14x14), C3 16@5x5 (10x10), S4 (5x5),
    C5 120@5x5 (1x1), F6 84, output ``num_classes``, tanh after C1, C3, C5 and F6. Each
    subsampling layer is a plain average (the paper's also has a trainable gain and bias
    per map) and C3 connects to all six maps (the paper's uses a fixed sparse table).

    Children: ``c1, tanh1, s2, c3, tanh3, s4, c5, tanh5, flatten, f6, tanh6, output``.

    ``data_format="channels_last"``: ``(N, H, W, C)`` input, the channels-first model's
    outputs for the same ``state_dict`` (see :mod:`convbackends.nn.layout`).
    """
    kw = dict(dtype=dtype, rng=np.random.default_rng(rng))
    return set_data_format(Sequential({
        "c1": Conv2d(1, 6, 5, **kw), "tanh1": Tanh(), "s2": AvgPool2d(2),
        "c3": Conv2d(6, 16, 5, **kw), "tanh3": Tanh(), "s4": AvgPool2d(2),
        "c5": Conv2d(16, 120, 5, **kw), "tanh5": Tanh(), "flatten": Flatten(),
        "f6": Linear(120, 84, **kw), "tanh6": Tanh(),
        "output": Linear(84, num_classes, **kw),
    }, backend=backend), data_format)
