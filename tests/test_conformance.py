"""Every available backend computes the same function: the float64 oracle's and PyTorch's.

Each backend is held to its own ``supports()`` claims: what it accepts must match the oracle
(the tolerances of docs/api.md §1.7), what it declines must raise :class:`cb.UnsupportedError` naming it.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import convbackends as cb
from conftest import BACKENDS
from convbackends.tools.measure import relative_error, tolerance
from reference.calls import assert_close, run_oracle
from reference.golden import load_cases

# (func, x shape, weight shape, kwargs); channels and sizes odd where it matters.
CONV_CASES = [
    ("conv1d", (2, 3, 17), (4, 3, 3), {}),
    ("conv1d", (2, 3, 17), (4, 3, 3), {"stride": 2, "padding": 1}),
    ("conv1d", (1, 3, 16), (6, 1, 4), {"groups": 3, "padding": "same", "dilation": 2}),
    ("conv1d", (2, 4, 15), (2, 4, 5), {"padding": [(3, 1)], "stride": 3}),
    ("conv1d", (2, 3, 13), (5, 3, 3), {"padding": 2, "padding_mode": "reflect"}),
    ("conv1d", (1, 2, 9), (3, 2, 9), {}),
    ("conv2d", (2, 3, 9, 11), (5, 3, 3, 3), {}),
    ("conv2d", (2, 3, 9, 11), (5, 3, 3, 3), {"padding": 1}),
    ("conv2d", (2, 4, 10, 9), (6, 2, 3, 3), {"groups": 2, "stride": 2, "padding": 1}),
    ("conv2d", (2, 5, 8, 9), (5, 1, 3, 3), {"groups": 5, "padding": 1}),
    ("conv2d", (1, 4, 11, 12), (8, 1, 3, 3), {"groups": 4, "stride": (2, 1)}),
    ("conv2d", (2, 3, 12, 10), (4, 3, 1, 1), {}),
    ("conv2d", (2, 3, 12, 10), (4, 3, 1, 1), {"stride": 2}),
    ("conv2d", (2, 3, 9, 9), (4, 3, 5, 5), {"padding": 2}),
    ("conv2d", (1, 2, 10, 11), (3, 2, 2, 3), {"padding": "same"}),
    ("conv2d", (1, 2, 10, 11), (3, 2, 3, 3), {"padding": "same", "dilation": (2, 3)}),
    ("conv2d", (2, 3, 13, 11), (4, 3, 3, 3), {"dilation": 2, "padding": (2, 1)}),
    ("conv2d", (2, 3, 13, 11), (4, 3, 3, 2), {"stride": (3, 2), "padding": [(2, 0), (1, 3)]}),
    ("conv2d", (1, 3, 9, 10), (2, 3, 3, 3), {"padding": "valid"}),
    ("conv2d", (1, 2, 7, 8), (3, 2, 3, 3), {"padding": 1, "padding_mode": "circular"}),
    ("conv2d", (1, 2, 7, 8), (3, 2, 3, 3), {"padding": (2, 1), "padding_mode": "replicate"}),
    ("conv2d", (1, 2, 7, 8), (3, 2, 3, 3), {"padding": "same", "padding_mode": "reflect"}),
    ("conv2d", (1, 1, 21, 19), (2, 1, 7, 7), {"padding": 3}),
    ("conv2d", (2, 3, 15, 15), (4, 3, 7, 7), {"stride": 2, "padding": 3}),
    ("conv2d", (1, 3, 23, 23), (4, 3, 11, 11), {"stride": 4}),
    ("conv2d", (2, 6, 9, 9), (6, 3, 3, 3), {"groups": 2, "padding": 1, "stride": 1}),
    ("conv2d", (3, 8, 7, 7), (16, 8, 3, 3), {"padding": 1}),
    ("conv3d", (1, 2, 5, 6, 7), (3, 2, 3, 3, 3), {}),
    ("conv3d", (2, 2, 6, 7, 5), (4, 2, 3, 3, 3), {"padding": 1}),
    ("conv3d", (1, 4, 7, 6, 8), (4, 2, 2, 3, 2), {"groups": 2, "stride": (2, 1, 2)}),
    ("conv3d", (1, 3, 7, 7, 7), (2, 3, 3, 3, 3), {"dilation": 2, "padding": [(1, 2), (2, 0), (1, 1)]}),
    ("conv3d", (1, 2, 5, 5, 6), (2, 2, 3, 3, 3), {"padding": "same"}),
]

TRANSPOSE_CASES = [
    ("conv_transpose1d", (2, 3, 9), (3, 4, 3), {}),
    ("conv_transpose1d", (2, 4, 8), (4, 3, 4), {"stride": 3, "padding": 1, "output_padding": 2}),
    ("conv_transpose1d", (1, 4, 7), (4, 2, 3), {"groups": 2, "dilation": 2, "padding": [(2, 1)]}),
    ("conv_transpose2d", (2, 3, 5, 6), (3, 4, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    ("conv_transpose2d", (1, 4, 6, 5), (4, 3, 2, 2), {"stride": 2}),
    ("conv_transpose2d", (2, 6, 5, 5), (6, 2, 3, 3), {"groups": 3, "stride": (2, 1), "dilation": (1, 2)}),
    ("conv_transpose2d", (1, 2, 4, 7), (2, 3, 3, 4), {"padding": [(1, 0), (2, 1)], "stride": 3, "output_padding": (2, 0)}),
    ("conv_transpose2d", (2, 3, 7, 7), (3, 5, 1, 1), {}),
    ("conv_transpose3d", (1, 2, 3, 4, 5), (2, 3, 3, 3, 2), {"stride": 2, "padding": 1}),
    ("conv_transpose3d", (1, 4, 3, 3, 3), (4, 1, 2, 2, 2), {"groups": 2, "stride": 2, "output_padding": 1}),
]

POOL_CASES = [
    ("max_pool1d", (2, 3, 17), {"kernel_size": 3}),
    ("max_pool1d", (2, 3, 16), {"kernel_size": 4, "stride": 3, "padding": 2, "ceil_mode": True}),
    ("max_pool1d", (1, 2, 9), {"kernel_size": 2, "stride": 2, "padding": [(3, 0)]}),
    ("max_pool2d", (2, 3, 9, 11), {"kernel_size": 2}),
    ("max_pool2d", (2, 3, 9, 11), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("max_pool2d", (1, 4, 10, 9), {"kernel_size": (3, 2), "stride": (2, 3), "dilation": (2, 1), "ceil_mode": True}),
    ("max_pool2d", (1, 2, 7, 7), {"kernel_size": 3, "stride": 2, "padding": "same"}),
    ("max_pool3d", (1, 2, 5, 6, 7), {"kernel_size": 2, "stride": 2, "ceil_mode": True}),
    ("max_pool3d", (1, 2, 5, 6, 7), {"kernel_size": 3, "stride": (1, 2, 2), "padding": 1}),
    ("avg_pool1d", (2, 3, 17), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("avg_pool1d", (2, 3, 17), {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
    ("avg_pool2d", (2, 3, 9, 11), {"kernel_size": 2}),
    ("avg_pool2d", (2, 3, 9, 11), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("avg_pool2d", (1, 2, 10, 10), {"kernel_size": 3, "stride": 3, "padding": 1, "ceil_mode": True, "count_include_pad": False}),
    ("avg_pool2d", (1, 2, 9, 8), {"kernel_size": 2, "padding": [(1, 0), (0, 1)], "dilation": 2}),
    ("avg_pool3d", (1, 2, 5, 6, 7), {"kernel_size": 3, "stride": 2, "padding": 1}),
    ("adaptive_avg_pool1d", (2, 3, 10), {"output_size": 3}),
    ("adaptive_avg_pool2d", (2, 3, 9, 11), {"output_size": (4, 5)}),
    ("adaptive_avg_pool2d", (1, 2, 7, 7), {"output_size": 1}),
    ("adaptive_avg_pool3d", (1, 2, 5, 6, 7), {"output_size": (2, 3, 4)}),
]

DTYPES = [np.float32, np.float64]


def _call(backend, func, arrays, kwargs):
    f = getattr(cb, func)
    if "weight" in arrays:
        return f(arrays["x"], arrays["weight"], arrays.get("bias"), backend=backend, **kwargs)
    return f(arrays["x"], backend=backend, **kwargs)


def _check(backend, func, arrays, kwargs):
    """Run one case; return True if the backend ran it (and matched), False if it declined."""
    dtype = arrays["x"].dtype
    try:
        y = _call(backend, func, arrays, kwargs)
    except cb.UnsupportedError as e:
        assert repr(backend) in str(e) and "Backends that can:" in str(e)
        return False
    assert y.dtype == dtype
    ref = run_oracle(func, kwargs, arrays)
    assert_close(y, ref, tolerance(backend, dtype))
    return True


def _conv_arrays(rng, x_shape, w_shape, dtype, bias, transposed=False):
    arrays = {"x": rng.standard_normal(x_shape).astype(dtype),
              "weight": rng.standard_normal(w_shape).astype(dtype)}
    if bias:
        groups_out = w_shape[1] if transposed else w_shape[0]
        arrays["bias"] = rng.standard_normal(groups_out).astype(dtype)
    return arrays


def _ran_counter():
    return {b: 0 for b in BACKENDS}


_RAN = {"conv": _ran_counter(), "conv_transpose": _ran_counter(), "pool": _ran_counter()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("func, x_shape, w_shape, kwargs", CONV_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CONV_CASES)])
def test_conv_matches_oracle(backend, dtype, func, x_shape, w_shape, kwargs, rng):
    arrays = _conv_arrays(rng, x_shape, w_shape, dtype, bias=len(kwargs) % 2 == 0)
    if _check(backend, func, arrays, kwargs):
        _RAN["conv"][backend] += 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("func, x_shape, w_shape, kwargs", TRANSPOSE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(TRANSPOSE_CASES)])
def test_conv_transpose_matches_oracle(backend, dtype, func, x_shape, w_shape, kwargs, rng):
    groups = kwargs.get("groups", 1)
    out_ch = w_shape[1] * groups
    arrays = _conv_arrays(rng, x_shape, w_shape, dtype, bias=False)
    arrays["bias"] = rng.standard_normal(out_ch).astype(dtype)
    if _check(backend, func, arrays, kwargs):
        _RAN["conv_transpose"][backend] += 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("func, x_shape, kwargs", POOL_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(POOL_CASES)])
def test_pool_matches_oracle(backend, dtype, func, x_shape, kwargs, rng):
    arrays = {"x": rng.standard_normal(x_shape).astype(dtype)}
    if _check(backend, func, arrays, kwargs):
        _RAN["pool"][backend] += 1


def test_grid_was_exercised():
    """The grid above is not vacuous: every backend ran convolutions, and naive ran it all."""
    if sum(_RAN["conv"].values()) == 0:
        pytest.skip("the conformance grid was deselected in this run")
    assert _RAN["conv"]["naive"] == 2 * len(CONV_CASES)
    assert _RAN["conv_transpose"]["naive"] == 2 * len(TRANSPOSE_CASES)
    assert _RAN["pool"]["naive"] == 2 * len(POOL_CASES)
    for backend in BACKENDS:
        assert _RAN["conv"][backend] > 0, f"{backend} declined every convolution"


GOLDEN = load_cases()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, func, kwargs, arrays", GOLDEN, ids=[c[0] for c in GOLDEN])
def test_golden(backend, name, func, kwargs, arrays):
    """PyTorch's own outputs, through every backend that accepts the call."""
    try:
        y = _call(backend, func, arrays, kwargs)
    except cb.UnsupportedError:
        return
    assert y.shape == arrays["y"].shape
    assert_close(y, arrays["y"].astype(np.float64), tolerance(backend, arrays["x"].dtype))


