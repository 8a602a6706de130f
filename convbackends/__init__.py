"""convbackends: PyTorch-exact convolution and pooling for NumPy, through interchangeable backends.

>>> import numpy as np, convbackends as cb
>>> x = np.arange(9.0).reshape(1, 1, 3, 3)
>>> w = np.arange(4.0).reshape(1, 1, 2, 2)
>>> cb.conv2d(x, w, backend="naive")[0, 0]
array([[19., 25.],
       [37., 43.]])
"""

from .dispatch import (available_backends, backends, explain, get_backend, register_backend,
                       set_backend, set_global_backend)
from .errors import (BackendUnavailableError, ConvError, DTypeError, ShapeError,
                     UnknownBackendError, UnsupportedError)
from .functional import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d,
                         avg_pool1d, avg_pool2d, avg_pool3d, conv, conv1d, conv2d, conv3d,
                         conv_transpose, conv_transpose1d, conv_transpose2d, conv_transpose3d,
                         global_avg_pool, max_pool1d, max_pool2d, max_pool3d)
from .spec import ConvSpec, PoolSpec
from .autotune import set_autotune
from . import layers, models, workloads

__version__ = "0.1.0"

__all__ = [
    "conv", "conv1d", "conv2d", "conv3d", "conv_transpose", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "global_avg_pool",
    "ConvError", "ShapeError", "DTypeError", "UnsupportedError", "BackendUnavailableError",
    "UnknownBackendError",
    "backends", "available_backends", "get_backend", "register_backend", "set_backend",
    "set_global_backend", "set_autotune", "explain", "ConvSpec", "PoolSpec", "layers", "models",
    "workloads",
]
