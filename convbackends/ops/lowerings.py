"""Rewrites of one op into others, so a backend gains an op it has no kernel for.

A :class:`Lowering` turns a call of its ``source`` op into a call of its ``target`` op: the
spec is rewritten (or the rewrite says why it does not apply), and ``run`` adapts the
operands before and the results after. Dispatch tries a backend's own kernel first and the
lowerings of :data:`LOWERINGS` after, in order; nothing here chooses a backend.
"""

from dataclasses import dataclass, replace

import numpy as np

from ..spec import ConvSpec
from ..spec.layout import CHANNELS_FIRST, to_first, to_last
from . import gradients as grad

__all__ = ["Lowering", "LOWERINGS", "lowerings_from", "transpose_as_conv", "transposed_filter"]


@dataclass(frozen=True)
class Lowering:
    """``source`` computed through ``target``.

    ``rewrite(spec)`` returns the target op's spec, or a string saying why the rewrite does
    not apply to this call. ``run(run_target, operands, spec, target_spec)`` computes the
    source op's results, calling ``run_target(*target_operands)`` for the target op.
    ``exact_nonfinite`` says whether NaN and Inf come out as the source op's direct formula
    says whenever the target's kernel keeps its own formula's; a lowering that is not exact
    is guarded by dispatch (:mod:`.nonfinite`), which needs rules for its source op.
    ``reports_refusal`` says whether the reason it does not apply belongs in an error
    message (the layout lowerings' does not: every channels-first call would list them).
    """

    name: str
    source: str
    target: str
    summary: str
    rewrite: object
    run: object
    exact_nonfinite: bool = True
    reports_refusal: bool = True


def _drop_indices(run_target, operands, spec, target_spec):
    values, _ = run_target(*operands)
    return values


def _same_op_with_indices(spec):
    return spec.replace(op="max_pool_with_indices")


def _uniform_windows(spec, op):
    """An adaptive pool whose input sizes are multiples of its output sizes is a fixed one."""
    if any(L % o for L, o in zip(spec.input_spatial, spec.adaptive_output)):
        return (f"input size {spec.input_spatial} is not a multiple of the output size "
                f"{spec.adaptive_output}")
    kernel = tuple(L // o for L, o in zip(spec.input_spatial, spec.adaptive_output))
    return spec.replace(op=op, kernel=kernel, stride=kernel, padding=((0, 0),) * spec.ndim,
                        dilation=(1,) * spec.ndim, adaptive_output=())


def _as_is(run_target, operands, spec, target_spec):
    return run_target(*operands)


def _avg_as_depthwise(spec):
    """Average pooling is a depthwise convolution with a ones filter, then a division."""
    padding = []
    for L, k, s, (pb, _), d, o in zip(spec.input_spatial, spec.kernel, spec.stride,
                                      spec.padding, spec.dilation, spec.output_spatial):
        # Pad after as far as the last window reaches, no further: a ceil-mode window may
        # reach past the trailing padding, and ceil mode may drop a window that starts in
        # it (fewer outputs than the trailing padding would give the convolution).
        reach = (o - 1) * s + d * (k - 1) + 1
        padding.append((pb, max(0, reach - (L + pb))))
    padding = tuple(padding)
    target = ConvSpec(op="conv", batch=spec.batch, in_channels=spec.channels,
                      out_channels=spec.channels, input_spatial=spec.input_spatial,
                      kernel=spec.kernel, stride=spec.stride, padding=padding,
                      dilation=spec.dilation, groups=spec.channels, dtype=spec.dtype)
    assert target.output_spatial == spec.output_spatial
    return target


def _run_avg_as_depthwise(run_target, operands, spec, target_spec):
    (x,) = operands
    ones = np.ones(target_spec.weight_shape, spec.dtype)
    y = np.array(run_target(x, ones, None), dtype=spec.dtype, copy=True)
    divisor = np.ones((), np.int64)
    for counts in spec.divisor_counts():
        divisor = np.multiply.outer(divisor, counts)
    with np.errstate(divide="ignore", invalid="ignore"):   # a window of no taps is NaN
        np.divide(y, divisor.astype(spec.dtype), out=y)
    # Its direct sum is exactly 0 (0/0), whatever rounding a transform kernel left there.
    empty = divisor == 0
    if empty.any():
        y[np.broadcast_to(empty, y.shape)] = np.nan
    return y


def transpose_as_conv(spec):
    """``conv_transpose`` is ``conv`` over the stride-dilated input with the flipped filter
    (:func:`transposed_filter`): that conv's spec, or why it does not apply."""
    reach = [d * (k - 1) for d, k in zip(spec.dilation, spec.kernel)]
    if any(pb > r or pa > r for (pb, pa), r in zip(spec.padding, reach)):
        return "padding larger than dilation*(kernel-1) would crop the input"
    padding = tuple((r - pb, r - pa + op) for (pb, pa), r, op
                    in zip(spec.padding, reach, spec.output_padding))
    spread = tuple((L - 1) * s + 1 for L, s in zip(spec.input_spatial, spec.stride))
    target = ConvSpec(op="conv", batch=spec.batch, in_channels=spec.in_channels,
                      out_channels=spec.out_channels, input_spatial=spread,
                      kernel=spec.kernel, stride=(1,) * spec.ndim, padding=padding,
                      dilation=spec.dilation, groups=spec.groups, dtype=spec.dtype,
                      has_bias=spec.has_bias)
    assert target.output_spatial == spec.output_spatial
    return target


def _run_transpose_as_conv(run_target, operands, spec, target_spec):
    x, weight, bias = operands
    if any(s > 1 for s in spec.stride):
        spread = np.zeros(target_spec.input_shape, spec.dtype)
        spread[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in spec.stride)] = x
        x = spread
    return run_target(x, transposed_filter(weight, spec), bias)


