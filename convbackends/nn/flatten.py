"""Flatten, as ``torch.nn.Flatten``: a reshape, known from shapes alone (channels last, a
transposed copy first, so the order is PyTorch's)."""

import math

import numpy as np

from ..errors import ShapeError
from ..spec.layout import CHANNELS_FIRST, CHANNELS_LAST, check_data_format
from .layout import first_shape, first_view, in_layout
from .module import Module, _non_defaults

__all__ = ["Flatten"]


class Flatten(Module):
    """Merge dims ``start_dim..end_dim`` into one, as ``torch.nn.Flatten``.

    Parameters
    ----------
    start_dim : int. Default: 1
    end_dim : int. Default: -1
    data_format : {"channels_first", "channels_last"}
        The layout of a batched image input ``(N, *spatial, C)`` channels last. Channels
        last, the dims are merged in PyTorch's order, channels first (``(C, H, W)``), so
        the ``Linear`` after it takes a PyTorch ``state_dict`` unchanged and a
        channels-last model gives the channels-first model's logits. (Keras' ``Flatten``
        merges in ``(H, W, C)`` order instead: ``Flatten()`` on channels-last input does
        that.) Input with fewer than 3 dims has no spatial dims and is merged as it is.
        Default: "channels_first"
    """

    def __init__(self, start_dim=1, end_dim=-1, *, data_format=CHANNELS_FIRST):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim
        self.data_format = check_data_format(data_format)

    def _transposes(self, shape):
        return self.data_format == CHANNELS_LAST and len(shape) >= 3

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if self._transposes(shape):
            shape = first_shape(shape, len(shape) - 2, self.data_format)
        start, end = (d % max(len(shape), 1) for d in (self.start_dim, self.end_dim))
        if start > end:
            raise ShapeError(f"Flatten: start_dim {self.start_dim} comes after end_dim "
                             f"{self.end_dim} for input of size {list(shape)}")
        return shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]

    def forward(self, x):
        x = np.asarray(x)
        first = (first_view(x, x.ndim - 2, self.data_format) if self._transposes(x.shape)
                 else x)
        y = first.reshape(self.output_shape(x.shape))
        self._keep(y, x.shape)
        return y

    def _backward(self, grad_output):
        grad, (shape,) = self._take(grad_output)
        if not self._transposes(shape):
            return grad.reshape(shape)
        nd = len(shape) - 2
        return in_layout(grad.reshape(first_shape(shape, nd, self.data_format)), nd,
                         self.data_format)

    def extra_repr(self):
        return _non_defaults(self, (("start_dim", 1), ("end_dim", -1),
                                    ("data_format", CHANNELS_FIRST))).lstrip(", ")
