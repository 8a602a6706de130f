"""The opt-in autotuner behind ``"auto"``: time every backend once per geometry, keep the winner.

Off by default. ``set_autotune(True)`` or the environment variable ``CONVBACKENDS_AUTOTUNE=1``
turns it on; then the first call with a new key — op, the whole normalised spec (shapes,
stride, padding, dilation, groups, dtype, bias) and the set of backends that can run it —
times each of those backends on random arrays of the call's shapes, and every later call
with that key runs the winner without timing anything again. Winners are kept in memory and
in a JSON file per machine and library version, in ``CONVBACKENDS_CACHE_DIR`` (default
``$XDG_CACHE_HOME/convbackends`` or ``~/.cache/convbackends``), so a new process never
re-times a known key either. A new backend becoming available changes the key, so it gets
its chance.

Tuning costs one warm-up call (Numba compiles there) and ``repeat`` timed calls per backend;
``naive`` is timed only on tiny calls or when it is the only choice, since it loses by orders
of magnitude everywhere else.
"""

import dataclasses
import json
import math
import os
import platform
import re
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from ..tools.measure import AUTOTUNE_NAIVE_MAX_MACS, time_call

__all__ = ["set_autotune", "autotune_enabled", "cache_path", "Autotuner"]

ENV_AUTOTUNE = "CONVBACKENDS_AUTOTUNE"
ENV_CACHE_DIR = "CONVBACKENDS_CACHE_DIR"
_TRUE = ("1", "true", "yes", "on")

_enabled = None     # None: follow the environment variable


def set_autotune(enabled=True):
    """Turn the autotuner of ``"auto"`` on or off for this process.

    Parameters
    ----------
    enabled : bool or None. Default: True
        ``None`` returns control to the environment variable ``CONVBACKENDS_AUTOTUNE``.

    Returns
    -------
    bool
        Whether it was on before, so ``set_autotune(previous)`` restores it.
    """
    global _enabled
    previous = autotune_enabled()
    _enabled = None if enabled is None else bool(enabled)
    return previous


def autotune_enabled():
    """Whether ``"auto"`` times backends: :func:`set_autotune`, else ``CONVBACKENDS_AUTOTUNE``."""
    if _enabled is not None:
        return _enabled
    return os.environ.get(ENV_AUTOTUNE, "").strip().lower() in _TRUE


def cache_dir():
    """``CONVBACKENDS_CACHE_DIR``, else ``$XDG_CACHE_HOME/convbackends``, else ``~/.cache/...``."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "convbackends"


def machine_id():
    """Host name, architecture and CPU count: what makes one machine's timings its own."""
    raw = f"{platform.node() or 'host'}-{platform.machine() or 'cpu'}-{os.cpu_count()}cpu"
    return re.sub(r"[^A-Za-z0-9._-]", "_", raw)


def cache_path():
    """The JSON file holding this machine's and this library version's winners."""
    from .. import __version__
    return cache_dir() / f"autotune-{machine_id()}-v{__version__}.json"


# The operands of the gradient ops a backend may have a kernel for (the op table's).
GRADIENT_OPERANDS = {"conv_input_grad": ("weight", "grad_output"),
                     "conv_weight_grad": ("x", "grad_output")}


def spec_key(op, spec, candidates):
    """The cache key: op, every field of the spec, and the backends in the running."""
    fields = ",".join(f"{k}={v}" for k, v in sorted(dataclasses.asdict(spec).items()))
    return f"{op}|{fields}|{'+'.join(sorted(candidates))}"


