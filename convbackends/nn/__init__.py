"""PyTorch-like layers over NumPy parameters, called as ``layer(x)``.

Constructors take PyTorch's arguments and defaults; layers with parameters also take
keyword-only ``backend=None``, ``dtype=np.float32`` and ``rng=None`` (a
:class:`numpy.random.Generator` or a seed) for PyTorch's default initialisation
distributions. ``state_dict()`` uses PyTorch's key names, so
``{k: v.numpy() for k, v in model.state_dict().items()}`` of a PyTorch twin loads unchanged.

Convolutions and pooling run through :mod:`convbackends.functional` on the layer's
``backend``; the other layers are NumPy expressions. Every layer also knows, from shapes
alone, its ``output_shape(input_shape)`` and its ``macs(input_shape)``, which is how
:func:`convbackends.models.summary` tabulates a model without running it.

One module per kind: :mod:`.module` (the :class:`Module` base), :mod:`.conv`,
:mod:`.pooling`, :mod:`.norm`, :mod:`.activation`, :mod:`.linear`, :mod:`.flatten` and
:mod:`.container`.
"""

from .activation import Dropout, ReLU, Tanh
from .container import BasicBlock, Sequential
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .flatten import Flatten
from .linear import Linear
from .module import Module
from .norm import BatchNorm1d, BatchNorm2d, BatchNorm3d, LocalResponseNorm
from .pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d,
                      AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d, AvgPool1d,
                      AvgPool2d, AvgPool3d, MaxPool1d, MaxPool2d, MaxPool3d, MaxUnpool1d,
                      MaxUnpool2d, MaxUnpool3d)

__all__ = ["Module", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
           "ConvTranspose3d", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d",
           "AvgPool2d", "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
           "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d",
           "AdaptiveMaxPool3d", "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d", "BatchNorm1d",
           "BatchNorm2d", "BatchNorm3d", "LocalResponseNorm", "ReLU", "Tanh", "Linear",
           "Dropout", "Flatten", "Sequential", "BasicBlock"]
