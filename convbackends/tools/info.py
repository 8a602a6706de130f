"""The ``convbackends info`` report: what this machine and installation offer, and why.

The version, every backend with its availability (or why not) and its limits, the plug-ins
left out (and why), the autotuner's state, Numba's threads and threading layer, the BLAS NumPy
uses and the environment variables that change timings.
"""

import contextlib
import io
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


def _backend_lines():
    lines = ["backends:"]
    for name in cb.backends():
        b = cb.get_backend(name)
        why = b.available()
        lines.append(f"  {name:<9} {'available' if why is None else f'unavailable: {why}'}")
        limits = getattr(b, "limits", "")
        if limits:
            lines.append(f"  {'':<9} limits: {limits}")
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
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            np.show_config()
        return ["BLAS (threadpoolctl not installed; numpy.show_config follows):",
                buf.getvalue().rstrip()]
    rows = [p for p in threadpool_info() if p.get("user_api") == "blas"] or threadpool_info()
    return [f"BLAS: {p.get('internal_api')} {p.get('version')} "
            f"{p.get('architecture') or ''}, {p.get('num_threads')} threads "
            f"({_short_path(p.get('filepath', ''))})" for p in rows] or ["BLAS: none found"]


def _short_path(path):
    # The library's folder says whose it is: numpy.libs, scipy.libs, torch/lib.
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def _environment_lines():
    present = [f"  {v}={os.environ[v]}" for v in ENV_VARS if v in os.environ]
    if not present:
        return ["environment: none of the variables that matter is set"]
    return ["environment:"] + present


def report():
    """The lines of the ``info`` report."""
    head = (f"convbackends {cb.__version__} (Python {platform.python_version()}, NumPy "
            f"{np.__version__}, {platform.machine()}, {os.cpu_count()} CPUs)")
    default = f"default backend: {os.environ.get('CONVBACKENDS_BACKEND') or 'auto'}"
    return ([head] + _backend_lines() + _plugin_lines() + [default, _autotune_line()]
            + _numba_lines() + _blas_lines() + _environment_lines())
