"""Backends side by side on the layers of a suite: times, spreads, and errors against float64.

Every backend runs one layer into a reused ``out=`` buffer through
:func:`~convbackends.tools.measure.time_calls` (a warm-up call, then interleaved rounds with
settling, adaptive: a contender is sampled until its spread is under ``target_spread``, its
budget or ``max_repeat`` rounds, and a sample during which other processes took more than
``max_wait`` of a core from it is set aside and taken again; the median counts). Peer
libraries (PyTorch, ONNX Runtime, :data:`~convbackends.tools.peer.PEERS`), when asked for,
are timed each in a process of its own (:class:`~convbackends.tools.peer.Peer`) in the same
rounds. ``auto`` is then checked against the backend it picked: it runs that backend plus
the dispatch, so a median beyond the spread from its pick's is noise (or dispatch cost) and
the two are timed head to head once more before the row is flagged. Afterwards every
result is checked against :func:`convbackends.tools.reference.conv` in float64.
"""

from dataclasses import dataclass, field

import numpy as np

import convbackends as cb

from . import reference
from .measure import (MAX_WAIT, NAIVE_MAX_MACS, SPREAD_TARGET, Sampler, Timing, excess,
                      is_wide, relative_error, time_calls)
from .peer import PEERS

__all__ = ["Result", "LayerRun", "run_layer", "skip_reason", "TORCH", "BUDGET_SECONDS",
           "MAX_REPEAT", "MIN_SAMPLE_SECONDS", "RECHECK_ROUNDS", "REFERENCE_LABEL"]

TORCH = "torch"
BUDGET_SECONDS = 3.0            # timed seconds per backend and layer before samples stop
MAX_REPEAT = 20                 # the most rounds while a spread stays above the target
MIN_SAMPLE_SECONDS = 0.005      # a sample times calls until this long (tiny layers)
RECHECK_ROUNDS = 6              # head-to-head rounds of auto and its pick when they disagree
REFERENCE_LABEL = "float64 direct convolution (convbackends.tools.reference)"


@dataclass
class Result:
    """One contender on one layer: its :class:`Timing`, error against the reference, a note."""

    backend: str
    timing: Timing = field(default_factory=Timing)
    error: float = None
    note: str = ""

    @property
    def first_call(self):
        return self.timing.first

    @property
    def samples(self):
        return self.timing.samples

    @property
    def median(self):
        return self.timing.median

    @property
    def spread(self):
        return self.timing.spread

    @property
    def disturbed(self):
        """A note on samples set aside as disturbed by other processes, else ``""``."""
        d, n = len(self.timing.disturbed), len(self.timing.samples)
        if not d:
            return ""
        return f"{d} of {d + n} samples disturbed" + ("" if n else ", all counted")


@dataclass
class LayerRun:
    """Every contender's :class:`Result` on one layer, with ``auto``'s pick and its reason.

    ``peers`` names the results that are other libraries (not contestants for ``best``);
    ``auto_excess`` is :func:`~convbackends.tools.measure.excess` of ``auto`` over its pick
    (``None`` when it could not be told, ``0.0`` within the spread).
    """

    layer: object
    results: dict
    auto_pick: str
    auto_reason: str
    peers: tuple = ()
    target_spread: float = SPREAD_TARGET
    auto_excess: float = None

    def gflops(self, name):
        t = self.results[name].median
        return None if t is None else self.layer.flops / t / 1e9

    @property
    def best(self):
        """The fastest convbackends backend (``auto`` and the peers are not contestants)."""
        timed = {n: r.median for n, r in self.results.items()
                 if r.median is not None and n != "auto" and n not in self.peers}
        return min(timed, key=timed.get) if timed else None

    def relative(self, name):
        best, t = self.best, self.results[name].median
        return None if best is None or t is None else t / self.results[best].median

    def wide(self, name):
        """Whether ``name``'s median stayed noisier than the target spread."""
        return is_wide(self.results[name].timing, self.target_spread)

    def auto_flag(self):
        """A note when ``auto``'s median lies beyond the spread from its pick's, else ``""``."""
        d = self.auto_excess
        if not d:
            return ""
        if d < 0:
            return (f"auto {-d:.0%} below its pick {self.auto_pick}, beyond the spread: "
                    f"noise")
        return f"auto {d:.0%} above its pick {self.auto_pick}, beyond the spread"


def skip_reason(name, layer, explanation, named):
    """Why ``name`` sits this layer out (unsupported; naive on a big layer), else ``None``."""
    if name == "auto" or name in PEERS:
        return None
    report = explanation.backends.get(name)
    if report is not None and not report.supported:
        return f"unsupported: {report.reason}"
    if name == "naive" and not named and layer.macs > NAIVE_MAX_MACS:
        return f"skipped: {layer.macs / 1e6:.0f} M MACs is too slow for naive (name it to run)"
    return None


def _failed(e):
    return f"failed: {type(e).__name__}: {str(e)[:120]}"


