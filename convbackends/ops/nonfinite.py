"""Exact NaN and Inf, and no overflow, for kernels whose arithmetic mixes their operands.

The direct formula of a convolution is a sum of products. A NaN or an Inf in it behaves
exactly as IEEE arithmetic says, whatever order the sum takes: a NaN term, ``0 * Inf``, or
``+Inf`` and ``-Inf`` in one sum give NaN; otherwise an infinite term gives its Inf. For
``conv`` every tap of every window lies in the zero-padded input, so a padded zero times an
infinite weight is a NaN term too. For ``conv_transpose`` the direct formula is the scatter
``y[o] += x[i] * w[r]`` over the real inputs only; an output that no input reaches gets only
the bias.

Transform kernels (FFT, Winograd) mix every input of a tile into every output of it, so one
NaN spreads over the whole tile, and a padded or inserted zero meets every weight. They do
not keep these rules, and their intermediates can grow past float32's range where the
direct sum does not. :func:`run_guarded` makes such a kernel exact:

1. One pass over each operand (:func:`magnitude`) finds ``max |a|``; NaN or Inf shows in it.
   Finite operands whose bound ``growth * max|x| * max|w| + max|b|`` fits the dtype run the
   kernel as they are: the result has the same bytes as the raw call.
2. A bound that does not fit float32 runs the kernel in float64 and casts back, so the
   result is finite wherever the direct result is.
3. Non-finite operands run the kernel with their non-finite entries replaced by zero, then
   the outputs whose direct sum holds a non-finite term (:func:`affected`) are recomputed.
   Their value depends only on the kinds of their terms, so it is computed exactly from the
   operands' *classes* (``sign`` of finite values, NaN and Inf kept: each term is then in
   ``{-1, 0, 1, ±Inf, NaN}``, and an integer sum of finite terms is exact).

Affected outputs are found separably, one spatial dim at a time with strided views (the
union of a box of windows is a box), never by unfolding the input. Outputs certainly NaN (a
window holding a NaN input, a channel holding a NaN weight) are set without recomputing.
"""

import math

import numpy as np

__all__ = ["FLOAT32_LIMIT", "GUARDED_OPS", "magnitude", "affected", "window_any",
           "scatter_any", "tap_lattice_any", "run_guarded", "patch"]

# The bound must stay below float32's largest value by a margin for its own rounding.
FLOAT32_LIMIT = float(np.finfo(np.float32).max) / 4
GUARDED_OPS = ("conv", "conv_transpose")
# Elements of gathered classes per chunk of recomputed outputs (4 bytes each).
CHUNK_ELEMENTS = 1 << 22


def magnitude(a):
    """``max |a|`` as a Python float: NaN if ``a`` holds a NaN, else Inf if an Inf; 0 for
    ``None`` or an empty array. Two reductions, no temporary array."""
    if a is None or a.size == 0:
        return 0.0
    hi, lo = float(np.max(a)), float(np.min(a))
    if hi != hi or lo != lo:
        return math.nan
    return max(hi, -lo)


def _finite_magnitude(a):
    """``max |a|`` over the finite entries of ``a`` (0 if none)."""
    if a is None:
        return 0.0
    finite = a[np.isfinite(a)]
    return magnitude(finite)


def _sanitized(a):
    """``a`` with its non-finite entries replaced by zero (a new array, same dtype)."""
    return np.where(np.isfinite(a), a, a.dtype.type(0))


def _axis_slice(ndim, axis, index):
    sl = [slice(None)] * ndim
    sl[axis] = index
    return tuple(sl)


# --------------------------------------------------------------------------- masks


def window_any(mask, spec):
    """``(N, G, *input)`` bool -> ``(N, G, *output)``: whether window ``o`` of ``conv``'s
    zero-padded input holds a True entry (padding is False).

    One spatial dim at a time: ``kernel`` strided ORs per dim, not ``prod(kernel)``.
    """
    a = mask
    for d in range(spec.ndim):
        L, k, s, dil = spec.input_spatial[d], spec.kernel[d], spec.stride[d], spec.dilation[d]
        (pb, _), O = spec.padding[d], spec.output_spatial[d]
        axis = 2 + d
        reach = (O - 1) * s + dil * (k - 1) + 1
        widths = [(0, 0)] * a.ndim
        widths[axis] = (pb, max(0, reach - L - pb))
        padded = np.pad(a, widths)
        shape = list(a.shape)
        shape[axis] = O
        out = np.zeros(shape, bool)
        for r in range(k):
            out |= padded[_axis_slice(a.ndim, axis, slice(r * dil, r * dil + (O - 1) * s + 1, s))]
        a = out
    return a


