"""The op table (:mod:`.table`) and the lowerings between ops (:mod:`.lowerings`)."""

from .lowerings import LOWERINGS, Lowering, lowerings_from
from .table import OP_NAMES, OPS, Op, get_op

__all__ = ["Op", "OPS", "OP_NAMES", "get_op", "Lowering", "LOWERINGS", "lowerings_from"]
