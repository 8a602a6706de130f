"""Convolution, pooling and model forward passes on Dask arrays.

``import convbackends.distributed as cbd`` gives every functional name of
:mod:`convbackends` (``cbd.conv3d(x, w, padding=1)``, ``cbd.max_pool2d(x, 2)``, ...) and
:func:`forward`, taking a ``dask.array.Array`` and returning a lazy one whose blocks are
the in-memory calls. Arrays chunked along the batch run one call per chunk; convolution,
max and average pooling of arrays chunked in space give each chunk a halo of the window's
footprint from its neighbours. Weights enter the graph once. Whatever Dask scheduler is
active computes the result (threads, processes, a ``distributed.Client``).

Needs the extra: ``pip install "convbackends[distributed]"``.
"""

try:
    import dask.array  # noqa: F401
except ImportError as error:
    raise ImportError('convbackends.distributed needs Dask: pip install '
                      '"convbackends[distributed]" (dask[array] and distributed)') from error

from .functional import *  # noqa: F401,F403
from .functional import __all__ as _functional_names
from .model import forward

__all__ = list(_functional_names) + ["forward"]
