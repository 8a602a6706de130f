"""``im2col``: unfold the input into columns, then one BLAS GEMM per group.

Limits: convolution, transposed convolution and the weight gradient of convolution (no
pooling). Every geometry and dtype.

Convolution: the columns ``cols[n, (c, r), p] = x[n, c, p*stride + r*dilation - pad]`` are
gathered with one strided copy per kernel offset ``r`` (each a long, regular copy; padding
becomes zeroed slabs, never a padded copy of the input; the batch split across threads), then
``y[n, group] = W_group (K/g, C/g*R) @ cols[n, group] (C/g*R, P)`` through NumPy's batched
matmul, written straight into the output. Small outputs (``P < SMALL_OUTPUT``) put the batch
into the GEMM's columns instead. A 1x1 kernel at stride 1 without padding needs no unfold at
all: the input itself is the column matrix. The workspace (``N*C*R*P`` elements) is bounded
by running the batch in chunks of at most ``workspace_limit`` bytes.

Channels last (``data_format="channels_last"``) is computed natively where that measured
faster than the layout lowering (groups 1, at least ``CHANNELS_LAST_MIN_ROWS`` output rows
and ``CHANNELS_LAST_MIN_CHANNELS`` input channels): the patches ``(N*P, R*C)`` (channels
innermost, so each copy moves runs of ``C`` elements) times the weight as ``(R*C, K)`` give
the ``(N, *out, K)`` output directly, one GEMM per batch chunk; a 1x1 kernel at stride 1 is
``(N*P, C) @ (C, K)`` on the input itself.

Transposed convolution is the adjoint: ``cols = W_groupᵀ @ x`` then col2im, one strided
add per kernel offset into the full output, which is then cropped by the padding. At stride
1 with finite weights and at least 32 channels per group on both sides it is the forward
convolution of the flipped filter instead (no
scatter; see :func:`_as_forward_conv`).

The weight gradient of ``conv`` has a kernel of its own (its lowering, a convolution over
swapped axes, is a tiny-batch convolution with a kernel the size of the output):
``grad_w[group] = grad_out[group] (K/g, N*P) @ cols[group]ᵀ (N*P, C/g*R)``, the columns
unfolded as the forward's with the batch next to the output positions, so one GEMM
contracts over both; the batch runs in chunks, accumulated. Depthwise (one input channel
per group) is a per-channel reduction instead: one ``einsum`` per kernel offset over the
windows of the zero-padded input. Both are sums of the direct formula's products, padded
zeros included, so NaN and Inf come out as the direct formula's. The input gradient stays
the ``conv_transpose`` lowering: a GEMM plus col2im of its own measured no faster (at
stride 1 that lowering then runs the forward convolution above).
"""

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..ops.lowerings import transpose_as_conv, transposed_filter
from ..spec.geometry import tap_range
from ..spec.layout import CHANNELS_LAST
from . import _blas
from .base import Backend

DEFAULT_WORKSPACE_LIMIT = 256 * 2**20
# The channels-last kernel runs where it beat the layout lowering (docs/perf-layout.md,
# ResNet-18 at batch 1 and 8): from 784 output rows N*P (0.13-0.82x the lowering's time;
# at 392 rows and below it took 1.6-7.5x) and with more than 3 input channels (the 3-channel
# stem's patches are runs of 3 elements: 1.3-2x).
CHANNELS_LAST_MIN_ROWS = 784
CHANNELS_LAST_MIN_CHANNELS = 16
# Channels per group, in and out, from which a stride-1 transposed convolution runs as the
# forward convolution of the flipped filter (see _as_forward_conv).
FORWARD_TRANSPOSE_MIN_CHANNELS = 32
# Below this many output positions per sample, the batch joins the GEMM's columns.
SMALL_OUTPUT = 256


def _offsets(kernel):
    return np.ndindex(*kernel)


