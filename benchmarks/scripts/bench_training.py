"""Training steps and convolution gradients against PyTorch CPU autograd, each side in
processes of its own.

Usage (from the repository root)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        OPENBLAS_THREAD_TIMEOUT=4 .venv/bin/python benchmarks/scripts/bench_training.py \\
        --part steps|grads|all [--threads 2] [--repeat 7] [--json results.json] \\
        [--baseline OTHER_CHECKOUT]

Parts:

- ``steps``: one training step (forward, cross-entropy, backward, optimizer step; Adam at
  lr 1e-3 on both sides by default) of LeNet-5 at batch 64 (1x32x32) and ResNet-18 at batch
  8 (3x112x112), float32, per backend (``auto``, ``im2col``, ``numba``, ``fft``,
  ``winograd``) against PyTorch's autograd and ``torch.optim``. Both sides start from the
  same weights and batch, and the first step's losses are compared. Then one profiled run
  per side says where the time goes: ours by layer kind and phase (the convolutions'
  input and weight gradients apart), PyTorch's by ATen operator (``torch.profiler``).
- ``grads``: ``cb.grad.conv2d_input`` and ``cb.grad.conv2d_weight`` (``auto``, ``im2col``)
  on ResNet-18's seven distinct 3x3 layers at batch 8 on the same 112x112 input, against
  PyTorch twice: ``torch.nn.grad.conv2d_input`` / ``conv2d_weight``, and the call its
  autograd makes for a convolution, ``aten::convolution_backward`` with the forward's real
  input and weight and one gradient asked for. ``torch.nn.grad`` calls the same kernel,
  handing it an expanded one-element tensor for the array it does not need. GFLOP/s counts
  2 FLOPs per multiply-add of the forward convolution.

How it is timed: every contender (each of our backends, and PyTorch) runs in a worker
process of its own, started from this script with the environment this process started
with, so no two libraries, and no two contenders, share thread pools. The PyTorch worker
never imports convbackends: it loads only the timing module
(``convbackends/tools/measure.py``, which imports nothing else of the package) from its
file. Each worker times its own calls with :class:`~convbackends.tools.measure.Sampler`
and reports how long other processes kept its threads off a CPU; this process asks each
worker for one sample in turn (:func:`~convbackends.tools.measure.time_calls`: rounds in
rotating order, a short call preceded by untimed ones, samples disturbed by other
processes taken again), so a change of machine load hits every contender alike. Tables give
medians, the interquartile spread, and the ratio to PyTorch's median.

Threads: ``--threads`` for Numba and OpenBLAS (through threadpoolctl) in our workers, and
``torch.set_num_threads`` in PyTorch's. Each worker reports its BLAS (threadpoolctl:
library, kernel architecture, threads) and whether ``OPENBLAS_CORETYPE`` reached it.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict, defaultdict
from pathlib import Path

# The workers get the environment as it was before convbackends set its own defaults on
# import (OMP_WAIT_POLICY): ours set them again when they import it, PyTorch's never do.
START_ENV = dict(os.environ)

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

MODELS = {"lenet5": dict(batch=64, input=(1, 32, 32), classes=10),
          "resnet18": dict(batch=8, input=(3, 112, 112), classes=1000)}
STEP_BACKENDS = ("auto", "im2col", "numba", "fft", "winograd")
GRAD_BACKENDS = ("auto", "im2col")
# ResNet-18's distinct 3x3 convolutions on a 112x112 input (the stem and max pooling
# leave 28x28): (name, in channels, out channels, input size, stride).
RESNET18_3X3 = (("layer1.0.conv1", 64, 64, 28, 1), ("layer2.0.conv1", 64, 128, 28, 2),
                ("layer2.0.conv2", 128, 128, 14, 1), ("layer3.0.conv1", 128, 256, 14, 2),
                ("layer3.0.conv2", 256, 256, 7, 1), ("layer4.0.conv1", 256, 512, 7, 2),
                ("layer4.0.conv2", 512, 512, 4, 1))


def load_measure():
    """``convbackends.tools.measure`` loaded from its file, without the package."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "_bench_measure", ROOT / "convbackends" / "tools" / "measure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- workers


