"""Float64 references for ``compare`` and the benchmarks: the direct formulas, tap by tap.

Written for checking, not for speed, and sharing no code with the backends: the output is
built one kernel tap at a time, each tap a strided view of the padded input, contracted over
input channels by a float64 matrix product (convolution), or folded in by ``maximum`` or a
sum (pooling). Memory stays at the float64 output plus one tap's worth of input, whatever
the kernel size, so whole suites at large batches can be checked. NumPy only.

Arguments follow :func:`convbackends.conv` for the cases the suites use: ``stride``,
``padding`` and ``dilation`` are an int or one int per spatial dim; ``padding`` is symmetric.
"""

import math

import numpy as np

__all__ = ["conv", "max_pool", "avg_pool"]


def _per_dim(value, nd):
    return (int(value),) * nd if np.ndim(value) == 0 else tuple(int(v) for v in value)


def _geometry(x, kernel, stride, padding, dilation, fill):
    """The padded input and the output's spatial shape."""
    nd = x.ndim - 2
    pad = _per_dim(padding, nd)
    xp = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in pad], constant_values=fill)
    out = tuple((size - d * (k - 1) - 1) // s + 1
                for size, k, s, d in zip(xp.shape[2:], kernel, stride, dilation))
    return xp, out


def _taps(xp, kernel, stride, dilation, out):
    """For each kernel tap in C order, the view of ``xp`` that tap multiplies."""
    for tap in np.ndindex(*kernel):
        yield xp[(slice(None), slice(None)) + tuple(
            slice(d * t, d * t + s * (o - 1) + 1, s)
            for t, s, d, o in zip(tap, stride, dilation, out))]


def conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Cross-correlation as ``torch.nn.functional.convNd`` defines it, in float64.

    Parameters
    ----------
    x : array_like, shape (N, C_in, *spatial)
    weight : array_like, shape (C_out, C_in / groups, *kernel)
    bias : array_like of shape (C_out,), optional
    stride, padding, dilation : int or tuple of int
    groups : int

    Returns
    -------
    numpy.ndarray of float64, shape (N, C_out, *out)
    """
    x, w = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    nd = x.ndim - 2
    kernel = w.shape[2:]
    stride, dilation = _per_dim(stride, nd), _per_dim(dilation, nd)
    xp, out = _geometry(x, kernel, stride, padding, dilation, 0.0)
    n, c_out = x.shape[0], w.shape[0]
    c_group = x.shape[1] // groups
    # (groups, C_out / groups, C_in / groups, taps) @ (N, groups, C_in / groups, positions)
    wg = w.reshape(groups, c_out // groups, c_group, -1)
    y = np.zeros((n, groups, c_out // groups, math.prod(out)))
    for t, view in enumerate(_taps(xp, kernel, stride, dilation, out)):
        y += wg[..., t] @ view.reshape(n, groups, c_group, -1)
    y = y.reshape((n, c_out) + out)
    if bias is not None:
        y += np.asarray(bias, np.float64).reshape((1, c_out) + (1,) * nd)
    return y


def max_pool(x, kernel_size, stride=None, padding=0, dilation=1):
    """Max pooling as ``torch.nn.functional.max_poolNd`` (``ceil_mode=False``), float64."""
    x = np.asarray(x, np.float64)
    nd = x.ndim - 2
    kernel = _per_dim(kernel_size, nd)
    stride = kernel if stride is None else _per_dim(stride, nd)
    dilation = _per_dim(dilation, nd)
    xp, out = _geometry(x, kernel, stride, padding, dilation, -np.inf)
    y = np.full(x.shape[:2] + out, -np.inf)
    for view in _taps(xp, kernel, stride, dilation, out):
        np.maximum(y, view, out=y)
    return y


def avg_pool(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Average pooling as ``torch.nn.functional.avg_poolNd`` (``ceil_mode=False``), float64.

    Without ``count_include_pad`` each window is divided by the number of its taps that
    fall inside the input.
    """
    x = np.asarray(x, np.float64)
    nd = x.ndim - 2
    kernel = _per_dim(kernel_size, nd)
    stride = kernel if stride is None else _per_dim(stride, nd)
    ones = (1,) * nd
    xp, out = _geometry(x, kernel, stride, padding, ones, 0.0)
    inside, _ = _geometry(np.ones((1, 1) + x.shape[2:]), kernel, stride, padding, ones, 0.0)
    total, count = np.zeros(x.shape[:2] + out), np.zeros((1, 1) + out)
    for view, mask in zip(_taps(xp, kernel, stride, ones, out),
                          _taps(inside, kernel, stride, ones, out)):
        total += view
        count += mask
    return total / (count if not count_include_pad else math.prod(kernel))
