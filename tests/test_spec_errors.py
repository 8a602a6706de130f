"""Argument normalisation and every error path of docs/api.md §1-§4, messages included."""

import numpy as np
import pytest

import convbackends as cb
from convbackends.spec import conv_spec, output_length, pool_spec


def test_error_classes_subclass_builtins():
    assert issubclass(cb.ShapeError, ValueError) and issubclass(cb.ShapeError, cb.ConvError)
    assert issubclass(cb.UnsupportedError, NotImplementedError)
    assert issubclass(cb.BackendUnavailableError, RuntimeError)
    assert issubclass(cb.UnknownBackendError, KeyError)
    assert issubclass(cb.DTypeError, TypeError)


@pytest.mark.parametrize("L, k, s, p, out", [
    (28, 3, 1, 0, 26), (28, 3, 1, 1, 28), (28, 3, 2, 1, 14), (28, 5, 1, 1, 26),
    (28, 5, 2, 2, 14), (32, 5, 1, 2, 32), (227, 11, 4, 0, 55)])
def test_lecture_output_sizes(L, k, s, p, out):
    assert output_length(L, k, s, p, p, 1) == out
    spec, _ = conv_spec("conv2d", (1, 3, L, L), (10, 3, k, k), stride=s, padding=p)
    assert spec.output_shape == (1, 10, out, out)


def test_lecture_macs_example():
    spec, _ = conv_spec("conv2d", (1, 100, 68, 68), (100, 100, 5, 5))
    assert spec.output_spatial == (64, 64) and spec.macs == 1_024_000_000
    assert cb.explain((1, 100, 68, 68), (100, 100, 5, 5)).macs == 1_024_000_000


def test_alexnet_first_layer_geometry():
    e = cb.explain((1, 3, 227, 227), (96, 3, 11, 11), stride=4)
    assert e.output_shape == (1, 96, 55, 55)


@pytest.mark.parametrize("padding, pairs", [
    (2, ((2, 2), (2, 2))),
    ((1, 3), ((1, 1), (3, 3))),
    ([(0, 1), (2, 3)], ((0, 1), (2, 3))),
    (((1, 2), 3), ((1, 2), (3, 3))),
    ("valid", ((0, 0), (0, 0))),
    ("same", ((1, 1), (2, 3))),      # kernel (3, 4) dilation (1, 2): totals 2 and 6 -> 3,3
])
def test_padding_forms(padding, pairs):
    spec, _ = conv_spec("conv2d", (1, 2, 9, 9), (3, 2, 3, 3) if padding != "same"
                        else (3, 2, 3, 4), padding=padding,
                        dilation=(1, 1) if padding != "same" else (1, 1))
    if padding == "same":
        assert spec.padding == ((1, 1), (1, 2))
        assert spec.output_spatial == (9, 9)
    else:
        assert spec.padding == pairs


def test_same_padding_with_dilation_puts_extra_after():
    spec, _ = conv_spec("conv1d", (1, 1, 10), (1, 1, 4), padding="same", dilation=3)
    assert spec.padding == ((4, 5),) and spec.output_spatial == (10,)


def test_spec_is_immutable_and_hashable():
    spec, _ = conv_spec("conv2d", (2, 3, 8, 8), (4, 3, 3, 3), padding=1)
    with pytest.raises(AttributeError):
        spec.groups = 2
    assert hash(spec) == hash(conv_spec("conv2d", (2, 3, 8, 8), (4, 3, 3, 3), padding=1)[0])


