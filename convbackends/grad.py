"""Gradients of convolution and pooling, with ``torch.nn.grad``'s names and argument order.

Each function is an op of the table (:mod:`convbackends.ops`) and runs on any backend: the
gradients lower onto forward ops (a convolution's input gradient is a transposed
convolution, its weight gradient a convolution over swapped axes, pooling gradients a
scatter or a depthwise transposed convolution), so every backend that runs those runs
these, and a backend may add a kernel of its own. Shapes are batched, as PyTorch's:
``input_size`` is the full ``(N, C, *spatial)`` shape of the forward call's input.

>>> import numpy as np, convbackends as cb
>>> x, w = np.ones((1, 1, 4)), np.ones((1, 1, 2))
>>> cb.grad.conv1d_input(x.shape, w, np.ones((1, 1, 3)))
array([[[1., 2., 2., 1.]]])
"""

from .functional import _call

__all__ = [f"{name}{nd}d_{wrt}" for name in ("conv", "conv_transpose") for nd in (1, 2, 3)
           for wrt in ("input", "weight")] + [
    f"{name}{nd}d_input" for name in ("max_pool", "avg_pool") for nd in (1, 2, 3)]


def _conv_input(nd):
    def conv_input(input_size, weight, grad_output, stride=1, padding=0, dilation=1,
                   groups=1, padding_mode="zeros", backend=None, *, out=None):
        return _call("conv_input_grad", f"conv{nd}d_input", nd, (weight, grad_output),
                     dict(input_size=input_size, stride=stride, padding=padding,
                          dilation=dilation, groups=groups), backend, out, padding_mode)
    conv_input.__doc__ = (
        f"The gradient of :func:`convbackends.conv{nd}d` with respect to its input, as "
        f"``torch.nn.grad.conv{nd}d_input``.\n\n    ``grad_output`` has the forward "
        "output's shape; the result has ``input_size``. Every padding form and\n    "
        "``padding_mode`` of the forward call (the padded input's gradient folded back).\n")
    return conv_input


def _conv_weight(nd):
    def conv_weight(input, weight_size, grad_output, stride=1, padding=0, dilation=1,
                    groups=1, padding_mode="zeros", backend=None, *, out=None):
        return _call("conv_weight_grad", f"conv{nd}d_weight", nd, (input, grad_output),
                     dict(weight_size=weight_size, stride=stride, padding=padding,
                          dilation=dilation, groups=groups), backend, out, padding_mode)
    conv_weight.__doc__ = (
        f"The gradient of :func:`convbackends.conv{nd}d` with respect to its weight, as "
        f"``torch.nn.grad.conv{nd}d_weight``;\n    the result has ``weight_size`` "
        "``(C_out, C_in // groups, *kernel)``.\n")
    return conv_weight


def _conv_transpose_input(nd):
    def conv_transpose_input(input_size, weight, grad_output, stride=1, padding=0,
                             output_padding=0, groups=1, dilation=1, backend=None, *,
                             out=None):
        return _call("conv_transpose_input_grad", f"conv_transpose{nd}d_input", nd,
                     (weight, grad_output),
                     dict(input_size=input_size, stride=stride, padding=padding,
                          output_padding=output_padding, dilation=dilation, groups=groups),
                     backend, out)
    conv_transpose_input.__doc__ = (
        f"The gradient of :func:`convbackends.conv_transpose{nd}d` with respect to its "
        "input: a convolution\n    of ``grad_output`` with the same weight.\n")
    return conv_transpose_input


def _conv_transpose_weight(nd):
    def conv_transpose_weight(input, weight_size, grad_output, stride=1, padding=0,
                              output_padding=0, groups=1, dilation=1, backend=None, *,
                              out=None):
        return _call("conv_transpose_weight_grad", f"conv_transpose{nd}d_weight", nd,
                     (input, grad_output),
                     dict(weight_size=weight_size, stride=stride, padding=padding,
                          output_padding=output_padding, dilation=dilation, groups=groups),
                     backend, out)
    conv_transpose_weight.__doc__ = (
        f"The gradient of :func:`convbackends.conv_transpose{nd}d` with respect to its "
        "weight; the result has\n    ``weight_size`` ``(C_in, C_out // groups, *kernel)``.\n")
    return conv_transpose_weight


def _max_pool_input(nd):
    def max_pool_input(input, grad_output, kernel_size, stride=None, padding=0, dilation=1,
                       ceil_mode=False, backend=None, *, out=None):
        return _call("max_pool_input_grad", f"max_pool{nd}d_input", nd, (input, grad_output),
                     dict(kernel_size=kernel_size, stride=stride, padding=padding,
                          dilation=dilation, ceil_mode=ceil_mode), backend, out)
    max_pool_input.__doc__ = (
        f"The gradient of :func:`convbackends.max_pool{nd}d` with respect to its input: "
        "each window's gradient\n    goes to its maximum (PyTorch's choice among equal "
        "maxima and NaN), windows sharing one add.\n")
    return max_pool_input


def _avg_pool_input(nd):
    def avg_pool_input(input_size, grad_output, kernel_size, stride=None, padding=0,
                       ceil_mode=False, count_include_pad=True, divisor_override=None,
                       dilation=1, backend=None, *, out=None):
        return _call("avg_pool_input_grad", f"avg_pool{nd}d_input", nd, (grad_output,),
                     dict(input_size=input_size, kernel_size=kernel_size, stride=stride,
                          padding=padding, ceil_mode=ceil_mode, dilation=dilation,
                          count_include_pad=count_include_pad,
                          divisor_override=divisor_override), backend, out)
    avg_pool_input.__doc__ = (
        f"The gradient of :func:`convbackends.avg_pool{nd}d` with respect to its input: "
        "each window's gradient\n    over its divisor, spread over the window's taps.\n")
    return avg_pool_input


def _named(make, name):
    """``make(nd)`` for 1, 2 and 3 spatial dims, named ``{name}{nd}d_...`` as PyTorch's."""
    made = []
    for nd in (1, 2, 3):
        fn = make(nd)
        fn.__name__ = fn.__qualname__ = name.format(nd=nd)
        made.append(fn)
    return made


conv1d_input, conv2d_input, conv3d_input = _named(_conv_input, "conv{nd}d_input")
conv1d_weight, conv2d_weight, conv3d_weight = _named(_conv_weight, "conv{nd}d_weight")
conv_transpose1d_input, conv_transpose2d_input, conv_transpose3d_input = _named(
    _conv_transpose_input, "conv_transpose{nd}d_input")
conv_transpose1d_weight, conv_transpose2d_weight, conv_transpose3d_weight = _named(
    _conv_transpose_weight, "conv_transpose{nd}d_weight")
max_pool1d_input, max_pool2d_input, max_pool3d_input = _named(_max_pool_input,
                                                               "max_pool{nd}d_input")
avg_pool1d_input, avg_pool2d_input, avg_pool3d_input = _named(_avg_pool_input,
                                                               "avg_pool{nd}d_input")
