"""``convbackends report``: asv's results as one self-contained HTML file.

It reads an asv results directory (``.asv/results``: one folder per machine, one JSON file
per commit and environment, in asv's format version 2) and writes one HTML page with no
network access and no JavaScript: per machine, the latest run as a table (per layer and
backend: time, GFLOP/s, time over the fastest, relative error against the float64
reference, peak memory), the crossovers (which backend is fastest on each layer, by how
much, and at which commits the winner changed), then per layer the time and the relative
error of every backend across commits, drawn as inline SVG on log axes. Needs nothing
beyond the standard library: asv itself need not be installed to read its results.
"""

import html
import json
import math
import time
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

from ..errors import ConvError

__all__ = ["ResultsError", "Run", "load_runs", "latest_table", "crossovers", "render",
           "write_report"]

TIME = "time_forward"
ERROR = "track_rel_error"
GFLOPS = "track_gflops"
PEAKMEM = "peakmem_forward"
# one colour per backend, the same in every chart (matplotlib's default cycle)
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]


class ResultsError(ConvError, ValueError):
    """The results directory is missing, empty, or not asv's results."""


@dataclass
class Run:
    """One asv results file: a commit measured on a machine in an environment.

    ``values[(suite, metric)][(backend, layer)]`` is the number asv recorded (``None`` for a
    skipped or failed combination); ``suite`` is the benchmark class
    (``bench_conv.ConvLayer``), ``metric`` its method (``time_forward``). ``failed`` holds
    the ``(suite, metric, backend, layer)`` that failed (asv writes ``null``; a skip is
    ``NaN``).
    """

    machine: str
    commit: str
    date: float
    env: str
    values: dict = field(default_factory=dict)
    units: dict = field(default_factory=dict)
    failed: set = field(default_factory=set)

    @property
    def short(self):
        return self.commit[:8]


def _unquote(text):
    # asv stores each parameter value as its repr: "'im2col'"
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


def _read_run(path, machine, units):
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("version") != 2 or "result_columns" not in data:
        raise ResultsError(f"{path}: not an asv results file of format version 2")
    columns = data["result_columns"]
    run = Run(machine, data["commit_hash"], data.get("date") or 0, data.get("env_name", ""))
    for name, row in data.get("results", {}).items():
        entry = dict(zip(columns, row))
        suite, _, metric = name.rpartition(".")
        params = [[_unquote(v) for v in axis] for axis in entry.get("params") or []]
        values = entry.get("result")
        if len(params) != 2 or not isinstance(values, list):
            continue                    # not a backend x layer grid
        run.values[(suite, metric)] = {
            key: _number(v) for key, v in zip(product(*params), values)}
        run.failed.update((suite, metric) + key for key, v in zip(product(*params), values)
                          if v is None)
        run.units[(suite, metric)] = units.get(name, "")
    return run


