"""Sliding-window geometry, written once: every room (spec, backends, ops) uses these.

Along one spatial dimension a window at output position ``o`` covers the input indices
``o*stride - pad_before + r*dilation`` for taps ``r = 0 .. kernel-1``. Everything here is
plain integer arithmetic on Python ints or small int64 arrays; kernels receive the arrays.
"""

import operator

import numpy as np

from ..errors import ShapeError

__all__ = ["output_length", "transposed_output_length", "as_int", "per_dim", "padding_pairs",
           "same_conv_pairs", "same_pool_pairs", "window_indices", "tap_counts",
           "tap_range", "tap_ranges", "adaptive_windows", "unpool_default_length",
           "lift_3d", "params_3d", "pads_3d"]


def output_length(length, kernel, stride, pad_before, pad_after, dilation, ceil_mode=False):
    """Output length of a sliding window along one dimension.

    ``floor((L + pad_before + pad_after - dilation*(kernel-1) - 1) / stride) + 1``; with
    ``ceil_mode`` the division rounds up, but (as in PyTorch) the last window must start
    inside the input or the leading padding.
    """
    span = length + pad_before + pad_after - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    if (out - 1) * stride >= length + pad_before:
        out -= 1
    return out


def transposed_output_length(length, kernel, stride, pad_before, pad_after, dilation,
                             output_padding):
    """``(L - 1)*stride - pad_before - pad_after + dilation*(kernel - 1) + output_padding + 1``."""
    return ((length - 1) * stride - pad_before - pad_after + dilation * (kernel - 1)
            + output_padding + 1)


def as_int(value, name):
    """``value`` as a Python int (bools refused), else :class:`ShapeError` naming ``name``."""
    if isinstance(value, (bool, np.bool_)):
        raise ShapeError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ShapeError(f"{name} must be an integer, got {value!r}") from None


def per_dim(value, nd, name):
    """An int or one int per spatial dim -> tuple of ``nd`` ints."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        if len(value) != nd:
            raise ShapeError(f"{name} must be an int or {nd} ints (one per spatial dimension), "
                             f"got {tuple(value)!r}")
        return tuple(as_int(v, name) for v in value)
    return (as_int(value, name),) * nd


def padding_pairs(padding, nd, name="padding"):
    """int / per-dim ints / per-dim ``(before, after)`` pairs -> pairs (no strings)."""
    if isinstance(padding, np.ndarray):
        padding = padding.tolist()
    if isinstance(padding, (list, tuple)):
        if len(padding) != nd:
            raise ShapeError(
                f"{name} must be an int, 'valid', 'same', {nd} ints or {nd} (before, after) "
                f"pairs (one per spatial dimension), got {tuple(padding)!r}")
        pairs = []
        for p in padding:
            if isinstance(p, (list, tuple, np.ndarray)):
                if len(p) != 2:
                    raise ShapeError(f"{name} pairs must be (before, after), got {tuple(p)!r}")
                pairs.append((as_int(p[0], name), as_int(p[1], name)))
            else:
                v = as_int(p, name)
                pairs.append((v, v))
        pairs = tuple(pairs)
    else:
        v = as_int(padding, name)
        pairs = ((v, v),) * nd
    if any(p < 0 for pair in pairs for p in pair):
        raise ShapeError("negative padding is not supported")
    return pairs


def same_conv_pairs(kernel, dilation):
    """PyTorch's ``padding="same"`` at stride 1: ``dilation*(k-1)`` split, extra after."""
    totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
    return tuple((t // 2, t - t // 2) for t in totals)


def same_pool_pairs(spatial, kernel, stride, dilation):
    """TensorFlow's SAME for pooling: ``ceil(L / stride)`` outputs, extra padding after."""
    pairs = []
    for L, k, s, d in zip(spatial, kernel, stride, dilation):
        out = -(-L // s)
        total = max((out - 1) * s + d * (k - 1) + 1 - L, 0)
        pairs.append((total // 2, total - total // 2))
    return tuple(pairs)


def window_indices(out, kernel, stride, pad_before, dilation):
    """``(out, kernel)`` int64 array: the input index of every tap of every window."""
    return (np.arange(out, dtype=np.int64)[:, None] * stride - pad_before
            + np.arange(kernel, dtype=np.int64)[None, :] * dilation)


def tap_counts(length, kernel, stride, pad_before, pad_after, dilation, out, include_pad):
    """Per output position, the taps that count in an average's divisor (int64, ``(out,)``).

    With ``include_pad`` the taps inside the input or its padding count (not those of a
    ceil-mode window beyond the trailing padding), else only the taps inside the input. The
    divisor of a multi-dimensional window is the product of its dimensions' counts.
    """
    taps = window_indices(out, kernel, stride, pad_before, dilation)
    lo, hi = (-pad_before, length + pad_after) if include_pad else (0, length)
    return ((taps >= lo) & (taps < hi)).sum(axis=1).astype(np.int64)


def tap_range(o, length, kernel, stride, pad_before, dilation):
    """``(r0, r1)``: the taps ``r0 <= r < r1`` of window ``o`` that land inside the input."""
    start = o * stride - pad_before
    r0 = min(kernel, 0 if start >= 0 else (-start + dilation - 1) // dilation)
    r1 = 0 if start >= length else min(kernel, (length - 1 - start) // dilation + 1)
    return r0, max(r0, r1)


def tap_ranges(length, kernel, stride, pad_before, dilation, out):
    """:func:`tap_range` for every output position: two int64 arrays of shape ``(out,)``."""
    pairs = [tap_range(o, length, kernel, stride, pad_before, dilation) for o in range(out)]
    return (np.array([p[0] for p in pairs], dtype=np.int64),
            np.array([p[1] for p in pairs], dtype=np.int64))


def adaptive_windows(length, out):
    """Adaptive pooling's windows: window ``i`` is ``[floor(i*L/out), ceil((i+1)*L/out))``.

    Returns two int64 arrays of shape ``(out,)``, the starts and the ends.
    """
    i = np.arange(out, dtype=np.int64)
    return (i * length) // out, -((-(i + 1) * length) // out)


def unpool_default_length(length, kernel, stride, pad_before, pad_after):
    """``max_unpool``'s output length when none is given: ``(L-1)*stride - pads + kernel``."""
    return (length - 1) * stride - pad_before - pad_after + kernel


def lift_3d(a, nd):
    """``(N, C, *spatial)`` -> C-contiguous ``(N, C, D, H, W)`` (a view when possible).

    Kernels written for three spatial dims serve 1-D and 2-D calls through leading spatial
    dims of size 1 (with kernel 1, stride 1, dilation 1 and no padding there).
    """
    a = np.ascontiguousarray(a)
    return a.reshape(a.shape[:2] + (1,) * (3 - nd) + a.shape[2:])


def params_3d(values, fill):
    """One value per spatial dim -> int64 array of 3, leading dims filled with ``fill``."""
    values = tuple(values)
    return np.array((fill,) * (3 - len(values)) + values, dtype=np.int64)


def pads_3d(pairs):
    """``(before, after)`` pairs -> two int64 arrays of 3 (before pads, after pads)."""
    pairs = ((0, 0),) * (3 - len(pairs)) + tuple(pairs)
    return (np.array([p[0] for p in pairs], dtype=np.int64),
            np.array([p[1] for p in pairs], dtype=np.int64))
