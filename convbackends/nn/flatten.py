"""Flatten, as ``torch.nn.Flatten``: a reshape, known from shapes alone."""

import math

import numpy as np

from ..errors import ShapeError
from .module import Module, _non_defaults

__all__ = ["Flatten"]


class Flatten(Module):
    """Merge dims ``start_dim..end_dim`` into one, as ``torch.nn.Flatten``.

    Parameters
    ----------
    start_dim : int. Default: 1
    end_dim : int. Default: -1
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        start, end = (d % max(len(shape), 1) for d in (self.start_dim, self.end_dim))
        if start > end:
            raise ShapeError(f"Flatten: start_dim {self.start_dim} comes after end_dim "
                             f"{self.end_dim} for input of size {list(shape)}")
        return shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]

    def forward(self, x):
        x = np.asarray(x)
        y = x.reshape(self.output_shape(x.shape))
        self._keep(y, x.shape)
        return y

    def _backward(self, grad_output):
        grad, (shape,) = self._take(grad_output)
        return grad.reshape(shape)

    def extra_repr(self):
        return _non_defaults(self, (("start_dim", 1), ("end_dim", -1))).lstrip(", ")
