"""Backend-specific tests of ``naive``, the baseline the other backends are measured against.

Beyond the shared conformance grid: every op on odd geometries (prime sizes, asymmetric
padding, kernels wider than the input, ceil-mode windows), unbatched input, float64 results
equal to the oracle's bit for bit on integer data, float64 accumulation for float32 input,
and NaN / ±Inf propagating exactly as the oracle's (as PyTorch's) do.
"""

import numpy as np
import pytest

import convbackends as cb
from convbackends.tools.measure import relative_error, tolerance
from reference.calls import run_oracle

DTYPES = ["float32", "float64"]

# (func, x shape, weight shape or None, kwargs): sizes odd or prime, nothing symmetric.
CASES = [
    ("conv1d", (3, 5, 23), (7, 5, 4), {"stride": 3, "padding": [(2, 5)], "dilation": 2}),
    ("conv1d", (2, 3, 2), (4, 3, 5), {"padding": 4, "dilation": 2}),
    ("conv2d", (2, 6, 13, 11), (9, 2, 3, 5), {"groups": 3, "stride": (2, 1),
                                              "padding": [(0, 3), (2, 1)], "dilation": (1, 2)}),
    ("conv2d", (1, 3, 4, 3), (2, 3, 5, 5), {"padding": 2}),
    ("conv2d", (1, 5, 9, 7), (10, 1, 3, 3), {"groups": 5, "stride": 2, "padding": 1}),
    ("conv3d", (2, 4, 7, 5, 6), (6, 2, 3, 2, 3), {"groups": 2, "stride": (2, 1, 3),
                                                  "padding": [(1, 0), (0, 1), (2, 2)],
                                                  "dilation": (1, 2, 1)}),
    ("conv_transpose1d", (2, 3, 7), (3, 5, 4), {"stride": 3, "padding": [(1, 2)],
                                                "output_padding": 2, "dilation": 2}),
    ("conv_transpose2d", (2, 6, 5, 4), (6, 2, 3, 2), {"groups": 3, "stride": (2, 3),
                                                      "padding": [(0, 1), (2, 0)],
                                                      "output_padding": (1, 2),
                                                      "dilation": (2, 1)}),
    ("conv_transpose3d", (1, 4, 3, 4, 2), (4, 3, 2, 3, 2), {"groups": 2, "stride": 2,
                                                            "padding": 1,
                                                            "output_padding": (1, 0, 1)}),
    ("max_pool1d", (2, 3, 19), None, {"kernel_size": 4, "stride": 3, "padding": [(2, 1)],
                                      "dilation": 2, "ceil_mode": True}),
    ("max_pool2d", (2, 3, 11, 9), None, {"kernel_size": (3, 2), "stride": (2, 3),
                                         "padding": [(1, 1), (1, 0)], "dilation": (2, 1),
                                         "ceil_mode": True}),
    ("max_pool3d", (1, 2, 7, 6, 5), None, {"kernel_size": 3, "stride": 2, "padding": 1,
                                           "ceil_mode": True}),
    ("avg_pool1d", (2, 3, 19), None, {"kernel_size": 4, "stride": 3, "padding": 2,
                                      "ceil_mode": True, "count_include_pad": False}),
    ("avg_pool2d", (2, 3, 11, 9), None, {"kernel_size": (3, 2), "stride": (2, 1),
                                         "padding": [(1, 0), (0, 1)], "dilation": (1, 2),
                                         "ceil_mode": True}),
    ("avg_pool3d", (1, 2, 7, 6, 5), None, {"kernel_size": (3, 2, 3), "stride": 2,
                                           "padding": 1, "count_include_pad": False}),
    ("adaptive_avg_pool1d", (2, 3, 7), None, {"output_size": 5}),
    ("adaptive_avg_pool2d", (2, 3, 9, 11), None, {"output_size": (4, None)}),
    ("adaptive_avg_pool2d", (1, 2, 5, 3), None, {"output_size": (7, 6)}),
    ("adaptive_avg_pool3d", (1, 2, 5, 6, 7), None, {"output_size": (3, 4, 2)}),
]
IDS = [f"{c[0]}-{i}" for i, c in enumerate(CASES)]