def blas_info():
    """The BLAS libraries loaded in this process, as threadpoolctl sees them."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return [{k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                   "threading_layer")}
            for p in threadpool_info() if p.get("user_api") == "blas"]


def torch_lenet5(tnn, classes):
    return tnn.Sequential(OrderedDict(
        c1=tnn.Conv2d(1, 6, 5), tanh1=tnn.Tanh(), s2=tnn.AvgPool2d(2),
        c3=tnn.Conv2d(6, 16, 5), tanh3=tnn.Tanh(), s4=tnn.AvgPool2d(2),
        c5=tnn.Conv2d(16, 120, 5), tanh5=tnn.Tanh(), flatten=tnn.Flatten(),
        f6=tnn.Linear(120, 84), tanh6=tnn.Tanh(), output=tnn.Linear(84, classes)))


def torch_resnet18(tnn, classes):
    class Block(tnn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = tnn.Sequential(
                    tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                    tnn.BatchNorm2d(planes))

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    stages = OrderedDict()
    for i, (inplanes, planes, stride) in enumerate(
            ((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)), 1):
        stages[f"layer{i}"] = tnn.Sequential(Block(inplanes, planes, stride),
                                             Block(planes, planes, 1))
    return tnn.Sequential(OrderedDict(
        conv1=tnn.Conv2d(3, 64, 7, 2, 3, bias=False), bn1=tnn.BatchNorm2d(64),
        relu=tnn.ReLU(inplace=True), maxpool=tnn.MaxPool2d(3, 2, 1), **stages,
        avgpool=tnn.AdaptiveAvgPool2d(1), flatten=tnn.Flatten(),
        fc=tnn.Linear(512, classes)))


class TorchSide:
    """PyTorch's contenders, in the PyTorch worker."""

    def __init__(self, threads):
        import torch
        self.torch = torch
        torch.set_num_threads(threads)

    def info(self):
        torch = self.torch
        return {"library": f"torch {torch.__version__}", "threads": torch.get_num_threads(),
                "blas": blas_info(), "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
                "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}

    def step(self, model, data, optimizer, lr, **_):
        torch = self.torch
        with np.load(data) as arrays:
            arrays = dict(arrays)
        x, target = torch.from_numpy(arrays.pop("x")), torch.from_numpy(arrays.pop("target"))
        build = torch_lenet5 if model == "lenet5" else torch_resnet18
        net = build(torch.nn, MODELS[model]["classes"]).train()
        net.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
        opt = (torch.optim.Adam(net.parameters(), lr=lr) if optimizer == "adam"
               else torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9))
        crit = torch.nn.CrossEntropyLoss()

        def run():
            opt.zero_grad()
            loss = crit(net(x), target)
            loss.backward()
            opt.step()
            return float(loss)

        return run

    def grad(self, op, data, stride, variant="nn.grad", padding=1, **_):
        """``torch.nn.grad``'s function, or (``variant="autograd"``) the call autograd makes:
        ``aten::convolution_backward`` given the forward's real input and weight (where
        ``torch.nn.grad`` passes an expanded one-element tensor for the array it does not
        need)."""
        torch = self.torch
        with np.load(data) as arrays:
            x, w, g = (torch.from_numpy(arrays[k]) for k in ("x", "w", "g"))
        if variant == "autograd":
            mask, index = ((True, False, False), 0) if op == "input" else \
                ((False, True, False), 1)
            backward = torch.ops.aten.convolution_backward
            return lambda: backward(g, x, w, None, [stride] * 2, [padding] * 2, [1, 1],
                                    False, [0, 0], 1, mask)[index]
        if op == "input":
            return lambda: torch.nn.grad.conv2d_input(x.shape, w, g, stride, padding)
        return lambda: torch.nn.grad.conv2d_weight(x, w.shape, g, stride, padding)

    def profile(self, run, steps):
        """Self CPU time per ATen operator over ``steps`` steps, ms per step, largest
        first."""
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                run()
        rows = [(e.key, e.self_cpu_time_total / 1e3 / steps) for e in prof.key_averages()]
        return sorted(rows, key=lambda r: -r[1])


