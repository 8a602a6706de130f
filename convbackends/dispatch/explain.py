"""``explain()``: what a call would do, from shapes alone, without computing anything."""

from dataclasses import dataclass, field

from ..errors import BackendUnavailableError, ShapeError, UnsupportedError
from ..ops import get_op
from ..spec import ConvSpec, padded_spec
from .plan import backend_plan, plan_call
from .registry import backends, get_backend

__all__ = ["explain", "Explanation", "BackendReport"]


@dataclass
class BackendReport:
    """One row of :class:`Explanation`: can this backend run the call, how, at what memory.

    ``route`` is ``"kernel"`` (its own) or the lowerings it goes through, ``"a -> b"``.
    """

    name: str
    available: bool
    supported: bool
    reason: str = None
    workspace_bytes: int = None
    plan: dict = field(default_factory=dict)
    route: str = None


@dataclass
class Explanation:
    """What a call would do: see :func:`explain`."""

    choice: str
    reason: str
    macs: int
    output_shape: tuple
    backends: dict
    spec: object = None
    op: str = "conv"
    steps: list = field(default_factory=list)

    def __str__(self):
        s = self.spec
        if isinstance(s, ConvSpec):
            head = [f"{self.op} {s.ndim}-D: input {list(s.input_shape)}, weight "
                    f"{list(s.weight_shape)}, {s.dtype} -> output {list(self.output_shape)}",
                    f"stride {s.stride}, padding {s.padding}, dilation {s.dilation}, "
                    f"groups {s.groups}; {self.macs:,} multiply-accumulates"]
        else:
            window = "adaptive windows" if s.adaptive else (
                f"kernel {s.kernel}, stride {s.stride}, padding {s.padding}, "
                f"dilation {s.dilation}")
            head = [f"{self.op} {s.ndim}-D: input {list(s.input_shape)}, {s.dtype} -> "
                    f"output {list(self.output_shape)}",
                    f"{window}; {self.macs:,} window taps"]
        lines = head + [f"choice: {self.choice} ({self.reason})"]
        lines += [f"  plan: {step}" for step in self.steps] + [""]
        rows = [("backend", "runs it", "workspace", "notes")]
        for r in self.backends.values():
            runs = "yes" if r.supported else "no"
            if r.supported and r.route != "kernel":
                runs = "lowered"
            ws = "-" if r.workspace_bytes is None else _bytes(r.workspace_bytes)
            notes = r.reason if r.reason else ", ".join(f"{k}={v}" for k, v in r.plan.items())
            if r.supported and r.route != "kernel":
                notes = f"via {r.route}" + (f"; {notes}" if notes else "")
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


def _route(plan):
    ops = [plan.op]
    while plan.lowering is not None:
        plan = plan.inner
        ops.append(plan.op)
    return "kernel" if len(ops) == 1 else " -> ".join(ops)


def _report(name, op, spec):
    b = get_backend(name)
    why_not = b.available()
    if why_not is not None:
        return BackendReport(name, False, False, why_not)
    plan, why_not = backend_plan(b, op, spec)
    if plan is None:
        return BackendReport(name, True, False, why_not)
    last = plan
    while last.lowering is not None:
        last = last.inner
    ws = getattr(b, "workspace_bytes", lambda o, s: None)(last.op, last.spec)
    details = getattr(b, "plan", lambda o, s: {})(last.op, last.spec)
    return BackendReport(name, True, True, None, ws, details or {}, _route(plan))


_GRADIENTS = {"conv_input_grad": "conv", "conv_weight_grad": "conv",
              "conv_transpose_input_grad": "conv_transpose",
              "conv_transpose_weight_grad": "conv_transpose",
              "max_pool_input_grad": "max_pool", "avg_pool_input_grad": "avg_pool"}


def _shapes(op, x_shape, w_shape, bias, params):
    """The operands' shapes of ``op`` (and, for a gradient, the sizes it takes as params)."""
    if op in _GRADIENTS:
        return _gradient_shapes(op, x_shape, w_shape, params)
    if op in ("conv", "conv_transpose"):
        if w_shape is None:
            raise ShapeError(f"explain: op {op!r} needs the weight's shape")
        w_shape = tuple(w_shape)
        groups = params.get("groups", 1)
        out_channels = w_shape[1] * groups if op == "conv_transpose" else w_shape[0]
        return (tuple(x_shape), w_shape, (out_channels,) if bias else None), params
    if op == "max_unpool":
        return (tuple(x_shape), tuple(x_shape)), params
    return (tuple(x_shape),), params


