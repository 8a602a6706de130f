"""From ``(op, spec)`` to a plan: a backend's own kernel, or a lowering into ops it can run.

A backend named in the call (or set as the default) runs the op with its own kernel when it
declares support, else through the first lowering of the op table whose target it can run;
it is never replaced by another backend. ``"auto"`` picks among the backends with a kernel
for the op (:mod:`.policy`), and only when none has one, among lowerings; a channels-last
call goes to the backend it picks for the same call channels first. A default backend
without a kernel for the op, and without a lowering onto its kernels that fits the call,
leaves that op to ``"auto"`` (``set_backend("im2col")`` still lets a model max-pool).
"""

from dataclasses import dataclass

from ..errors import BackendUnavailableError, UnsupportedError
from ..ops import get_op, nonfinite
from ..spec.layout import CHANNELS_FIRST, layout_refusal
from .policy import AutoPolicy
from .precedence import current_backend
from .registry import backend_from_arg, backends, get_backend

__all__ = ["Plan", "plan_call", "resolve", "backend_plan", "supporters"]

DEVICE_REFUSAL = ("the input is a device array (__cuda_array_interface__) and this backend "
                  "computes on NumPy arrays; copy it to the host first")


@dataclass
class Plan:
    """How one call runs: ``op`` on ``spec`` by ``backend``'s kernel, or through ``lowering``.

    With a lowering, ``inner`` is the plan of the target op (on the same backend, or the
    one ``"auto"`` chose for it) and ``backend`` is the backend whose kernel ends the chain.
    """

    op: str
    spec: object
    backend: object
    reason: str = ""
    lowering: object = None
    inner: "Plan" = None

    def run(self, operands, out=None, guard=True, epilogue=None):
        """The op's results for ``operands``; ``out`` reaches kernels that write into it.

        With ``guard`` (the default), a node that :attr:`guarded` says needs it runs through
        :func:`convbackends.ops.nonfinite.run_guarded`, which runs the node and everything
        below it with ``guard=False``. An ``epilogue`` (:mod:`convbackends.ops.epilogue`)
        goes into a kernel whose backend ``fuses_epilogue``; otherwise it is applied here, in
        place, to the finished result.
        """
        if guard and self.guarded:
            return nonfinite.run_guarded(self, operands, out, epilogue)
        if self.lowering is not None:
            y = self.lowering.run(lambda *ops: self.inner.run(ops, guard=guard), operands,
                                  self.spec, self.inner.spec)
            return y if epilogue is None else epilogue.apply(y)
        method = getattr(self.backend, self.op)
        kwargs = {}
        if out is not None and getattr(self.backend, "writes_out", False):
            kwargs["out"] = out
        if epilogue is not None and getattr(self.backend, "fuses_epilogue", False):
            kwargs["epilogue"], epilogue = epilogue, None
        y = method(*operands, self.spec, **kwargs)
        return y if epilogue is None else epilogue.apply(y)

    @property
    def guarded(self):
        """Whether this node runs through the non-finite guard.

        A kernel is guarded when its backend says ``exact_nonfinite = False`` or gives a
        ``magnitude_growth`` for the call; a lowering when it says ``exact_nonfinite =
        False`` (it then covers the whole chain below it). An exact lowering passes the
        question to its target. Only ``conv`` and ``conv_transpose`` have the guard's rules.
        """
        if self.op not in nonfinite.GUARDED_OPS:
            return False
        if self.lowering is not None:
            return not getattr(self.lowering, "exact_nonfinite", True)
        return not getattr(self.backend, "exact_nonfinite", True) or self.growth() is not None

    def growth(self):
        """The kernel's ``magnitude_growth`` for the call that ends this chain, or ``None``."""
        if self.lowering is not None:
            return self.inner.growth()
        growth = getattr(self.backend, "magnitude_growth", None)
        return None if growth is None else growth(self.op, self.spec)

    @property
    def writes_out(self):
        """Whether :meth:`run` writes its single result into ``out``."""
        return (self.lowering is None and getattr(self.backend, "writes_out", False)
                and len(get_op(self.op).results) == 1)

    def steps(self, covered=False):
        """The chain as lines: each lowering, then the kernel that runs; the node that runs
        the non-finite guard (none below it does: ``covered``) says so."""
        here = self.guarded and not covered
        guard = (", guarded: non-finite operands exact, float64 if float32 could overflow"
                 if here else "")
        if self.lowering is None:
            return [f"{self.op}: {self.backend.name}'s own kernel{guard}"]
        return ([f"{self.op} -> {self.lowering.target}: lowering {self.lowering.name} "
                 f"({self.lowering.summary}){guard}"] + self.inner.steps(covered or here))