def transposed_filter(weight, spec):
    """``conv_transpose``'s weight ``(C, K/g, *k)`` as the equivalent ``conv``'s filter
    ``(K, C/g, *k)``: channels swapped within each group, every kernel axis flipped."""
    g, nd = spec.groups, spec.ndim
    w = np.asarray(weight).reshape((g, spec.in_channels // g, spec.out_channels // g)
                                   + spec.kernel)
    w = np.swapaxes(w, 1, 2).reshape((spec.out_channels, spec.in_channels // g) + spec.kernel)
    return np.ascontiguousarray(w[(slice(None), slice(None)) + (slice(None, None, -1),) * nd])


# The ops that take ``data_format``, with the positions of their operands that are laid out
# like the input (the rest, weights and biases, keep PyTorch's layout); every result is.
LAYOUT_OPERANDS = {"conv": (0,), "conv_transpose": (0,), "max_pool": (0,),
                   "max_pool_with_indices": (0,), "avg_pool": (0,), "adaptive_avg_pool": (0,),
                   "adaptive_max_pool": (0,), "max_unpool": (0, 1)}


def _as_channels_first(spec):
    if spec.data_format == CHANNELS_FIRST:
        return "the input is channels_first already"
    return spec.replace(data_format=CHANNELS_FIRST)


def _run_channels_first(moved):
    """Channels-first views of the operands at positions ``moved`` in, contiguous
    channels-last results out: the one transposing copy of each result (and the copies a
    kernel makes of non-contiguous input) are what a native kernel saves."""
    def run(run_target, operands, spec, target_spec):
        operands = [to_first(a) if i in moved else a for i, a in enumerate(operands)]
        results = run_target(*operands)
        if isinstance(results, tuple):
            return tuple(np.ascontiguousarray(to_last(r)) for r in results)
        return np.ascontiguousarray(to_last(results))
    return run


def _layout_lowering(op):
    return Lowering(f"{op}:channels_last->channels_first", op, op,
                    "the channels-first kernel on transposed views, the result transposed "
                    "back", _as_channels_first, _run_channels_first(LAYOUT_OPERANDS[op]),
                    reports_refusal=False)


def _channels_first_only(low):
    """``low`` refusing channels-last calls: its rewrite builds channels-first specs, so a
    channels-last call takes the layout lowering first."""
    def rewrite(spec):
        if getattr(spec, "data_format", CHANNELS_FIRST) != CHANNELS_FIRST:
            return f"it rewrites channels_first calls; this one is {spec.data_format}"
        return low.rewrite(spec)
    return replace(low, rewrite=rewrite)


_CHANNELS_FIRST_LOWERINGS = (
    Lowering("max_pool->max_pool_with_indices", "max_pool", "max_pool_with_indices",
             "max pooling from the kernel that also finds the indices, which are dropped",
             _same_op_with_indices, _drop_indices),
    Lowering("adaptive_max_pool->max_pool_with_indices", "adaptive_max_pool",
             "max_pool_with_indices", "sizes that divide evenly give fixed windows",
             lambda spec: _uniform_windows(spec, "max_pool_with_indices"), _as_is),
    Lowering("adaptive_avg_pool->avg_pool", "adaptive_avg_pool", "avg_pool",
             "sizes that divide evenly give fixed windows",
             lambda spec: _uniform_windows(spec, "avg_pool"), _as_is),
    Lowering("avg_pool->conv", "avg_pool", "conv",
             "a depthwise convolution with a ones filter, divided by each window's divisor",
             _avg_as_depthwise, _run_avg_as_depthwise),
    Lowering("conv_transpose->conv", "conv_transpose", "conv",
             "conv over the input spread by the stride, with the flipped, channel-swapped "
             "filter", transpose_as_conv, _run_transpose_as_conv,
             # The inserted zeros and the padding meet every weight: 0 * Inf is NaN where
             # the scatter of the real inputs adds nothing.
             exact_nonfinite=False),
    Lowering("conv_input_grad->conv_transpose", "conv_input_grad", "conv_transpose",
             "the adjoint of conv: conv_transpose of the output gradient, output padding "
             "to the input's size", grad.input_grad_as_conv_transpose,
             grad.run_input_grad_as_conv_transpose),
    Lowering("conv_weight_grad->conv", "conv_weight_grad", "conv",
             "conv of the input with batch and channels swapped, the output gradient as "
             "the filter", grad.weight_grad_as_conv, grad.run_weight_grad_as_conv),
    Lowering("conv_transpose_input_grad->conv", "conv_transpose_input_grad", "conv",
             "the adjoint of conv_transpose: conv of the output gradient",
             grad.transpose_input_grad_as_conv, grad.run_transpose_input_grad_as_conv),
    Lowering("conv_transpose_weight_grad->conv", "conv_transpose_weight_grad", "conv",
             "conv of the uncropped output gradient with the input as the filter",
             grad.transpose_weight_grad_as_conv, grad.run_transpose_weight_grad_as_conv),
    Lowering("max_pool_input_grad->max_pool_with_indices", "max_pool_input_grad",
             "max_pool_with_indices", "the output gradient added at each window's maximum",
             grad.max_grad_as_indices, grad.run_max_grad_as_indices),
    Lowering("avg_pool_input_grad->conv_transpose", "avg_pool_input_grad", "conv_transpose",
             "depthwise conv_transpose of the output gradient over each window's divisor",
             grad.avg_grad_as_conv_transpose, grad.run_avg_grad_as_conv_transpose),
)

LOWERINGS = (tuple(_layout_lowering(op) for op in LAYOUT_OPERANDS)
             + tuple(_channels_first_only(low) for low in _CHANNELS_FIRST_LOWERINGS))


def lowerings_from(op):
    """The lowerings whose source is ``op``, in the order dispatch tries them."""
    return tuple(low for low in LOWERINGS if low.source == op)
