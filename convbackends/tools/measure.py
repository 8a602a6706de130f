"""Timing and reference checks shared by ``compare``, the benchmark scripts and the autotuner.

One timing loop, :func:`time_calls` (:func:`time_call` for a single function): a warm-up
call per contender kept apart (Numba compiles there), then rounds in which every contender
runs once, the order rotating each round, so a change in machine load hits them alike.
What it takes care of, and what it cannot:

- Thread pools hand over badly. OpenBLAS's pthreads and Numba's or PyTorch's OpenMP teams
  keep spinning for about 0.1 s after their last job; on two cores that halves the next
  pool's speed meanwhile (a 20 ms Numba call right after im2col took 36-40 ms twice before
  settling). With several contenders, a call shorter than ``settle_below`` seconds is
  preceded by ``settle`` seconds of untimed calls of the same contender, which also wakes
  idle cores (a sleep instead would let them doze off again).
- The allocator. glibc hands large fresh outputs back as untouched pages, so a call that
  allocates its output pays page faults that depend on what ran before it. Contenders
  should write into a reused ``out=`` buffer; for the rest, set ``MALLOC_MMAP_THRESHOLD_``
  and ``MALLOC_TRIM_THRESHOLD_`` before the process starts (glibc reads them only then).
- Another library's thread pools (PyTorch's OpenMP, its own BLAS) must not share a process
  with ours: :mod:`convbackends.tools.peer` runs such a contender in a process of its own,
  and its samplers plug into :func:`time_calls` like local ones.

Imports nothing from the rest of convbackends, so any room may use it.
"""

import math
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["NAIVE_MAX_MACS", "AUTOTUNE_NAIVE_MAX_MACS", "SETTLE_SECONDS",
           "SETTLE_BELOW_SECONDS", "Timing", "Sampler", "time_calls", "time_call",
           "relative_error", "TOLERANCE", "TRANSFORM_TOLERANCE", "TRANSFORM_BACKENDS",
           "tolerance"]

# compare and the benchmark grids run naive (serial, unblocked: 0.4-0.8 G MAC/s on a 2-core
# VM) only below this unless it is named: LeNet's and most depthwise layers, a tenth of a
# second or so. Above it naive would take most of a run's time, to show what is known.
NAIVE_MAX_MACS = 30_000_000
# The autotuner times naive only on calls this tiny: elsewhere it loses by orders of
# magnitude, and timing it would cost the user's first call more than it could win.
AUTOTUNE_NAIVE_MAX_MACS = 2_000_000
SETTLE_SECONDS = 0.15
SETTLE_BELOW_SECONDS = 0.5

# The accuracy bound of docs/api.md §1.7, ||y - ref|| / ||ref|| against float64; the
# transform backends trade exactness for fewer operations and are held to a looser one.
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
TRANSFORM_TOLERANCE = {"float32": 1e-4, "float64": 1e-10}
TRANSFORM_BACKENDS = ("fft", "winograd")


@dataclass
class Timing:
    """One contender's measurements.

    Attributes
    ----------
    first : float or None
        Seconds per call of the first warm-up sample (with ``number=1``: the first call,
        compilation included); ``None`` without warm-up or when it failed.
    samples : list of float
        Seconds per call of each timed sample, in order.
    failure : Exception or None
        What a contender raised (only exceptions listed in ``catch`` are kept); it is
        sampled no further.
    """

    first: float = None
    samples: list = field(default_factory=list)
    failure: Exception = None

    @property
    def median(self):
        return statistics.median(self.samples) if self.samples else None

    @property
    def min(self):
        return min(self.samples) if self.samples else None


class Sampler:
    """Seconds per call of ``fn()`` in this process, over ``number`` consecutive calls.

    ``sampler(settle)`` first calls ``fn`` untimed for ``settle`` seconds (at least once
    when ``settle > 0``). Any callable with this signature is a sampler for
    :func:`time_calls` (a peer process's, a CUDA-event timer).
    """

    def __init__(self, fn, number=1):
        self.fn, self.number = fn, int(number)

    def __call__(self, settle=0.0):
        fn = self.fn
        if settle > 0:
            t0 = time.perf_counter()
            fn()
            while time.perf_counter() - t0 < settle:
                fn()
        t0 = time.perf_counter()
        for _ in range(self.number):
            fn()
        return (time.perf_counter() - t0) / self.number


