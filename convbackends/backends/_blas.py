"""NumPy's BLAS run as single-threaded products side by side, one per core, instead of one
product on OpenBLAS's own thread pool.

OpenBLAS's workers busy-wait between products: on a small machine they spin while Numba's
threads work, and when another process takes a core, a multi-threaded product waits for the
preempted worker at every step (measured here at 3-20 GFLOP/s where one thread alone gives
60-90). Splitting a product's rows between threads of our own, each calling a
single-threaded OpenBLAS, leaves no pool to spin and degrades gracefully under load. On an
idle machine OpenBLAS's own threads are faster (2 threads: 137-189 GFLOP/s on ResNet-18's
products here, the split 72-154), so backends use this only when asked (``split_gemm``).

:func:`matmul` does that when NumPy's BLAS is an OpenBLAS we can reach (its
``openblas_set_num_threads``, found among the libraries mapped into the process); the
number of threads is what OpenBLAS was set to (so ``threadpoolctl``'s limits are honoured).
Anything else (another BLAS, a platform without ``/proc/self/maps``) runs plain
``np.matmul``.
"""

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["matmul", "batched_matmul", "split_threads"]

# Below this many multiply-adds a product is not worth a thread hand-over (~20 us).
MIN_SPLIT_MACS = 2_000_000

_lock = threading.Lock()
_state = {"probed": False, "get": None, "set": None, "users": 0, "saved": None,
          "pool": None}


def _numpy_openblas():
    """``(get_num_threads, set_num_threads)`` of NumPy's own OpenBLAS, or ``None``."""
    libs_dir = os.path.dirname(np.__file__) + ".libs"
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = dict.fromkeys(line.split()[-1] for line in f
                                  if "openblas" in line.rsplit("/", 1)[-1].lower())
    except OSError:
        return None
    for path in paths:
        if os.path.dirname(path) != libs_dir:
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for get, set_ in (("scipy_openblas_get_num_threads64_",
                           "scipy_openblas_set_num_threads64_"),
                          ("openblas_get_num_threads", "openblas_set_num_threads")):
            g, s = getattr(lib, get, None), getattr(lib, set_, None)
            if g is not None and s is not None:
                g.restype, g.argtypes = ctypes.c_int, []
                s.restype, s.argtypes = None, [ctypes.c_int]
                return g, s
    return None


def _probe():
    if not _state["probed"]:
        found = _numpy_openblas()
        if found is not None:
            _state["get"], _state["set"] = found
        _state["probed"] = True
    return _state["get"] is not None


def split_threads():
    """How many single-threaded products :func:`matmul` runs side by side (1: no split)."""
    with _lock:
        if not _probe():
            return 1
        threads = _state["saved"] if _state["users"] else _state["get"]()
    return max(1, min(threads, os.cpu_count() or 1))


class _SingleThreaded:
    """OpenBLAS at one thread while any user is inside; the first in saves the setting,
    the last out restores it."""

    def __enter__(self):
        with _lock:
            if _state["users"] == 0:
                _state["saved"] = _state["get"]()
                _state["set"](1)
            _state["users"] += 1
            return _state["saved"]

    def __exit__(self, *exc):
        with _lock:
            _state["users"] -= 1
            if _state["users"] == 0:
                _state["set"](_state["saved"])


def _pool(workers):
    pool = _state["pool"]
    if pool is None or pool._max_workers < workers:
        pool = _state["pool"] = ThreadPoolExecutor(max_workers=workers,
                                                   thread_name_prefix="convbackends-blas")
    return pool


def matmul(a, b, out):
    """``np.matmul(a, b, out=out)`` for a 2-D ``a`` (``b`` and ``out`` may be batched: the
    rows of ``a`` are ``out``'s second-to-last axis), split by rows of ``a`` over
    single-threaded products when that pays."""
    rows, inner = a.shape
    macs = rows * inner * (out.size // rows)
    workers = split_threads() if macs >= MIN_SPLIT_MACS and rows >= 16 else 1
    if workers < 2:
        return np.matmul(a, b, out=out)
    _side_by_side(workers, rows,
                  lambda r0, r1: np.matmul(a[r0:r1], b, out=out[..., r0:r1, :]))
    return out


def _side_by_side(workers, length, part):
    """``part(start, stop)`` over ``workers`` slices of ``range(length)``, the first in this
    thread, the others on the pool, with OpenBLAS single-threaded meanwhile."""
    bounds = np.linspace(0, length, workers + 1).astype(int)
    with _SingleThreaded():
        pool = _pool(workers)
        jobs = [pool.submit(part, i0, i1) for i0, i1 in zip(bounds[1:-1], bounds[2:])]
        part(bounds[0], bounds[1])
        for job in jobs:
            job.result()


def batched_matmul(a, b, out):
    """``np.matmul(a, b, out=out)`` over a leading batch axis shared by all three, the
    batch split over single-threaded products when that pays (Winograd's per-frequency
    products: many small GEMMs that OpenBLAS's threads divide badly)."""
    count = a.shape[0]
    macs = a.size // count * b.shape[-1] * count
    workers = min(split_threads(), count) if macs >= MIN_SPLIT_MACS else 1
    if workers < 2:
        return np.matmul(a, b, out=out)
    _side_by_side(workers, count,
                  lambda i0, i1: np.matmul(a[i0:i1], b[i0:i1], out=out[i0:i1]))
    return out
