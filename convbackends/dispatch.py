"""The backend registry, the default-backend precedence, the ``"auto"`` policy and explain().

Precedence for one call: the call's ``backend=`` argument, then the innermost
:func:`set_backend` block (context-local, a :class:`contextvars.ContextVar`), then
:func:`set_global_backend`, then the environment variable ``CONVBACKENDS_BACKEND``, then
``"auto"``. Built-in backends are imported on first use, so ``import convbackends`` stays
fast and never touches CUDA.
"""

import contextlib
import contextvars
import importlib
import os
from dataclasses import dataclass, field

from . import policy
from .backends.base import OPS
from .errors import (BackendUnavailableError, UnknownBackendError, UnsupportedError)
from .spec import conv_spec

__all__ = ["backends", "available_backends", "get_backend", "register_backend",
           "set_backend", "set_global_backend", "resolve", "explain", "Explanation",
           "BackendReport"]

ENV_VAR = "CONVBACKENDS_BACKEND"
ENTRY_POINT_GROUP = "convbackends.backends"

# name -> "module:Class"; each one's limits are stated in its own module, next to its name.
_BUILTIN = {
    "naive": "convbackends.backends.naive:NaiveBackend",
    "im2col": "convbackends.backends.im2col:Im2colBackend",
    "fft": "convbackends.backends.fft:FFTBackend",
    "winograd": "convbackends.backends.winograd:WinogradBackend",
    "numba": "convbackends.backends.numba_cpu:NumbaBackend",
    "cuda": "convbackends.backends.cuda:CudaBackend",
}

_registry = {name: None for name in _BUILTIN}      # None: built-in, not imported yet
_registry["auto"] = None
_entry_points_loaded = False
_global_backend = None
_scoped_backend = contextvars.ContextVar("convbackends_backend", default=None)


class _MissingBackend:
    """Stands for a built-in backend whose module cannot be imported here."""

    accepts_device_arrays = False

    def __init__(self, name, reason):
        self.name, self._reason = name, reason

    def available(self):
        return self._reason

    def supports(self, op, spec):
        return self._reason


