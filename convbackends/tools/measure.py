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
- Noise. A median of five is still at the machine's mercy on a shared two-core VM (``auto``
  once came out at 106 ms against its own pick's 16.5 ms). :attr:`Timing.spread` is the
  interquartile range over the median; given ``target_spread``, :func:`time_calls` keeps
  sampling a contender until its spread is under it, ``max_repeat`` rounds or ``budget``
  seconds, and :func:`is_wide` / :func:`excess` say which results stayed too noisy to read
  and which two medians differ beyond their spread.
- Other processes. On two shared cores another process's test run makes a 2-thread
  contender wait at every barrier for a preempted sibling (PyTorch's ResNet-18 forward
  went from 36 ms to 950 ms so). A :class:`Sampler` reads how long its process's threads
  sat runnable but off a CPU that they did not hold themselves, and how long every other
  process ran meanwhile (Linux ``schedstat``, :func:`contention`); given ``max_wait``, :func:`time_calls` sets a
  sample with more than that share of a core taken aside as ``disturbed`` and samples
  again later (the median is the undisturbed samples'; the disturbed ones count only when
  no sample was undisturbed).

Imports nothing from the rest of convbackends, so any room may use it.
"""

import math
import os
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["NAIVE_MAX_MACS", "AUTOTUNE_NAIVE_MAX_MACS", "SETTLE_SECONDS",
           "SETTLE_BELOW_SECONDS", "SPREAD_TARGET", "MAX_WAIT", "Timing", "Sampler",
           "time_calls", "time_call", "spread", "is_wide", "excess", "run_queue_wait",
           "others_run", "contention", "MAX_SCANNED_THREADS",
           "relative_error", "TOLERANCE",
           "TRANSFORM_TOLERANCE", "TRANSFORM_BACKENDS", "tolerance"]

# compare and the benchmark grids run naive (serial, unblocked: 0.4-0.8 G MAC/s on a 2-core
# VM) only below this unless it is named: LeNet's and most depthwise layers, a tenth of a
# second or so. Above it naive would take most of a run's time, to show what is known.
NAIVE_MAX_MACS = 30_000_000
# The autotuner times naive only on calls this tiny: elsewhere it loses by orders of
# magnitude, and timing it would cost the user's first call more than it could win.
AUTOTUNE_NAIVE_MAX_MACS = 2_000_000
SETTLE_SECONDS = 0.15
SETTLE_BELOW_SECONDS = 0.5
# A median whose interquartile range is wider than this share of it is too noisy to rank
# contenders that differ by less: sample on (``target_spread``), or flag it (``is_wide``).
SPREAD_TARGET = 0.05
# A sample during which other processes took more than this share of one core (of its wall
# time) while this one's threads waited for a CPU was disturbed (``contention``): with
# ``max_wait`` set, it is taken again.
MAX_WAIT = 0.1

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
    disturbed : list of float
        Seconds per call of the samples set aside because the process waited for a CPU
        (``max_wait`` of :func:`time_calls`). ``median``, ``min`` and ``spread`` are the
        undisturbed samples'; with none, the disturbed ones'.
    """

    first: float = None
    samples: list = field(default_factory=list)
    failure: Exception = None
    disturbed: list = field(default_factory=list)

    @property
    def counted(self):
        """The samples the statistics are taken over: undisturbed, else the disturbed."""
        return self.samples or self.disturbed

    @property
    def median(self):
        return statistics.median(self.counted) if self.counted else None

    @property
    def min(self):
        return min(self.counted) if self.counted else None

    @property
    def spread(self):
        """``(p75 - p25) / median`` of the samples (see :func:`spread`); ``None`` below two."""
        return spread(self.counted)


def spread(samples):
    """The interquartile range of ``samples`` over their median: how far to trust it.

    0.05 means the middle half of the samples lies within 5% of the median's size. ``None``
    with fewer than two samples (nothing to tell), ``math.inf`` for a zero median.
    """
    if len(samples) < 2:
        return None
    p25, median, p75 = statistics.quantiles(samples, n=4, method="inclusive")
    return (p75 - p25) / median if median > 0 else math.inf


def is_wide(timing, threshold=SPREAD_TARGET):
    """Whether ``timing``'s median is too noisy to read: spread above ``threshold``.

    A timing with one sample (a slow contender stopped by its budget) has no spread and is
    not called wide; one without samples neither.
    """
    s = timing.spread
    return s is not None and s > threshold


def excess(a, b, floor=0.0):
    """How far ``a``'s median lies from ``b``'s beyond what their spreads explain.

    Returns ``(a - b) / b`` (medians) when its size is more than the wider of the two
    spreads (and more than ``floor``), ``0.0`` when the difference is within them, and
    ``None`` when either timing has fewer than two samples. ``auto`` runs its pick plus the
    dispatch, so a negative ``excess(auto, pick)`` cannot be real: it is noise, or
    ordering, to flag.
    """
    if a.spread is None or b.spread is None:
        return None
    diff = (a.median - b.median) / b.median
    return diff if abs(diff) > max(a.spread, b.spread, floor) else 0.0