def _fill_columns(cols, x, spec):
    """``cols[n, c, r, *out] = x[n, c, out*stride + r*dilation - pad]``, zero outside x.

    Reads ``x`` unpadded: padding costs a few zeroed slabs instead of a padded copy.
    """
    nd = spec.ndim
    for r, offset in enumerate(_offsets(spec.kernel)):
        dst, src, ranges = [], [], []
        for L, O, s, d, (pb, _), k in zip(spec.input_spatial, spec.output_spatial,
                                           spec.stride, spec.dilation, spec.padding, offset):
            # The input index ``o*s - pb + k*d`` is symmetric in (o, s) and (k, d), so the
            # outputs ``o`` whose tap ``k`` lands inside the input are the clipped taps of
            # window ``k`` for a kernel of ``O`` taps at stride ``d`` and dilation ``s``.
            lo, hi = tap_range(k, L, O, d, pb, s)
            start = k * d - pb
            ranges.append((lo, hi, O))
            dst.append(slice(lo, hi))
            src.append(slice(start + lo * s, start + (hi - 1) * s + 1, s) if hi > lo
                       else slice(0, 0))
        plane = cols[:, :, r]
        plane[(Ellipsis,) + tuple(dst)] = x[(slice(None), slice(None)) + tuple(src)]
        for axis, (lo, hi, O) in enumerate(ranges):
            for zero in (slice(0, lo), slice(hi, O)):
                if zero.stop > zero.start:
                    index = [slice(None)] * (2 + nd)
                    index[2 + axis] = zero
                    plane[tuple(index)] = 0


def _fill_columns_last(cols, x, spec):
    """Channels last: ``cols[n, *out, *r, c] = x[n, out*stride + r*dilation - pad, c]``,
    zero outside x; each copy moves runs of ``C`` contiguous elements."""
    nd = spec.ndim
    taps = cols.reshape(cols.shape[:1 + nd] + (-1, cols.shape[-1]))
    for r, offset in enumerate(_offsets(spec.kernel)):
        dst, src, ranges = [], [], []
        for L, O, s, d, (pb, _), k in zip(spec.input_spatial, spec.output_spatial,
                                           spec.stride, spec.dilation, spec.padding, offset):
            lo, hi = tap_range(k, L, O, d, pb, s)    # as in _fill_columns
            start = k * d - pb
            ranges.append((lo, hi, O))
            dst.append(slice(lo, hi))
            src.append(slice(start + lo * s, start + (hi - 1) * s + 1, s) if hi > lo
                       else slice(0, 0))
        plane = taps[(Ellipsis, r, slice(None))]
        plane[(slice(None),) + tuple(dst)] = x[(slice(None),) + tuple(src)]
        for axis, (lo, hi, O) in enumerate(ranges):
            for zero in (slice(0, lo), slice(hi, O)):
                if zero.stop > zero.start:
                    index = [slice(None)] * (2 + nd)
                    index[1 + axis] = zero
                    plane[tuple(index)] = 0


def _window(spatial_offset, dilation, stride, out):
    """Slices picking, for one kernel offset, the input element of every output position."""
    return tuple(slice(r * d, r * d + (o - 1) * s + 1, s)
                 for r, d, s, o in zip(spatial_offset, dilation, stride, out))