def _load_builtin(name):
    if name == "auto":
        return policy.AutoPolicy()
    module_name, class_name = _BUILTIN[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:    # one broken backend must not take the others down with it
        return _MissingBackend(name, f"module {module_name} cannot be imported "
                                     f"({type(e).__name__}: {e})")
    return getattr(module, class_name)()


def _load_entry_points():
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _registry:
            continue
        obj = ep.load()
        if isinstance(obj, type):
            obj = obj()
        _registry[getattr(obj, "name", ep.name) or ep.name] = obj


def backends():
    """All registered backend names, in registration order (``"auto"`` included)."""
    _load_entry_points()
    return list(_registry)


def get_backend(name):
    """The backend object registered under ``name``.

    Raises
    ------
    UnknownBackendError
        No backend has that name; the message lists the registered names.
    """
    _load_entry_points()
    if not isinstance(name, str) or name not in _registry:
        raise UnknownBackendError(f"Unknown backend {name!r}; registered backends: "
                                  f"{', '.join(_registry)}")
    if _registry[name] is None:
        _registry[name] = _load_builtin(name)
    return _registry[name]


def available_backends():
    """The registered names whose ``available()`` is ``None`` on this machine."""
    return [n for n in backends() if get_backend(n).available() is None]


def register_backend(backend):
    """Register a plug-in backend object (see :class:`convbackends.backends.base.Backend`).

    Registered backends are reached by name like the built-in ones; a name already taken is
    refused with ``ValueError``.
    """
    _load_entry_points()
    name = getattr(backend, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError("register_backend needs an object with a non-empty string `name`")
    for member in ("available", "supports"):
        if not callable(getattr(backend, member, None)):
            raise TypeError(f"backend {name!r} lacks the method {member}()")
    if not any(callable(getattr(backend, op, None)) for op in OPS):
        raise TypeError(f"backend {name!r} implements none of the ops {', '.join(OPS)}")
    if name in _registry:
        raise ValueError(f"a backend named {name!r} is already registered")
    _registry[name] = backend
    return backend


def _backend_from_arg(backend):
    """A name or backend object -> backend object (the one resolver every entry point uses)."""
    if isinstance(backend, str):
        return get_backend(backend)
    if callable(getattr(backend, "supports", None)) and hasattr(backend, "name"):
        return backend
    raise UnknownBackendError(f"Unknown backend {backend!r}; registered backends: "
                              f"{', '.join(backends())}")


@contextlib.contextmanager
def set_backend(backend):
    """Context manager making ``backend`` the default inside the block.

    The choice is context-local (threads and asyncio tasks do not see each other's blocks);
    on leaving the block the default is reset to the state before entering. An explicit
    ``backend=`` argument to a call still wins.

    Parameters
    ----------
    backend : str or backend object
        A registered name (``"im2col"``, ``"auto"``, ...) or a backend object.
    """
    obj = _backend_from_arg(backend)
    token = _scoped_backend.set(obj)
    try:
        yield obj
    finally:
        _scoped_backend.reset(token)


def set_global_backend(backend):
    """Make ``backend`` the process-wide default (below any :func:`set_backend` block).

    ``None`` removes the global choice, so the environment variable or ``"auto"`` applies.
    """
    global _global_backend
    _global_backend = None if backend is None else _backend_from_arg(backend)


def current_backend():
    """The backend a call without ``backend=`` would use, before ``"auto"`` decides."""
    scoped = _scoped_backend.get()
    if scoped is not None:
        return scoped
    if _global_backend is not None:
        return _global_backend
    env = os.environ.get(ENV_VAR)
    if env:
        return get_backend(env.strip())
    return get_backend("auto")


def _supporters(op, spec, device):
    names = []
    for name in backends():
        if name == "auto":
            continue
        b = get_backend(name)
        if device and not getattr(b, "accepts_device_arrays", False):
            continue
        if b.available() is None and b.supports(op, spec) is None:
            names.append(name)
    return names


def resolve(op, spec, backend=None, device=False, dry_run=False):
    """Pick the backend object for one call and say why: ``(backend, reason)``.

    A backend named explicitly is checked (available, supports) and never replaced by
    another one; ``"auto"`` picks among those that can run the call. A default backend
    (``set_backend``, ``set_global_backend``, the environment variable) that does not
    implement ``op`` at all leaves that op to ``"auto"``.
    """
    chosen = current_backend() if backend is None else _backend_from_arg(backend)
    if backend is None and not isinstance(chosen, policy.AutoPolicy) \
            and not callable(getattr(chosen, op, None)):
        # A default set for convolutions (set_backend("im2col")) does not stop a model's
        # pooling: an op the default lacks altogether goes to "auto". Declined geometries
        # and explicitly named backends still raise.
        chosen = get_backend("auto")
    if isinstance(chosen, policy.AutoPolicy):
        return chosen.choose(op, spec, device=device, dry_run=dry_run)
    name = chosen.name
    why = chosen.available()
    if why is not None:
        raise BackendUnavailableError(f"backend {name!r} cannot run on this machine: {why}")
    why = chosen.supports(op, spec)
    if why is None and device and not getattr(chosen, "accepts_device_arrays", False):
        why = "the input is a device array (__cuda_array_interface__) and this backend " \
              "computes on NumPy arrays; copy it to the host first"
    if why is not None:
        others = _supporters(op, spec, device)
        raise UnsupportedError(f"backend {name!r} cannot run this {op}: {why}. Backends that "
                               f"can: {', '.join(others) or 'none'}")
    how = "named explicitly" if backend is not None else "set as the default"
    return chosen, f"backend {name!r} {how}"


@dataclass
class BackendReport:
    """One row of :class:`Explanation`: can this backend run the call, and at what memory."""

    name: str
    available: bool
    supported: bool
    reason: str = None
    workspace_bytes: int = None
    plan: dict = field(default_factory=dict)


@dataclass
class Explanation:
    """What a call would do: see :func:`explain`."""

    choice: str
    reason: str
    macs: int
    output_shape: tuple
    backends: dict
    spec: object = None

    def __str__(self):
        s = self.spec
        lines = [f"{s.op} {s.ndim}-D: input {list(s.input_shape)}, weight "
                 f"{list(s.weight_shape)}, {s.dtype} -> output {list(self.output_shape)}",
                 f"stride {s.stride}, padding {s.padding}, dilation {s.dilation}, "
                 f"groups {s.groups}; {self.macs:,} multiply-accumulates",
                 f"choice: {self.choice} ({self.reason})", ""]
        rows = [("backend", "runs it", "workspace", "notes")]
        for r in self.backends.values():
            runs = "yes" if r.supported else "no"
            ws = "-" if r.workspace_bytes is None else _bytes(r.workspace_bytes)
            notes = r.reason if r.reason else ", ".join(f"{k}={v}" for k, v in r.plan.items())
            rows.append((r.name, runs, ws, notes or ""))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row[:3], widths)) + "  " + row[3])
        return "\n".join(lines)


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def explain(x_shape, w_shape, *, op="conv", dtype="float32", stride=1, padding=0,
            dilation=1, groups=1, output_padding=0, padding_mode="zeros", bias=True,
            backend=None):
    """Report what a convolution call with these shapes would do, without computing it.

    Parameters
    ----------
    x_shape, w_shape : tuple of int
        Input ``(N, C_in, *spatial)`` (or unbatched) and weight shapes, as for ``conv``.
    op : {"conv", "conv_transpose"}
    dtype, stride, padding, dilation, groups, output_padding, padding_mode
        As for :func:`convbackends.conv` / ``conv_transpose``.
    backend : str, optional
        Explain this backend's choice instead of the current default.

    Returns
    -------
    Explanation
        ``choice`` (the backend that would run), ``reason`` (the rule or cache entry behind
        it), ``macs``, ``output_shape`` and ``backends`` (per registered backend: whether it
        supports the call or why not, its workspace bytes and plan).
    """
    from .functional import padded_spec
    if op not in ("conv", "conv_transpose"):
        raise ValueError(f"explain: op must be 'conv' or 'conv_transpose', got {op!r}")
    w_shape = tuple(w_shape)
    bias_shape = ((w_shape[1] * groups if op == "conv_transpose" else w_shape[0]),) \
        if bias else None
    spec, batched = conv_spec("explain", x_shape, w_shape, bias_shape, op=op, stride=stride,
                              padding=padding, dilation=dilation, groups=groups,
                              output_padding=output_padding, dtype=dtype)
    spec = padded_spec(spec, padding_mode)
    reports = {}
    for name in backends():
        if name == "auto":
            continue
        b = get_backend(name)
        why_not = b.available()
        available = why_not is None
        if available:
            why_not = b.supports(op, spec)
        supported = why_not is None
        ws = plan = None
        if supported:
            ws = getattr(b, "workspace_bytes", lambda o, s: None)(op, spec)
            plan = getattr(b, "plan", lambda o, s: {})(op, spec)
        reports[name] = BackendReport(name, available, supported, why_not, ws, plan or {})
    try:
        chosen, reason = resolve(op, spec, backend, dry_run=True)
        choice = chosen.name
    except (UnsupportedError, BackendUnavailableError) as e:
        choice, reason = None, str(e)
    out_shape = spec.output_shape if batched else spec.output_shape[1:]
    return Explanation(choice=choice, reason=reason, macs=spec.macs, output_shape=out_shape,
                       backends=reports, spec=spec)