def _schedstat(path):
    """``(run, wait)`` seconds of one task from its ``schedstat`` file, or ``None``."""
    try:
        with open(path, "rb") as f:
            run, wait = f.read().split()[:2]
        return int(run) / 1e9, int(wait) / 1e9
    except (OSError, ValueError):
        return None                 # a thread that ended meanwhile


def run_queue_wait():
    """Per thread of this process: seconds on a CPU and seconds runnable but waiting for one.

    ``{thread id: (run, wait)}`` from ``/proc/self/task/*/schedstat`` (Linux, nanosecond
    counters); ``None`` where the kernel does not keep them. A thread that sleeps (an idle
    pool) adds to neither; one preempted while it works or spins adds the time it waited.
    """
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    found = {t: v for t in tasks if (v := _schedstat(f"/proc/self/task/{t}/schedstat"))}
    return found or None


# Scanning every thread of the machine takes ~30 us a thread (3 ms for 110 here); above
# this many the scan is skipped and only this process's own wait is judged.
MAX_SCANNED_THREADS = 2000


def others_run():
    """Per thread of every other process: seconds it has spent on a CPU, or ``None``.

    ``{(pid, tid): run}`` from each ``/proc/PID/task/TID/schedstat`` (Linux); ``None``
    where that cannot be read or the machine runs more than :data:`MAX_SCANNED_THREADS`.
    """
    me = os.getpid()
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    found = {}
    for pid in pids:
        if pid == me:
            continue
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue                # ended meanwhile
        for tid in tasks:
            value = _schedstat(f"/proc/{pid}/task/{tid}/schedstat")
            if value is not None:
                found[pid, tid] = value[0]
        if len(found) > MAX_SCANNED_THREADS:
            return None
    return found or None


def _cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _delta(before, after):
    """Summed increase of per-key counters (keys only in ``after`` count from zero)."""
    return sum(v - before.get(k, 0.0) for k, v in after.items())


def contention(before, after, elapsed, cpus=None, others=None):
    """The share of a core other processes took while this one's threads waited for one.

    ``before`` and ``after`` are :func:`run_queue_wait` readings ``elapsed`` seconds apart:
    the threads' wait ``W`` and time on a CPU ``R``. Waiting while our own threads held
    every CPU (``R`` near ``cpus * elapsed``: a pool of ours oversubscribing, a cost the
    user pays too) is not contention, so the bound is ``min(W, cpus * elapsed - R)``.
    ``others``, a pair of :func:`others_run` readings, bounds it further by what the other
    processes actually ran (a wake-up's latency is waiting too, with no one else to blame).
    Returns that over ``elapsed``, at least 0; ``None`` without readings.
    """
    if before is None or after is None or elapsed <= 0:
        return None
    run = _delta({k: v[0] for k, v in before.items()}, {k: v[0] for k, v in after.items()})
    wait = _delta({k: v[1] for k, v in before.items()}, {k: v[1] for k, v in after.items()})
    bound = min(wait, (cpus or _cpus()) * elapsed - run)
    if others is not None and others[0] is not None and others[1] is not None:
        bound = min(bound, _delta(*others))
    return max(0.0, bound) / elapsed


class Sampler:
    """Seconds per call of ``fn()`` in this process, over ``number`` consecutive calls.

    ``sampler(settle)`` first calls ``fn`` untimed for ``settle`` seconds (at least once
    when ``settle > 0``). With ``min_time``, batches of ``number`` calls go on until they
    took that many seconds, so a call of microseconds is not timed alone (the timer's and
    the scheduler's jitter would be most of it). Any callable with this signature is a
    sampler for :func:`time_calls` (a peer process's, a CUDA-event timer); one that also
    has a ``last_wait`` attribute (this class; :class:`~convbackends.tools.peer.Peer` for its
    ``sample``) says how disturbed its last sample was.

    With ``watch``, each sample reads this process's and every other process's scheduler
    counters before and after its timed part (a few ms here, outside the timing) and sets
    ``last_wait``; without it (the autotuner's first-call timing) it reads nothing.

    Attributes
    ----------
    last_wait : float or None
        :func:`contention` during the last timed sample: the share of a core other
        processes took while this one's threads waited for a CPU; ``None`` where unknown
        or not watched.
    """

    def __init__(self, fn, number=1, min_time=0.0, watch=False):
        self.fn, self.number, self.min_time = fn, int(number), float(min_time)
        self.watch, self.last_wait = bool(watch), None

    def __call__(self, settle=0.0):
        fn = self.fn
        if settle > 0:
            t0 = time.perf_counter()
            fn()
            while time.perf_counter() - t0 < settle:
                fn()
        if self.watch:
            scan, before = others_run(), run_queue_wait()
        calls, t0 = 0, time.perf_counter()
        while True:
            for _ in range(self.number):
                fn()
            calls += self.number
            elapsed = time.perf_counter() - t0
            if elapsed >= self.min_time:
                break
        if self.watch:
            after = run_queue_wait()
            self.last_wait = contention(before, after, elapsed, others=(scan, others_run()))
        return elapsed / calls


