"""The functional API: arguments -> spec -> dispatch -> backend op.

Every function validates its arguments into a :class:`~convbackends.spec.ConvSpec` or
:class:`~convbackends.spec.PoolSpec` before any backend is chosen, applies a non-zero
``padding_mode`` by padding once in front, and hands the backend a batched array. Inputs are
never modified.

Output size per spatial dim (convolution and pooling)::

    floor((L + pad_before + pad_after - dilation*(kernel - 1) - 1) / stride) + 1

and for transposed convolution::

    (L - 1)*stride - pad_before - pad_after + dilation*(kernel - 1) + output_padding + 1
"""

import numpy as np

from . import dispatch
from .errors import DTypeError, ShapeError, UnsupportedError
from .spec import (PADDING_MODES, adaptive_pool_spec, check_dtypes, conv_spec, pool_spec)

__all__ = ["conv", "conv1d", "conv2d", "conv3d", "conv_transpose", "conv_transpose1d",
           "conv_transpose2d", "conv_transpose3d", "max_pool1d", "max_pool2d", "max_pool3d",
           "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
           "adaptive_avg_pool2d", "adaptive_avg_pool3d", "global_avg_pool"]

_NP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def is_device_array(a):
    """True for GPU arrays that are not NumPy arrays: anything with
    ``__cuda_array_interface__`` (CuPy, PyTorch, Numba) and Numba's simulated device arrays
    (``__cuda_ndarray__``, under ``NUMBA_ENABLE_CUDASIM=1``)."""
    return not isinstance(a, np.ndarray) and (
        hasattr(a, "__cuda_array_interface__") or bool(getattr(a, "__cuda_ndarray__", False)))


def _as_array(a, device):
    """NumPy arrays for host calls. For device calls, device arrays become Numba views of
    the same memory (CuPy's and PyTorch's dtypes are not NumPy dtypes) and anything else a
    NumPy array."""
    if a is None:
        return a
    if not device or not is_device_array(a):
        return np.asarray(a)
    if getattr(a, "__cuda_ndarray__", False):
        return a
    from numba import cuda  # reached only with device input, which needs numba-cuda
    return cuda.as_cuda_array(a)


def _add_batch_dim(x):
    """``x[None]``; Numba device arrays cannot be indexed with None, so they are reshaped."""
    return x.reshape((1,) + tuple(x.shape)) if is_device_array(x) else x[None]


def padded_spec(spec, padding_mode):
    """The spec a backend sees once a non-zero ``padding_mode`` has padded the input."""
    if padding_mode not in PADDING_MODES:
        raise ShapeError(f"padding_mode must be one of {list(PADDING_MODES)}, but got "
                         f"padding_mode={padding_mode!r}")
    if padding_mode == "zeros" or not spec.has_padding:
        return spec
    if spec.transposed:
        raise ShapeError(f"Only 'zeros' padding mode is supported for transposed "
                         f"convolution, got padding_mode={padding_mode!r}")
    for L, (pb, pa) in zip(spec.input_spatial, spec.padding):
        if padding_mode == "reflect" and max(pb, pa) >= L:
            raise ShapeError(f"Padding size should be less than the corresponding input "
                             f"dimension, but got: padding ({pb}, {pa}) for an input "
                             f"dimension of size {L} (padding_mode='reflect')")
        if padding_mode == "circular" and max(pb, pa) > L:
            raise ShapeError(f"Padding value causes wrapping around more than once: padding "
                             f"({pb}, {pa}) for an input dimension of size {L} "
                             f"(padding_mode='circular')")
    return spec.replace(input_spatial=spec.padded_spatial, padding=((0, 0),) * spec.ndim)


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


def _run(func, op, spec, batched, args, backend, out, device):
    """Resolve the backend, call its op, and honour ``out`` and unbatched input."""
    full_out = None if out is None else (out if batched else out[None])
    impl, _ = dispatch.resolve(op, spec, backend, device=device)
    if full_out is not None and getattr(impl, "writes_out", False):
        y = getattr(impl, op)(*args, spec, out=full_out)
    else:
        y = getattr(impl, op)(*args, spec)
        if full_out is not None:
            np.copyto(full_out, y)
            y = full_out
    if out is not None:
        return out
    return y if batched else y[0]


