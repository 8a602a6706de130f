"""The ``numba`` backend side by side with ``im2col`` and PyTorch CPU, and its compile times.

Usage (from the repository root; each part stays under four minutes)::

    flock /tmp/convbackends-bench.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        .venv/bin/python benchmarks/scripts/bench_numba.py --part resnet18

Parts: ``threads`` (one ResNet 3x3 layer on 1 and 2 Numba threads), ``resnet18`` (its
3x3 layers at batch 8), ``depthwise`` (MobileNet's depthwise 3x3 layers, batch 1),
``signals`` (1-D, 1x64x16000, kernel 9) and ``volumes`` (3-D, 1x16x32x64x64, kernel 3),
``compile`` (first call per kernel in a fresh process with an empty Numba cache, then in
another fresh process with that cache warm). Every round runs each contender once in turn
(:func:`convbackends.tools.measure.time_calls`: short calls after 0.15 s of untimed ones,
so the previous contender's spinning worker threads have gone idle), so a change in
machine load hits them alike; PyTorch runs in a process of its own. Tables give the median
time of float32 calls and the ratio to the numba backend's median (above 1: slower than
numba), then the same from the best (fastest) calls, which suffer least from other
processes.
"""

import argparse
import os
import platform
import subprocess
import sys
import tempfile

import numpy as np

from convbackends.tools.measure import Sampler, time_call, time_calls
from convbackends.tools.peer import Peer

