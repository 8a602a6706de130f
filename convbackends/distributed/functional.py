"""The functional API on Dask arrays: every name of :mod:`convbackends.functional`, lazily.

Each function takes the in-memory function's arguments (PyTorch's order and keywords),
validates them on shapes at once (the same errors as the in-memory call, before any graph
is built), and returns a ``dask.array.Array`` whose blocks are in-memory calls:

- **Along the batch** (every op): each batch chunk is one call with the call's own
  arguments, so a block is what the in-memory call gives for those samples. Chunks along
  the channel axis are merged (a window reads every input channel of its group).
- **In space** (convolution, max and average pooling): a chunk takes from its neighbours
  the halo its outputs' windows read (see :mod:`convbackends.distributed.halo`) and runs
  the in-memory call on it with the part of the call's padding that falls on it. Any chunk
  sizes work, strided or not; chunks too small for the halo are merged into their
  neighbours. A non-zero ``padding_mode`` pads the whole array first (``dask.array.pad``).
  The other ops read the whole plane (adaptive windows, indices into the plane,
  overlapping transposed windows): chunked in space, they raise
  :class:`~convbackends.UnsupportedError` saying so.

Weights and bias enter the graph once, as one ``dask.delayed`` key that every block
depends on (a distributed scheduler sends them to each worker once). ``backend=None``
uses the default backend in force where the graph is built (``set_backend`` blocks do not
reach worker threads or processes by themselves). ``out=`` is not taken: store the result
with ``dask.array.store``.
"""

import functools
import inspect
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np

from .. import functional as in_memory
from ..dispatch import get_backend, set_backend
from ..dispatch.plan import plan_call
from ..dispatch.precedence import current_backend
from ..errors import UnsupportedError
from ..functional import _NP_PAD_MODE, _check_dtypes, _check_weight_rank, _host_array
from ..ops import get_op
from ..spec import padded_spec
from .halo import plan_axis

__all__ = [name for name in in_memory.__all__ if name != "is_device_array"]

_NOT_GEOMETRY = ("x", "weight", "bias", "indices", "backend", "out", "padding_mode",
                 "return_indices", "activation", "residual")
_SPATIAL_OPS = ("conv", "max_pool", "avg_pool")
_WHOLE_PLANE = {
    "conv_transpose": "a transposed convolution's output windows of neighbouring inputs "
                      "overlap",
    "max_pool_with_indices": "the indices are flat into the whole input plane",
    "adaptive_avg_pool": "adaptive windows depend on the whole length",
    "adaptive_max_pool": "adaptive windows depend on the whole length",
    "max_unpool": "the indices point anywhere in the output plane",
}


def _op_name(func, args):
    if func.startswith("conv_transpose"):
        return "conv_transpose"
    if func.startswith("conv"):
        return "conv"
    if func.startswith("max_pool"):
        return "max_pool_with_indices" if args["return_indices"] else "max_pool"
    if func.startswith("avg_pool"):
        return "avg_pool"
    if func.startswith("adaptive_max_pool"):
        return "adaptive_max_pool"
    if func.startswith("max_unpool"):
        return "max_unpool"
    return "adaptive_avg_pool"      # adaptive_avg_pool{1,2,3}d and global_avg_pool


def _spatial_dims(func, x):
    if func == "global_avg_pool":
        return x.ndim - 2
    return int(func[-2]) if func[-1] == "d" and func[-2].isdigit() else None


def as_dask_array(x):
    """``x`` itself when it is a Dask array, else one chunk of its memory."""
    return x if isinstance(x, da.Array) else da.from_array(_host_array("dask", x),
                                                           chunks=-1)


def backend_for_blocks(func, backend):
    """``(backend, default)`` for the blocks: the backend named in the call (checked to
    exist now), or the name of the default in force here (``None`` for ``"auto"``), which
    each block sets as its default so that a backend lacking an op still leaves it to
    ``"auto"``, as in the in-memory call."""
    if backend is not None:
        if isinstance(backend, str):
            get_backend(backend)
        return backend, None
    default = current_backend().name
    return None, (None if default == "auto" else default)