class Im2colBackend(Backend):
    """Unfold + GEMM through NumPy's BLAS.

    ``workspace_limit`` bounds the columns of one batch chunk (bytes); with ``split_gemm``
    each GEMM's rows are split over single-threaded OpenBLAS calls side by side, one per
    core, instead of one call on OpenBLAS's thread pool (:mod:`._blas`): slower on an idle
    machine (OpenBLAS's 2 threads: 137-189 GFLOP/s here, the split 72-154), far faster on a
    shared one (3-20 against 30-80 GFLOP/s under a load of 5). Default: False.
    """

    name = "im2col"
    limits = "convolution and transposed convolution only; workspace N*C*prod(k)*prod(out)"
    writes_out = True
    fuses_epilogue = True
    channels_last_ops = ("conv",)

    def __init__(self, workspace_limit=DEFAULT_WORKSPACE_LIMIT, split_gemm=False):
        self.workspace_limit = workspace_limit
        self.split_gemm = split_gemm
        self._pool = None

    def _matmul(self, a, b, out):
        """``out = a @ b``: with ``split_gemm``, rows of ``a`` split over single-threaded
        OpenBLAS products, one per thread (see :mod:`convbackends.backends._blas`)."""
        if self.split_gemm:
            return _blas.matmul(a, b, out)
        return np.matmul(a, b, out=out)

    def _unfold(self, cols, x, spec, fill=None):
        """Fill the columns (``fill``: :func:`_fill_columns` by default), split over the
        batch across threads: NumPy copies release the GIL, and one thread alone cannot
        saturate memory bandwidth."""
        fill = _fill_columns if fill is None else fill
        workers = min(len(x), os.cpu_count() or 1, 4)
        if workers < 2 or cols.size < 2**16:
            fill(cols, x, spec)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, 4),
                                            thread_name_prefix="convbackends-im2col")
        bounds = np.linspace(0, len(x), workers + 1).astype(int)
        jobs = [self._pool.submit(fill, cols[a:b], x[a:b], spec)
                for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        for job in jobs:
            job.result()

    def supports(self, op, spec):
        if op not in ("conv", "conv_transpose", "conv_weight_grad"):
            return f"im2col computes convolutions only, not {op}"
        if spec.data_format == CHANNELS_LAST:
            return self._channels_last_refusal(spec)
        return None

    @staticmethod
    def _channels_last_refusal(spec):
        """Why the channels-last kernel does not take ``spec`` (the layout lowering then
        runs the channels-first one), or ``None``."""
        rows = spec.batch * math.prod(spec.output_spatial)
        if spec.groups > 1:
            return "im2col's channels_last kernel takes groups=1 only"
        if rows < CHANNELS_LAST_MIN_ROWS or spec.in_channels < CHANNELS_LAST_MIN_CHANNELS:
            return (f"im2col's channels_last kernel is slower than the layout lowering below "
                    f"{CHANNELS_LAST_MIN_ROWS} output rows (N*P = {rows}) or "
                    f"{CHANNELS_LAST_MIN_CHANNELS} input channels (C = {spec.in_channels})")
        return None

    @staticmethod
    def _needs_unfold(spec):
        return not (all(k == 1 for k in spec.kernel) and all(s == 1 for s in spec.stride)
                    and not spec.has_padding)

    def _columns_per_sample(self, op, spec):
        taps = math.prod(spec.kernel)
        if op == "conv":
            return spec.in_channels * taps * math.prod(spec.output_spatial)
        return spec.out_channels * taps * math.prod(spec.input_spatial)

    def _bytes_per_sample(self, op, spec):
        """Workspace of one sample: its columns, plus (transposed) its uncropped output."""
        per_sample = self._columns_per_sample(op, spec) * spec.itemsize
        if op == "conv_transpose":
            per_sample += (spec.out_channels * math.prod(
                L + pb + pa for L, (pb, pa) in zip(spec.output_spatial, spec.padding))
                * spec.itemsize)
        return per_sample

    def _chunk(self, op, spec):
        """Samples per chunk: as many as fit in ``workspace_limit`` bytes, at least one."""
        per_sample = self._bytes_per_sample(op, spec)
        return max(1, min(spec.batch, self.workspace_limit // max(per_sample, 1)))

    def workspace_bytes(self, op, spec):
        if op == "conv_weight_grad":
            return _weight_grad_workspace(spec, self.workspace_limit)
        if op == "conv" and not self._needs_unfold(spec):
            return 0
        return self._chunk(op, spec) * self._bytes_per_sample(op, spec)

    def plan(self, op, spec):
        if op == "conv_weight_grad":
            return _weight_grad_plan(spec, self.workspace_limit)
        if spec.data_format == CHANNELS_LAST:
            return {"layout": "channels_last, no transposes",
                    "unfold": ("none (1x1, stride 1)" if not self._needs_unfold(spec)
                               else "patches (N*P, R*C), threaded copies"),
                    "gemm": "(N*P, R*C) @ (R*C, K)", "batch_chunk": self._chunk(op, spec)}
        if op == "conv" and not self._needs_unfold(spec):
            return {"unfold": "none (1x1, stride 1)", "gemm": "per group"}
        small = op == "conv" and math.prod(spec.output_spatial) < SMALL_OUTPUT
        if op == "conv_transpose" and all(s == 1 for s in spec.stride) \
                and _as_forward_conv(spec, np.zeros(1)) is not None:
            return {"route": "stride 1: the forward conv of the flipped filter when the "
                             "weight is finite (GEMM + col2im otherwise)",
                    "batch_chunk": self._chunk(op, spec)}
        return {"batch_chunk": self._chunk(op, spec),
                "gemm": "per group, batch in columns" if small else "per group and sample",
                "unfold": "threaded copies, no padded copy"}

    def conv(self, x, weight, bias, spec, out=None, epilogue=None):
        # NaN and Inf follow IEEE arithmetic through the GEMM (padding is zeroed columns, so
        # 0 * Inf is NaN there, as directly); they are results, not errors to warn about.
        with np.errstate(invalid="ignore", over="ignore"):
            if spec.data_format == CHANNELS_LAST:
                return self._conv_channels_last(x, weight, bias, spec, out, epilogue)
            return self._conv(x, weight, bias, spec, out, epilogue)

    @staticmethod
    def _finish(y, bias, epilogue, n0, n1):
        """Bias and epilogue on samples ``n0:n1`` of the output, right after their GEMMs,
        while that block is still in cache."""
        block = y[n0:n1]
        if bias is not None:
            block += bias.reshape((1, -1) + (1,) * (y.ndim - 2))
        if epilogue is not None:
            epilogue.apply(block, n0, n1)

    def _conv_channels_last(self, x, weight, bias, spec, out, epilogue=None):
        """``(N, *S, C)`` in, ``(N, *O, K)`` out, no transposes: the patches
        ``(N*P, R*C)`` (a 1x1 stride-1 input is its own) times the weight as ``(R*C, K)``
        is the output itself. groups == 1 (see :meth:`supports`). Bias (along the last
        axis) and epilogue per batch chunk, right after its GEMM."""
        y = np.empty(spec.output_shape, spec.dtype) if out is None else out
        N, C, K = spec.batch, spec.in_channels, spec.out_channels
        P, R = math.prod(spec.output_spatial), math.prod(spec.kernel)
        # The weight (K, C, *kernel) as (R*C, K), taps outer and channels inner as in cols.
        w = np.moveaxis(np.asarray(weight), 1, -1).reshape(K, R * C).T
        y2 = y.reshape(N * P, K)
        if not self._needs_unfold(spec):
            self._matmul(np.ascontiguousarray(x).reshape(N * P, C), w, y2)
            self._finish_channels_last(y, bias, epilogue, 0, N)
            return y
        x = np.ascontiguousarray(x)
        chunk = self._chunk("conv", spec)
        cols = np.empty((chunk,) + spec.output_spatial + spec.kernel + (C,), spec.dtype)
        for n0 in range(0, N, chunk):
            n1 = min(N, n0 + chunk)
            c = cols[:n1 - n0]
            self._unfold(c, x[n0:n1], spec, _fill_columns_last)
            self._matmul(c.reshape((n1 - n0) * P, R * C), w, y2[n0 * P:n1 * P])
            self._finish_channels_last(y, bias, epilogue, n0, n1)
        return y

    @staticmethod
    def _finish_channels_last(y, bias, epilogue, n0, n1):
        """:meth:`_finish` for a channels-last output: the bias along its last axis."""
        block = y[n0:n1]
        if bias is not None:
            block += bias
        if epilogue is not None:
            epilogue.apply(block, n0, n1)

    def _conv(self, x, weight, bias, spec, out, epilogue=None):
        y = np.empty(spec.output_shape, spec.dtype) if out is None else out
        N, K, g = spec.batch, spec.out_channels, spec.groups
        Cg, Kg = spec.in_channels // g, K // g
        P = math.prod(spec.output_spatial)
        R = math.prod(spec.kernel)
        w = np.ascontiguousarray(weight).reshape(g, Kg, Cg * R)
        y3 = y.reshape(N, K, P)
        if not self._needs_unfold(spec):
            x3 = np.ascontiguousarray(x).reshape(N, spec.in_channels, P)
            for gi in range(g):
                self._matmul(w[gi], x3[:, gi * Cg:(gi + 1) * Cg], y3[:, gi * Kg:(gi + 1) * Kg])
            self._finish(y, bias, epilogue, 0, N)
        elif P < SMALL_OUTPUT:
            self._conv_batch_gemm(x, w, y, spec, bias, epilogue)
        else:
            chunk = self._chunk("conv", spec)
            cols = np.empty((chunk, spec.in_channels, R) + spec.output_spatial, spec.dtype)
            for n0 in range(0, N, chunk):
                n1 = min(N, n0 + chunk)
                c = cols[:n1 - n0]
                self._unfold(c, x[n0:n1], spec)
                c = c.reshape(n1 - n0, g, Cg * R, P)
                for gi in range(g):
                    self._matmul(w[gi], c[:, gi], y3[n0:n1, gi * Kg:(gi + 1) * Kg])
                self._finish(y, bias, epilogue, n0, n1)
        return y

    def _conv_batch_gemm(self, x, w, y, spec, bias, epilogue):
        """Small outputs: one GEMM ``(K/g, C/g*R) @ (C/g*R, n*P)`` per group and chunk.

        A per-sample GEMM with a few dozen columns runs far below BLAS's peak; putting the
        batch into the columns costs one transposed copy of the (small) output instead.
        """
        N, g = spec.batch, spec.groups
        Kg, CgR = w.shape[1], w.shape[2]
        R, P = math.prod(spec.kernel), math.prod(spec.output_spatial)
        y3 = y.reshape(N, spec.out_channels, P)
        chunk = self._chunk("conv", spec)
        cols = np.empty((spec.in_channels, R, chunk) + spec.output_spatial, spec.dtype)
        for n0 in range(0, N, chunk):
            n1 = min(N, n0 + chunk)
            c = cols[:, :, :n1 - n0]
            self._unfold(np.moveaxis(c, 2, 0), x[n0:n1], spec)
            c = c.reshape(g, CgR, (n1 - n0) * P)
            product = np.empty((Kg, (n1 - n0) * P), spec.dtype)
            for gi in range(g):
                block = self._matmul(w[gi], c[gi], product).reshape(Kg, n1 - n0, P)
                y3[n0:n1, gi * Kg:(gi + 1) * Kg] = block.transpose(1, 0, 2)
            self._finish(y, bias, epilogue, n0, n1)

    def conv_transpose(self, x, weight, bias, spec, out=None):
        # The GEMM multiplies real inputs only, col2im adds: the scatter's own NaN and Inf.
        with np.errstate(invalid="ignore", over="ignore"):
            return self._conv_transpose(x, weight, bias, spec, out)

    def _conv_transpose(self, x, weight, bias, spec, out):
        direct = _as_forward_conv(spec, weight)
        if direct is not None:
            return self._conv(x, transposed_filter(weight, spec), bias, direct, out)
        N, C, g = spec.batch, spec.in_channels, spec.groups
        Cg, Kg = C // g, spec.out_channels // g
        R = math.prod(spec.kernel)
        P = math.prod(spec.input_spatial)
        w = np.ascontiguousarray(weight).reshape(g, Cg, Kg * R).transpose(0, 2, 1)
        x3 = np.ascontiguousarray(x).reshape(N, C, P)
        full_spatial = tuple(L + pb + pa for L, (pb, pa)
                             in zip(spec.output_spatial, spec.padding))
        crop = tuple(slice(pb, pb + L) for L, (pb, _) in zip(spec.output_spatial, spec.padding))
        y = np.empty(spec.output_shape, spec.dtype) if out is None else out
        chunk = self._chunk("conv_transpose", spec)
        cols = np.empty((chunk, g, Kg * R, P), spec.dtype)
        full = np.empty((chunk, spec.out_channels) + full_spatial, spec.dtype)
        for n0 in range(0, N, chunk):
            n1 = min(N, n0 + chunk)
            c, f = cols[:n1 - n0], full[:n1 - n0]
            for gi in range(g):
                self._matmul(w[gi], x3[n0:n1, gi * Cg:(gi + 1) * Cg], c[:, gi])
            c = c.reshape((n1 - n0, spec.out_channels, R) + tuple(spec.input_spatial))
            f[...] = 0
            for r, offset in enumerate(_offsets(spec.kernel)):
                f[(slice(None), slice(None))
                  + _window(offset, spec.dilation, spec.stride, spec.input_spatial)] += c[:, :, r]
            y[n0:n1] = f[(slice(None), slice(None)) + crop]
        if bias is not None:
            y += bias.reshape((1, -1) + (1,) * spec.ndim)
        return y

    # ------------------------------------------------------------------ gradients of conv

    def conv_weight_grad(self, x, grad_output, spec, out=None):
        # Sums of products as the direct formula's, padded zeros included: IEEE results.
        with np.errstate(invalid="ignore", over="ignore"):
            gw = np.empty(spec.weight_shape, spec.dtype) if out is None else out
            if _one_channel_per_group(spec):
                _depthwise_weight_grad(gw, x, grad_output, spec,
                                       _weight_grad_chunk(spec, self.workspace_limit))
            else:
                self._weight_grad(gw, x, grad_output, spec)
            return gw

    def _weight_grad(self, gw, x, grad_output, spec):
        """``gw[group] = sum over chunks of gyᵀ (K/g, n*P) @ cols (C/g*R, n*P)ᵀ``."""
        N, K, g = spec.batch, spec.out_channels, spec.groups
        Cg, Kg = spec.in_channels // g, K // g
        R, P = math.prod(spec.kernel), math.prod(spec.output_spatial)
        chunk = _weight_grad_chunk(spec, self.workspace_limit)
        # The batch next to the output positions, so one GEMM contracts over both.
        cols = np.empty((spec.in_channels, R, chunk) + spec.output_spatial, spec.dtype)
        gy_t = np.empty((K, chunk, P), spec.dtype)
        gw3 = gw.reshape(g, Kg, Cg * R)
        partial = np.empty((Kg, Cg * R), spec.dtype) if chunk < N else None
        gy3 = np.asarray(grad_output).reshape(N, K, P)
        for n0 in range(0, N, chunk):
            n1 = min(N, n0 + chunk)
            c = cols[:, :, :n1 - n0]
            self._unfold(np.moveaxis(c, 2, 0), x[n0:n1], spec)
            c = c.reshape(g, Cg * R, (n1 - n0) * P)
            t = gy_t[:, :n1 - n0]
            np.copyto(t, gy3[n0:n1].transpose(1, 0, 2))
            t = t.reshape(g, Kg, (n1 - n0) * P)
            for gi in range(g):
                if n0 == 0:
                    np.matmul(t[gi], c[gi].T, out=gw3[gi])
                else:
                    np.matmul(t[gi], c[gi].T, out=partial)
                    gw3[gi] += partial


def _as_forward_conv(spec, weight):
    """The forward convolution that computes a stride-1 ``conv_transpose`` (the flipped
    filter over the input, padded by ``dilation*(kernel-1) - padding``), or ``None``.

    Without the scatter of col2im it measured 1.0-2.1x faster (ResNet-18's 3x3 input
    gradients at batch 8, 28x28 to 4x4), but slower with few channels (LeNet-5's 5x5
    input gradients at batch 64, 1 and 6 output channels: its whole training step 13.7 ->
    29.4 ms), hence ``FORWARD_TRANSPOSE_MIN_CHANNELS`` per group on both sides. Its padding's zeros meet every weight, so it is
    taken only for finite weights, where each such term is an exact zero: the result's NaN
    and Inf are then the scatter's. Strided calls keep the scatter (their forward form
    would multiply the inserted zeros too).
    """
    if any(s != 1 for s in spec.stride) or min(spec.in_channels, spec.out_channels) \
            < FORWARD_TRANSPOSE_MIN_CHANNELS * spec.groups:
        return None
    target = transpose_as_conv(spec)
    if isinstance(target, str) or not np.isfinite(weight).all():
        return None
    return target


def _one_channel_per_group(spec):
    """Depthwise (a channel multiplier allowed): each group sees one input channel."""
    return spec.groups > 1 and spec.in_channels == spec.groups


def _weight_grad_bytes_per_sample(spec):
    """Workspace of one sample for the weight gradient: its padded input (depthwise), or
    its columns and its output gradient transposed."""
    if _one_channel_per_group(spec):
        return spec.in_channels * math.prod(spec.padded_spatial) * spec.itemsize
    P, R = math.prod(spec.output_spatial), math.prod(spec.kernel)
    return (spec.in_channels * R + spec.out_channels) * P * spec.itemsize


def _weight_grad_chunk(spec, limit):
    """Samples per chunk: as many as fit in ``limit`` bytes, at least one."""
    return max(1, min(spec.batch, limit // max(_weight_grad_bytes_per_sample(spec), 1)))


def _weight_grad_workspace(spec, limit):
    return _weight_grad_chunk(spec, limit) * _weight_grad_bytes_per_sample(spec)


def _weight_grad_plan(spec, limit):
    chunk = _weight_grad_chunk(spec, limit)
    if _one_channel_per_group(spec):
        return {"batch_chunk": chunk, "reduction": "depthwise: einsum per kernel offset "
                "over the padded input's windows"}
    return {"batch_chunk": chunk, "gemm": "per group, batch in the contraction",
            "unfold": "threaded copies, no padded copy"}


def _depthwise_weight_grad(gw, x, grad_output, spec, chunk):
    """``gw[c*m + j, 0, r] = sum_{n, o} x_padded[n, c, o*stride + r*dilation] *
    gy[n, c*m + j, o]``: one ``einsum`` per kernel offset ``r`` over strided windows of a
    zero-padded chunk of the batch; no columns."""
    N, C, nd = spec.batch, spec.in_channels, spec.ndim
    m = spec.out_channels // C
    gy = np.asarray(grad_output)
    gw_taps = gw.reshape(C, m, math.prod(spec.kernel))
    padded = np.zeros((chunk, C) + spec.padded_spatial, spec.dtype)
    inner = tuple(slice(pb, pb + L) for L, (pb, _) in zip(spec.input_spatial, spec.padding))
    letters = "xyz"[:nd]
    subscripts = f"nc{letters},ncm{letters}->cm"
    for n0 in range(0, N, chunk):
        n = min(N, n0 + chunk) - n0
        xp = padded[:n]
        xp[(slice(None), slice(None)) + inner] = x[n0:n0 + n]
        g = gy[n0:n0 + n].reshape((n, C, m) + spec.output_spatial)
        for r, offset in enumerate(_offsets(spec.kernel)):
            window = xp[(slice(None), slice(None))
                        + _window(offset, spec.dilation, spec.stride, spec.output_spatial)]
            tap = np.einsum(subscripts, window, g)
            if n0 == 0:
                gw_taps[:, :, r] = tap
            else:
                gw_taps[:, :, r] += tap
