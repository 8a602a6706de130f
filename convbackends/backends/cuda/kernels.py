"""Numba CUDA kernels of the ``cuda`` backend, made by factories and compiled once each.

Every factory is memoised per specialisation (dtype, tile shape, array rank), so a kernel is
compiled on its first launch and reused afterwards; ``cache=True`` keeps the compiled code
on disk between processes (the simulator ignores it). Importing this module imports
``numba.cuda``: only the backend imports it, lazily, after ``available()``.

All arrays reach the kernels C-contiguous and flattened, with the geometry passed as
scalars and 3-tuples: 1-D and 2-D problems are 3-D problems with leading extents of 1.
Per-position geometry that the spec computes once (average pooling's divisors, adaptive
windows) arrives as one small flat int64 device array per call, the three dims'
arrays end to end.
The implicit GEMM casts its array indices to ``uint64`` (they are never negative) because a
signed index makes Numba emit negative-index wrap-around code.
"""

import functools

import numpy as np
from numba import cuda
from numba.cuda.core import config as _cuda_config

from ...errors import BackendUnavailableError
from .plan import grid_1d

SIMULATOR = bool(_cuda_config.ENABLE_CUDASIM)

# 16-byte alignment lets NVVM turn a thread's group of 4 shared loads into one 128-bit load;
# the simulator refuses any alignment argument.
_SHARED_ALIGN = None if SIMULATOR else 16
_THREADS_1D = 32 if SIMULATOR else 256

_FLOAT = {"float32": np.float32, "float64": np.float64}


def launch_1d(kernel, total, *args):
    """Launch a grid-stride kernel over ``total`` items."""
    kernel[grid_1d(total, _THREADS_1D), _THREADS_1D](*args)


def probe():
    """Compile and run a one-element kernel; raises what a broken install raises."""
    out = cuda.device_array(1, dtype=np.float32)
    _probe_kernel[1, 1](out)
    if out.copy_to_host()[0] != 1.0:
        raise BackendUnavailableError("a probe kernel ran but did not write its result")


@cuda.jit(cache=True)
def _probe_kernel(out):
    out[0] = 1.0


# --------------------------------------------------------------------------- convolution