def scatter_any(mask, spec):
    """``(N, G, *input)`` bool -> ``(N, G, *output)``: whether output ``o`` of
    ``conv_transpose`` receives a term ``x[i] * w[r]`` (``o + pad_before = i*stride +
    r*dilation``) from a True input ``i``. One spatial dim at a time."""
    a = mask
    for d in range(spec.ndim):
        L, k, s, dil = spec.input_spatial[d], spec.kernel[d], spec.stride[d], spec.dilation[d]
        (pb, pa), O = spec.padding[d], spec.output_spatial[d]
        axis = 2 + d
        shape = list(a.shape)
        shape[axis] = O + pb + pa
        full = np.zeros(shape, bool)
        for r in range(k):
            full[_axis_slice(a.ndim, axis, slice(r * dil, r * dil + (L - 1) * s + 1, s))] |= a
        a = full[_axis_slice(a.ndim, axis, slice(pb, pb + O))]
    return a


def tap_lattice_any(taps, spec):
    """``(K, *kernel)`` bool -> ``(K, *output)``: whether output ``o`` of channel ``k`` of
    ``conv_transpose`` receives a term through a True tap ``r`` (from any real input)."""
    K, nd = taps.shape[0], spec.ndim
    full = np.zeros((K,) + tuple(O + pb + pa for O, (pb, pa)
                                 in zip(spec.output_spatial, spec.padding)), bool)
    for r in zip(*np.nonzero(taps.reshape(K, -1).any(axis=0).reshape(spec.kernel))):
        lattice = tuple(slice(t * dil, t * dil + (L - 1) * s + 1, s) for t, dil, L, s
                        in zip(r, spec.dilation, spec.input_spatial, spec.stride))
        full[(slice(None),) + lattice] |= taps[(slice(None),) + r].reshape((K,) + (1,) * nd)
    return full[(slice(None),) + tuple(slice(pb, pb + O) for O, (pb, _)
                                       in zip(spec.output_spatial, spec.padding))]