def _x(*shape, dtype=np.float32):
    return np.random.default_rng(0).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("call, exc, message", [
    (lambda: cb.conv2d(_x(1, 1, 28, 28), _x(16, 3, 5, 5)), cb.ShapeError,
     "Given groups=1, weight of size [16, 3, 5, 5], expected input[1, 1, 28, 28] to have 3 "
     "channels, but got 1 channels instead"),
    (lambda: cb.conv2d(_x(1, 3, 4, 4), _x(2, 3, 5, 5)), cb.ShapeError,
     "Calculated padded input size per channel: (4 x 4). Kernel size: (5 x 5). Kernel size "
     "can't be greater than actual input size"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), stride=0), cb.ShapeError,
     "non-positive stride is not supported"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), padding=-1), cb.ShapeError,
     "negative padding is not supported"),
    (lambda: cb.conv2d(_x(1, 4, 8, 8), _x(3, 2, 3, 3), groups=2), cb.ShapeError,
     "Given groups=2, expected weight to be divisible by 2 at dimension 0, but got weight of "
     "size [3, 2, 3, 3] instead"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), stride=2, padding="same"),
     cb.ShapeError, "padding='same' is not supported for strided convolutions"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), padding="full"), cb.ShapeError,
     "Invalid padding string 'full'"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), dilation=0), cb.ShapeError,
     "dilation should be greater than zero"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), groups=0), cb.ShapeError,
     "non-positive groups is not supported"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), stride=(1, 2, 3)), cb.ShapeError,
     "stride must be an int or 2 ints"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), padding=[(1, 2, 3), 1]), cb.ShapeError,
     "padding pairs must be (before, after)"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), _x(3)), cb.ShapeError,
     "expected bias to be 1-dimensional with 2 elements, but got bias of size [3] instead"),
    (lambda: cb.conv2d(_x(3, 8), _x(2, 3, 3, 3)), cb.ShapeError,
     "Expected 3D (unbatched) or 4D (batched) input to conv2d, but got input of size: [3, 8]"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3)), cb.ShapeError,
     "conv2d: expected a 4-D weight"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), padding=1, padding_mode="mirror"),
     cb.ShapeError, "padding_mode must be one of ['zeros', 'reflect', 'replicate', 'circular']"),
    (lambda: cb.conv2d(_x(1, 3, 3, 3), _x(2, 3, 3, 3), padding=3, padding_mode="reflect"),
     cb.ShapeError, "Padding size should be less than the corresponding input dimension"),
    (lambda: cb.conv_transpose2d(_x(1, 2, 5, 5), _x(2, 3, 3, 3), stride=2, output_padding=2),
     cb.ShapeError, "output padding must be smaller than either stride or dilation, but got "
     "output_padding_height: 2 output_padding_width: 2 stride_height: 2 stride_width: 2"),
    (lambda: cb.conv_transpose2d(_x(1, 3, 5, 5), _x(2, 3, 3, 3)), cb.ShapeError,
     "Given transposed=1, weight of size [2, 3, 3, 3], expected input[1, 3, 5, 5] to have 2 "
     "channels, but got 3 channels instead"),
    (lambda: cb.conv_transpose2d(_x(1, 2, 5, 5), _x(2, 3, 3, 3), padding="same"),
     cb.ShapeError, "padding='same' is not supported for transposed convolution"),
    (lambda: cb.conv_transpose1d(_x(1, 2, 2), _x(2, 3, 3), padding=3), cb.ShapeError,
     "Output size is too small"),
    (lambda: cb.max_pool2d(_x(1, 3, 4, 4), 5), cb.ShapeError, "Output size is too small"),
    (lambda: cb.max_pool2d(_x(1, 3, 4, 4), 2, stride=0), cb.ShapeError,
     "stride should be greater than zero"),
    (lambda: cb.avg_pool2d(_x(4, 4), 2), cb.ShapeError, "Expected 3D or 4D input"),
    (lambda: cb.adaptive_avg_pool2d(_x(1, 3, 4, 4), 0), cb.ShapeError,
     "output_size must be positive"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8).astype(np.int64), _x(2, 3, 3, 3)), cb.DTypeError,
     "input dtype int64 and weight dtype float32"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3, dtype=np.float64)), cb.DTypeError,
     "input dtype float32 and weight dtype float64"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8) + 1j, _x(2, 3, 3, 3)), cb.DTypeError,
     "input dtype complex64 and weight dtype float32"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8) > 0, _x(2, 3, 3, 3)), cb.DTypeError,
     "input dtype bool and weight dtype float32"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), _x(2, dtype=np.float64)),
     cb.DTypeError, "bias dtype float64 differs"),
    (lambda: cb.max_pool1d(_x(1, 3, 8).astype(np.int32), 2), cb.DTypeError,
     "input dtype int32 is not supported"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), out=np.empty((1, 2, 5, 5), np.float32)),
     cb.ShapeError, "out has shape [1, 2, 5, 5], expected [1, 2, 6, 6]"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3), out=np.empty((1, 2, 6, 6))),
     cb.DTypeError, "out has dtype float64, expected float32"),
    (lambda: cb.conv2d(_x(1, 3, 8, 8), _x(2, 3, 3, 3),
                       out=np.empty((1, 2, 6, 6), np.float32, order="F")),
     cb.ShapeError, "out must be a writeable, C-contiguous array"),
])
def test_error_messages(call, exc, message):
    with pytest.raises(exc) as info:
        call()
    assert message in str(info.value)


@pytest.mark.parametrize("backend", ["naive", "im2col", "auto"])
def test_validation_precedes_backend_choice(backend):
    """An inconsistent call raises ShapeError whatever backend is named."""
    with pytest.raises(cb.ShapeError, match="to have 3 channels"):
        cb.conv2d(_x(1, 1, 8, 8), _x(2, 3, 3, 3), backend=backend)


def test_pool_spec_defaults_and_same():
    spec, batched = pool_spec("max_pool2d", "max_pool", (2, 3, 7, 9), 2, 3)
    assert batched and spec.stride == (3, 3) and spec.output_spatial == (2, 3)
    spec, _ = pool_spec("max_pool2d", "max_pool", (2, 3, 7, 9), 2, 3, stride=2, padding="same")
    assert spec.output_spatial == (4, 5) and spec.padding == ((1, 1), (1, 1))
    spec, _ = pool_spec("avg_pool1d", "avg_pool", (1, 1, 10), 1, 3, 3, 1, ceil_mode=True)
    assert spec.output_spatial == (4,)
