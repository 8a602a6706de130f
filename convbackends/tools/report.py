"""The tables, summary lines, CSV and bar chart of a ``compare`` run.

Each takes the :class:`~convbackends.tools.compare.LayerRun` list of one suite. ``x best``
is a time over the fastest convbackends backend's (``auto`` and the peer libraries are not
contestants); ``pick / best`` is the time of the backend ``auto`` picked over the best's;
``<peer> / auto`` is a peer library's time over ``auto``'s (above 1: ``auto`` is faster).
``±`` is a median's spread, ``(p75 - p25) / median`` of its samples; a time whose spread
stayed above the run's target is marked ``~``, and an ``auto`` whose median lies beyond the
spread from its own pick's is flagged in the notes (it runs that backend: one of the two is
noise).
"""

import csv
import math

__all__ = ["detail_table", "summary_table", "summary_lines", "peer_ratio", "write_csv",
           "plot_figure", "write_plot"]


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


def _ms(run, name):
    """A median in ms, ``~`` in front when its spread stayed above the target."""
    t = run.results[name].median
    if t is None:
        return "-"
    return ("~" if run.wide(name) else "") + format(t * 1e3, ".3g")


def _spread(r):
    s = r.spread
    if s is None:
        return "-" if not r.samples else "n=1"
    return f"{s:.0%}" if s >= 0.01 else "<1%"


def detail_table(runs, markdown=False):
    """One row per layer and contender: ms, ± spread, GFLOP/s, time / best, error, notes."""
    headers = ["layer", "geometry", "backend", "ms", "±", "GFLOP/s", "x best", "rel. error",
               "note"]
    rows = []
    for run in runs:
        best = run.best
        for i, (name, r) in enumerate(run.results.items()):
            note = "; ".join(filter(None, [r.note or ("best" if name == best else ""),
                                           r.disturbed]))
            if name == "auto":
                note = "; ".join(filter(None, [f"picks {run.auto_pick}", r.note,
                                               run.auto_flag(), r.disturbed]))
            label = f"{run.layer.name} (x{run.layer.repeats})" if i == 0 else ""
            rows.append([label, run.layer.describe() if i == 0 else "", name, _ms(run, name),
                         _spread(r), _fmt(run.gflops(name), ".3g"),
                         _fmt(run.relative(name), ".2f"), _fmt(r.error, ".1e"), note])
    return _table(headers, rows, markdown)


def _geomean(values):
    values = [v for v in values if v]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def _peers(runs):
    """The peer libraries of the runs, in the order they were asked for."""
    return list(dict.fromkeys(p for run in runs for p in run.peers))


def peer_ratio(run, peer):
    """A peer's median over ``auto``'s on one layer (above 1: ``auto`` is faster)."""
    t = run.results[peer].median if peer in run.results else None
    auto = run.results["auto"].median
    return t / auto if t and auto else None


def summary_table(runs, markdown=False):
    """Per layer: best backend, auto's pick, pick / best, auto's time, each peer's / auto's."""
    peers = _peers(runs)
    flagged = any(run.auto_flag() for run in runs)
    headers = ["layer", "best", "best ms", "auto picks", "pick / best", "auto ms", "auto ±"] \
        + [h for p in peers for h in (f"{p} ms", f"{p} / auto")] + (["check"] if flagged else [])
    rows = []
    for run in runs:
        row = [run.layer.name, run.best or "-", _ms(run, run.best) if run.best else "-",
               run.auto_pick or "-", _fmt(run.relative(run.auto_pick)
                                           if run.auto_pick in run.results else None, ".2f"),
               _ms(run, "auto"), _spread(run.results["auto"])]
        for p in peers:
            row += [_ms(run, p) if p in run.results else "-",
                    _fmt(peer_ratio(run, p), ".2f")]
        if flagged:
            row.append(run.auto_flag())
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
    for peer in _peers(runs):
        ratios = [r for r in (peer_ratio(run, peer) for run in runs) if r]
        lines.append(f"geometric mean {peer} / auto: {_fmt(_geomean(ratios), '.3f')} over "
                     f"{len(ratios)} layers (above 1: auto is faster)")
    wide = [f"{run.layer.name} {name}" for run in runs for name in run.results
            if run.wide(name)]
    if wide:
        lines.append(f"spread above {runs[0].target_spread:.0%} after sampling (marked ~): "
                     f"{len(wide)} of {sum(len(run.results) for run in runs)} timings")
    disturbed = sum(len(r.timing.disturbed) for run in runs for r in run.results.values())
    if disturbed:
        total = disturbed + sum(len(r.samples) for run in runs for r in run.results.values())
        lines.append(f"samples set aside as disturbed by other processes: {disturbed} of "
                     f"{total} (taken again)")
    flags = [run for run in runs if run.auto_flag()]
    lines.append(f"auto against its own pick: {len(flags)} of {len(runs)} layers beyond the "
                 "spread" + (": " + "; ".join(f"{run.layer.name}: {run.auto_flag()}"
                                              for run in flags) if flags else ""))
    return lines


