"""Memory layouts of per-sample arrays: channels first ``(N, C, *spatial)`` (PyTorch's) or
channels last ``(N, *spatial, C)`` (Keras' ``data_format`` names).

Specs hold their layout in ``data_format``; their ``input_shape`` and ``output_shape`` are
in that layout, while weights keep PyTorch's layout whatever the data's. The helpers here
move the channel axis of shapes and arrays; :func:`layout_refusal` is the one rule that
keeps a channels-last call away from a kernel that computes channels first.
"""

import numpy as np

from ..errors import ShapeError

__all__ = ["DATA_FORMATS", "CHANNELS_FIRST", "CHANNELS_LAST", "check_data_format",
           "shape_to_first", "shape_to_last", "to_first", "to_last", "layout_refusal",
           "layout_name"]

CHANNELS_FIRST, CHANNELS_LAST = "channels_first", "channels_last"
DATA_FORMATS = (CHANNELS_FIRST, CHANNELS_LAST)
_SPATIAL_NAMES = {1: "L", 2: "H, W", 3: "D, H, W"}


def check_data_format(data_format):
    """``data_format`` itself when it is one of :data:`DATA_FORMATS`, else a ShapeError."""
    if data_format not in DATA_FORMATS:
        raise ShapeError(f"data_format must be one of {list(DATA_FORMATS)}, but got "
                         f"data_format={data_format!r}")
    return data_format


def layout_name(data_format, nd, channels=None, batched=True):
    """The layout as a message writes it: ``(N, H, W, C=3)``."""
    c = "C" if channels is None else f"C={channels}"
    dims = [_SPATIAL_NAMES[nd]]
    dims = dims + [c] if data_format == CHANNELS_LAST else [c] + dims
    return "(" + ", ".join((["N"] if batched else []) + dims) + ")"


def shape_to_first(shape, data_format):
    """A batched shape in ``data_format``, as the channels-first shape of the same array."""
    shape = tuple(shape)
    if data_format == CHANNELS_FIRST:
        return shape
    return (shape[0], shape[-1]) + shape[1:-1]


def shape_to_last(shape, data_format):
    """A batched channels-first shape, as the same array's shape in ``data_format``."""
    shape = tuple(shape)
    if data_format == CHANNELS_FIRST:
        return shape
    return (shape[0],) + shape[2:] + (shape[1],)


def to_first(a, batched=True):
    """A channels-last array as a channels-first view (no copy)."""
    return np.moveaxis(a, -1, 1 if batched else 0)


def to_last(a, batched=True):
    """A channels-first array as a channels-last view (no copy)."""
    return np.moveaxis(a, 1 if batched else 0, -1)


def layout_refusal(backend, op, spec):
    """Why ``backend``'s own kernel for ``op`` cannot take this call's layout, or ``None``.

    A backend lists the ops its kernels compute channels last in ``channels_last_ops``
    (none by default, so a plug-in written for channels-first arrays never sees any
    other); every other channels-last call reaches it through the layout lowering.
    """
    if getattr(spec, "data_format", CHANNELS_FIRST) == CHANNELS_FIRST:
        return None
    if op in getattr(backend, "channels_last_ops", ()):
        return None
    return f"{backend.name} has no channels_last kernel for {op}"
