"""The ``convbackends`` command: ``info`` and ``compare``.

``convbackends info`` prints the version, every backend with its availability (or why not)
and its limits, the autotuner's state, Numba's threads and threading layer, the BLAS NumPy
uses and the environment variables that change timings.

``convbackends compare`` runs backends side by side on a named suite of real layers
(:mod:`convbackends.workloads`), checks every result against a float64 reference, and
prints time, GFLOP/s, speed relative to the fastest, relative error and ``auto``'s pick.
Timing: one warm-up call per backend (Numba compiles there), then rounds in which every
backend runs once, in rotating order, into a reused ``out=`` buffer, each timed call after
0.15 s of untimed ones (so other thread pools have gone idle); the median counts.
Heavy imports (Numba, threadpoolctl, PyTorch, matplotlib) happen only where needed.
"""

import argparse
import csv
import importlib
import importlib.util
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__, dispatch, workloads
from .functional import conv

__all__ = ["main"]

ENV_VARS = ("CONVBACKENDS_BACKEND", "CONVBACKENDS_AUTOTUNE", "CONVBACKENDS_CACHE_DIR",
            "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_ENABLE_CUDASIM",
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "MALLOC_MMAP_THRESHOLD_",
            "MALLOC_TRIM_THRESHOLD_", "CUDA_VISIBLE_DEVICES")
NAIVE_MAX_MACS = 50_000_000     # naive is left out above this unless named in --backends
BUDGET_SECONDS = 3.0            # timed seconds per backend and layer before repeats stop
SETTLE_BELOW_SECONDS = 0.5      # calls faster than this are settled before each timing
SETTLE_SECONDS = 0.15           # untimed calls before a timed one, to let other pools idle
TORCH = "torch"


class UsageError(Exception):
    """A bad command line: printed without a traceback, exit code 2."""


# ---------------------------------------------------------------------------------- info

def _numba_lines():
    try:
        import numba
        from .backends.numba_cpu import threading_info
    except ImportError as e:
        return [f"numba: not importable ({e})"]
    info = threading_info(start=True)
    return [f"numba {numba.__version__}: {info['threads']} threads "
            f"(of NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}), threading layer "
            f"{info['threading_layer']}"]


def _blas_lines():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["BLAS (threadpoolctl not installed; numpy.show_config follows):",
                _captured(np.show_config)]
    rows = [p for p in threadpool_info() if p.get("user_api") == "blas"] or threadpool_info()
    return [f"BLAS: {p.get('internal_api')} {p.get('version')} "
            f"{p.get('architecture') or ''}, {p.get('num_threads')} threads "
            f"({_short_path(p.get('filepath', ''))})" for p in rows] or ["BLAS: none found"]


def _short_path(path):
    # The library's folder says whose it is: numpy.libs, scipy.libs, torch/lib.
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def _captured(fn):
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        fn()
    return buf.getvalue().rstrip()


def _backend_lines():
    lines = []
    for name in dispatch.backends():
        b = dispatch.get_backend(name)
        why = b.available()
        state = "available" if why is None else f"unavailable: {why}"
        lines.append(f"  {name:<9} {state}")
        limits = getattr(b, "limits", "")
        if limits:
            lines.append(f"  {'':<9} limits: {limits}")
    return lines


def cmd_info(args, out):
    """Print the ``info`` report to ``out``."""
    from . import autotune
    print(f"convbackends {__version__} (Python {platform.python_version()}, NumPy "
          f"{np.__version__}, {platform.machine()}, {os.cpu_count()} CPUs)", file=out)
    print("backends:", file=out)
    for line in _backend_lines():
        print(line, file=out)
    print(f"default backend: {os.environ.get(dispatch.ENV_VAR) or 'auto'}", file=out)
    print(f"autotune: {'on' if autotune.autotune_enabled() else 'off'} "
          f"(cache {autotune.cache_path()})", file=out)
    for line in _numba_lines() + _blas_lines():
        print(line, file=out)
    present = [f"  {v}={os.environ[v]}" for v in ENV_VARS if v in os.environ]
    print("environment:" if present else "environment: none of the variables that matter "
          "is set", file=out)
    for line in present:
        print(line, file=out)
    return 0


