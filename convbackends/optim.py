"""Optimizers, as ``torch.optim``'s: SGD (momentum, Nesterov, weight decay) and Adam.

An optimizer is built on a model (a :class:`convbackends.nn.Module`) and, at each
``step()``, updates the model's own parameter arrays in place from the gradients its
backward accumulated (:meth:`~convbackends.nn.Module.named_grads`), with PyTorch's update
rules. A parameter without a gradient (no backward reached it since ``zero_grad()``) is
left alone, as PyTorch leaves a parameter whose ``grad`` is ``None``. State (momentum
buffers, moment estimates) is kept per parameter name, in the parameter's dtype.

>>> import numpy as np, convbackends as cb
>>> model = cb.nn.Linear(3, 2, rng=0)
>>> opt = cb.optim.SGD(model, lr=0.1, momentum=0.9)
>>> crit = cb.nn.MSELoss()
>>> loss = crit(model(np.ones((4, 3), np.float32)), np.zeros((4, 2), np.float32))
>>> _ = model.backward(crit.backward())
>>> opt.step(); opt.zero_grad()
"""

import math

import numpy as np

from .errors import ArgumentTypeError, ShapeError

__all__ = ["Optimizer", "SGD", "Adam"]


class Optimizer:
    """Shared by the optimizers: the model, ``zero_grad()`` and per-parameter ``state``."""

    def __init__(self, model, lr):
        if not hasattr(model, "named_parameters") or not hasattr(model, "named_grads"):
            raise ArgumentTypeError(f"{type(self).__name__}: expected a convbackends.nn "
                                    f"Module, got {type(model).__name__}")
        _check("learning rate", lr)
        self.model, self.lr = model, lr
        self.state = {}     # parameter name -> {buffer name: array, ...}

    def _pairs(self):
        """``(name, parameter, gradient)`` for every parameter with a gradient, each array
        once (a module reached by two paths is updated once)."""
        grads = dict(self.model.named_grads())
        seen = set()
        for name, param in self.model.named_parameters():
            grad = grads.get(name)
            if grad is None or id(param) in seen:
                continue
            seen.add(id(param))
            yield name, param, grad

    def zero_grad(self, set_to_none=True):
        """The model's :meth:`~convbackends.nn.Module.zero_grad`."""
        self.model.zero_grad(set_to_none)

    def step(self):
        """Update every parameter that has a gradient, in place."""
        for name, param, grad in self._pairs():
            self._update(name, param, grad, self.state.setdefault(name, {}))

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in self._options().items())
        return f"{type(self).__name__}({options})"


def _check(what, value, low=0.0):
    if not value >= low:
        raise ShapeError(f"Invalid {what}: {value}")


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``.

    Per parameter ``p`` with gradient ``g``: ``g += weight_decay * p`` (L2); with
    ``momentum``, ``buf = g`` at the first step and ``buf = momentum * buf +
    (1 - dampening) * g`` after, then ``g = g + momentum * buf`` with ``nesterov``, else
    ``g = buf``; finally ``p -= lr * g``.

    Parameters
    ----------
    model : convbackends.nn.Module
    lr : float
    momentum : float. Default: 0
    weight_decay : float. Default: 0
    nesterov : bool
        Needs a positive ``momentum`` and zero ``dampening``. Default: False
    dampening : float (keyword-only). Default: 0
    """

    def __init__(self, model, lr, momentum=0, weight_decay=0, nesterov=False, *,
                 dampening=0):
        super().__init__(model, lr)
        _check("momentum value", momentum)
        _check("weight_decay value", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ShapeError("Nesterov momentum requires a momentum and zero dampening")
        self.momentum, self.weight_decay = momentum, weight_decay
        self.nesterov, self.dampening = nesterov, dampening

    def _update(self, name, param, grad, state):
        d = grad
        if self.weight_decay:
            d = d + self.weight_decay * param
        if self.momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(d, dtype=param.dtype)
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * d
            d = d + self.momentum * buf if self.nesterov else buf
        param -= (self.lr * d).astype(param.dtype, copy=False)

    def _options(self):
        return dict(lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                    nesterov=self.nesterov, dampening=self.dampening)


class Adam(Optimizer):
    """Adam (Kingma and Ba), as ``torch.optim.Adam``, with its bias correction.

    Per parameter at step ``t``: ``g += weight_decay * p`` (L2 added to the gradient, as
    PyTorch's Adam; not AdamW's decoupled decay), ``m = beta1 * m + (1 - beta1) * g``,
    ``v = beta2 * v + (1 - beta2) * g**2``, and
    ``p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)``. With
    ``amsgrad`` the running maximum of ``v`` takes ``v``'s place in the denominator.

    Parameters
    ----------
    model : convbackends.nn.Module
    lr : float. Default: 1e-3
    betas : (float, float). Default: (0.9, 0.999)
    eps : float. Default: 1e-8
    weight_decay : float. Default: 0
    amsgrad : bool (keyword-only). Default: False
    """

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, *,
                 amsgrad=False):
        super().__init__(model, lr)
        _check("epsilon value", eps)
        beta1, beta2 = betas
        if not 0.0 <= beta1 < 1.0:
            raise ShapeError(f"Invalid beta parameter at index 0: {beta1}")
        if not 0.0 <= beta2 < 1.0:
            raise ShapeError(f"Invalid beta parameter at index 1: {beta2}")
        _check("weight_decay value", weight_decay)
        self.betas, self.eps = (beta1, beta2), eps
        self.weight_decay, self.amsgrad = weight_decay, amsgrad

    def _update(self, name, param, grad, state):
        beta1, beta2 = self.betas
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
            if self.amsgrad:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        state["step"] += 1
        step = state["step"]
        g = grad
        if self.weight_decay:
            g = g + self.weight_decay * param
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (g - m) * (1 - beta1)                   # lerp, as PyTorch's
        v *= beta2
        v += (1 - beta2) * g * g
        if self.amsgrad:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        step_size = self.lr / (1 - beta1 ** step)
        denom = np.sqrt(v) / math.sqrt(1 - beta2 ** step) + self.eps
        param -= (step_size * (m / denom)).astype(param.dtype, copy=False)

    def _options(self):
        return dict(lr=self.lr, betas=self.betas, eps=self.eps,
                    weight_decay=self.weight_decay, amsgrad=self.amsgrad)
