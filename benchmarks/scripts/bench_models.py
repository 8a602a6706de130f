"""Whole-model forward time per backend (and ``auto``) against PyTorch and ONNX Runtime.

Usage (from the repository root; one model and batch per run keeps each run short)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        .venv/bin/python benchmarks/scripts/bench_models.py --model resnet18 --batch 8

Three sides, each in a process of its own: ours (every backend that runs the model, and
``auto``, in this process), PyTorch's twin of the model (the hand-written twins of
``tests/test_models.py``, in a :class:`convbackends.tools.peer.Peer`) and ONNX Runtime on
that twin exported with ``torch.onnx.export`` (in a second peer; the export happens in
PyTorch's process, so ONNX Runtime's never loads PyTorch). Our model gets the twin's
weights, so each row also reports its relative error against PyTorch's output.

Every round runs all contenders in turn, in rotating order
(:func:`convbackends.tools.measure.time_calls`), so a change in machine load hits them
alike; a forward under 0.5 s is preceded by ``--settle`` seconds of untimed ones, so the
previous library's worker threads have stopped spinning, and one sample times forwards
for at least ``--min-time`` seconds (LeNet-5's take a millisecond). Sampling is adaptive: after
``--repeat`` rounds a contender is sampled until the spread of its samples,
``(p75 - p25) / median``, is under ``--spread``, it has ``--max-repeat`` samples or
``--budget`` seconds are spent; a forward during which other processes took more than
``--max-wait`` of a core from its threads (run-queue wait, Linux ``schedstat``) is set
aside as disturbed and taken again. The table gives each side's median (the ratios are medians
over medians), the spread (``~`` marks one still above ``--spread``) and the best time. A
backend that declines a layer is listed as such; one whose first (warm-up) forward takes
longer than ``--slow`` seconds is timed by that one call only. Everything runs with
``--threads`` threads: Numba and OpenBLAS here (through threadpoolctl), PyTorch's
``set_num_threads``, ONNX Runtime's intra-op threads (one inter-op thread, sequential).
"""

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from convbackends.tools.measure import (MAX_WAIT, SETTLE_SECONDS,  # noqa: E402
                                        SPREAD_TARGET, Sampler, is_wide, relative_error,
                                        time_calls)
from convbackends.tools.peer import ONNX_OPSET, Peer, missing_packages  # noqa: E402

INPUTS = {"lenet5": (1, 32, 32), "alexnet": (3, 227, 227), "vgg16": (3, 224, 224),
          "resnet18": (3, 224, 224), "zfnet": (3, 224, 224), "vgg19": (3, 224, 224),
          "googlenet": (3, 224, 224), "fcn8s": (3, 224, 224)}
PEER_LABELS = {"torch": "PyTorch", "onnxruntime": "ONNX Runtime"}
ORT_MODEL = "convbackends.tools.peer:onnxruntime_model"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=sorted(INPUTS), required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--fused", action="store_true",
                   help="also time each backend's fused model (model.fuse())")
    p.add_argument("--backends", default=None,
                   help="comma-separated; default: every available backend and auto "
                        "(naive only on lenet5 unless named: minutes per forward elsewhere)")
    p.add_argument("--peers", default="torch,onnxruntime",
                   help="torch, onnxruntime or both (default); torch is always needed for "
                        "the twin's weights and export")
    p.add_argument("--repeat", type=int, default=5, help="timed forwards per side, at least")
    p.add_argument("--max-repeat", type=int, default=15,
                   help="timed forwards at most while the spread is above --spread")
    p.add_argument("--spread", type=float, default=SPREAD_TARGET,
                   help="target spread (p75 - p25) / median (default: %(default)s)")
    p.add_argument("--max-wait", type=float, default=MAX_WAIT,
                   help="a forward during which other processes took more than this share "
                        "of a core from its threads is set aside and taken again (inf: "
                        "keep all; default: %(default)s)")
    p.add_argument("--budget", type=float, default=30.0,
                   help="timed seconds per contender before its samples stop")
    p.add_argument("--min-time", type=float, default=0.005,
                   help="seconds: one sample times forwards until this long (LeNet-5's "
                        "take a millisecond; default: %(default)s)")
    p.add_argument("--slow", type=float, default=20.0,
                   help="seconds: a warm-up slower than this is the only timing taken")
    p.add_argument("--threads", type=int, default=2,
                   help="threads of every side (Numba, BLAS, PyTorch, ONNX Runtime)")
    p.add_argument("--settle", type=float, default=SETTLE_SECONDS,
                   help="seconds of untimed forwards before each timed one under 0.5 s, so "
                        "the thread pools of the previous library (OpenBLAS, OpenMP, "
                        "Numba, ONNX Runtime) stop spinning")
    return p.parse_args(argv)


