"""The gradient ops: how each one's spec is built, and how it lowers onto forward ops.

Every gradient of a linear op is that op's adjoint, and the adjoints are forward ops again:

- the input gradient of ``conv`` is ``conv_transpose`` of the output gradient with the same
  weight (the output padding chosen so it lands on the input's size);
- the weight gradient of ``conv`` is a ``conv`` of the input, batch and channel axes
  swapped, with the output gradient as the filter (stride and dilation swap roles);
- ``conv_transpose``'s input gradient is ``conv`` of the output gradient, its weight
  gradient a ``conv`` of the (padded) output gradient with the input as the filter;
- average pooling's is a depthwise ``conv_transpose`` of the output gradient over each
  window's divisor; max pooling's scatters the output gradient onto each window's maximum,
  whose index ``max_pool_with_indices`` finds.

The spec of a gradient op is the forward call's spec; the table (:mod:`.table`) names the
builders here, and :mod:`.lowerings` the rewrites. Nothing here chooses a backend.
"""

import math

import numpy as np

from ..errors import ShapeError
from ..spec import ConvSpec, conv_spec, pool_spec
from ..spec.messages import shape_str

__all__ = ["conv_grad_builder", "pool_grad_builder", "fold_padding"]


def _check_grad_output(func, grad_shape, spec, batched):
    expected = spec.output_shape if batched else spec.output_shape[1:]
    if tuple(grad_shape) != tuple(expected):
        raise ShapeError(f"{func}: grad_output has size {shape_str(grad_shape)}, but the "
                         f"forward call's output has size {shape_str(expected)}")


def conv_grad_builder(forward, wrt):
    """The spec builder of the gradient of ``forward`` (``"conv"`` or ``"conv_transpose"``)
    with respect to ``wrt`` (``"input"``: operands ``(weight, grad_output)`` and parameter
    ``input_size``; ``"weight"``: operands ``(x, grad_output)`` and ``weight_size``)."""
    def build(func, nd, shapes, dtype, *, input_size=None, weight_size=None, stride=1,
              padding=0, dilation=1, groups=1, output_padding=0):
        if wrt == "input":
            x_shape, w_shape = tuple(input_size), shapes[0]
        else:
            x_shape, w_shape = shapes[0], tuple(weight_size)
        if nd is not None and len(w_shape) != nd + 2:
            raise ShapeError(f"{func}: expected a {nd + 2}-D weight, got weight of size "
                             f"{shape_str(w_shape)}")
        spec, batched = conv_spec(func, x_shape, w_shape, None, op=forward, stride=stride,
                                  padding=padding, dilation=dilation, groups=groups,
                                  output_padding=output_padding, dtype=dtype)
        _check_grad_output(func, shapes[1], spec, batched)
        return spec, batched
    return build


def pool_grad_builder(op):
    """The spec builder of a pooling op's input gradient: ``max_pool`` (operands ``(x,
    grad_output)``) or ``avg_pool`` (operands ``(grad_output,)``, parameter ``input_size``)."""
    def build(func, nd, shapes, dtype, *, kernel_size, input_size=None, stride=None,
              padding=0, dilation=1, ceil_mode=False, count_include_pad=True,
              divisor_override=None):
        x_shape = shapes[0] if op == "max_pool" else tuple(input_size)
        spec, batched = pool_spec(func, op, x_shape, nd, kernel_size, stride, padding,
                                  dilation, ceil_mode, count_include_pad, dtype,
                                  divisor_override)
        _check_grad_output(func, shapes[-1], spec, batched)
        return spec, batched
    return build


# ------------------------------------------------------------------ the lowerings' halves


def _last_padding(length, out, kernel, stride, pad_before, pad_after, dilation):
    """The output padding that makes ``conv_transpose`` of ``out`` positions ``length`` long."""
    return length - ((out - 1) * stride - pad_before - pad_after + dilation * (kernel - 1) + 1)


def input_grad_as_conv_transpose(spec):
    pads = tuple(_last_padding(L, o, k, s, pb, pa, d) for L, o, k, s, (pb, pa), d in zip(
        spec.input_spatial, spec.output_spatial, spec.kernel, spec.stride, spec.padding,
        spec.dilation))
    return ConvSpec(op="conv_transpose", batch=spec.batch, in_channels=spec.out_channels,
                    out_channels=spec.in_channels, input_spatial=spec.output_spatial,
                    kernel=spec.kernel, stride=spec.stride, padding=spec.padding,
                    dilation=spec.dilation, groups=spec.groups, dtype=spec.dtype,
                    output_padding=pads)


