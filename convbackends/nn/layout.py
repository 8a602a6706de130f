"""The data layout of layers: ``data_format`` on every conv, pooling and normalisation
layer, and on the models built from them.

A channels-last layer takes and gives ``(N, *spatial, C)`` (or unbatched ``(*spatial,
C)``); its forward calls the functional API with ``data_format="channels_last"``, so the
backends with a channels-last kernel compute in that layout. Its backward runs the
channels-first gradient code on transposed views and gives the input's gradient back in the
input's layout. Weights keep PyTorch's layout, so a PyTorch ``state_dict`` loads unchanged
into a model of either layout.
"""

import numpy as np

from ..spec.layout import CHANNELS_FIRST, CHANNELS_LAST, check_data_format

__all__ = ["set_data_format", "first_view", "in_layout", "first_shape", "spatial_of"]


def set_data_format(model, data_format):
    """Set ``data_format`` on ``model`` and every module in it that has one; returns it."""
    data_format = check_data_format(data_format)
    for module in model.modules():
        if hasattr(module, "data_format"):
            module.data_format = data_format
    return model


def _channel_axis(ndim, nd):
    """Where a channels-first array of ``ndim`` dims (``nd`` spatial) has its channels."""
    return 1 if ndim == nd + 2 else 0


def first_view(a, nd, data_format):
    """``a`` (in ``data_format``) as a channels-first view: no copy."""
    a = np.asarray(a)
    if data_format == CHANNELS_FIRST:
        return a
    return np.moveaxis(a, -1, _channel_axis(a.ndim, nd))


def in_layout(a, nd, data_format):
    """A channels-first array in ``data_format``, C-contiguous when channels last."""
    if data_format == CHANNELS_FIRST:
        return a
    return np.ascontiguousarray(np.moveaxis(a, _channel_axis(a.ndim, nd), -1))


def first_shape(shape, nd, data_format):
    """A shape in ``data_format`` as the channels-first shape of the same array."""
    shape = tuple(shape)
    if data_format == CHANNELS_FIRST:
        return shape
    axis = _channel_axis(len(shape), nd)
    return shape[:axis] + shape[-1:] + shape[axis:-1]


def spatial_of(shape, data_format, nd=2):
    """The ``nd`` spatial sizes of a shape in ``data_format``."""
    shape = tuple(shape)
    return shape[-nd - 1:-1] if data_format == CHANNELS_LAST else shape[-nd:]
