"""convbackends: PyTorch-exact convolution and pooling for NumPy, through interchangeable backends.

>>> import numpy as np, convbackends as cb
>>> x = np.arange(9.0).reshape(1, 1, 3, 3)
>>> w = np.arange(4.0).reshape(1, 1, 2, 2)
>>> cb.conv2d(x, w, backend="naive")[0, 0]
array([[19., 25.],
       [37., 43.]])
"""

# The subpackage `backends` is imported first: importing it later would rebind the name
# `backends` on this package from the public function to the subpackage.
from . import backends as _backend_rooms  # noqa: F401
from .dispatch import (available_backends, backends, explain, get_backend, register_backend,
                       set_backend, set_global_backend)
from .dispatch.autotune import set_autotune
from .errors import (ArgumentTypeError, BackendUnavailableError, ConvError, DTypeError,
                     RegistrationError, ShapeError, UnknownBackendError, UnsupportedError)
from .functional import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d,
                         adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d,
                         avg_pool1d, avg_pool2d, avg_pool3d, conv, conv1d, conv2d, conv3d,
                         conv_transpose, conv_transpose1d, conv_transpose2d, conv_transpose3d,
                         global_avg_pool, max_pool1d, max_pool2d, max_pool3d, max_unpool1d,
                         max_unpool2d, max_unpool3d)
from .spec import ConvSpec, PoolSpec
from . import grad
from . import layers, models, nn
from . import optim
from .tools import workloads

__version__ = "0.2.0"

__all__ = [
    "conv", "conv1d", "conv2d", "conv3d", "conv_transpose", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "max_unpool1d", "max_unpool2d", "max_unpool3d", "global_avg_pool",
    "ConvError", "ShapeError", "DTypeError", "UnsupportedError", "BackendUnavailableError",
    "UnknownBackendError", "RegistrationError", "ArgumentTypeError",
    "backends", "available_backends", "get_backend", "register_backend", "set_backend",
    "set_global_backend", "set_autotune", "explain", "ConvSpec", "PoolSpec", "layers", "nn",
    "models",
    "workloads", "grad", "optim",
]
