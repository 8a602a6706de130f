"""Dispatch: the registry, the default-backend precedence, plans, the ``"auto"`` policy and
``explain()``.

- :mod:`.registry`: built-in backends (imported on first use) and plug-ins;
- :mod:`.precedence`: ``set_backend``, ``set_global_backend``, ``CONVBACKENDS_BACKEND``;
- :mod:`.plan`: ``(op, spec)`` -> a backend's kernel or a lowering it can run;
- :mod:`.policy` and :mod:`.autotune`: how ``"auto"`` chooses;
- :mod:`.explain`: the plan, reported from shapes alone.
"""

from .explain import BackendReport, Explanation, explain
from .plan import Plan, plan_call, resolve, supporters
from .precedence import ENV_VAR, current_backend, set_backend, set_global_backend
from .registry import (ENTRY_POINT_GROUP, available_backends, backend_from_arg, backends,
                       get_backend, plugin_report, register_backend, registry_state)

__all__ = ["backends", "available_backends", "get_backend", "register_backend",
           "plugin_report", "set_backend", "set_global_backend", "current_backend", "resolve",
           "plan_call", "Plan", "supporters", "explain", "Explanation", "BackendReport",
           "backend_from_arg", "registry_state", "ENV_VAR", "ENTRY_POINT_GROUP"]
