"""Weight initialisations that torchvision applies after building a model."""

import math

from ..nn import Conv2d

__all__ = ["kaiming_normal_fan_out"]


def kaiming_normal_fan_out(model, gen):
    """Redraw every ``Conv2d`` inside ``model`` as torchvision does for VGG and ResNet.

    Weights from N(0, 2 / fan_out), ``fan_out = out_channels * kernel area`` (He et al.'s
    rule for ReLU networks, taken over the output side), biases zero; the other layers
    keep their initialisation. ``gen`` is a :class:`numpy.random.Generator`.
    """
    for m in model.modules():
        if isinstance(m, Conv2d):
            std = math.sqrt(2.0 / (m.weight.shape[0] * math.prod(m.kernel_size)))
            m.weight[...] = gen.standard_normal(m.weight.shape, dtype=m.weight.dtype.type)
            m.weight *= m.weight.dtype.type(std)
            if m.bias is not None:
                m.bias[...] = 0
