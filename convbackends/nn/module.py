"""The base of every layer, :class:`Module`, and the helpers the layer modules share.

A module holds NumPy arrays as parameters and buffers, other modules as children, a
training flag and a backend; ``state_dict()`` keys follow PyTorch's naming, so a PyTorch
twin's weights load unchanged.
"""

import numpy as np

from ..errors import ShapeError, UnsupportedError

__all__ = ["Module"]


class Module:
    """Base of every layer: parameters, buffers, children, train/eval, backend, state dicts.

    Subclasses list their parameter names in ``_parameters`` and their buffer names in
    ``_buffers``; any attribute that is a :class:`Module` is a child, named by the attribute.
    """

    _parameters = ()
    _buffers = ()

    def __init__(self, *, backend=None):
        self.training = True
        self._backend = backend

    def forward(self, *inputs):
        """The layer's computation; every layer defines it."""
        raise UnsupportedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *inputs, **kwargs):
        """``self.forward(*inputs, **kwargs)``; most layers take one array, ``MaxUnpool2d``
        takes the pooled values and their indices."""
        return self.forward(*inputs, **kwargs)

    def named_children(self):
        return [(k, v) for k, v in vars(self).items() if isinstance(v, Module)]

    def children(self):
        return [m for _, m in self.named_children()]

    def modules(self):
        """This module and every module below it, depth first."""
        yield self
        for child in self.children():
            yield from child.modules()

    @property
    def backend(self):
        """The backend every convolution and pooling inside this module runs on.

        Setting it sets it on every child too (a ``Sequential`` sets all its layers at once).
        ``None`` means the current default (see :func:`convbackends.set_backend`).
        Convolutions name the backend in their call; pooling layers run inside
        ``set_backend(backend)``, so a backend that computes no pooling at all (``im2col``,
        ``fft``, ``winograd``) leaves pooling to ``"auto"`` and ``model.backend = "im2col"``
        runs every convolution on im2col; a backend that pools but declines one geometry
        still raises.
        """
        return self._backend

    @backend.setter
    def backend(self, value):
        self._backend = value
        for child in self.children():
            child.backend = value

    def train(self, mode=True):
        """Set training mode (``True``) or evaluation mode on this module and all below it."""
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self):
        """Evaluation mode: Dropout is the identity, BatchNorm uses its running statistics."""
        return self.train(False)

    def _named_tensors(self, prefix="", names=None):
        for name in self._parameters + self._buffers if names is None else names(self):
            value = getattr(self, name)
            if value is not None:
                yield prefix + name, value
        for child_name, child in self.named_children():
            yield from child._named_tensors(f"{prefix}{child_name}.", names)

    def named_parameters(self):
        """``(key, array)`` for every parameter (no buffers), keys as in :meth:`state_dict`."""
        return list(self._named_tensors(names=lambda m: m._parameters))

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def state_dict(self):
        """Parameters and buffers by PyTorch's key names (the arrays themselves, not copies)."""
        return dict(self._named_tensors())

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays in by PyTorch key; all-or-nothing.

        With ``strict`` (the default, as in PyTorch) missing and unexpected keys are errors;
        wrongly shaped entries always are. Every problem is listed in one
        :class:`ShapeError` and nothing is changed.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        wrong = [f"{k}: expected shape {list(own[k].shape)}, got "
                 f"{list(np.shape(state_dict[k]))}"
                 for k in own if k in state_dict and np.shape(state_dict[k]) != own[k].shape]
        problems = []
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if wrong:
            problems.append("size mismatch: " + "; ".join(wrong))
        if problems:
            raise ShapeError(f"Error(s) in loading state_dict for {type(self).__name__}: "
                             + ". ".join(problems))
        # Convert everything before writing anything, so a bad value changes nothing.
        values = {k: np.asarray(state_dict[k], dtype=own[k].dtype) for k in own
                  if k in state_dict}
        for key, value in values.items():
            own[key][...] = value
        return self

    def output_shape(self, input_shape):
        """The shape ``self(x)`` has for ``x`` of ``input_shape``, from shapes alone.

        A layer that returns ``(values, indices)`` gives the shape of both arrays.
        """
        if not self.named_children():
            raise UnsupportedError(f"{type(self).__name__} does not define output_shape()")
        shape = tuple(input_shape)
        for *_, shape in self.layer_shapes(shape):
            pass
        return shape

    def layer_shapes(self, input_shape, prefix=""):
        """Yield ``(name, layer, input_shape, output_shape)`` for each leaf layer a forward
        on ``input_shape`` runs, in order, without computing anything.

        Leaf layers yield themselves; containers override this to say how data flows.
        """
        if self.named_children():
            raise UnsupportedError(f"{type(self).__name__} has children but does not "
                                      f"define layer_shapes()")
        shape = tuple(input_shape)
        yield prefix or type(self).__name__, self, shape, self.output_shape(shape)

    def macs(self, input_shape):
        """Multiply-accumulates of one forward on ``input_shape`` (0 for this layer kind)."""
        return 0

    def extra_repr(self):
        return ""

    def __repr__(self):
        children = self.named_children()
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        body = "\n".join(f"  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in children)
        return f"{type(self).__name__}(\n{body}\n)"


class _Elementwise(Module):
    """A layer whose output has its input's shape."""

    def output_shape(self, input_shape):
        return tuple(input_shape)


def _uniform(gen, shape, bound, dtype):
    """U(-bound, bound) drawn straight in ``dtype`` (no float64 temporary for big layers)."""
    a = gen.random(shape, dtype=np.dtype(dtype).type)
    a *= 2 * bound
    a -= bound
    return a


def _non_defaults(layer, defaults):
    """``", name=value"`` for each ``(name, default)`` whose value differs."""
    return "".join(f", {name}={getattr(layer, name)!r}" for name, default in defaults
                   if getattr(layer, name) != default)


def _repr_backend(s, backend):
    """``extra_repr`` text ``s`` with ``backend=`` appended when one is set."""
    if backend is None:
        return s
    return f"{s}, backend={backend!r}" if s else f"backend={backend!r}"