def torch_twin(model, batch, threads, path, onnx_path=None):
    """In PyTorch's peer process: the twin and one input saved to ``path``; its ONNX export.

    The ONNX graph goes to ``onnx_path`` when given (``torch.onnx.export``, the TorchScript
    exporter: the default one needs onnxscript). Returns ``(run, info)``, as a
    :class:`convbackends.tools.peer.Peer` setup target must.
    """
    import torch
    from tests import test_models as twins
    from tests import test_models_lectures as lecture_twins
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    lecture = {"googlenet": "googlenet-96"}.get(model, model)
    if lecture in lecture_twins.TWINS:
        theirs = lecture_twins.TWINS[lecture][1](torch).eval()
    else:
        theirs = getattr(twins, f"torch_{model}")(torch.nn).eval()
    x = np.random.default_rng(0).standard_normal((batch,) + INPUTS[model], dtype=np.float32)
    np.savez(path, x=x, **{k: v.numpy() for k, v in theirs.state_dict().items()})
    xt = torch.from_numpy(x)
    if onnx_path:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(_exportable(torch, theirs, xt), (xt,), onnx_path, dynamo=False,
                              opset_version=ONNX_OPSET, input_names=["x"],
                              output_names=["y"])

    def run():
        with torch.inference_mode():
            return theirs(xt).numpy()

    return run, {"library": f"torch {torch.__version__}", "threads": torch.get_num_threads()}


def _exportable(torch, model, x):
    """``model`` with each adaptive average pooling whose input size is a multiple of its
    output replaced by the fixed pooling it equals at this input: the TorchScript ONNX
    exporter loses the sizes it needs after some ops (ZFNet's twin fails otherwise)."""
    import copy
    sizes = {}
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.__setitem__(m, i[0].shape[2:]))
             for m in model.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    names = {m: n for n, m in model.named_modules()}
    model = copy.deepcopy(model)
    for m, size in sizes.items():
        out = m.output_size if isinstance(m.output_size, tuple) else (m.output_size,) * 2
        if all(o is not None and s % o == 0 for s, o in zip(size, out)):
            k = tuple(s // o for s, o in zip(size, out))
            parent, _, leaf = names[m].rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf,
                    torch.nn.AvgPool2d(k, k))
    return model


def limit_threads(n):
    """Numba and BLAS at ``n`` threads in this process; the BLAS libraries seen, as text."""
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    limiter = threadpool_limits(n)
    blas = [f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')} kernel, "
            f"{p.get('num_threads')} threads, {Path(p.get('filepath', '')).parent.name})"
            for p in threadpool_info() if p.get("user_api") == "blas"]
    return limiter, f"Numba {numba.__version__} ({numba.get_num_threads()} threads), " \
        f"BLAS {'; '.join(blas) or 'none found'}"


def our_backends(args):
    import convbackends as cb
    if args.backends:
        return [n.strip() for n in args.backends.split(",") if n.strip()]
    return [n for n in cb.available_backends() if n != "naive" or args.model == "lenet5"]


