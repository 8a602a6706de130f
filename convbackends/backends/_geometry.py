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


def tile_chunks(batch, rows, rows_per_chunk):
    """``(samples, rows)`` slice pairs covering ``batch x rows`` tile rows in chunks.

    Whole samples go together while ``rows_per_chunk`` holds at least one sample's rows;
    otherwise each sample's rows are split.
    """
    if rows_per_chunk >= rows:
        per = max(1, rows_per_chunk // rows)
        for n0 in range(0, batch, per):
            yield slice(n0, min(batch, n0 + per)), slice(0, rows)
    else:
        for n in range(batch):
            for t0 in range(0, rows, rows_per_chunk):
                yield slice(n, n + 1), slice(t0, min(rows, t0 + rows_per_chunk))
