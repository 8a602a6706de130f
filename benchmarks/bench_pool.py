"""Pooling, backend x layer: the memory-bound ops, where the parallel direct loop should win."""

import numpy as np

import convbackends as cb
from convbackends.spec import pool_spec
from convbackends.tools import reference
from convbackends.tools.measure import relative_error

from .common import BATCH, check_runnable, chosen, grid

# name: (op, input shape without batch, kernel, stride, padding, extra keywords)
POOLS = {
    "resnet18.maxpool": ("max_pool", (64, 112, 112), 3, 2, 1, {}),
    "vgg16.features.4": ("max_pool", (64, 224, 224), 2, 2, 0, {}),
    "inception.avgpool3x3": ("avg_pool", (192, 28, 28), 3, 1, 1, {"count_include_pad": False}),
}


class PoolLayer:
    """2-D max and average pooling at batch 2, float32."""

    params = (chosen(["naive", "numba", "auto"]), grid(POOLS, ["resnet18.maxpool"]))
    param_names = ["backend", "layer"]
    timeout = 120

    def setup(self, backend, layer):
        op, shape, k, s, p, extra = POOLS[layer]
        x_shape = (BATCH,) + shape
        spec, _ = pool_spec("bench", op, x_shape, 2, k, s, p, **extra)
        check_runnable(backend, spec)
        self.op, self.extra, self.window = op, extra, (k, s, p)
        self.x = np.random.default_rng(0).standard_normal(x_shape).astype(np.float32)
        self.out = np.empty(spec.output_shape, np.float32)
        self.fn = cb.max_pool2d if op == "max_pool" else cb.avg_pool2d
        self.backend = backend
        self.run()

    def run(self, out=None):
        return self.fn(self.x, *self.window, backend=self.backend, out=out, **self.extra)

    def time_forward(self, backend, layer):
        self.run(self.out)

    def track_rel_error(self, backend, layer):
        ref = getattr(reference, self.op)(self.x, *self.window, **self.extra)
        return relative_error(self.run(), ref)

    track_rel_error.unit = "relative error"