def arrays_for(rng, func, x_shape, w_shape, kwargs, dtype, batched=True):
    arrays = {"x": rng.standard_normal(x_shape).astype(dtype)}
    if w_shape is not None:
        arrays["weight"] = rng.standard_normal(w_shape).astype(dtype)
        groups = kwargs.get("groups", 1)
        channels = w_shape[1] * groups if func.startswith("conv_transpose") else w_shape[0]
        arrays["bias"] = rng.standard_normal(channels).astype(dtype)
    if not batched:
        arrays["x"] = arrays["x"][0]
    return arrays


def call(func, arrays, kwargs):
    f = getattr(cb, func)
    if "weight" in arrays:
        return f(arrays["x"], arrays["weight"], arrays["bias"], backend="naive", **kwargs)
    return f(arrays["x"], backend="naive", **kwargs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("func, x_shape, w_shape, kwargs", CASES, ids=IDS)
def test_odd_geometries_match_oracle(func, x_shape, w_shape, kwargs, dtype, rng):
    arrays = arrays_for(rng, func, x_shape, w_shape, kwargs, dtype)
    y = call(func, arrays, kwargs)
    ref = run_oracle(func, kwargs, arrays)
    assert y.shape == ref.shape and y.dtype == dtype
    assert np.isfinite(y).all()
    assert relative_error(y, ref) < tolerance("naive", dtype)


@pytest.mark.parametrize("func, x_shape, w_shape, kwargs", CASES, ids=IDS)
def test_unbatched_input(func, x_shape, w_shape, kwargs, rng):
    batched = arrays_for(rng, func, x_shape, w_shape, kwargs, "float64")
    single = dict(batched, x=batched["x"][0])
    y = call(func, single, kwargs)
    ref = run_oracle(func, kwargs, single)
    assert y.shape == ref.shape == call(func, batched, kwargs).shape[1:]
    assert relative_error(y, ref) < 1e-12
    np.testing.assert_array_equal(y, call(func, batched, kwargs)[0])


@pytest.mark.parametrize("func, x_shape, w_shape, kwargs",
                         [c for c in CASES if not c[0].startswith("adaptive")],
                         ids=[i for i, c in zip(IDS, CASES) if not c[0].startswith("adaptive")])
def test_float64_integer_data_is_exact(func, x_shape, w_shape, kwargs, rng):
    # Small integers: every product and partial sum is exact in float64, whatever the order,
    # so naive and the oracle agree bit for bit (an average divides one exact sum once).
    arrays = {"x": rng.integers(-8, 9, x_shape).astype(np.float64)}
    if w_shape is not None:
        arrays["weight"] = rng.integers(-8, 9, w_shape).astype(np.float64)
        arrays["bias"] = None
    y = call(func, arrays, kwargs)
    ref = run_oracle(func, kwargs, arrays)
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("func, args", [
    ("conv1d", lambda x: (x, np.ones((1, 1, 3), np.float32))),
    ("conv_transpose1d", lambda x: (x.reshape(1, 3, 1), np.ones((3, 1, 1), np.float32))),
    ("avg_pool1d", lambda x: (x, 3)),
    ("adaptive_avg_pool1d", lambda x: (x, 1)),
])
def test_float32_accumulates_in_float64(func, args):
    # 2**24 + 1 + 1: a float32 running sum rounds each +1 away (2**24 + 1 is not a float32);
    # a float64 one gives 2**24 + 2, which float32 holds exactly.
    x = np.array([[[2.0**24, 1.0, 1.0]]], np.float32)
    y = getattr(cb, func)(*args(x), backend="naive")
    assert y.dtype == np.float32
    expected = 2.0**24 + 2 if func.startswith("conv") else np.float32((2.0**24 + 2) / 3)
    assert y.ravel()[0] == expected
    assert np.float32(np.float32(2.0**24) + np.float32(1)) == 2.0**24   # the trap avoided


# --------------------------------------------------------------------------- NaN and Inf


def _poison(rng, shape, dtype):
    """Random data with a few NaN, +Inf and -Inf entries (apart, so patterns stay varied)."""
    x = rng.standard_normal(shape).astype(dtype)
    flat = x.reshape(-1)
    spots = rng.choice(flat.size, 9, replace=False)
    flat[spots[:3]] = np.nan
    flat[spots[3:6]] = np.inf
    flat[spots[6:]] = -np.inf
    return x


def _assert_same_pattern(y, ref, dtype):
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(ref))
    assert relative_error(y, ref) < tolerance("naive", dtype)


