"""Which backend a call without ``backend=`` uses: scopes, the global default, the environment.

Precedence: the call's ``backend=`` argument, then the innermost :func:`set_backend` block
(context-local, a :class:`contextvars.ContextVar`, as ``scipy.fft.set_backend``), then
:func:`set_global_backend`, then the environment variable ``CONVBACKENDS_BACKEND``, then
``"auto"``.
"""

import contextlib
import contextvars
import os

from ..errors import UnknownBackendError
from .registry import backend_from_arg, get_backend

__all__ = ["set_backend", "set_global_backend", "current_backend", "ENV_VAR"]

ENV_VAR = "CONVBACKENDS_BACKEND"

_global_backend = None
_scoped_backend = contextvars.ContextVar("convbackends_backend", default=None)


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
    obj = backend_from_arg(backend)
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
    _global_backend = None if backend is None else backend_from_arg(backend)


def current_backend():
    """The backend a call without ``backend=`` would use, before ``"auto"`` decides."""
    scoped = _scoped_backend.get()
    if scoped is not None:
        return scoped
    if _global_backend is not None:
        return _global_backend
    env = os.environ.get(ENV_VAR)
    if env:
        try:
            return get_backend(env.strip())
        except UnknownBackendError as e:
            raise UnknownBackendError(f"{ENV_VAR}={env}: {e}") from None
    return get_backend("auto")
