"""``numba``: direct convolution and pooling compiled by Numba, parallel over every core.

The backend lives in :mod:`.backend` (with its tuning constants), its kernels in
:mod:`.kernels`.
"""

from .backend import NumbaBackend, threading_info

__all__ = ["NumbaBackend", "threading_info"]
