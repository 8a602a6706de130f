"""What the asv suites share: the layer grid, the backends, set-up checks and the reference.

The default grid is small on purpose: ``asv run --python=same --quick`` has to finish in a
few minutes on two cores. Each layer stands for a kind of geometry (the auto policy's
crossovers): a tiny LeNet layer, ResNet's 7x7/2 stem, 3x3 layers at large and small images,
a strided 1x1, a depthwise 3x3, a 1-D and a 3-D layer, and a 31x31 kernel.
"""

import convbackends as cb
from convbackends.tools import reference
from convbackends.tools.measure import NAIVE_MAX_MACS, relative_error

BATCH = 2
BACKENDS = ["naive", "im2col", "fft", "winograd", "numba", "auto"]   # cuda: benchmarks/gpu
LAYERS = ["lenet5.c3", "resnet18.conv1", "resnet18.layer1.0.conv1", "resnet18.layer3.0.conv2",
          "resnet18.layer2.0.downsample.0", "mobilenet.block3.dw", "signals.m5.conv2",
          "volumes.c3d.conv5a", "large-kernels.blur31"]


def check_runnable(backend, spec):
    """Raise ``NotImplementedError`` (asv's "skip") unless ``backend`` can run ``spec``."""
    b = cb.get_backend(backend)
    why = b.available() or b.supports(spec.op, spec)
    if why is not None:
        raise NotImplementedError(f"{backend}: {why}")
    if backend == "naive" and spec.macs > NAIVE_MAX_MACS:
        raise NotImplementedError(f"naive: {spec.macs:,} MACs is too slow for the grid")


def conv_error(y, x, w, b, kwargs):
    """``||y - ref|| / ||ref||`` against the float64 reference convolution."""
    return relative_error(y, reference.conv(x, w, b, **kwargs))
