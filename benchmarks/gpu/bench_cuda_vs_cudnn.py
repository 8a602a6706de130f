"""Time convbackends' ``cuda`` backend against cuDNN (through PyTorch) on a GPU.

Run from the repository root on a machine with an NVIDIA GPU, PyTorch with CUDA, and
numba-cuda (with numpy < 2.5; see docs/perf-cuda.md for the lent H100)::

    python benchmarks/gpu/bench_cuda_vs_cudnn.py [--repeats 30] [--tiles all] [--json out.json]

Method (the one behind GPU.md's anchor table, so rows compare):

- data on the device: PyTorch CUDA tensors, handed to convbackends as Numba views of the
  same memory (``numba.cuda.as_cuda_array``), so neither side copies anything;
- cuDNN through ``torch.nn.functional.conv2d`` with ``torch.backends.cudnn.benchmark = True``,
  in strict fp32 (``allow_tf32 = False``) and in TF32; our kernels are always strict fp32;
- CUDA events around each call, a ~1 ms GPU sleep before each so Python's launch overhead
  is hidden, inputs rotated over 8 buffers so L2 does not flatter, the median of
  ``--repeats`` after ``--warmup`` calls (the shared loop,
  :func:`convbackends.tools.measure.time_calls`, with a CUDA-event sampler); Numba's
  deallocations deferred while timing;
- cuDNN and our kernels share one process here, unlike the CPU comparisons: they share the
  device memory of the inputs, and CUDA events time the device, which host thread pools
  do not slow;
- the first call of each backend configuration timed separately (wall clock, synchronised):
  it includes compiling the kernel unless Numba's on-disk cache already holds it;
- relative error ``||y - ref|| / ||ref||`` against cuDNN in float64;
- NumPy callers: the wall time of a NumPy-in/NumPy-out call, its bytes copied each way, and
  pageable and pinned host-to-device bandwidth for the input's size.
"""

import argparse
import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import convbackends as cb  # noqa: E402
from convbackends.backends.cuda import GPU_TILES, CudaBackend  # noqa: E402
from convbackends.tools.measure import relative_error, time_call, time_calls  # noqa: E402

# GPU.md's anchor rows: (N, C, H, W, K, kernel, stride, pad, groups).
LAYERS = [
    ("resnet50.stem 7x7/2", (32, 3, 224, 224, 64, 7, 2, 3, 1)),
    ("3x3 56px 64ch", (32, 64, 56, 56, 64, 3, 1, 1, 1)),
    ("3x3 28px 128ch", (32, 128, 28, 28, 128, 3, 1, 1, 1)),
    ("3x3 14px 256ch", (32, 256, 14, 14, 256, 3, 1, 1, 1)),
    ("3x3 7px 512ch", (32, 512, 7, 7, 512, 3, 1, 1, 1)),
    ("1x1 56px 64->256", (32, 64, 56, 56, 256, 1, 1, 0, 1)),
    ("1x1 56px 256->64", (32, 256, 56, 56, 64, 1, 1, 0, 1)),
    ("alexnet.conv2 5x5", (32, 96, 27, 27, 256, 5, 1, 2, 1)),
    ("lenet.c1 5x5", (256, 1, 32, 32, 6, 5, 1, 0, 1)),
    ("lenet.c3 5x5", (256, 6, 14, 14, 16, 5, 1, 0, 1)),
    ("3x3 224px 64ch b8", (8, 64, 224, 224, 64, 3, 1, 1, 1)),
    ("depthwise 3x3 112px", (32, 32, 112, 112, 32, 3, 1, 1, 32)),
]
ROTATE = 8
SLEEP_MS = 1.0


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--layers", default="all",
                   help="comma-separated indices into the layer list (default: all)")
    p.add_argument("--tiles", default="auto",
                   help="'auto' (the backend's choice), or 'all' to time every GPU tile and "
                        "the direct kernel too (to tune choose_tile and MIN_GEMM_CHANNELS)")
    p.add_argument("--numpy-repeats", type=int, default=5,
                   help="repeats of the NumPy-in/NumPy-out call (0 skips it)")
    p.add_argument("--json", type=Path, help="also write the rows as JSON here")
    return p.parse_args()