# ------------------------------------------------------------------------------- compare

@dataclass
class Result:
    """One backend on one layer: warm-up time, timed samples, error against the reference."""

    backend: str
    first_call: float = None
    samples: list = field(default_factory=list)
    error: float = None
    note: str = ""

    @property
    def median(self):
        return statistics.median(self.samples) if self.samples else None


@dataclass
class LayerRun:
    """Every backend's :class:`Result` on one layer, with ``auto``'s pick and its reason."""

    layer: object
    results: dict
    auto_pick: str
    auto_reason: str

    def gflops(self, name):
        t = self.results[name].median
        return None if t is None else self.layer.flops / t / 1e9

    @property
    def best(self):
        """The fastest convbackends backend (``auto`` and PyTorch are not contestants)."""
        timed = {n: r.median for n, r in self.results.items()
                 if r.median is not None and n not in ("auto", TORCH)}
        return min(timed, key=timed.get) if timed else None

    def relative(self, name):
        best, t = self.best, self.results[name].median
        return None if best is None or t is None else t / self.results[best].median


def _load_oracle():
    """``reference/oracle.py``: importable from the repository root, or beside the package."""
    try:
        return importlib.import_module("reference.oracle")
    except ImportError:
        pass
    path = Path(__file__).resolve().parents[1] / "reference" / "oracle.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("_convbackends_oracle", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Reference:
    """The float64 result of a layer: the oracle, or float64 im2col where it is missing."""

    CHUNK_BYTES = 256 * 2**20

    def __init__(self):
        self._oracle = _load_oracle()
        self.label = ("float64 oracle (reference/oracle.py)" if self._oracle is not None
                      else "float64 im2col (reference/oracle.py not found)")

    def __call__(self, layer, x, w, b):
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        b64 = None if b is None else b.astype(np.float64)
        kw = layer.conv_kwargs()
        if self._oracle is None:
            return conv(x64, w64, b64, backend="im2col", **kw)
        # The oracle unfolds whole windows in float64: bound that by running the batch in chunks.
        spec = layer.spec("float64")
        per_sample = spec.macs // spec.batch // max(1, spec.out_channels // spec.groups) * 8
        chunk = max(1, self.CHUNK_BYTES // max(per_sample, 1))
        return np.concatenate([self._oracle.conv(x64[i:i + chunk], w64, b64, **kw)
                               for i in range(0, layer.batch, chunk)])


def _relative_error(y, ref):
    y = np.asarray(y, dtype=np.float64)
    return float(np.linalg.norm(y - ref) / max(np.linalg.norm(ref), np.finfo(float).tiny))


def _torch_runner(layer, x, w, b):
    import torch
    fn = getattr(torch.nn.functional, f"conv{layer.ndim}d")
    tx, tw = torch.from_numpy(x), torch.from_numpy(w)
    tb = None if b is None else torch.from_numpy(b)

    def run():
        with torch.inference_mode():
            return fn(tx, tw, tb, layer.stride, layer.padding, layer.dilation,
                      layer.groups).numpy()
    return run


def _runner(name, layer, x, w, b):
    buf = np.empty(layer.output_shape, x.dtype)
    kw = layer.conv_kwargs()
    return lambda: conv(x, w, b, backend=name, out=buf, **kw)


def _warm_up(results, runners, ref):
    """First call of each runner: its time, and its error against the reference."""
    for name, fn in runners.items():
        t0 = time.perf_counter()
        try:
            y = fn()
        except Exception as e:      # a failing backend is a finding, not the end of the run
            results[name].note = f"failed: {type(e).__name__}: {str(e)[:120]}"
            continue
        results[name].first_call = time.perf_counter() - t0
        results[name].error = _relative_error(y, ref)


def _settle(fn):
    """Untimed calls for ``SETTLE_SECONDS`` (at least one).

    The thread pool that ran just before (OpenBLAS's pthreads, Numba's or PyTorch's OpenMP
    team) keeps spinning for about 0.1 s after its last job; on two cores that halves the
    next pool's speed meanwhile (measured: a 20 ms Numba call after im2col took 36-40 ms
    twice before settling, on an otherwise idle machine).
    """
    t0 = time.perf_counter()
    fn()
    while time.perf_counter() - t0 < SETTLE_SECONDS:
        fn()


def _time_rounds(results, runners, repeat):
    """Rounds in which every backend runs once, each round starting one further along.

    Calls shorter than ``SETTLE_BELOW_SECONDS`` are preceded by :func:`_settle`.
    """
    names = [n for n in runners if not results[n].note]
    if not names:
        return
    spent = dict.fromkeys(names, 0.0)
    for r in range(repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            res = results[name]
            if res.samples and spent[name] >= BUDGET_SECONDS:
                continue
            if (res.samples[-1] if res.samples else res.first_call) < SETTLE_BELOW_SECONDS:
                _settle(runners[name])
            t0 = time.perf_counter()
            runners[name]()
            res.samples.append(time.perf_counter() - t0)
            spent[name] += res.samples[-1]


def _skip_reason(name, layer, explanation, named):
    if name in ("auto", TORCH):
        return None
    report = explanation.backends.get(name)
    if report is not None and not report.supported:
        return f"unsupported: {report.reason}"
    if name == "naive" and not named and layer.macs > NAIVE_MAX_MACS:
        return f"skipped: {layer.macs / 1e6:.0f} M MACs is too slow for naive (name it to run)"
    return None


def run_layer(layer, names, reference, *, dtype="float32", repeat=5, use_torch=False,
              named=False):
    """Measure ``names`` (and PyTorch) on one layer; returns a :class:`LayerRun`."""
    x, w, b = layer.make_inputs(dtype)
    explanation = dispatch.explain(layer.x_shape, layer.w_shape, dtype=dtype,
                                   bias=b is not None, **layer.conv_kwargs())
    results = {n: Result(n) for n in names + ([TORCH] if use_torch else [])}
    runners = {}
    for name in results:
        results[name].note = _skip_reason(name, layer, explanation, named) or ""
        if not results[name].note:
            runners[name] = (_torch_runner(layer, x, w, b) if name == TORCH
                             else _runner(name, layer, x, w, b))
    ref = reference(layer, x, w, b)
    _warm_up(results, runners, ref)
    del ref
    _time_rounds(results, runners, repeat)
    return LayerRun(layer, results, explanation.choice, explanation.reason)


def _fmt(value, spec):
    return "-" if value is None else format(value, spec)


def _table(headers, rows, markdown):
    """Rows of strings as aligned plain text, or as a Markdown table."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in [headers] + rows)


def detail_table(runs, markdown=False):
    """One row per layer and backend: ms, GFLOP/s, time / best, relative error, notes."""
    headers = ["layer", "geometry", "backend", "ms", "GFLOP/s", "x best", "rel. error", "note"]
    rows = []
    for run in runs:
        best = run.best
        for i, (name, r) in enumerate(run.results.items()):
            note = r.note or ("best" if name == best else "")
            if name == "auto":
                note = f"picks {run.auto_pick}"
            label = f"{run.layer.name} (x{run.layer.repeats})" if i == 0 else ""
            rows.append([label, run.layer.describe() if i == 0 else "", name,
                         _fmt(None if r.median is None else r.median * 1e3, ".3g"),
                         _fmt(run.gflops(name), ".3g"), _fmt(run.relative(name), ".2f"),
                         _fmt(r.error, ".1e"), note])
    return _table(headers, rows, markdown)


def _geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def summary_table(runs, markdown=False):
    """Per layer: the best backend, auto's pick, pick / best, auto's time, PyTorch / auto."""
    use_torch = any(TORCH in run.results for run in runs)
    headers = ["layer", "best", "best ms", "auto picks", "pick / best", "auto ms"] \
        + (["torch ms", "torch / auto"] if use_torch else [])
    rows = []
    for run in runs:
        auto = run.results["auto"].median
        row = [run.layer.name, run.best or "-",
               _fmt(run.results[run.best].median * 1e3 if run.best else None, ".3g"),
               run.auto_pick or "-", _fmt(run.relative(run.auto_pick)
                                           if run.auto_pick in run.results else None, ".2f"),
               _fmt(None if auto is None else auto * 1e3, ".3g")]
        if use_torch:
            t = run.results[TORCH].median
            row += [_fmt(None if t is None else t * 1e3, ".3g"),
                    _fmt(t / auto if t and auto else None, ".2f")]
        rows.append(row)
    return _table(headers, rows, markdown)


def summary_lines(runs):
    """Geometric means and network totals (each layer weighted by its repeats)."""
    picks = [run.relative(run.auto_pick) for run in runs if run.auto_pick in run.results]
    within = sum(1 for p in picks if p is not None and p <= 1.10)
    lines = [f"auto's pick within 10% of the best on {within} of {len(runs)} layers; "
             f"geometric mean pick / best {_fmt(_geomean(picks), '.3f')}"]
    totals = {}
    for run in runs:
        for name, r in run.results.items():
            if r.median is not None:
                totals.setdefault(name, []).append(r.median * run.layer.repeats)
    full = {n: sum(v) for n, v in totals.items() if len(v) == len(runs)}
    if full:
        lines.append("network total (each layer x its repeats): " + ", ".join(
            f"{n} {t * 1e3:.4g} ms" for n, t in sorted(full.items(), key=lambda kv: kv[1])))
    if any(TORCH in run.results for run in runs):
        ratios = [run.results[TORCH].median / run.results["auto"].median for run in runs
                  if run.results[TORCH].median and run.results["auto"].median]
        lines.append(f"geometric mean torch / auto: {_fmt(_geomean(ratios), '.3f')} over "
                     f"{len(ratios)} layers (above 1: auto is faster)")
    return lines


def write_csv(path, runs, header):
    """One row per layer and backend, with ``header`` (suite, batch, ...) in every row."""
    fields = ["suite", "batch", "dtype", "reference", "layer", "geometry", "repeats",
              "backend", "median_s", "min_s", "first_call_s", "samples", "gflops", "x_best",
              "rel_error", "note", "auto_pick", "auto_reason"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for run in runs:
            for name, r in run.results.items():
                writer.writerow({**header, "layer": run.layer.name,
                                 "geometry": run.layer.describe(),
                                 "repeats": run.layer.repeats, "backend": name,
                                 "median_s": r.median,
                                 "min_s": min(r.samples) if r.samples else None,
                                 "first_call_s": r.first_call,
                                 "samples": len(r.samples), "gflops": run.gflops(name),
                                 "x_best": run.relative(name), "rel_error": r.error,
                                 "note": r.note, "auto_pick": run.auto_pick,
                                 "auto_reason": run.auto_reason})


def write_plot(path, runs, title):
    """A grouped bar chart of GFLOP/s per layer and backend (needs matplotlib)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(runs[0].results)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(runs) * max(1, len(names)) / 3), 4.5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar([j + i * width for j in range(len(runs))],
               [run.gflops(name) or 0.0 for run in runs], width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(runs))])
    ax.set_xticklabels([run.layer.name.split(".", 1)[-1] for run in runs], rotation=45,
                       ha="right", fontsize=8)
    ax.set_ylabel("GFLOP/s (direct formula)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


class Progress:
    """A plain-text progress line on stderr: rewritten in place on a terminal."""

    def __init__(self, total, stream=None):
        self.total, self.stream = total, stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.t0 = time.perf_counter()

    def update(self, i, text):
        bar = "#" * (20 * i // self.total)
        line = f"[{bar:<20}] {i}/{self.total} {time.perf_counter() - self.t0:5.0f} s {text}"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self):
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _chosen_backends(text):
    """``--backends a,b`` checked against the registry; default every available one."""
    if text is None:
        return [n for n in dispatch.available_backends() if n != "auto"] + ["auto"], False
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = dispatch.backends()
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UsageError(f"unknown backend {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"known backends: {', '.join(known)}")
    for name in names:
        why = dispatch.get_backend(name).available()
        if why is not None:
            raise UsageError(f"backend {name!r} cannot run on this machine: {why}")
    return list(dict.fromkeys(names + ["auto"])), True


def _check_optional(args):
    if args.torch and importlib.util.find_spec("torch") is None:
        raise UsageError("--torch needs PyTorch, which is not importable here")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install 'convbackends[plot]'")


def _limit_threads(n, use_torch):
    """Cap Numba, BLAS (through threadpoolctl) and PyTorch at ``n`` threads."""
    import numba
    if n > numba.config.NUMBA_NUM_THREADS:
        raise UsageError(f"--threads {n}: Numba has at most {numba.config.NUMBA_NUM_THREADS}")
    numba.set_num_threads(n)
    if use_torch:
        import torch
        torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(n)


def cmd_compare(args, out):
    """Run the comparison and print (and save) its tables."""
    try:
        layers = workloads.suite(args.suite, args.batch)
    except workloads.UnknownSuiteError as e:
        raise UsageError(str(e)) from None
    names, named = _chosen_backends(args.backends)
    _check_optional(args)
    limiter = _limit_threads(args.threads, args.torch) if args.threads else None
    reference = Reference()
    progress = Progress(len(layers))
    runs = []
    for i, layer in enumerate(layers):
        progress.update(i, layer.name)
        runs.append(run_layer(layer, names, reference, dtype=args.dtype, repeat=args.repeat,
                              use_torch=args.torch, named=named))
    progress.update(len(layers), "done")
    progress.close()
    title = (f"suite {args.suite}, batch {args.batch}, {args.dtype}; reference: "
             f"{reference.label}; median of up to {args.repeat} interleaved calls after a "
             f"warm-up call")
    markdown = args.format == "markdown"
    print(title + "\n", file=out)
    print(detail_table(runs, markdown) + "\n", file=out)
    print(summary_table(runs, markdown) + "\n", file=out)
    for line in summary_lines(runs):
        print(line, file=out)
    if args.csv:
        write_csv(args.csv, runs, {"suite": args.suite, "batch": args.batch,
                                   "dtype": args.dtype, "reference": reference.label})
    if args.plot:
        write_plot(args.plot, runs, title)
    del limiter
    return 0


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser():
    """The argument parser of the ``convbackends`` command."""
    parser = argparse.ArgumentParser(
        prog="convbackends", description="PyTorch-exact convolution for NumPy: inspect the "
        "backends, compare them on layers of real networks.")
    parser.add_argument("--version", action="version", version=f"convbackends {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, backends, threads, BLAS, environment")
    p = sub.add_parser("compare", help="time every backend on a suite of real layers")
    p.add_argument("--suite", default="resnet18",
                   help=f"one of {', '.join(workloads.suite_names())} (default: resnet18)")
    p.add_argument("--backends", help="comma-separated names (default: every available "
                   "backend; naive only on small layers unless named); auto is always added")
    p.add_argument("--batch", type=_positive, default=1, help="batch size (default: 1)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeat", type=_positive, default=5,
                   help="timed calls per backend after the warm-up (default: 5)")
    p.add_argument("--threads", type=_positive,
                   help="cap Numba, BLAS and PyTorch threads (default: leave as they are)")
    p.add_argument("--torch", action="store_true",
                   help="add PyTorch CPU (torch.nn.functional.convNd) as a column")
    p.add_argument("--csv", metavar="FILE", help="write one row per layer and backend")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart of GFLOP/s (matplotlib)")
    p.add_argument("--format", choices=("text", "markdown"), default="text",
                   help="table format on stdout (default: text)")
    return parser


def main(argv=None):
    """Entry point of the ``convbackends`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    command = {"info": cmd_info, "compare": cmd_compare}[args.command]
    try:
        return command(args, sys.stdout)
    except UsageError as e:
        print(f"convbackends {args.command}: error: {e}", file=sys.stderr)
        return 2
