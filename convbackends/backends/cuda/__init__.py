"""``cuda``: Numba CUDA kernels on an NVIDIA GPU, with device-array interop.

The backend lives in :mod:`.backend`, its launch planning (implicit-GEMM tiles, split-K,
grids) in :mod:`.plan` and its kernels in :mod:`.kernels`. Importing this package does not
import ``numba.cuda``: only ``available()`` and the ops do, and only :mod:`.kernels` needs it.
"""

from .backend import CudaBackend
from .plan import (GPU_TILES, MAX_K_SLICES, MIN_GEMM_CHANNELS, SIMULATOR_TILES, Tile,
                   choose_split, choose_tile)

__all__ = ["CudaBackend", "Tile", "GPU_TILES", "SIMULATOR_TILES", "MIN_GEMM_CHANNELS",
           "MAX_K_SLICES", "choose_tile", "choose_split"]
