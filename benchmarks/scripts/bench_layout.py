"""Channels-last kernels against the layout lowering, on ResNet-18's convolution layers.

Usage (one benchmark at a time on a shared machine; BLAS variables unset for timing)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        python benchmarks/scripts/bench_layout.py --backend im2col --batch 1 8

Per layer, three contenders of one backend, interleaved call by call
(:func:`convbackends.tools.measure.time_calls`) in this one process (they are the same
library): ``first``, the channels-first call on NCHW input; ``native``, the channels-last
call on NHWC input through the backend's own channels-last kernel; ``lowered``, the same
channels-last call through the layout lowering (the backend's channels-first kernel on
transposed views, the result copied back to NHWC). Each reuses an ``out=`` buffer. The
table gives the medians and ``native / lowered`` (below 1: the native kernel pays).
"""

import argparse
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import convbackends as cb  # noqa: E402
from convbackends.tools.measure import Sampler, time_calls  # noqa: E402
from convbackends.tools.workloads import suite  # noqa: E402


class _Lowered:
    """The named backend with its channels-last kernels hidden from dispatch."""

    channels_last_ops = ()

    def __init__(self, backend):
        self._backend = backend

    def __getattr__(self, name):
        return getattr(self._backend, name)


def _contenders(backend, lay):
    x, w, b = lay.make_inputs()
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    kw = lay.conv_kwargs()
    native, lowered = cb.get_backend(backend), _Lowered(cb.get_backend(backend))
    y_first = np.empty(lay.output_shape, np.float32)
    y_last = np.empty(np.moveaxis(y_first, 1, -1).shape, np.float32)
    return {
        "first": lambda: cb.conv(x, w, b, backend=native, out=y_first, **kw),
        "native": lambda: cb.conv(x_last, w, b, backend=native, out=y_last,
                                  data_format="channels_last", **kw),
        "lowered": lambda: cb.conv(x_last, w, b, backend=lowered, out=y_last,
                                   data_format="channels_last", **kw),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="im2col")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--suite", default="resnet18")
    args = parser.parse_args(argv)
    print(f"| batch | layer | first ms | native ms | lowered ms | native / lowered |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for batch in args.batch:
        for lay in suite(args.suite, batch):
            fns = _contenders(args.backend, lay)
            samplers = {n: Sampler(f, min_time=0.05) for n, f in fns.items()}
            t = time_calls(samplers, repeat=args.repeat, warmup=1)
            ms = {n: t[n].median * 1e3 for n in fns}
            print(f"| {batch} | {lay.name.split('.', 1)[1]} ({lay.describe()}) | "
                  f"{ms['first']:.2f} | {ms['native']:.2f} | {ms['lowered']:.2f} | "
                  f"{ms['native'] / ms['lowered']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
