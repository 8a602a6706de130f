"""Whole-model forward time per backend (and ``auto``) against PyTorch CPU, side by side.

Usage (from the repository root; one model and batch per run keeps each run short)::

    flock /tmp/convbackends-bench.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        .venv/bin/python benchmarks/scripts/bench_models.py --model vgg16 --batch 8

Our model gets the weights of its PyTorch twin (the hand-written twins of
``tests/test_models.py``), so each row also reports the relative error against PyTorch's
output. Every repeat runs all backends and PyTorch in turn, so a change in machine load
hits them alike; a short sleep before each timed call lets the previous library's
worker threads stop spinning (without it PyTorch, timed right after a NumPy GEMM, measured
2-3x slower here, more under load). The table gives the best and the median time of
each, and the ratio of best to PyTorch's best: on a shared machine PyTorch's OpenMP
threads suffer most from other processes (they spin at every barrier), so the best run is
the fairest comparison; the median shows the spread. A backend that declines a layer is
listed as such; one whose first (warm-up) forward takes longer than ``--slow`` seconds is
timed by that one call only.
"""

import argparse
import os
import pathlib
import platform
import statistics
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
INPUTS = {"lenet5": (1, 32, 32), "alexnet": (3, 227, 227), "vgg16": (3, 224, 224),
          "resnet18": (3, 224, 224)}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(INPUTS), required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--backends", default=None,
                   help="comma-separated; default: every available backend and auto")
    p.add_argument("--repeat", type=int, default=5, help="timed forwards per backend")
    p.add_argument("--slow", type=float, default=20.0,
                   help="seconds: a warm-up slower than this is the only timing taken")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--settle", type=float, default=0.3,
                   help="seconds of sleep before each timed forward, so the thread pools "
                        "of the previous library (OpenBLAS, OpenMP, Numba) stop spinning")
    return p.parse_args()


def build(args):
    """Our model with the weights of its PyTorch twin, the twin, and one input."""
    import torch
    sys.path.insert(0, str(ROOT))
    from tests import test_models as twins
    import convbackends as cb
    torch.manual_seed(0)
    theirs = getattr(twins, f"torch_{args.model}")(torch.nn).eval()
    ours = getattr(cb.models, args.model)().eval()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((args.batch,) + INPUTS[args.model],
                                                  dtype=np.float32)
    return ours, theirs, x


def timed(f, settle=0.0):
    """Seconds one call of ``f`` takes, and its result; ``settle`` seconds of sleep first."""
    time.sleep(settle)
    start = time.perf_counter()
    y = f()
    return time.perf_counter() - start, y


def main():
    args = parse_args()
    import torch
    import convbackends as cb
    torch.set_num_threads(args.threads)
    ours, theirs, x = build(args)
    xt = torch.from_numpy(x)
    names = (args.backends.split(",") if args.backends
             else [n for n in cb.available_backends()])

    def run_torch():
        with torch.no_grad():
            return theirs(xt).numpy()

    def run_ours(name):
        ours.backend = name
        return ours(x)

    _, ref = timed(run_torch)
    times = {"torch": [], **{n: [] for n in names}}
    notes, errors = {}, {}
    for name in names:                       # warm-up: compiles kernels, fills caches
        try:
            seconds, y = timed(lambda: run_ours(name))
        except cb.UnsupportedError as e:
            notes[name] = f"declines a layer: {str(e).split('. Backends')[0]}"
            continue
        errors[name] = np.linalg.norm(y - ref) / np.linalg.norm(ref)
        if seconds > args.slow:
            times[name].append(seconds)
            notes[name] = f"one forward only (warm-up over {args.slow:g} s)"
    active = [n for n in names if n not in notes]
    for _ in range(args.repeat):
        times["torch"].append(timed(run_torch, args.settle)[0])
        for name in active:
            times[name].append(timed(lambda: run_ours(name), args.settle)[0])
    report(args, times, notes, errors)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def report(args, times, notes, errors):
    import torch
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"# {args.model}, batch {args.batch}, float32; {cpu_name()}, "
          f"{os.cpu_count()} cores, load {load} (1, 5, 15 min); torch {torch.__version__} "
          f"with {torch.get_num_threads()} threads; {args.repeat} interleaved runs")
    base = min(times["torch"])
    print("| backend | best ms | median ms | best / PyTorch best | rel. error | note |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    print(f"| PyTorch | {base * 1e3:.1f} | {statistics.median(times['torch']) * 1e3:.1f} | "
          f"1.00 | - | |")
    for name, values in times.items():
        if name == "torch":
            continue
        if not values:
            print(f"| {name} | - | - | - | - | {notes.get(name, '')} |")
            continue
        print(f"| {name} | {min(values) * 1e3:.1f} | {statistics.median(values) * 1e3:.1f} "
              f"| {min(values) / base:.2f} | {errors[name]:.1e} | {notes.get(name, '')} |")


if __name__ == "__main__":
    main()