class Timer:
    """CUDA-event timings of one callable, with the GPU kept busy while Python launches."""

    def __init__(self, torch, repeats, warmup):
        from numba import cuda
        self.torch, self.cuda = torch, cuda
        self.repeats, self.warmup = repeats, warmup
        self.sleep_cycles = self._cycles_per_ms() * SLEEP_MS

    def _cycles_per_ms(self):
        torch = self.torch
        if not hasattr(torch.cuda, "_sleep"):
            return 0
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch.cuda._sleep(1_000_000)
        end.record()
        end.synchronize()
        return int(1_000_000 / max(start.elapsed_time(end), 1e-3))

    def _event_sampler(self, fn, inputs):
        """A sampler: device seconds between events around ``fn(input)``, inputs rotated."""
        torch, calls = self.torch, itertools.count()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def sample(settle):         # nothing to settle: host thread pools do not slow the GPU
            if self.sleep_cycles:
                torch.cuda._sleep(int(self.sleep_cycles))
            start.record()
            fn(inputs[next(calls) % len(inputs)])
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        return sample

    def gpu_ms(self, fn, inputs):
        """Median milliseconds between events around ``fn(input)``, inputs rotated."""
        with self.cuda.defer_cleanup():
            timing = time_calls({"gpu": self._event_sampler(fn, inputs)},
                                repeat=self.repeats, warmup=self.warmup)["gpu"]
        return timing.median * 1e3

    def wall_s(self, fn, repeats=1):
        """Median wall seconds of ``fn()`` including a device synchronisation."""
        def synced():
            fn()
            self.torch.cuda.synchronize()
        self.torch.cuda.synchronize()
        return time_call(synced, repeat=repeats, warmup=0).median


def bandwidth_gbs(timer, cuda, host):
    """Host-to-device GB/s of ``host`` (pageable) and of a pinned copy of it."""
    pageable = timer.wall_s(lambda: cuda.to_device(host), 5)
    pinned_host = cuda.pinned_array(host.shape, dtype=host.dtype)
    pinned_host[...] = host
    pinned = timer.wall_s(lambda: cuda.to_device(pinned_host), 5)
    return host.nbytes / pageable / 1e9, host.nbytes / pinned / 1e9


