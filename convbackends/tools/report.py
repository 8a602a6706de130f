"""The tables, summary lines, CSV and bar chart of a ``compare`` run.

Each takes the :class:`~convbackends.tools.compare.LayerRun` list of one suite. ``x best``
is a time over the fastest convbackends backend's (``auto`` and PyTorch are not
contestants); ``pick / best`` is the time of the backend ``auto`` picked over the best's.
"""

import csv
import math

from .compare import TORCH

__all__ = ["detail_table", "summary_table", "summary_lines", "write_csv", "write_plot"]


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
                                 "min_s": r.timing.min,
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