def once(a):
    """An in-memory operand as one key of the graph that every block depends on."""
    return None if a is None else dask.delayed(a, pure=True, traverse=False)


def run_block(block, *operands, function, params, windows, backend, default_backend,
              block_id=None):
    """One block: the in-memory call ``function`` on ``block``; with ``windows`` (per spatial
    axis, per chunk ``(start, stop, pad_before, pad_after)``) on the part of the halo'd
    block this chunk's outputs read, padded as the whole array is there."""
    if windows is not None:
        parts = [windows[axis][block_id[axis + 2]] for axis in range(len(windows))]
        block = block[(slice(None), slice(None)) + tuple(slice(a, b) for a, b, *_ in parts)]
        params = dict(params, padding=tuple((pb, pa) for *_, pb, pa in parts))
    call = functools.partial(getattr(in_memory, function), block, *operands, **params)
    if default_backend is None:
        return call(backend=backend)
    with set_backend(default_backend):
        return call()


def _pick(pair, index):
    return pair[index]


@dataclass(frozen=True)
class _CheckedCall:
    """A call validated on shapes: its op, operands and spec, and the blocks' backend."""

    op: str
    entry: object
    x: object           # a Dask array
    rest: list          # the other operands: in-memory weight and bias, or Dask indices
    spec: object
    batched: bool
    dtype: str
    backend: object
    default_backend: str


def _check(func, args):
    """Validate a call as the in-memory call does, on shapes, before any graph exists."""
    if args.get("out") is not None:
        raise UnsupportedError(f"{func}: out= is not taken for Dask arrays; store the "
                               f"result with dask.array.store")
    if args.get("activation") is not None or args.get("residual") is not None:
        raise UnsupportedError(f"{func}: activation= and residual= are not taken for Dask "
                               f"arrays; apply them to the result")
    op = _op_name(func, args)
    entry = get_op(op)
    x = as_dask_array(args["x"])
    rest = [args.get(name) for name in entry.operands[1:]]
    if op == "max_unpool":
        rest = [as_dask_array(rest[0])]
    else:
        rest = [None if a is None else _host_array(func, a) for a in rest]
    nd = _spatial_dims(func, x)
    operands = [x] + rest
    dtype = _check_dtypes(func, entry, operands)
    _check_weight_rank(func, nd, op, operands)
    geometry = {k: v for k, v in args.items() if k not in _NOT_GEOMETRY}
    if func == "global_avg_pool":
        geometry = {"output_size": 1}
    shapes = tuple(None if a is None else tuple(a.shape) for a in operands)
    spec, batched = entry.build_spec(func, nd, shapes, dtype, **geometry)
    inner = padded_spec(spec, args["padding_mode"]) if op == "conv" else spec
    backend, default = backend_for_blocks(func, args.get("backend"))
    if backend is not None:
        plan_call(op, inner, backend, dry_run=True)    # a named backend that cannot: now
    return _CheckedCall(op, entry, x, rest, spec, batched, dtype, backend, default)


def _whole_plane_error(func, op, x, chunked):
    rechunk = ", ".join(f"{axis}: -1" for axis in chunked)
    return UnsupportedError(
        f"{func}: x is chunked along spatial axes {chunked} (chunks "
        f"{[x.chunks[axis] for axis in chunked]}), but {_WHOLE_PLANE[op]}; chunk it along "
        f"the batch only: x.rechunk({{{rechunk}}})")


