"""The dtype rules: which dtypes compute, and what input, weight and bias must share."""

import numpy as np

from ..errors import DTypeError

__all__ = ["SUPPORTED_DTYPES", "check_dtypes"]

SUPPORTED_DTYPES = ("float32", "float64")


def check_dtypes(func, x, weight=None, bias=None):
    """Check the dtypes of one call (``func`` names it in messages); return the dtype name.

    Input and weight must share one floating dtype of :data:`SUPPORTED_DTYPES`, and a bias
    must have it too; otherwise :class:`~convbackends.DTypeError` names both dtypes.
    """
    xd = np.dtype(x.dtype)
    if weight is None:
        if xd.name not in SUPPORTED_DTYPES:
            raise DTypeError(f"{func}: input dtype {xd.name} is not supported; "
                             f"use one of {', '.join(SUPPORTED_DTYPES)}")
        return xd.name
    wd = np.dtype(weight.dtype)
    if xd.name not in SUPPORTED_DTYPES or wd.name not in SUPPORTED_DTYPES or xd != wd:
        raise DTypeError(
            f"{func}: input dtype {xd.name} and weight dtype {wd.name}: both must be the same "
            f"floating dtype, one of {', '.join(SUPPORTED_DTYPES)} (convert with .astype())")
    if bias is not None and np.dtype(bias.dtype) != xd:
        raise DTypeError(f"{func}: bias dtype {np.dtype(bias.dtype).name} differs from "
                         f"input and weight dtype {xd.name}")
    return xd.name
