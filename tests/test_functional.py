"""The functional API's manners: unbatched input, layouts, out=, inputs untouched, lectures."""

import numpy as np
import pytest

import convbackends as cb
from convbackends.tools.measure import tolerance
from conftest import BACKENDS
from reference import oracle

X1 = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]], dtype=float)
X2 = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=float)
K1 = np.array([[0, 1], [2, 3]], dtype=float)
K2 = np.array([[1, 2], [3, 4]], dtype=float)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lecture_examples(backend):
    y = cb.conv2d(X1[None, None], K1[None, None], backend=backend)
    np.testing.assert_allclose(y, [[[[19, 25], [37, 43]]]], rtol=1e-9)
    y = cb.conv2d(np.stack([X1, X2])[None], np.stack([K1, K2])[None], backend=backend)
    np.testing.assert_allclose(y, [[[[56, 72], [104, 120]]]], rtol=1e-9)


def test_lecture_max_pool():
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float)
    np.testing.assert_array_equal(cb.max_pool2d(x[None, None], 2, 2)[0, 0], [[6, 8], [3, 4]])


def test_lecture_shapes():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 28, 28)).astype(np.float32)
    w = rng.standard_normal((3, 1, 3, 3)).astype(np.float32)
    assert cb.conv2d(x, w).shape == (1, 3, 26, 26)
    assert cb.conv2d(x, w, padding=1).shape == (1, 3, 28, 28)
    assert cb.conv2d(x, w, stride=2, padding=1).shape == (1, 3, 14, 14)
    x = rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
    w = rng.standard_normal((10, 3, 5, 5)).astype(np.float32)
    assert cb.conv2d(x, w, padding=2).shape == (1, 10, 32, 32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unbatched_input_returns_unbatched(backend, rng):
    x = rng.standard_normal((3, 10, 9))
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    y = cb.conv2d(x, w, b, padding=1, backend=backend)
    assert y.shape == (4, 10, 9)
    np.testing.assert_allclose(y, oracle.conv(x[None], w, b, padding=1)[0], rtol=1e-9)
    assert cb.max_pool2d(x, 2).shape == (3, 5, 4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_layouts_and_inputs_untouched(backend, rng):
    """Non-contiguous and Fortran-ordered inputs work, and nothing is modified in place."""
    base = rng.standard_normal((2, 6, 13, 12)).astype(np.float32)
    x = base[:, ::2, 1:, ::-1]                       # strided, offset, negative stride
    w = np.asfortranarray(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    b = rng.standard_normal(8).astype(np.float32)[::2]
    copies = [a.copy() for a in (base, w, b)]
    y = cb.conv2d(x, w, b, padding=(1, 2), backend=backend)
    ref = oracle.conv(x, w, b, padding=(1, 2))
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < tolerance(backend, np.float32)
    for a, c in zip((base, w, b), copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("backend", BACKENDS)
def test_out_receives_result(backend, rng):
    x = rng.standard_normal((2, 3, 9, 9))
    w = rng.standard_normal((5, 3, 3, 3))
    out = np.full((2, 5, 7, 7), np.nan)
    y = cb.conv2d(x, w, out=out, backend=backend)
    assert y is out
    np.testing.assert_allclose(out, oracle.conv(x, w), rtol=1e-9)
    # unbatched out
    out1 = np.empty((5, 7, 7))
    assert cb.conv2d(x[0], w, out=out1, backend=backend) is out1
    np.testing.assert_allclose(out1, out[0], rtol=1e-9)


def test_out_for_pooling(rng):
    x = rng.standard_normal((2, 3, 8, 8))
    out = np.empty((2, 3, 4, 4))
    assert cb.avg_pool2d(x, 2, out=out) is out
    np.testing.assert_allclose(out, oracle.avg_pool(x, 2), rtol=1e-12)


def test_float32_stays_float32_and_lists_accepted():
    y = cb.conv1d([[[1.0, 2.0, 3.0, 4.0]]], [[[1.0, -1.0]]])
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [[[-1.0, -1.0, -1.0]]])
    x = np.ones((1, 2, 5), np.float32)
    assert cb.conv1d(x, np.ones((1, 2, 3), np.float32)).dtype == np.float32


def test_generic_conv_takes_dims_from_weight(rng):
    for nd in (1, 2, 3):
        x = rng.standard_normal((1, 2) + (6,) * nd)
        w = rng.standard_normal((3, 2) + (3,) * nd)
        np.testing.assert_allclose(cb.conv(x, w, padding=1), oracle.conv(x, w, padding=1),
                                   rtol=1e-10)


def test_global_avg_pool(rng):
    x = rng.standard_normal((2, 3, 5, 7))
    y = cb.global_avg_pool(x)
    assert y.shape == (2, 3, 1, 1)
    np.testing.assert_allclose(y[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-12)
    x3 = rng.standard_normal((1, 2, 3, 4, 5))
    np.testing.assert_allclose(cb.global_avg_pool(x3)[:, :, 0, 0, 0], x3.mean(axis=(2, 3, 4)),
                               rtol=1e-12)


# PyTorch 2.13's torch.nn.functional signatures (its docstrings; the builtins have no
# introspectable signature): our parameters must start with these, in this order.
TORCH_SIGNATURES = {
    "conv1d": "input weight bias stride padding dilation groups",
    "conv2d": "input weight bias stride padding dilation groups",
    "conv3d": "input weight bias stride padding dilation groups",
    "conv_transpose1d": "input weight bias stride padding output_padding groups dilation",
    "conv_transpose2d": "input weight bias stride padding output_padding groups dilation",
    "conv_transpose3d": "input weight bias stride padding output_padding groups dilation",
    "max_pool1d": "input kernel_size stride padding dilation ceil_mode return_indices",
    "max_pool2d": "input kernel_size stride padding dilation ceil_mode return_indices",
    "max_pool3d": "input kernel_size stride padding dilation ceil_mode return_indices",
    "avg_pool1d": "input kernel_size stride padding ceil_mode count_include_pad",
    "avg_pool2d": "input kernel_size stride padding ceil_mode count_include_pad divisor_override",
    "avg_pool3d": "input kernel_size stride padding ceil_mode count_include_pad divisor_override",
    "adaptive_avg_pool1d": "input output_size",
    "adaptive_avg_pool2d": "input output_size",
    "adaptive_avg_pool3d": "input output_size",
    "adaptive_max_pool1d": "input output_size return_indices",
    "adaptive_max_pool2d": "input output_size return_indices",
    "adaptive_max_pool3d": "input output_size return_indices",
    "max_unpool1d": "input indices kernel_size stride padding output_size",
    "max_unpool2d": "input indices kernel_size stride padding output_size",
    "max_unpool3d": "input indices kernel_size stride padding output_size",
}


@pytest.mark.parametrize("name", sorted(TORCH_SIGNATURES))
def test_positional_order_is_pytorchs(name):
    import inspect
    ours = [p.name for p in inspect.signature(getattr(cb, name)).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD]
    torch_names = TORCH_SIGNATURES[name].split()
    assert ours[1:len(torch_names)] == torch_names[1:]


def test_a_call_copied_from_torch_runs_unchanged():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 8, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    y = cb.conv2d(input=x, weight=w, bias=None, stride=1, padding=1, dilation=1, groups=1)
    np.testing.assert_allclose(y, cb.conv2d(x, w, None, 1, 1), rtol=1e-12)
    a = cb.avg_pool2d(x, 2, None, 0, False, True, None)
    np.testing.assert_allclose(a, cb.avg_pool2d(x, 2), rtol=1e-12)
    d = cb.avg_pool2d(input=x, kernel_size=2, divisor_override=2)
    np.testing.assert_allclose(d, 2 * a, rtol=1e-12)
    m = cb.max_pool2d(x, 2, 2, 0, 1, False, False)
    np.testing.assert_array_equal(m, cb.max_pool2d(x, 2))
    with pytest.raises(TypeError, match="multiple values"):
        cb.conv2d(x, input=x, weight=w)
