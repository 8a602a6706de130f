"""``naive``: direct loops straight from the definitions, compiled by Numba, serial.

Limits: none. Every op, geometry and dtype; the baseline the others are measured against.
Plain max pooling has no kernel of its own: it runs the kernel that also finds the indices
(the op table's lowering drops them).
Accumulates in float64 whatever the dtype, products included. The padded zeros of a
convolution take part in its products, so ``0 * Inf`` in the padding is NaN, as in the
direct formula; a transposed convolution scatters its real inputs only. Slow:
``N*C_out*prod(out)*C_in/groups*prod(k)`` multiply-accumulates, one at a time, on one core.
"""

import math

import numba as nb
import numpy as np

from ..spec.geometry import lift_3d as as_3d, pads_3d, params_3d
from ..spec.pool import invalid_index_error
from .base import Backend


@nb.njit(cache=True)
def _conv_kernel(x, w, finite, stride, pad, dil, groups, y):
    # The padded input's zeros take part in the products: 0 * w. That is 0 unless ``w`` is
    # NaN or Inf, so the taps in padding are added only for channels with ``finite[k]``
    # false. Products are formed in float64, as the sum is.
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
                                z_out = iz < 0 or iz >= D
                                if z_out and finite[k]:
                                    continue
                                for s in range(KH):
                                    iy = oh * stride[1] - pad[1] + s * dil[1]
                                    y_out = z_out or iy < 0 or iy >= H
                                    if y_out and finite[k]:
                                        continue
                                    for t in range(KW):
                                        ix = ow * stride[2] - pad[2] + t * dil[2]
                                        if y_out or ix < 0 or ix >= W:
                                            if not finite[k]:
                                                acc += 0.0 * np.float64(w[k, c, r, s, t])
                                            continue
                                        acc += np.float64(x[n, ci, iz, iy, ix]) \
                                            * np.float64(w[k, c, r, s, t])
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
                                        acc += np.float64(x[n, ci, iz, iy, tx // stride[2]]) \
                                            * np.float64(w[ci, kk, r, s, t])
                        y[n, k, od, oh, ow] = acc


@nb.njit(cache=True)
def _max_pool_indices_kernel(x, kernel, stride, pad, dil, y, idx):
    # PyTorch's scan: start at -inf with the window's first tap inside the input, take a tap
    # when v > best or v is NaN (the first of equal maxima, the last NaN); no tap: -1.
    N, C, D, H, W = x.shape
    _, _, OD, OH, OW = y.shape
    for n in range(N):
        for c in range(C):
            for od in range(OD):
                for oh in range(OH):
                    for ow in range(OW):
                        m = -np.inf
                        best = -1
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
                                        best = (iz * H + iy) * W + ix
                                    elif best < 0:
                                        best = (iz * H + iy) * W + ix
                        y[n, c, od, oh, ow] = m
                        idx[n, c, od, oh, ow] = best


@nb.njit(cache=True)
def _avg_pool_kernel(x, kernel, stride, pad, dil, div_d, div_h, div_w, y):
    # The divisor of window (od, oh, ow) is div_d[od] * div_h[oh] * div_w[ow].
    N, C, D, H, W = x.shape
    _, _, OD, OH, OW = y.shape
    for n in range(N):
        for c in range(C):
            for od in range(OD):
                for oh in range(OH):
                    for ow in range(OW):
                        divisor = div_d[od] * div_h[oh] * div_w[ow]
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
                        y[n, c, od, oh, ow] = acc / divisor if divisor != 0 else np.nan


@nb.njit(cache=True)
def _adaptive_avg_pool_kernel(x, z0, z1, y0, y1, x0, x1, y):
    # Window (od, oh, ow) is [z0[od], z1[od]) x [y0[oh], y1[oh]) x [x0[ow], x1[ow]).
    N, C, D, H, W = x.shape
    _, _, OD, OH, OW = y.shape
    for n in range(N):
        for c in range(C):
            for od in range(OD):
                for oh in range(OH):
                    for ow in range(OW):
                        acc = 0.0
                        for iz in range(z0[od], z1[od]):
                            for iy in range(y0[oh], y1[oh]):
                                for ix in range(x0[ow], x1[ow]):
                                    acc += x[n, c, iz, iy, ix]
                        y[n, c, od, oh, ow] = acc / ((z1[od] - z0[od]) * (y1[oh] - y0[oh])
                                                     * (x1[ow] - x0[ow]))


@nb.njit(cache=True)
def _adaptive_max_pool_kernel(x, z0, z1, y0, y1, x0, x1, y, idx):
    # The windows of adaptive average pooling, the scan of max pooling with indices (every
    # adaptive window holds at least one tap: it starts at its first).
    N, C, D, H, W = x.shape
    _, _, OD, OH, OW = y.shape
    for n in range(N):
        for c in range(C):
            for od in range(OD):
                for oh in range(OH):
                    for ow in range(OW):
                        m = -np.inf
                        best = (z0[od] * H + y0[oh]) * W + x0[ow]
                        for iz in range(z0[od], z1[od]):
                            for iy in range(y0[oh], y1[oh]):
                                for ix in range(x0[ow], x1[ow]):
                                    v = x[n, c, iz, iy, ix]
                                    if v > m or v != v:
                                        m = v
                                        best = (iz * H + iy) * W + ix
                        y[n, c, od, oh, ow] = m
                        idx[n, c, od, oh, ow] = best


@nb.njit(cache=True)
def _max_unpool_kernel(x, idx, y):
    # y[n, c, idx[n, c, i]] = x[n, c, i] in scan order (the last write wins). An index outside
    # the plane is skipped; returns (found, the last such index in scan order) for the caller
    # to raise.
    N, C, D, H, W = x.shape
    plane = y.shape[2]
    found = False
    bad = 0
    for n in range(N):
        for c in range(C):
            for iz in range(D):
                for iy in range(H):
                    for ix in range(W):
                        j = idx[n, c, iz, iy, ix]
                        if j < 0 or j >= plane:
                            found = True
                            bad = j
                        else:
                            y[n, c, j] = x[n, c, iz, iy, ix]
    return found, bad


def _lifted(per_dim, fill):
    """Per-dim arrays of an ``nd``-dim spec -> three, leading dims filled with ``fill``."""
    per_dim = tuple(per_dim)
    return fill * (3 - len(per_dim)) + per_dim


def _adaptive_windows_3d(spec):
    """``(z0, z1, y0, y1, x0, x1)``: the spec's adaptive windows, lifted to three dims."""
    one = (np.zeros(1, np.int64), np.ones(1, np.int64))  # a lifted dim: the window [0, 1)
    windows = _lifted(spec.adaptive_windows(), (one,))
    return tuple(np.ascontiguousarray(a, dtype=np.int64) for pair in windows for a in pair)


def _output_3d(spec, channels):
    shape = (spec.batch, channels) + (1,) * (3 - spec.ndim) + tuple(spec.output_spatial)
    return np.empty(shape, dtype=spec.dtype)


def _add_bias(y, bias):
    if bias is not None:
        with np.errstate(invalid="ignore", over="ignore"):  # Inf - Inf is NaN, as directly
            y += bias.reshape((1, -1) + (1,) * (y.ndim - 2))
    return y


class NaiveBackend(Backend):
    """Direct loops, serial: supports every call (the reference implementation)."""

    name = "naive"
    limits = "none (every op, geometry and dtype); one core, no blocking: slow"

    def conv(self, x, weight, bias, spec):
        y = _output_3d(spec, spec.out_channels)
        w = as_3d(weight, spec.ndim)
        finite = np.isfinite(w).reshape(len(w), -1).all(axis=1)
        _conv_kernel(as_3d(x, spec.ndim), w, finite,
                     params_3d(spec.stride, 1), pads_3d(spec.padding)[0],
                     params_3d(spec.dilation, 1), spec.groups, y)
        return _add_bias(y.reshape(spec.output_shape), bias)

    def conv_transpose(self, x, weight, bias, spec):
        y = _output_3d(spec, spec.out_channels)
        _conv_transpose_kernel(as_3d(x, spec.ndim), as_3d(weight, spec.ndim),
                               params_3d(spec.stride, 1), pads_3d(spec.padding)[0],
                               params_3d(spec.dilation, 1), spec.groups, y)
        return _add_bias(y.reshape(spec.output_shape), bias)

    def max_pool_with_indices(self, x, spec):
        """``(values, indices)``: indices int64, flat into each input plane, as PyTorch's."""
        y = _output_3d(spec, spec.channels)
        idx = np.empty(y.shape, dtype=np.int64)
        _max_pool_indices_kernel(as_3d(x, spec.ndim), params_3d(spec.kernel, 1),
                                 params_3d(spec.stride, 1), pads_3d(spec.padding)[0],
                                 params_3d(spec.dilation, 1), y, idx)
        return y.reshape(spec.output_shape), idx.reshape(spec.output_shape)

    def avg_pool(self, x, spec):
        y = _output_3d(spec, spec.channels)
        div_d, div_h, div_w = _lifted(spec.divisor_counts(), (np.ones(1, np.int64),))
        _avg_pool_kernel(as_3d(x, spec.ndim), params_3d(spec.kernel, 1),
                         params_3d(spec.stride, 1), pads_3d(spec.padding)[0],
                         params_3d(spec.dilation, 1), div_d, div_h, div_w, y)
        return y.reshape(spec.output_shape)

    def adaptive_avg_pool(self, x, spec):
        y = _output_3d(spec, spec.channels)
        _adaptive_avg_pool_kernel(as_3d(x, spec.ndim), *_adaptive_windows_3d(spec), y)
        return y.reshape(spec.output_shape)

    def adaptive_max_pool(self, x, spec):
        """``(values, indices)`` over the adaptive windows, with max pooling's index rule."""
        y = _output_3d(spec, spec.channels)
        idx = np.empty(y.shape, dtype=np.int64)
        _adaptive_max_pool_kernel(as_3d(x, spec.ndim), *_adaptive_windows_3d(spec), y, idx)
        return y.reshape(spec.output_shape), idx.reshape(spec.output_shape)

    def max_unpool(self, x, indices, spec):
        """Zeros of ``spec.output_shape`` with ``x`` scattered to ``indices`` (last write wins).

        An index outside an output plane raises :class:`~convbackends.ShapeError` with
        PyTorch's message,
        naming the last such index in scan order; nothing is written out of bounds.
        """
        sizes = tuple(spec.unpool_output)
        y = np.zeros((spec.batch, spec.channels, math.prod(sizes)), dtype=spec.dtype)
        found, bad = _max_unpool_kernel(as_3d(x, spec.ndim),
                                        as_3d(np.asarray(indices, dtype=np.int64), spec.ndim), y)
        if found:
            raise invalid_index_error(bad, spec)
        return y.reshape(spec.output_shape)
