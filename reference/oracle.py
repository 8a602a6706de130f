"""Float64 reference implementations of convolution and pooling, straight from the formulas.

This module is the test oracle for ``convbackends``. It imports nothing but NumPy, favours
clarity over speed, and computes everything in float64. Every function takes batched,
channels-first arrays ``(N, C, *spatial)`` with 1, 2 or 3 (or more) spatial dims.

Parameters are expected already normalised: ``stride``, ``dilation``, ``kernel_size`` and
``output_padding`` are a tuple with one entry per spatial dim (a plain int is broadcast), and
``padding`` is a sequence of ``(before, after)`` pairs, one per spatial dim (a plain int means
symmetric padding; a sequence of plain ints means symmetric padding per dim). String paddings
(``"same"``, ``"valid"``) and ``padding_mode`` are the caller's business.

Every function gathers windows with :func:`numpy.lib.stride_tricks.sliding_window_view`
(adaptive pooling: with index arrays, its windows differing in size) and reduces them with
:func:`numpy.einsum` (convolution) or a NumPy reduction (pooling); no Python loop runs over
output pixels. Max pooling's indices follow PyTorch's CPU rule, which scans a window in
row-major order and keeps a tap when ``value > best or isnan(value)``: the first of equal
maxima, and the last NaN of a window holding NaNs.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "output_size",
    "conv",
    "conv_transpose",
    "max_pool",
    "max_pool_with_indices",
    "avg_pool",
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "max_unpool",
    "conv_input_grad",
    "conv_weight_grad",
    "conv_transpose_input_grad",
    "conv_transpose_weight_grad",
    "max_pool_input_grad",
    "avg_pool_input_grad",
]

_OUT_LETTERS = "pqrstu"  # einsum subscripts for output positions, one per spatial dim
_TAP_LETTERS = "ijklmv"  # einsum subscripts for kernel taps, one per spatial dim


# --------------------------------------------------------------------------- helpers


def _as_tuple(value, nd, name):
    """Broadcast an int to ``nd`` ints, or check that a sequence has ``nd`` ints."""
    if np.ndim(value) == 0:
        return (int(value),) * nd
    out = tuple(int(v) for v in value)
    if len(out) != nd:
        raise ValueError(f"{name} needs {nd} entries (one per spatial dim), got {len(out)}: {value!r}")
    return out


def _as_pairs(padding, nd):
    """Normalise ``padding`` to a tuple of ``nd`` ``(before, after)`` pairs of ints."""
    if np.ndim(padding) == 0:
        p = int(padding)
        pairs = ((p, p),) * nd
    else:
        entries = list(padding)
        if len(entries) != nd:
            raise ValueError(f"padding needs {nd} entries (one per spatial dim), got {len(entries)}: {padding!r}")
        pairs = []
        for e in entries:
            if np.ndim(e) == 0:
                pairs.append((int(e), int(e)))
            else:
                b, a = e
                pairs.append((int(b), int(a)))
        pairs = tuple(pairs)
    for b, a in pairs:
        if b < 0 or a < 0:
            raise ValueError(f"padding must be non-negative, got {pairs!r}")
    return pairs


def _as_float64(x, name, min_ndim):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have shape (N, C, *spatial) with at least one spatial dim, got {x.shape}")
    return x


def _windows(xp, window, stride, dilation, out):
    """Windows of a padded array.

    Parameters
    ----------
    xp : ndarray, shape (N, C, *P)
        The padded input.
    window, stride, dilation, out : tuple of int
        Kernel size, stride, dilation and output size, one entry per spatial dim.

    Returns
    -------
    ndarray, shape (N, C, *out, *window)
        A read-only view: ``result[n, c, *o, *t] = xp[n, c, *(o*stride + t*dilation)]``.
    """
    nd = len(window)
    span = tuple(d * (k - 1) + 1 for k, d in zip(window, dilation))
    view = sliding_window_view(xp, span, axis=tuple(range(2, 2 + nd)))
    index = (slice(None), slice(None))
    index += tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(out, stride))
    index += tuple(slice(None, None, d) for d in dilation)
    return view[index]


def output_size(L, k, stride, pad_before, pad_after, dilation):
    """Output length of one spatial dim, per the contract's formula.

    Parameters
    ----------
    L : int
        Input length.
    k : int
        Kernel length.
    stride : int
        Stride.
    pad_before, pad_after : int
        Padding before and after the input.
    dilation : int
        Dilation (spacing between kernel taps).

    Returns
    -------
    int
        ``floor((L + pad_before + pad_after - dilation*(k-1) - 1) / stride) + 1``. A result
        below 1 means the (dilated) kernel does not fit in the padded input.

    Examples
    --------
    >>> output_size(28, 3, 1, 1, 1, 1)
    28
    >>> output_size(227, 11, 4, 0, 0, 1)
    55
    """
    return (L + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1


def _pool_output_size(L, k, stride, pad_before, pad_after, dilation, ceil_mode):
    """PyTorch's pooling output length, including the ``ceil_mode`` rule."""
    numerator = L + pad_before + pad_after - dilation * (k - 1) - 1
    # A window longer than the padded input still gives one output with ceil_mode (as in
    # PyTorch); the caller rejects an empty result.
    if not ceil_mode:
        return numerator // stride + 1
    out = -(-numerator // stride) + 1
    # The last window must start inside the input or the left padding.
    if (out - 1) * stride >= L + pad_before:
        out -= 1
    return out


def _check_geometry(spatial, kernel, stride, dilation, pairs):
    if any(s < 1 for s in stride):
        raise ValueError(f"stride must be positive, got {stride}")
    if any(d < 1 for d in dilation):
        raise ValueError(f"dilation must be positive, got {dilation}")
    if any(k < 1 for k in kernel):
        raise ValueError(f"kernel size must be positive, got {kernel}")
    out = tuple(
        output_size(L, k, s, b, a, d)
        for L, k, s, (b, a), d in zip(spatial, kernel, stride, pairs, dilation)
    )
    if any(o < 1 for o in out):
        raise ValueError(
            f"kernel {kernel} with dilation {dilation} does not fit in input {spatial} padded by {pairs}"
        )
    return out


# --------------------------------------------------------------------------- convolution


def conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """N-dimensional convolution (cross-correlation, as in deep learning), in float64.

    Parameters
    ----------
    x : array_like, shape (N, C_in, *L)
        Input.
    weight : array_like, shape (C_out, C_in // groups, *k)
        Filters. The number of spatial dims is ``weight.ndim - 2``.
    bias : array_like, shape (C_out,), optional
        Added to every output position of its channel. Default: None.
    stride : int or tuple of int
        Step between windows, per spatial dim. Default: 1.
    padding : int or sequence of (before, after) pairs
        Zeros added before and after each spatial dim. Default: 0.
    dilation : int or tuple of int
        Spacing between kernel taps, per spatial dim. Default: 1.
    groups : int
        Input and output channels are split into ``groups`` blocks; output block ``g`` sees
        only input block ``g``. Default: 1.

    Returns
    -------
    ndarray, float64, shape (N, C_out, *out)
        ``y[n, f, *o] = bias[f] + sum_{c, t} weight[f, c, *t] * xp[n, g*C_in/groups + c,
        *(o*stride + t*dilation)]`` where ``g = f // (C_out/groups)`` and ``xp`` is ``x``
        zero-padded; ``out = floor((L + before + after - dilation*(k-1) - 1) / stride) + 1``.

    Examples
    --------
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> w = np.arange(4.0).reshape(1, 1, 2, 2)
    >>> conv(x, w)[0, 0]
    array([[19., 25.],
           [37., 43.]])
    """
    x = _as_float64(x, "x", 3)
    weight = _as_float64(weight, "weight", 3)
    nd = weight.ndim - 2
    if x.ndim != nd + 2:
        raise ValueError(f"x has shape {x.shape} but weight {weight.shape} implies {nd} spatial dims")
    stride = _as_tuple(stride, nd, "stride")
    dilation = _as_tuple(dilation, nd, "dilation")
    pairs = _as_pairs(padding, nd)
    c_out, cin_g = weight.shape[:2]
    kernel = weight.shape[2:]
    if groups < 1 or c_out % groups != 0:
        raise ValueError(f"groups={groups} must divide the {c_out} output channels")
    if x.shape[1] != cin_g * groups:
        raise ValueError(
            f"x has {x.shape[1]} channels but weight {weight.shape} with groups={groups} expects {cin_g * groups}"
        )
    out = _check_geometry(x.shape[2:], kernel, stride, dilation, pairs)

    xp = np.pad(x, ((0, 0), (0, 0)) + pairs)
    win = _windows(xp, kernel, stride, dilation, out)  # (N, C_in, *out, *k)
    o, t = _OUT_LETTERS[:nd], _TAP_LETTERS[:nd]
    subscripts = f"nc{o}{t},fc{t}->nf{o}"
    cout_g = c_out // groups
    y = np.concatenate(
        [
            np.einsum(
                subscripts,
                win[:, g * cin_g:(g + 1) * cin_g],
                weight[g * cout_g:(g + 1) * cout_g],
                optimize=True,
            )
            for g in range(groups)
        ],
        axis=1,
    )
    if bias is not None:
        bias = np.asarray(bias, dtype=np.float64).reshape((1, c_out) + (1,) * nd)
        y = y + bias
    return np.ascontiguousarray(y, dtype=np.float64)


def conv_transpose(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """N-dimensional transposed convolution (the adjoint of :func:`conv`), in float64.

    Parameters
    ----------
    x : array_like, shape (N, C_in, *L)
        Input.
    weight : array_like, shape (C_in, C_out // groups, *k)
        Filters (PyTorch's transposed layout).
    bias : array_like, shape (C_out,), optional
        Default: None.
    stride : int or tuple of int
        Default: 1.
    padding : int or sequence of (before, after) pairs
        Elements removed from the start and the end of each spatial dim of the full
        output. Default: 0.
    output_padding : int or tuple of int
        Extra elements added at the end of the full output. Default: 0.
    groups : int
        Default: 1.
    dilation : int or tuple of int
        Default: 1.

    Returns
    -------
    ndarray, float64, shape (N, C_out, *out)
        ``out = (L - 1)*stride - before - after + dilation*(k - 1) + 1 + output_padding``.

    Notes
    -----
    Implemented as a direct scatter, the definition itself: every input element
    ``x[n, c, *i]`` times the kernel ``weight[c, f, *t]`` is added to the full output at
    ``i*stride + t*dilation``; the full output has length
    ``(L - 1)*stride + dilation*(k - 1) + 1 + output_padding``, and then ``before`` and
    ``after`` elements are removed from its ends. The loop runs over kernel taps (and
    groups), each tap an ``einsum`` over all input positions at once.
    """
    x = _as_float64(x, "x", 3)
    weight = _as_float64(weight, "weight", 3)
    nd = weight.ndim - 2
    if x.ndim != nd + 2:
        raise ValueError(f"x has shape {x.shape} but weight {weight.shape} implies {nd} spatial dims")
    stride = _as_tuple(stride, nd, "stride")
    dilation = _as_tuple(dilation, nd, "dilation")
    output_padding = _as_tuple(output_padding, nd, "output_padding")
    pairs = _as_pairs(padding, nd)
    c_in, cout_g = weight.shape[:2]
    kernel = weight.shape[2:]
    if groups < 1 or c_in % groups != 0:
        raise ValueError(f"groups={groups} must divide the {c_in} input channels")
    if x.shape[1] != c_in:
        raise ValueError(f"x has {x.shape[1]} channels but weight {weight.shape} expects {c_in}")
    if any(s < 1 for s in stride) or any(d < 1 for d in dilation):
        raise ValueError(f"stride and dilation must be positive, got {stride}, {dilation}")
    if any(p < 0 for p in output_padding):
        raise ValueError(f"output_padding must be non-negative, got {output_padding}")
    cin_g = c_in // groups
    n = x.shape[0]
    spatial = x.shape[2:]
    full = tuple(
        (L - 1) * s + d * (k - 1) + 1 + op
        for L, s, d, k, op in zip(spatial, stride, dilation, kernel, output_padding)
    )
    if any(b + a >= f for (b, a), f in zip(pairs, full)):
        raise ValueError(f"padding {pairs} removes the whole full output of size {full}")

    y = np.zeros((n, cout_g * groups) + full)
    o = _OUT_LETTERS[:nd]
    for tap in np.ndindex(*kernel):
        where = tuple(
            slice(t * d, t * d + (L - 1) * s + 1, s)
            for t, d, L, s in zip(tap, dilation, spatial, stride)
        )
        for g in range(groups):
            contribution = np.einsum(
                f"nc{o},cf->nf{o}",
                x[:, g * cin_g:(g + 1) * cin_g],
                weight[(slice(g * cin_g, (g + 1) * cin_g), slice(None)) + tap],
            )
            y[(slice(None), slice(g * cout_g, (g + 1) * cout_g)) + where] += contribution

    crop = tuple(slice(b, f - a) for (b, a), f in zip(pairs, full))
    y = y[(slice(None), slice(None)) + crop]
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape((1, cout_g * groups) + (1,) * nd)
    return np.ascontiguousarray(y, dtype=np.float64)


# --------------------------------------------------------------------------- pooling


def _pool_setup(x, kernel_size, stride, padding, dilation, ceil_mode):
    """Normalise pooling parameters; return them with the output size and right-hand extra."""
    nd = x.ndim - 2
    kernel = _as_tuple(kernel_size, nd, "kernel_size")
    stride = kernel if stride is None else _as_tuple(stride, nd, "stride")
    dilation = _as_tuple(dilation, nd, "dilation")
    pairs = _as_pairs(padding, nd)
    if any(s < 1 for s in stride) or any(d < 1 for d in dilation) or any(k < 1 for k in kernel):
        raise ValueError(f"kernel_size, stride and dilation must be positive, got {kernel}, {stride}, {dilation}")
    out = tuple(
        _pool_output_size(L, k, s, b, a, d, ceil_mode)
        for L, k, s, (b, a), d in zip(x.shape[2:], kernel, stride, pairs, dilation)
    )
    if any(o < 1 for o in out):
        raise ValueError(f"pooling output size {out} is empty")
    # With ceil_mode the last window may reach past the padded input: pad it further.
    extra = tuple(
        max(0, (o - 1) * s + d * (k - 1) + 1 - (L + b + a))
        for o, s, d, k, L, (b, a) in zip(out, stride, dilation, kernel, x.shape[2:], pairs)
    )
    return kernel, stride, dilation, pairs, out, extra


def max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """N-dimensional max pooling, in float64.

    Parameters
    ----------
    x : array_like, shape (N, C, *L)
        Input.
    kernel_size : int or tuple of int
        Window size.
    stride : int or tuple of int, optional
        Default: None, meaning ``kernel_size``.
    padding : int or sequence of (before, after) pairs
        ``-inf`` added before and after each spatial dim. Default: 0.
    dilation : int or tuple of int
        Spacing between window taps. Default: 1.
    ceil_mode : bool
        Round the output size up instead of down; the last window must still start inside
        the input or the left padding. Default: False.

    Returns
    -------
    ndarray, float64, shape (N, C, *out)
        The maximum over each window; a window lying wholly in padding gives ``-inf``.

    Examples
    --------
    >>> x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]])
    >>> max_pool(x[None, None], 2)[0, 0]
    array([[6., 8.],
           [3., 4.]])
    """
    x = _as_float64(x, "x", 3)
    nd = x.ndim - 2
    kernel, stride, dilation, pairs, out, extra = _pool_setup(x, kernel_size, stride, padding, dilation, ceil_mode)
    widths = ((0, 0), (0, 0)) + tuple((b, a + e) for (b, a), e in zip(pairs, extra))
    xp = np.pad(x, widths, constant_values=-np.inf)
    win = _windows(xp, kernel, stride, dilation, out)
    return np.ascontiguousarray(win.max(axis=tuple(range(2 + nd, 2 + 2 * nd))))


def _first_max_last_nan(values, flat):
    """Reduce windows of taps to PyTorch's ``(max, index)``.

    Parameters
    ----------
    values : ndarray, shape (..., T)
        The taps of every window, in row-major (scan) order.
    flat : ndarray of int64, broadcastable to ``values``
        Each tap's flat index into its input plane, ``-1`` for taps outside the input.

    Returns
    -------
    (ndarray float64, ndarray int64), both of shape (...)
        PyTorch's scan: the best starts as ``-inf`` at the window's first tap inside the
        input, and a tap replaces it when ``value > best or isnan(value)``. So a window with
        NaNs gives its last NaN; otherwise the first tap holding the largest value, or the
        first tap inside the input when all of them are ``-inf``. A window without any tap
        inside the input gives ``(-inf, -1)``.
    """
    flat = np.broadcast_to(flat, values.shape)
    inside = flat >= 0
    values = np.where(inside, values, -np.inf)
    nan = np.isnan(values)
    last = values.shape[-1] - 1
    last_nan = last - np.argmax(nan[..., ::-1], axis=-1)
    numbers = np.where(nan, -np.inf, values)
    first_max = np.argmax(numbers, axis=-1)  # argmax returns the first of equal maxima
    top = np.take_along_axis(numbers, first_max[..., None], axis=-1)[..., 0]
    first_inside = np.argmax(inside, axis=-1)  # 0 (a tap outside, index -1) if none is inside
    pos = np.where(nan.any(axis=-1), last_nan, np.where(top > -np.inf, first_max, first_inside))
    value = np.take_along_axis(values, pos[..., None], axis=-1)[..., 0]
    index = np.take_along_axis(flat, pos[..., None], axis=-1)[..., 0]
    return np.ascontiguousarray(value), np.ascontiguousarray(index, dtype=np.int64)


def max_pool_with_indices(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """N-dimensional max pooling with PyTorch's indices (``return_indices=True``), in float64.

    Parameters
    ----------
    x : array_like, shape (N, C, *L)
        Input.
    kernel_size, stride, padding, dilation, ceil_mode
        As in :func:`max_pool`.

    Returns
    -------
    values : ndarray, float64, shape (N, C, *out)
        As :func:`max_pool` computes them.
    indices : ndarray, int64, shape (N, C, *out)
        Where each value lies: its flat index into the input plane (row-major over ``L``:
        ``w`` in 1-D, ``h*W + w`` in 2-D, ``(d*H + h)*W + w`` in 3-D). Equal maxima give the
        first in scan order, NaNs the last NaN of the window; a window of ``-inf`` values
        gives its first tap inside the input, and a window wholly in padding ``-1``.

    Examples
    --------
    >>> x = np.array([1.0, 3.0, 3.0, np.nan, 2.0, np.nan, 5.0, 4.0])
    >>> values, indices = max_pool_with_indices(x[None, None], 3, 3, ceil_mode=True)
    >>> values[0, 0], indices[0, 0]
    (array([ 3., nan,  5.]), array([1, 5, 6]))
    """
    x = _as_float64(x, "x", 3)
    nd = x.ndim - 2
    kernel, stride, dilation, pairs, out, extra = _pool_setup(x, kernel_size, stride, padding, dilation, ceil_mode)
    widths = tuple((b, a + e) for (b, a), e in zip(pairs, extra))
    xp = np.pad(x, ((0, 0), (0, 0)) + widths, constant_values=-np.inf)
    plane = np.arange(int(np.prod(x.shape[2:])), dtype=np.int64).reshape((1, 1) + x.shape[2:])
    flat = np.pad(plane, ((0, 0), (0, 0)) + widths, constant_values=-1)
    taps = int(np.prod(kernel))
    values = _windows(xp, kernel, stride, dilation, out).reshape(x.shape[:2] + out + (taps,))
    where = _windows(flat, kernel, stride, dilation, out).reshape((1, 1) + out + (taps,))
    return _first_max_last_nan(values, where)


def _tap_counts(L, k, stride, pad_before, pad_after, dilation, out, count_include_pad):
    """Divisor of one spatial dim: for each output ``o``, the taps of its window inside the
    allowed interval (``[-pad_before, L + pad_after)`` or ``[0, L)``)."""
    starts = np.arange(out) * stride - pad_before
    taps = starts[:, None] + np.arange(k)[None, :] * dilation  # (out, k) input coordinates
    lo, hi = (-pad_before, L + pad_after) if count_include_pad else (0, L)
    return ((taps >= lo) & (taps < hi)).sum(axis=1)


def avg_pool(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, dilation=1,
             divisor_override=None):
    """N-dimensional average pooling, in float64, with PyTorch's divisor rule.

    Parameters
    ----------
    x : array_like, shape (N, C, *L)
        Input.
    kernel_size : int or tuple of int
        Window size.
    stride : int or tuple of int, optional
        Default: None, meaning ``kernel_size``.
    padding : int or sequence of (before, after) pairs
        Zeros added before and after each spatial dim. Default: 0.
    ceil_mode : bool
        As in :func:`max_pool`. Default: False.
    count_include_pad : bool
        Whether padded positions count in the divisor. Default: True.
    dilation : int or tuple of int
        Spacing between window taps (an extension beyond PyTorch, as in ONNX). Default: 1.
    divisor_override : int, optional
        When given, every window's sum is divided by it instead (``count_include_pad`` then
        has no effect), as PyTorch's ``divisor_override``. Default: None.

    Returns
    -------
    ndarray, float64, shape (N, C, *out)
        The sum over each window divided by its divisor.

    Notes
    -----
    The window of output ``o`` has taps ``start + t*dilation`` for ``t < k``, where
    ``start = o*stride - pad_before``. With ``count_include_pad`` the divisor counts the
    taps inside ``[-pad_before, L + pad_after)`` (padding counts, but not the region that
    ``ceil_mode`` adds past the right padding); otherwise the taps inside ``[0, L)``. This
    is PyTorch's rule (which clips the window end to ``L + pad``) generalised to asymmetric
    padding and dilation. Over several dims the divisor is the product of the per-dim
    counts. A window without any counted tap (possible only with asymmetric padding wider
    than PyTorch allows and ``count_include_pad=False``) gives ``nan``.
    """
    x = _as_float64(x, "x", 3)
    nd = x.ndim - 2
    kernel, stride, dilation, pairs, out, extra = _pool_setup(x, kernel_size, stride, padding, dilation, ceil_mode)
    widths = ((0, 0), (0, 0)) + tuple((b, a + e) for (b, a), e in zip(pairs, extra))
    xp = np.pad(x, widths)
    win = _windows(xp, kernel, stride, dilation, out)
    sums = win.sum(axis=tuple(range(2 + nd, 2 + 2 * nd)))
    if divisor_override is not None:
        if int(divisor_override) == 0:
            raise ValueError("divisor_override must not be zero")
        return np.ascontiguousarray(sums / float(int(divisor_override)))
    divisor = np.ones(out)
    for dim, (L, k, s, (b, a), d, o) in enumerate(zip(x.shape[2:], kernel, stride, pairs, dilation, out)):
        counts = _tap_counts(L, k, s, b, a, d, o, count_include_pad).astype(np.float64)
        shape = [1] * nd
        shape[dim] = o
        divisor = divisor * counts.reshape(shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.ascontiguousarray(sums / divisor)


def adaptive_avg_pool(x, output_size):
    """N-dimensional adaptive average pooling, in float64, with PyTorch's windows.

    Parameters
    ----------
    x : array_like, shape (N, C, *L)
        Input.
    output_size : int or tuple of int (or None)
        Output size per spatial dim; an int is used for every dim, and ``None`` keeps that
        dim's input size.

    Returns
    -------
    ndarray, float64, shape (N, C, *output_size)
        Output ``i`` of a dim of length ``L`` averages input ``[floor(i*L/out),
        ceil((i+1)*L/out))``.

    Notes
    -----
    The windows form a product set, so the mean over a window is the composition of the
    per-dim means; each dim is reduced window by window (summing only the window's own
    elements, so an Inf elsewhere never meets a zero weight and becomes NaN).
    """
    x = _as_float64(x, "x", 3)
    nd = x.ndim - 2
    if np.ndim(output_size) == 0 and output_size is not None:
        output_size = (int(output_size),) * nd
    sizes = tuple(L if o is None else int(o) for o, L in zip(output_size, x.shape[2:]))
    if len(tuple(output_size)) != nd or any(o < 1 for o in sizes):
        raise ValueError(f"output_size {output_size!r} must give {nd} positive sizes")
    y = x
    for dim, (L, out) in enumerate(zip(x.shape[2:], sizes)):
        axis = 2 + dim
        windows = []
        for i in range(out):
            start, end = (i * L) // out, -((-(i + 1) * L) // out)  # ceil((i+1)*L/out)
            windows.append(np.take(y, np.arange(start, end), axis=axis).mean(axis=axis))
        y = np.stack(windows, axis=axis)
    return np.ascontiguousarray(y, dtype=np.float64)


def _adaptive_sizes(x, output_size):
    nd = x.ndim - 2
    if np.ndim(output_size) == 0 and output_size is not None:
        output_size = (int(output_size),) * nd
    output_size = tuple(output_size)
    sizes = tuple(L if o is None else int(o) for o, L in zip(output_size, x.shape[2:]))
    if len(output_size) != nd or any(o < 1 for o in sizes):
        raise ValueError(f"output_size {output_size!r} must give {nd} positive sizes")
    return sizes


def adaptive_max_pool(x, output_size):
    """N-dimensional adaptive max pooling with PyTorch's indices, in float64.

    Parameters
    ----------
    x : array_like, shape (N, C, *L)
        Input.
    output_size : int or tuple of int (or None)
        As in :func:`adaptive_avg_pool`.

    Returns
    -------
    values : ndarray, float64, shape (N, C, *output_size)
        Output ``i`` of a dim of length ``L`` is the maximum over input
        ``[floor(i*L/out), ceil((i+1)*L/out))``.
    indices : ndarray, int64, shape (N, C, *output_size)
        Flat indices into the input plane, with :func:`max_pool_with_indices`'s rule for
        equal maxima, NaNs and ``-inf``.

    Notes
    -----
    Every dim's windows are padded to the longest of them: the taps ``start + t`` for ``t``
    below that length, those at or past the window's end marked outside (index ``-1``). The
    taps are gathered with broadcast index arrays, shape ``(*out, *taps)``.

    Examples
    --------
    >>> x = np.array([3.0, 1.0, 3.0, np.nan, -np.inf, -np.inf, -np.inf])
    >>> values, indices = adaptive_max_pool(x[None, None], 3)  # [0, 3), [2, 5), [4, 7)
    >>> values[0, 0], indices[0, 0]
    (array([  3.,  nan, -inf]), array([0, 3, 4]))
    """
    x = _as_float64(x, "x", 3)
    nd = x.ndim - 2
    spatial = x.shape[2:]
    sizes = _adaptive_sizes(x, output_size)
    coords, inside = [], np.ones((), dtype=bool)
    for dim, (L, out) in enumerate(zip(spatial, sizes)):
        i = np.arange(out)
        start = (i * L) // out
        end = -((-(i + 1) * L) // out)  # ceil((i+1)*L/out)
        taps = start[:, None] + np.arange(int((end - start).max()))[None, :]  # (out, T)
        valid = taps < end[:, None]
        # broadcast to (*out, *T): this dim's out at position dim, its T at nd + dim
        shape = [1] * (2 * nd)
        shape[dim], shape[nd + dim] = out, taps.shape[1]
        coords.append(np.minimum(taps, L - 1).reshape(shape))
        inside = inside & valid.reshape(shape)
    values = x[(slice(None), slice(None)) + tuple(coords)]  # (N, C, *out, *T)
    flat = np.ravel_multi_index(tuple(np.broadcast_arrays(*coords)), spatial)
    flat = np.where(inside, flat, -1)
    taps = int(np.prod(values.shape[2 + nd:]))
    values = values.reshape(x.shape[:2] + sizes + (taps,))
    flat = flat.reshape((1, 1) + sizes + (taps,))
    return _first_max_last_nan(values, flat)


def max_unpool(x, indices, kernel_size, stride=None, padding=0, output_size=None):
    """N-dimensional max unpooling (the scatter of :func:`max_pool_with_indices`), in float64.

    Parameters
    ----------
    x : array_like, shape (N, C, *L)
        Pooled values.
    indices : array_like of int, shape (N, C, *L)
        Flat indices into each output plane, as :func:`max_pool_with_indices` returns them.
    kernel_size : int or tuple of int
        The pooling window.
    stride : int or tuple of int, optional
        Default: None, meaning ``kernel_size``.
    padding : int or sequence of (before, after) pairs
        The pooling's padding. Default: 0.
    output_size : sequence of int, optional
        The output's spatial size (``nd`` entries, or ``nd + 2`` with ``N, C`` leading, which
        are ignored). Default: ``(L - 1)*stride - before - after + kernel_size`` per dim.

    Returns
    -------
    ndarray, float64, shape (N, C, *output_size)
        Zeros, with ``y[n, c].flat[indices[n, c, i]] = x[n, c, i]``, in scan order over ``i``:
        of several values sent to one place, the last one stays.

    Raises
    ------
    ValueError
        An index outside ``[0, prod(output_size))``; the message is PyTorch's and names the
        last such index in scan order over ``(n, c, i)``.

    Examples
    --------
    >>> y = max_unpool(np.array([[[5.0, 7.0, 6.0]]]), np.array([[[1, 1, 4]]]), 2)
    >>> y[0, 0]
    array([0., 7., 0., 0., 6., 0.])
    """
    x = _as_float64(x, "x", 3)
    nd = x.ndim - 2
    indices = np.asarray(indices)
    if indices.shape != x.shape:
        raise ValueError(f"indices of shape {indices.shape} do not match x of shape {x.shape}")
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"indices must be integers, got {indices.dtype}")
    kernel = _as_tuple(kernel_size, nd, "kernel_size")
    stride = kernel if stride is None else _as_tuple(stride, nd, "stride")
    pairs = _as_pairs(padding, nd)
    if output_size is None:
        sizes = tuple((L - 1) * s - b - a + k for L, s, (b, a), k in zip(x.shape[2:], stride, pairs, kernel))
    else:
        sizes = tuple(int(v) for v in output_size)
        if len(sizes) == nd + 2:
            sizes = sizes[2:]
        if len(sizes) != nd:
            raise ValueError(f"output_size needs {nd} or {nd + 2} entries, got {output_size!r}")
    if any(v < 1 for v in sizes):
        raise ValueError(f"output size {sizes} must be positive")
    plane = int(np.prod(sizes))
    n, c = x.shape[:2]
    where = indices.reshape(n * c, int(np.prod(x.shape[2:]))).astype(np.int64)
    bad = np.flatnonzero((where < 0) | (where >= plane))
    if bad.size:
        shown = "x".join(str(v) for v in (sizes + (1,) if nd == 1 else sizes))
        raise ValueError(f"Found an invalid max index: {where.flat[bad[-1]]} "
                         f"(output volumes are of size {shown})")
    # One position per target: the last writer in scan order wins. Scanning the writes
    # backwards, np.unique's first occurrence of each target is that last writer.
    target = (np.arange(n * c)[:, None] * plane + where).ravel()[::-1]
    source = x.reshape(-1)[::-1]
    target, first = np.unique(target, return_index=True)
    y = np.zeros(n * c * plane)
    y[target] = source[first]
    return y.reshape((n, c) + sizes)


# ------------------------------------------------------------------------------ gradients
#
# Each gradient is the adjoint of its forward map, written from the forward formula: for a
# linear map y = A x, the input gradient is A^T gy, gathered here by scattering every
# window's gradient back onto the taps that made it.


def _scatter_taps(shape, kernel, stride, dilation, out, contributions):
    """``sum_t`` of ``contributions(t)`` placed at ``o*stride + t*dilation``: float64, ``shape``.

    ``contributions(t)`` gives, for the kernel tap ``t`` (a tuple), an array ``(N, C, *out)``
    that lands on the padded positions ``o*stride + t*dilation`` of every window ``o``.
    """
    g = np.zeros(shape)
    for t in np.ndindex(*kernel):
        where = tuple(slice(ti * d, ti * d + (o - 1) * s + 1, s)
                      for ti, d, o, s in zip(t, dilation, out, stride))
        g[(slice(None), slice(None)) + where] += contributions(t)
    return g


def conv_input_grad(input_size, weight, grad_output, stride=1, padding=0, dilation=1, groups=1):
    """The gradient of :func:`conv` with respect to its input, in float64.

    ``gx[n, c, *i] = sum_{f, t, o : o*stride + t*dilation = i + pad_before} weight[f, c', *t]
    * gy[n, f, *o]`` (within a group), cropped from the padded input to ``input_size``.
    """
    weight = _as_float64(weight, "weight", 3)
    gy = _as_float64(grad_output, "grad_output", 3)
    nd = weight.ndim - 2
    stride, dilation = _as_tuple(stride, nd, "stride"), _as_tuple(dilation, nd, "dilation")
    pairs = _as_pairs(padding, nd)
    n, c = int(input_size[0]), int(input_size[1])
    spatial = tuple(int(v) for v in input_size[-nd:])
    kernel, out = weight.shape[2:], gy.shape[2:]
    c_out, cin_g = weight.shape[:2]
    cout_g = c_out // groups
    padded = (n, c) + tuple(L + b + a for L, (b, a) in zip(spatial, pairs))

    def tap(t):
        return np.concatenate([
            np.einsum("nf...,fc->nc...", gy[:, g * cout_g:(g + 1) * cout_g],
                      weight[(slice(g * cout_g, (g + 1) * cout_g), slice(None)) + t])
            for g in range(groups)], axis=1)
    gp = _scatter_taps(padded, kernel, stride, dilation, out, tap)
    crop = tuple(slice(b, b + L) for (b, _), L in zip(pairs, spatial))
    return np.ascontiguousarray(gp[(slice(None), slice(None)) + crop])


def conv_weight_grad(x, weight_size, grad_output, stride=1, padding=0, dilation=1, groups=1):
    """The gradient of :func:`conv` with respect to its weight, in float64.

    ``gw[f, c, *t] = sum_{n, o} xp[n, g*C_in/groups + c, *(o*stride + t*dilation)]
    * gy[n, f, *o]``, ``xp`` the zero-padded input.
    """
    x = _as_float64(x, "x", 3)
    gy = _as_float64(grad_output, "grad_output", 3)
    nd = x.ndim - 2
    stride, dilation = _as_tuple(stride, nd, "stride"), _as_tuple(dilation, nd, "dilation")
    pairs = _as_pairs(padding, nd)
    kernel = tuple(int(v) for v in weight_size[2:])
    c_out, cin_g = int(weight_size[0]), int(weight_size[1])
    cout_g = c_out // groups
    xp = np.pad(x, ((0, 0), (0, 0)) + pairs)
    win = _windows(xp, kernel, stride, dilation, gy.shape[2:])  # (N, C_in, *out, *k)
    o, t = _OUT_LETTERS[:nd], _TAP_LETTERS[:nd]
    return np.ascontiguousarray(np.concatenate([
        np.einsum(f"nc{o}{t},nf{o}->fc{t}", win[:, g * cin_g:(g + 1) * cin_g],
                  gy[:, g * cout_g:(g + 1) * cout_g], optimize=True)
        for g in range(groups)], axis=0))


def conv_transpose_input_grad(input_size, weight, grad_output, stride=1, padding=0,
                              output_padding=0, groups=1, dilation=1):
    """The gradient of :func:`conv_transpose` with respect to its input, in float64.

    Transposed convolution is the adjoint of convolution, so its input gradient is the
    convolution of ``grad_output`` with the same weight, cropped to ``input_size``.
    """
    nd = np.ndim(weight) - 2
    g = conv(grad_output, weight, None, stride, padding, dilation, groups)
    spatial = tuple(int(v) for v in input_size[-nd:])
    return np.ascontiguousarray(g[(slice(None), slice(None)) + tuple(slice(0, L) for L in spatial)])


def conv_transpose_weight_grad(x, weight_size, grad_output, stride=1, padding=0,
                               output_padding=0, groups=1, dilation=1):
    """The gradient of :func:`conv_transpose` with respect to its weight, in float64.

    ``y[n, f, *(i*stride + t*dilation - pad_before)] += x[n, c, *i] * w[c, f', *t]``, so
    ``gw[c, f', *t] = sum_{n, i} x[n, c, *i] * gyp[n, f, *(i*stride + t*dilation)]`` with
    ``gyp`` the output gradient padded by the cropped amounts (zeros where no output is).
    """
    x = _as_float64(x, "x", 3)
    gy = _as_float64(grad_output, "grad_output", 3)
    nd = x.ndim - 2
    stride, dilation = _as_tuple(stride, nd, "stride"), _as_tuple(dilation, nd, "dilation")
    pairs = _as_pairs(padding, nd)
    kernel = tuple(int(v) for v in weight_size[2:])
    cin, cout_g = int(weight_size[0]), int(weight_size[1])
    cin_g = cin // groups
    # The full (uncropped) output is (L-1)*stride + dilation*(k-1) + 1 (+ output padding at
    # the end); gy covers [pad_before, pad_before + len(gy)) of it.
    full = tuple((L - 1) * s + d * (k - 1) + 1 for L, s, d, k in zip(x.shape[2:], stride, dilation, kernel))
    widths = tuple((b, max(0, F - b - G)) for (b, _), F, G in zip(pairs, full, gy.shape[2:]))
    gyp = np.pad(gy, ((0, 0), (0, 0)) + widths)
    gyp = gyp[(slice(None), slice(None)) + tuple(slice(0, F) for F in full)]
    win = _windows(gyp, kernel, stride, dilation, x.shape[2:])  # (N, C_out, *L, *k)
    o, t = _OUT_LETTERS[:nd], _TAP_LETTERS[:nd]
    return np.ascontiguousarray(np.concatenate([
        np.einsum(f"nc{o},nf{o}{t}->cf{t}", x[:, g * cin_g:(g + 1) * cin_g],
                  win[:, g * cout_g:(g + 1) * cout_g], optimize=True)
        for g in range(groups)], axis=0))


def max_pool_input_grad(x, grad_output, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False):
    """The gradient of :func:`max_pool`: each window's gradient goes to its maximum's tap.

    Windows that share a maximum add their gradients (PyTorch's rule); a window wholly in
    padding passes nothing on.
    """
    x = _as_float64(x, "x", 3)
    gy = _as_float64(grad_output, "grad_output", 3)
    _, indices = max_pool_with_indices(x, kernel_size, stride, padding, dilation, ceil_mode)
    n, c = x.shape[:2]
    where = indices.reshape(n * c, int(np.prod(indices.shape[2:])))
    rows = np.broadcast_to(np.arange(n * c)[:, None], where.shape)
    keep = where >= 0
    g = np.zeros((n * c, int(np.prod(x.shape[2:]))))
    np.add.at(g, (rows[keep], where[keep]), gy.reshape(where.shape)[keep])
    return g.reshape(x.shape)


def avg_pool_input_grad(input_size, grad_output, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True, divisor_override=None,
                        dilation=1):
    """The gradient of :func:`avg_pool`: each window's gradient over its divisor, spread over
    the window's taps (those in padding are dropped)."""
    gy = _as_float64(grad_output, "grad_output", 3)
    nd = gy.ndim - 2
    shape = tuple(int(v) for v in input_size)
    probe = np.zeros(shape[:2] + shape[-nd:])
    kernel, stride, dilation, pairs, out, extra = _pool_setup(probe, kernel_size, stride, padding,
                                                              dilation, ceil_mode)
    if divisor_override is not None:
        share = gy / float(int(divisor_override))
    else:
        divisor = np.ones(out)
        for dim, (L, k, s, (b, a), d, o) in enumerate(zip(shape[-nd:], kernel, stride, pairs,
                                                         dilation, out)):
            counts = _tap_counts(L, k, s, b, a, d, o, count_include_pad).astype(np.float64)
            view = [1] * nd
            view[dim] = o
            divisor = divisor * counts.reshape(view)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = gy / divisor
    padded = probe.shape[:2] + tuple(L + b + a + e for L, (b, a), e in zip(shape[-nd:], pairs, extra))
    gp = _scatter_taps(padded, kernel, stride, dilation, out, lambda t: share)
    crop = tuple(slice(b, b + L) for (b, _), L in zip(pairs, shape[-nd:]))
    return np.ascontiguousarray(gp[(slice(None), slice(None)) + crop])

