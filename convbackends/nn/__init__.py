"""PyTorch-like layers over NumPy parameters, called as ``layer(x)``.

Constructors take PyTorch's arguments and defaults; layers with parameters also take
keyword-only ``backend=None``, ``dtype=np.float32`` and ``rng=None`` (a
:class:`numpy.random.Generator` or a seed) for PyTorch's default initialisation
distributions. ``state_dict()`` uses PyTorch's key names, so
``{k: v.numpy() for k, v in model.state_dict().items()}`` of a PyTorch twin loads unchanged.

Convolutions and pooling run through :mod:`convbackends.functional` on the layer's
``backend``; the other layers are NumPy expressions. Every layer also knows, from shapes
alone, its ``output_shape(input_shape)``, its ``macs(input_shape)`` and (convolutions and
pooling) ``explain(input_shape)``, the backend call it would make, which is how
:func:`convbackends.models.summary` tabulates a model without running it. A library error
raised inside a model names the layer's path, as ``state_dict()`` keys do
(``layer2.0.downsample.0: ...``).

Training: in training mode a forward keeps what the backward needs; ``model.backward(g)``
returns the input's gradient and adds the parameters' gradients into ``named_grads()``
(PyTorch's gradients; convolutions and pooling through :mod:`convbackends.grad` on the
layer's backend). The losses :class:`CrossEntropyLoss` and :class:`MSELoss` return a float
and their ``backward()`` the logits' gradient; :mod:`convbackends.optim` updates the
parameters.

One module per kind: :mod:`.module` (the :class:`Module` base), :mod:`.conv`,
:mod:`.pooling`, :mod:`.norm`, :mod:`.activation`, :mod:`.linear`, :mod:`.flatten`,
:mod:`.container`, :mod:`.loss` and :mod:`.fuse` (inference fusion: :func:`fuse`, or
``model.fuse()``).
"""

from .activation import Dropout, Identity, ReLU, Tanh
from .container import BasicBlock, Sequential
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .flatten import Flatten
from .fuse import FusedBasicBlock, FusedConv, fuse
from .linear import Linear
from .loss import CrossEntropyLoss, MSELoss
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
           "Dropout", "Identity", "Flatten", "Sequential", "BasicBlock", "CrossEntropyLoss",
           "MSELoss", "fuse", "FusedConv", "FusedBasicBlock"]
