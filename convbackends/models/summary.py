"""A model's layer-by-layer table (shapes, parameters, MACs, activation bytes, receptive
fields, and whether its backend runs each layer) for one input shape, from each layer's
``output_shape``, ``macs``, geometry and ``explain``: nothing is computed."""

import math
import re
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..errors import ConvError
from ..nn import BasicBlock, Linear, Sequential
from ..nn.conv import _ConvNd
from ..nn.pooling import _AdaptivePoolNd, _MaxUnpoolNd, _PoolNd
from ..spec import per_dim
from ..spec.geometry import adaptive_windows

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
    rf : tuple of int or None
        The receptive field of one output pixel, in input pixels, per spatial dim
        (``(11, 11)`` for AlexNet's first layer); ``None`` once the spatial dims are gone
        (``Flatten``, ``Linear`` and after). See :func:`summary` for the rules.
    jump : tuple or None
        The effective stride: the distance in input pixels between neighbouring output
        pixels, per spatial dim (an ``int``, or a :class:`fractions.Fraction` below 1
        after upsampling); ``None`` where ``rf`` is.
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
    rf: tuple = None
    jump: tuple = None


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
        return self.table()

    def table(self, rf=False):
        """The table ``str()`` gives; with ``rf=True`` it has the columns ``rf`` and
        ``jump`` after the output shape (one number where every spatial dim has the same,
        ``-`` where there is none)."""
        head = ["layer", "type", "output shape", "params", "MACs", "activation", "runs"]
        cells = [[r.name, r.kind, str(list(r.output_shape)), f"{r.params:,}", f"{r.macs:,}",
                  _format_bytes(r.activation_bytes), _cell(r.runs)] for r in self.rows]
        if rf:
            head[3:3] = ["rf", "jump"]
            for cell, r in zip(cells, self.rows):
                cell[3:3] = [_per_dim_cell(r.rf), _per_dim_cell(r.jump)]
        table = [tuple(head)] + [tuple(c) for c in cells]
        left = {0, 1, 2, len(head) - 1}
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) if i in left else c.rjust(w)
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


def _per_dim_cell(values):
    """An ``rf`` or ``jump`` cell: ``-``, one value, or one per dim as ``(11, 7)``."""
    if values is None:
        return "-"
    if len(set(values)) == 1:
        return str(values[0])
    return "(" + ", ".join(map(str, values)) + ")"


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

    Receptive fields: each row's ``rf`` and ``jump`` (per spatial dim) follow from the
    layers' geometry, starting from ``rf = jump = 1`` at the input. A convolution or
    pooling window of kernel ``k``, dilation ``d`` and stride ``s`` gives
    ``rf + (k - 1)*d*jump`` and ``jump*s`` (padding moves the field, it does not widen
    it); adaptive pooling counts as its widest window and largest step (a global pooling
    sees its whole input map); a transposed convolution (and max unpooling) of stride
    ``s`` gives ``rf + floor((k - 1)*d / s)*jump`` and ``jump / s``: each of its output
    pixels sums the input pixels within ``(k - 1)*d / s`` steps of it. A later window on
    a jump below 1 rounds its ``rf`` up. Where branches join (a residual addition, the
    inception module's concatenation, FCN's skip additions) the field is the widest of
    them; crops and element-wise layers keep it. The field is the theoretical one,
    unbounded by the input's size (ResNet-18's last block sees 435 pixels of a 224-pixel
    image); it is ``None`` from the first layer without spatial dims (``Flatten``,
    ``Linear``).
    """
    params = model.parameters()
    dtype = params[0].dtype if params else np.dtype(np.float32)
    itemsize = dtype.itemsize
    layer_rows = list(model.layer_shapes(tuple(input_shape)))
    fields = receptive_fields(model, tuple(input_shape), layer_rows)
    rows = []
    seen = set()
    for (name, layer, shape_in, shape_out), field in zip(layer_rows, fields):
        # A layer run twice (BasicBlock's relu) owns its parameters once.
        count = 0 if id(layer) in seen else sum(p.size for p in layer.parameters())
        seen.add(id(layer))
        rf, jump = _rf_jump(field)
        rows.append(SummaryRow(name, type(layer).__name__, tuple(shape_out), count,
                               layer.macs(shape_in), math.prod(shape_out) * itemsize,
                               *_runs(layer, shape_in, dtype), rf=rf, jump=jump))
    return Summary(tuple(input_shape), tuple(rows))


# ----------------------------------------------------------------------------- receptive fields
#
# A field is a tuple with one (span, jump) pair per spatial dim, as Fractions: span = rf - 1,
# the distance in input pixels between the first and last input pixel one output pixel
# sees, and jump the distance between neighbouring output pixels; None where the spatial
# dims are gone. Each layer maps the field of its input to the field of its output.


def _rf_jump(field):
    """``(rf, jump)`` of a :class:`SummaryRow` from a field."""
    if field is None:
        return None, None
    rf = tuple(int(math.ceil(span)) + 1 for span, _ in field)
    jump = tuple(int(j) if j.denominator == 1 else j for _, j in field)
    return rf, jump


def _window(field, kernel, stride, dilation):
    """A sliding window: ``rf += (k - 1)*d*jump``, ``jump *= stride``."""
    return tuple((span + (k - 1) * d * jump, jump * s)
                 for (span, jump), k, s, d in zip(field, kernel, stride, dilation))


def _transposed(field, kernel, stride, dilation):
    """A transposed window (transposed convolution, max unpooling): an output pixel sums
    the inputs within ``(k - 1)*d / stride`` input steps of it, so
    ``rf += floor((k - 1)*d / stride)*jump`` and ``jump /= stride``."""
    return tuple((span + ((k - 1) * d // s) * jump, jump / s)
                 for (span, jump), k, s, d in zip(field, kernel, stride, dilation))


def _adaptive(field, lengths, outs):
    """Adaptive pooling as a window of its widest window and its largest step (exact
    where the output size divides the input size; a global pooling sees the whole map)."""
    kernel, stride = [], []
    for length, out in zip(lengths, outs):
        starts, ends = adaptive_windows(length, out)
        kernel.append(int((ends - starts).max()) if out else 1)
        stride.append(int(np.diff(starts).max()) if out > 1 else max(length, 1))
    return _window(field, kernel, stride, (1,) * len(kernel))


def layer_field(layer, shape_in, shape_out, field):
    """The field of ``layer``'s output for ``field`` at its input."""
    if field is None or isinstance(layer, Linear) or len(shape_out) != len(shape_in):
        return None
    nd = len(field)
    if isinstance(layer, _ConvNd):
        geometry = (layer.kernel_size, layer.stride, layer.dilation)
        return (_transposed if layer._transposed else _window)(field, *geometry)
    if isinstance(layer, _PoolNd):
        kernel = per_dim(layer.kernel_size, nd, "kernel_size")
        stride = kernel if layer.stride is None else per_dim(layer.stride, nd, "stride")
        dilation = per_dim(getattr(layer, "dilation", 1), nd, "dilation")
        return _window(field, kernel, stride, dilation)
    if isinstance(layer, _AdaptivePoolNd):
        return _adaptive(field, shape_in[-nd:], shape_out[-nd:])
    if isinstance(layer, _MaxUnpoolNd):
        kernel = per_dim(layer.kernel_size, nd, "kernel_size")
        stride = kernel if layer.stride is None else per_dim(layer.stride, nd, "stride")
        return _transposed(field, kernel, stride, (1,) * nd)
    if tuple(shape_out[-nd:]) == tuple(shape_in[-nd:]):
        return field        # element-wise, normalisation, channel-wise layers
    return None


