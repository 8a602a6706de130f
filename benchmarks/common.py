"""What the asv suites share: the layer grid, the backends, set-up checks and the reference.

Each layer of the grid stands for a kind of geometry (the auto policy's crossovers): a tiny
LeNet layer, ResNet's 7x7/2 stem, 3x3 layers at large and small images, a strided 1x1, a
depthwise 3x3, a 1-D and a 3-D layer, and a 31x31 kernel. ``asv run`` measures all of it.

``CONVBACKENDS_ASV_QUICK=1`` shrinks every suite to a few small layers (still every
backend, every kind of benchmark) for a smoke run that ends in about a minute:
``CONVBACKENDS_ASV_QUICK=1 asv run --python=same --quick --dry-run``. asv passes the
environment on to the benchmark processes; results measured so are not the suite's.
``CONVBACKENDS_ASV_BACKENDS=im2col,numba`` keeps only the backends named.
"""

import os

import convbackends as cb
from convbackends.tools import reference
from convbackends.tools.measure import NAIVE_MAX_MACS, relative_error

QUICK = os.environ.get("CONVBACKENDS_ASV_QUICK", "").strip().lower() in ("1", "true", "yes",
                                                                          "on")


def grid(full, quick):
    """``full``, or ``quick`` under ``CONVBACKENDS_ASV_QUICK=1``."""
    return list(quick if QUICK else full)


def chosen(names):
    """``names`` less those ``CONVBACKENDS_ASV_BACKENDS`` (comma-separated) leaves out."""
    keep = [n.strip() for n in os.environ.get("CONVBACKENDS_ASV_BACKENDS", "").split(",")
            if n.strip()]
    return [n for n in names if n in keep] if keep else list(names)


BATCH = 2
BACKENDS = chosen(["naive", "im2col", "fft", "winograd", "numba", "auto"])  # cuda: benchmarks/gpu
LAYERS = grid(["lenet5.c3", "resnet18.conv1", "resnet18.layer1.0.conv1",
               "resnet18.layer3.0.conv2", "resnet18.layer2.0.downsample.0",
               "mobilenet.block3.dw", "signals.m5.conv2", "volumes.c3d.conv5a",
               "large-kernels.blur31"],
              ["lenet5.c3", "mobilenet.block3.dw", "signals.m5.conv2"])


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
