"""``fft``: convolution as a product in the frequency domain, through ``scipy.fft``.

Limits: convolution and transposed convolution (no pooling); every geometry (stride,
dilation, padding, groups, 1-D to 3-D) and dtype. Error ``~1e-7 * log(n)`` relative in
float32: larger than a direct sum's, within the ``1e-4`` FFT tolerance.

Convolution is cut into tiles of ``T`` dense outputs per dim (one tile when the image is not
much larger than the kernel; overlap-save tiles otherwise, chosen by a cost model and shown
by :meth:`FFTBackend.plan`). A tile reads ``T + (k - 1)*dilation`` padded inputs, and a
circular correlation of length ``n = next_fast_len(T + (k - 1)*dilation)`` gives its ``T``
outputs exactly when the (dilated) filter is stored wrapped around, tap ``r`` at index
``-r*dilation mod n``. So: one ``rfftn`` of every tile and input channel, one of every
filter, the channel sum as a batched matrix product per frequency ``(tiles, C) @ (C, K)``,
one ``irfftn``, then crop. A strided convolution is first rewritten as a stride-1 one over
the input's phases (:func:`_polyphase_spec`), so no work goes to skipped outputs. Channels
are the last axis throughout, so the products are plain BLAS calls and no complex array is
ever transposed.

Transposed convolution is one stride-1 correlation of the input with the flipped filter
split into its stride phases (:func:`_subpixel_spec`), the phases then interleaved and
cropped by the padding.
"""

import itertools
import math
import os

import numpy as np
import scipy.fft as sfft
from numpy.lib.stride_tricks import sliding_window_view

from ._chunks import tile_chunks
from .base import Backend

DEFAULT_WORKSPACE_LIMIT = 256 * 2**20
# Transform lengths tried for overlap-save tiles (the whole image is always a candidate).
TILE_FFT_SIZES = (16, 32, 64, 128, 256)
# Relative cost of one complex multiply-accumulate in the channel product against one
# ``point * log2(points)`` of a real FFT, when the product runs through BLAS and when it
# runs as a loop over input channels (few channels per group). Rough values: forcing each
# tile size on six layers (3x3 to 31x31 kernels, 1 to 128 channels), the tiling they pick
# was the fastest or within 10% of it on four, within 35% on all.
GEMM_COST = 0.3
LOOP_COST = 1.5
MIN_GEMM_CHANNELS = 4