NONFINITE_CASES = [c for c in CASES if not c[0].startswith("adaptive")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("func, x_shape, w_shape, kwargs", NONFINITE_CASES,
                         ids=[i for i, c in zip(IDS, CASES) if not c[0].startswith("adaptive")])
def test_nan_inf_patterns_match_oracle(func, x_shape, w_shape, kwargs, dtype, rng):
    arrays = arrays_for(rng, func, x_shape, w_shape, kwargs, dtype)
    arrays["x"] = _poison(rng, x_shape, dtype)
    with np.errstate(invalid="ignore"):
        ref = run_oracle(func, kwargs, arrays)
    y = call(func, arrays, kwargs)
    assert not np.isfinite(ref).all()          # the poison reached the output
    _assert_same_pattern(y, ref, dtype)


def test_max_pool_nan_wins_over_inf():
    x = np.array([[[1.0, np.nan, np.inf, -np.inf, -np.inf, 2.0]]])
    y = cb.max_pool1d(x, 2, stride=1, padding=1, backend="naive")
    # Windows: [pad, 1] [1, nan] [nan, inf] [inf, -inf] [-inf, -inf] [-inf, 2] [2, pad].
    np.testing.assert_array_equal(y[0, 0], [1.0, np.nan, np.nan, np.inf, -np.inf, 2.0, 2.0])
    kwargs = {"kernel_size": 2, "stride": 1, "padding": 1}
    np.testing.assert_array_equal(y, run_oracle("max_pool1d", kwargs, {"x": x}))


def test_avg_pool_window_without_counted_taps_is_nan():
    # Asymmetric padding wider than the kernel, padding not counted: windows wholly in the
    # padding have a zero divisor, NaN in the oracle and here.
    x = np.arange(6.0).reshape(1, 1, 6)
    kwargs = {"kernel_size": 2, "stride": 1, "padding": [(3, 0)], "count_include_pad": False}
    y = cb.avg_pool1d(x, backend="naive", **kwargs)
    ref = run_oracle("avg_pool1d", kwargs, {"x": x})
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(y[0, 0], [np.nan, np.nan, 0.0, 0.5, 1.5, 2.5, 3.5, 4.5])


def _adaptive_by_windows(x, sizes):
    """Adaptive average pooling window by window, from its definition (2-D)."""
    (H, W), (OH, OW) = x.shape[2:], sizes
    y = np.empty(x.shape[:2] + sizes)
    for i in range(OH):
        for j in range(OW):
            rows = slice(i * H // OH, -(-(i + 1) * H // OH))
            cols = slice(j * W // OW, -(-(j + 1) * W // OW))
            y[:, :, i, j] = x[:, :, rows, cols].mean(axis=(2, 3))
    return y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, sizes", [((2, 3, 9, 11), (4, 5)), ((1, 2, 5, 3), (7, 6))])
def test_adaptive_nan_inf_stay_in_their_windows(x_shape, sizes, dtype, rng):
    # The oracle averages with a dense matrix, so an Inf meets the zeros outside its window
    # (Inf * 0 = NaN) and spreads; PyTorch, like naive, sums each window alone.
    x = _poison(rng, x_shape, dtype)
    y = cb.adaptive_avg_pool2d(x, sizes, backend="naive")
    with np.errstate(invalid="ignore"):
        ref = _adaptive_by_windows(x.astype(np.float64), sizes)
    assert not np.isfinite(ref).all() and np.isfinite(ref).any()
    _assert_same_pattern(y, ref, dtype)