def backend_plan(backend, op, spec, device=False):
    """``(plan, None)`` if ``backend`` can run ``op`` on ``spec`` itself, else ``(None, why)``."""
    why = layout_refusal(backend, op, spec) or backend.supports(op, spec)
    if why is None and not callable(getattr(backend, op, None)):
        why = f"{backend.name} does not implement {op}"
    if why is None and device and not getattr(backend, "accepts_device_arrays", False):
        why = DEVICE_REFUSAL
    if why is None:
        return Plan(op, spec, backend), None
    if device:      # lowerings compute on the host
        return None, why
    reasons = [why]
    for low in get_op(op).lowerings:
        target = low.rewrite(spec)
        if isinstance(target, str):
            if low.reports_refusal:
                reasons.append(f"{low.name} does not apply: {target}")
            continue
        inner, inner_why = backend_plan(backend, low.target, target)
        if inner is not None:
            return Plan(op, spec, backend, lowering=low, inner=inner), None
        reasons.append(f"through {low.name}: {inner_why}")
    return None, "; ".join(reasons)


def _default_runs(backend, op, spec, device):
    """Whether a default backend keeps ``op``: it has a kernel for the op (a declined
    geometry then raises), or a lowering onto its kernels fits this call. Otherwise the op
    goes to ``"auto"``, so a model set to a convolution backend still pools."""
    if callable(getattr(backend, op, None)):
        return True
    return backend.available() is None and backend_plan(backend, op, spec, device)[0] is not None


def supporters(op, spec, device=False):
    """Names of the available registered backends that can run the call (kernel or lowering)."""
    names = []
    for name in backends():
        if name == "auto":
            continue
        b = get_backend(name)
        if b.available() is None and backend_plan(b, op, spec, device)[0] is not None:
            names.append(name)
    return names


def _auto_layout_plan(auto, op, spec, dry_run):
    """A channels-last call on the backend ``"auto"`` picks for the same call channels
    first: the layout does not change which algorithm wins, only how that backend is
    reached (its own channels-last kernel, or the layout lowering)."""
    first = _auto_plan(auto, op, spec.replace(data_format=CHANNELS_FIRST), False, dry_run)
    plan, _ = backend_plan(first.backend, op, spec)
    if plan is None:    # the channels-first plan went through auto's own lowerings
        layout = next(low for low in get_op(op).lowerings if low.target == op)
        plan = Plan(op, spec, first.backend, lowering=layout, inner=first)
    how = ("its own kernel" if plan.lowering is None
           else f"lowering {plan.lowering.name}")
    plan.reason = f"{first.reason}; {spec.data_format}: {how}"
    return plan


def _auto_plan(auto, op, spec, device, dry_run):
    if spec.data_format != CHANNELS_FIRST and not device:
        return _auto_layout_plan(auto, op, spec, dry_run)
    try:
        chosen, reason = auto.choose(op, spec, device=device, dry_run=dry_run)
        if not callable(getattr(chosen, op, None)):     # a gradient rule chose a lowering
            plan, _ = backend_plan(chosen, op, spec, device)
            plan.reason = reason
            return plan
        return Plan(op, spec, chosen, reason)
    except UnsupportedError:
        if device:
            raise
        for low in get_op(op).lowerings:
            target = low.rewrite(spec)
            if isinstance(target, str):
                continue
            try:
                inner = _auto_plan(auto, low.target, target, device, dry_run)
            except UnsupportedError:
                continue
            return Plan(op, spec, inner.backend, f"no backend has a {op} kernel; lowering "
                        f"{low.name}, then {inner.reason}", low, inner)
        raise


def plan_call(op, spec, backend=None, device=False, dry_run=False):
    """The :class:`Plan` for one call.

    Raises
    ------
    BackendUnavailableError
        The backend named (or set as the default) cannot run on this machine.
    UnsupportedError
        It cannot run this call, neither with a kernel nor through a lowering; the message
        says why and names the backends that can.
    """
    chosen = current_backend() if backend is None else backend_from_arg(backend)
    if backend is None and not isinstance(chosen, AutoPolicy) \
            and not _default_runs(chosen, op, spec, device):
        chosen = get_backend("auto")
    if isinstance(chosen, AutoPolicy):
        return _auto_plan(chosen, op, spec, device, dry_run)
    name = chosen.name
    why = chosen.available()
    if why is not None:
        raise BackendUnavailableError(f"backend {name!r} cannot run on this machine: {why}")
    plan, why = backend_plan(chosen, op, spec, device)
    if plan is None:
        others = supporters(op, spec, device)
        raise UnsupportedError(f"backend {name!r} cannot run this {op}: {why}. Backends that "
                               f"can: {', '.join(others) or 'none'}")
    how = "named explicitly" if backend is not None else "set as the default"
    plan.reason = f"backend {name!r} {how}"
    return plan


def resolve(op, spec, backend=None, device=False, dry_run=False):
    """``(backend, reason)``: the backend whose kernel ends the plan, and why it was chosen."""
    plan = plan_call(op, spec, backend, device, dry_run)
    return plan.backend, plan.reason
