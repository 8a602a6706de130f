"""The op table (:mod:`.table`), the lowerings between ops (:mod:`.lowerings`), and the
rules that keep NaN and Inf exact on kernels that mix their operands (:mod:`.nonfinite`)."""

from .lowerings import LOWERINGS, Lowering, lowerings_from
from .table import OP_NAMES, OPS, Op, get_op

__all__ = ["Op", "OPS", "OP_NAMES", "get_op", "Lowering", "LOWERINGS", "lowerings_from"]
