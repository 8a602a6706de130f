"""The ``convbackends info`` report: what this machine and installation offer, and why.

About fifteen lines: the version, every backend with its availability (or why not), the
plug-ins left out (and why), the default backend and the autotuner's state, Numba's threads
and threading layer, each BLAS library loaded with its kernel and threads, and the
environment variables that change timings. ``limits=True`` adds each backend's limits.

Nothing optional is needed: the BLAS lines come from threadpoolctl when it is installed,
else from OpenBLAS itself (through ctypes), else from NumPy's build configuration, never
from ``numpy.show_config()``, which prints the whole build configuration (and warns without
pyyaml).
"""

import ctypes
import os
import platform
from pathlib import Path

import numpy as np

import convbackends as cb
from convbackends.dispatch import autotune, plugin_report

__all__ = ["ENV_VARS", "report"]

ENV_VARS = ("CONVBACKENDS_BACKEND", "CONVBACKENDS_AUTOTUNE", "CONVBACKENDS_CACHE_DIR",
            "NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_ENABLE_CUDASIM",
            "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
            "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_THREAD_TIMEOUT",
            "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "CUDA_VISIBLE_DEVICES")


def _backend_lines(limits):
    lines = ["backends:"]
    for name in cb.backends():
        b = cb.get_backend(name)
        why = b.available()
        lines.append(f"  {name:<9} {'available' if why is None else f'unavailable: {why}'}")
        if limits and getattr(b, "limits", ""):
            lines.append(f"  {'':<9} limits: {b.limits}")
    return lines


def _plugin_lines():
    problems = plugin_report()
    return [f"plug-ins: {'left out:' if problems else 'none left out'}"] + [
        f"  {line}" for line in problems]


def _autotune_line():
    return (f"autotune: {'on' if autotune.autotune_enabled() else 'off'} "
            f"(cache {autotune.cache_path()})")


def _numba_lines():
    try:
        import numba
    except ImportError as e:
        return [f"numba: not importable ({e})"]
    if "numba" in cb.available_backends():
        # Numba picks its threading layer at the first parallel call: make one, so the
        # layer reported is the one in use (the kernel is cached on disk after its first use).
        cb.adaptive_avg_pool2d(np.zeros((1, 1, 1, 1)), 1, backend="numba")
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = f"not started yet (requested: {numba.config.THREADING_LAYER})"
    return [f"numba {numba.__version__}: {numba.get_num_threads()} threads "
            f"(of NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}), threading layer {layer}"]


def _blas_lines():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return _openblas_lines() or _numpy_blas_lines()
    rows = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    return [_blas_line(p.get("internal_api"), p.get("version"), p.get("architecture"),
                       p.get("num_threads"), p.get("filepath", "")) for p in rows] \
        or _numpy_blas_lines()


def _blas_line(name, version, kernel, threads, path):
    return (f"BLAS: {name} {version} {kernel or '(kernel unknown)'}, {threads} threads "
            f"({_short_path(path)})")


def _openblas_lines():
    """Each OpenBLAS mapped into this process, asked for its kernel and threads (Linux)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = dict.fromkeys(line.split()[-1] for line in f
                                  if "openblas" in line.rsplit("/", 1)[-1].lower())
    except OSError:
        return []
    lines = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        config = _openblas_call(lib, "get_config", ctypes.c_char_p)
        kernel = _openblas_call(lib, "get_corename", ctypes.c_char_p)
        threads = _openblas_call(lib, "get_num_threads", ctypes.c_int)
        if config is None:
            continue
        # get_config() is "OpenBLAS 0.3.31.188.0 USE64BITINT DYNAMIC_ARCH ..."
        version = config.decode().split()[1] if len(config.split()) > 1 else "?"
        lines.append(_blas_line("openblas", version, kernel and kernel.decode(), threads,
                                path))
    return lines


def _openblas_call(lib, name, restype):
    # NumPy's and SciPy's wheels rename the symbols: scipy_openblas_get_config64_ and so on.
    for symbol in (f"openblas_{name}", f"scipy_openblas_{name}64_", f"scipy_openblas_{name}"):
        fn = getattr(lib, symbol, None)
        if fn is not None:
            fn.restype, fn.argtypes = restype, []
            return fn()
    return None


def _numpy_blas_lines():
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return [f"BLAS: {blas.get('name', 'unknown')} {blas.get('version', '')} (from NumPy's "
            f"build configuration; kernel and threads: pip install threadpoolctl)"]


def _short_path(path):
    # The library's folder says whose it is: numpy.libs, scipy.libs, torch/lib.
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def _environment_lines():
    present = [f"  {v}={os.environ[v]}" for v in ENV_VARS if v in os.environ]
    if not present:
        return ["environment: none of the variables that matter is set"]
    return ["environment:"] + present


def report(limits=False):
    """The lines of the ``info`` report; ``limits=True`` adds each backend's limits."""
    head = (f"convbackends {cb.__version__} (Python {platform.python_version()}, NumPy "
            f"{np.__version__}, {platform.machine()}, {os.cpu_count()} CPUs)")
    default = f"default backend: {os.environ.get('CONVBACKENDS_BACKEND') or 'auto'}"
    return ([head] + _backend_lines(limits) + _plugin_lines() + [default, _autotune_line()]
            + _numba_lines() + _blas_lines() + _environment_lines())
