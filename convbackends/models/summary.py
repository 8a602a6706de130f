"""A model's layer-by-layer table (shapes, parameters, MACs, activation bytes) for one
input shape, from each layer's ``output_shape`` and ``macs``: nothing is computed."""

import math
from dataclasses import dataclass

import numpy as np

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
    """

    name: str
    kind: str
    output_shape: tuple
    params: int
    macs: int
    activation_bytes: int


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

    def __str__(self):
        table = [("layer", "type", "output shape", "params", "MACs", "activation")]
        table += [(r.name, r.kind, str(list(r.output_shape)), f"{r.params:,}", f"{r.macs:,}",
                   _format_bytes(r.activation_bytes)) for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(6)]
        lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                           for i, (c, w) in enumerate(zip(row, widths))) for row in table]
        lines.insert(1, "-" * len(lines[0]))
        lines += ["-" * len(lines[0]),
                  f"input {list(self.input_shape)}: {self.total_params:,} parameters, "
                  f"{self.total_macs:,} MACs, {_format_bytes(self.total_activation_bytes)} of "
                  f"layer outputs"]
        return "\n".join(lines)


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
        ``output_shape``, ``params``, ``macs``, ``activation_bytes``) and the totals
        ``total_params``, ``total_macs``, ``total_activation_bytes``. The activation bytes
        use the dtype of the model's parameters (float32 when it has none).
    """
    params = model.parameters()
    itemsize = params[0].dtype.itemsize if params else np.dtype(np.float32).itemsize
    rows = []
    seen = set()
    for name, layer, shape_in, shape_out in model.layer_shapes(tuple(input_shape)):
        # A layer run twice (BasicBlock's relu) owns its parameters once.
        count = 0 if id(layer) in seen else sum(p.size for p in layer.parameters())
        seen.add(id(layer))
        rows.append(SummaryRow(name, type(layer).__name__, tuple(shape_out), count,
                               layer.macs(shape_in), math.prod(shape_out) * itemsize))
    return Summary(tuple(input_shape), tuple(rows))
