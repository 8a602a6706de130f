"""A model's layer-by-layer table (shapes, parameters, MACs, activation bytes, and whether
its backend runs each layer) for one input shape, from each layer's ``output_shape``,
``macs`` and ``explain``: nothing is computed."""

import math
import re
from dataclasses import dataclass

import numpy as np

from ..errors import ConvError

__all__ = ["summary", "Summary", "SummaryRow"]


def _format_bytes(n):
    """``n`` bytes in B, KiB, MiB or GiB (binary units, one decimal above bytes)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


@dataclass(frozen=True)
class SummaryRow:
    """One layer of a :class:`Summary`.

    Attributes
    ----------
    name : str
        The layer's state-dict prefix (``"features.0"``, ``"layer1.0.conv1"``).
    kind : str
        Its class name.
    output_shape : tuple of int
    params : int
        Parameters of this layer (buffers such as BatchNorm's running statistics excluded).
    macs : int
        Multiply-accumulates of convolutions and linear layers; 0 for the others.
    activation_bytes : int
        Bytes of the layer's output array (its values, for a layer that also returns
        indices).
    runs : str or None
        Whether the layer's backend runs it, as the ``runs`` column shows it: ``"yes"``
        (its own kernel), ``"lowered: avg_pool -> conv"`` (through lowerings of the op
        table), ``"no: <reason>"``, or ``"auto: numba"`` where the layer leaves the choice
        to ``"auto"`` (no backend of its own, or a pooling layer whose backend has no
        kernel for the op) and this is what it chooses. ``None`` for layers that call no
        backend (NumPy expressions).
    runs_on : str or None
        The backend whose kernel would compute the layer; ``None`` if none would.
    backend_ok : bool or None
        ``False`` where a forward would raise because the backend cannot run the layer,
        ``True`` where it runs, ``None`` for layers that call no backend.
    """

    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int
    activation_bytes: int
    runs: str = None
    runs_on: str = None
    backend_ok: bool = None


@dataclass(frozen=True)
class Summary:
    """A per-layer table of a model for one input shape; ``str()`` renders it.

    ``total_activation_bytes`` adds every layer's output: what one forward writes, not its
    peak memory (the layers do not work in place).
    """

    input_shape: tuple
    rows: tuple

    @property
    def total_params(self):
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self):
        return sum(r.macs for r in self.rows)

    @property
    def total_activation_bytes(self):
        return sum(r.activation_bytes for r in self.rows)

    @property
    def cannot_run(self):
        """The names of the layers whose backend cannot run them (``backend_ok`` False)."""
        return tuple(r.name for r in self.rows if r.backend_ok is False)

    def __str__(self):
        table = [("layer", "type", "output shape", "params", "MACs", "activation", "runs")]
        table += [(r.name, r.kind, str(list(r.output_shape)), f"{r.params:,}", f"{r.macs:,}",
                   _format_bytes(r.activation_bytes), _cell(r.runs)) for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(7)]
        lines = ["  ".join(c.ljust(w) if i < 3 or i == 6 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(row, widths))).rstrip()
                 for row in table]
        rule = "-" * max(len(line) for line in lines)
        lines.insert(1, rule)
        lines += [rule,
                  f"input {list(self.input_shape)}: {self.total_params:,} parameters, "
                  f"{self.total_macs:,} MACs, {_format_bytes(self.total_activation_bytes)} of "
                  f"layer outputs"]
        if self.cannot_run:
            lines.append(f"cannot run on their backend ({len(self.cannot_run)}): "
                         f"{', '.join(self.cannot_run)}")
        return "\n".join(lines)


_CELL_WIDTH = 64


def _cell(runs):
    """The ``runs`` column's text: ``-`` for layers without a backend call, long reasons
    cut (the row keeps them whole)."""
    if runs is None:
        return "-"
    return runs if len(runs) <= _CELL_WIDTH else runs[:_CELL_WIDTH - 3] + "..."


def _backend_name(backend):
    """The name of a layer's ``backend`` setting (a name, a backend object or None)."""
    return backend if backend is None or isinstance(backend, str) else getattr(
        backend, "name", None)


def _runs(layer, shape_in, dtype):
    """``(runs, runs_on, backend_ok)`` of a :class:`SummaryRow`, from ``layer.explain``."""
    try:
        explanation = layer.explain(shape_in, dtype)
    except ConvError as e:      # an unknown backend name, a dtype no backend computes in
        return f"no: {e}", None, False
    if explanation is None:
        return None, None, None
    asked = _backend_name(layer.backend)
    choice = explanation.choice
    if choice is None:
        # The backend refused (or is missing here): its own reason, without the list of
        # the backends that can.
        named = re.match(r"backend '([^']+)'", explanation.reason or "")
        report = explanation.backends.get(asked or (named and named.group(1)))
        return f"no: {report.reason if report and report.reason else explanation.reason}", \
            None, False
    report = explanation.backends.get(choice)
    if report is not None and report.supported:
        lowered = report.route not in (None, "kernel")
        how = f"lowered: {report.route}" if lowered else "yes"
    else:   # a backend object that is not registered: only its plan's length is known
        lowered = len(explanation.steps) > 1
        how = "lowered" if lowered else "yes"
    own = (choice == asked if asked not in (None, "auto")
           else asked is None and explanation.reason == f"backend {choice!r} set as the default")
    if own:
        return how, choice, True
    return f"auto: {choice}" + (f" ({how})" if lowered else ""), choice, True


def summary(model, input_shape):
    """Tabulate ``model`` layer by layer for input of ``input_shape``, without running it.

    Shapes come from each layer's ``output_shape`` (the same validation as a forward, so
    an input the model cannot take raises :class:`~convbackends.ShapeError`); nothing is
    computed, so it is immediate even for VGG-16.

    Parameters
    ----------
    model : convbackends.nn.Module
    input_shape : tuple of int
        ``(N, C, H, W)`` for the models here.

    Returns
    -------
    Summary
        ``rows`` (one :class:`SummaryRow` per layer run: ``name``, ``kind``,
        ``output_shape``, ``params``, ``macs``, ``activation_bytes``, and ``runs``,
        ``runs_on``, ``backend_ok``: whether the backend the layer would run on can run
        it, from :func:`convbackends.explain` under the current default backend) and the
        totals ``total_params``, ``total_macs``, ``total_activation_bytes``. The
        activation bytes, and the dtype of layers without parameters, use the dtype of the
        model's parameters (float32 when it has none).
    """
    params = model.parameters()
    dtype = params[0].dtype if params else np.dtype(np.float32)
    itemsize = dtype.itemsize
    rows = []
    seen = set()
    for name, layer, shape_in, shape_out in model.layer_shapes(tuple(input_shape)):
        # A layer run twice (BasicBlock's relu) owns its parameters once.
        count = 0 if id(layer) in seen else sum(p.size for p in layer.parameters())
        seen.add(id(layer))
        rows.append(SummaryRow(name, type(layer).__name__, tuple(shape_out), count,
                               layer.macs(shape_in), math.prod(shape_out) * itemsize,
                               *_runs(layer, shape_in, dtype)))
    return Summary(tuple(input_shape), tuple(rows))