class _Plan:
    """How one correlation is tiled: ``tile`` dense outputs and ``size`` FFT points per dim."""

    def __init__(self, spec, tile, kind):
        self.kind = kind
        self.tile = tuple(tile)
        self.span = tuple(d * (k - 1) + 1 for d, k in zip(spec.dilation, spec.kernel))
        self.size = tuple(sfft.next_fast_len(t + e - 1, real=True)
                          for t, e in zip(self.tile, self.span))
        self.counts = tuple(-(-o // t) for o, t in zip(spec.output_spatial, self.tile))
        self.points = math.prod(self.size)
        self.bins = math.prod(self.size[:-1]) * (self.size[-1] // 2 + 1)

    def cost(self, spec):
        tiles = spec.batch * math.prod(self.counts)
        cg = spec.in_channels // spec.groups
        log = math.log2(max(self.points, 2))
        transforms = (tiles * (spec.in_channels + spec.out_channels)
                      + spec.out_channels * cg) * self.points * log
        product = GEMM_COST if cg >= MIN_GEMM_CHANNELS else LOOP_COST
        return transforms + product * tiles * self.bins * spec.out_channels * cg

    def filter_bytes(self, spec):
        return self.bins * spec.out_channels * (spec.in_channels // spec.groups) * 2 \
            * spec.itemsize

    def bytes_per_tile(self, spec):
        """Spectra of one tile's input and output channels, and its real output."""
        return (self.bins * (spec.in_channels + spec.out_channels) * 2 * spec.itemsize
                + self.points * spec.out_channels * spec.itemsize)


def _tile_candidates(length, span):
    """Tile lengths worth trying along one dim: the whole output, and overlap-save tiles."""
    tiles = {length}
    tiles.update(n - span + 1 for n in TILE_FFT_SIZES if span <= n - span + 1 < length)
    return sorted(tiles)


def _polyphase_spec(spec):
    """The stride-1 correlation over the input's phases that computes the strided ``spec``.

    ``x_padded[o*s + r*d]`` is phase ``(r*d) % s`` of the input at ``o + (r*d) // s``: so
    the phases become extra input channels (``C * prod(stride)``), each with the taps that
    fall on it (dilation folded in, zeros elsewhere), and no work is spent on the outputs
    the stride skips.
    """
    taps = tuple((k - 1) * d // s + 1 for k, d, s in zip(spec.kernel, spec.dilation,
                                                        spec.stride))
    phases = tuple(o + q - 1 for o, q in zip(spec.output_spatial, taps))
    one = (1,) * spec.ndim
    return spec.replace(in_channels=spec.in_channels * math.prod(spec.stride),
                        input_spatial=phases, kernel=taps, stride=one, dilation=one,
                        padding=((0, 0),) * spec.ndim)


def _split_taps(weight, spec, taps):
    """``weight (A, B, *k)`` -> ``(A, B, *stride, *taps)``: tap ``r`` of each dim moved to
    phase ``(r*d) % s``, position ``(r*d) // s``; zeros elsewhere."""
    s = spec.stride
    split = np.zeros(weight.shape[:2] + tuple(s) + tuple(taps), spec.dtype)
    offsets = [np.arange(k) * d for k, d in zip(spec.kernel, spec.dilation)]
    index = np.ix_(*[o % st for o, st in zip(offsets, s)]) \
        + np.ix_(*[o // st for o, st in zip(offsets, s)])
    split[(slice(None), slice(None)) + index] = weight
    return split


def _polyphase(x, weight, spec):
    """``(x, weight, spec)`` of the strided correlation -> those of :func:`_polyphase_spec`."""
    nd, s = spec.ndim, spec.stride
    pspec = _polyphase_spec(spec)
    phases, taps = pspec.input_spatial, pspec.kernel
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pb, max(0, p * st - L - pb)) for p, st, L, (pb, _)
                                       in zip(phases, s, spec.input_spatial, spec.padding)])
    xp = xp[(Ellipsis,) + tuple(slice(0, p * st) for p, st in zip(phases, s))]
    N, C = x.shape[:2]
    split = xp.reshape((N, C) + tuple(v for p, st in zip(phases, s) for v in (p, st)))
    order = [0, 1] + [3 + 2 * i for i in range(nd)] + [2 + 2 * i for i in range(nd)]
    x_ph = split.transpose(order).reshape((N, pspec.in_channels) + phases)
    w_ph = _split_taps(weight, spec, taps)
    return x_ph, w_ph.reshape((weight.shape[0], pspec.in_channels // spec.groups) + taps), \
        pspec


def _subpixel_spec(spec):
    """The stride-1 correlation computing every output phase of a transposed convolution.

    Output ``o = j*s + p`` of the full (uncropped) transposed convolution sums ``x[j - q] *
    w[r]`` over the taps with ``r*d = q*s + p``: per phase ``p`` a plain convolution of the
    input with that phase's taps. So one correlation of the input with the flipped phase
    filters, ``K * prod(stride)`` output channels and ``taps - 1`` zeros of padding in front,
    gives all phases; interleaving them and cropping ``padding`` gives the output. No work
    goes to the zeros a stride-spread input would carry.
    """
    taps = tuple((k - 1) * d // s + 1 for k, d, s in zip(spec.kernel, spec.dilation,
                                                        spec.stride))
    # Enough phase outputs to reach pad_before + output length after interleaving.
    pads = tuple((q - 1, max(0, -(-(pb + o) // s) - L))
                 for q, s, (pb, _), o, L in zip(taps, spec.stride, spec.padding,
                                                spec.output_spatial, spec.input_spatial))
    one = (1,) * spec.ndim
    return spec.replace(op="conv", out_channels=spec.out_channels * math.prod(spec.stride),
                        kernel=taps, stride=one, dilation=one, padding=pads,
                        output_padding=(0,) * spec.ndim)



class FFTBackend(Backend):
    """Frequency-domain convolution with automatic overlap-save tiling.

    Parameters
    ----------
    workspace_limit : int, optional
        Bytes of spectra held at once; larger calls are processed in chunks of tiles.
    workers : int, optional
        Threads for ``scipy.fft``. Default: every CPU (``os.cpu_count()``).
    """

    name = "fft"
    limits = "convolution and transposed convolution only; float32 error ~1e-7*log(n)"
    writes_out = True
    # A NaN or Inf spreads over every output of its tile, and padded zeros meet every
    # weight's spectrum: dispatch guards the kernels (convbackends.ops.nonfinite).
    exact_nonfinite = False

    def __init__(self, workspace_limit=DEFAULT_WORKSPACE_LIMIT, workers=None):
        self.workspace_limit = workspace_limit
        self.workers = workers
        self._growth = {}

    def magnitude_growth(self, op, spec):
        """``g`` with every intermediate at most ``g * max|x| * max|w|`` (bias aside).

        For the stride-1 correlation computed (:meth:`_correlation_spec`) with ``C/g``
        input channels, ``R`` kernel taps, tiles reading ``T`` inputs and transforms of
        ``n`` points: a tile's spectrum (and every partial sum of its FFT) is at most
        ``T * max|x|``, a filter's ``R * max|w|``, their channel sum ``C/g`` times the
        product, and the inverse transform's partial sums at most ``n`` times that (its
        ``1/n`` comes last). So ``g = C/g * R * T * n``.
        """
        key = (op, spec)
        growth = self._growth.get(key)
        if growth is None:
            cspec = self._correlation_spec(op, spec)
            plan = self._plan(cspec)
            window = math.prod(t + e - 1 for t, e in zip(plan.tile, plan.span))
            growth = float(cspec.in_channels // cspec.groups * math.prod(cspec.kernel)
                           * window * plan.points)
            if len(self._growth) >= 1024:
                self._growth.clear()
            self._growth[key] = growth
        return growth

    def _workers(self):
        return self.workers or os.cpu_count() or 1

    def supports(self, op, spec):
        if op not in ("conv", "conv_transpose"):
            return f"fft computes convolutions only, not {op}"
        return None

    # ------------------------------------------------------------------ planning

    def _plan(self, spec):
        """The cheapest tiling of the correlation ``spec`` (see :class:`_Plan`)."""
        spans = [d * (k - 1) + 1 for d, k in zip(spec.dilation, spec.kernel)]
        per_dim = [_tile_candidates(o, e) for o, e in zip(spec.output_spatial, spans)]
        dense = tuple(c[-1] for c in per_dim)
        plans = [_Plan(spec, t, "whole image" if t == dense else "overlap-save")
                 for t in itertools.product(*per_dim)]
        # Filter spectra must fit the workspace: they are held for the whole call.
        fitting = [p for p in plans if p.filter_bytes(spec) <= self.workspace_limit]
        if not fitting:
            return min(plans, key=lambda p: p.filter_bytes(spec))
        return min(fitting, key=lambda p: p.cost(spec))

    def _rows_per_chunk(self, spec, plan):
        per_row = plan.bytes_per_tile(spec) * math.prod(plan.counts[1:])
        return max(1, (self.workspace_limit - plan.filter_bytes(spec)) // per_row)

    def _correlation_spec(self, op, spec):
        """The stride-1 correlation actually computed: ``spec`` itself, its polyphase form
        when strided, or for a transposed call the one giving all output phases
        (:func:`_subpixel_spec`)."""
        if op == "conv":
            if any(s > 1 for s in spec.stride):
                return _polyphase_spec(spec)
            return spec
        return _subpixel_spec(spec)

    def workspace_bytes(self, op, spec):
        cspec = self._correlation_spec(op, spec)
        plan = self._plan(cspec)
        rows = min(self._rows_per_chunk(cspec, plan), spec.batch * plan.counts[0])
        tiles = rows * math.prod(plan.counts[1:])
        padded = spec.batch * cspec.in_channels * spec.itemsize * math.prod(
            c * t + e - 1 for c, t, e in zip(plan.counts, plan.tile, plan.span))
        return tiles * plan.bytes_per_tile(cspec) + plan.filter_bytes(cspec) + padded

    def plan(self, op, spec):
        cspec = self._correlation_spec(op, spec)
        plan = self._plan(cspec)
        facts = {"method": plan.kind, "fft": "x".join(map(str, plan.size)),
                 "tiles": cspec.batch * math.prod(plan.counts),
                 "rows_per_chunk": self._rows_per_chunk(cspec, plan)}
        if plan.kind == "overlap-save":
            facts["tile"] = "x".join(map(str, plan.tile))
        if op == "conv_transpose":
            facts["input"] = f"sub-pixel: {math.prod(spec.stride)} output phases as channels"
        elif any(s > 1 for s in spec.stride):
            facts["input"] = f"polyphase: {math.prod(spec.stride)} phases as channels"
        return facts

    # ------------------------------------------------------------------ computing

    def conv(self, x, weight, bias, spec, out=None):
        y = np.empty(spec.output_shape, spec.dtype) if out is None else out
        if any(s > 1 for s in spec.stride):
            x, weight, spec = _polyphase(x, weight, spec)
        self._correlate(x, weight, spec, y)
        if bias is not None:
            y += bias.reshape((1, -1) + (1,) * spec.ndim)
        return y

    def conv_transpose(self, x, weight, bias, spec, out=None):
        nd, g, s = spec.ndim, spec.groups, spec.stride
        cspec = _subpixel_spec(spec)
        taps, phases = cspec.kernel, math.prod(s)
        cg, kg = spec.in_channels // g, spec.out_channels // g
        # (g, C/g, K/g, phases, *taps) -> (g, K/g, phases, C/g, *taps), taps flipped: the
        # phases' convolutions become correlations with K*phases output channels.
        w_ph = _split_taps(weight, spec, taps).reshape((g, cg, kg, phases) + taps).transpose(
            [0, 2, 3, 1] + list(range(4, 4 + nd)))
        w_ph = w_ph.reshape((spec.out_channels * phases, cg) + taps)
        w_ph = w_ph[(Ellipsis,) + (slice(None, None, -1),) * nd]
        y_ph = np.empty(cspec.output_shape, spec.dtype)
        self._correlate(x, w_ph, cspec, y_ph)
        # (N, K, *s, *J) -> (N, K, J0, s0, J1, s1, ...): interleave the phases, then crop.
        N, J = spec.batch, cspec.output_spatial
        full = y_ph.reshape((N, spec.out_channels) + tuple(s) + J).transpose(
            [0, 1] + [a for i in range(nd) for a in (2 + nd + i, 2 + i)])
        full = full.reshape((N, spec.out_channels) + tuple(j * st for j, st in zip(J, s)))
        y = np.empty(spec.output_shape, spec.dtype) if out is None else out
        y[...] = full[(slice(None), slice(None)) + tuple(
            slice(pb, pb + o) for (pb, _), o in zip(spec.padding, spec.output_spatial))]
        if bias is not None:
            y += bias.reshape((1, -1) + (1,) * nd)
        return y

    def _filter_spectrum(self, weight, spec, plan):
        """``rfftn`` of every filter stored wrapped around: ``(*bins, C/g, K)``."""
        nd = spec.ndim
        wrapped = np.zeros(plan.size + (spec.in_channels // spec.groups, spec.out_channels),
                           spec.dtype)
        index = np.ix_(*[(-np.arange(k) * d) % n for k, d, n
                         in zip(spec.kernel, spec.dilation, plan.size)])
        wrapped[index] = np.moveaxis(np.asarray(weight, spec.dtype), (0, 1), (-1, -2))
        return sfft.rfftn(wrapped, axes=tuple(range(nd)), workers=self._workers())

    def _correlate(self, x, weight, spec, y):
        """``y = correlation(x, weight)`` for the convolution ``spec`` (bias not added)."""
        nd = spec.ndim
        plan = self._plan(spec)
        wf = self._filter_spectrum(weight, spec, plan)
        wf = wf.reshape((plan.bins,) + wf.shape[nd:])
        # Zero padding, plus zeros after so that every tile is whole.
        pads = [(pb, max(0, c * t + e - 1 - L - pb)) for c, t, e, L, (pb, _)
                in zip(plan.counts, plan.tile, plan.span, spec.input_spatial, spec.padding)]
        xp = np.pad(x, [(0, 0), (0, 0)] + pads)
        windows = tuple(t + e - 1 for t, e in zip(plan.tile, plan.span))
        tiles = sliding_window_view(xp, windows, axis=tuple(range(2, 2 + nd)))[
            (Ellipsis,) + tuple(slice(0, c * t, t) for c, t in zip(plan.counts, plan.tile))
            + (slice(None),) * nd]
        for ns, rs in tile_chunks(spec.batch, plan.counts[0],
                                   self._rows_per_chunk(spec, plan)):
            chunk = tiles[ns, :, rs]
            # (N', C, *counts', *windows) -> (*windows, N', *counts', C): channels last.
            chunk = np.moveaxis(chunk, [1] + list(range(2 + nd, 2 + 2 * nd)),
                                [-1] + list(range(nd)))
            xf = sfft.rfftn(chunk, s=plan.size, axes=tuple(range(nd)), workers=self._workers())
            yf = self._channel_product(xf.reshape(plan.bins, -1, spec.in_channels), wf, spec)
            yt = sfft.irfftn(yf.reshape(xf.shape[:-1] + (spec.out_channels,)), s=plan.size,
                             axes=tuple(range(nd)), workers=self._workers())
            self._scatter(y, yt, ns, rs, plan, spec)

    @staticmethod
    def _channel_product(xf, wf, spec):
        """``yf[f, t, k] = sum_c xf[f, t, c] wf[f, c, k]`` within each group."""
        g = spec.groups
        cg, kg = spec.in_channels // g, spec.out_channels // g
        yf = np.empty(xf.shape[:2] + (spec.out_channels,), xf.dtype)
        for gi in range(g):
            xs = xf[:, :, gi * cg:(gi + 1) * cg]
            ws = wf[:, :, gi * kg:(gi + 1) * kg]
            ys = yf[:, :, gi * kg:(gi + 1) * kg]
            if cg >= MIN_GEMM_CHANNELS:
                np.matmul(xs, ws, out=ys)
            else:
                # Too few channels for a GEMM per frequency to pay its call overhead.
                np.multiply(xs[:, :, :1], ws[:, None, 0], out=ys)
                for c in range(1, cg):
                    ys += xs[:, :, c:c + 1] * ws[:, None, c]
        return yf

    @staticmethod
    def _scatter(y, yt, ns, rs, plan, spec):
        """Crop and place tile outputs ``(*size, N', *counts', K)`` into ``y``."""
        nd = spec.ndim
        yt = yt[tuple(slice(0, t) for t in plan.tile)]
        # (*tile, N', *counts', K) -> (N', K, count0, tile0, count1, tile1, ...)
        order = [nd, 2 * nd + 1] + [a for i in range(nd) for a in (nd + 1 + i, i)]
        counts = (rs.stop - rs.start,) + plan.counts[1:]
        yt = yt.transpose(order).reshape(
            yt.shape[nd:nd + 1] + (spec.out_channels,)
            + tuple(c * t for c, t in zip(counts, plan.tile)))
        start = rs.start * plan.tile[0]
        stop = min(spec.output_spatial[0], rs.stop * plan.tile[0])
        y[(ns, slice(None), slice(start, stop))] = yt[
            (slice(None), slice(None), slice(0, stop - start))
            + tuple(slice(0, o) for o in spec.output_spatial[1:])]
