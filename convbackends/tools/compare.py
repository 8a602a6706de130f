"""Backends side by side on the layers of a suite: times, and errors against float64.

Every backend runs one layer into a reused ``out=`` buffer through
:func:`~convbackends.tools.measure.time_calls` (a warm-up call, then interleaved rounds with
settling; the median counts). PyTorch, when asked for, is timed in a process of its own
(:class:`~convbackends.tools.peer.Peer`) in the same rounds. Afterwards every result is
checked against :func:`convbackends.tools.reference.conv` in float64.
"""

from dataclasses import dataclass, field

import numpy as np

import convbackends as cb

from . import reference
from .measure import NAIVE_MAX_MACS, Sampler, Timing, relative_error, time_calls

__all__ = ["Result", "LayerRun", "run_layer", "skip_reason", "TORCH", "BUDGET_SECONDS",
           "REFERENCE_LABEL"]

TORCH = "torch"
BUDGET_SECONDS = 3.0            # timed seconds per backend and layer before samples stop
REFERENCE_LABEL = "float64 direct convolution (convbackends.tools.reference)"


@dataclass
class Result:
    """One backend on one layer: its :class:`Timing`, error against the reference, a note."""

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


def skip_reason(name, layer, explanation, named):
    """Why ``name`` sits this layer out (unsupported; naive on a big layer), else ``None``."""
    if name in ("auto", TORCH):
        return None
    report = explanation.backends.get(name)
    if report is not None and not report.supported:
        return f"unsupported: {report.reason}"
    if name == "naive" and not named and layer.macs > NAIVE_MAX_MACS:
        return f"skipped: {layer.macs / 1e6:.0f} M MACs is too slow for naive (name it to run)"
    return None


def _failed(e):
    return f"failed: {type(e).__name__}: {str(e)[:120]}"


def _contender(name, layer, arrays, peer, threads):
    """``(sampler, output)``: how to time ``name`` on the layer, and how to get its result."""
    x, w, b = arrays
    kw = layer.conv_kwargs()
    if name == TORCH:
        peer.setup_conv(x, w, b, threads=threads, **kw)
        return peer.sample, peer.result
    buf = np.empty(layer.output_shape, x.dtype)
    return Sampler(lambda: cb.conv(x, w, b, backend=name, out=buf, **kw)), lambda: buf


def run_layer(layer, names, *, dtype="float32", repeat=5, peer=None, threads=None,
              named=False):
    """Measure ``names`` (and PyTorch, through ``peer``) on one layer.

    Parameters
    ----------
    layer : convbackends.tools.workloads.Layer
    names : list of str
        Backends, ``"auto"`` included where wanted.
    dtype : str. Default: "float32"
    repeat : int. Default: 5
        Timed rounds after the warm-up.
    peer : Peer, optional
        Adds a PyTorch column, timed in that process.
    threads : int, optional
        PyTorch's threads in the peer (default: its own choice).
    named : bool. Default: False
        Whether the user named the backends (then naive runs on big layers too).

    Returns
    -------
    LayerRun
    """
    arrays = layer.make_inputs(dtype)
    explanation = cb.explain(layer.x_shape, layer.w_shape, dtype=dtype,
                             bias=arrays[2] is not None, **layer.conv_kwargs())
    results = {n: Result(n) for n in names + ([TORCH] if peer is not None else [])}
    samplers, outputs = {}, {}
    for name, res in results.items():
        res.note = skip_reason(name, layer, explanation, named) or ""
        if res.note:
            continue
        try:
            samplers[name], outputs[name] = _contender(name, layer, arrays, peer, threads)
        except Exception as e:      # a failing contender is a finding, not the end of the run
            res.note = _failed(e)
    timings = time_calls(samplers, repeat=repeat, budget=BUDGET_SECONDS, catch=(Exception,))
    _check(results, timings, outputs, reference.conv(*arrays, **layer.conv_kwargs()))
    return LayerRun(layer, results, explanation.choice, explanation.reason)


def _check(results, timings, outputs, ref):
    """Store each timing, and the relative error of each output that did not fail."""
    for name, timing in timings.items():
        res = results[name]
        res.timing = timing
        if timing.failure is not None:
            res.note = _failed(timing.failure)
        else:
            res.error = relative_error(outputs[name](), ref)