# (name, input shape, weight shape, keyword arguments)
RESNET18_3X3 = [
    ("layer1 64->64 56x56", (8, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    ("layer2.0 64->128 s2", (8, 64, 56, 56), (128, 64, 3, 3), dict(stride=2, padding=1)),
    ("layer2 128->128 28x28", (8, 128, 28, 28), (128, 128, 3, 3), dict(padding=1)),
    ("layer3.0 128->256 s2", (8, 128, 28, 28), (256, 128, 3, 3), dict(stride=2, padding=1)),
    ("layer3 256->256 14x14", (8, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
    ("layer4.0 256->512 s2", (8, 256, 14, 14), (512, 256, 3, 3), dict(stride=2, padding=1)),
    ("layer4 512->512 7x7", (8, 512, 7, 7), (512, 512, 3, 3), dict(padding=1)),
]
DEPTHWISE = [(f"dw {c}@{size} s{s}", (1, c, size, size), (c, 1, 3, 3),
              dict(stride=s, padding=1, groups=c))
             for c, size, s in [(32, 112, 1), (64, 112, 2), (128, 56, 1), (128, 56, 2),
                                (256, 28, 1), (256, 28, 2), (512, 14, 1), (512, 14, 2),
                                (512, 7, 1)]]
SIGNALS = [("1-D 64->64 x16000 k9", (1, 64, 16000), (64, 64, 9), dict(padding=4))]
VOLUMES = [("3-D 16->16 32x64x64 k3", (1, 16, 32, 64, 64), (16, 16, 3, 3, 3), dict(padding=1))]
THREADS_LAYER = RESNET18_3X3[2]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", required=True, choices=["threads", "resnet18", "depthwise",
                                                     "signals", "volumes", "compile"])
    p.add_argument("--repeat", type=int, default=7, help="timed rounds per layer")
    p.add_argument("--first-calls", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args()


def machine():
    """One line naming the CPU, the load and the BLAS threads, for the record."""
    from threadpoolctl import threadpool_info
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = ", ".join(f"{i['internal_api']} {i['num_threads']} threads"
                     for i in threadpool_info() if i["user_api"] == "blas")
    return (f"{model}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; BLAS: {blas}; "
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")


def contenders(xs, ws, kw, peer):
    """Samplers of numba, im2col and torch (in ``peer``) on the same float32 data."""
    import convbackends as cb
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32)
    b = rng.standard_normal(ws[0], dtype=np.float32)
    out = np.empty(cb.explain(xs, ws, **kw).output_shape, np.float32)
    peer.setup_conv(x, w, b, threads=2, **kw)
    return {name: Sampler(lambda name=name: cb.conv(x, w, b, backend=name, out=out, **kw))
            for name in ("numba", "im2col")} | {"torch": peer.sample}


def compare(layers, repeat):
    import convbackends as cb
    print(f"{'layer':26} {'GFLOP':>6} {'numba ms':>9} {'GFLOP/s':>8} {'im2col':>7} {'torch':>7}"
          f"   best of {repeat}: {'numba ms':>8} {'im2col':>7} {'torch':>7}")
    with Peer() as peer:
        for name, xs, ws, kw in layers:
            timings = time_calls(contenders(xs, ws, kw, peer), repeat=repeat)
            med = {k: t.median for k, t in timings.items()}
            best = {k: t.min for k, t in timings.items()}
            flops = 2 * cb.explain(xs, ws, **kw).macs
            print(f"{name:26} {flops / 1e9:6.2f} {med['numba'] * 1e3:9.2f} "
                  f"{flops / med['numba'] / 1e9:8.1f} {med['im2col'] / med['numba']:7.2f} "
                  f"{med['torch'] / med['numba']:7.2f}   {'':10}{best['numba'] * 1e3:8.2f} "
                  f"{best['im2col'] / best['numba']:7.2f} {best['torch'] / best['numba']:7.2f}",
                  flush=True)


def thread_scaling(repeat):
    import numba
    import convbackends as cb
    name, xs, ws, kw = THREADS_LAYER
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs, dtype=np.float32)
    w = rng.standard_normal(ws, dtype=np.float32)
    b = rng.standard_normal(ws[0], dtype=np.float32)

    def on_threads(n):
        def run():
            numba.set_num_threads(n)            # cheap next to a layer: a thread-local store
            cb.conv(x, w, b, backend="numba", **kw)
        return Sampler(run)

    timings = time_calls({n: on_threads(n) for n in (1, 2)}, repeat=repeat)
    one, two = timings[1].median, timings[2].median
    flops = 2 * cb.explain(xs, ws, **kw).macs
    print(f"{name}, batch {xs[0]}: 1 thread {one * 1e3:.1f} ms ({flops / one / 1e9:.1f} "
          f"GFLOP/s), 2 threads {two * 1e3:.1f} ms ({flops / two / 1e9:.1f} GFLOP/s): "
          f"speed-up {one / two:.2f}x")


def first_calls():
    """Seconds of the first call of each kernel (float32), in this process."""
    import convbackends as cb
    rng = np.random.default_rng(0)
    x2 = rng.standard_normal((1, 4, 9, 9), dtype=np.float32)
    w2 = rng.standard_normal((4, 4, 3, 3), dtype=np.float32)
    dw = rng.standard_normal((4, 1, 3, 3), dtype=np.float32)
    calls = [("conv (split_phases + conv)", lambda: cb.conv2d(x2, w2, padding=1)),
             ("depthwise conv (conv_depthwise)", lambda: cb.conv2d(x2, dw, groups=4)),
             ("conv_transpose", lambda: cb.conv_transpose2d(x2, w2, stride=2)),
             ("max_pool", lambda: cb.max_pool2d(x2, 2)),
             ("avg_pool", lambda: cb.avg_pool2d(x2, 2)),
             ("adaptive_avg_pool", lambda: cb.adaptive_avg_pool2d(x2, 3))]
    with cb.set_backend("numba"):
        for name, f in calls:
            print(f"{name:36} {time_call(f, repeat=0).first:7.2f} s")


def compile_times():
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("empty cache (compiles)", "warm cache, fresh process"):
            print(f"-- {label}")
            subprocess.run([sys.executable, __file__, "--part", "compile", "--first-calls"],
                           env=env, check=True)


def main():
    args = parse_args()
    if args.first_calls:
        first_calls()
        return
    print(machine())
    if args.part == "threads":
        thread_scaling(args.repeat)
    elif args.part == "compile":
        compile_times()
    else:
        compare({"resnet18": RESNET18_3X3, "depthwise": DEPTHWISE, "signals": SIGNALS,
                 "volumes": VOLUMES}[args.part], args.repeat)
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