class OurSide:
    """convbackends' contenders (one backend per worker), in our worker."""

    def __init__(self, threads):
        import convbackends as cb
        self.cb = cb
        try:
            import numba
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        except ImportError:
            pass
        try:
            from threadpoolctl import threadpool_limits
            self._limits = threadpool_limits(threads, user_api="blas")
        except ImportError:
            pass

    def info(self):
        cb = self.cb
        try:
            import numba
            numba_threads = numba.get_num_threads()
        except ImportError:
            numba_threads = None
        return {"library": f"convbackends {cb.__version__}", "numba_threads": numba_threads,
                "blas": blas_info(), "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
                "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}

    def step(self, model, data, optimizer, lr, backend, **_):
        cb = self.cb
        with np.load(data) as arrays:
            arrays = dict(arrays)
        x, target = arrays.pop("x"), arrays.pop("target")
        net = getattr(cb.models, model)(num_classes=MODELS[model]["classes"],
                                        backend=backend).train()
        net.load_state_dict(arrays)
        opt = (cb.optim.Adam(net, lr=lr) if optimizer == "adam"
               else cb.optim.SGD(net, lr=lr, momentum=0.9))
        crit = cb.nn.CrossEntropyLoss()
        self.parts = (net, crit, opt, x, target)

        def run():
            loss = crit(net(x), target)
            opt.zero_grad()
            net.backward(crit.backward())
            opt.step()
            return loss

        return run

    def grad(self, op, data, stride, backend, padding=1, **_):
        cb = self.cb
        with np.load(data) as arrays:
            x, w, g = (arrays[k] for k in ("x", "w", "g"))
        if op == "input":
            return lambda: cb.grad.conv2d_input(x.shape, w, g, stride, padding,
                                                backend=backend)
        return lambda: cb.grad.conv2d_weight(x, w.shape, g, stride, padding, backend=backend)

    def profile(self, run, steps):
        """Milliseconds per step by layer kind and phase, largest first: each leaf layer's
        forward and backward, the convolutions' input and weight gradients inside their
        backward, the loss and the optimizer step; ``other`` is the rest of the step."""
        cb = self.cb
        net, crit, opt, x, target = self.parts
        totals = defaultdict(float)

        def timed(key, fn):
            def wrapper(*args, **kwargs):
                t0 = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    totals[key] += time.perf_counter() - t0
            return wrapper

        leaves = [m for m in net.modules() if not list(m.children())]
        for m in leaves:
            kind = type(m).__name__
            m.forward = timed(f"{kind} forward", m.forward)
            m._backward = timed(f"{kind} backward", m._backward)
        originals = {name: getattr(cb.grad, name) for name in ("conv2d_input", "conv2d_weight")}
        for name, fn in originals.items():
            setattr(cb.grad, name, timed(f"  of which {name}", fn))
        try:
            start = time.perf_counter()
            for _ in range(steps):
                timed("loss", crit)(net(x), target)
                opt.zero_grad()
                net.backward(timed("loss backward", crit.backward)())
                timed("optimizer step", opt.step)()
            elapsed = time.perf_counter() - start
        finally:
            for name, fn in originals.items():
                setattr(cb.grad, name, fn)
            for m in leaves:
                del m.forward, m._backward
        counted = sum(v for k, v in totals.items() if not k.startswith("  "))
        totals["other (containers, residual adds)"] = elapsed - counted
        rows = [(k, v * 1e3 / steps) for k, v in totals.items()]
        return sorted(rows, key=lambda r: -r[1]) + [("step", elapsed * 1e3 / steps)]


def serve(side, threads):
    """The worker: JSON requests on stdin, one JSON reply a line on stdout."""
    if side == "torch":
        impl = TorchSide(threads)          # torch (and its OpenMP runtime) first
        measure = load_measure()
    else:
        impl = OurSide(threads)
        from convbackends.tools import measure
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)                          # what a library prints must not corrupt replies
    state = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            cmd = request.pop("cmd")
            if cmd == "info":
                reply = impl.info()
            elif cmd == "setup":
                task = request.pop("task")
                run = getattr(impl, task)(**request)
                t0 = time.perf_counter()
                value = run()                      # the first call: autotuning, compiling
                first = time.perf_counter() - t0
                state["run"] = run
                state["sampler"] = measure.Sampler(run, min_time=request.get("min_time", 0),
                                                   watch=True)
                reply = {"first": first, "value": float(value) if task == "step" else None}
            elif cmd == "sample":
                seconds = state["sampler"](request["settle"])
                reply = {"seconds": seconds, "wait": state["sampler"].last_wait}
            elif cmd == "profile":
                reply = {"rows": impl.profile(state["run"], request["steps"])}
            else:
                raise ValueError(f"unknown request {cmd!r}")
        except Exception as e:                     # reported to the parent, which decides
            reply = {"error": f"{type(e).__name__}: {e}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


class WorkerError(RuntimeError):
    pass


class Worker:
    """One contender's process; ``worker(settle)`` is a sampler for ``time_calls``.

    ``root`` is the checkout whose ``convbackends`` an ``ours`` worker imports (another
    checkout times the code before a change against the code after it).
    """

    def __init__(self, side, threads, root=ROOT):
        env = dict(START_ENV, PYTHONPATH=os.pathsep.join(
            [str(root)] + [p for p in START_ENV.get("PYTHONPATH", "").split(os.pathsep) if p]))
        self.side, self.last_wait = side, None
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", side,
             "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, **request):
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise WorkerError(f"the {self.side} worker exited (code {self._proc.poll()})")
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply

    def __call__(self, settle=0.0):
        reply = self.ask(cmd="sample", settle=settle)
        self.last_wait = reply["wait"]
        return reply["seconds"]

    def close(self):
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc.stdout.close()


# ----------------------------------------------------------------------------- the parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("steps", "grads", "all"), default="all")
    p.add_argument("--models", default=",".join(MODELS),
                   help="comma-separated, of " + ", ".join(MODELS))
    p.add_argument("--backends", default=None,
                   help=f"comma-separated; default {','.join(STEP_BACKENDS)} for steps, "
                        f"{','.join(GRAD_BACKENDS)} for gradients")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                   help="Adam (lr 1e-3) or SGD with momentum 0.9 (lr 0.01), on both sides")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=7, help="the least samples per contender")
    p.add_argument("--min-time", type=float, default=0.2,
                   help="each sample repeats its call until this many seconds have passed")
    p.add_argument("--slow", type=float, default=30.0,
                   help="a contender whose first call takes longer is timed by it only")
    p.add_argument("--budget", type=float, default=20.0,
                   help="seconds of samples per contender and table row, at most (one "
                        "sample at least)")
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the results here")
    p.add_argument("--baseline", default=None,
                   help="another checkout of this project (the code before a change): each "
                        "backend of it runs too, as before:NAME")
    p.add_argument("--worker", choices=("ours", "torch"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


BASELINE = None      # --baseline: the checkout whose backends the ``before:`` names run


def start(contenders, threads):
    """A worker per contender name (``torch``, one of our backends, or ``before:NAME``,
    that backend of the ``--baseline`` checkout)."""
    return {name: worker_for(name, threads) for name in contenders}


def worker_for(name, threads):
    root = BASELINE if name.startswith("before:") else ROOT
    return Worker(side_of(name), threads, root)


def backend_of(name):
    """The backend a contender of ours names: ``before:im2col`` runs ``im2col``."""
    return name.partition(":")[2] if name.startswith("before:") else name


def side_of(name):
    """``torch`` for PyTorch's contenders (``torch``, ``torch-autograd``), else ``ours``."""
    return "torch" if name.startswith("torch") else "ours"


def setup_all(workers, declined, **request):
    """Set every worker's contender up; those that fail are closed and listed in
    ``declined`` (name -> reason). Returns name -> the setup reply."""
    replies = {}
    for name, worker in list(workers.items()):
        extra = ({"variant": name.partition("-")[2] or "nn.grad"} if side_of(name) == "torch"
                 else {"backend": backend_of(name)})
        try:
            replies[name] = worker.ask(cmd="setup", **request, **extra)
        except WorkerError as e:
            declined[name] = str(e).split(". Backends that can")[0]
            worker.close()
            del workers[name]
    return replies


def time_workers(measure, workers, args, firsts):
    """Median timings of the workers' contenders, interleaved; a contender whose first
    call took over ``--slow`` seconds keeps that as its only time."""
    slow = {n: w for n, w in workers.items() if firsts[n] > args.slow}
    timed = {n: w for n, w in workers.items() if n not in slow}
    timings = measure.time_calls(timed, repeat=args.repeat, warmup=1,
                                 target_spread=measure.SPREAD_TARGET,
                                 max_repeat=2 * args.repeat, max_wait=measure.MAX_WAIT,
                                 budget=args.budget)
    for name in slow:
        timings[name] = measure.Timing(first=firsts[name], samples=[firsts[name]])
    return timings


def fmt_ms(seconds):
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}"


def run_steps(args, measure, results):
    import convbackends as cb
    backends = args.backends.split(",") if args.backends else list(STEP_BACKENDS)
    backends = [b for b in backends if b in cb.available_backends()]
    if BASELINE is not None:
        backends += [f"before:{b}" for b in backends]
    lr = 1e-3 if args.optimizer == "adam" else 1e-2
    for model in args.models.split(","):
        cfg = MODELS[model]
        rng = np.random.default_rng(0)
        x = rng.standard_normal((cfg["batch"],) + cfg["input"], dtype=np.float32)
        target = rng.integers(0, cfg["classes"], cfg["batch"])
        ours = getattr(cb.models, model)(num_classes=cfg["classes"], rng=0)
        load_at_start = load()
        with tempfile.TemporaryDirectory() as tmp:
            data = str(Path(tmp) / "step.npz")
            np.savez(data, x=x, target=target, **ours.state_dict())
            workers = start(["torch"] + backends, args.threads)
            try:
                infos = {n: w.ask(cmd="info") for n, w in workers.items()}
                declined = {}
                replies = setup_all(workers, declined, task="step", model=model, data=data,
                                    optimizer=args.optimizer, lr=lr, min_time=args.min_time)
                firsts = {n: r["first"] for n, r in replies.items()}
                timings = time_workers(measure, workers, args, firsts)
                profiles = {}
                for name in ("torch", "auto", "im2col", "before:auto"):
                    if name in workers:
                        profiles[name] = workers[name].ask(
                            cmd="profile", steps=args.profile_steps)["rows"]
            finally:
                for w in workers.values():
                    w.close()
        losses = {n: r["value"] for n, r in replies.items()}
        entry = dict(model=model, batch=cfg["batch"], input=cfg["input"],
                     optimizer=args.optimizer, lr=lr, load=[load_at_start, load()],
                     infos=infos, declined=declined, first_loss=losses,
                     first_call=firsts, profiles=profiles,
                     timings={n: dict(median=t.median, spread=t.spread, samples=t.samples,
                                      disturbed=t.disturbed) for n, t in timings.items()})
        results.setdefault("steps", []).append(entry)
        report_steps(entry)


def report_steps(e):
    t = e["timings"]
    base = t["torch"]["median"]
    print(f"\n### {e['model']}, batch {e['batch']}, input {list(e['input'])}, float32, "
          f"{e['optimizer']} (lr {e['lr']:g}); load {e['load'][0]} -> {e['load'][1]}")
    print(f"PyTorch worker: {json.dumps(e['infos']['torch'])}")
    ours = next((v for k, v in e["infos"].items() if k != "torch"), None)
    print(f"our workers: {json.dumps(ours)}")
    print("\n| contender | median ms | spread | / PyTorch | first step ms | first loss |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in ["torch"] + [n for n in t if n != "torch"]:
        v = t[name]
        spread = "-" if v["spread"] is None else f"{100 * v['spread']:.0f}%"
        label = "PyTorch autograd" if name == "torch" else name
        print(f"| {label} | {fmt_ms(v['median'])} | {spread} | {v['median'] / base:.2f} | "
              f"{fmt_ms(e['first_call'][name])} | {e['first_loss'][name]:.6f} |")
    for name, reason in e["declined"].items():
        print(f"| {name} | declines | | | | {reason} |")
    for name, rows in e["profiles"].items():
        print(f"\nprofile {name} (ms per step):")
        for key, ms in rows[:14]:
            print(f"    {ms:9.2f}  {key}")


def run_grads(args, measure, results):
    import convbackends as cb
    backends = args.backends.split(",") if args.backends else list(GRAD_BACKENDS)
    backends = [b for b in backends if b in cb.available_backends()]
    if BASELINE is not None:
        backends += [f"before:{b}" for b in backends]
    load_at_start = load()
    rows = []
    workers = start(["torch", "torch-autograd"] + backends, args.threads)
    try:
        infos = {n: w.ask(cmd="info") for n, w in workers.items()}
        with tempfile.TemporaryDirectory() as tmp:
            for name, cin, cout, size, stride in RESNET18_3X3:
                rng = np.random.default_rng(0)
                out_size = (size + 2 - 3) // stride + 1
                x = rng.standard_normal((8, cin, size, size), dtype=np.float32)
                w = rng.standard_normal((cout, cin, 3, 3), dtype=np.float32)
                g = rng.standard_normal((8, cout, out_size, out_size), dtype=np.float32)
                macs = 8 * cout * out_size * out_size * cin * 9
                data = str(Path(tmp) / f"{name}.npz")
                np.savez(data, x=x, w=w, g=g)
                for op in ("input", "weight"):
                    declined = {}
                    active = dict(workers)
                    replies = setup_all(active, declined, task="grad", op=op, data=data,
                                        stride=stride, min_time=args.min_time)
                    for gone in declined:       # setup_all closed it: start a fresh one
                        workers[gone] = worker_for(gone, args.threads)
                    timings = time_workers(measure, active, args,
                                           {n: r["first"] for n, r in replies.items()})
                    row = dict(layer=name, cin=cin, cout=cout, size=size, stride=stride,
                               op=op, macs=macs, declined=declined,
                               timings={n: dict(median=t.median, spread=t.spread)
                                        for n, t in timings.items()})
                    rows.append(row)
                    print(f"{name} {op}: " + ", ".join(
                        f"{n} {fmt_ms(t.median)} ms" for n, t in timings.items()), flush=True)
    finally:
        for w in workers.values():
            w.close()
    entry = dict(rows=rows, infos=infos, load=[load_at_start, load()])
    results["grads"] = entry
    report_grads(entry, backends)


def report_grads(e, backends):
    print(f"\n### conv2d gradients, ResNet-18's 3x3 layers, batch 8 (112x112 input), float32;"
          f" load {e['load'][0]} -> {e['load'][1]}")
    print(f"PyTorch worker: {json.dumps(e['infos']['torch'])}")
    names = ["torch", "torch-autograd"] + list(backends)
    labels = {"torch": "torch.nn.grad", "torch-autograd": "autograd's kernel"}
    print("\nGFLOP/s (medians), and PyTorch autograd's kernel's time over ours (above 1: "
          "ours is faster):\n")
    print("| layer | gradient | " + " | ".join(labels.get(n, n) for n in names) + " | "
          + " | ".join(f"{b} vs autograd" for b in backends) + " |")
    print("| --- | --- | " + " | ".join("---:" for _ in names + list(backends)) + " |")
    for r in e["rows"]:
        t = r["timings"]
        flops = 2 * r["macs"]
        rate = {n: flops / v["median"] / 1e9 for n, v in t.items()}
        shape = f"{r['layer']} ({r['cin']}->{r['cout']}, {r['size']}px, s{r['stride']})"
        cells = [f"{rate[n]:.0f}" if n in rate else "declines" for n in names]
        ratios = [f"{t['torch-autograd']['median'] / t[b]['median']:.2f}" if b in t else "-"
                  for b in backends]
        print(f"| {shape} | {r['op']} | " + " | ".join(cells) + " | " + " | ".join(ratios)
              + " |")
    totals = {n: sum(r["timings"][n]["median"] for r in e["rows"] if n in r["timings"])
              for n in names}
    print("| all 14 calls, ms | | " + " | ".join(f"{1e3 * totals[n]:.0f}" for n in names)
          + " | " + " | ".join(f"{totals['torch-autograd'] / totals[b]:.2f}"
                               for b in backends) + " |")


def main(argv=None):
    args = parse_args(argv)
    global BASELINE
    BASELINE = None if args.baseline is None else Path(args.baseline).resolve()
    if args.worker:
        serve(args.worker, args.threads)
        return
    sys.path.insert(0, str(ROOT))
    from convbackends.tools import measure
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# {cpu_name()}, {os.cpu_count()}-core VM, Python {platform.python_version()}; "
          f"{args.threads} threads per side; OPENBLAS_CORETYPE="
          f"{START_ENV.get('OPENBLAS_CORETYPE')}, OPENBLAS_L2_SIZE="
          f"{START_ENV.get('OPENBLAS_L2_SIZE')}; {stamp}")
    results = {"machine": dict(cpu=cpu_name(), cores=os.cpu_count(), threads=args.threads)}
    if args.part in ("steps", "all"):
        run_steps(args, measure, results)
    if args.part in ("grads", "all"):
        run_grads(args, measure, results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