def _lazy_call(func, args):
    """The one path of every function here: validate, lay out the chunks, build the graph."""
    call = _check(func, args)
    op, x, rest = call.op, call.x, call.rest
    if not call.batched:
        x = x[None]
        rest = [a[None] if op == "max_unpool" else a for a in rest]
    x = x.rechunk({1: -1})
    chunked = [axis for axis in range(2, x.ndim) if x.numblocks[axis] > 1]
    params = {k: v for k, v in args.items()
              if k not in ("x", "weight", "bias", "indices", "backend", "out")}
    result_shape = call.entry.result_shape(call.spec)
    windows, spatial_chunks = None, tuple((n,) for n in result_shape[2:])
    if chunked:
        if op not in _SPATIAL_OPS:
            raise _whole_plane_error(func, op, x, chunked)
        x, windows, spatial_chunks = _halo_layout(x, call.spec, params)
    elif op == "max_unpool":
        rest = [rest[0].rechunk(x.chunks)]

    chunks = (x.chunks[0], (result_shape[1],)) + spatial_chunks
    blocks = [a if op == "max_unpool" else once(a) for a in rest]
    kwargs = dict(function=func, params=params, windows=windows, backend=call.backend,
                  default_backend=call.default_backend)
    if not (op == "max_pool_with_indices" or args.get("return_indices")):
        y = da.map_blocks(run_block, x, *blocks, chunks=chunks, dtype=call.dtype,
                          meta=np.empty((0,) * x.ndim, call.dtype), **kwargs)
        return y if call.batched else y[0]
    # Values and indices come from one call per block: its pair, then each half.
    pairs = da.map_blocks(run_block, x, *blocks, chunks=chunks, dtype=object,
                          meta=np.empty((0,) * x.ndim, object), **kwargs)
    results = tuple(pairs.map_blocks(_pick, i, dtype=t, meta=np.empty((0,) * x.ndim, t))
                    for i, t in enumerate((call.dtype, np.int64)))
    return results if call.batched else tuple(r[0] for r in results)


def _halo_layout(x, spec, params):
    """``(x, windows, out_chunks)`` for a call chunked in space: ``x`` padded first for a
    non-zero ``padding_mode`` (taken out of ``params``), rechunked to the halo plan and
    given its halos."""
    pads = spec.padding
    padding_mode = params.get("padding_mode", "zeros")
    if padding_mode != "zeros":
        x = da.pad(x, ((0, 0), (0, 0)) + tuple(tuple(p) for p in pads),
                   mode=_NP_PAD_MODE[padding_mode])
        # The pad adds thin chunks at the ends; each joins its neighbour.
        x = x.rechunk({axis + 2: _absorbed(x.chunks[axis + 2], pad)
                       for axis, pad in enumerate(pads)})
        pads = ((0, 0),) * len(pads)
        params.pop("padding_mode")
    ceil_mode = getattr(spec, "ceil_mode", False)
    plans = [plan_axis(x.chunks[axis + 2], k, s, d, p, ceil_mode)
             for axis, (k, s, d, p) in enumerate(zip(spec.kernel, spec.stride,
                                                     spec.dilation, pads))]
    x = x.rechunk({axis + 2: plan.in_chunks for axis, plan in enumerate(plans)})
    depth = {axis + 2: plan.depth for axis, plan in enumerate(plans) if any(plan.depth)}
    if depth:
        x = da.overlap.overlap(x, depth=depth, boundary="none", allow_rechunk=False)
    return x, tuple(plan.windows for plan in plans), tuple(plan.out_chunks for plan in plans)


def _absorbed(chunks, pad):
    """The chunks of a padded axis with the padding's own chunks joined to their
    neighbours."""
    chunks = list(chunks)
    if pad[0] and len(chunks) > 1 and chunks[0] == pad[0]:
        chunks[:2] = [chunks[0] + chunks[1]]
    if pad[1] and len(chunks) > 1 and chunks[-1] == pad[1]:
        chunks[-2:] = [chunks[-2] + chunks[-1]]
    return tuple(chunks)


def _lazy(func):
    signature = inspect.signature(getattr(in_memory, func))

    @functools.wraps(getattr(in_memory, func))
    def lazy(*args, **kwargs):
        if "input" in kwargs:           # PyTorch's keyword for the first argument
            args = (kwargs.pop("input"),) + args
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return _lazy_call(func, dict(bound.arguments))
    lazy.__doc__ = (f"Lazy :func:`convbackends.{func}` of a Dask array; the arguments and "
                    f"result are the in-memory call's, as a ``dask.array.Array`` (see "
                    f":mod:`convbackends.distributed.functional`).")
    return lazy


for _name in __all__:
    globals()[_name] = _lazy(_name)
del _name
