"""Which input each output chunk of a sliding window needs, along one spatial axis.

Plain integer arithmetic on chunk sizes, no Dask: :func:`plan_axis` splits the outputs of
one axis among the input chunks and says, per chunk, how much of its neighbours (the halo)
its outputs read, which part of the halo'd block they read, and how much padding of the
whole array falls on that block. Each chunk then computes, with the ordinary in-memory call,
exactly the outputs the whole-array call computes there, from the same input values.

Along an axis of length ``L`` with kernel ``k``, stride ``s``, dilation ``d`` and padding
``(p_before, p_after)``, output ``o`` reads the input ``[o*s - p_before,
o*s - p_before + d*(k - 1) + 1)``. Chunk ``[c0, c1)`` owns the outputs with ``c0 <= o*s <
c1`` (the last chunk also those beyond), so its halo is at most ``p_before`` before and
``d*(k - 1) - p_before`` after, whatever the chunk sizes, and none where chunk starts are
multiples of the stride and the windows fit them (2x2 pooling of even chunks moves nothing).
"""

from dataclasses import dataclass

from ..spec.geometry import output_length

__all__ = ["AxisPlan", "plan_axis"]


@dataclass(frozen=True)
class AxisPlan:
    """How one spatial axis is chunked.

    Attributes
    ----------
    in_chunks : tuple of int
        The input chunks the plan is for (small chunks of the given ones merged).
    out_chunks : tuple of int
        The output chunks, one per input chunk.
    depth : tuple of int
        ``(before, after)``: the halo every chunk takes from its neighbours (none at the
        array's ends).
    windows : tuple of tuple of int
        Per chunk, ``(start, stop, pad_before, pad_after)``: the slice of the halo'd block
        its outputs read, and the padding to give that slice in the in-memory call.
    """

    in_chunks: tuple
    out_chunks: tuple
    depth: tuple
    windows: tuple


def _owned_outputs(chunks, stride, n_out):
    """``(first, stop)`` outputs per chunk: those whose ``o*stride`` falls in it."""
    bounds, start = [], 0
    for c in chunks:
        bounds.append(start)
        start += c
    firsts = [min(-(-b // stride), n_out) for b in bounds]
    return [(first, stop) for first, stop in zip(firsts, firsts[1:] + [n_out])]


def _reads(owned, length, stride, footprint, pads, ceil_mode):
    """Per chunk, ``(read_start, read_stop, pad_before, pad_after)`` in whole-array
    coordinates. In ceil mode the last window may reach past the padding; that part is
    neither input nor padding, so the block's padding stops where the array's does."""
    reads = []
    for first, stop in owned:
        begin = first * stride - pads[0]
        end = (stop - 1) * stride - pads[0] + footprint
        after = max(0, end - length)
        if ceil_mode:
            after = min(after, pads[1])
        reads.append((max(begin, 0), min(end, length), max(0, -begin), after))
    return reads


def _merge(chunks, index):
    """``chunks`` with chunk ``index`` merged into its next neighbour (the previous one for
    the last chunk)."""
    chunks = list(chunks)
    other = index + 1 if index + 1 < len(chunks) else index - 1
    lo, hi = sorted((index, other))
    return tuple(chunks[:lo] + [chunks[lo] + chunks[hi]] + chunks[hi + 1:])


def plan_axis(chunks, kernel, stride, dilation, pads, ceil_mode=False):
    """Plan one spatial axis of a sliding window over input ``chunks``.

    A chunk that owns no outputs, whose outputs read padding only, or that is smaller than
    the halo (Dask takes a halo from the next chunk only) is merged into its neighbour, so
    ``in_chunks`` may be coarser than ``chunks``. An axis of one chunk keeps the call's own
    padding, so the block's call is the whole-array call.
    """
    chunks = tuple(int(c) for c in chunks)
    length = sum(chunks)
    footprint = dilation * (kernel - 1) + 1
    n_out = output_length(length, kernel, stride, pads[0], pads[1], dilation, ceil_mode)
    if len(chunks) == 1:
        return AxisPlan(chunks, (n_out,), (0, 0), ((0, length) + tuple(pads),))
    while True:
        owned = _owned_outputs(chunks, stride, n_out)
        reads = _reads(owned, length, stride, footprint, pads, ceil_mode)
        starts = [sum(chunks[:j]) for j in range(len(chunks))]
        before = max([0] + [starts[j] - reads[j][0] for j in range(1, len(chunks))])
        after = max([0] + [reads[j][1] - starts[j] - chunks[j]
                           for j in range(len(chunks) - 1)])
        small = [j for j, (c, (first, stop), read) in enumerate(zip(chunks, owned, reads))
                 if stop == first or read[1] <= read[0] or c < max(before, after)]
        if not small or len(chunks) == 1:
            break
        chunks = _merge(chunks, small[0])
    if len(chunks) == 1:
        return plan_axis(chunks, kernel, stride, dilation, pads, ceil_mode)
    windows = []
    for j, (read_start, read_stop, pad_before, pad_after) in enumerate(reads):
        origin = starts[j] - (before if j else 0)
        windows.append((read_start - origin, read_stop - origin, pad_before, pad_after))
    out_chunks = tuple(stop - first for first, stop in owned)
    return AxisPlan(chunks, out_chunks, (before, after), tuple(windows))