def bench_layer(name, geometry, args, torch, timer):
    from numba import cuda
    n, c, h, w, k, r, stride, pad, groups = geometry
    F = torch.nn.functional
    gen = torch.Generator(device="cuda").manual_seed(0)
    xs = [torch.randn((n, c, h, w), device="cuda", generator=gen) for _ in range(ROTATE)]
    weight = torch.randn((k, c // groups, r, r), device="cuda", generator=gen) / math.sqrt(
        c // groups * r * r)
    ref = F.conv2d(xs[0].double(), weight.double(), stride=stride, padding=pad,
                   groups=groups).cpu().numpy()
    spec, _ = cb.spec.conv_spec("conv2d", (n, c, h, w), tuple(weight.shape), stride=stride,
                                padding=pad, groups=groups)
    flops = 2 * spec.macs
    row = {"layer": name, "geometry": list(geometry), "gflop": flops / 1e9}

    for mode, tf32 in (("cudnn_fp32", False), ("cudnn_tf32", True)):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        call = lambda x: F.conv2d(x, weight, stride=stride, padding=pad, groups=groups)  # noqa: E731
        ms = timer.gpu_ms(call, xs)
        row[f"{mode}_ms"] = ms
        row[f"{mode}_tflops"] = flops / ms / 1e9
        row[f"{mode}_rel_err"] = relative_error(call(xs[0]).cpu().numpy(), ref)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    dxs = [cuda.as_cuda_array(x) for x in xs]  # views of the same device memory
    dw = cuda.as_cuda_array(weight)
    variants = [("cuda", CudaBackend())]
    if args.tiles == "all":
        variants += [(f"cuda_tile_{t.bm}x{t.bn}x{t.bk}",
                      CudaBackend(kernel="implicit_gemm", tile=t)) for t in GPU_TILES]
        variants.append(("cuda_tile_direct", CudaBackend(kernel="direct")))
    for label, backend in variants:
        why = backend.supports("conv", spec)
        if why is not None:
            row[f"{label}_skipped"] = why
            continue
        def call(dx, backend=backend):
            return cb.conv2d(dx, dw, stride=stride, padding=pad, groups=groups,
                             backend=backend)

        def first(call=call):
            return call(dxs[0])

        row[f"{label}_first_call_s"] = timer.wall_s(first)
        ms = timer.gpu_ms(call, dxs)
        row[f"{label}_ms"] = ms
        row[f"{label}_tflops"] = flops / ms / 1e9
        row[f"{label}_vs_cudnn_fp32"] = row["cudnn_fp32_ms"] / ms
        row[f"{label}_wall_ms"] = timer.wall_s(first, 10) * 1e3
        row[f"{label}_rel_err"] = relative_error(first().copy_to_host(), ref)
        plan = backend.plan("conv", spec)
        row[f"{label}_kernel"] = plan["kernel"] + (
            f" {plan['tile']}, split-K {plan['split_k']}" if "tile" in plan else "")

    if args.numpy_repeats:
        backend = CudaBackend()
        x_host, w_host = xs[0].cpu().numpy(), weight.cpu().numpy()
        call = lambda: cb.conv2d(x_host, w_host, stride=stride, padding=pad,  # noqa: E731
                                 groups=groups, backend=backend)
        call()
        row["numpy_call_ms"] = timer.wall_s(call, args.numpy_repeats) * 1e3
        row["numpy_transfers"] = dict(backend.last_transfers)
        row["h2d_pageable_gbs"], row["h2d_pinned_gbs"] = bandwidth_gbs(timer, cuda, x_host)
    return row


def print_table(rows):
    head = ("| layer | GFLOP | cuDNN fp32 ms | cuDNN TF32 ms | cuda ms | TFLOP/s | x cuDNN fp32 "
            "| kernel | first call s | rel err | NumPy call ms | H2D pageable / pinned GB/s |")
    print(head)
    print("|" + " --- |" * head.count(" | ") + " --- |")
    for r in rows:
        cells = [r["layer"], f"{r['gflop']:.2f}", f"{r['cudnn_fp32_ms']:.3f}",
                 f"{r['cudnn_tf32_ms']:.3f}"]
        if "cuda_ms" in r:
            cells += [f"{r['cuda_ms']:.3f}", f"{r['cuda_tflops']:.1f}",
                      f"{r['cuda_vs_cudnn_fp32']:.2f}", r["cuda_kernel"],
                      f"{r['cuda_first_call_s']:.2f}", f"{r['cuda_rel_err']:.1e}"]
        else:
            cells += ["-"] * 5 + [r.get("cuda_skipped", "-")]
        if "numpy_call_ms" in r:
            cells += [f"{r['numpy_call_ms']:.2f}",
                      f"{r['h2d_pageable_gbs']:.1f} / {r['h2d_pinned_gbs']:.1f}"]
        else:
            cells += ["-", "-"]
        print("| " + " | ".join(cells) + " |")
    for r in rows:
        tiles = {k[len("cuda_tile_"):-3]: v for k, v in r.items()
                 if k.startswith("cuda_tile_") and k.endswith("_ms") and "wall" not in k}
        if tiles:
            timings = ", ".join(f"{t} {ms:.3f} ms" for t, ms in tiles.items())
            print(f"tiles {r['layer']}: {timings}")


def main():
    args = parse_args()
    backend = cb.get_backend("cuda")
    why = backend.available()
    if why is not None:
        sys.exit(f"the cuda backend cannot run here: {why}")
    import numba
    import torch
    if not torch.cuda.is_available():
        sys.exit("PyTorch sees no CUDA device: cuDNN cannot be timed")
    from numba import cuda
    torch.backends.cudnn.benchmark = True
    timer = Timer(torch, args.repeats, args.warmup)
    device = cuda.get_current_device()
    print(f"# {torch.cuda.get_device_name()} ({device.MULTIPROCESSOR_COUNT} SMs), torch "
          f"{torch.__version__}, cuDNN {torch.backends.cudnn.version()}, numba "
          f"{numba.__version__}, numba-cuda {__import__('numba_cuda').__version__}, numpy "
          f"{np.__version__}; median of {args.repeats} after {args.warmup} warm-up calls")
    chosen = range(len(LAYERS)) if args.layers == "all" else \
        [int(i) for i in args.layers.split(",")]
    rows = []
    for i in chosen:
        name, geometry = LAYERS[i]
        rows.append(bench_layer(name, geometry, args, torch, timer))
        print(f"# done: {name}", file=sys.stderr, flush=True)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