def _contender(name, layer, arrays, peers, threads, min_time, watch):
    """``(sampler, output)``: how to time ``name`` on the layer, and how to get its result."""
    x, w, b = arrays
    kw = layer.conv_kwargs()
    if name in peers:
        peer = peers[name]
        peer.setup_conv(x, w, b, target=PEERS[name].conv, threads=threads,
                        min_time=min_time, **kw)
        return peer.sample, peer.result
    buf = np.empty(layer.output_shape, x.dtype)
    return (Sampler(lambda: cb.conv(x, w, b, backend=name, out=buf, **kw), min_time=min_time,
                    watch=watch), lambda: buf)


def run_layer(layer, names, *, dtype="float32", repeat=5, peer=None, peers=None, threads=None,
              named=False, target_spread=SPREAD_TARGET, max_repeat=MAX_REPEAT,
              min_time=MIN_SAMPLE_SECONDS, budget=BUDGET_SECONDS, max_wait=MAX_WAIT):
    """Measure ``names`` (and the peer libraries) on one layer.

    Parameters
    ----------
    layer : convbackends.tools.workloads.Layer
    names : list of str
        Backends, ``"auto"`` included where wanted.
    dtype : str. Default: "float32"
    repeat : int. Default: 5
        Timed rounds after the warm-up, at least.
    peer : Peer, optional
        A PyTorch worker: the same as ``peers={"torch": peer}``.
    peers : dict, optional
        Peer name (a key of :data:`~convbackends.tools.peer.PEERS`) -> its
        :class:`~convbackends.tools.peer.Peer`; each adds a column, timed in that process.
    threads : int, optional
        The peers' threads (default: their own choice).
    named : bool. Default: False
        Whether the user named the backends (then naive runs on big layers too).
    target_spread, max_repeat, min_time, budget, max_wait
        Sampling goes on after ``repeat`` rounds until a contender's spread is at most
        ``target_spread`` (``None``: never), up to ``max_repeat`` rounds or ``budget``
        timed seconds; each sample times calls for at least ``min_time`` seconds; one
        during which other processes took more than ``max_wait`` of a core (``None``: no
        check) is set aside as disturbed (see :func:`~convbackends.tools.measure.time_calls`).

    Returns
    -------
    LayerRun
    """
    peers = dict(peers or {})
    if peer is not None:
        peers.setdefault(TORCH, peer)
    arrays = layer.make_inputs(dtype)
    explanation = cb.explain(layer.x_shape, layer.w_shape, dtype=dtype,
                             bias=arrays[2] is not None, **layer.conv_kwargs())
    results = {n: Result(n) for n in list(names) + list(peers)}
    samplers, outputs = {}, {}
    for name, res in results.items():
        res.note = skip_reason(name, layer, explanation, named) or ""
        if res.note:
            continue
        try:
            samplers[name], outputs[name] = _contender(name, layer, arrays, peers, threads,
                                                       min_time, max_wait is not None)
        except Exception as e:      # a failing contender is a finding, not the end of the run
            res.note = _failed(e)
    timings = time_calls(samplers, repeat=repeat, budget=budget, catch=(Exception,),
                         target_spread=target_spread, max_repeat=max_repeat,
                         max_wait=max_wait)
    run = LayerRun(layer, results, explanation.choice, explanation.reason, tuple(peers),
                   SPREAD_TARGET if target_spread is None else target_spread)
    run.auto_excess = _recheck_auto(run, timings, samplers, budget, max_wait)
    _check(results, timings, outputs, reference.conv(*arrays, **layer.conv_kwargs()))
    return run


def _recheck_auto(run, timings, samplers, budget, max_wait=None):
    """``excess(auto, pick)`` (at least the target spread), after a head-to-head of the two
    where it is beyond the spread.

    The extra rounds (only those two, alternating) are added to both timings' samples.
    """
    pick = run.auto_pick
    if "auto" not in timings or pick not in timings:
        return None
    auto, chosen = timings["auto"], timings[pick]
    if auto.failure is not None or chosen.failure is not None:
        return None
    floor = run.target_spread          # differences below it are not resolved anyway
    d = excess(auto, chosen, floor)
    if not d:
        return d
    extra = time_calls({"auto": samplers["auto"], pick: samplers[pick]}, warmup=0,
                       repeat=RECHECK_ROUNDS, budget=budget, catch=(Exception,),
                       max_wait=max_wait)
    for name, timing in extra.items():
        timings[name].samples.extend(timing.samples)
        timings[name].disturbed.extend(timing.disturbed)
        if timing.failure is not None:
            timings[name].failure = timing.failure
    return excess(auto, chosen, floor)


def _check(results, timings, outputs, ref):
    """Store each timing, and the relative error of each output that did not fail."""
    for name, timing in timings.items():
        res = results[name]
        res.timing = timing
        if timing.failure is not None:
            res.note = _failed(timing.failure)
        else:
            res.error = relative_error(outputs[name](), ref)
