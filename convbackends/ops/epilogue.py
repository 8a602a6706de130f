"""What a convolution may do to its output before handing it back: the epilogue.

``y = activation(conv(x, weight, bias) + residual)`` — ResNet's ``relu(bn(conv(x)) + x)``
once BatchNorm is folded into the weight and bias (:func:`convbackends.nn.fuse`), LeNet's
``tanh(conv(x))``. A backend
that declares ``fuses_epilogue = True`` takes ``epilogue=`` in its ``conv`` kernel and
applies it while the output is still in cache (per batch chunk, per output tile); for any
other backend, lowering or guarded call, dispatch applies it in place on the finished output.
Either way the arithmetic is the same two IEEE steps, so NaN and Inf come out as from the
unfused layers: ``max(NaN, 0)`` is NaN, as ``torch.relu``'s.
"""

from dataclasses import dataclass

import numpy as np

from ..errors import DTypeError, ShapeError, UnsupportedError

__all__ = ["Epilogue", "ACTIVATIONS", "make_epilogue"]

ACTIVATIONS = (None, "relu", "tanh")


@dataclass(frozen=True, eq=False)
class Epilogue:
    """``activation(y + residual)``, in place; ``residual`` is batched like ``y``."""

    residual: object = None
    activation: str = None

    def apply(self, y, start=0, stop=None):
        """Apply to ``y``, which holds samples ``start:stop`` of the call's output."""
        if self.residual is not None:
            np.add(y, self.residual[start:stop], out=y)
        if self.activation == "relu":
            np.maximum(y, 0, out=y)
        elif self.activation == "tanh":
            np.tanh(y, out=y)
        return y

    def describe(self):
        parts = (["+ residual"] if self.residual is not None else []) + \
            ([self.activation] if self.activation else [])
        return ", then ".join(parts)


def make_epilogue(func, activation, residual, output_shape, dtype, batched):
    """The validated :class:`Epilogue` of a call, or ``None`` when it has none.

    ``residual`` must have the output's shape (unbatched for an unbatched call) and dtype.
    """
    if activation not in ACTIVATIONS:
        raise ShapeError(f"{func}: activation must be one of {list(ACTIVATIONS)}, but got "
                         f"activation={activation!r}")
    if residual is None and activation is None:
        return None
    if residual is not None:
        if not isinstance(residual, np.ndarray):
            if hasattr(residual, "__cuda_array_interface__"):
                raise UnsupportedError(f"{func}: residual= on device arrays is not "
                                       f"supported; add it on the device")
            residual = np.asarray(residual)
        expected = tuple(output_shape) if batched else tuple(output_shape[1:])
        if residual.shape != expected:
            raise ShapeError(f"{func}: residual has shape {list(residual.shape)}, expected "
                             f"the output's {list(expected)}")
        if residual.dtype != np.dtype(dtype):
            raise DTypeError(f"{func}: residual has dtype {residual.dtype.name}, expected "
                             f"the output's {np.dtype(dtype).name}")
        if not batched:
            residual = residual[None]
    return Epilogue(residual, activation)
