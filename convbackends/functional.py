"""The functional API: arguments -> spec -> plan -> results, one generic path for every op.

Every function validates its arguments into the op's spec (the op table,
:mod:`convbackends.ops`, says how) before any backend is chosen, applies a non-zero
``padding_mode`` by padding once in front, hands the plan a batched array, and gives
unbatched input back unbatched. Inputs are never modified. Each function takes PyTorch's
positional order and keywords (``input=`` included), so a call copied from
``torch.nn.functional`` runs unchanged with NumPy arrays.

Output size per spatial dim (convolution and pooling)::

    floor((L + pad_before + pad_after - dilation*(kernel - 1) - 1) / stride) + 1

and for transposed convolution::

    (L - 1)*stride - pad_before - pad_after + dilation*(kernel - 1) + output_padding + 1
"""

import functools
import math

import numpy as np

from . import dispatch
from .dispatch.autotune import autotune_enabled
from .errors import ArgumentTypeError, DTypeError, ShapeError, UnsupportedError
from .ops import get_op
from .ops.epilogue import make_epilogue
from .ops.gradients import fold_padding
from .spec import check_dtypes, invalid_index_error, padded_spec
from .spec.layout import CHANNELS_FIRST

__all__ = ["conv", "conv1d", "conv2d", "conv3d", "conv_transpose", "conv_transpose1d",
           "conv_transpose2d", "conv_transpose3d", "max_pool1d", "max_pool2d", "max_pool3d",
           "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
           "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
           "adaptive_max_pool2d", "adaptive_max_pool3d", "max_unpool1d", "max_unpool2d",
           "max_unpool3d", "global_avg_pool", "is_device_array"]

_NP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_PER_SAMPLE = ("x", "indices", "grad_output")      # operands with a batch dimension
_PER_SAMPLE_RESULTS = ("y", "values", "indices", "grad_input")
_PADDING_MODE_OPS = ("conv", "conv_transpose", "conv_input_grad", "conv_weight_grad")


def is_device_array(a):
    """True for GPU arrays that are not NumPy arrays: anything with
    ``__cuda_array_interface__`` (CuPy, PyTorch, Numba) and Numba's simulated device arrays
    (``__cuda_ndarray__``, under ``NUMBA_ENABLE_CUDASIM=1``)."""
    return not isinstance(a, np.ndarray) and (
        hasattr(a, "__cuda_array_interface__") or bool(getattr(a, "__cuda_ndarray__", False)))


_DLPACK_CPU = 1    # DLPack's device type of host memory (kDLCPU)


def _host_array(func, a):
    """A NumPy array of ``a``'s memory where it is host memory: through DLPack when ``a``
    offers it (PyTorch CPU tensors, JAX CPU arrays: no copy), else ``numpy.asarray``."""
    if isinstance(a, np.ndarray):
        return a
    try:
        if hasattr(a, "__dlpack__") and a.__dlpack_device__()[0] == _DLPACK_CPU:
            try:
                return np.from_dlpack(a)
            except (BufferError, RuntimeError, TypeError, ValueError):
                pass    # a dtype or flag DLPack cannot carry: the library's own conversion
        return np.asarray(a)
    except (BufferError, RuntimeError, TypeError) as error:
        raise ArgumentTypeError(f"{func}: cannot read a {type(a).__name__} as a NumPy "
                                f"array: {error}") from error


def _as_array(func, a, device):
    """NumPy arrays for host calls. For device calls, device arrays become Numba views of
    the same memory (CuPy's and PyTorch's dtypes are not NumPy dtypes) and anything else a
    NumPy array."""
    if a is None:
        return a
    if not device or not is_device_array(a):
        return _host_array(func, a)
    if getattr(a, "__cuda_ndarray__", False):
        return a
    from numba import cuda  # reached only with device input, which needs numba-cuda
    return cuda.as_cuda_array(a)


