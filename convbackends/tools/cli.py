"""The ``convbackends`` command: ``info``, ``compare``, ``report`` and ``dashboard``.

``convbackends info`` prints what :func:`convbackends.tools.info.report` finds: the version,
the backends (and with ``--limits`` their limits), threads, BLAS and the environment
variables that matter.

``convbackends compare`` runs backends side by side on a named suite of real layers
(:mod:`convbackends.tools.workloads`) with :func:`convbackends.tools.compare.run_layer`:
one warm-up call each, then interleaved rounds into reused ``out=`` buffers, sampled until
each median's spread is under ``--spread`` (the median counts), every result checked against
a float64 reference shipped with the package; with ``--peers torch,onnxruntime`` (``--torch``
is ``--peers torch``), each peer library runs in a process of its own in the same rounds. It
prints time, spread, GFLOP/s, speed relative to the fastest, relative error, ``auto``'s pick
and each peer's time over ``auto``'s (:mod:`convbackends.tools.report`). Heavy imports
(Numba, threadpoolctl, matplotlib) happen only where needed; no peer library is ever
imported in this process.

``convbackends report --results DIR -o report.html`` writes asv's results as one
self-contained HTML page (:mod:`convbackends.tools.asv_report`); ``convbackends dashboard``
runs ``asv publish`` and makes the dashboard render without internet
(:mod:`convbackends.tools.dashboard`). Every long command draws a progress line on stderr.
"""

import argparse
import contextlib
import importlib.util
import sys
import time

import convbackends as cb

from ..errors import ConvError
from . import info, report, workloads
from .compare import MAX_REPEAT, REFERENCE_LABEL, run_layer
from .measure import MAX_WAIT, SPREAD_TARGET
from .peer import PEERS, Peer, missing_packages

__all__ = ["main", "build_parser", "chosen_peers", "UsageError"]


class UsageError(ConvError, ValueError):
    """A bad command line: printed without a traceback, exit code 2."""


def cmd_info(args, out):
    """Print the ``info`` report to ``out``."""
    for line in info.report(limits=args.limits):
        print(line, file=out)
    return 0


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
        return [n for n in cb.available_backends() if n != "auto"] + ["auto"], False
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = cb.backends()
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise UsageError(f"unknown backend {', '.join(map(repr, unknown)) or '(none given)'}; "
                         f"known backends: {', '.join(known)}")
    for name in names:
        why = cb.get_backend(name).available()
        if why is not None:
            raise UsageError(f"backend {name!r} cannot run on this machine: {why}")
    return list(dict.fromkeys(names + ["auto"])), True


def chosen_peers(text, torch=False):
    """``--peers a,b`` (and ``--torch``) checked against :data:`PEERS`, in the order given.

    Raises :class:`UsageError` for an unknown name or a peer whose packages are missing.
    """
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    if text is not None and not names:
        raise UsageError(f"--peers: no peer given; known peers: {', '.join(PEERS)}")
    if torch:
        names.insert(0, "torch")
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise UsageError(f"unknown peer {', '.join(map(repr, unknown))}; known peers: "
                         f"{', '.join(PEERS)}")
    names = list(dict.fromkeys(names))
    for name in names:
        missing = missing_packages(name)
        if missing:
            raise UsageError(f"peer {name!r} needs {' and '.join(missing)}, which "
                             f"{'is' if len(missing) == 1 else 'are'} not importable here "
                             f"(pip install 'convbackends[bench]')")
    return names


def _check_optional(args):
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install 'convbackends[plot]'")


def _limit_threads(n):
    """Cap Numba and BLAS (through threadpoolctl) at ``n`` threads; the peers are told."""
    import numba
    if n > numba.config.NUMBA_NUM_THREADS:
        raise UsageError(f"--threads {n}: Numba has at most {numba.config.NUMBA_NUM_THREADS}")
    numba.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(n)


def _measure(args, layers, names, named):
    """One :class:`~convbackends.tools.compare.LayerRun` per layer, with a progress line."""
    progress = Progress(len(layers))
    runs = []
    with contextlib.ExitStack() as stack:
        peers = {name: stack.enter_context(Peer()) for name in args.peers}
        for i, layer in enumerate(layers):
            progress.update(i, layer.name)
            runs.append(run_layer(layer, names, dtype=args.dtype, repeat=args.repeat,
                                  peers=peers, threads=args.threads, named=named,
                                  target_spread=args.spread,
                                  max_repeat=max(args.repeat, args.max_repeat),
                                  max_wait=args.max_wait))
    progress.update(len(layers), "done")
    progress.close()
    return runs


def _print_runs(args, runs, out):
    """The tables on ``out``; the CSV and the chart where asked for."""
    peers = "; " + ", ".join(PEERS[p].label for p in args.peers) + \
        (" each in a process of its own" if len(args.peers) > 1 else " in a process of its own")
    title = (f"suite {args.suite}, batch {args.batch}, {args.dtype}; reference: "
             f"{REFERENCE_LABEL}; median of {args.repeat} to {max(args.repeat, args.max_repeat)}"
             f" interleaved samples after a warm-up call, until the spread is under "
             f"{args.spread:.0%}; samples disturbed by other processes (over "
             f"{args.max_wait:g} of a core) taken again" + (peers if args.peers else ""))
    markdown = args.format == "markdown"
    print(title + "\n", file=out)
    print(report.detail_table(runs, markdown) + "\n", file=out)
    print(report.summary_table(runs, markdown) + "\n", file=out)
    for line in report.summary_lines(runs):
        print(line, file=out)
    if args.csv:
        report.write_csv(args.csv, runs, {"suite": args.suite, "batch": args.batch,
                                          "dtype": args.dtype, "reference": REFERENCE_LABEL})
    if args.plot:
        report.write_plot(args.plot, runs, title)