@st.composite
def conv_geometries(draw):
    nd = draw(st.integers(1, 3))
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    size_max = 9 if nd < 3 else 6
    spatial = tuple(draw(st.integers(1, size_max)) for _ in range(nd))
    if draw(st.booleans()) and nd < 3:
        stride, padding = 1, "same"
    else:
        stride = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        padding = [(draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(nd)]
    padded = [L + (sum(p) if padding != "same" else d * (k - 1))
              for L, p, d, k in zip(spatial, padding if padding != "same" else [(0, 0)] * nd,
                                    dilation, kernel)]
    assume(all(P >= d * (k - 1) + 1 for P, d, k in zip(padded, dilation, kernel)))
    batch = draw(st.integers(1, 2))
    dtype = draw(st.sampled_from(DTYPES))
    bias = draw(st.booleans())
    return (f"conv{nd}d", (batch, c_in) + spatial, (c_out, c_in // groups) + kernel,
            {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups},
            dtype, bias)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(geometry=conv_geometries(), seed=st.integers(0, 2**32 - 1))
def test_random_geometries(geometry, seed):
    """Random geometries (200 per run): every backend that accepts one matches the oracle."""
    func, x_shape, w_shape, kwargs, dtype, bias = geometry
    rng = np.random.default_rng(seed)
    arrays = _conv_arrays(rng, x_shape, w_shape, dtype, bias)
    ref = run_oracle(func, kwargs, arrays)
    # A drawn case can cancel to almost nothing (one tap plus a bias of the opposite sign),
    # where no float32 sum keeps a small error relative to ||ref||: the error is measured
    # against the sum of |terms| there, the scale float rounding errors are bounded by.
    scale = run_oracle(func, kwargs, {k: np.abs(v) for k, v in arrays.items()})
    ill_conditioned = np.linalg.norm(ref) < 0.1 * np.linalg.norm(scale)
    for backend in BACKENDS:
        try:
            y = _call(backend, func, arrays, kwargs)
        except cb.UnsupportedError:
            continue
        err = relative_error(y, ref)
        if ill_conditioned:
            err = np.linalg.norm(np.asarray(y, np.float64) - ref) / np.linalg.norm(scale)
        assert err < tolerance(backend, dtype), (backend, err)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nd, stride, padding, dilation, groups", [
    (1, 2, 1, 1, 1), (2, (2, 3), ((1, 0), (2, 1)), (1, 2), 2), (3, 2, 1, 1, 1)])