def run_input_grad_as_conv_transpose(run_target, operands, spec, target_spec):
    weight, grad_output = operands
    return run_target(grad_output, weight, None)


def weight_grad_as_conv(spec):
    g = spec.groups
    return ConvSpec(op="conv", batch=spec.in_channels // g, in_channels=g * spec.batch,
                    out_channels=spec.out_channels, input_spatial=spec.input_spatial,
                    kernel=spec.output_spatial, stride=spec.dilation, padding=spec.padding,
                    dilation=spec.stride, groups=g, dtype=spec.dtype)


def _swap_batch_and_channels(a, groups):
    """``(N, groups*C, *L)`` -> ``(C, groups*N, *L)``: a group's channels become a batch."""
    n, c = a.shape[0], a.shape[1] // groups
    a = np.asarray(a).reshape((n, groups, c) + a.shape[2:])
    return np.ascontiguousarray(np.moveaxis(a, (0, 1, 2), (2, 1, 0)).reshape(
        (c, groups * n) + a.shape[3:]))


def _as_weight(grad_output, groups):
    """``(N, groups*K, *out)`` -> ``(groups*K, N, *out)``, a filter bank of ``groups`` groups."""
    n, k = grad_output.shape[0], grad_output.shape[1] // groups
    a = np.asarray(grad_output).reshape((n, groups, k) + grad_output.shape[2:])
    return np.ascontiguousarray(np.moveaxis(a, 0, 2).reshape((groups * k, n)
                                                             + grad_output.shape[2:]))


def _crop_kernel_and_swap(y, kernel):
    """The correlation's ``(C, groups*K, *k')`` -> the weight's ``(groups*K, C, *k)``."""
    y = np.asarray(y)[(slice(None), slice(None)) + tuple(slice(0, k) for k in kernel)]
    return np.ascontiguousarray(np.swapaxes(y, 0, 1))


def run_weight_grad_as_conv(run_target, operands, spec, target_spec):
    x, grad_output = operands
    y = run_target(_swap_batch_and_channels(x, spec.groups),
                   _as_weight(grad_output, spec.groups), None)
    return _crop_kernel_and_swap(y, spec.kernel)


def transpose_input_grad_as_conv(spec):
    return ConvSpec(op="conv", batch=spec.batch, in_channels=spec.out_channels,
                    out_channels=spec.in_channels, input_spatial=spec.output_spatial,
                    kernel=spec.kernel, stride=spec.stride, padding=spec.padding,
                    dilation=spec.dilation, groups=spec.groups, dtype=spec.dtype)


def run_transpose_input_grad_as_conv(run_target, operands, spec, target_spec):
    weight, grad_output = operands
    y = run_target(grad_output, weight, None)
    # An output padding of a stride or more leaves positions no input reached: crop them.
    crop = tuple(slice(0, L) for L in spec.input_spatial)
    return np.ascontiguousarray(np.asarray(y)[(slice(None), slice(None)) + crop])


def _full_transpose_length(spec):
    """The uncropped transposed output: ``(L-1)*stride + dilation*(k-1) + 1`` per dim."""
    return tuple((L - 1) * s + d * (k - 1) + 1 for L, s, d, k in zip(
        spec.input_spatial, spec.stride, spec.dilation, spec.kernel))


def transpose_weight_grad_as_conv(spec):
    g = spec.groups
    return ConvSpec(op="conv", batch=spec.out_channels // g, in_channels=g * spec.batch,
                    out_channels=spec.in_channels, input_spatial=_full_transpose_length(spec),
                    kernel=spec.input_spatial, stride=spec.dilation,
                    padding=((0, 0),) * spec.ndim, dilation=spec.stride, groups=g,
                    dtype=spec.dtype)