def cmd_compare(args, out):
    """Run the comparison and print (and save) its tables."""
    try:
        layers = workloads.suite(args.suite, args.batch)
    except workloads.UnknownSuiteError as e:
        raise UsageError(str(e)) from None
    names, named = _chosen_backends(args.backends)
    args.peers = chosen_peers(args.peers, args.torch)
    _check_optional(args)
    with _limit_threads(args.threads) if args.threads else contextlib.nullcontext():
        runs = _measure(args, layers, names, named)
    _print_runs(args, runs, out)
    return 0


def cmd_report(args, out):
    """Write the HTML report of an asv results directory."""
    from . import asv_report
    try:
        runs = asv_report.write_report(args.results, args.output, args.title)
    except asv_report.ResultsError as e:
        raise UsageError(str(e)) from None
    commits = len({r.commit for r in runs})
    print(f"wrote {args.output}: {len(runs)} runs, {commits} commits, from {args.results}",
          file=out)
    return 0


def cmd_dashboard(args, out):
    """``asv publish``, then every CDN asset vendored from npm into the published folder."""
    from . import dashboard
    progress = None

    def step(i, total, text):
        nonlocal progress
        progress = progress or Progress(total)
        progress.update(i, text)

    print("asv publish ...", file=sys.stderr, flush=True)
    try:
        html_dir, vendored = dashboard.publish(args.config, args.html_dir, args.npm_cache,
                                               step)
    except dashboard.DashboardError as e:
        raise UsageError(str(e)) from None
    if progress:
        progress.close()
    for v in vendored:
        same = "identical to the CDN's file" if v.identical else "not the CDN's bytes"
        print(f"  {v.package} {v.version} -> {v.local} ({same}"
              + (f"; {v.note})" if v.note else ")"), file=out)
    print(f"dashboard: {html_dir / 'index.html'} renders without internet "
          f"({len(vendored)} files from {dashboard.REGISTRY})", file=out)
    return 0


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text):
    value = float(text)
    if not 0 < value < 10:
        raise argparse.ArgumentTypeError(f"must be above 0 and below 10 (0.05 is 5%), "
                                         f"got {value}")
    return value


def build_parser():
    """The argument parser of the ``convbackends`` command."""
    parser = argparse.ArgumentParser(
        prog="convbackends", description="PyTorch-exact convolution for NumPy: inspect the "
        "backends, compare them on layers of real networks.")
    parser.add_argument("--version", action="version", version=f"convbackends {cb.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="version, backends, threads, BLAS, environment")
    p.add_argument("--limits", action="store_true", help="also each backend's limits")
    p = sub.add_parser("compare", help="time every backend on a suite of real layers")
    p.add_argument("--suite", default="resnet18",
                   help=f"one of {', '.join(workloads.suite_names())} (default: resnet18)")
    p.add_argument("--backends", help="comma-separated names (default: every available "
                   "backend; naive only on small layers unless named); auto is always added")
    p.add_argument("--batch", type=_positive, default=1, help="batch size (default: 1)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--repeat", type=_positive, default=5,
                   help="timed samples per backend after the warm-up, at least (default: 5)")
    p.add_argument("--max-repeat", type=_positive, default=MAX_REPEAT,
                   help=f"timed samples at most while the spread stays above --spread "
                   f"(default: {MAX_REPEAT})")
    p.add_argument("--spread", type=_fraction, default=SPREAD_TARGET,
                   help=f"target spread (p75 - p25) / median: sampling goes on until it is "
                   f"under this, and wider rows are marked ~ (default: {SPREAD_TARGET})")
    p.add_argument("--max-wait", type=float, default=MAX_WAIT,
                   help=f"a sample during which other processes took more than this share "
                   f"of a core is set aside and taken again; inf: keep every sample "
                   f"(default: {MAX_WAIT})")
    p.add_argument("--threads", type=_positive,
                   help="cap Numba, BLAS and the peers' threads (default: leave as they are)")
    p.add_argument("--peers", metavar="NAMES",
                   help=f"comma-separated peer libraries, each timed in a process of its own "
                   f"in the same rounds: {', '.join(PEERS)}")
    p.add_argument("--torch", action="store_true", help="the same as --peers torch")
    p.add_argument("--csv", metavar="FILE", help="write one row per layer and backend")
    p.add_argument("--plot", metavar="FILE.png", help="bar chart of GFLOP/s (matplotlib)")
    p.add_argument("--format", choices=("text", "markdown"), default="text",
                   help="table format on stdout (default: text)")
    p = sub.add_parser("report", help="asv's results as one self-contained HTML file")
    p.add_argument("--results", default=".asv/results",
                   help="asv's results directory (default: .asv/results)")
    p.add_argument("-o", "--output", default="report.html", help="(default: report.html)")
    p.add_argument("--title", default="convbackends benchmarks")
    p = sub.add_parser("dashboard", help="asv publish, made to render without internet")
    p.add_argument("--config", default="asv.conf.json", help="(default: asv.conf.json)")
    p.add_argument("--html-dir", help="where to publish (default: the config's html_dir)")
    p.add_argument("--npm-cache", metavar="DIR", help="keep the npm tarballs here and use "
                   "them first (publish offline from a cache filled elsewhere)")
    return parser


def main(argv=None):
    """Entry point of the ``convbackends`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    command = {"info": cmd_info, "compare": cmd_compare, "report": cmd_report,
               "dashboard": cmd_dashboard}[args.command]
    try:
        return command(args, sys.stdout)
    except UsageError as e:
        print(f"convbackends {args.command}: error: {e}", file=sys.stderr)
        return 2
