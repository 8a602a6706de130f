"""``naive``: direct loops straight from the definitions, compiled by Numba, serial.

Limits: none. Every op, geometry and dtype; the baseline the others are measured against.
Accumulates in float64 whatever the dtype. Slow: ``N*C_out*prod(out)*C_in/groups*prod(k)``
multiply-accumulates, one at a time, on one core.
"""

import numba as nb
import numpy as np

from ._geometry import as_3d, pads_3d, params_3d
from .base import Backend


@nb.njit(cache=True)
def _conv_kernel(x, w, stride, pad, dil, groups, y):
    N, C, D, H, W = x.shape
    K, Cg, KD, KH, KW = w.shape
    _, _, OD, OH, OW = y.shape
    Kg = K // groups
    for n in range(N):
        for k in range(K):
            g = k // Kg
            for od in range(OD):
                for oh in range(OH):
                    for ow in range(OW):
                        acc = 0.0
                        for c in range(Cg):
                            ci = g * Cg + c
                            for r in range(KD):
                                iz = od * stride[0] - pad[0] + r * dil[0]
                                if iz < 0 or iz >= D:
                                    continue
                                for s in range(KH):
                                    iy = oh * stride[1] - pad[1] + s * dil[1]
                                    if iy < 0 or iy >= H:
                                        continue
                                    for t in range(KW):
                                        ix = ow * stride[2] - pad[2] + t * dil[2]
                                        if ix < 0 or ix >= W:
                                            continue
                                        acc += x[n, ci, iz, iy, ix] * w[k, c, r, s, t]
                        y[n, k, od, oh, ow] = acc