def _conv(func, nd, transposed, x, weight, bias, stride, padding, dilation, groups,
          output_padding, padding_mode, backend, out):
    device = is_device_array(x) or is_device_array(weight)
    x, weight, bias = (_as_array(a, device) for a in (x, weight, bias))
    dtype = check_dtypes(func, x, weight, bias)
    if nd is not None and len(weight.shape) != nd + 2:
        layout = "in_channels, out_channels / groups" if transposed else \
            "out_channels, in_channels / groups"
        raise ShapeError(f"{func}: expected a {nd + 2}-D weight ({layout}, *kernel), got "
                         f"weight of size {list(weight.shape)}")
    op = "conv_transpose" if transposed else "conv"
    spec, batched = conv_spec(func, x.shape, weight.shape,
                              None if bias is None else bias.shape, op=op, stride=stride,
                              padding=padding, dilation=dilation, groups=groups,
                              output_padding=output_padding, dtype=dtype)
    inner = padded_spec(spec, padding_mode)
    out_shape = spec.output_shape if batched else spec.output_shape[1:]
    _check_out(func, out, out_shape, dtype)
    if not batched:
        x = _add_batch_dim(x)
    if inner is not spec:
        if device:
            raise UnsupportedError(f"{func}: padding_mode={padding_mode!r} on device arrays "
                                   f"is not supported; pad on the device first")
        pads = [(0, 0), (0, 0)] + [list(p) for p in spec.padding]
        x = np.pad(x, pads, mode=_NP_PAD_MODE[padding_mode])
    return _run(func, op, inner, batched, (x, weight, bias), backend, out, device)


def conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
         padding_mode="zeros", backend=None, *, out=None):
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

    Returns
    -------
    ndarray, shape ``(N, C_out, *out_spatial)`` (unbatched in, unbatched out), the input's
    dtype; a Numba device array for device input on the CUDA backend.
    """
    return _conv("conv", None, False, x, weight, bias, stride, padding, dilation, groups, 0,
                 padding_mode, backend, out)


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", backend=None, *, out=None):
    """1-D convolution, as ``torch.nn.functional.conv1d``; see :func:`conv`."""
    return _conv("conv1d", 1, False, x, weight, bias, stride, padding, dilation, groups, 0,
                 padding_mode, backend, out)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", backend=None, *, out=None):
    """2-D convolution, as ``torch.nn.functional.conv2d``; see :func:`conv`."""
    return _conv("conv2d", 2, False, x, weight, bias, stride, padding, dilation, groups, 0,
                 padding_mode, backend, out)


def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           padding_mode="zeros", backend=None, *, out=None):
    """3-D convolution, as ``torch.nn.functional.conv3d``; see :func:`conv`."""
    return _conv("conv3d", 3, False, x, weight, bias, stride, padding, dilation, groups, 0,
                 padding_mode, backend, out)


def conv_transpose(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                   dilation=1, backend=None, *, out=None):
    """N-D transposed convolution, as ``torch.nn.functional.conv_transpose{1,2,3}d``.

    The adjoint of :func:`conv`: ``weight`` has shape ``(C_in, C_out // groups, *kernel)``;
    ``padding`` (int, per dim, or ``(before, after)`` pairs) removes that many elements from
    each end of the full output; ``output_padding`` adds elements at the end.
    """
    return _conv("conv_transpose", None, True, x, weight, bias, stride, padding, dilation,
                 groups, output_padding, "zeros", backend, out)


def conv_transpose1d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, backend=None, *, out=None):
    """1-D transposed convolution; see :func:`conv_transpose`."""
    return _conv("conv_transpose1d", 1, True, x, weight, bias, stride, padding, dilation,
                 groups, output_padding, "zeros", backend, out)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, backend=None, *, out=None):
    """2-D transposed convolution; see :func:`conv_transpose`."""
    return _conv("conv_transpose2d", 2, True, x, weight, bias, stride, padding, dilation,
                 groups, output_padding, "zeros", backend, out)


def conv_transpose3d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, backend=None, *, out=None):
    """3-D transposed convolution; see :func:`conv_transpose`."""
    return _conv("conv_transpose3d", 3, True, x, weight, bias, stride, padding, dilation,
                 groups, output_padding, "zeros", backend, out)


def _pool(func, op, nd, x, kernel_size, stride, padding, dilation, ceil_mode,
          count_include_pad, backend, out):
    device = is_device_array(x)
    x = _as_array(x, device)
    dtype = check_dtypes(func, x)
    spec, batched = pool_spec(func, op, x.shape, nd, kernel_size, stride, padding, dilation,
                              ceil_mode, count_include_pad, dtype)
    _check_out(func, out, spec.output_shape if batched else spec.output_shape[1:], dtype)
    x = x if batched else _add_batch_dim(x)
    return _run(func, op, spec, batched, (x,), backend, out, device)


def max_pool1d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               backend=None, *, out=None):
    """1-D max pooling, as ``torch.nn.functional.max_pool1d``; see :func:`max_pool2d`."""
    return _pool("max_pool1d", "max_pool", 1, x, kernel_size, stride, padding, dilation,
                 ceil_mode, True, backend, out)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               backend=None, *, out=None):
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    ``stride`` defaults to ``kernel_size``; padding (int, per dim, pairs, "valid", or
    "same" as TensorFlow defines it for pooling: ``ceil(L / stride)`` outputs) is ``-inf``,
    so a window wholly in padding gives ``-inf``. ``ceil_mode`` rounds the output size up,
    but the last window must start inside the input or the leading padding.
    """
    return _pool("max_pool2d", "max_pool", 2, x, kernel_size, stride, padding, dilation,
                 ceil_mode, True, backend, out)


def max_pool3d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               backend=None, *, out=None):
    """3-D max pooling, as ``torch.nn.functional.max_pool3d``; see :func:`max_pool2d`."""
    return _pool("max_pool3d", "max_pool", 3, x, kernel_size, stride, padding, dilation,
                 ceil_mode, True, backend, out)


