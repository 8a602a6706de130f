"""Launch planning of the ``cuda`` backend: implicit-GEMM tiles, split-K and grids.

Pure Python, no ``numba.cuda``: ``explain()`` and ``supports()`` plan a call without
touching the GPU, and the rules here are tested on machines without one.
"""

import math
from typing import NamedTuple

__all__ = ["Tile", "GPU_TILES", "SIMULATOR_TILES", "MIN_GEMM_CHANNELS", "MAX_K_SLICES",
           "MIN_SLICE_STEPS", "MAX_GRID_YZ", "DEFAULT_SMS", "GemmLaunch", "choose_tile",
           "choose_split", "gemm_launch", "gemm_refusal", "grid_1d"]


class Tile(NamedTuple):
    """Shape of the implicit GEMM's work per thread block.

    A block computes ``bm`` output channels x ``bn`` output positions, reducing ``bk``
    (input channel, tap) rows per step; each thread holds a ``tm x tn`` register micro-tile.
    """

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    @property
    def threads(self):
        return (self.bm // self.tm) * (self.bn // self.tn)

    def check(self):
        """``None`` if the kernel can use this tile, else the rule it breaks."""
        if self.tm % 4 or self.tn % 4:
            return f"tm={self.tm} and tn={self.tn} must be multiples of 4"
        if self.bm % self.tm or self.bn % self.tn:
            return f"bm={self.bm} and bn={self.bn} must be multiples of tm and tn"
        if self.threads % self.bm or self.threads % self.bn or self.threads > 1024:
            return (f"{self.threads} threads must be a multiple of bm={self.bm} and of "
                    f"bn={self.bn}, and at most 1024")
        if (self.bm * self.bk) % self.threads or (self.bn * self.bk) % self.threads:
            return "bm*bk and bn*bk must be multiples of the thread count"
        return None

    def __str__(self):
        return (f"{self.bm}x{self.bn}x{self.bk} tile, {self.tm}x{self.tn} per thread, "
                f"{self.threads} threads")


# The feasibility probe on an H100 (GPU.md) reached 14-17 TFLOP/s with the first two.
GPU_TILES = (Tile(64, 128, 8, 4, 8), Tile(128, 64, 8, 8, 4), Tile(32, 64, 8, 4, 4))
# The simulator runs every thread as a Python thread: small tiles keep CI quick while the
# kernel code is the same (the second one exercises two 4-row groups per thread).
SIMULATOR_TILES = (Tile(16, 16, 4, 4, 4), Tile(32, 32, 4, 8, 4))
MIN_GEMM_CHANNELS = 8
# Split-K: at most this many reduction slices, each at least this many BK-row steps long.
MAX_K_SLICES = 8
MIN_SLICE_STEPS = 8
MAX_GRID_YZ = 65535
DEFAULT_SMS = 132  # an H100 SXM; the device's own count is used when there is one
# Grid-stride kernels: threads per block, and at most this many blocks.
MAX_BLOCKS_1D = 1 << 16


def choose_tile(tiles, channels, positions, groups, sms):
    """The tile that best fills the GPU with the least padding waste.

    Score = (useful / computed elements of the padded GEMM) x min(1, blocks / SMs) x
    (tile area / largest area) ** 0.25: full tiles first, then enough blocks for every SM,
    then larger tiles (more reuse per shared-memory load).
    """
    largest = max(t.bm * t.bn for t in tiles)

    def score(t):
        rows, cols = -(-channels // t.bm), -(-positions // t.bn)
        useful = channels * positions / (rows * t.bm * cols * t.bn)
        return useful * min(1.0, rows * cols * groups / sms) * (t.bm * t.bn / largest) ** 0.25

    return max(tiles, key=score)


def choose_split(blocks, steps, sms):
    """Reduction slices (split-K) for a GEMM of ``blocks`` tiles and ``steps`` BK-row steps.

    Layers with fewer tiles than two per SM (deep layers at small images: 7x7 x 512 channels
    at batch 32 has about 100) leave SMs idle; slicing the reduction multiplies the blocks,
    at the cost of a ``slices x output`` workspace and one more pass over it. Each slice
    keeps at least :data:`MIN_SLICE_STEPS` steps so the prologue and epilogue stay amortised.
    """
    if blocks >= 2 * sms:
        return 1
    return max(1, min(MAX_K_SLICES, -(-2 * sms // blocks), steps // MIN_SLICE_STEPS))


class GemmLaunch(NamedTuple):
    """How the implicit GEMM runs one convolution."""

    tile: Tile
    k_slices: int
    grid: tuple


def gemm_launch(spec, tiles, sms, tile=None, split_k=None):
    """Tile, reduction slices and grid of the implicit GEMM for the convolution ``spec``.

    ``tile`` and ``split_k`` force a choice; otherwise :func:`choose_tile` picks among
    ``tiles`` and :func:`choose_split` slices the reduction (never past the grid's z limit).
    """
    kg = spec.out_channels // spec.groups
    positions = spec.batch * math.prod(spec.output_spatial)
    tile = tile or choose_tile(tiles, kg, positions, spec.groups, sms)
    rows, cols = -(-kg // tile.bm), -(-positions // tile.bn)
    steps = -(-(spec.in_channels // spec.groups * math.prod(spec.kernel)) // tile.bk)
    k_slices = split_k or choose_split(rows * cols * spec.groups, steps, sms)
    if split_k is None and spec.groups * k_slices > MAX_GRID_YZ:
        k_slices = 1
    return GemmLaunch(tile, k_slices, (cols, rows, spec.groups * k_slices))


def gemm_refusal(spec, launch):
    """Why the implicit GEMM cannot run ``launch`` (CUDA's grid limits), or ``None``."""
    _, rows, depth = launch.grid
    if depth > MAX_GRID_YZ:
        return (f"groups={spec.groups} x {launch.k_slices} reduction slice(s) exceeds the "
                f"grid's z limit {MAX_GRID_YZ}")
    if rows > MAX_GRID_YZ:
        return f"{rows} channel tiles exceed the grid's y limit {MAX_GRID_YZ}"
    return None


def grid_1d(total, threads):
    """Blocks of a grid-stride launch over ``total`` items, ``threads`` per block."""
    return max(1, min(-(-total // threads), MAX_BLOCKS_1D))
