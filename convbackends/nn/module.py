"""The base of every layer, :class:`Module`, and the helpers the layer modules share.

A module holds NumPy arrays as parameters and buffers, other modules as children, a
training flag and a backend; ``state_dict()`` keys follow PyTorch's naming, so a PyTorch
twin's weights load unchanged.

Training: a forward in training mode keeps, per layer, what that layer's backward needs
(its *tape*); ``backward(grad_output)`` uses it up, returns the input's gradient and adds
the parameters' gradients into ``named_grads()``.
"""

import threading

import numpy as np

from ..errors import ConvError, ShapeError, UnsupportedError

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
        self._tape = []     # what each train-mode forward kept for backward, last on top
        self._grads = {}    # parameter name -> accumulated gradient

    def __getstate__(self):
        # A copy or pickle of a module carries no half-done backward.
        state = dict(vars(self))
        state["_tape"] = []
        return state

    def forward(self, *inputs):
        """The layer's computation; every layer defines it."""
        raise UnsupportedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *inputs, **kwargs):
        """``self.forward(*inputs, **kwargs)``; most layers take one array, ``MaxUnpool2d``
        takes the pooled values and their indices.

        A library error (:class:`~convbackends.ConvError`) raised by a layer below this one
        comes out naming that layer's path, as in :meth:`state_dict`:
        ``layer2.0.downsample.0: backend 'winograd' cannot run this conv: ...``. It is an
        exception of the same class, with the same attributes plus ``layer_path``, raised
        from the original; a layer called on its own raises the original unchanged.
        """
        depth = getattr(_CALLS, "depth", 0)
        if not depth:
            # A call from outside any module starts afresh: what earlier forwards kept for
            # a backward that never came is dropped, so memory stays one forward's worth.
            for m in self.modules():
                _tape(m).clear()
        _CALLS.depth = depth + 1
        try:
            return self.forward(*inputs, **kwargs)
        except ConvError as error:
            located = _locate(self, error)
            if located is error:
                raise
            raise located from error
        finally:
            _CALLS.depth = depth

    def backward(self, grad_output=None):
        """Back-propagate ``grad_output``, the gradient of the last train-mode forward's
        output, through this module.

        Returns the gradient of that forward's input, and adds each parameter's gradient
        into :meth:`named_grads` (gradients accumulate until :meth:`zero_grad`). Each
        forward serves one backward: the layers let go of what they kept. ``grad_output``
        must have the output's shape; it is converted to the output's dtype. A backward
        with no train-mode forward before it (none yet, one in evaluation mode, or the
        module set to evaluation mode since) raises :class:`UnsupportedError`; errors
        name the layer, as the forward's do.
        """
        try:
            return self._backward(grad_output)
        except ConvError as error:
            located = _locate(self, error)
            if located is error:
                raise
            raise located from error

    def _backward(self, grad_output):
        """The layer's backward; every layer that can be trained defines it."""
        raise UnsupportedError(f"{type(self).__name__} does not define backward()")

    def _keep(self, output, *saved):
        """Keep ``saved`` for the backward of a forward that gave ``output`` (its shape and
        dtype are kept, not the array), in training mode only: evaluation keeps nothing."""
        if self.training:
            self._push(output, saved)

    def _push(self, output, saved):
        tape = _tape(self)
        if not getattr(_CALLS, "depth", 0):
            tape.clear()    # forward() called directly, outside any __call__: one at a time
        tape.append(((tuple(np.shape(output)), output.dtype), saved))

    def _take(self, grad_output):
        """``(grad_output, saved)`` for this layer's backward: what the last train-mode
        forward kept (now removed from the tape), and ``grad_output`` checked against that
        forward's output shape and converted to its dtype."""
        tape = _tape(self)
        if not tape:
            raise UnsupportedError(f"{type(self).__name__}: backward() needs a forward in "
                                   f"train mode first")
        (shape, dtype), saved = tape[-1]
        if grad_output is None:
            raise ShapeError(f"{type(self).__name__}: backward() needs grad_output, the "
                             f"gradient of the output (size {list(shape)})")
        grad = np.asarray(grad_output)
        if grad.shape != shape:
            raise ShapeError(f"{type(self).__name__}: grad_output has size "
                             f"{list(grad.shape)}, but the forward output has size "
                             f"{list(shape)}")
        tape.pop()
        return grad.astype(dtype, copy=False), saved

    def _add_grad(self, name, grad):
        """Accumulate ``grad`` into the gradient of parameter ``name``."""
        grads = _grads(self)
        param = getattr(self, name)
        if name in grads:
            grads[name] += grad
        else:
            grads[name] = np.array(grad, dtype=param.dtype).reshape(param.shape)

    def named_grads(self):
        """``(key, gradient)`` for every parameter a backward has reached since the last
        :meth:`zero_grad`, keys and order as in :meth:`named_parameters`.

        A gradient has its parameter's shape and dtype; it is the module's own array, which
        later backwards add into. A parameter no backward reached has none (as PyTorch's
        ``grad`` is ``None``), so optimizers leave it alone.
        """
        return list(self._named_grads(""))

    def _named_grads(self, prefix):
        grads = _grads(self)
        for name in self._parameters:
            if getattr(self, name) is not None and name in grads:
                yield prefix + name, grads[name]
        for child_name, child in self.named_children():
            yield from child._named_grads(f"{prefix}{child_name}.")

    def grads(self):
        return [g for _, g in self.named_grads()]

    def zero_grad(self, set_to_none=True):
        """Reset the gradients of every parameter here and below: drop them (the default,
        as PyTorch's), or with ``set_to_none=False`` fill them with zeros in place."""
        for m in self.modules():
            grads = _grads(m)
            if set_to_none:
                grads.clear()
            else:
                for g in grads.values():
                    g[...] = 0
        return self

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
        """Set training mode (``True``) or evaluation mode on this module and all below it.

        Evaluation mode also drops what train-mode forwards kept for a backward.
        """
        for m in self.modules():
            m.training = bool(mode)
            if not mode:
                _tape(m).clear()
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
        try:
            output_shape = self.output_shape(shape)
        except ConvError as error:
            if not prefix or _is_located(error):
                raise
            raise _with_path(error, prefix) from error
        yield prefix or type(self).__name__, self, shape, output_shape

    def macs(self, input_shape):
        """Multiply-accumulates of one forward on ``input_shape`` (0 for this layer kind)."""
        return 0

    def explain(self, input_shape, dtype=None):
        """What backend call a forward on ``input_shape`` makes, without making it.

        Convolution and pooling layers return the :class:`convbackends.explain` report of
        the call their forward makes, on the backend it would run on; every other layer
        (NumPy expressions, containers) returns ``None``. ``dtype`` is the input's dtype
        for layers without parameters (default float32); convolutions use their weight's.
        """
        return None

    def extra_repr(self):
        return ""

    def __repr__(self):
        children = self.named_children()
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        body = "\n".join(f"  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in children)
        return f"{type(self).__name__}(\n{body}\n)"


# How an error names the layer it came from.
#
# Module.__call__ is the one place errors are caught. At each level the traceback says which
# modules' __call__ frames the error passed through below this one, and the names of those
# modules inside their callers (by identity, as state_dict() names them) give the path. The
# first level with a non-empty path makes one copy of the error, with the path in front of
# its message, raised from the original; each level above puts its own part of the path in
# front of that same copy, so the path appears once and the chain holds two exceptions.

_CALL_CODES = (Module.__call__.__code__, Module.backward.__code__)
_MESSAGE = "_convbackends_message"    # the copy's message without the path
_ROOT = "_convbackends_root"          # the module the copy's path starts from


def _is_located(error):
    return _MESSAGE in vars(error)


def _with_path(error, path, root=None):
    """A copy of ``error`` (same class, same attributes) whose message starts ``path: ``."""
    cls = type(error)
    located = cls.__new__(cls)
    located.__dict__.update(vars(error))
    if isinstance(located.__dict__.get("__notes__"), list):
        located.__notes__ = list(located.__notes__)     # add_note() on one leaves the other
    message = str(error)
    located.__dict__.update({_MESSAGE: message, _ROOT: root})
    located.layer_path = path
    located.args = (f"{path}: {message}",)
    return located


def _child_name(parent, child):
    """The dotted name of ``child`` inside ``parent`` (a child, or deeper), else ``None``."""
    children = parent.named_children()
    for name, m in children:
        if m is child:
            return name
    for name, m in children:
        inner = _child_name(m, child)
        if inner is not None:
            return f"{name}.{inner}"
    return None


def _called_modules(error):
    """The modules whose ``__call__`` (or ``backward``) the error passed through,
    outermost first."""
    modules, tb = [], error.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code in _CALL_CODES:
            modules.append(tb.tb_frame.f_locals.get("self"))
        tb = tb.tb_next
    return modules


def _path(modules):
    """The dotted names linking ``modules`` (each called by the one before), as far as
    each is a descendant of its caller."""
    names = []
    for parent, child in zip(modules, modules[1:]):
        name = _child_name(parent, child) if isinstance(child, Module) else None
        if name is None:
            break
        names.append(name)
    return names, len(names) == len(modules) - 1


def _locate(module, error):
    """``error`` as ``module.__call__`` raises it: a new copy naming the layer below that
    raised it, the copy made below with ``module``'s part of the path put in front, or
    ``error`` itself when there is nothing to add (``module`` raised it)."""
    modules = _called_modules(error)
    if not modules or modules[0] is not module:
        return error
    if not _is_located(error):
        names, _ = _path(modules)
        return _with_path(error, ".".join(names), module) if names else error
    root = vars(error)[_ROOT]
    if root not in modules:
        return error
    names, complete = _path(modules[:modules.index(root) + 1])
    if not names or not complete:
        return error    # a caller that does not hold the module below: keep the path it has
    error.layer_path = ".".join(names + [error.layer_path])
    error.args = (f"{error.layer_path}: {vars(error)[_MESSAGE]}",)
    vars(error)[_ROOT] = module
    return error


# How deeply Module.__call__ is nested in this thread: 0 outside any module.
_CALLS = threading.local()


def _tape(module):
    """``module``'s tape (made here for a subclass that skipped ``Module.__init__``)."""
    return module.__dict__.setdefault("_tape", [])


def _grads(module):
    return module.__dict__.setdefault("_grads", {})


def _batched(a, nd):
    """``a`` with a leading batch dim of 1 when it is unbatched (``nd + 1`` dims)."""
    return a[None] if a.ndim == nd + 1 else a


def _unbatched_like(a, shape):
    """``a`` (batched) shaped back to ``shape`` when that was unbatched."""
    return a.reshape(shape) if a.ndim != len(shape) else a


class _Elementwise(Module):
    """A layer whose output has its input's shape."""

    def output_shape(self, input_shape):
        return tuple(input_shape)


def _explain(*args, **kwargs):
    """:func:`convbackends.explain`, the public function (layers do not reach into
    dispatch)."""
    from .. import explain
    return explain(*args, **kwargs)


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
