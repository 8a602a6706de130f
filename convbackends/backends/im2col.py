"""``im2col``: unfold the input into columns, then one BLAS GEMM per group.

Limits: convolution and transposed convolution only (no pooling). Every geometry and dtype.

Convolution: the columns ``cols[n, (c, r), p] = x_padded[n, c, p*stride + r*dilation]`` are
gathered with one strided copy per kernel offset ``r`` (each a long, regular copy), then
``y[n, group] = W_group (K/g, C/g*R) @ cols[n, group] (C/g*R, P)`` through NumPy's batched
matmul, written straight into the output. A 1x1 kernel at stride 1 without padding needs no
unfold at all: the input itself is the column matrix. The workspace (``N*C*R*P`` elements)
is bounded by running the batch in chunks of at most ``workspace_limit`` bytes.

Transposed convolution is the adjoint: ``cols = W_groupᵀ @ x`` then col2im, one strided
add per kernel offset into the full output, which is then cropped by the padding.
"""

import math

import numpy as np

from .base import Backend

DEFAULT_WORKSPACE_LIMIT = 256 * 2**20


def _offsets(kernel):
    return np.ndindex(*kernel)


def _window(spatial_offset, dilation, stride, out):
    """Slices picking, for one kernel offset, the input element of every output position."""
    return tuple(slice(r * d, r * d + (o - 1) * s + 1, s)
                 for r, d, s, o in zip(spatial_offset, dilation, stride, out))


class Im2colBackend(Backend):
    """Unfold + GEMM through NumPy's BLAS."""

    name = "im2col"
    limits = "convolution and transposed convolution only; workspace N*C*prod(k)*prod(out)"
    writes_out = True

    def __init__(self, workspace_limit=DEFAULT_WORKSPACE_LIMIT):
        self.workspace_limit = workspace_limit

    def supports(self, op, spec):
        if op not in ("conv", "conv_transpose"):
            return f"im2col computes convolutions only, not {op}"
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

    def _chunk(self, op, spec):
        per_sample = self._columns_per_sample(op, spec) * spec.itemsize
        if op == "conv_transpose":
            per_sample += (spec.out_channels * math.prod(
                L + pb + pa for L, (pb, pa) in zip(spec.output_spatial, spec.padding))
                * spec.itemsize)
        return max(1, min(spec.batch, self.workspace_limit // max(per_sample, 1)))

    def workspace_bytes(self, op, spec):
        if op == "conv" and not self._needs_unfold(spec):
            return 0
        per_sample = self._columns_per_sample(op, spec) * spec.itemsize
        return self._chunk(op, spec) * per_sample

    def plan(self, op, spec):
        if op == "conv" and not self._needs_unfold(spec):
            return {"unfold": "none (1x1, stride 1)", "gemm": "per group"}
        return {"batch_chunk": self._chunk(op, spec), "gemm": "per group"}

    def conv(self, x, weight, bias, spec, out=None):
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
                np.matmul(w[gi], x3[:, gi * Cg:(gi + 1) * Cg], out=y3[:, gi * Kg:(gi + 1) * Kg])
        else:
            if spec.has_padding:
                x = np.pad(x, [(0, 0), (0, 0)] + [list(p) for p in spec.padding])
            chunk = self._chunk("conv", spec)
            cols = np.empty((chunk, spec.in_channels, R) + spec.output_spatial, spec.dtype)
            for n0 in range(0, N, chunk):
                n1 = min(N, n0 + chunk)
                c = cols[:n1 - n0]
                for r, offset in enumerate(_offsets(spec.kernel)):
                    c[:, :, r] = x[(slice(n0, n1), slice(None))
                                   + _window(offset, spec.dilation, spec.stride,
                                             spec.output_spatial)]
                c = c.reshape(n1 - n0, g, Cg * R, P)
                for gi in range(g):
                    np.matmul(w[gi], c[:, gi], out=y3[n0:n1, gi * Kg:(gi + 1) * Kg])
        if bias is not None:
            y3 += bias.reshape(1, K, 1)
        return y

    def conv_transpose(self, x, weight, bias, spec, out=None):
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
                np.matmul(w[gi], x3[n0:n1, gi * Cg:(gi + 1) * Cg], out=c[:, gi])
            c = c.reshape((n1 - n0, spec.out_channels, R) + tuple(spec.input_spatial))
            f[...] = 0
            for r, offset in enumerate(_offsets(spec.kernel)):
                f[(slice(None), slice(None))
                  + _window(offset, spec.dilation, spec.stride, spec.input_spatial)] += c[:, :, r]
            y[n0:n1] = f[(slice(None), slice(None)) + crop]
        if bias is not None:
            y += bias.reshape((1, -1) + (1,) * spec.ndim)
        return y