def _attempt(timing, sampler, settle, catch):
    """One sample, or ``None`` with the failure kept when it raised one of ``catch``."""
    try:
        return sampler(settle)
    except catch as e:
        timing.failure = e
        return None


def _warm_up(samplers, warmup, catch):
    """A :class:`Timing` per sampler, holding the first of its ``warmup`` untimed samples."""
    timings = {name: Timing() for name in samplers}
    for name, sampler in samplers.items():
        timing = timings[name]
        for i in range(warmup):
            seconds = _attempt(timing, sampler, 0.0, catch)
            if timing.failure is not None:
                break
            if i == 0:
                timing.first = seconds
    return timings


def time_calls(samplers, *, repeat=5, warmup=1, budget=math.inf, settle=SETTLE_SECONDS,
               settle_below=SETTLE_BELOW_SECONDS, warmup_limit=math.inf, catch=()):
    """Time contenders side by side: warm-up samples, then rounds in rotating order.

    Parameters
    ----------
    samplers : dict
        Name -> sampler: ``sampler(settle) -> seconds per call`` (see :class:`Sampler`).
    repeat : int. Default: 5
        Rounds; each contender gives at most one sample per round.
    warmup : int. Default: 1
        Untimed samples per contender before the rounds; the first one's time is kept.
    budget : float. Default: no limit
        A contender is sampled no more once its samples add up to this many seconds (it
        always gets one).
    settle, settle_below : float
        With more than one contender, a sample whose contender last took less than
        ``settle_below`` seconds is preceded by ``settle`` seconds of untimed calls.
    warmup_limit : float. Default: no limit
        A contender whose first warm-up sample took longer is not sampled: ``first`` is
        then its only measurement.
    catch : tuple of exception types. Default: none
        Exceptions kept as :attr:`Timing.failure` instead of raised.

    Returns
    -------
    dict
        Name -> :class:`Timing`, in the order of ``samplers``.
    """
    catch = tuple(catch)
    timings = _warm_up(samplers, warmup, catch)
    names = [n for n, t in timings.items() if t.failure is None
             and (t.first is None or t.first <= warmup_limit)]
    spent = dict.fromkeys(names, 0.0)
    for r in range(repeat if names else 0):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            timing = timings[name]
            if timing.failure is not None or (timing.samples and spent[name] >= budget):
                continue
            last = timing.samples[-1] if timing.samples else timing.first
            calm = len(names) == 1 or (last is not None and last >= settle_below)
            seconds = _attempt(timing, samplers[name], 0.0 if calm else settle, catch)
            if seconds is not None:
                timing.samples.append(seconds)
                spent[name] += seconds
    return timings


def time_call(fn, *, repeat=5, warmup=1, number=1, budget=math.inf):
    """Time ``fn()`` alone: :func:`time_calls` with one contender (nothing to settle).

    Returns
    -------
    Timing
        ``first`` (the warm-up), ``samples``, ``median`` and ``min``, in seconds per call.
    """
    sampler = Sampler(fn, number)
    return time_calls({"fn": sampler}, repeat=repeat, warmup=warmup, budget=budget)["fn"]


def relative_error(y, ref):
    """``||y - ref|| / ||ref||`` in float64, over the entries where ``ref`` is finite.

    Non-finite entries of ``ref`` are compared by pattern elsewhere; here they are left out
    so one ``inf`` does not hide every other difference. A zero reference gives ``||y||``.
    """
    ref = np.asarray(ref, np.float64)
    finite = np.isfinite(ref)
    diff = float(np.linalg.norm(np.asarray(y, np.float64)[finite] - ref[finite]))
    norm = float(np.linalg.norm(ref[finite]))
    return diff / norm if norm else diff


def tolerance(backend, dtype):
    """The relative error ``backend``'s results must stay under in ``dtype``."""
    bounds = TRANSFORM_TOLERANCE if backend in TRANSFORM_BACKENDS else TOLERANCE
    return bounds[np.dtype(dtype).name]