def test_conv_transpose_is_adjoint_of_conv(backend, nd, stride, padding, dilation, groups, rng):
    """<conv(x, w), y> == <x, conv_transpose(y, w)> in float64, on each backend."""
    spatial = (9, 8, 7)[:nd]
    x = rng.standard_normal((2, 2 * groups) + spatial)
    w = rng.standard_normal((3 * groups, 2) + (3,) * nd)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    try:
        y_conv = cb.conv(x, w, backend=backend, **kw)
        y = rng.standard_normal(y_conv.shape)
        spec = cb.explain(x.shape, w.shape, dtype="float64", bias=False, **kw).spec
        output_padding = tuple(x.shape[2 + i] - ((y.shape[2 + i] - 1) * spec.stride[i]
                                                 - sum(spec.padding[i])
                                                 + spec.dilation[i] * 2 + 1)
                               for i in range(nd))
        xt = cb.conv_transpose(y, w, stride=stride, padding=padding,
                               output_padding=output_padding, groups=groups,
                               dilation=dilation, backend=backend)
    except cb.UnsupportedError:
        pytest.skip(f"{backend} does not run this transposed geometry")
    lhs, rhs = np.vdot(y_conv, y), np.vdot(x, xt)
    assert abs(lhs - rhs) <= tolerance(backend, np.float64) * np.linalg.norm(x) * np.linalg.norm(y) * 10