def write_csv(path, runs, header):
    """One row per layer and backend, with ``header`` (suite, batch, ...) in every row."""
    fields = ["suite", "batch", "dtype", "reference", "layer", "geometry", "repeats",
              "backend", "median_s", "min_s", "spread", "wide", "first_call_s", "samples",
              "disturbed",
              "gflops", "x_best", "rel_error", "note", "auto_pick", "auto_reason",
              "auto_excess"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for run in runs:
            for name, r in run.results.items():
                writer.writerow({**header, "layer": run.layer.name,
                                 "geometry": run.layer.describe(),
                                 "repeats": run.layer.repeats, "backend": name,
                                 "median_s": r.median,
                                 "min_s": r.timing.min, "spread": r.spread,
                                 "wide": run.wide(name),
                                 "first_call_s": r.first_call,
                                 "samples": len(r.samples),
                                 "disturbed": len(r.timing.disturbed),
                                 "gflops": run.gflops(name),
                                 "x_best": run.relative(name), "rel_error": r.error,
                                 "note": r.note, "auto_pick": run.auto_pick,
                                 "auto_reason": run.auto_reason,
                                 "auto_excess": run.auto_excess})


def write_plot(path, runs, title):
    """:func:`plot_figure` saved as a PNG at ``path``."""
    import matplotlib.pyplot as plt
    fig = plot_figure(runs, title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_figure(runs, title):
    """Grouped bars per layer and contender (needs matplotlib): GFLOP/s on a log axis above,
    speed relative to the layer's fastest convbackends backend below.

    The log axis keeps a depthwise layer's few GFLOP/s as visible as a GEMM's hundreds, and
    the relative panel reads the same for every suite; a contender that did not run on a
    layer (unsupported, skipped, failed) has no bar and an ``x`` at the baseline.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(runs[0].results)
    width = 0.8 / len(names)
    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(max(6.0, 0.9 * len(runs) * max(1, len(names)) / 3), 6.5),
        gridspec_kw={"height_ratios": [3, 2]})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fastest = 1.0              # auto (or a peer) can beat the best backend by noise or more
    for i, name in enumerate(names):
        xs = [j + i * width for j in range(len(runs))]
        gflops = [run.gflops(name) for run in runs]
        speed = [None if run.relative(name) is None else 1 / run.relative(name)
                 for run in runs]
        color = colors[i % len(colors)]
        fastest = max([fastest] + [v for v in speed if v])
        top.bar([x for x, g in zip(xs, gflops) if g], [g for g in gflops if g], width,
                label=name, color=color)
        bottom.bar([x for x, v in zip(xs, speed) if v], [v for v in speed if v], width,
                   color=color)
        missing = [x for x, g in zip(xs, gflops) if not g]
        bottom.plot(missing, [0.0] * len(missing), "x", color=color, markersize=4)
    top.set_yscale("log")
    top.set_ylabel("GFLOP/s (direct formula, log)")
    top.grid(axis="y", which="both", alpha=0.3)
    top.set_title(title, fontsize=8, wrap=True)
    top.legend(fontsize=8, ncol=min(len(names), 4))
    bottom.set_ylim(0, 1.05 * fastest)
    bottom.axhline(1.0, color="grey", linewidth=0.5)
    bottom.set_ylabel("speed / fastest")
    bottom.grid(axis="y", alpha=0.3)
    bottom.set_xticks([j + 0.4 - width / 2 for j in range(len(runs))])
    bottom.set_xticklabels([run.layer.name.split(".", 1)[-1] for run in runs], rotation=45,
                           ha="right", fontsize=8)
    fig.tight_layout()
    return fig
