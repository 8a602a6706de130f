"""Convolution, backend x layer: speed, memory, GFLOP/s and error against float64.

Unsupported or unavailable combinations raise ``NotImplementedError`` in ``setup`` and show
as skipped. ``setup`` makes one untimed call, so Numba's compilation stays out of ``time_``;
``FirstCall`` measures it on its own.
"""

import os
import sys
import tempfile

import numpy as np

import convbackends as cb
# measure as a module: a time_call imported here would be collected as a benchmark
from convbackends.tools import measure, workloads

from .common import BACKENDS, BATCH, LAYERS, check_runnable, chosen, conv_error, grid


class ConvLayer:
    """Forward convolution of one layer of a real network, at batch 2, float32."""

    params = (BACKENDS, LAYERS)
    param_names = ["backend", "layer"]
    timeout = 180

    def setup(self, backend, layer):
        self.layer = workloads.layer(layer, batch=BATCH)
        check_runnable(backend, self.layer.spec())
        self.backend = backend
        self.x, self.w, self.b = self.layer.make_inputs()
        self.kwargs = self.layer.conv_kwargs()
        self.out = np.empty(self.layer.output_shape, np.float32)
        self.run()

    def run(self, out=None):
        return cb.conv(self.x, self.w, self.b, backend=self.backend, out=out, **self.kwargs)

    def time_forward(self, backend, layer):
        self.run(self.out)

    def peakmem_forward(self, backend, layer):
        self.run()

    def track_gflops(self, backend, layer):
        # setup made the warm-up call
        timing = measure.time_call(lambda: self.run(self.out), repeat=3, warmup=0)
        return self.layer.flops / timing.median / 1e9

    track_gflops.unit = "GFLOP/s"

    def track_rel_error(self, backend, layer):
        return conv_error(self.run(), self.x, self.w, self.b, self.kwargs)

    track_rel_error.unit = "relative error"


class FirstCall:
    """The first call in a fresh process with an empty Numba cache: import plus compilation."""

    # each combination compiles from nothing: the quick grid keeps one
    params = (chosen(grid(["naive", "winograd", "numba", "auto"], ["numba"])), ["lenet5.c3"])
    param_names = ["backend", "layer"]
    timeout = 300
    number = 1
    repeat = 1
    rounds = 1

    def setup(self, backend, layer):
        # Set before anything imports a backend module: their @njit(cache=True) functions
        # then look in this empty cache dir, and the first call compiles.
        self._cache = tempfile.TemporaryDirectory(prefix="convbackends-numba-")
        os.environ["NUMBA_CACHE_DIR"] = self._cache.name
        if "numba" in sys.modules:
            sys.modules["numba"].core.config.reload_config()
        self.layer = workloads.layer(layer, batch=1)
        check_runnable(backend, self.layer.spec())
        self.backend = backend
        self.x, self.w, self.b = self.layer.make_inputs()

    def teardown(self, backend, layer):
        self._cache.cleanup()

    def track_first_call(self, backend, layer):
        kwargs = self.layer.conv_kwargs()
        first = measure.time_call(lambda: cb.conv(self.x, self.w, self.b,
                                                  backend=self.backend, **kwargs), repeat=0)
        return first.first

    track_first_call.unit = "seconds"
