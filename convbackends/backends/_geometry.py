"""Helpers shared by backends: viewing 1-D/2-D/3-D geometry as 3-D.

Kernels written for ``(N, C, D, H, W)`` serve every dimensionality by giving 1-D and 2-D
arrays leading spatial dims of size 1 (with kernel 1, stride 1, dilation 1, padding 0 there).
"""

import numpy as np


def as_3d(a, nd):
    """``(N, C, *spatial)`` -> C-contiguous ``(N, C, D, H, W)`` (a view when possible)."""
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[:2] + (1,) * (3 - nd) + a.shape[2:])


def params_3d(values, fill):
    """One value per spatial dim -> int64 array of 3, leading dims filled with ``fill``."""
    values = tuple(values)
    return np.array((fill,) * (3 - len(values)) + values, dtype=np.int64)


def pads_3d(pairs):
    """(before, after) pairs -> two int64 arrays of 3 (before pads, after pads)."""
    pairs = ((0, 0),) * (3 - len(pairs)) + tuple(pairs)
    return (np.array([p[0] for p in pairs], dtype=np.int64),
            np.array([p[1] for p in pairs], dtype=np.int64))
