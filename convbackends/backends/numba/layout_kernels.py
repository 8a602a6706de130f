"""The ``numba`` backend's channels-last convolution: C-contiguous ``(N, D, H, W, C)`` in,
``(N, Do, Ho, Wo, K)`` out, groups 1.

Direct, with the output channels innermost: for each output pixel the ``K`` accumulators
take ``x[.., c] * w[kd, kh, kw, c, :]`` for every tap and input channel, a loop over
contiguous ``K`` that LLVM vectorises, reading the weight as ``(kd, kh, kw, C, K)``. Taps in
the padding are skipped by clipping the kernel ranges per output pixel, so nothing is
copied; that is exact while the weight is finite (``0 * w`` adds nothing). With ``pad_taps``
(a weight holding NaN or Inf) the padding's taps are multiplied too, as the direct
formula's zeros are, so they give NaN where it does. One task per output row
``(n, od, oh)``, handed to ``prange``. Rows are addressed
as offsets into raveled arrays, as in :mod:`.kernels`.
"""

import numba as nb
import numpy as np

_FMA = {"contract"}


@nb.njit(cache=True, inline="always")
def _taps(o, stride, pad, dilation, kernel, length, pad_taps):
    """Kernel taps ``[lo, hi)`` whose input ``o*stride - pad + t*dilation`` is inside
    (every tap with ``pad_taps``)."""
    if pad_taps:
        return 0, kernel
    start = o * stride - pad
    lo = 0 if start >= 0 else (-start + dilation - 1) // dilation
    hi = min(kernel, (length - 1 - start) // dilation + 1) if length > start else 0
    return lo, max(lo, hi)


@nb.njit(cache=True, parallel=True, fastmath=_FMA)
def conv_channels_last(x, w, bias, stride, pad, dilation, pad_taps, y):
    """``y[n, od, oh, ow, :] = bias + sum x[n, id, ih, iw, c] * w[kd, kh, kw, c, :]``.

    ``x``: ``(N, D, H, W, C)``; ``w``: ``(KD, KH, KW, C, K)``; ``y``: ``(N, Do, Ho, Wo, K)``;
    ``stride``, ``pad`` (before), ``dilation``: int64 ``(3,)``; ``pad_taps``: bool.
    """
    N, D, H, W, C = x.shape
    KD, KH, KW, _, K = w.shape
    _, Do, Ho, Wo, _ = y.shape
    xf, wf, yf = x.ravel(), w.ravel(), y.ravel()
    for task in nb.prange(N * Do * Ho):
        n, rest = task // (Do * Ho), task % (Do * Ho)
        od, oh = rest // Ho, rest % Ho
        d0, d1 = _taps(od, stride[0], pad[0], dilation[0], KD, D, pad_taps)
        h0, h1 = _taps(oh, stride[1], pad[1], dilation[1], KH, H, pad_taps)
        acc = np.empty(K, y.dtype)
        for ow in range(Wo):
            for k in range(K):
                acc[k] = bias[k]
            w0, w1 = _taps(ow, stride[2], pad[2], dilation[2], KW, W, pad_taps)
            for kd in range(d0, d1):
                i_d = od * stride[0] - pad[0] + kd * dilation[0]
                for kh in range(h0, h1):
                    ih = oh * stride[1] - pad[1] + kh * dilation[1]
                    for kw in range(w0, w1):
                        iw = ow * stride[2] - pad[2] + kw * dilation[2]
                        inside = 0 <= i_d < D and 0 <= ih < H and 0 <= iw < W
                        xb = (((n * D + i_d) * H + ih) * W + iw) * C
                        wb = ((kd * KH + kh) * KW + kw) * C * K
                        for c in range(C):
                            v = xf[xb + c] if inside else xf.dtype.type(0)
                            wr = wb + c * K
                            for k in range(K):
                                acc[k] += v * wf[wr + k]
            yb = (((n * Do + od) * Ho + oh) * Wo + ow) * K
            for k in range(K):
                yf[yb + k] = acc[k]