def _last_wait(sampler):
    """The ``last_wait`` of a sampler (or of the object a bound-method sampler belongs to)."""
    owner = getattr(sampler, "__self__", sampler)
    return getattr(owner, "last_wait", None)


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


def _done(timing, spent, repeat, max_repeat, budget, target_spread):
    """Whether a contender has samples enough (or no budget left) for this run."""
    n = len(timing.samples)
    tried = n + len(timing.disturbed)
    if timing.failure is not None or (tried and spent >= budget) or n >= max_repeat \
            or tried >= 2 * max_repeat:
        return True
    if n < repeat:
        return False
    return target_spread is None or (timing.spread is not None
                                     and timing.spread <= target_spread)


def time_calls(samplers, *, repeat=5, warmup=1, budget=math.inf, settle=SETTLE_SECONDS,
               settle_below=SETTLE_BELOW_SECONDS, warmup_limit=math.inf, catch=(),
               target_spread=None, max_repeat=None, max_wait=None):
    """Time contenders side by side: warm-up samples, then rounds in rotating order.

    Parameters
    ----------
    samplers : dict
        Name -> sampler: ``sampler(settle) -> seconds per call`` (see :class:`Sampler`).
    repeat : int. Default: 5
        Rounds; each contender gives at most one sample per round. With
        ``target_spread``, the least number of rounds.
    warmup : int. Default: 1
        Untimed samples per contender before the rounds; the first one's time is kept.
    budget : float. Default: no limit
        A contender is sampled no more once its samples add up to this many seconds (it
        always gets one).
    target_spread : float, optional
        Adaptive: after ``repeat`` rounds a contender goes on being sampled until its
        :attr:`Timing.spread` is at most this, its ``budget`` is spent or it has
        ``max_repeat`` samples. The others' rounds keep rotating meanwhile.
    max_repeat : int, optional
        The most rounds (default ``repeat``, or ``4 * repeat`` with ``target_spread``).
    max_wait : float, optional
        A sample whose sampler reports a ``last_wait`` above this (see :class:`Sampler`)
        goes to :attr:`Timing.disturbed` instead of ``samples``, and the contender is
        sampled again in a later round (up to ``2 * max_repeat`` samples in all, within
        ``budget``). Default: every sample counts.
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
    if max_repeat is None:
        max_repeat = repeat if target_spread is None else 4 * repeat
    max_repeat = max(repeat, max_repeat)
    timings = _warm_up(samplers, warmup, catch)
    names = [n for n, t in timings.items() if t.failure is None
             and (t.first is None or t.first <= warmup_limit)]
    spent = dict.fromkeys(names, 0.0)
    rounds = 2 * max_repeat if max_wait is not None else max_repeat
    for r in range(rounds if names else 0):
        k = r % len(names)
        active = [n for n in names[k:] + names[:k] if not _done(
            timings[n], spent[n], repeat, max_repeat, budget, target_spread)]
        if not active:
            break
        for name in active:
            timing = timings[name]
            if timing.failure is not None:      # failed earlier in this round
                continue
            last = timing.samples[-1] if timing.samples else timing.first
            calm = len(names) == 1 or (last is not None and last >= settle_below)
            seconds = _attempt(timing, samplers[name], 0.0 if calm else settle, catch)
            if seconds is not None:
                wait = _last_wait(samplers[name]) if max_wait is not None else None
                (timing.disturbed if wait is not None and wait > max_wait
                 else timing.samples).append(seconds)
                spent[name] += seconds
    return timings


def time_call(fn, *, repeat=5, warmup=1, number=1, budget=math.inf, target_spread=None,
              max_repeat=None, min_time=0.0, max_wait=None):
    """Time ``fn()`` alone: :func:`time_calls` with one contender (nothing to settle).

    Returns
    -------
    Timing
        ``first`` (the warm-up), ``samples``, ``median``, ``min`` and ``spread``, in
        seconds per call.
    """
    sampler = Sampler(fn, number, min_time, watch=max_wait is not None)
    return time_calls({"fn": sampler}, repeat=repeat, warmup=warmup, budget=budget,
                      target_spread=target_spread, max_repeat=max_repeat,
                      max_wait=max_wait)["fn"]


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