def _number(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def load_runs(results_dir):
    """Every :class:`Run` in an asv results directory, oldest commit first per machine."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ResultsError(f"no asv results directory at {root}")
    units = {}
    meta = root / "benchmarks.json"
    if meta.is_file():
        units = {k: v.get("unit", "") for k, v in json.loads(meta.read_text()).items()
                 if isinstance(v, dict)}
    runs = []
    for machine_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(machine_dir.glob("*.json")):
            if path.name != "machine.json":
                runs.append(_read_run(path, machine_dir.name, units))
    if not runs:
        raise ResultsError(f"{root} holds no asv results (run `asv run` first)")
    return sorted(runs, key=lambda r: (r.machine, r.env, r.date))


def _grid(run, suite):
    """``{layer: {backend: {metric: value}}}`` of one suite in one run, in asv's order."""
    grid = {}
    for (s, metric), values in run.values.items():
        if s != suite:
            continue
        for (backend, layer), v in values.items():
            grid.setdefault(layer, {}).setdefault(backend, {})[metric] = v
    return grid


def _suites(runs):
    return list(dict.fromkeys(s for run in runs for (s, _) in run.values))


def _fastest(backends):
    """``(name, seconds)`` of the fastest contestant (``auto`` is not one), else ``None``."""
    timed = {b: m[TIME] for b, m in backends.items() if m.get(TIME) and b != "auto"}
    if not timed:
        return None
    best = min(timed, key=timed.get)
    return best, timed[best]


def latest_table(run, suite):
    """Rows ``(layer, backend, ms, GFLOP/s, x fastest, rel. error, peak MiB, note)``."""
    rows = []
    for layer, backends in _grid(run, suite).items():
        best = _fastest(backends)
        for backend, m in backends.items():
            t = m.get(TIME)
            failed = [metric for metric in m if (suite, metric, backend, layer) in run.failed]
            note = "fastest" if best and backend == best[0] else ""
            if failed:
                note = "; ".join(filter(None, [note, "failed: " + ", ".join(failed)]))
            elif all(v is None for v in m.values()):
                note = "skipped (unsupported here)"
            rows.append((layer, backend, t and t * 1e3, m.get(GFLOPS),
                         t / best[1] if t and best else None, m.get(ERROR),
                         m.get(PEAKMEM) and m[PEAKMEM] / 2**20, note))
    return rows


def crossovers(runs, suite):
    """Per layer: the latest fastest backend, the runner-up and its time over the fastest's,
    and every commit at which the fastest backend changed (``(commit, before, after)``)."""
    out = {}
    for run in runs:
        for layer, backends in _grid(run, suite).items():
            best = _fastest(backends)
            if best is None:
                continue
            entry = out.setdefault(layer, {"changes": [], "winner": None})
            if entry["winner"] is not None and entry["winner"] != best[0]:
                entry["changes"].append((run.short, entry["winner"], best[0]))
            times = sorted((m[TIME], b) for b, m in backends.items()
                           if m.get(TIME) and b != "auto")
            entry.update(winner=best[0], runner_up=times[1][1] if len(times) > 1 else None,
                         margin=times[1][0] / times[0][0] if len(times) > 1 else None,
                         auto=backends.get("auto", {}).get(TIME), best_time=best[1])
    return out


# ------------------------------------------------------------------------------ rendering

def _fmt(value, spec, empty="–"):
    return empty if value is None else format(value, spec)


def _table(headers, rows):
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _log_ticks(lo, hi):
    """Tick values for a log axis from ``lo`` to ``hi``: decades, 1-2-5, or every digit,
    the first of those that gives at least three ticks."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for steps in ((1,), (1, 2, 5), range(1, 10)):
        ticks = [t for t in (m * 10.0 ** e for e in range(first, last + 1) for m in steps)
                 if lo / 1.0001 <= t <= hi * 1.0001]
        if len(ticks) >= 3:
            return ticks
    return ticks or [lo, hi]


def svg_chart(title, series, labels, unit, colors, width=560, height=230):
    """An inline SVG line chart of ``series`` (name -> one value or ``None`` per label) on
    a log axis; each point carries a ``<title>`` with its value (a tooltip, no script)."""
    values = [v for vs in series.values() for v in vs if v and v > 0]
    left, right, top, bottom = 64, 120, 24, 40
    w, h = width - left - right, height - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{html.escape(title)}">',
             f'<text x="{left}" y="15" class="t">{html.escape(title)}</text>']
    if not values:
        parts.append(f'<text x="{left}" y="{top + h / 2}">no values recorded</text></svg>')
        return "".join(parts)
    lo, hi = min(values), max(values)
    if hi / lo < 1.5:
        lo, hi = lo / 1.25, hi * 1.25
    ticks = _log_ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])

    def y(v):
        return top + h - h * (math.log10(v) - math.log10(lo)) / (math.log10(hi) -
                                                                   math.log10(lo))

    def x(i):
        return left + (w * i / (len(labels) - 1) if len(labels) > 1 else w / 2)

    for t in ticks:
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                     f'class="g"/><text x="{left - 4}" y="{y(t) + 4:.1f}" class="yl">'
                     f'{t:.3g}</text>')
    every = max(1, math.ceil(len(labels) / 8))
    for i, label in enumerate(labels):
        if i % every == 0 or i == len(labels) - 1:
            parts.append(f'<text x="{x(i):.1f}" y="{top + h + 14}" class="xl">'
                         f'{html.escape(label)}</text>')
    parts.append(f'<text x="12" y="{top + h / 2}" class="u" transform="rotate(-90 12 '
                 f'{top + h / 2})">{html.escape(unit)}</text>')
    for k, (name, vs) in enumerate(series.items()):
        color = colors[name]
        points = [(x(i), y(v), v, labels[i]) for i, v in enumerate(vs) if v and v > 0]
        if len(points) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                         f'stroke-width="1.6"/>')
        for px, py, v, label in points:
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.6" fill="{color}">'
                         f'<title>{html.escape(name)} at {html.escape(label)}: {v:.4g} '
                         f'{html.escape(unit)}</title></circle>')
        ly = top + 12 + 15 * k
        parts.append(f'<rect x="{left + w + 10}" y="{ly - 8}" width="10" height="10" '
                     f'fill="{color}"/><text x="{left + w + 24}" y="{ly + 1}" class="lg">'
                     f'{html.escape(name)}{"" if points else " (none)"}</text>')
    parts.append("</svg>")
    return "".join(parts)


STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1250px}
table{border-collapse:collapse;font-size:13px;margin:0.5em 0 1.2em}
th,td{border:1px solid #ccc;padding:2px 7px;text-align:right}
th{background:#f0f0f0} td:first-child,td:nth-child(2){text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:8px} svg{background:#fff;border:1px solid #ddd}
svg text{font-size:11px;fill:#333} .t{font-weight:600} .yl{text-anchor:end}
.xl{text-anchor:middle} .u{text-anchor:middle} .g{stroke:#e4e4e4} .note{color:#555}
"""


def _colors(runs):
    names = dict.fromkeys(b for run in runs for vals in run.values.values() for b, _ in vals)
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def _latest_section(run, suite):
    rows = [(layer, backend, _fmt(ms, ".4g"), _fmt(g, ".3g"), _fmt(r, ".2f"),
             _fmt(e, ".1e"), _fmt(mib, ".0f"), note)
            for layer, backend, ms, g, r, e, mib, note in latest_table(run, suite)]
    return _table(["layer", "backend", "ms", "GFLOP/s", "x fastest", "rel. error",
                   "peak MiB", "note"], rows)


def _crossover_section(runs, suite):
    rows = []
    for layer, c in crossovers(runs, suite).items():
        changes = "; ".join(f"{commit}: {a} → {b}" for commit, a, b in c["changes"])
        rows.append((layer, c["winner"], c["runner_up"] or "–", _fmt(c["margin"], ".2f"),
                     _fmt(c["auto"] / c["best_time"] if c["auto"] else None, ".2f"),
                     changes or "none"))
    if not rows:
        return "<p class='note'>no timings recorded</p>"
    return _table(["layer", "fastest", "runner-up", "runner-up / fastest", "auto / fastest",
                   "fastest changed at"], rows)


def _history_section(runs, suite, colors):
    labels = [run.short for run in runs]
    grids = [_grid(run, suite) for run in runs]
    layers = list(dict.fromkeys(layer for g in grids for layer in g))
    metrics = list(dict.fromkeys(m for run in runs for (s, m) in run.values if s == suite))
    shown = [m for m in (TIME, ERROR) if m in metrics] or metrics
    out = []
    for layer in layers:
        backends = list(dict.fromkeys(b for g in grids for b in g.get(layer, {})))
        charts = []
        for metric in shown:
            unit = next((run.units.get((suite, metric)) for run in runs
                         if run.units.get((suite, metric))), "")
            scale = 1e3 if metric.startswith("time_") else 1.0
            unit = "ms" if metric.startswith("time_") else unit or metric
            series = {b: [(g.get(layer, {}).get(b, {}).get(metric) or 0) * scale or None
                          for g in grids] for b in backends}
            charts.append(svg_chart(f"{layer}: {metric}", series, labels, unit, colors))
        out.append(f"<h4>{html.escape(layer)}</h4><div class='charts'>{''.join(charts)}</div>")
    return "".join(out)


def render(runs, title="convbackends benchmarks"):
    """The report's HTML for :func:`load_runs`'s runs."""
    colors = _colors(runs)
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p class='note'>From asv's results: {len(runs)} runs. Time is asv's median; "
            f"relative error is ‖y − ref‖ / ‖ref‖ against the float64 reference; "
            f"“x fastest” is a time over the layer's fastest backend (auto is not a "
            f"contestant). Hover a point for its value. Written "
            f"{time.strftime('%Y-%m-%d %H:%M')}.</p>"]
    groups = {}
    for run in runs:
        groups.setdefault((run.machine, run.env), []).append(run)
    for (machine, env), group in groups.items():
        latest = group[-1]
        body.append(f"<h2>machine {html.escape(machine)}, environment {html.escape(env)}</h2>"
                    f"<p class='note'>{len(group)} commits, oldest {group[0].short}, latest "
                    f"{latest.short} ({_date(latest.date)})</p>")
        for suite in _suites(group):
            body.append(f"<h3>{html.escape(suite)}: latest run ({latest.short})</h3>"
                        + _latest_section(latest, suite)
                        + f"<h3>{html.escape(suite)}: crossovers</h3>"
                        + _crossover_section(group, suite)
                        + f"<h3>{html.escape(suite)}: across commits</h3>"
                        + _history_section(group, suite, colors))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def _date(ms):
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ms / 1000)) + " UTC" if ms else "?"


def write_report(results_dir, path, title="convbackends benchmarks"):
    """Read ``results_dir``, write the report to ``path``; returns the runs read."""
    runs = load_runs(results_dir)
    Path(path).write_text(render(runs, title), encoding="utf-8")
    return runs