def _add_batch_dim(x):
    """``x[None]``; Numba device arrays cannot be indexed with None, so they are reshaped."""
    return x.reshape((1,) + tuple(x.shape)) if is_device_array(x) else x[None]


def _check_out(func, out, shape, dtype):
    if out is None:
        return
    if not isinstance(out, np.ndarray):
        raise DTypeError(f"{func}: out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ShapeError(f"{func}: out has shape {list(out.shape)}, expected "
                         f"{list(shape)}")
    if out.dtype != np.dtype(dtype):
        raise DTypeError(f"{func}: out has dtype {out.dtype.name}, expected "
                         f"{np.dtype(dtype).name}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ShapeError(f"{func}: out must be a writeable, C-contiguous array")


def _check_dtypes(func, entry, arrays):
    """One floating dtype for every operand but the indices, which must be int64."""
    floats = [a for name, a in zip(entry.operands, arrays) if name != "indices"]
    dtype = check_dtypes(func, *floats)
    if "indices" in entry.operands:
        indices = arrays[entry.operands.index("indices")]
        if np.dtype(indices.dtype) != np.int64:
            raise DTypeError(f"elements in indices should be type int64 but got: "
                             f"{np.dtype(indices.dtype).name}")
    return dtype


def _check_weight_rank(func, nd, op, arrays):
    if nd is not None and op in ("conv", "conv_transpose") and len(arrays[1].shape) != nd + 2:
        layout = ("in_channels, out_channels / groups" if op == "conv_transpose"
                  else "out_channels, in_channels / groups")
        raise ShapeError(f"{func}: expected a {nd + 2}-D weight ({layout}, *kernel), got "
                         f"weight of size {list(arrays[1].shape)}")


def _check_indices(indices, spec):
    """``max_unpool``'s indices must point into the output plane (PyTorch's message)."""
    if is_device_array(indices) or indices.size == 0:
        return
    bad = (indices < 0) | (indices >= math.prod(spec.unpool_output))
    if bad.any():
        raise invalid_index_error(indices[bad].flat[-1], spec)


def _prepare(func, entry, arrays, spec, inner, batched, padding_mode, device):
    """Batched operands, the input padded once when ``padding_mode`` is not zeros."""
    if not batched:
        arrays = [_add_batch_dim(a) if name in _PER_SAMPLE else a
                  for name, a in zip(entry.operands, arrays)]
    if inner is not spec and entry.operands[0] == "x":
        if device:
            raise UnsupportedError(f"{func}: padding_mode={padding_mode!r} on device arrays "
                                   f"is not supported; pad on the device first")
        spatial = [list(p) for p in spec.padding]
        pads = ([(0, 0), (0, 0)] + spatial if spec.data_format == CHANNELS_FIRST
                else [(0, 0)] + spatial + [(0, 0)])
        arrays[0] = np.pad(arrays[0], pads, mode=_NP_PAD_MODE[padding_mode])
    return arrays


# (op, function, operand shapes and dtypes, parameters, backend, defaults) -> what
# validating and planning that call gave, so a repeated call (a layer in a loop, a model
# over many batches) skips both; contents-dependent checks still run on every call.
_PLANS = {}
_PLANS_MAX = 1024


def _hashable(value):
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def _plan_key(op, func, nd, arrays, params, backend, padding_mode, device):
    if device or autotune_enabled():
        return None    # device plans depend on the arrays; autotuned choices change
    key = (op, func, nd,
           tuple(None if a is None else (a.shape, a.dtype.str) for a in arrays),
           tuple((k, _hashable(v)) for k, v in params.items()), backend, padding_mode,
           dispatch.current_backend(), dispatch.registry_state())
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _validated(op, func, nd, entry, arrays, params, padding_mode):
    """``(dtype, spec, batched, inner)``: the call's arguments checked into its spec."""
    dtype = _check_dtypes(func, entry, arrays)
    _check_weight_rank(func, nd, op, arrays)
    shapes = tuple(None if a is None else tuple(a.shape) for a in arrays)
    spec, batched = entry.build_spec(func, nd, shapes, dtype, **params)
    inner = padded_spec(spec, padding_mode) if op in _PADDING_MODE_OPS else spec
    return dtype, spec, batched, inner


def _remember(key, found):
    if key is not None:
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[key] = found


def _call(op, func, nd, operands, params, backend, out, padding_mode="zeros",
          activation=None, residual=None):
    """The one path of every public function: validate, plan, run, shape the results."""
    entry = get_op(op)
    device = any(is_device_array(a) for a in operands)
    arrays = [_as_array(func, a, device) for a in operands]
    key = _plan_key(op, func, nd, arrays, params, backend, padding_mode, device)
    found = None if key is None else _PLANS.get(key)
    if found is None:
        dtype, spec, batched, inner = _validated(op, func, nd, entry, arrays, params,
                                                 padding_mode)
        plan = None
    else:
        dtype, spec, batched, inner, plan = found
    per_sample = entry.results[0] in _PER_SAMPLE_RESULTS
    unbatch = not batched and per_sample
    result_shape = entry.result_shape(spec)
    _check_out(func, out, result_shape[1:] if unbatch else result_shape, dtype)
    if op == "max_unpool":
        _check_indices(arrays[1], spec)
    epilogue = make_epilogue(func, activation, residual, result_shape, dtype, batched)
    if epilogue is not None and device:
        raise UnsupportedError(f"{func}: activation= and residual= are not supported on "
                               f"device arrays")
    arrays = _prepare(func, entry, arrays, spec, inner, batched, padding_mode, device)
    if plan is None:     # every argument is checked before a backend is chosen
        plan = dispatch.plan_call(op, inner, backend, device=device)
        _remember(key, (dtype, spec, batched, inner, plan))
    full_out = None if out is None else (out[None] if unbatch else out)
    results = plan.run(arrays, out=full_out if plan.writes_out else None, epilogue=epilogue)
    if len(entry.results) == 1:
        results = (results,)
    if op == "conv_input_grad" and inner is not spec:   # the padded input's gradient
        results = (fold_padding(results[0], spec.padding, padding_mode),)
    if full_out is not None and results[0] is not full_out:
        np.copyto(full_out, results[0])
        results = (full_out,) + tuple(results[1:])
    if unbatch:
        results = tuple(r[0] for r in results)
    if out is not None:
        results = (out,) + tuple(results[1:])
    return results if len(results) > 1 else results[0]


def _torch_keywords(fn):
    """Accept PyTorch's keyword ``input=`` for the first argument, as ``torch.nn.functional``."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        if "input" in kwargs:
            return fn(kwargs.pop("input"), *args, **kwargs)
        return fn(*args, **kwargs)
    return call


def _conv_params(stride, padding, dilation, groups, output_padding=0,
                 data_format="channels_first"):
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                output_padding=output_padding, data_format=data_format)


@_torch_keywords
def conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
         padding_mode="zeros", backend=None, *, out=None, activation=None, residual=None,
         data_format="channels_first"):
    """N-D convolution (cross-correlation), as ``torch.nn.functional.conv{1,2,3}d``.

    The number of spatial dims is ``weight.ndim - 2``.

    Parameters
    ----------
    x : array_like, shape ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``
    weight : array_like, shape ``(C_out, C_in // groups, *kernel)``
    bias : array_like, shape ``(C_out,)``, optional
    stride, dilation : int or tuple of int, one per spatial dim. Default: 1
    padding : int, tuple of int, tuple of (before, after) pairs, ``"valid"`` or ``"same"``
        ``"same"`` needs stride 1; an odd total puts the extra element after. Default: 0
    groups : int. Default: 1
    padding_mode : {"zeros", "reflect", "replicate", "circular"}. Default: "zeros"
    backend : str or backend object, optional
        Default: the current default (see :func:`convbackends.set_backend`), else "auto".
    out : ndarray, optional
        C-contiguous array of the output's shape and dtype that receives the result.
    residual : array_like, optional
        Added to the output (its shape and dtype) before ``activation``: ResNet's shortcut.
    activation : {None, "relu", "tanh"}, optional
        Applied last: ``y = activation(conv(x, weight, bias) + residual)``, in the output's
        own memory and, on backends that fuse it (im2col, winograd), while each block of
        the output is still in cache. NaN stays NaN through ``relu``, as in PyTorch.
    data_format : {"channels_first", "channels_last"}
        The layout of ``x`` and the result: ``(N, C, *spatial)`` or ``(N, *spatial, C)``
        (Keras' names). The weight keeps PyTorch's layout either way. Backends with a
        channels-last kernel compute in that layout; the others run their channels-first
        kernel on transposed views (``explain()`` shows which). Default: "channels_first"

    Returns
    -------
    ndarray, shape ``(N, C_out, *out_spatial)`` (``(N, *out_spatial, C_out)`` channels
    last; unbatched in, unbatched out), the input's dtype; a Numba device array for device
    input on the CUDA backend.
    """
    return _call("conv", "conv", None, (x, weight, bias),
                 _conv_params(stride, padding, dilation, groups, data_format=data_format),
                 backend, out, padding_mode, activation, residual)


def _conv_nd(nd):
    @_torch_keywords
    def conv_nd(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                padding_mode="zeros", backend=None, *, out=None, activation=None,
                residual=None, data_format="channels_first"):
        return _call("conv", f"conv{nd}d", nd, (x, weight, bias),
                     _conv_params(stride, padding, dilation, groups,
                                  data_format=data_format), backend, out, padding_mode,
                     activation, residual)
    conv_nd.__name__ = conv_nd.__qualname__ = f"conv{nd}d"
    conv_nd.__doc__ = (f"{nd}-D convolution, as ``torch.nn.functional.conv{nd}d``; see "
                       f":func:`conv`.")
    return conv_nd


conv1d, conv2d, conv3d = _conv_nd(1), _conv_nd(2), _conv_nd(3)


@_torch_keywords
def conv_transpose(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                   dilation=1, backend=None, *, out=None, data_format="channels_first"):
    """N-D transposed convolution, as ``torch.nn.functional.conv_transpose{1,2,3}d``.

    The adjoint of :func:`conv`: ``weight`` has shape ``(C_in, C_out // groups, *kernel)``;
    ``padding`` (int, per dim, or ``(before, after)`` pairs) removes that many elements from
    each end of the full output; ``output_padding`` adds elements at the end.
    ``data_format`` as :func:`conv`'s.
    """
    return _call("conv_transpose", "conv_transpose", None, (x, weight, bias),
                 _conv_params(stride, padding, dilation, groups, output_padding, data_format),
                 backend, out)


def _conv_transpose_nd(nd):
    @_torch_keywords
    def conv_transpose_nd(x, weight, bias=None, stride=1, padding=0, output_padding=0,
                          groups=1, dilation=1, backend=None, *, out=None,
                          data_format="channels_first"):
        return _call("conv_transpose", f"conv_transpose{nd}d", nd, (x, weight, bias),
                     _conv_params(stride, padding, dilation, groups, output_padding,
                                  data_format), backend, out)
    conv_transpose_nd.__name__ = conv_transpose_nd.__qualname__ = f"conv_transpose{nd}d"
    conv_transpose_nd.__doc__ = (f"{nd}-D transposed convolution, as "
                                 f"``torch.nn.functional.conv_transpose{nd}d``; see "
                                 f":func:`conv_transpose`.")
    return conv_transpose_nd


conv_transpose1d, conv_transpose2d, conv_transpose3d = (
    _conv_transpose_nd(1), _conv_transpose_nd(2), _conv_transpose_nd(3))

_MAX_POOL_DOC = """{nd}-D max pooling, as ``torch.nn.functional.max_pool{nd}d``.

    ``stride`` defaults to ``kernel_size``; padding (int, per dim, pairs, "valid", or
    "same" as TensorFlow defines it for pooling: ``ceil(L / stride)`` outputs) is ``-inf``,
    so a window wholly in padding gives ``-inf``. ``ceil_mode`` rounds the output size up,
    but the last window must start inside the input or the leading padding. A NaN in a
    window gives NaN.

    With ``return_indices=True`` it returns ``(values, indices)``: ``indices`` (int64, the
    values' shape) are flat indices of the maxima into each input plane (``h*W + w`` in
    2-D), as :func:`max_unpool{nd}d` takes them. Among equal maxima the first in scan order
    is chosen; a NaN wins over any number, and of several NaNs the last; a window wholly in
    padding has index -1. ``out`` receives the values.

    ``data_format="channels_last"`` takes and gives ``(N, *spatial, C)``; the indices
    are laid out like the values and still count positions within each ``(n, c)`` plane.
    """


def _max_pool_nd(nd):
    @_torch_keywords
    def max_pool_nd(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                    return_indices=False, backend=None, *, out=None,
                    data_format="channels_first"):
        op = "max_pool_with_indices" if return_indices else "max_pool"
        return _call(op, f"max_pool{nd}d", nd, (x,),
                     dict(kernel_size=kernel_size, stride=stride, padding=padding,
                          dilation=dilation, ceil_mode=ceil_mode, data_format=data_format),
                     backend, out)
    max_pool_nd.__name__ = max_pool_nd.__qualname__ = f"max_pool{nd}d"
    max_pool_nd.__doc__ = _MAX_POOL_DOC.format(nd=nd)
    return max_pool_nd


max_pool1d, max_pool2d, max_pool3d = _max_pool_nd(1), _max_pool_nd(2), _max_pool_nd(3)

_AVG_POOL_DOC = """{nd}-D average pooling, as ``torch.nn.functional.avg_pool{nd}d``.

    With ``count_include_pad`` the divisor counts padding taps (but not the part of a
    ceil-mode window beyond the padding); without it, only taps inside the input.
    {override}``dilation`` is an extension beyond PyTorch (ONNX has it).
    ``data_format="channels_last"`` takes and gives ``(N, *spatial, C)``.
    """
_OVERRIDE_DOC = ("``divisor_override``, when given, divides every window by it (not "
                 "zero).\n    ")


@_torch_keywords
def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, dilation=1, backend=None, *, out=None,
               data_format="channels_first"):
    """1-D average pooling, as ``torch.nn.functional.avg_pool1d``; see :func:`avg_pool2d`."""
    return _call("avg_pool", "avg_pool1d", 1, (x,),
                 dict(kernel_size=kernel_size, stride=stride, padding=padding,
                      dilation=dilation, ceil_mode=ceil_mode,
                      count_include_pad=count_include_pad, data_format=data_format),
                 backend, out)


def _avg_pool_nd(nd):
    @_torch_keywords
    def avg_pool_nd(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                    count_include_pad=True, divisor_override=None, dilation=1, backend=None,
                    *, out=None, data_format="channels_first"):
        return _call("avg_pool", f"avg_pool{nd}d", nd, (x,),
                     dict(kernel_size=kernel_size, stride=stride, padding=padding,
                          dilation=dilation, ceil_mode=ceil_mode,
                          count_include_pad=count_include_pad,
                          divisor_override=divisor_override, data_format=data_format),
                     backend, out)
    avg_pool_nd.__name__ = avg_pool_nd.__qualname__ = f"avg_pool{nd}d"
    avg_pool_nd.__doc__ = _AVG_POOL_DOC.format(nd=nd, override=_OVERRIDE_DOC)
    return avg_pool_nd


avg_pool2d, avg_pool3d = _avg_pool_nd(2), _avg_pool_nd(3)


def _adaptive_avg_pool_nd(nd):
    @_torch_keywords
    def adaptive_avg_pool_nd(x, output_size, backend=None, *, out=None,
                             data_format="channels_first"):
        return _call("adaptive_avg_pool", f"adaptive_avg_pool{nd}d", nd, (x,),
                     dict(output_size=output_size, data_format=data_format), backend, out)
    adaptive_avg_pool_nd.__name__ = adaptive_avg_pool_nd.__qualname__ = \
        f"adaptive_avg_pool{nd}d"
    adaptive_avg_pool_nd.__doc__ = (
        f"{nd}-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool{nd}d``."
        "\n\n    Output window ``i`` along a dim of length ``L`` averages ``[floor(i*L/out), "
        "ceil((i+1)*L/out))``;\n    ``None`` in ``output_size`` keeps that dim's size.\n")
    return adaptive_avg_pool_nd


adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d = (
    _adaptive_avg_pool_nd(1), _adaptive_avg_pool_nd(2), _adaptive_avg_pool_nd(3))


def _adaptive_max_pool_nd(nd):
    @_torch_keywords
    def adaptive_max_pool_nd(x, output_size, return_indices=False, backend=None, *,
                             out=None, data_format="channels_first"):
        values, indices = _call("adaptive_max_pool", f"adaptive_max_pool{nd}d", nd, (x,),
                                dict(output_size=output_size, data_format=data_format),
                                backend, out)
        return (values, indices) if return_indices else values
    adaptive_max_pool_nd.__name__ = adaptive_max_pool_nd.__qualname__ = \
        f"adaptive_max_pool{nd}d"
    adaptive_max_pool_nd.__doc__ = (
        f"{nd}-D adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool{nd}d``."
        "\n\n    Windows as :func:`adaptive_avg_pool2d`'s; ``return_indices=True`` also "
        "returns the int64\n    flat indices of the maxima into each input plane, with "
        ":func:`max_pool2d`'s rules\n    for ties and NaN. ``out`` receives the values.\n")
    return adaptive_max_pool_nd


adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d = (
    _adaptive_max_pool_nd(1), _adaptive_max_pool_nd(2), _adaptive_max_pool_nd(3))


def _max_unpool_nd(nd):
    @_torch_keywords
    def max_unpool_nd(x, indices, kernel_size, stride=None, padding=0, output_size=None,
                      backend=None, *, out=None, data_format="channels_first"):
        return _call("max_unpool", f"max_unpool{nd}d", nd, (x, indices),
                     dict(kernel_size=kernel_size, stride=stride, padding=padding,
                          output_size=output_size, data_format=data_format), backend, out)
    max_unpool_nd.__name__ = max_unpool_nd.__qualname__ = f"max_unpool{nd}d"
    max_unpool_nd.__doc__ = (
        f"{nd}-D max unpooling, as ``torch.nn.functional.max_unpool{nd}d``: the partial "
        "inverse of max pooling.\n\n    Zeros of the output size, with ``x``'s values "
        "written at ``indices`` (int64, ``x``'s shape,\n    flat into each output plane, as "
        f":func:`max_pool{nd}d` returns them). ``output_size``\n    (optionally with N and "
        "C first) defaults to ``(L - 1)*stride - 2*padding + kernel_size`` and\n    must lie "
        "strictly between that minus and plus ``stride``.\n")
    return max_unpool_nd


max_unpool1d, max_unpool2d, max_unpool3d = (
    _max_unpool_nd(1), _max_unpool_nd(2), _max_unpool_nd(3))


@_torch_keywords
def global_avg_pool(x, backend=None, *, out=None, data_format="channels_first"):
    """Mean over every spatial dim of ``(N, C, *spatial)`` (``(N, *spatial, C)`` channels
    last), kept as size 1."""
    ndim = len(x.shape) if is_device_array(x) else np.ndim(x)
    if ndim < 3 or ndim > 5:
        raise ShapeError(f"global_avg_pool: expected input (N, C, *spatial) with 1 to 3 "
                         f"spatial dims, got input of size {list(np.shape(x))}")
    return _call("adaptive_avg_pool", "global_avg_pool", ndim - 2, (x,),
                 dict(output_size=1, data_format=data_format), backend, out)
