"""A model's forward pass over a Dask array chunked along the batch."""

import dask
import dask.array as da
import numpy as np

from ..dispatch import set_backend
from ..errors import UnsupportedError
from .functional import as_dask_array, backend_for_blocks

__all__ = ["forward"]


def _forward_block(block, model, *, default_backend):
    if default_backend is None:
        return model(block)
    with set_backend(default_backend):
        return model(block)


def forward(model, x):
    """``model(x)`` for a Dask array ``x`` chunked along the batch: one forward per chunk.

    The model enters the graph once (one ``dask.delayed`` key every block depends on, so a
    distributed scheduler sends its weights to each worker once) and must be in evaluation
    mode: in training mode BatchNorm would normalise each chunk by its own statistics and
    the forward would keep a tape on the workers. Chunks along the other axes are refused,
    as a layer reads its whole input plane. The output's shape comes from
    ``model.output_shape``; layers without a ``backend`` use the default in force where
    the graph is built.

    Returns
    -------
    dask.array.Array
        ``(N, *per-sample output)``, chunked as ``x`` along the batch.
    """
    if model.training:
        raise UnsupportedError("forward: the model is in training mode; call model.eval() "
                               "first (batch statistics and the backward's tape are "
                               "per chunk)")
    x = as_dask_array(x)
    chunked = [axis for axis in range(1, x.ndim) if x.numblocks[axis] > 1]
    if chunked:
        raise UnsupportedError(
            f"forward: x is chunked along axes {chunked}, but a model reads whole samples; "
            f"chunk it along the batch only: "
            f"x.rechunk({{{', '.join(f'{a}: -1' for a in chunked)}}})")
    out_shape = model.output_shape((x.chunks[0][0],) + tuple(x.shape[1:]))
    _, default = backend_for_blocks("forward", None)
    # Not pure: a content name would hash every weight; the graph needs one key only.
    model_key = dask.delayed(model, traverse=False, pure=False)
    rank = len(out_shape)
    return da.map_blocks(_forward_block, x, model_key, default_backend=default,
                         chunks=(x.chunks[0],) + tuple((n,) for n in out_shape[1:]),
                         drop_axis=list(range(rank, x.ndim)),
                         new_axis=list(range(x.ndim, rank)) or None,
                         dtype=x.dtype, meta=np.empty((0,) * rank, x.dtype))