def measure(args):
    """Time every side; returns ``(timings, outputs, reference, infos)``."""
    import convbackends as cb
    peers = [n.strip() for n in args.peers.split(",") if n.strip()]
    for name in ["torch"] + peers:
        if name not in PEER_LABELS:
            sys.exit(f"unknown peer {name!r}; known: {', '.join(PEER_LABELS)}")
        if missing_packages(name):
            sys.exit(f"peer {name!r} needs {' and '.join(missing_packages(name))}")
    names = our_backends(args)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        torch_peer = stack.enter_context(Peer())
        onnx_path = tmp / "twin.onnx" if "onnxruntime" in peers else None
        infos = {"torch": torch_peer.setup(
            f"{Path(__file__).stem}:torch_twin", min_time=args.min_time, model=args.model,
            batch=args.batch,
            threads=args.threads, path=str(tmp / "twin.npz"),
            onnx_path=onnx_path and str(onnx_path))}
        samplers = {"torch": torch_peer.sample} if "torch" in peers else {}
        ref = torch_peer.result()
        outputs = {}
        if onnx_path:
            ort_peer = stack.enter_context(Peer())
            infos["onnxruntime"] = ort_peer.setup(ORT_MODEL, min_time=args.min_time,
                                                  model=str(onnx_path),
                                                  inputs=str(tmp / "twin.npz"),
                                                  threads=args.threads)
            samplers["onnxruntime"] = ort_peer.sample
            outputs["onnxruntime"] = ort_peer.result()
        if "torch" not in peers:
            torch_peer.close()
        with np.load(tmp / "twin.npz") as saved:
            arrays = dict(saved)
        x = arrays.pop("x")
        ours = getattr(cb.models, args.model)().eval()
        ours.load_state_dict(arrays)

        def forward(name):
            def run():
                ours.backend = name
                outputs[name] = ours(x)
            return Sampler(run, min_time=args.min_time, watch=True)

        def fused_forward(name):
            ours.backend = name
            fused = ours.fuse()

            def run():
                outputs[f"{name} fused"] = fused(x)
            return Sampler(run, min_time=args.min_time, watch=True)

        samplers.update({n: forward(n) for n in names})
        if args.fused:
            samplers.update({f"{n} fused": fused_forward(n) for n in names})
        timings = time_calls(samplers, repeat=args.repeat, settle=args.settle,
                             warmup_limit=args.slow, budget=args.budget,
                             target_spread=args.spread,
                             max_repeat=max(args.repeat, args.max_repeat),
                             max_wait=args.max_wait, catch=(cb.UnsupportedError,))
    return timings, outputs, ref, infos


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def busy_seconds():
    """CPU seconds the whole machine has been busy (Linux ``/proc/stat``), else ``None``."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields[:8]]
    idle = ticks[3] + ticks[4]                    # idle and iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def own_seconds():
    """CPU seconds of this process and its waited-for children (the peers, once closed)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _ms(t):
    if t is None:
        return "-"
    return f"{t * 1e3:.1f}" if t >= 0.01 else f"{t * 1e3:.3g}"


def table(args, timings, outputs, ref):
    """The markdown table: one row per side, medians and their ratios."""
    peers = [p for p in PEER_LABELS if p in timings and timings[p].counted]
    heads = ["contender", "median ms", "±", "best ms"] + \
        [f"/ {PEER_LABELS[p]}" for p in peers] + ["rel. error vs PyTorch", "samples", "note"]
    lines = ["| " + " | ".join(heads) + " |",
             "| --- | " + " | ".join(["---:"] * (len(heads) - 2)) + " | --- |"]
    for name, t in timings.items():
        values = t.counted or ([t.first] if t.first is not None else [])
        note = ""
        if t.failure is not None:
            note = f"declines a layer: {str(t.failure).split('. Backends')[0]}"
        elif not t.counted and values:
            note = f"one forward only (warm-up over {args.slow:g} s)"
        elif not t.samples:
            note = "every sample disturbed"
        median = t.median if t.counted else (values[0] if values else None)
        counts = f"{len(t.samples)}" + (f" (+{len(t.disturbed)} disturbed)" if t.disturbed
                                        else "")
        spread = "-" if t.spread is None else ("~" if is_wide(t, args.spread) else "") + \
            f"{t.spread:.0%}"
        ratios = [("-" if median is None or name == p else
                   f"{median / timings[p].median:.2f}") for p in peers]
        error = "-" if name == "torch" or name not in outputs else \
            f"{relative_error(outputs[name], ref):.1e}"
        label = PEER_LABELS.get(name, name)
        lines.append(f"| {label} | {_ms(median)} | {spread} | "
                     f"{_ms(min(values) if values else None)} | " + " | ".join(ratios)
                     + f" | {error} | {counts} | {note} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    limiter, ours = limit_threads(args.threads)
    start, t0, busy0, own0 = _load(), time.time(), busy_seconds(), own_seconds()
    with limiter:
        timings, outputs, ref, infos = measure(args)
    wall = time.time() - t0
    others = ""
    if busy0 is not None:
        theirs = max(0.0, busy_seconds() - busy0 - (own_seconds() - own0)) / wall
        others = f"; other processes kept {theirs:.2f} cores busy meanwhile"
    libs = ", ".join(f"{i['library']} ({i['threads']} threads)" for i in infos.values())
    print(f"# {args.model}, batch {args.batch}, float32, eval mode; {cpu_name()}, "
          f"{os.cpu_count()} cores; load {start} at the start, {_load()} at the end "
          f"(1, 5, 15 min), {wall / 60:.1f} min{others}")
    print(f"# ours: {ours}; peers: {libs}")
    print(f"# median of {args.repeat}-{max(args.repeat, args.max_repeat)} interleaved "
          f"forwards per side, until the spread is under {args.spread:.0%} "
          f"(~: still above), {args.budget:g} s budget each; forwards disturbed by other "
          f"processes (over {args.max_wait:g} of a core) set aside and taken again\n")
    print(table(args, timings, outputs, ref))


if __name__ == "__main__":
    main()
