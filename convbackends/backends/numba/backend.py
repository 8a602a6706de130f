"""``numba``: direct convolution and pooling compiled by Numba, parallel over every core.

Limits: none (every op, geometry and dtype). Threads: ``numba.set_num_threads`` or the
environment variable ``NUMBA_NUM_THREADS`` (see :func:`threading_info`); calls with less
than ``GRAIN_MACS`` multiply-accumulates per thread use fewer threads.

Convolution is direct, with the innermost loop along the output row so that it vectorises:

- The input is copied once into *phase planes*: zero-padded, split by the stride into
  ``stride_h * stride_w`` unit-stride planes (a strided convolution is a sum of unstrided
  ones over them), with the rows of the batch's images interleaved. Every kernel tap is
  then one fixed offset, and one pass over the flattened ``(row, image, column)`` plane
  covers all rows of all images: small images make long passes, and the inner loops carry
  no bounds logic (the few columns past the output width are computed and dropped).
- A task owns a block of up to ``CHANNEL_BLOCK`` output channels and a chunk of the plane;
  their accumulators stay in L1 while each input row is read once for all of them, two
  output channels and three kernel columns per pass (six multiply-adds per three loads).
- Depthwise convolution (``groups == in_channels``) has a kernel of its own: one task per
  input plane splits that plane into a buffer of its own (no copy of the whole input) and
  adds all nine taps of a 3x3 kernel in one pass.
- The weight gradient of a depthwise convolution is direct too: one task per output
  channel reads its input plane (zero-padded once) and its output gradient, every kernel
  tap into a row of partial sums along the output row. Other weight gradients lower onto
  ``conv`` (over swapped axes), which is faster for them.

It wins where a GEMM wastes work or memory (depthwise and grouped convolution, few
channels, 1-D signals, 3-D volumes); for wide 3x3 layers BLAS-based ``im2col`` is usually
faster. Transposed convolution gathers each output row from the input rows its taps reach.
Pooling is memory-bound, runs one output row per task and copies nothing; its divisors
and adaptive windows come from the spec. The parity ops (``max_pool_with_indices``,
``adaptive_max_pool``, ``max_unpool``) run one ``(n, c)`` plane per task, scanning it in
order, so ties, NaNs and duplicate unpool indices resolve exactly as PyTorch's CPU code.
The first call per dtype and kernel compiles (seconds); ``cache=True`` keeps the machine
code on disk for later processes.
"""

import contextlib
import functools
import math

import numba
import numpy as np

from . import kernels
from ...spec.geometry import lift_3d as as_3d, pads_3d, params_3d, tap_ranges, window_indices
from ...spec.pool import invalid_index_error
from ..base import Backend

# Output channels computed together: each input row read feeds all of them.
CHANNEL_BLOCK = 8
# The block's accumulators (channels x outputs) stay under this many bytes, in L1.
ACCUMULATOR_BYTES = 24 * 1024
# Below this many multiply-accumulates per thread a call runs on fewer threads, as
# PyTorch's grain size does: on a busy machine, waiting for a second core to be scheduled
# can take milliseconds, longer than such a call.
GRAIN_MACS = 4_000_000


def threading_info(*, start=False):
    """The threads the ``numba`` backend runs on.

    Parameters
    ----------
    start : bool
        Before the first parallel call Numba has not chosen its threading layer yet; with
        ``start=True`` one tiny pooling call (compiled on first use, then cached on disk)
        starts it, so the layer reported is the one in use. Default: False.

    Returns
    -------
    dict
        ``threads``: ``numba.get_num_threads()`` (set by ``numba.set_num_threads`` or
        ``NUMBA_NUM_THREADS``); ``threading_layer``: the layer in use, or, before the first
        parallel call, the one requested (``NUMBA_THREADING_LAYER``).
    """
    if start:
        window = (np.zeros(1, np.int64), np.ones(1, np.int64)) * 3
        kernels.adaptive_avg_pool(np.zeros((1, 1, 1, 1, 1)), *window,
                                  np.empty((1, 1, 1, 1, 1)))
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = f"not started yet (requested: {numba.config.THREADING_LAYER})"
    return {"threads": numba.get_num_threads(), "threading_layer": layer}


