"""Per-layer convolution gradients of a training step: every convolution of ResNet-18 (batch
8, 3x112x112) and LeNet-5 (batch 64, 1x32x32), input and weight gradients, per backend,
against PyTorch's autograd kernel, and optionally against another checkout of this project
(the code before a change).

Usage (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        OPENBLAS_THREAD_TIMEOUT=4 .venv/bin/python benchmarks/scripts/bench_grad_layers.py \\
        [--models resnet18,lenet5] [--backends im2col,auto] [--baseline OTHER_CHECKOUT] \\
        [--threads 2] [--repeat 5] [--json results.json]

Every contender runs in a worker process of its own (the workers of
``bench_training.py``): PyTorch's ``aten::convolution_backward`` with one gradient asked
for, each named backend of this checkout, and with ``--baseline`` the same backends
imported from that checkout (``before:im2col``, ...). Calls are timed in rounds of
rotating order with :func:`convbackends.tools.measure.time_calls`; the tables give
medians in ms, and the per-step totals weigh each layer by how often the network has it.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_training as bt  # noqa: E402  (the workers, their protocol and the timing glue)

# (name, times in the network, in channels, out channels, input size, kernel, stride,
# padding) at the batch of MODELS.
LAYERS = {
    "resnet18": (("conv1", 1, 3, 64, 112, 7, 2, 3),
                 ("layer1.*.conv*", 4, 64, 64, 28, 3, 1, 1),
                 ("layer2.0.conv1", 1, 64, 128, 28, 3, 2, 1),
                 ("layer2.*.conv2, layer2.1.conv1", 3, 128, 128, 14, 3, 1, 1),
                 ("layer2.0.downsample", 1, 64, 128, 28, 1, 2, 0),
                 ("layer3.0.conv1", 1, 128, 256, 14, 3, 2, 1),
                 ("layer3.*.conv2, layer3.1.conv1", 3, 256, 256, 7, 3, 1, 1),
                 ("layer3.0.downsample", 1, 128, 256, 14, 1, 2, 0),
                 ("layer4.0.conv1", 1, 256, 512, 7, 3, 2, 1),
                 ("layer4.*.conv2, layer4.1.conv1", 3, 512, 512, 4, 3, 1, 1),
                 ("layer4.0.downsample", 1, 256, 512, 7, 1, 2, 0)),
    "lenet5": (("c1", 1, 1, 6, 32, 5, 1, 0), ("c3", 1, 6, 16, 14, 5, 1, 0),
               ("c5", 1, 16, 120, 5, 5, 1, 0)),
}
BATCH = {"resnet18": 8, "lenet5": 64}
PEER = "torch-autograd"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(LAYERS))
    p.add_argument("--backends", default="im2col,auto")
    p.add_argument("--baseline", default=None,
                   help="another checkout of this project: its backends are timed too")
    p.add_argument("--ops", default="weight,input")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.1)
    p.add_argument("--budget", type=float, default=8.0,
                   help="seconds of samples per contender and row, at most")
    p.add_argument("--json", default=None)
    return p.parse_args(argv)


def contenders(args):
    """``name -> (side, root, backend)``: PyTorch, ours, and the baseline's."""
    out = {PEER: ("torch", bt.ROOT, None)}
    for b in args.backends.split(","):
        out[b] = ("ours", bt.ROOT, b)
    if args.baseline:
        for b in args.backends.split(","):
            out[f"before:{b}"] = ("ours", Path(args.baseline).resolve(), b)
    return out


def time_row(measure, workers, plan, args, request):
    """Medians (seconds) of every worker on one gradient call."""
    replies = {}
    for name, worker in workers.items():
        _, _, backend = plan[name]
        extra = {"variant": "autograd"} if backend is None else {"backend": backend}
        replies[name] = worker.ask(cmd="setup", task="grad", min_time=args.min_time,
                                   **request, **extra)
    timings = measure.time_calls(
        workers, repeat=args.repeat, warmup=1, target_spread=0.05,
        max_repeat=2 * args.repeat, max_wait=0.1, budget=args.budget)
    return {n: t.median for n, t in timings.items()}


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, str(bt.ROOT))
    from convbackends.tools import measure
    plan = contenders(args)
    print(f"# {bt.cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.threads} threads per side; load {bt.load()}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    workers = {n: bt.Worker(side, args.threads, root) for n, (side, root, _) in plan.items()}
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for model in args.models.split(","):
                n = BATCH[model]
                for name, count, cin, cout, size, k, s, pad in LAYERS[model]:
                    rng = np.random.default_rng(0)
                    out = (size + 2 * pad - k) // s + 1
                    data = str(Path(tmp) / "layer.npz")
                    np.savez(data, x=rng.standard_normal((n, cin, size, size), np.float32),
                             w=rng.standard_normal((cout, cin, k, k), np.float32),
                             g=rng.standard_normal((n, cout, out, out), np.float32))
                    for op in args.ops.split(","):
                        medians = time_row(measure, workers, plan, args, dict(
                            op=op, data=data, stride=s, padding=pad))
                        rows.append(dict(model=model, layer=name, count=count, op=op,
                                         geometry=f"{cin}->{cout} {k}x{k}/{s} on {size}",
                                         medians=medians))
                        print(f"{model} {name} {op}: " + ", ".join(
                            f"{c} {1e3 * v:.2f}" for c, v in medians.items()), flush=True)
    finally:
        for w in workers.values():
            w.close()
    report(rows, list(plan), bt.load())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, threads=args.threads), f, indent=1)


def report(rows, names, load_at_end):
    print(f"\nmedians in ms; load at the end {load_at_end}\n")
    print("| model | layer | geometry | gradient | " + " | ".join(names) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---:" for _ in names) + " |")
    for r in rows:
        cells = [f"{1e3 * r['medians'][n]:.2f}" if n in r["medians"] else "-" for n in names]
        print(f"| {r['model']} | {r['layer']} (x{r['count']}) | {r['geometry']} | {r['op']} | "
              + " | ".join(cells) + " |")
    for model in dict.fromkeys(r["model"] for r in rows):
        for op in dict.fromkeys(r["op"] for r in rows):
            part = [r for r in rows if r["model"] == model and r["op"] == op]
            totals = [sum(r["count"] * r["medians"].get(n, float("nan")) for r in part)
                      for n in names]
            print(f"| {model} | all, per step | | {op} | "
                  + " | ".join(f"{1e3 * t:.1f}" for t in totals) + " |")


if __name__ == "__main__":
    main()