def random_args(op, spec, seed=0):
    """Arrays with the call's shapes and dtype, for timing a backend's op."""
    rng = np.random.default_rng(seed)
    if op in GRADIENT_OPERANDS:         # a gradient's spec is its forward call's
        shapes = {"x": spec.input_shape, "weight": spec.weight_shape,
                  "grad_output": spec.output_shape}
        return tuple(rng.standard_normal(shapes[name]).astype(spec.dtype)
                     for name in GRADIENT_OPERANDS[op])
    x = rng.standard_normal(spec.input_shape).astype(spec.dtype)
    if op == "max_unpool":
        plane = math.prod(spec.output_spatial)
        return x, rng.integers(0, plane, size=spec.input_shape, dtype=np.int64)
    if op not in ("conv", "conv_transpose"):
        return (x,)
    w = rng.standard_normal(spec.weight_shape).astype(spec.dtype)
    b = rng.standard_normal(spec.out_channels).astype(spec.dtype) if spec.has_bias else None
    return x, w, b


def _reason(origin, entry):
    times = ", ".join(f"{n} {_ms(t)}" for n, t in sorted(entry["seconds"].items(),
                                                        key=lambda kv: kv[1]))
    return f"{origin}: {entry['backend']} fastest ({times})"


def _ms(seconds):
    return f"{seconds * 1e3:.3g} ms"


class Autotuner:
    """Times candidate backends once per key; winners in memory and in a JSON file.

    Parameters
    ----------
    path : path-like, optional
        The JSON file; default :func:`cache_path` (looked up when first needed).
    repeat : int. Default: 3
        Timed calls per backend after the warm-up; the minimum counts.
    """

    def __init__(self, path=None, repeat=3):
        self._path = None if path is None else Path(path)
        self.repeat = repeat
        self._entries = None
        self._lock = threading.Lock()

    @property
    def path(self):
        return cache_path() if self._path is None else self._path

    def _load(self):
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            warnings.warn(f"convbackends autotune: ignoring unreadable cache {self.path}: {e}",
                          RuntimeWarning, stacklevel=4)
            return {}
        return data.get("entries", {}) if isinstance(data, dict) else {}

    def _save(self):
        # Merge with what other processes wrote meanwhile, then replace the file atomically.
        entries = {**self._read(), **self._entries}
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump({"machine": machine_id(), "entries": entries}, f, indent=1,
                          sort_keys=True)
            os.replace(tmp, path)
        except OSError as e:
            warnings.warn(f"convbackends autotune: cannot write {path}: {e}; winners are "
                          f"kept in memory only", RuntimeWarning, stacklevel=4)

    def choose(self, op, spec, candidates):
        """The fastest of ``candidates`` (name -> backend): ``(name, reason)``.

        A known key is answered from memory or the file; an unknown one is timed now, once.
        """
        key = spec_key(op, spec, candidates)
        with self._lock:
            entry = self._known(key, candidates)
            origin = f"autotune cache entry in {self.path}"
            if entry is None:
                entry = self._tune(op, spec, candidates)
                self._entries[key] = entry
                self._save()
                origin = f"autotune: timed now, saved to {self.path}"
        return entry["backend"], _reason(origin, entry)

    def lookup(self, op, spec, candidates):
        """``(name, reason)`` for a key already timed, else ``None``; never times anything."""
        with self._lock:
            entry = self._known(spec_key(op, spec, candidates), candidates)
        if entry is None:
            return None
        return entry["backend"], _reason(f"autotune cache entry in {self.path}", entry)

    def _known(self, key, candidates):
        entry = self._load().get(key)
        return entry if entry is not None and entry.get("backend") in candidates else None

    def _tune(self, op, spec, candidates):
        timed = {n: b for n, b in candidates.items() if n != "naive" or len(candidates) == 1
                 or spec.macs <= AUTOTUNE_NAIVE_MAX_MACS}
        args = random_args(op, spec)
        seconds = {}
        for name, backend in timed.items():
            method = getattr(backend, op)
            seconds[name] = time_call(lambda: method(*args, spec), repeat=self.repeat,
                                      budget=1.0).min
        winner = min(seconds, key=seconds.get)
        return {"backend": winner, "seconds": seconds,
                "tuned": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