def _threads(spec):
    return max(1, min(numba.get_num_threads(), spec.macs // GRAIN_MACS))


@contextlib.contextmanager
def _thread_budget(spec):
    """Run the block on at most ``numba.get_num_threads()`` threads, fewer for small work
    (one per ``GRAIN_MACS``); the setting is restored on exit."""
    threads = numba.get_num_threads()
    wanted = _threads(spec)
    if wanted == threads:
        yield
        return
    numba.set_num_threads(wanted)
    try:
        yield
    finally:
        numba.set_num_threads(threads)


def _channel_block(spec):
    return min(CHANNEL_BLOCK, spec.out_channels // spec.groups)


def _column_chunk(spec):
    """Outputs per task along the flattened plane: the block's accumulators fit
    ``ACCUMULATOR_BYTES``."""
    return max(16, ACCUMULATOR_BYTES // (_channel_block(spec) * spec.itemsize))


def _depthwise(spec):
    return spec.groups == spec.in_channels and spec.groups > 1


def _weight_grad_columns(spec):
    """Output columns per chunk of the weight gradient: its ``taps x columns`` partial sums
    fit ``ACCUMULATOR_BYTES``."""
    return max(8, ACCUMULATOR_BYTES // (math.prod(spec.kernel) * spec.itemsize))


@functools.lru_cache(maxsize=256)      # specs are frozen; the offsets are only read
def _phase_geometry(spec, images):
    """Shape ``(padded depth, phase rows, phase pitch)`` of one channel's phase planes, and
    the flat offsets of the kernel rows and columns in them when the rows of ``images``
    images are interleaved (see ``kernels.conv``)."""
    Dp, Hp, Wp = (int(v) for v in params_3d(spec.padded_spatial, 1))
    _, sh, sw = (int(v) for v in params_3d(spec.stride, 1))
    _, dh, dw = (int(v) for v in params_3d(spec.dilation, 1))
    _, KH, KW = (int(v) for v in params_3d(spec.kernel, 1))
    Hq, Wq = -(-Hp // sh), -(-Wp // sw)
    row_pitch = images * Wq
    h_off = np.array([(r * dh % sh * sw * Hq + r * dh // sh) * row_pitch for r in range(KH)],
                     np.int64)
    w_off = np.array([t * dw % sw * Hq * row_pitch + t * dw // sw for t in range(KW)],
                     np.int64)
    return (Dp, sh * sw * Hq, Wq), h_off, w_off


def _is_view(spec):
    """Whether the phase planes are the input itself: one image, no padding, stride 1."""
    return spec.batch == 1 and not spec.has_padding and all(s == 1 for s in spec.stride[-2:])


def _phase_planes(x3, spec, q_shape):
    """``x3`` zero-padded, split into phase planes, images interleaved: ``(C, padded
    depth, phase rows, N, phase pitch)``; a view of ``x3`` when that is all it takes."""
    if _is_view(spec):
        return x3.reshape((x3.shape[1],) + q_shape[:2] + (1, q_shape[2]))
    xq = np.zeros((x3.shape[1],) + q_shape[:2] + (x3.shape[0], q_shape[2]), x3.dtype)
    _, sh, sw = params_3d(spec.stride, 1)
    kernels.split_phases(x3, pads_3d(spec.padding)[0], sh, sw, xq)
    return xq


def _output(spec, channels, out):
    y = np.empty(spec.output_shape, spec.dtype) if out is None else out
    return y, y.reshape((spec.batch, channels) + (1,) * (3 - spec.ndim)
                        + tuple(spec.output_spatial))


def _bias(bias, spec):
    if bias is None:
        return np.zeros(spec.out_channels, spec.dtype)
    return np.ascontiguousarray(bias, spec.dtype)


def _lifted(arrays, fill):
    """Per-dim int64 arrays of a spec -> three, leading dims ``[fill]`` (1-D/2-D as 3-D)."""
    arrays = tuple(np.ascontiguousarray(a, np.int64) for a in arrays)
    return (np.array([fill], np.int64),) * (3 - len(arrays)) + arrays


def _adaptive_windows(spec):
    """``(z0, z1, y0, y1, x0, x1)``: the spec's adaptive windows, lifted to 3 dims."""
    windows = spec.adaptive_windows()
    starts = _lifted([w[0] for w in windows], 0)
    ends = _lifted([w[1] for w in windows], 1)
    return tuple(a for pair in zip(starts, ends) for a in pair)


def _window_taps(spec):
    """Per dim (lifted to 3), the windows' first input index and their in-bounds taps
    ``[r0, r1)``: ``(start_d, r0_d, r1_d, start_h, ..., r1_w)``."""
    out = params_3d(spec.output_spatial, 1)
    kernel, stride = params_3d(spec.kernel, 1), params_3d(spec.stride, 1)
    dilation, before = params_3d(spec.dilation, 1), pads_3d(spec.padding)[0]
    arrays = []
    for L, k, s, pb, d, o in zip(params_3d(spec.input_spatial, 1), kernel, stride, before,
                                 dilation, out):
        arrays.append(window_indices(o, 1, s, pb, 1)[:, 0])
        arrays.extend(tap_ranges(L, k, s, pb, d, o))
    return tuple(arrays)


def _invalid_index(bad, spec):
    """The error for the last index ``max_unpool`` flagged in scan order, or ``None``."""
    planes = bad.size // 2
    flagged = np.flatnonzero(bad[:planes])
    if flagged.size == 0:
        return None
    return invalid_index_error(int(bad[planes + flagged[-1]]), spec)


# The parity ops: PyTorch's arg-max indices, and the scatter back by them.


class NumbaBackend(Backend):
    """Direct loops compiled by Numba, parallel over batch, channel blocks and rows."""

    name = "numba"
    limits = ("none (every op, geometry and dtype); first call per dtype compiles "
              "(seconds, cached on disk)")
    writes_out = True

    def supports(self, op, spec):
        if op == "conv_weight_grad" and not _depthwise(spec):
            # A pair of channels per task reads short rows of the whole batch: 2-40x slower
            # than the lowering's convolution outside depthwise layers.
            return ("numba's weight-gradient kernel is for depthwise layers (one input "
                    "channel per group); other layers lower onto its conv")
        return super().supports(op, spec)

    def workspace_bytes(self, op, spec):
        if op == "conv_weight_grad":         # the zero-padded input, and each task's sums
            return (spec.batch * spec.in_channels * math.prod(spec.padded_spatial)
                    * spec.itemsize + _threads(spec) * ACCUMULATOR_BYTES)
        if op != "conv":
            return 0
        q_shape = _phase_geometry(spec, 1)[0]
        plane = int(np.prod(q_shape)) * spec.itemsize
        per_task = ACCUMULATOR_BYTES
        copied = 0
        if _depthwise(spec):
            per_task += plane
        elif not _is_view(spec):
            copied = spec.batch * spec.in_channels * plane
        return copied + _threads(spec) * per_task

    def plan(self, op, spec):
        facts = {"threads": _threads(spec)}
        if op == "conv":
            stride = max(spec.stride[-2:]) if spec.ndim > 1 else spec.stride[0]
            facts.update(kernel="depthwise" if _depthwise(spec) else "direct",
                         phases=stride ** min(spec.ndim, 2),
                         channel_block=_channel_block(spec), chunk=_column_chunk(spec))
        elif op == "conv_transpose":
            facts.update(kernel="gather per output row")
        elif op == "conv_weight_grad":
            facts.update(kernel="depthwise, one task per output channel",
                         columns=_weight_grad_columns(spec))
        return facts

    def conv(self, x, weight, bias, spec, out=None):
        y, y3 = _output(spec, spec.out_channels, out)
        x3, w3, b = as_3d(x, spec.ndim), as_3d(weight, spec.ndim), _bias(bias, spec)
        stride, dilation = params_3d(spec.stride, 1), params_3d(spec.dilation, 1)
        with _thread_budget(spec):
            if _depthwise(spec):
                q_shape, h_off, w_off = _phase_geometry(spec, 1)
                kernels.conv_depthwise(x3, w3, b, pads_3d(spec.padding)[0],
                                       np.array(q_shape, np.int64), h_off, w_off, stride,
                                       dilation[0], _column_chunk(spec), y3)
            else:
                q_shape, h_off, w_off = _phase_geometry(spec, spec.batch)
                kernels.conv(_phase_planes(x3, spec, q_shape), w3, b, h_off, w_off, stride[0],
                             dilation[0], spec.groups, _channel_block(spec), _column_chunk(spec),
                             y3)
        return y

    def conv_weight_grad(self, x, grad_output, spec, out=None):
        """Depthwise layers: one task per output channel over its zero-padded input plane."""
        gw = np.empty(spec.weight_shape, spec.dtype) if out is None else out
        K, cg = spec.weight_shape[:2]
        before, after = pads_3d(spec.padding)
        xp = np.pad(as_3d(x, spec.ndim), [(0, 0), (0, 0)] + list(zip(before, after)))
        with _thread_budget(spec):
            kernels.conv_weight_grad(xp, as_3d(grad_output, spec.ndim),
                                     params_3d(spec.stride, 1), params_3d(spec.dilation, 1),
                                     params_3d(spec.kernel, 1), spec.groups,
                                     _weight_grad_columns(spec),
                                     gw.reshape(K, cg, math.prod(spec.kernel)))
        return gw

    def conv_transpose(self, x, weight, bias, spec, out=None):
        y, y3 = _output(spec, spec.out_channels, out)
        with _thread_budget(spec):
            kernels.conv_transpose(as_3d(x, spec.ndim), as_3d(weight, spec.ndim),
                                   _bias(bias, spec), params_3d(spec.stride, 1),
                                   pads_3d(spec.padding)[0], params_3d(spec.dilation, 1),
                                   spec.groups, y3)
        return y

    def max_pool(self, x, spec, out=None):
        y, y3 = _output(spec, spec.channels, out)
        with _thread_budget(spec):
            kernels.max_pool(as_3d(x, spec.ndim), params_3d(spec.kernel, 1),
                             params_3d(spec.stride, 1), pads_3d(spec.padding)[0],
                             params_3d(spec.dilation, 1), y3)
        return y

    def avg_pool(self, x, spec, out=None):
        y, y3 = _output(spec, spec.channels, out)
        counts = _lifted(spec.divisor_counts(), 1)
        with _thread_budget(spec):
            kernels.avg_pool(as_3d(x, spec.ndim), params_3d(spec.kernel, 1),
                             params_3d(spec.stride, 1), pads_3d(spec.padding)[0],
                             params_3d(spec.dilation, 1), *counts, y3)
        return y

    def adaptive_avg_pool(self, x, spec, out=None):
        y, y3 = _output(spec, spec.channels, out)
        with _thread_budget(spec):
            kernels.adaptive_avg_pool(as_3d(x, spec.ndim), *_adaptive_windows(spec), y3)
        return y

    def max_pool_with_indices(self, x, spec, out=None):
        """``(values, indices)``: max pooling with PyTorch's CPU arg-max (int64, flat into
        each input plane); ``out``, when given, receives the values."""
        y, y3 = _output(spec, spec.channels, out)
        ind = np.empty(spec.output_shape, np.int64)
        with _thread_budget(spec):
            kernels.max_pool_with_indices(as_3d(x, spec.ndim), *_window_taps(spec),
                                          params_3d(spec.dilation, 1), y3,
                                          ind.reshape(y3.shape))
        return y, ind

    def adaptive_max_pool(self, x, spec, out=None):
        """``(values, indices)`` over ``spec.adaptive_windows()``, ties as
        :meth:`max_pool_with_indices`."""
        y, y3 = _output(spec, spec.channels, out)
        ind = np.empty(spec.output_shape, np.int64)
        with _thread_budget(spec):
            kernels.adaptive_max_pool(as_3d(x, spec.ndim), *_adaptive_windows(spec), y3,
                                      ind.reshape(y3.shape))
        return y, ind

    def max_unpool(self, x, indices, spec, out=None):
        """Zeros of ``spec.output_shape`` with ``y[n, c].flat[indices[n, c, i]] = x[n, c,
        i]``, in scan order within each plane (the last of duplicate indices wins).

        Raises
        ------
        ShapeError
            An index lies outside the output plane (nothing is written for it).
        """
        y = np.empty(spec.output_shape, spec.dtype) if out is None else out
        planes = spec.batch * spec.channels
        taps = math.prod(spec.input_spatial)     # explicit: an empty batch has no -1 to infer
        x2 = np.ascontiguousarray(x, spec.dtype).reshape(planes, taps)
        i2 = np.ascontiguousarray(indices, np.int64).reshape(planes, taps)
        bad = np.zeros(2 * planes, np.int64)
        with _thread_budget(spec):
            kernels.max_unpool(x2, i2, y.reshape(planes, math.prod(spec.unpool_output)), bad)
        error = _invalid_index(bad, spec)
        if error is not None:
            raise error
        return y
