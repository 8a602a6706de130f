"""The backend registry: the built-ins (imported on first use), plug-ins, and lookups.

Built-in backends are imported lazily, so ``import convbackends`` stays fast and never
touches CUDA; one whose module cannot be imported stands in as unavailable with the reason.
Plug-ins come from :func:`register_backend` or the entry-point group
``convbackends.backends``; an entry point that fails to import, lacks the protocol or takes a
registered name is left out and reported by :func:`plugin_report` (and ``convbackends
info``), never replacing a built-in and never breaking other calls.
"""

import importlib

from ..errors import RegistrationError, UnknownBackendError
from ..ops import OP_NAMES
from .policy import AutoPolicy

__all__ = ["backends", "available_backends", "get_backend", "register_backend",
           "backend_from_arg", "plugin_report", "registry_state", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "convbackends.backends"

# name -> "module:Class"; each one's limits are stated in its own module, next to its name.
_BUILTIN = {
    "naive": "convbackends.backends.naive:NaiveBackend",
    "im2col": "convbackends.backends.im2col:Im2colBackend",
    "fft": "convbackends.backends.fft:FFTBackend",
    "winograd": "convbackends.backends.winograd:WinogradBackend",
    "numba": "convbackends.backends.numba:NumbaBackend",
    "cuda": "convbackends.backends.cuda:CudaBackend",
}

_registry = {name: None for name in _BUILTIN}      # None: built-in, not imported yet
_entry_points_loaded = False
_plugin_problems = []


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
    module_name, class_name = _BUILTIN[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:    # one broken backend must not take the others down with it
        return _MissingBackend(name, f"module {module_name} cannot be imported "
                                     f"({type(e).__name__}: {e})")
    return getattr(module, class_name)()


def _protocol_problem(backend):
    """Why ``backend`` is not a backend object (the protocol of docs/api.md §5.9), or ``None``."""
    name = getattr(backend, "name", None)
    if not isinstance(name, str) or not name:
        return "needs a non-empty string `name`"
    for member in ("available", "supports"):
        if not callable(getattr(backend, member, None)):
            return f"backend {name!r} lacks the method {member}()"
    if not any(callable(getattr(backend, op, None)) for op in OP_NAMES):
        return f"backend {name!r} implements none of the ops {', '.join(OP_NAMES)}"
    return None


def _load_entry_points():
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, type):
                obj = obj()
        except Exception as e:    # a broken plug-in is reported, not raised on every call
            _plugin_problems.append(f"{ep.name}: fails to load ({type(e).__name__}: {e})")
            continue
        problem = _protocol_problem(obj)
        if problem is None and obj.name in _registry:
            problem = f"takes the registered name {obj.name!r}; left out"
        if problem is not None:
            _plugin_problems.append(f"{ep.name}: {problem}")
            continue
        _registry[obj.name] = obj


def plugin_report():
    """One line per entry-point plug-in that was left out, saying why."""
    _load_entry_points()
    return list(_plugin_problems)


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
        _registry[name] = (AutoPolicy(backends, get_backend) if name == "auto"
                           else _load_builtin(name))
    return _registry[name]


def registry_state():
    """A value that changes whenever a backend is registered, loaded or replaced: what a
    cache of plans keys on."""
    return (_entry_points_loaded,) + tuple(map(id, _registry.values()))


def available_backends():
    """The registered names whose ``available()`` is ``None`` on this machine."""
    return [n for n in backends() if get_backend(n).available() is None]


def register_backend(backend):
    """Register a plug-in backend object (see :class:`convbackends.backends.base.Backend`).

    Registered backends are reached by name like the built-in ones.

    Raises
    ------
    RegistrationError
        The object lacks the protocol (also a ``TypeError``), or its name is already
        registered (also a ``ValueError``).
    """
    _load_entry_points()
    problem = _protocol_problem(backend)
    if problem is not None:
        raise RegistrationError(f"register_backend: {problem}")
    if backend.name in _registry:
        raise RegistrationError(f"a backend named {backend.name!r} is already registered")
    _registry[backend.name] = backend
    return backend


def backend_from_arg(backend):
    """A name or backend object -> backend object (the one resolver every entry point uses)."""
    if isinstance(backend, str):
        return get_backend(backend)
    if callable(getattr(backend, "supports", None)) and hasattr(backend, "name"):
        return backend
    raise UnknownBackendError(f"Unknown backend {backend!r}; registered backends: "
                              f"{', '.join(backends())}")


_registry["auto"] = None
