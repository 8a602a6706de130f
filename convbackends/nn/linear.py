"""The fully connected layer, as ``torch.nn.Linear``: one NumPy matrix product."""

import math

import numpy as np

from ..errors import ShapeError
from ..spec import check_dtypes
from .module import Module, _repr_backend, _uniform

__all__ = ["Linear"]


class Linear(Module):
    """``y = x @ weight.T + bias``, as ``torch.nn.Linear``; input ``(*, in_features)``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool. Default: True
    backend : accepted as on every layer with parameters (a matrix product needs none)
    dtype : numpy dtype. Default: float32
    rng : numpy.random.Generator or seed, optional
        ``weight`` ``(out_features, in_features)`` and ``bias`` ``(out_features,)`` are
        drawn from U(-1/sqrt(in_features), 1/sqrt(in_features)), as PyTorch's
        ``kaiming_uniform_(a=sqrt(5))`` and bias rule give.
    """

    _parameters = ("weight", "bias")

    def __init__(self, in_features, out_features, bias=True, *, backend=None,
                 dtype=np.float32, rng=None):
        super().__init__(backend=backend)
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features) if in_features else 0.0
        gen = np.random.default_rng(rng)
        self.weight = _uniform(gen, (out_features, in_features), bound, dtype)
        self.bias = _uniform(gen, (out_features,), bound, dtype) if bias else None

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        if not shape or shape[-1] != self.in_features:
            rows = math.prod(shape[:-1]) if shape else 1
            raise ShapeError(f"mat1 and mat2 shapes cannot be multiplied "
                             f"({rows}x{shape[-1] if shape else 0} and "
                             f"{self.in_features}x{self.out_features})")
        return shape[:-1] + (self.out_features,)

    def macs(self, input_shape):
        return math.prod(tuple(input_shape)[:-1]) * self.in_features * self.out_features

    def forward(self, x):
        x = np.asarray(x)
        check_dtypes("linear", x, self.weight, self.bias)
        self.output_shape(x.shape)
        y = x @ self.weight.T
        if self.bias is not None:
            y += self.bias
        self._keep(y, x)
        return y

    def _backward(self, grad_output):
        """``grad_x = g @ weight``, ``grad_weight = g.T @ x`` over every leading dim,
        ``grad_bias = sum(g)``."""
        grad, (x,) = self._take(grad_output)
        rows = grad.reshape(-1, self.out_features)
        self._add_grad("weight", rows.T @ x.reshape(-1, self.in_features))
        if self.bias is not None:
            self._add_grad("bias", rows.sum(axis=0, dtype=np.float64))
        return grad @ self.weight

    def extra_repr(self):
        s = f"in_features={self.in_features}, out_features={self.out_features}"
        if self.bias is None:
            s += ", bias=False"
        return _repr_backend(s, self.backend)