class _Misaligned(Exception):
    """The walk over the modules and the rows of ``layer_shapes`` disagree."""


class FieldWalk:
    """Follows a model's data flow over the rows of its ``layer_shapes``, giving each row
    its field.

    ``run(module, field)`` walks a module and returns its output's field: a module with a
    ``_receptive_field(walk, field)`` method says itself how fields flow through it (the
    inception module, GoogLeNet, the FCNs); ``Sequential`` chains its children;
    ``BasicBlock`` takes the wider of its two paths; another container's rows are taken
    as a chain. ``row(layer, field, out=None)`` records the next row, which must be
    ``layer``'s, computing its field from its geometry unless ``out`` gives it.
    ``merge(*fields)`` is the widest of several fields (branches joined, maps added).
    """

    _COMPUTE = object()

    def __init__(self, rows):
        self.rows, self.pos, self.fields = rows, 0, [None] * len(rows)

    def run(self, module, field):
        hook = getattr(module, "_receptive_field", None)
        if hook is not None:
            return hook(self, field)
        if isinstance(module, BasicBlock):
            main = field
            for name in ("conv1", "bn1", "relu", "conv2", "bn2"):
                main = self.run(getattr(module, name), main)
            shortcut = field if module.downsample is None else self.run(module.downsample,
                                                                        field)
            return self.run(module.relu, self.merge(main, shortcut))
        if isinstance(module, Sequential):
            for child in module.children():
                field = self.run(child, field)
            return field
        if module.named_children():
            inside = {id(m) for m in module.modules()}
            while self.pos < len(self.rows) and id(self.rows[self.pos][1]) in inside:
                field = self.row(self.rows[self.pos][1], field)
            return field
        return self.row(module, field)

    def row(self, layer, field, out=_COMPUTE):
        if self.pos >= len(self.rows) or self.rows[self.pos][1] is not layer:
            raise _Misaligned
        _, _, shape_in, shape_out = self.rows[self.pos]
        if out is self._COMPUTE:
            out = layer_field(layer, shape_in, shape_out, field)
        self.fields[self.pos] = out
        self.pos += 1
        return out

    @staticmethod
    def merge(*fields):
        if any(f is None for f in fields):
            return None
        return tuple((max(s for s, _ in dims), max(j for _, j in dims))
                     for dims in zip(*fields))


def receptive_fields(model, input_shape, rows=None):
    """The field of every row of ``model.layer_shapes(input_shape)`` (``rows``, when
    already listed), ``None`` for all where the walk cannot follow the model."""
    rows = list(model.layer_shapes(input_shape)) if rows is None else rows
    nd = next((m._nd for m in model.modules() if getattr(m, "_nd", None)),
              len(input_shape) - 2)
    if nd < 1:
        return [None] * len(rows)
    walk = FieldWalk(rows)
    try:
        walk.run(model, ((Fraction(0), Fraction(1)),) * nd)
    except _Misaligned:
        return [None] * len(rows)
    if walk.pos != len(rows):
        return [None] * len(rows)
    return walk.fields
