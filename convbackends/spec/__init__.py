"""One immutable description per call: geometry only, no numerics.

Every public function turns its arguments into a :class:`ConvSpec` or :class:`PoolSpec`
here, once, so backends see one geometry (padding always as ``(before, after)`` pairs) and
never parse user arguments. The sliding-window arithmetic itself lives in :mod:`.geometry`.
"""

from .conv import PADDING_MODES, PADDING_STRINGS, ConvSpec, conv_spec, padded_spec
from .dtypes import SUPPORTED_DTYPES, check_dtypes
from .geometry import output_length, per_dim, transposed_output_length
from .pool import (ADAPTIVE_OPS, POOL_OPS, PoolSpec, adaptive_pool_spec, invalid_index_error,
                   pool_spec, unpool_spec)

__all__ = ["ConvSpec", "PoolSpec", "conv_spec", "pool_spec", "adaptive_pool_spec",
           "unpool_spec", "invalid_index_error", "padded_spec", "check_dtypes", "output_length",
           "transposed_output_length", "per_dim", "PADDING_MODES", "PADDING_STRINGS",
           "SUPPORTED_DTYPES", "POOL_OPS", "ADAPTIVE_OPS"]
