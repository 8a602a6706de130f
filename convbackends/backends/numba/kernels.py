"""Parallel Numba kernels of the ``numba`` backend, all on C-contiguous ``(N, C, D, H, W)``.

Every kernel hands ``prange`` a flat list of independent tasks (output planes or rows, cut
into chunks) and runs its innermost loop along the output row, so LLVM vectorises it.
Convolution reads a padded, phase-split copy of the input (see the section below);
pooling skips the taps that fall in padding (:func:`_tap_range`) and copies nothing. The
parity ops (arg-max pooling, unpooling) run one ``(n, c)`` plane per task, in scan order.

Two habits keep the inner loops fast. Rows are addressed as offsets into the raveled
arrays, not as views: a view inside a ``prange`` body increments and decrements the parent
array's reference count atomically, and both threads fighting over that count made the
first version 5x slower on a 1-D signal. Inner-loop indices are unsigned: Numba wraps
negative signed indices around, and that select stops LLVM from vectorising.

Nothing compiles at import; ``cache=True`` keeps the machine code on disk between processes.
"""

import numba as nb
import numpy as np

# Multiplies and adds may fuse into FMAs (more accurate, never less); nothing is reordered.
_FMA = {"contract"}


@nb.njit(cache=True, inline="always")
def _tap_range(offset, stride, length, o0, o1):
    """Output columns ``[lo, hi)`` within ``[o0, o1)`` whose input ``o*stride + offset``
    lies in ``[0, length)``; ``hi >= lo``."""
    lo = max(o0, -(offset // stride))
    hi = min(o1, (length - 1 - offset) // stride + 1)
    return lo, max(lo, hi)


@nb.njit(cache=True, inline="always")
def _ceil_div(a, b):
    return -((-a) // b)


@nb.njit(cache=True, inline="always")
def _row_base(shape, i0, i1, i2, i3):
    """Flat offset of ``a[i0, i1, i2, i3, 0]`` in a C-contiguous 5-D array of ``shape``."""
    return (((i0 * shape[1] + i1) * shape[2] + i2) * shape[3] + i3) * shape[4]


# --------------------------------------------------------------------------- convolution
# The input arrives as phase planes (:func:`split_phases`): zero-padded, and with stride
# s along height or width split into s phases, phase ``p`` holding the padded rows (or
# columns) ``p, p + s, ...``; the rows of the batch's images are interleaved. A strided
# convolution is then a sum of unit-stride ones, so every inner loop below reads
# contiguous input and vectorises, and carries no bounds logic. ``h_off[r]`` and
# ``w_off[t]`` (both >= 0, 0 for the first tap) locate kernel row ``r`` and column ``t``
# relative to the first tap. ``af[a0 + j]`` (and ``af[a1 + j]`` for
# a pair of output channels) accumulates, for ``j < m``, taps ``x[x0 + j + offset]``.


@nb.njit(cache=True, fastmath=_FMA)
def _taps1(af, a0, xf, x0, m, w0):
    a0, x0 = np.uint64(a0), np.uint64(x0)
    for j in range(np.uint64(m)):
        af[a0 + j] += w0 * xf[x0 + j]


@nb.njit(cache=True, fastmath=_FMA)
def _taps3(af, a0, xf, x0, e1, e2, m, w0, w1, w2):
    a0, x0, e1, e2 = np.uint64(a0), np.uint64(x0), np.uint64(e1), np.uint64(e2)
    for j in range(np.uint64(m)):
        i = x0 + j
        af[a0 + j] += w0 * xf[i] + w1 * xf[i + e1] + w2 * xf[i + e2]


@nb.njit(cache=True, fastmath=_FMA)
def _taps3x3(af, xf, x0, h_off, w_off, m, wf, wb):
    """All nine taps of a 3x3 kernel (weights ``wf[wb:wb + 9]``) in one pass."""
    x0 = np.uint64(x0)
    h1, h2 = np.uint64(h_off[1]), np.uint64(h_off[2])
    e1, e2 = np.uint64(w_off[1]), np.uint64(w_off[2])
    w0, w1, w2, w3, w4 = wf[wb], wf[wb + 1], wf[wb + 2], wf[wb + 3], wf[wb + 4]
    w5, w6, w7, w8 = wf[wb + 5], wf[wb + 6], wf[wb + 7], wf[wb + 8]
    for j in range(np.uint64(m)):
        i = x0 + j
        af[j] += (w0 * xf[i] + w1 * xf[i + e1] + w2 * xf[i + e2]
                  + w3 * xf[i + h1] + w4 * xf[i + h1 + e1] + w5 * xf[i + h1 + e2]
                  + w6 * xf[i + h2] + w7 * xf[i + h2 + e1] + w8 * xf[i + h2 + e2])


@nb.njit(cache=True, fastmath=_FMA)
def _pair_taps1(af, a0, a1, xf, x0, m, w0, v0):
    a0, a1, x0 = np.uint64(a0), np.uint64(a1), np.uint64(x0)
    for j in range(np.uint64(m)):
        u = xf[x0 + j]
        af[a0 + j] += w0 * u
        af[a1 + j] += v0 * u


@nb.njit(cache=True, fastmath=_FMA)
def _pair_taps3(af, a0, a1, xf, x0, e1, e2, m, w0, w1, w2, v0, v1, v2):
    a0, a1, x0 = np.uint64(a0), np.uint64(a1), np.uint64(x0)
    e1, e2 = np.uint64(e1), np.uint64(e2)
    for j in range(np.uint64(m)):
        i = x0 + j
        u0, u1, u2 = xf[i], xf[i + e1], xf[i + e2]
        af[a0 + j] += w0 * u0 + w1 * u1 + w2 * u2
        af[a1 + j] += v0 * u0 + v1 * u1 + v2 * u2


@nb.njit(cache=True)
def _row_taps(af, a0, m, pair, xf, x0, wf, w0, w_k, w_off):
    """Add one kernel row (taps ``wf[w0:w0 + KW]``) to the accumulators at ``af[a0]`` and,
    for a pair, the next channel's (taps ``w_k`` further on) to those at ``af[a0 + m]``."""
    KW = w_off.shape[0]
    t = 0
    # Three taps per pass: three loads feed six multiply-adds for a pair.
    while t + 3 <= KW:
        x1 = x0 + w_off[t]
        e1, e2 = w_off[t + 1] - w_off[t], w_off[t + 2] - w_off[t]
        if e1 < 0 or e2 < 0:
            break
        if pair:
            _pair_taps3(af, a0, a0 + m, xf, x1, e1, e2, m, wf[w0 + t], wf[w0 + t + 1],
                        wf[w0 + t + 2], wf[w0 + w_k + t], wf[w0 + w_k + t + 1],
                        wf[w0 + w_k + t + 2])
        else:
            _taps3(af, a0, xf, x1, e1, e2, m, wf[w0 + t], wf[w0 + t + 1], wf[w0 + t + 2])
        t += 3
    for u in range(t, KW):
        if pair:
            _pair_taps1(af, a0, a0 + m, xf, x0 + w_off[u], m, wf[w0 + u], wf[w0 + w_k + u])
        else:
            _taps1(af, a0, xf, x0 + w_off[u], m, wf[w0 + u])


@nb.njit(cache=True)
def _accumulate(af, m, nk, xf, xb, x_c, x_d, dil_d, wf, wb, ws, h_off, w_off):
    """``af[i*m:(i + 1)*m]`` = output channel ``i < nk`` of the block: the sum over input
    channels and kernel taps of weight times input, the first tap of output ``j`` at
    ``xf[xb + j]``.

    The block's ``nk * m`` accumulators stay in L1 while each input row is read once for
    all of them. ``x_c`` and ``x_d`` are the flat distances between input channels and
    between depth slices, ``ws`` the weight's shape, ``wb`` the flat offset of the block's
    first weights.
    """
    Cg, KD, KH, KW = ws[1], ws[2], ws[3], ws[4]
    w_k = Cg * KD * KH * KW
    for j in range(nk * m):
        af[j] = 0
    for c in range(Cg):
        for r in range(KD):
            x0 = xb + c * x_c + r * dil_d * x_d
            w0 = wb + (c * KD + r) * KH * KW
            if nk == 1 and KH == 3 and KW == 3:
                # One channel, 3x3: all nine taps in one pass over the accumulators.
                _taps3x3(af, xf, x0, h_off, w_off, m, wf, w0)
                continue
            for s in range(KH):
                for i in range(0, nk, 2):
                    _row_taps(af, i * m, m, i + 1 < nk, xf, x0 + h_off[s], wf,
                              w0 + i * w_k + s * KW, w_k, w_off)


@nb.njit(cache=True)
def _store(yf, y0, af, a0, m, bias):
    """``yf[y0 + j] = af[a0 + j] + bias`` for ``j < m``."""
    y0, a0 = np.uint64(y0), np.uint64(a0)
    for j in range(np.uint64(m)):
        yf[y0 + j] = af[a0 + j] + bias


@nb.njit(cache=True)
def _store_rows(acc, a0, m, bias, yf, y_shape, k, od, n0, N, j0, pitch):
    """``y[n0 + r % N, k, od, r // N, ow] = acc[a0 + j - j0] + bias`` for the flattened
    outputs ``j0 <= j < j0 + m``, ``j = r*pitch + ow``, keeping ``ow`` below the output
    width."""
    OW = y_shape[4]
    r = j0 // pitch
    j = j0
    while j < j0 + m:
        row_end = min(j0 + m, (r + 1) * pitch)
        oh, n = divmod(r, N)
        _store(yf, _row_base(y_shape, n0 + n, k, od, oh) + j - r * pitch, acc, a0 + j - j0,
               max(0, min(row_end, r * pitch + OW) - j), bias)
        j = row_end
        r += 1


@nb.njit(cache=True, parallel=True)
def conv(xq, w, bias, h_off, w_off, stride_d, dil_d, groups, block, chunk, y):
    """``y = conv(x, w) + bias`` from the phase planes ``xq`` of ``x``.

    ``xq`` has shape ``(C, padded depth, phase rows, N, phase pitch)``: the rows of the
    batch's images interleaved. Output ``j`` of the flattened ``(output row, image,
    column)`` plane then reads input ``j + offset`` for every tap, so one pass covers many
    rows of every image (the columns past the output width are computed and dropped), and
    small images make long passes. Tasks are ``(group, block of output channels, od, chunk
    of the flattened plane)``; a block's weights stay in L2.
    """
    xf, wf, yf = xq.ravel(), w.ravel(), y.ravel()
    N, pitch = xq.shape[3], xq.shape[4]
    x_c, x_d = xq.shape[1] * xq.shape[2] * N * pitch, xq.shape[2] * N * pitch
    K, Cg = w.shape[0], w.shape[1]
    w_k = w.size // K
    OD, OH, OW = y.shape[2], y.shape[3], y.shape[4]
    Kg = K // groups
    blocks = _ceil_div(Kg, block)
    length = (OH * N - 1) * pitch + OW
    chunks = _ceil_div(length, chunk)
    for task in nb.prange(groups * blocks * OD * chunks):
        # prange's index is unsigned; mixed with signed ints it would turn float.
        q, ch = divmod(np.int64(task), chunks)
        q, od = divmod(q, OD)
        g, b = divmod(q, blocks)
        j0 = ch * chunk
        m = min(chunk, length - j0)
        xb = _row_base(xq.shape, g * Cg, od * stride_d, 0, 0) + j0
        k0 = g * Kg + b * block
        nk = min(block, (g + 1) * Kg - k0)
        acc = np.empty(nk * m, y.dtype)
        _accumulate(acc, m, nk, xf, xb, x_c, x_d, dil_d, wf, k0 * w_k, w.shape, h_off, w_off)
        for i in range(nk):
            _store_rows(acc, i * m, m, bias[k0 + i], yf, y.shape, k0 + i, od, 0, N, j0, pitch)


@nb.njit(cache=True)
def _split_row(qf, q0, xf, x0, W, pad_w, sw, phase_size):
    """Scatter one input row into the phase rows starting at ``qf[q0]`` (phase ``p`` of the
    padded columns at ``q0 + p*phase_size``)."""
    for p in range(sw):
        first = (p - pad_w) % sw
        if first >= W:
            continue
        q1 = np.uint64(q0 + p * phase_size + (first + pad_w) // sw)
        x1, step = np.uint64(x0 + first), np.uint64(sw)
        for j in range(np.uint64(_ceil_div(W - first, sw))):
            qf[q1 + j] = xf[x1 + j * step]


@nb.njit(cache=True)
def _split_plane(qf, q0, xf, x0, D, H, W, pad, sh, sw, Hq, row_pitch):
    """Scatter one input channel (``D x H x W`` at ``xf[x0]``) into its zero-filled phase
    planes (``sh*sw`` planes of ``Hq`` rows ``row_pitch`` apart per padded depth slice)
    starting at ``qf[q0]``."""
    for d in range(D):
        for h in range(H):
            i, ph = divmod(h + pad[1], sh)
            _split_row(qf, q0 + (((d + pad[0]) * sh + ph) * sw * Hq + i) * row_pitch, xf,
                       x0 + (d * H + h) * W, W, pad[2], sw, Hq * row_pitch)


@nb.njit(cache=True, parallel=True)
def split_phases(x, pad, sh, sw, xq):
    """Fill the zero-filled ``xq`` with the phase planes of ``x`` (layout: see :func:`conv`)."""
    xf, qf = x.ravel(), xq.ravel()
    N, C, D, H, W = x.shape
    Hq, row_pitch = xq.shape[2] // (sh * sw), N * xq.shape[4]
    for task in nb.prange(N * C):
        c, n = divmod(np.int64(task), N)
        _split_plane(qf, _row_base(xq.shape, c, 0, 0, n), xf, _row_base(x.shape, n, c, 0, 0),
                     D, H, W, pad, sh, sw, Hq, row_pitch)


@nb.njit(cache=True, parallel=True)
def conv_depthwise(x, w, bias, pad, q_shape, h_off, w_off, stride, dil_d, chunk, y):
    """Convolution with ``groups == in_channels``: one task per ``(n, c)`` input plane.

    The task splits its plane into phase planes (``q_shape``: padded depth, phase rows,
    phase pitch; one image) in a buffer of its own (in cache; no copy of the whole input),
    then computes the ``K / C`` output planes of that channel as :func:`conv` does.
    """
    xf, wf, yf = x.ravel(), w.ravel(), y.ravel()
    N, C, D, H, W = x.shape
    Dq, R, pitch = q_shape[0], q_shape[1], q_shape[2]
    sh, sw = stride[1], stride[2]
    K = w.shape[0]
    w_k = w.size // K
    OD, OH, OW = y.shape[2], y.shape[3], y.shape[4]
    length = (OH - 1) * pitch + OW
    for task in nb.prange(N * C):
        n, c = divmod(np.int64(task), C)
        buf = np.zeros(Dq * R * pitch, x.dtype)
        _split_plane(buf, 0, xf, _row_base(x.shape, n, c, 0, 0), D, H, W, pad, sh, sw,
                     R // (sh * sw), pitch)
        acc = np.empty(min(chunk, length), y.dtype)
        for k in range(c * (K // C), (c + 1) * (K // C)):
            for od in range(OD):
                for j0 in range(0, length, chunk):
                    m = min(chunk, length - j0)
                    _accumulate(acc, m, 1, buf, od * stride[0] * R * pitch + j0, 0,
                                R * pitch, dil_d, wf, k * w_k, w.shape, h_off, w_off)
                    _store_rows(acc, 0, m, bias[k], yf, y.shape, k, od, n, 1, j0, pitch)


@nb.njit(cache=True, fastmath=_FMA)
def _scatter_row(yf, yb, OW, xf, xb, W, a, stride, offset):
    """``y[yb + i*stride - offset] += a * x[xb + i]`` for every ``i`` landing in the row."""
    lo = max(0, _ceil_div(offset, stride))
    hi = min(W, (OW - 1 + offset) // stride + 1)
    if hi <= lo:
        return
    y0, x0, m = np.uint64(yb + lo * stride - offset), np.uint64(xb + lo), np.uint64(hi - lo)
    st = np.uint64(stride)
    for j in range(m):
        yf[y0 + j * st] += a * xf[x0 + j]


@nb.njit(cache=True, parallel=True)
def conv_transpose(x, w, bias, stride, pad, dil, groups, y):
    """``y = conv_transpose(x, w) + bias`` on 3-D views, gathered per output row.

    Output row ``(n, k, od, oh)`` collects ``x[n, ci, iz, iy, :] * w[ci, k, r, s, t]`` over
    the taps with ``od + pad = iz*stride + r*dil`` (likewise for ``oh``); along ``w`` each
    tap is one strided pass.
    """
    xf, wf, yf = x.ravel(), w.ravel(), y.ravel()
    N, C, D, H, W = x.shape
    Kg, KD, KH, KW = w.shape[1], w.shape[2], w.shape[3], w.shape[4]
    K, OD, OH, OW = y.shape[1], y.shape[2], y.shape[3], y.shape[4]
    Cg = C // groups
    for task in nb.prange(N * K * OD * OH):
        q, oh = divmod(np.int64(task), OH)
        q, od = divmod(q, OD)
        n, k = divmod(q, K)
        g, kk = divmod(k, Kg)
        yb = _row_base(y.shape, n, k, od, oh)
        for o in range(OW):
            yf[yb + o] = bias[k]
        for c in range(g * Cg, (g + 1) * Cg):
            for r in range(KD):
                tz = od + pad[0] - r * dil[0]
                if tz < 0 or tz % stride[0] != 0 or tz // stride[0] >= D:
                    continue
                for s in range(KH):
                    ty = oh + pad[1] - s * dil[1]
                    if ty < 0 or ty % stride[1] != 0 or ty // stride[1] >= H:
                        continue
                    xb = _row_base(x.shape, n, c, tz // stride[0], ty // stride[1])
                    wb = _row_base(w.shape, c, kk, r, s)
                    for t in range(KW):
                        _scatter_row(yf, yb, OW, xf, xb, W, wf[wb + t], stride[2],
                                     pad[2] - t * dil[2])


# --------------------------------------------------------------------------- pooling


@nb.njit(cache=True)
def _max_row(yf, yb, xf, xb, lo, hi, stride, offset):
    if hi <= lo:
        return
    y0, x0, m = np.uint64(yb + lo), np.uint64(xb + lo * stride + offset), np.uint64(hi - lo)
    st = np.uint64(stride)
    for j in range(m):
        v, u = xf[x0 + j * st], yf[y0 + j]
        # ``v != v`` lets NaN in and keeps it, as PyTorch's max pooling does.
        yf[y0 + j] = v if v > u or v != v else u


@nb.njit(cache=True)
def _add_row(yf, yb, xf, xb, lo, hi, stride, offset):
    if hi <= lo:
        return
    y0, x0, m = np.uint64(yb + lo), np.uint64(xb + lo * stride + offset), np.uint64(hi - lo)
    st = np.uint64(stride)
    for j in range(m):
        yf[y0 + j] += xf[x0 + j * st]


@nb.njit(cache=True, parallel=True)
def max_pool(x, kernel, stride, pad, dil, y):
    """Max over each window; a window wholly in padding keeps its ``-inf``."""
    xf, yf = x.ravel(), y.ravel()
    N, C, D, H, W = x.shape
    OD, OH, OW = y.shape[2], y.shape[3], y.shape[4]
    for task in nb.prange(N * C * OD * OH):
        q, oh = divmod(np.int64(task), OH)
        q, od = divmod(q, OD)
        n, c = divmod(q, C)
        yb = _row_base(y.shape, n, c, od, oh)
        for o in range(OW):
            yf[yb + o] = -np.inf
        for r in range(kernel[0]):
            iz = od * stride[0] - pad[0] + r * dil[0]
            if iz < 0 or iz >= D:
                continue
            for s in range(kernel[1]):
                iy = oh * stride[1] - pad[1] + s * dil[1]
                if iy < 0 or iy >= H:
                    continue
                xb = _row_base(x.shape, n, c, iz, iy)
                for t in range(kernel[2]):
                    lo, hi = _tap_range(t * dil[2] - pad[2], stride[2], W, 0, OW)
                    _max_row(yf, yb, xf, xb, lo, hi, stride[2], t * dil[2] - pad[2])


@nb.njit(cache=True, parallel=True)
def avg_pool(x, kernel, stride, pad, dil, count_d, count_h, count_w, y):
    """Sum over each window divided by ``count_d[od] * count_h[oh] * count_w[ow]`` (the
    spec's ``divisor_counts()``: tap counts, or ``divisor_override``; ``nan`` where 0)."""
    xf, yf = x.ravel(), y.ravel()
    N, C, D, H, W = x.shape
    OD, OH, OW = y.shape[2], y.shape[3], y.shape[4]
    for task in nb.prange(N * C * OD * OH):
        q, oh = divmod(np.int64(task), OH)
        q, od = divmod(q, OD)
        n, c = divmod(q, C)
        yb = _row_base(y.shape, n, c, od, oh)
        for o in range(OW):
            yf[yb + o] = 0
        for r in range(kernel[0]):
            iz = od * stride[0] - pad[0] + r * dil[0]
            if iz < 0 or iz >= D:
                continue
            for s in range(kernel[1]):
                iy = oh * stride[1] - pad[1] + s * dil[1]
                if iy < 0 or iy >= H:
                    continue
                xb = _row_base(x.shape, n, c, iz, iy)
                for t in range(kernel[2]):
                    lo, hi = _tap_range(t * dil[2] - pad[2], stride[2], W, 0, OW)
                    _add_row(yf, yb, xf, xb, lo, hi, stride[2], t * dil[2] - pad[2])
        rows = count_d[od] * count_h[oh]
        for o in range(OW):
            divisor = rows * count_w[o]
            yf[yb + o] = yf[yb + o] / divisor if divisor != 0 else np.nan


@nb.njit(cache=True, parallel=True)
def adaptive_avg_pool(x, z0, z1, y0, y1, x0, x1, y):
    """Mean over window ``[z0[od], z1[od]) x [y0[oh], y1[oh]) x [x0[ow], x1[ow])`` (the
    spec's ``adaptive_windows()``)."""
    N, C, D, H, W = x.shape
    OD, OH, OW = y.shape[2], y.shape[3], y.shape[4]
    for task in nb.prange(N * C * OD * OH):
        q, oh = divmod(np.int64(task), OH)
        q, od = divmod(q, OD)
        n, c = divmod(q, C)
        for ow in range(OW):
            acc = 0.0
            for iz in range(z0[od], z1[od]):
                for iy in range(y0[oh], y1[oh]):
                    for ix in range(x0[ow], x1[ow]):
                        acc += x[n, c, iz, iy, ix]
            y[n, c, od, oh, ow] = acc / ((z1[od] - z0[od]) * (y1[oh] - y0[oh])
                                         * (x1[ow] - x0[ow]))


# --------------------------------------------------------------------------- parity ops
# PyTorch's CPU arg-max: taps in scan order (depth, height, width), the maximum starts at
# -inf with the index of the window's first in-bounds tap, and a tap wins if
# ``v > m or v != v``: the first of equal maxima, the last of several NaNs. Indices are flat
# into each input plane, ``(d*H + h)*W + w``. One task per ``(n, c)`` plane.


@nb.njit(cache=True, parallel=True)
def max_pool_with_indices(x, start_d, r0_d, r1_d, start_h, r0_h, r1_h, start_w, r0_w,
                          r1_w, dil, y, ind):
    """Window maxima into ``y`` and their indices into ``ind`` (int64).

    Per dim, window ``o`` starts at input index ``start[o]`` and its taps ``r0[o] <= r <
    r1[o]`` (``spec.geometry.tap_ranges``) lie in the input; a window with no such tap
    gives ``-inf`` and index -1.
    """
    xf, yf, jf = x.ravel(), y.ravel(), ind.ravel()
    N, C, D, H, W = x.shape
    OD, OH, OW = y.shape[2], y.shape[3], y.shape[4]
    in_plane, out_plane = D * H * W, OD * OH * OW
    for task in nb.prange(N * C):
        p = np.int64(task)
        xb, o = p * in_plane, p * out_plane
        for od in range(OD):
            for oh in range(OH):
                for ow in range(OW):
                    m = -np.inf  # compared exactly with float32 values too
                    best = -1
                    if r0_d[od] < r1_d[od] and r0_h[oh] < r1_h[oh] and r0_w[ow] < r1_w[ow]:
                        best = (((start_d[od] + r0_d[od] * dil[0]) * H + start_h[oh]
                                 + r0_h[oh] * dil[1]) * W + start_w[ow] + r0_w[ow] * dil[2])
                        for r in range(r0_d[od], r1_d[od]):
                            iz = start_d[od] + r * dil[0]
                            for s in range(r0_h[oh], r1_h[oh]):
                                row = (iz * H + start_h[oh] + s * dil[1]) * W + start_w[ow]
                                for t in range(r0_w[ow], r1_w[ow]):
                                    j = row + t * dil[2]
                                    v = xf[xb + j]
                                    if v > m or v != v:
                                        m = v
                                        best = j
                    yf[o] = m
                    jf[o] = best
                    o += 1


@nb.njit(cache=True, parallel=True)
def adaptive_max_pool(x, z0, z1, y0, y1, x0, x1, y, ind):
    """Maxima over the adaptive windows (as :func:`adaptive_avg_pool`) into ``y`` and their
    indices into ``ind``."""
    xf, yf, jf = x.ravel(), y.ravel(), ind.ravel()
    N, C, D, H, W = x.shape
    OD, OH, OW = y.shape[2], y.shape[3], y.shape[4]
    in_plane, out_plane = D * H * W, OD * OH * OW
    for task in nb.prange(N * C):
        p = np.int64(task)
        xb, o = p * in_plane, p * out_plane
        for od in range(OD):
            for oh in range(OH):
                for ow in range(OW):
                    m = -np.inf  # compared exactly with float32 values too
                    best = (z0[od] * H + y0[oh]) * W + x0[ow]
                    for iz in range(z0[od], z1[od]):
                        for iy in range(y0[oh], y1[oh]):
                            row = (iz * H + iy) * W
                            for ix in range(x0[ow], x1[ow]):
                                v = xf[xb + row + ix]
                                if v > m or v != v:
                                    m = v
                                    best = row + ix
                    yf[o] = m
                    jf[o] = best
                    o += 1


@nb.njit(cache=True, parallel=True)
def max_unpool(x, ind, y, bad):
    """``y[n, c].flat[ind[n, c].flat[i]] = x[n, c].flat[i]`` over zeros, ``i`` in order
    within each plane (of duplicate indices the last wins, as PyTorch's CPU loop).

    ``x`` and ``ind`` are ``(N*C, L_in)``, ``y`` ``(N*C, L_out)``. An index outside
    ``[0, L_out)`` writes nothing; ``bad[plane]`` is set to 1 and ``bad[N*C + plane]`` to
    the plane's last such index.
    """
    P, L = x.shape
    Lout = y.shape[1]
    for task in nb.prange(P):
        p = np.int64(task)
        for o in range(Lout):
            y[p, o] = 0
        for i in range(L):
            idx = ind[p, i]
            if idx < 0 or idx >= Lout:
                bad[p] = 1
                bad[P + p] = idx
                continue
            y[p, idx] = x[p, i]


# --------------------------------------------------------------------------- gradients


@nb.njit(cache=True, fastmath=_FMA)
def _dot_taps(acc, xf, x_row, gf, g0, m, kw, dil_w, stride_w):
    """``acc[t*m + j] += gy[g0 + j] * x[x_row + t*dil_w + j*stride_w]`` for every kernel
    column ``t`` and ``j < m``: one row of partial sums per tap, so the loop along the
    output row vectorises and no sum is reordered within a column."""
    m, sw = np.uint64(m), np.uint64(stride_w)
    for t in range(kw):
        a0 = np.uint64(t) * m
        x0 = np.uint64(x_row + t * dil_w)
        for j in range(m):
            acc[a0 + j] += gf[g0 + j] * xf[x0 + j * sw]


@nb.njit(cache=True, parallel=True)
def conv_weight_grad(xp, gy, stride, dil, kernel, groups, columns, gw):
    """``gw[k, c, r] = sum_{n, o} xp[n, g*Cg + c, o*stride + r*dil] * gy[n, k, o]``: the
    weight gradient of ``conv``, ``xp`` the zero-padded input (``(N, C, Dp, Hp, Wp)``),
    ``gw`` ``(K, C/groups, taps)``.

    One task per ``(k, c)`` pair. The output row is cut into chunks of ``columns``; for each,
    every sample's rows add into ``taps x columns`` partial sums (in L1), which are then
    added into the task's totals, so the padded zeros take part in every product, as in
    the direct formula.
    """
    xf, gf = xp.ravel(), gy.ravel()
    N, C, Dp, Hp, Wp = xp.shape
    K, OD, OH, OW = gy.shape[1], gy.shape[2], gy.shape[3], gy.shape[4]
    KD, KH, KW = kernel[0], kernel[1], kernel[2]
    cg, kg = C // groups, K // groups
    taps = KD * KH * KW
    for task in nb.prange(K * cg):
        k, c = divmod(np.int64(task), cg)
        channel = k // kg * cg + c
        total = np.zeros(taps, gy.dtype)
        acc = np.empty(taps * columns, gy.dtype)
        for j0 in range(0, OW, columns):
            m = min(columns, OW - j0)
            acc[:taps * m] = 0
            for n in range(N):
                for od in range(OD):
                    for oh in range(OH):
                        g0 = np.uint64(_row_base(gy.shape, n, k, od, oh) + j0)
                        for kd in range(KD):
                            for kh in range(KH):
                                x_row = (_row_base(xp.shape, n, channel,
                                                   od * stride[0] + kd * dil[0],
                                                   oh * stride[1] + kh * dil[1])
                                         + j0 * stride[2])
                                _dot_taps(acc[(kd * KH + kh) * KW * m:], xf, x_row, gf, g0,
                                          m, KW, dil[2], stride[2])
            for r in range(taps):
                s = acc[r * m]
                for j in range(1, m):
                    s += acc[r * m + j]
                total[r] += s
        for r in range(taps):
            gw[k, c, r] = total[r]