@functools.lru_cache(maxsize=None)
def implicit_gemm_conv(dtype, tile, split=False):
    """The tiled implicit-GEMM convolution kernel for ``dtype``, ``tile`` and ``split``.

    Per group ``g`` the convolution is the GEMM ``Y[m, p] = sum_k Wt[k, m] * X[k, p]`` with
    ``m`` an output channel of the group (``Kg`` of them), ``p`` an output position over
    batch and space (``npos``), ``k`` an (input channel, kernel tap) pair (``Kred``). ``X``
    is never materialised: the entry ``(k, p)`` is read straight from the input through the
    host-built table ``tab[k] = (offset, dz, dy, dx)``, or is zero in the padding.

    A block of ``tile.threads`` threads computes one ``BM x BN`` tile of ``Y``; grid
    ``(ceil(npos / BN), ceil(Kg / BM), groups * k_slices)``. With ``split`` (split-K, for
    layers with too few tiles to fill the GPU; ``k_slices`` is 1 without it) block ``z``
    reduces only slice
    ``z % k_slices`` of the ``BK``-row steps and writes its partial sums to ``y[slice]``, a
    ``(k_slices, *output)`` workspace that :func:`sum_slices` then adds up in a fixed order
    (deterministic, unlike atomic adds). The reduction advances ``BK`` rows at a
    time through two shared-memory buffers: while the tile in one buffer is multiplied, the
    next one is fetched from global memory into registers, then stored to the other buffer,
    so one barrier per step suffices. Consecutive threads fetch consecutive ``m`` (the weight
    is pre-transposed to ``(groups, Kred, Kg)``) and consecutive ``p``, so both global loads
    coalesce. Each thread accumulates a ``TM x TN`` register micro-tile made of groups of 4
    rows and 4 columns (128-bit shared loads).

    Parameters
    ----------
    dtype : {"float32", "float64"}
        Element type of input, weight, bias and output; the accumulator type too.
    tile : tuple ``(BM, BN, BK, TM, TN)``
        ``TM`` and ``TN`` multiples of 4; ``(BM/TM)*(BN/TN)`` threads, a multiple of both
        ``BM`` and ``BN``.
    split : bool
        Compile the split-K variant. A separate kernel, because the slice bookkeeping costs
        registers (100 against 82 for float32 64x128, one block fewer per SM) that the
        common case should not pay.

    Returns
    -------
    kernel(x, wt, tab, bias, has_bias, y, in_dims, out_dims, stride, pad, C, K, Cg, Kg,
    Kred, npos, k_slices), launched as ``kernel[grid, threads]``.
    """
    ft = _FLOAT[dtype]
    BM, BN, BK, TM, TN = tile
    THREADS = (BM // TM) * (BN // TN)
    TX = BN // TN
    A_LOADS, A_STEP = BM * BK // THREADS, THREADS // BM
    B_LOADS, B_STEP = BN * BK // THREADS, THREADS // BN
    M_STRIDE, N_STRIDE = BM // (TM // 4), BN // (TN // 4)
    A_SIZE, B_SIZE = BK * BM, BK * BN
    A_SHARED, B_SHARED = 2 * A_SIZE, 2 * B_SIZE
    ACC = TM * TN
    ALIGN = _SHARED_ALIGN
    SPLIT = bool(split)

    @cuda.jit(device=True)
    def fetch_weight(wt, wbase, m_ok, k0, Kred, Kg, regs):
        for j in range(A_LOADS):
            k = k0 + j * A_STEP
            v = ft(0)
            if m_ok and k < Kred:
                v = wt[np.uint64(wbase + k * Kg)]
            regs[j] = v

    @cuda.jit(device=True)
    def fetch_input(x, tab, xbase, p_ok, iz0, iy0, ix0, D, H, W, k0, Kred, regs):
        for j in range(B_LOADS):
            k = k0 + j * B_STEP
            v = ft(0)
            if p_ok and k < Kred:
                row = np.uint64(k)
                iz = iz0 + tab[row, 1]
                iy = iy0 + tab[row, 2]
                ix = ix0 + tab[row, 3]
                if 0 <= iz < D and 0 <= iy < H and 0 <= ix < W:
                    v = x[np.uint64(xbase + tab[row, 0])]
            regs[j] = v

    @cuda.jit(device=True)
    def stash_weight(regs, a_s, offset):
        for j in range(A_LOADS):
            a_s[np.uint64(offset + j * A_STEP * BM)] = regs[j]

    @cuda.jit(device=True)
    def stash_input(regs, b_s, offset):
        for j in range(B_LOADS):
            b_s[np.uint64(offset + j * B_STEP * BN)] = regs[j]

    @cuda.jit(device=True)
    def multiply(a_s, b_s, a_base, b_base, acc, a_frag, b_frag):
        # a_base and b_base count groups of 4 elements: indexing as 4 * group + lane shows
        # NVVM 16-byte aligned groups, so it emits 128-bit shared loads.
        for kk in range(BK):
            a_row = np.uint64(a_base + kk * (BM // 4))
            b_row = np.uint64(b_base + kk * (BN // 4))
            for i in range(TM):
                a_frag[i] = a_s[np.uint64(4) * (a_row + np.uint64((i // 4) * (M_STRIDE // 4)))
                                + np.uint64(i % 4)]
            for j in range(TN):
                b_frag[j] = b_s[np.uint64(4) * (b_row + np.uint64((j // 4) * (N_STRIDE // 4)))
                                + np.uint64(j % 4)]
            for i in range(TM):
                for j in range(TN):
                    acc[i * TN + j] += a_frag[i] * b_frag[j]

    @cuda.jit(cache=True)
    def kernel(x, wt, tab, bias, has_bias, y, in_dims, out_dims, stride, pad, C, K, Cg, Kg,
               Kred, npos, k_slices):
        D, H, W = in_dims
        OD, OH, OW = out_dims
        tid = cuda.threadIdx.x
        if SPLIT:
            g = cuda.blockIdx.z // k_slices
            k_slice = cuda.blockIdx.z - g * k_slices
        else:
            g = cuda.blockIdx.z
            k_slice = 0
        m0 = cuda.blockIdx.y * BM
        p0 = cuda.blockIdx.x * BN
        a_s = cuda.shared.array(A_SHARED, ft, alignment=ALIGN)
        b_s = cuda.shared.array(B_SHARED, ft, alignment=ALIGN)
        acc = cuda.local.array(ACC, ft)
        a_frag = cuda.local.array(TM, ft)
        b_frag = cuda.local.array(TN, ft)
        a_regs = cuda.local.array(A_LOADS, ft)
        b_regs = cuda.local.array(B_LOADS, ft)
        for i in range(ACC):
            acc[i] = ft(0)

        # This thread always fetches weight column a_col and input column b_col.
        a_col, a_row = tid % BM, tid // BM
        m_ok = m0 + a_col < Kg
        wbase = g * Kred * Kg + m0 + a_col
        b_col, b_row = tid % BN, tid // BN
        p = p0 + b_col
        p_ok = p < npos
        plane = OH * OW
        out_size = OD * plane
        n = p // out_size
        rest = p - n * out_size
        oz = rest // plane
        rest -= oz * plane
        oy = rest // OW
        ox = rest - oy * OW
        iz0 = oz * stride[0] - pad[0]
        iy0 = oy * stride[1] - pad[1]
        ix0 = ox * stride[2] - pad[2]
        xbase = (n * C + g * Cg) * (D * H * W) + (iz0 * H + iy0) * W + ix0

        # This block's steps of BK reduction rows: [first, first + steps).
        all_steps = (Kred + BK - 1) // BK
        if SPLIT:
            per_slice = (all_steps + k_slices - 1) // k_slices
            first = k_slice * per_slice
            steps = max(0, min(all_steps - first, per_slice))
        else:
            first, steps = 0, all_steps

        a_off = a_row * BM + a_col
        b_off = b_row * BN + b_col
        fetch_weight(wt, wbase, m_ok, first * BK + a_row, Kred, Kg, a_regs)
        fetch_input(x, tab, xbase, p_ok, iz0, iy0, ix0, D, H, W, first * BK + b_row, Kred,
                    b_regs)
        stash_weight(a_regs, a_s, a_off)
        stash_input(b_regs, b_s, b_off)
        cuda.syncthreads()

        ty, tx = tid // TX, tid % TX
        for step in range(steps):
            cur = step % 2
            more = step + 1 < steps
            if more:
                k0 = (first + step + 1) * BK
                fetch_weight(wt, wbase, m_ok, k0 + a_row, Kred, Kg, a_regs)
                fetch_input(x, tab, xbase, p_ok, iz0, iy0, ix0, D, H, W, k0 + b_row, Kred,
                            b_regs)
            multiply(a_s, b_s, cur * (A_SIZE // 4) + ty, cur * (B_SIZE // 4) + tx, acc, a_frag,
                     b_frag)
            if more:
                stash_weight(a_regs, a_s, (1 - cur) * A_SIZE + a_off)
                stash_input(b_regs, b_s, (1 - cur) * B_SIZE + b_off)
            cuda.syncthreads()

        # Output offsets of this thread's TN columns (-1: past the last position).
        y_off = cuda.local.array(TN, np.int64)
        slice_base = k_slice * npos * K
        for j in range(TN):
            q = p0 + (j // 4) * N_STRIDE + tx * 4 + j % 4
            nq = q // out_size
            y_off[j] = slice_base + nq * K * out_size + (q - nq * out_size) if q < npos else -1
        for i in range(TM):
            m = m0 + (i // 4) * M_STRIDE + ty * 4 + i % 4
            if m < Kg:
                co = g * Kg + m
                b = bias[co] if has_bias else ft(0)
                for j in range(TN):
                    if y_off[j] >= 0:
                        y[np.uint64(y_off[j] + co * out_size)] = acc[i * TN + j] + b

    return kernel


@functools.lru_cache(maxsize=None)
def sum_slices(dtype):
    """``(partial, y, bias, has_bias, k_slices, total, K, out_size)``: split-K's last step.

    ``y[i] = sum over s of partial[s * total + i]`` (+ the bias of ``i``'s channel), the
    slices added in order so results repeat bit for bit.
    """
    ft = _FLOAT[dtype]

    @cuda.jit(cache=True)
    def kernel(partial, y, bias, has_bias, k_slices, total, K, out_size):
        for i in range(cuda.grid(1), total, cuda.gridsize(1)):
            acc = ft(0)
            for s in range(k_slices):
                acc += partial[s * total + i]
            if has_bias:
                acc += bias[(i // out_size) % K]
            y[i] = acc

    return kernel


@functools.lru_cache(maxsize=None)
def direct_conv(dtype):
    """One thread per output element: ``y[n, k, od, oh, ow]`` summed over ``Cg x taps``.

    Serves every geometry; the fallback where the implicit GEMM's channel tile would be
    mostly empty (few output channels per group, e.g. depthwise). Taps in the padding
    multiply zeros, as the direct formula's padded input does.
    Kernel arguments: ``(x, w, bias, has_bias, y, in_dims, out_dims, kernel, stride, pad,
    dil, C, K, Cg, Kg, total)``; launch with :func:`launch_1d`.
    """
    ft = _FLOAT[dtype]

    @cuda.jit(cache=True)
    def kernel(x, w, bias, has_bias, y, in_dims, out_dims, ksize, stride, pad, dil, C, K, Cg,
               Kg, total):
        D, H, W = in_dims
        OD, OH, OW = out_dims
        KD, KH, KW = ksize
        for i in range(cuda.grid(1), total, cuda.gridsize(1)):
            ow = i % OW
            t = i // OW
            oh = t % OH
            t //= OH
            od = t % OD
            t //= OD
            k = t % K
            n = t // K
            g = k // Kg
            acc = ft(0)
            for c in range(Cg):
                xc = ((n * C + g * Cg + c) * D) * H * W
                wc = (k * Cg + c) * KD * KH * KW
                for r in range(KD):
                    iz = od * stride[0] - pad[0] + r * dil[0]
                    z_in = 0 <= iz < D
                    for s in range(KH):
                        iy = oh * stride[1] - pad[1] + s * dil[1]
                        y_in = z_in and 0 <= iy < H
                        for u in range(KW):
                            ix = ow * stride[2] - pad[2] + u * dil[2]
                            # A tap in the padding multiplies a zero: 0 * Inf is NaN, as in
                            # the direct formula (and the implicit GEMM).
                            v = ft(0)
                            if y_in and 0 <= ix < W:
                                v = x[xc + (iz * H + iy) * W + ix]
                            acc += v * w[wc + (r * KH + s) * KW + u]
            if has_bias:
                acc += bias[k]
            y[i] = acc

    return kernel


@functools.lru_cache(maxsize=None)
def direct_conv_transpose(dtype):
    """One thread per output element, gathering the inputs that scatter onto it.

    ``y[n, co, o]`` sums ``x[n, ci, i] * w[ci, co % Kg, r]`` over ``o + pad = i*stride +
    r*dil`` (per spatial dim), ``ci`` in ``co``'s group. Arguments as :func:`direct_conv`,
    with ``w`` of shape ``(C, Kg, *kernel)`` flattened.
    """
    ft = _FLOAT[dtype]

    @cuda.jit(cache=True)
    def kernel(x, w, bias, has_bias, y, in_dims, out_dims, ksize, stride, pad, dil, C, K, Cg,
               Kg, total):
        D, H, W = in_dims
        OD, OH, OW = out_dims
        KD, KH, KW = ksize
        for i in range(cuda.grid(1), total, cuda.gridsize(1)):
            ow = i % OW
            t = i // OW
            oh = t % OH
            t //= OH
            od = t % OD
            t //= OD
            k = t % K
            n = t // K
            g = k // Kg
            kk = k - g * Kg
            acc = ft(0)
            for c in range(Cg):
                ci = g * Cg + c
                xc = (n * C + ci) * D * H * W
                wc = (ci * Kg + kk) * KD * KH * KW
                for r in range(KD):
                    tz = od + pad[0] - r * dil[0]
                    if tz < 0 or tz % stride[0] != 0 or tz // stride[0] >= D:
                        continue
                    for s in range(KH):
                        ty = oh + pad[1] - s * dil[1]
                        if ty < 0 or ty % stride[1] != 0 or ty // stride[1] >= H:
                            continue
                        for u in range(KW):
                            tx = ow + pad[2] - u * dil[2]
                            if tx < 0 or tx % stride[2] != 0 or tx // stride[2] >= W:
                                continue
                            xi = xc + ((tz // stride[0]) * H + ty // stride[1]) * W \
                                + tx // stride[2]
                            acc += x[xi] * w[wc + (r * KH + s) * KW + u]
            if has_bias:
                acc += bias[k]
            y[i] = acc

    return kernel


# --------------------------------------------------------------------------- pooling


@functools.lru_cache(maxsize=None)
def max_pool(dtype):
    """``(x, y, in_dims, out_dims, kernel, stride, pad, dil, total)``: window maxima.

    Padding never wins (a window wholly in padding gives ``-inf``, as PyTorch); NaN
    propagates.
    """
    ft = _FLOAT[dtype]

    @cuda.jit(cache=True)
    def kernel(x, y, in_dims, out_dims, ksize, stride, pad, dil, total):
        D, H, W = in_dims
        OD, OH, OW = out_dims
        for i in range(cuda.grid(1), total, cuda.gridsize(1)):
            ow = i % OW
            t = i // OW
            oh = t % OH
            t //= OH
            od = t % OD
            nc = t // OD
            m = ft(-np.inf)
            for r in range(ksize[0]):
                iz = od * stride[0] - pad[0] + r * dil[0]
                if iz < 0 or iz >= D:
                    continue
                for s in range(ksize[1]):
                    iy = oh * stride[1] - pad[1] + s * dil[1]
                    if iy < 0 or iy >= H:
                        continue
                    for u in range(ksize[2]):
                        ix = ow * stride[2] - pad[2] + u * dil[2]
                        if ix < 0 or ix >= W:
                            continue
                        v = x[((nc * D + iz) * H + iy) * W + ix]
                        if v > m or v != v:
                            m = v
            y[i] = m

    return kernel


@functools.lru_cache(maxsize=None)
def avg_pool(dtype):
    """``(x, y, in_dims, out_dims, kernel, stride, pad, dil, counts, total)``: window means.

    ``counts`` holds the divisors' factors per dim, end to end (``OD + OH + OW`` entries,
    from ``PoolSpec.divisor_counts()``: PyTorch's tap counts, or ``divisor_override``); the
    divisor of a window is the product of its three. A divisor of 0 (a window with no tap
    that counts) gives NaN.
    """
    ft = _FLOAT[dtype]

    @cuda.jit(cache=True)
    def kernel(x, y, in_dims, out_dims, ksize, stride, pad, dil, counts, total):
        D, H, W = in_dims
        OD, OH, OW = out_dims
        for i in range(cuda.grid(1), total, cuda.gridsize(1)):
            ow = i % OW
            t = i // OW
            oh = t % OH
            t //= OH
            od = t % OD
            nc = t // OD
            divisor = counts[od] * counts[OD + oh] * counts[OD + OH + ow]
            acc = ft(0)
            for r in range(ksize[0]):
                iz = od * stride[0] - pad[0] + r * dil[0]
                if iz < 0 or iz >= D:
                    continue
                for s in range(ksize[1]):
                    iy = oh * stride[1] - pad[1] + s * dil[1]
                    if iy < 0 or iy >= H:
                        continue
                    for u in range(ksize[2]):
                        ix = ow * stride[2] - pad[2] + u * dil[2]
                        if ix < 0 or ix >= W:
                            continue
                        acc += x[((nc * D + iz) * H + iy) * W + ix]
            y[i] = acc / divisor if divisor != 0 else ft(np.nan)

    return kernel


@cuda.jit(device=True)
def _window(windows, o, offset, ends):
    """Adaptive window ``o`` of the dim whose entries start at ``windows[offset]``: its
    ``(start, end)``, the ends ``ends`` entries after the starts."""
    return windows[offset + o], windows[ends + offset + o]


@functools.lru_cache(maxsize=None)
def adaptive_avg_pool(dtype):
    """``(x, y, in_dims, out_dims, windows, total)``: adaptive window means.

    ``windows`` is ``PoolSpec.adaptive_windows()`` flattened: the starts of the three dims
    end to end, then their ends (``2 * (OD + OH + OW)`` entries).
    """
    ft = _FLOAT[dtype]

    @cuda.jit(cache=True)
    def kernel(x, y, in_dims, out_dims, windows, total):
        D, H, W = in_dims
        OD, OH, OW = out_dims
        ends = OD + OH + OW
        for i in range(cuda.grid(1), total, cuda.gridsize(1)):
            ow = i % OW
            t = i // OW
            oh = t % OH
            t //= OH
            od = t % OD
            nc = t // OD
            z0, z1 = _window(windows, od, 0, ends)
            y0, y1 = _window(windows, oh, OD, ends)
            x0, x1 = _window(windows, ow, OD + OH, ends)
            acc = ft(0)
            for iz in range(z0, z1):
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        acc += x[((nc * D + iz) * H + iy) * W + ix]
            y[i] = acc / ((z1 - z0) * (y1 - y0) * (x1 - x0))

    return kernel


# PyTorch's CPU rule for the arg-max, shared by both kernels below: taps in scan order
# (depth, then height, then width), the maximum starts at -inf with the index of the
# window's first in-bounds tap, and a tap wins if ``v > m or v != v``: the first of equal
# maxima, the last of several NaNs. A window with no tap in the input gives -inf and -1.


@functools.lru_cache(maxsize=None)
def max_pool_with_indices(dtype):
    """``(x, y, ind, in_dims, out_dims, kernel, stride, pad, dil, total)``: window maxima
    and their flat indices ``(d*H + h)*W + w`` into each input plane (int64)."""
    ft = _FLOAT[dtype]

    @cuda.jit(cache=True)
    def kernel(x, y, ind, in_dims, out_dims, ksize, stride, pad, dil, total):
        D, H, W = in_dims
        OD, OH, OW = out_dims
        plane = D * H * W
        for i in range(cuda.grid(1), total, cuda.gridsize(1)):
            ow = i % OW
            t = i // OW
            oh = t % OH
            t //= OH
            od = t % OD
            xb = (t // OD) * plane
            m = ft(-np.inf)
            best = -1
            for r in range(ksize[0]):
                iz = od * stride[0] - pad[0] + r * dil[0]
                if iz < 0 or iz >= D:
                    continue
                for s in range(ksize[1]):
                    iy = oh * stride[1] - pad[1] + s * dil[1]
                    if iy < 0 or iy >= H:
                        continue
                    for u in range(ksize[2]):
                        ix = ow * stride[2] - pad[2] + u * dil[2]
                        if ix < 0 or ix >= W:
                            continue
                        j = (iz * H + iy) * W + ix
                        if best < 0:
                            best = j
                        v = x[xb + j]
                        if v > m or v != v:
                            m = v
                            best = j
            y[i] = m
            ind[i] = best

    return kernel


@functools.lru_cache(maxsize=None)
def adaptive_max_pool(dtype):
    """``(x, y, ind, in_dims, out_dims, windows, total)``: adaptive window maxima and their
    flat indices into each input plane; ``windows`` as for :func:`adaptive_avg_pool`."""
    ft = _FLOAT[dtype]

    @cuda.jit(cache=True)
    def kernel(x, y, ind, in_dims, out_dims, windows, total):
        D, H, W = in_dims
        OD, OH, OW = out_dims
        plane = D * H * W
        ends = OD + OH + OW
        for i in range(cuda.grid(1), total, cuda.gridsize(1)):
            ow = i % OW
            t = i // OW
            oh = t % OH
            t //= OH
            od = t % OD
            xb = (t // OD) * plane
            z0, z1 = _window(windows, od, 0, ends)
            y0, y1 = _window(windows, oh, OD, ends)
            x0, x1 = _window(windows, ow, OD + OH, ends)
            m = ft(-np.inf)
            best = (z0 * H + y0) * W + x0
            for iz in range(z0, z1):
                for iy in range(y0, y1):
                    for ix in range(x0, x1):
                        j = (iz * H + iy) * W + ix
                        v = x[xb + j]
                        if v > m or v != v:
                            m = v
                            best = j
            y[i] = m
            ind[i] = best

    return kernel


# max_unpool in three deterministic passes, parallel over elements: ``winner[o]`` (one int64
# per output element) is set to -1, then to the largest flat input position that scatters
# onto ``o`` (cuda.atomic.max: the last in scan order within the plane, as PyTorch's CPU
# loop), then each output reads its winner's value or 0. Same result as the sequential
# loop, whatever the thread order.


@cuda.jit(cache=True)
def unpool_clear(winner, total):
    """``(winner, total)``: every entry -1."""
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        winner[i] = -1


@cuda.jit(cache=True)
def unpool_claim(ind, winner, bad, in_plane, out_plane, total):
    """``(ind, winner, bad, in_plane, out_plane, total)``: input ``i`` claims output
    ``plane * out_plane + ind[i]``; an index outside ``[0, out_plane)`` writes nothing and
    raises ``bad[0]`` to ``i + 1`` (so ``bad[0] - 1`` is the last bad input in scan order)."""
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        idx = ind[i]
        if idx < 0 or idx >= out_plane:
            cuda.atomic.max(bad, 0, i + 1)
            continue
        cuda.atomic.max(winner, (i // in_plane) * out_plane + idx, i)


@functools.lru_cache(maxsize=None)
def unpool_gather(dtype):
    """``(x, winner, y, total)``: ``y[o] = x[winner[o]]``, or 0 where nothing landed."""
    ft = _FLOAT[dtype]

    @cuda.jit(cache=True)
    def kernel(x, winner, y, total):
        for i in range(cuda.grid(1), total, cuda.gridsize(1)):
            w = winner[i]
            y[i] = x[w] if w >= 0 else ft(0)

    return kernel


# --------------------------------------------------------------------------- data movement


@functools.lru_cache(maxsize=None)
def transpose_weight():
    """``(w, wt, Kg, Kred, total)``: ``wt[g, k, m] = w[g*Kg + m, k]``, both flattened.

    Puts a group's output channels next to each other along the reduction index, so the
    implicit GEMM's weight tile loads coalesce.
    """

    @cuda.jit(cache=True)
    def kernel(w, wt, Kg, Kred, total):
        for i in range(cuda.grid(1), total, cuda.gridsize(1)):
            co = i // Kred
            k = i - co * Kred
            g = co // Kg
            wt[(g * Kred + k) * Kg + co - g * Kg] = w[i]

    return kernel


def contiguous_copy(ndim):
    """``(src, dst, total)``: a strided ``src`` of rank 1 to 5 into the flat ``dst``."""
    return {1: _copy1, 2: _copy2, 3: _copy3, 4: _copy4, 5: _copy5}[ndim]


@cuda.jit(cache=True)
def _copy1(src, dst, total):
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        dst[i] = src[i]


@cuda.jit(cache=True)
def _copy2(src, dst, total):
    B = src.shape[1]
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        dst[i] = src[i // B, i % B]


@cuda.jit(cache=True)
def _copy3(src, dst, total):
    _, B, C = src.shape
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        t = i // C
        dst[i] = src[t // B, t % B, i % C]


@cuda.jit(cache=True)
def _copy4(src, dst, total):
    _, B, C, D = src.shape
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        t = i // D
        u = t // C
        dst[i] = src[u // B, u % B, t % C, i % D]


@cuda.jit(cache=True)
def _copy5(src, dst, total):
    _, B, C, D, E = src.shape
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        t = i // E
        u = t // D
        v = u // C
        dst[i] = src[v // B, v % B, u % C, t % D, i % E]
