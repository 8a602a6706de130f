"""The cost of the non-finite guard on finite input: this tree against another checkout.

Usage (the other checkout is a git worktree of the commit to compare with, e.g.
``git worktree add /tmp/base <commit>``; BLAS variables unset for timing)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        OMP_WAIT_POLICY=PASSIVE OPENBLAS_THREAD_TIMEOUT=4 \\
        python benchmarks/scripts/bench_nonfinite_guard.py --base /tmp/base --rounds 8

Every sample is one process of its own importing one of the two trees: a warm-up call, then
``--calls`` timed calls of the public function (``cb.conv2d(..., backend=..., out=buf)``, the
path that the guard sits on); the process reports their median and their best. Rounds
alternate the two trees (ABBA order), and each side's figure is the median over its rounds
of those medians (and of those bests); ``new / base - 1`` is the cost.

On a shared machine the processes' times scatter with the other load. So a second table
measures the guard alone, within one process of this tree: the same public call with the
guard patched out and in, ``--pairs`` calls each in ABBA order; ``on / off - 1`` of their
medians, and the median of the ratios of adjacent on/off calls (robust to drift), are what
the guard adds (its reductions over input, weight and bias, and the dispatch around them),
free of the drift between processes. The guard's own work is also timed alone (best of
many) against the best call. ``--guard-only`` runs this table alone.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

# (label, backend, N, C_in, C_out, H=W, kernel, padding): layers where auto picks the backend.
LAYERS = [
    ("resnet18.layer1 3x3 64->64 56px, batch 8", "winograd", 8, 64, 64, 56, 3, 1),
    ("resnet18.layer3 3x3 256->256 14px, batch 8", "winograd", 8, 256, 256, 14, 3, 1),
    ("7x7 64->64 56px, batch 8", "fft", 8, 64, 64, 56, 7, 3),
    ("31x31 8->8 on 256x256, batch 2", "fft", 2, 8, 8, 256, 31, 15),
]

WORKER = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import convbackends as cb
assert cb.__file__.startswith(sys.argv[1]), cb.__file__
backend, n, c, k, hw, ks, pad, calls = sys.argv[2], *map(int, sys.argv[3:10])
rng = np.random.default_rng(0)
x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
w = (rng.standard_normal((k, c, ks, ks)) / np.sqrt(c * ks * ks)).astype(np.float32)
b = rng.standard_normal(k).astype(np.float32)
out = np.empty((n, k, hw, hw), np.float32)
cb.conv2d(x, w, b, padding=pad, backend=backend, out=out)
times = []
for _ in range(calls):
    t = time.perf_counter()
    cb.conv2d(x, w, b, padding=pad, backend=backend, out=out)
    times.append(time.perf_counter() - t)
pairs = {"off": [], "on": []}
ratios = []
work = []
if len(sys.argv) > 10 and int(sys.argv[10]) > 0:
    from convbackends.dispatch import plan as plan_module
    from convbackends.dispatch import plan_call
    from convbackends.ops import nonfinite
    guarded = plan_module.Plan.guarded
    unguarded = property(lambda self: False)
    for i in range(2 * int(sys.argv[10])):
        side = ("off", "on")[(i + i // 2) % 2]          # off, on, on, off, off, on, ...
        plan_module.Plan.guarded = unguarded if side == "off" else guarded
        t = time.perf_counter()
        cb.conv2d(x, w, b, padding=pad, backend=backend, out=out)
        pairs[side].append(time.perf_counter() - t)
    plan_module.Plan.guarded = guarded
    # ABBA: calls 2j and 2j + 1 are one off and one on, side by side.
    order = [("off", "on")[(i + i // 2) % 2] for i in range(2 * int(sys.argv[10]))]
    seen = {"off": iter(pairs["off"]), "on": iter(pairs["on"])}
    flat = [next(seen[side]) for side in order]
    ratios = [(flat[j + 1] / flat[j]) if order[j] == "off" else (flat[j] / flat[j + 1])
              for j in range(0, len(flat) - 1, 2)]
    spec = cb.explain(x.shape, w.shape, padding=pad).spec
    plan = plan_call("conv", spec, backend)
    for _ in range(10 * int(sys.argv[10])):
        # What the guard does on a finite call before it runs the kernel.
        t = time.perf_counter()
        if plan.guarded:
            m = (nonfinite.magnitude(x), nonfinite.magnitude(w), nonfinite.magnitude(b))
            nonfinite._overflows(plan, m)
        work.append(time.perf_counter() - t)
try:
    import threadpoolctl
    blas = [(i["internal_api"], i.get("architecture"), i["num_threads"])
            for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
except ImportError:
    blas = []
print(json.dumps({"median": statistics.median(times), "best": min(times), "blas": blas,
                  "pairs": {k: statistics.median(v) for k, v in pairs.items() if v},
                  "off_best": min(pairs["off"]) if work else None,
                  "ratio": statistics.median(ratios) if ratios else None,
                  "work_best": min(work) if work else None}))
"""