def _gradient_shapes(op, x_shape, w_shape, params):
    """A gradient is explained from the forward call's shapes: its output gradient has the
    forward output's shape."""
    forward = _GRADIENTS[op]
    fwd_params = {k: v for k, v in params.items() if k not in ("input_size", "weight_size")}
    shapes, fwd_params = _shapes(forward, x_shape, w_shape, False, fwd_params)
    nd = len(tuple(x_shape)) - 2
    spec, _ = get_op(forward).build_spec("explain", nd, shapes, "float32", **fwd_params)
    grad_output = spec.output_shape
    if op.endswith("_weight_grad"):
        return (tuple(x_shape), grad_output), dict(fwd_params, weight_size=tuple(w_shape))
    if op == "max_pool_input_grad":
        return (tuple(x_shape), grad_output), fwd_params
    if op == "avg_pool_input_grad":
        return (grad_output,), dict(fwd_params, input_size=tuple(x_shape))
    return (tuple(w_shape), grad_output), dict(fwd_params, input_size=tuple(x_shape))


def explain(x_shape, w_shape=None, *, op="conv", dtype="float32", padding_mode="zeros",
            bias=True, backend=None, **params):
    """Report what a call with these shapes would do, without computing it.

    Parameters
    ----------
    x_shape : tuple of int
        The input's shape ``(N, C, *spatial)`` (or unbatched), as for the op's function.
    w_shape : tuple of int, optional
        The weight's shape, for ``op="conv"`` and ``"conv_transpose"``.
    op : str. Default: "conv"
        Any op of the table: ``"conv"``, ``"conv_transpose"``, ``"max_pool"``,
        ``"max_pool_with_indices"``, ``"avg_pool"``, ``"adaptive_avg_pool"``,
        ``"adaptive_max_pool"``, ``"max_unpool"``.
    dtype, padding_mode, bias
        As for the call (``bias`` says whether one is given).
    backend : str, optional
        Explain this backend's plan instead of the current default's.
    **params
        The op's parameters as its function takes them: ``stride``, ``padding``,
        ``dilation``, ``groups``, ``output_padding`` for convolutions; ``kernel_size``,
        ``stride``, ``padding``, ``dilation``, ``ceil_mode``, ``count_include_pad``,
        ``divisor_override`` for pooling; ``output_size`` for adaptive pooling and unpooling;
        ``data_format`` (``x_shape`` in that layout) for every op that takes it.

    Returns
    -------
    Explanation
        ``choice`` (the backend that would run), ``reason`` (the rule or cache entry behind
        it), ``steps`` (the plan: lowerings, then the kernel), ``macs``, ``output_shape`` and
        ``backends`` (per registered backend: whether it runs the call, by its own kernel or
        a lowering, or why not; its workspace bytes and plan).
    """
    entry = get_op(op)
    shapes, params = _shapes(op, x_shape, w_shape, bias, params)
    spec, batched = entry.build_spec("explain", len(tuple(x_shape)) - 2 if op not in (
        "conv", "conv_transpose") else None, shapes, dtype, **params)
    if isinstance(spec, ConvSpec):
        spec = padded_spec(spec, padding_mode)
    reports = {name: _report(name, op, spec) for name in backends() if name != "auto"}
    try:
        plan = plan_call(op, spec, backend, dry_run=True)
        choice, reason, steps = plan.backend.name, plan.reason, plan.steps()
    except (UnsupportedError, BackendUnavailableError) as e:
        choice, reason, steps = None, str(e), []
    out_shape = entry.result_shape(spec)
    if not batched and entry.results[0] != "grad_weight":
        out_shape = out_shape[1:]
    return Explanation(choice=choice, reason=reason, macs=spec.macs, output_shape=out_shape,
                       backends=reports, spec=spec, op=op, steps=steps)