def avg_pool1d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, dilation=1, backend=None, *, out=None):
    """1-D average pooling, as ``torch.nn.functional.avg_pool1d``; see :func:`avg_pool2d`."""
    return _pool("avg_pool1d", "avg_pool", 1, x, kernel_size, stride, padding, dilation,
                 ceil_mode, count_include_pad, backend, out)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, dilation=1, backend=None, *, out=None):
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    With ``count_include_pad`` the divisor counts padding taps (but not the part of a
    ceil-mode window beyond the padding); without it, only taps inside the input.
    ``dilation`` is an extension beyond PyTorch (ONNX has it).
    """
    return _pool("avg_pool2d", "avg_pool", 2, x, kernel_size, stride, padding, dilation,
                 ceil_mode, count_include_pad, backend, out)


def avg_pool3d(x, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, dilation=1, backend=None, *, out=None):
    """3-D average pooling, as ``torch.nn.functional.avg_pool3d``; see :func:`avg_pool2d`."""
    return _pool("avg_pool3d", "avg_pool", 3, x, kernel_size, stride, padding, dilation,
                 ceil_mode, count_include_pad, backend, out)


def _adaptive(func, nd, x, output_size, backend, out):
    device = is_device_array(x)
    x = _as_array(x, device)
    dtype = check_dtypes(func, x)
    spec, batched = adaptive_pool_spec(func, x.shape, nd, output_size, dtype)
    _check_out(func, out, spec.output_shape if batched else spec.output_shape[1:], dtype)
    x = x if batched else _add_batch_dim(x)
    return _run(func, "adaptive_avg_pool", spec, batched, (x,),
                backend, out, device)


def adaptive_avg_pool1d(x, output_size, backend=None, *, out=None):
    """1-D adaptive average pooling; see :func:`adaptive_avg_pool2d`."""
    return _adaptive("adaptive_avg_pool1d", 1, x, output_size, backend, out)


def adaptive_avg_pool2d(x, output_size, backend=None, *, out=None):
    """2-D adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``.

    Output window ``i`` along a dim of length ``L`` averages ``[floor(i*L/out),
    ceil((i+1)*L/out))``; ``None`` in ``output_size`` keeps that dim's size.
    """
    return _adaptive("adaptive_avg_pool2d", 2, x, output_size, backend, out)


def adaptive_avg_pool3d(x, output_size, backend=None, *, out=None):
    """3-D adaptive average pooling; see :func:`adaptive_avg_pool2d`."""
    return _adaptive("adaptive_avg_pool3d", 3, x, output_size, backend, out)


def global_avg_pool(x, backend=None, *, out=None):
    """Mean over every spatial dim of ``(N, C, *spatial)``, kept as size 1."""
    ndim = len(np.shape(x)) if not is_device_array(x) else len(x.shape)
    if ndim < 3 or ndim > 5:
        raise ShapeError(f"global_avg_pool: expected input (N, C, *spatial) with 1 to 3 "
                         f"spatial dims, got input of size {list(np.shape(x))}")
    return _adaptive("global_avg_pool", ndim - 2, x, 1, backend, out)