def sample(tree, layer, calls, pairs=0):
    _, backend, n, c, k, hw, ks, pad = layer
    done = subprocess.run([sys.executable, "-c", WORKER, str(tree), backend, str(n), str(c),
                           str(k), str(hw), str(ks), str(pad), str(calls), str(pairs)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def median(values):
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=pathlib.Path, default=ROOT,
                        help="the checkout to compare with (a git worktree)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=7)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--guard-only", action="store_true",
                        help="only the in-process table (no --base needed)")
    args = parser.parse_args()
    if args.guard_only:
        args.rounds = 0
    trees = {"base": args.base.resolve(), "new": ROOT}
    load = os.getloadavg()
    print(f"{os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start",
          flush=True)
    rows = []
    for layer in LAYERS:
        for tree in set(trees.values()):      # compile and cache Numba kernels, not timed
            blas = sample(tree, layer, 1)["blas"]
        runs = {side: [] for side in trees}
        for r in range(args.rounds):
            order = list(trees) if r % 2 == 0 else list(trees)[::-1]
            for side in order:
                runs[side].append(sample(trees[side], layer, args.calls))
        guard = sample(ROOT, layer, 1, args.pairs)
        rows.append((layer, runs, guard))
        print(layer[0], layer[1], {s: [round(v["median"] * 1e3, 2) for v in t]
                                   for s, t in runs.items()}, "BLAS", blas, flush=True)
    load = os.getloadavg()
    print(f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at end\n")
    if args.rounds:
        print("| layer | backend | base ms | new ms | new / base - 1 | base best | new best "
              "| best: new / base - 1 |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for layer, runs, _ in rows if args.rounds else ():
        med = {s: median([v["median"] for v in t]) for s, t in runs.items()}
        best = {s: median([v["best"] for v in t]) for s, t in runs.items()}
        print(f"| {layer[0]} | {layer[1]} | {med['base'] * 1e3:.2f} | {med['new'] * 1e3:.2f} "
              f"| {(med['new'] / med['base'] - 1) * 100:+.1f}% | {best['base'] * 1e3:.2f} "
              f"| {best['new'] * 1e3:.2f} | {(best['new'] / best['base'] - 1) * 100:+.1f}% |")
    print(f"\nThe guard alone, in one process of this tree: the public call with the guard "
          f"patched out (off) and in (on), {args.pairs} calls each in ABBA order (medians); "
          f"and the guard's own work on a finite call (best of {10 * args.pairs}) against "
          f"the best call without it:\n")
    print("| layer | backend | off ms | on ms | on / off - 1 | median of pair ratios - 1 "
          "| guard's work ms | work / off best |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for layer, _, g in rows:
        p = g["pairs"]
        print(f"| {layer[0]} | {layer[1]} | {p['off'] * 1e3:.2f} | {p['on'] * 1e3:.2f} "
              f"| {(p['on'] / p['off'] - 1) * 100:+.1f}% | {(g['ratio'] - 1) * 100:+.1f}% "
              f"| {g['work_best'] * 1e3:.3f} | {g['work_best'] / g['off_best'] * 100:.2f}% |")

if __name__ == "__main__":
    main()