def run_transpose_weight_grad_as_conv(run_target, operands, spec, target_spec):
    x, grad_output = operands
    # The output gradient placed in the uncropped output: zeros where padding cropped it.
    full = np.zeros(grad_output.shape[:2] + target_spec.input_spatial, spec.dtype)
    src, dst = [], []
    for (pb, _), F, G in zip(spec.padding, target_spec.input_spatial, grad_output.shape[2:]):
        n = min(G, F - pb)
        src.append(slice(0, n))
        dst.append(slice(pb, pb + n))
    full[(slice(None), slice(None)) + tuple(dst)] = \
        np.asarray(grad_output)[(slice(None), slice(None)) + tuple(src)]
    # The input is the filter bank here: (N, C_in, *L) -> (C_in, N, *L).
    y = run_target(_swap_batch_and_channels(full, spec.groups), _as_weight(x, spec.groups),
                   None)
    return _crop_kernel_and_swap(y, spec.kernel)


def avg_grad_as_conv_transpose(spec):
    extra, last = [], []
    for L, k, s, (pb, pa), d, o in zip(spec.input_spatial, spec.kernel, spec.stride,
                                       spec.padding, spec.dilation, spec.output_spatial):
        reach = (o - 1) * s + d * (k - 1) + 1          # a ceil-mode window may pass the pad
        extra.append(max(0, reach - (L + pb + pa)))
        last.append(L - (reach - pb - pa - extra[-1]))
    return ConvSpec(op="conv_transpose", batch=spec.batch, in_channels=spec.channels,
                    out_channels=spec.channels, input_spatial=spec.output_spatial,
                    kernel=spec.kernel, stride=spec.stride,
                    padding=tuple((pb, pa + e) for (pb, pa), e in zip(spec.padding, extra)),
                    dilation=spec.dilation, groups=spec.channels, dtype=spec.dtype,
                    output_padding=tuple(last))


def run_avg_grad_as_conv_transpose(run_target, operands, spec, target_spec):
    (grad_output,) = operands
    divisor = np.ones((), np.int64)
    for counts in spec.divisor_counts():
        divisor = np.multiply.outer(divisor, counts)
    with np.errstate(divide="ignore", invalid="ignore"):   # a window of no taps is NaN
        share = np.asarray(grad_output) / divisor.astype(spec.dtype)
    ones = np.ones(target_spec.weight_shape, spec.dtype)
    return run_target(np.ascontiguousarray(share, spec.dtype), ones, None)


def max_grad_as_indices(spec):
    return spec.replace(op="max_pool_with_indices")


def run_max_grad_as_indices(run_target, operands, spec, target_spec):
    x, grad_output = operands
    _, indices = run_target(x)
    planes = spec.batch * spec.channels
    where = np.asarray(indices).reshape(planes, math.prod(spec.output_spatial))
    rows = np.broadcast_to(np.arange(planes)[:, None], where.shape)
    keep = where >= 0                                   # a window wholly in padding: -1
    g = np.zeros((planes, math.prod(spec.input_spatial)), spec.dtype)
    np.add.at(g, (rows[keep], where[keep]), np.asarray(grad_output).reshape(where.shape)[keep])
    return g.reshape(spec.input_shape)


def fold_padding(grad, pairs, mode):
    """The adjoint of padding with ``mode``: the gradient of the padded input folded back
    onto the input (each padded element's gradient added to the element it copied)."""
    nd = len(pairs)
    g = np.array(grad, copy=True)
    for dim, (pb, pa) in enumerate(pairs):
        axis = g.ndim - nd + dim
        g = np.moveaxis(g, axis, -1)
        L = g.shape[-1] - pb - pa
        core = np.array(g[..., pb:pb + L], copy=True)
        before, after = g[..., :pb], g[..., pb + L:]
        for j in range(pb):              # padded position j copies input index src
            core[..., _source(j - pb, L, mode)] += before[..., j]
        for j in range(pa):
            core[..., _source(L + j, L, mode)] += after[..., j]
        g = np.moveaxis(core, -1, axis)
    return np.ascontiguousarray(g)


def _source(i, length, mode):
    """The input index that padded position ``i`` (``< 0`` or ``>= length``) copies."""
    if mode == "replicate":
        return min(max(i, 0), length - 1)
    if mode == "circular":
        return i % length
    period = 2 * (length - 1)                            # reflect, the edge not repeated
    i = abs(i) % period if period else 0
    return period - i if i >= length else i