@nb.njit(cache=True)
def _conv_transpose_kernel(x, w, stride, pad, dil, groups, y):
    # y[n, co, o] gathers x[n, ci, i] * w[ci, co, r] over o + pad = i*stride + r*dil.
    N, C, D, H, W = x.shape
    _, Kg, KD, KH, KW = w.shape
    _, K, OD, OH, OW = y.shape
    Cg = C // groups
    for n in range(N):
        for k in range(K):
            g = k // Kg
            kk = k - g * Kg
            for od in range(OD):
                for oh in range(OH):
                    for ow in range(OW):
                        acc = 0.0
                        for c in range(Cg):
                            ci = g * Cg + c
                            for r in range(KD):
                                tz = od + pad[0] - r * dil[0]
                                if tz < 0 or tz % stride[0] != 0 or tz // stride[0] >= D:
                                    continue
                                iz = tz // stride[0]
                                for s in range(KH):
                                    ty = oh + pad[1] - s * dil[1]
                                    if ty < 0 or ty % stride[1] != 0 or ty // stride[1] >= H:
                                        continue
                                    iy = ty // stride[1]
                                    for t in range(KW):
                                        tx = ow + pad[2] - t * dil[2]
                                        if tx < 0 or tx % stride[2] != 0 \
                                                or tx // stride[2] >= W:
                                            continue
                                        acc += x[n, ci, iz, iy, tx // stride[2]] \
                                            * w[ci, kk, r, s, t]
                        y[n, k, od, oh, ow] = acc


@nb.njit(cache=True)
def _max_pool_kernel(x, kernel, stride, pad, dil, y):
    N, C, D, H, W = x.shape
    _, _, OD, OH, OW = y.shape
    for n in range(N):
        for c in range(C):
            for od in range(OD):
                for oh in range(OH):
                    for ow in range(OW):
                        m = -np.inf
                        for r in range(kernel[0]):
                            iz = od * stride[0] - pad[0] + r * dil[0]
                            if iz < 0 or iz >= D:
                                continue
                            for s in range(kernel[1]):
                                iy = oh * stride[1] - pad[1] + s * dil[1]
                                if iy < 0 or iy >= H:
                                    continue
                                for t in range(kernel[2]):
                                    ix = ow * stride[2] - pad[2] + t * dil[2]
                                    if ix < 0 or ix >= W:
                                        continue
                                    v = x[n, c, iz, iy, ix]
                                    if v > m or v != v:
                                        m = v
                        y[n, c, od, oh, ow] = m


@nb.njit(cache=True)
def _taps(o, stride, pad_before, dil, k, lo, hi):
    """Number of taps of window ``o`` whose index lies in ``[lo, hi)``."""
    count = 0
    for r in range(k):
        i = o * stride - pad_before + r * dil
        if lo <= i < hi:
            count += 1
    return count


@nb.njit(cache=True)
def _avg_pool_kernel(x, kernel, stride, pad, pad_after, dil, include_pad, y):
    N, C, D, H, W = x.shape
    _, _, OD, OH, OW = y.shape
    size = (D, H, W)
    for n in range(N):
        for c in range(C):
            for od in range(OD):
                for oh in range(OH):
                    for ow in range(OW):
                        o = (od, oh, ow)
                        divisor = 1
                        for a in range(3):
                            lo = -pad[a] if include_pad else 0
                            hi = size[a] + pad_after[a] if include_pad else size[a]
                            divisor *= _taps(o[a], stride[a], pad[a], dil[a], kernel[a], lo, hi)
                        acc = 0.0
                        for r in range(kernel[0]):
                            iz = od * stride[0] - pad[0] + r * dil[0]
                            if iz < 0 or iz >= D:
                                continue
                            for s in range(kernel[1]):
                                iy = oh * stride[1] - pad[1] + s * dil[1]
                                if iy < 0 or iy >= H:
                                    continue
                                for t in range(kernel[2]):
                                    ix = ow * stride[2] - pad[2] + t * dil[2]
                                    if ix < 0 or ix >= W:
                                        continue
                                    acc += x[n, c, iz, iy, ix]
                        y[n, c, od, oh, ow] = acc / divisor if divisor > 0 else np.nan


@nb.njit(cache=True)
def _adaptive_avg_pool_kernel(x, y):
    N, C, D, H, W = x.shape
    _, _, OD, OH, OW = y.shape
    for n in range(N):
        for c in range(C):
            for od in range(OD):
                z0, z1 = (od * D) // OD, -((-(od + 1) * D) // OD)
                for oh in range(OH):
                    y0, y1 = (oh * H) // OH, -((-(oh + 1) * H) // OH)
                    for ow in range(OW):
                        x0, x1 = (ow * W) // OW, -((-(ow + 1) * W) // OW)
                        acc = 0.0
                        for iz in range(z0, z1):
                            for iy in range(y0, y1):
                                for ix in range(x0, x1):
                                    acc += x[n, c, iz, iy, ix]
                        y[n, c, od, oh, ow] = acc / ((z1 - z0) * (y1 - y0) * (x1 - x0))


def _output_3d(spec, channels):
    shape = (spec.batch, channels) + (1,) * (3 - spec.ndim) + tuple(spec.output_spatial)
    return np.empty(shape, dtype=spec.dtype)


def _add_bias(y, bias):
    if bias is not None:
        y += bias.reshape((1, -1) + (1,) * (y.ndim - 2))
    return y


class NaiveBackend(Backend):
    """Direct loops, serial: supports every call (the reference implementation)."""

    name = "naive"
    limits = "none (every op, geometry and dtype); one core, no blocking: slow"

    def conv(self, x, weight, bias, spec):
        y = _output_3d(spec, spec.out_channels)
        _conv_kernel(as_3d(x, spec.ndim), as_3d(weight, spec.ndim),
                     params_3d(spec.stride, 1), pads_3d(spec.padding)[0],
                     params_3d(spec.dilation, 1), spec.groups, y)
        return _add_bias(y.reshape(spec.output_shape), bias)

    def conv_transpose(self, x, weight, bias, spec):
        y = _output_3d(spec, spec.out_channels)
        _conv_transpose_kernel(as_3d(x, spec.ndim), as_3d(weight, spec.ndim),
                               params_3d(spec.stride, 1), pads_3d(spec.padding)[0],
                               params_3d(spec.dilation, 1), spec.groups, y)
        return _add_bias(y.reshape(spec.output_shape), bias)

    def max_pool(self, x, spec):
        y = _output_3d(spec, spec.channels)
        _max_pool_kernel(as_3d(x, spec.ndim), params_3d(spec.kernel, 1),
                         params_3d(spec.stride, 1), pads_3d(spec.padding)[0],
                         params_3d(spec.dilation, 1), y)
        return y.reshape(spec.output_shape)

    def avg_pool(self, x, spec):
        y = _output_3d(spec, spec.channels)
        before, after = pads_3d(spec.padding)
        _avg_pool_kernel(as_3d(x, spec.ndim), params_3d(spec.kernel, 1),
                         params_3d(spec.stride, 1), before, after,
                         params_3d(spec.dilation, 1), spec.count_include_pad, y)
        return y.reshape(spec.output_shape)

    def adaptive_avg_pool(self, x, spec):
        y = _output_3d(spec, spec.channels)
        _adaptive_avg_pool_kernel(as_3d(x, spec.ndim), y)
        return y.reshape(spec.output_shape)
