"""Whole-model forward time per backend (and ``auto``) against PyTorch CPU, side by side.

Usage (from the repository root; one model and batch per run keeps each run short)::

    flock /tmp/convbackends-bench.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        .venv/bin/python benchmarks/scripts/bench_models.py --model vgg16 --batch 8

Our model gets the weights of its PyTorch twin (the hand-written twins of
``tests/test_models.py``), so each row also reports the relative error against PyTorch's
output. PyTorch runs in a process of its own (:class:`convbackends.tools.peer.Peer`).
Every round runs all backends and PyTorch in turn
(:func:`convbackends.tools.measure.time_calls`), so a change in machine load hits them
alike; a forward under 0.5 s is preceded by ``--settle`` seconds of untimed ones, so the
previous library's worker threads have stopped spinning (without it PyTorch, timed right
after a NumPy GEMM, measured 2-3x slower here, more under load). The table gives the best
and the median time of
each, and the ratio of best to PyTorch's best: on a shared machine PyTorch's OpenMP
threads suffer most from other processes (they spin at every barrier), so the best run is
the fairest comparison; the median shows the spread. A backend that declines a layer is
listed as such; one whose first (warm-up) forward takes longer than ``--slow`` seconds is
timed by that one call only.
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from convbackends.tools.measure import (SETTLE_SECONDS, Sampler,  # noqa: E402
                                        relative_error, time_calls)
from convbackends.tools.peer import Peer  # noqa: E402

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
    p.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                   help="seconds of untimed forwards before each timed one under 0.5 s, so "
                        "the thread pools of the previous library (OpenBLAS, OpenMP, "
                        "Numba) stop spinning")
    return p.parse_args()


def torch_twin(model, batch, threads, path):
    """In the peer process: the PyTorch twin and one input, both saved to ``path``.

    Returns ``(run, info)``, as a :class:`convbackends.tools.peer.Peer` setup target must.
    """
    import torch
    from tests import test_models as twins
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    theirs = getattr(twins, f"torch_{model}")(torch.nn).eval()
    x = np.random.default_rng(0).standard_normal((batch,) + INPUTS[model], dtype=np.float32)
    np.savez(path, x=x, **{k: v.numpy() for k, v in theirs.state_dict().items()})
    xt = torch.from_numpy(x)

    def run():
        with torch.no_grad():
            return theirs(xt).numpy()

    return run, {"torch": torch.__version__, "threads": torch.get_num_threads()}


def build(args, peer, path):
    """Our model with the weights of its PyTorch twin (built in ``peer``), and the input."""
    import convbackends as cb
    info = peer.setup(f"{Path(__file__).stem}:torch_twin", model=args.model,
                      batch=args.batch, threads=args.threads, path=str(path))
    with np.load(path) as saved:
        arrays = dict(saved)
    x = arrays.pop("x")
    ours = getattr(cb.models, args.model)().eval()
    ours.load_state_dict(arrays)
    return ours, x, info


def main():
    args = parse_args()
    import convbackends as cb
    names = (args.backends.split(",") if args.backends
             else [n for n in cb.available_backends()])
    with Peer() as peer, tempfile.TemporaryDirectory() as tmp:
        ours, x, info = build(args, peer, Path(tmp) / "twin.npz")
        ref = peer.result()
        outputs = {}

        def forward(name):
            def run():
                ours.backend = name
                outputs[name] = ours(x)
            return Sampler(run)

        samplers = {"torch": peer.sample, **{n: forward(n) for n in names}}
        timings = time_calls(samplers, repeat=args.repeat, settle=args.settle,
                             warmup_limit=args.slow, catch=(cb.UnsupportedError,))
    times, notes = {}, {}
    for name, t in timings.items():
        times[name] = t.samples or ([t.first] if t.first is not None else [])
        if t.failure is not None:
            notes[name] = f"declines a layer: {str(t.failure).split('. Backends')[0]}"
        elif not t.samples:
            notes[name] = f"one forward only (warm-up over {args.slow:g} s)"
    errors = {n: relative_error(y, ref) for n, y in outputs.items()}
    report(args, times, notes, errors, info)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def report(args, times, notes, errors, torch_info):
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"# {args.model}, batch {args.batch}, float32; {cpu_name()}, "
          f"{os.cpu_count()} cores, load {load} (1, 5, 15 min); torch {torch_info['torch']} "
          f"with {torch_info['threads']} threads; {args.repeat} interleaved runs")
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
