"""pytest-benchmark, side by side: every available backend on a few layers, a table per layer.

Outside the default test run (``testpaths`` is ``tests``); select it by path::

    pytest benchmarks/pytest --benchmark-group-by=param:layer --benchmark-columns=median,iqr,ops

Each layer is its own group (``benchmark.group``), so one table compares the backends on it;
every result is also checked against the float64 reference before it is timed. The timing
itself is pytest-benchmark's (it calibrates rounds and reports their spread).
"""

import numpy as np
import pytest

import convbackends as cb
from convbackends.tools import reference, workloads
from convbackends.tools.measure import NAIVE_MAX_MACS, relative_error, tolerance

pytestmark = pytest.mark.benchmark_suite

BATCH = 2
LAYERS = ["resnet18.layer1.0.conv1", "resnet18.layer3.0.conv2", "resnet50.layer2.0.conv3",
          "mobilenet.block3.dw", "large-kernels.blur31", "signals.m5.conv2"]
BACKENDS = ["naive", "im2col", "fft", "winograd", "numba", "cuda", "auto"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer", LAYERS)
def test_conv(benchmark, layer, backend):
    lay = workloads.layer(layer, batch=BATCH)
    b = cb.get_backend(backend)
    why = b.available() or b.supports("conv", lay.spec())
    if why is not None:
        pytest.skip(f"{backend}: {why}")
    if backend == "naive" and lay.macs > NAIVE_MAX_MACS:
        pytest.skip("naive: too slow for this layer")
    x, w, bias = lay.make_inputs()
    kwargs = lay.conv_kwargs()
    out = np.empty(lay.output_shape, np.float32)
    y = cb.conv(x, w, bias, backend=backend, **kwargs)      # also the warm-up (Numba compiles)
    error = relative_error(y, reference.conv(x, w, bias, **kwargs))
    assert error < tolerance(backend, "float32")

    benchmark.group = layer
    benchmark.extra_info.update(gflop=lay.flops / 1e9, rel_error=error)
    benchmark(cb.conv, x, w, bias, backend=backend, out=out, **kwargs)