def _group_any(mask, groups):
    """``(N, C, *s)`` -> ``(N, groups, *s)``: any over each group's channels."""
    N, C = mask.shape[:2]
    return mask.reshape((N, groups, C // groups) + mask.shape[2:]).any(axis=2)


def _per_channel(mask_g, spec):
    """``(N, G, *out)`` -> ``(N, K, *out)``: each group's mask for its output channels."""
    return np.repeat(mask_g, spec.out_channels // spec.groups, axis=1)


def _transposed_taps(w_mask, spec):
    """``(C_in, K/g, *kernel)`` -> ``(K, *kernel)``: any over each output channel's inputs."""
    g, cg, kg = spec.groups, spec.in_channels // spec.groups, spec.out_channels // spec.groups
    return w_mask.reshape((g, cg, kg) + spec.kernel).any(axis=1).reshape(
        (spec.out_channels,) + spec.kernel)


def affected(op, spec, x_bad, w_bad):
    """``(N, K, *output)`` bool: the outputs whose direct sum holds a term with a True
    factor, for the masks ``x_bad`` (the input's shape) and ``w_bad`` (the weight's).

    ``conv``: the windows (padding included) holding a True input of the output channel's
    group, and every output of a channel with a True weight (every tap meets the padded
    input). ``conv_transpose``: the outputs a True input scatters onto, and those a True tap
    reaches from any real input.
    """
    if op == "conv":
        rows = _per_channel(window_any(_group_any(x_bad, spec.groups), spec), spec)
        channels = w_bad.reshape(spec.out_channels, -1).any(axis=1)
        return rows | channels.reshape((1, -1) + (1,) * spec.ndim)
    if op == "conv_transpose":
        rows = _per_channel(scatter_any(_group_any(x_bad, spec.groups), spec), spec)
        return rows | tap_lattice_any(_transposed_taps(w_bad, spec), spec)[None]
    raise ValueError(f"no non-finite rule for op {op!r}")


# --------------------------------------------------------------------------- recomputing


def _classes(a):
    """float32 classes: ``sign`` of finite entries, NaN and ±Inf kept."""
    c = np.sign(a).astype(np.float32)
    inf = np.isinf(a)
    c[inf] = a[inf]
    return c


def _chunks(count, per_row):
    rows = max(1, CHUNK_ELEMENTS // max(1, per_row))
    for start in range(0, count, rows):
        yield slice(start, min(count, start + rows))


def _write(y, n, o, channels, values, bias_classes):
    """``y[n, channels, *o] = values`` where ``values`` (with the bias) are non-finite."""
    values = values + bias_classes[channels][None, :]
    hit = ~np.isfinite(values)
    if not hit.any():
        return
    p, j = np.nonzero(hit)
    y[(n[p], channels[j]) + tuple(od[p] for od in o)] = values[p, j]


def _conv_values(xc, wc, n, o, spec, g, channels):
    """Class sums of ``conv`` at positions ``(n, *o)`` for ``channels`` of group ``g``:
    ``(P, len(channels))``. ``xc`` is the padded input's classes, channels last."""
    cg = spec.in_channels // spec.groups
    taps = np.indices(spec.kernel).reshape(spec.ndim, -1)
    index = tuple(od[:, None] * s + taps[d][None, :] * dil for d, (od, s, dil)
                  in enumerate(zip(o, spec.stride, spec.dilation)))
    patch = xc[(n[:, None],) + index + (slice(g * cg, (g + 1) * cg),)]      # (P, R, Cg)
    w = wc[channels].reshape(len(channels), cg, -1).transpose(0, 2, 1)       # (k, R, Cg)
    return np.einsum("prc,krc->pk", patch, w)


def _transpose_values(xc, wc, n, o, spec, g, channels):
    """Class sums of ``conv_transpose`` at ``(n, *o)`` for ``channels`` of group ``g``,
    over the real inputs only. ``xc`` is the input's classes, channels last."""
    cg, kg = spec.in_channels // spec.groups, spec.out_channels // spec.groups
    w = wc[g * cg:(g + 1) * cg][:, channels - g * kg]                         # (Cg, k, *kernel)
    acc = np.zeros((len(n), len(channels)), np.float32)
    for r in np.ndindex(*spec.kernel):
        num = [od + pb - t * dil for od, (pb, _), t, dil in zip(o, spec.padding, r,
                                                                 spec.dilation)]
        valid = np.ones(len(n), bool)
        for v, s, L in zip(num, spec.stride, spec.input_spatial):
            valid &= (v >= 0) & (v % s == 0) & (v < L * s)
        if not valid.any():
            continue
        i = tuple(v[valid] // s for v, s in zip(num, spec.stride))
        patch = xc[(n[valid],) + i + (slice(g * cg, (g + 1) * cg),)]            # (Pv, Cg)
        acc[valid] += np.einsum("pc,ck->pk", patch, w[(Ellipsis,) + r])
    return acc


def _recompute(y, xc, wc, bc, spec, op, g, where, channels):
    """Write the exact non-finite values at the True positions of ``where`` (N, *out) for
    ``channels`` (absolute indices, all in group ``g``)."""
    if not channels.size or not where.any():
        return
    values = _conv_values if op == "conv" else _transpose_values
    pos = np.nonzero(where)
    per_row = spec.in_channels // spec.groups * math.prod(spec.kernel)
    for part in _chunks(len(pos[0]), per_row):
        n, o = pos[0][part], tuple(p[part] for p in pos[1:])
        _write(y, n, o, channels, values(xc, wc, n, o, spec, g, channels), bc)


def patch(y, op, spec, x, weight, bias):
    """Overwrite ``y``, computed from the operands with non-finite entries replaced by zero
    (and any bias added), with the direct formula's values at every output whose sum holds
    a non-finite term; add a non-finite bias to its channel."""
    nd, G = spec.ndim, spec.groups
    K, kg = spec.out_channels, spec.out_channels // spec.groups
    if bias is not None and not np.isfinite(bias).all():
        bad = np.flatnonzero(~np.isfinite(bias))
        y[:, bad] += bias[bad].reshape((1, -1) + (1,) * nd)
    x_bad, w_bad = ~np.isfinite(x), ~np.isfinite(weight)
    if not (x_bad.any() or w_bad.any()):
        return y
    bc = np.zeros(K, np.float32) if bias is None else _classes(bias)
    x_nan = _group_any(np.isnan(x), G)
    x_inf = _group_any(np.isinf(x), G)
    if op == "conv":
        rows_nan, rows_inf = window_any(x_nan, spec), window_any(x_inf, spec)
        w_nan = np.isnan(weight).reshape(K, -1).any(axis=1)
        w_inf = np.isinf(weight).reshape(K, -1).any(axis=1) & ~w_nan
        # Certainly NaN: a window holding a NaN, a channel holding a NaN weight.
        y[_per_channel(rows_nan, spec)] = np.nan
        y[:, w_nan] = np.nan
        # Every output of an infinite weight's channel is affected.
        inf_reach = np.broadcast_to(w_inf.reshape((K,) + (1,) * nd), (K,) + spec.output_spatial)
        xc = np.pad(np.moveaxis(_classes(x), 1, -1), [(0, 0)] + list(spec.padding) + [(0, 0)])
    else:
        rows_nan, rows_inf = scatter_any(x_nan, spec), scatter_any(x_inf, spec)
        tap_nan = _transposed_taps(np.isnan(weight), spec)
        tap_inf = _transposed_taps(np.isinf(weight), spec)
        y[_per_channel(rows_nan, spec)] = np.nan
        nan_reach = tap_lattice_any(tap_nan, spec)
        y[np.broadcast_to(nan_reach[None], y.shape)] = np.nan
        w_inf = tap_inf.reshape(K, -1).any(axis=1)
        inf_reach = tap_lattice_any(tap_inf, spec) if w_inf.any() else None
        xc = np.moveaxis(_classes(x), 1, -1)
    wc = _classes(weight)
    for g in range(G):
        group = np.arange(g * kg, (g + 1) * kg)
        # Windows holding an Inf (and no NaN): every channel of the group.
        rows = rows_inf[:, g] & ~rows_nan[:, g]
        _recompute(y, xc, wc, bc, spec, op, g, rows, group)
        # Channels holding an infinite weight, where the input gave no non-finite term.
        inf_channels = group[w_inf[group]]
        if inf_channels.size:
            reach = inf_reach[inf_channels].any(axis=0)
            _recompute(y, xc, wc, bc, spec, op, g,
                       reach[None] & ~rows_inf[:, g] & ~rows_nan[:, g], inf_channels)
    return y


# --------------------------------------------------------------------------- the guard


def _escalated(plan):
    """``plan`` with every spec in float64, or ``None`` if a kernel of it declines that."""
    spec = plan.spec.replace(dtype="float64")
    if plan.lowering is not None:
        inner = _escalated(plan.inner)
        if inner is None:
            return None
        return type(plan)(plan.op, spec, plan.backend, plan.reason, plan.lowering, inner)
    if plan.backend.supports(plan.op, spec) is not None:
        return None
    return type(plan)(plan.op, spec, plan.backend, plan.reason)


def _overflows(plan, magnitudes):
    """Whether the kernel's intermediates could pass float32's range for these operands."""
    if plan.spec.dtype != "float32":
        return False
    growth = plan.growth()
    if growth is None:
        return False
    mx, mw, mb = magnitudes
    return growth * mx * mw + mb > FLOAT32_LIMIT


def _compute(plan, operands, out, magnitudes):
    """The raw plan on finite operands, in float64 when float32 could overflow."""
    if _overflows(plan, magnitudes):
        wide = _escalated(plan)
        if wide is not None:
            y64 = wide.run([None if a is None else a.astype(np.float64) for a in operands],
                           guard=False)
            with np.errstate(over="ignore"):
                if out is not None and plan.writes_out:
                    np.copyto(out, y64, casting="same_kind")
                    return out
                return y64.astype(plan.spec.dtype)
    return plan.run(operands, out, guard=False)


def run_guarded(plan, operands, out=None, epilogue=None):
    """Run ``plan`` (op ``conv`` or ``conv_transpose``, operands ``(x, weight, bias)``) with
    the direct formula's NaN and Inf and without float32 overflow (see the module text),
    then its ``epilogue`` (:mod:`.epilogue`), if any.

    Finite operands within the bound run the raw plan unchanged, the epilogue with it.
    """
    x, weight, bias = operands
    if not all(a is None or isinstance(a, np.ndarray) for a in operands):
        return plan.run(operands, out, guard=False, epilogue=epilogue)
    magnitudes = (magnitude(x), magnitude(weight), magnitude(bias))
    if all(math.isfinite(m) for m in magnitudes) and not _overflows(plan, magnitudes):
        return plan.run(operands, out, guard=False, epilogue=epilogue)
    y = _run_guarded_slow(plan, operands, out, magnitudes)
    if epilogue is None:
        return y
    if not y.flags.writeable:
        y = y.copy()
    return epilogue.apply(y)


def _run_guarded_slow(plan, operands, out, magnitudes):
    """Non-finite operands, or finite ones that could overflow float32."""
    x, weight, bias = operands
    if all(math.isfinite(m) for m in magnitudes):
        with np.errstate(over="ignore", invalid="ignore"):
            return _compute(plan, operands, out, magnitudes)
    with np.errstate(over="ignore", invalid="ignore"):
        clean = [a if a is None or math.isfinite(m) else _sanitized(a)
                 for a, m in zip(operands, magnitudes)]
        clean_magnitudes = tuple(m if math.isfinite(m) else _finite_magnitude(a)
                                 for a, m in zip(operands, magnitudes))
        y = _compute(plan, clean, out, clean_magnitudes)
        if not y.flags.writeable:
            y = y.copy()
        return patch(y, plan.op, plan.spec, x, weight, bias)
