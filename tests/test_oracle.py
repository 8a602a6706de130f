"""The float64 oracle (``reference/oracle.py``) against PyTorch's golden outputs, the lectures'
worked examples, and the adjoint identity of transposed convolution.

Needs only NumPy: the golden cases were computed by PyTorch ahead of time
(``reference/golden/make_golden.py``).
"""

import doctest
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reference import oracle  # noqa: E402
from reference.calls import assert_close, run_oracle  # noqa: E402
from reference.golden import load_cases  # noqa: E402

CASES = load_cases()
# --------------------------------------------------------------------------- golden cases


def test_golden_cases_present():
    assert len(CASES) >= 200
    funcs = {func for _, func, _, _ in CASES}
    expected = {f"{op}{n}d" for op in ("conv", "conv_transpose", "max_pool", "avg_pool") for n in (1, 2, 3)}
    assert expected | {"adaptive_avg_pool2d"} <= funcs
    assert any(a["x"].dtype == np.float32 for *_, a in CASES)
    assert any(np.isneginf(a["y"]).any() for *_, a in CASES)


@pytest.mark.parametrize("name, func, kwargs, arrays", CASES, ids=[c[0] for c in CASES])
def test_golden(name, func, kwargs, arrays):
    y = arrays["y"]
    assert y.dtype == arrays["x"].dtype
    ref = run_oracle(func, kwargs, arrays)
    assert ref.dtype == np.float64
    assert_close(y.astype(np.float64), ref, 1e-5 if y.dtype == np.float32 else 1e-12)


# --------------------------------------------------------------------------- lecture examples


X1 = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]], dtype=float)
X2 = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=float)
K1 = np.array([[0, 1], [2, 3]], dtype=float)
K2 = np.array([[1, 2], [3, 4]], dtype=float)


def test_lecture_cross_correlation():
    y = oracle.conv(X1[None, None], K1[None, None])
    np.testing.assert_array_equal(y, [[[[19, 25], [37, 43]]]])


def test_lecture_two_input_channels():
    x = np.stack([X1, X2])[None]  # (1, 2, 3, 3)
    w = np.stack([K1, K2])[None]  # (1, 2, 2, 2)
    np.testing.assert_array_equal(oracle.conv(x, w), [[[[56, 72], [104, 120]]]])


def test_lecture_max_pool():
    x = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float)
    np.testing.assert_array_equal(oracle.max_pool(x[None, None], 2, 2), [[[[6, 8], [3, 4]]]])


@pytest.mark.parametrize(
    "L, k, stride, pad, out",
    [(28, 3, 1, 0, 26), (28, 3, 1, 1, 28), (28, 3, 2, 1, 14), (28, 5, 1, 1, 26), (28, 5, 2, 2, 14),
     (32, 5, 1, 2, 32), (227, 11, 4, 0, 55)],
)
def test_lecture_output_sizes(L, k, stride, pad, out):
    assert oracle.output_size(L, k, stride, pad, pad, 1) == out


def test_oracle_docstring_examples():
    result = doctest.testmod(oracle, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- adjoint identity


@pytest.mark.parametrize(
    "spatial, k, stride, padding, dilation, groups, c_in, c_out",
    [
        ((9,), (3,), (2,), [(1, 1)], (1,), 1, 2, 3),
        ((10,), (4,), (3,), [(2, 0)], (2,), 2, 4, 2),
        ((7, 8), (3, 3), (1, 1), [(1, 1), (1, 1)], (1, 1), 1, 3, 4),
        ((11, 9), (3, 2), (2, 3), [(1, 2), (0, 1)], (2, 1), 2, 4, 6),
        ((8, 8), (1, 1), (2, 2), [(0, 0), (0, 0)], (1, 1), 1, 2, 2),
        ((9, 10), (3, 3), (2, 2), [(1, 1), (1, 1)], (1, 1), 3, 3, 3),
        ((6, 7, 5), (2, 3, 2), (2, 1, 2), [(1, 0), (1, 1), (0, 2)], (1, 2, 1), 2, 2, 4),
    ],
)
def test_conv_transpose_is_adjoint(spatial, k, stride, padding, dilation, groups, c_in, c_out):
    """<conv(x, w), y> == <x, conv_transpose(y, w)> with output_padding restoring x's size."""
    rng = np.random.default_rng(sum(spatial) + 7 * groups)
    x = rng.standard_normal((2, c_in) + spatial)
    w = rng.standard_normal((c_out, c_in // groups) + k)
    y_shape = oracle.conv(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups).shape
    y = rng.standard_normal(y_shape)
    output_padding = tuple(
        (L + b + a - d * (kk - 1) - 1) % s
        for L, (b, a), d, kk, s in zip(spatial, padding, dilation, k, stride)
    )
    xt = oracle.conv_transpose(y, w, stride=stride, padding=padding, output_padding=output_padding,
                               groups=groups, dilation=dilation)
    assert xt.shape == x.shape
    lhs = np.vdot(oracle.conv(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups), y)
    rhs = np.vdot(x, xt)
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), np.linalg.norm(x) * np.linalg.norm(y))


# --------------------------------------------------------------------------- oracle semantics


def test_max_pool_window_wholly_in_padding_is_neg_inf():
    x = np.arange(5.0)[None, None]
    y = oracle.max_pool(x, 2, 2, padding=[(3, 0)])
    np.testing.assert_array_equal(y[0, 0], [-np.inf, 0.0, 2.0, 4.0])


def test_ceil_mode_last_window_starts_in_input_or_left_padding():
    x = np.arange(8.0)[None, None]
    # k=3, stride 2, total padding 2: floor gives 4 windows, ceil 5. With pads (1, 1) the
    # 5th window starts at 8 - 1 = 7, inside the input: kept. With pads (0, 2) it starts at
    # 8, in the right padding: dropped.
    assert oracle.max_pool(x, 3, 2, padding=[(1, 1)], ceil_mode=False).shape[-1] == 4
    np.testing.assert_array_equal(oracle.max_pool(x, 3, 2, padding=[(1, 1)], ceil_mode=True)[0, 0], [1, 3, 5, 7, 7])
    assert oracle.max_pool(x, 3, 2, padding=[(0, 2)], ceil_mode=True).shape[-1] == 4


def test_avg_pool_divisors():
    x = np.ones((1, 1, 5))
    # pad 1, k 3, stride 2, ceil: windows start at -1, 1, 3; the last reaches 5 (padding)
    y_inc = oracle.avg_pool(x, 3, 2, 1, ceil_mode=True, count_include_pad=True)
    y_exc = oracle.avg_pool(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(y_inc[0, 0], [2 / 3, 1, 2 / 3])
    np.testing.assert_allclose(y_exc[0, 0], [1, 1, 1])
    # dilation counts taps, not span: k=2, d=3, counted over [-1, 6): taps (-1, 2), (1, 4),
    # (3, 6), the last one past the right padding (ceil_mode) and not counted
    y_dil = oracle.avg_pool(np.arange(5.0)[None, None], 2, 2, 1, ceil_mode=True, count_include_pad=True,
                            dilation=3)
    np.testing.assert_allclose(y_dil[0, 0], [2 / 2, 5 / 2, 3 / 1])


def test_adaptive_avg_pool_windows():
    x = np.arange(5.0)[None, None, None]  # (1, 1, 1, 5)
    # out 3 over 5: [0, 2), [1, 4), [3, 5)
    np.testing.assert_allclose(oracle.adaptive_avg_pool(x, (1, 3))[0, 0, 0], [0.5, 2.0, 3.5])


def test_oracle_does_not_modify_inputs_and_accepts_float32():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 6, 6)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    x0, w0 = x.copy(), w.copy()
    y = oracle.conv(x, w, padding=1)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)


# --------------------------------------------------------------------------- max pooling's indices


def test_max_pool_with_indices_rules():
    nan, inf = np.nan, np.inf
    # windows of 3: ties (first wins), two NaNs (last wins), a number after -inf, +inf ties,
    # all -inf (the first tap)
    x = np.array([1, 3, 3, nan, 2, nan, 5, -inf, -inf, -inf, inf, inf, -inf, -inf, -inf])[None, None]
    values, indices = oracle.max_pool_with_indices(x, 3)
    np.testing.assert_array_equal(values[0, 0], [3, nan, 5, inf, -inf])  # PyTorch 2.13.0
    np.testing.assert_array_equal(indices[0, 0], [1, 5, 6, 10, 12])
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(oracle.max_pool(x, 3), values)


def test_max_pool_with_indices_padding_and_2d_flat_index():
    x = np.array([-np.inf, 2.0, -np.inf])[None, None]
    values, indices = oracle.max_pool_with_indices(x, 2, 2, padding=[(4, 1)])
    np.testing.assert_array_equal(values[0, 0], [-np.inf, -np.inf, 2.0, -np.inf])
    np.testing.assert_array_equal(indices[0, 0], [-1, -1, 1, 2])  # -1: wholly in padding
    x = np.zeros((1, 1, 3, 4))
    x[0, 0, 2, 1] = 7.0
    values, indices = oracle.max_pool_with_indices(x, (2, 2), 1, dilation=(1, 2), ceil_mode=True)
    assert values.shape == (1, 1, 2, 2)
    # window (oh, ow) covers rows oh, oh + 1 and columns ow, ow + 2; only (1, 1) holds the 7
    # (at row 2, column 1: 2*4 + 1), the others are zeros and give their first tap
    np.testing.assert_array_equal(indices[0, 0], [[0, 1], [4, 9]])
    np.testing.assert_array_equal(values[0, 0], [[0, 0], [0, 7]])


def test_adaptive_max_pool_windows_and_indices():
    x = np.array([3.0, 1.0, 3.0, 2.0, 4.0, 4.0, 0.0])[None, None]
    values, indices = oracle.adaptive_max_pool(x, 3)  # [0, 3), [2, 5), [4, 7)
    np.testing.assert_array_equal(values[0, 0], [3, 4, 4])
    np.testing.assert_array_equal(indices[0, 0], [0, 4, 4])
    values, indices = oracle.adaptive_max_pool(x[..., :3], 5)  # upsampling repeats taps
    np.testing.assert_array_equal(indices[0, 0], [0, 0, 1, 2, 2])
    x2 = np.arange(12.0).reshape(1, 1, 3, 4)
    values, indices = oracle.adaptive_max_pool(x2, (2, None))
    np.testing.assert_array_equal(indices[0, 0], [[4, 5, 6, 7], [8, 9, 10, 11]])


def test_max_unpool_scatter():
    x = np.array([[[5.0, 7.0, 6.0]]])
    y = oracle.max_unpool(x, np.array([[[1, 1, 4]]]), 2)  # the last write stays
    np.testing.assert_array_equal(y[0, 0], [0, 7, 0, 0, 6, 0])
    y = oracle.max_unpool(x, np.array([[[0, 2, 7]]]), 2, output_size=(1, 1, 8))
    np.testing.assert_array_equal(y[0, 0], [5, 0, 7, 0, 0, 0, 0, 6])
    assert oracle.max_unpool(x, np.zeros((1, 1, 3), int), 3, 2, padding=1).shape == (1, 1, 5)
    message = r"^Found an invalid max index: 6 \(output volumes are of size 6x1\)$"
    with pytest.raises(ValueError, match=message):
        oracle.max_unpool(x, np.array([[[-1, 2, 6]]]), 2)


def test_max_unpool_inverts_max_pool_positions():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 6, 8))
    values, indices = oracle.max_pool_with_indices(x, 2)
    y = oracle.max_unpool(values, indices, 2)
    assert y.shape == x.shape
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept])
    assert kept.sum() == values.size


def test_avg_pool_divisor_override():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    # PyTorch 2.13.0: F.avg_pool2d(x, 2, divisor_override=-2), and one with padding and ceil
    y = oracle.avg_pool(x, 2, divisor_override=-2)
    np.testing.assert_array_equal(y[0, 0], [[-5, -9], [-21, -25]])
    y = oracle.avg_pool(x, 3, 2, 1, ceil_mode=True, count_include_pad=False, divisor_override=3)
    np.testing.assert_allclose(y[0, 0], [[10 / 3, 8, 10 / 3], [17, 30, 11], [25 / 3, 14, 5]], rtol=1e-15)
    with pytest.raises(ValueError):
        oracle.avg_pool(x, 2, divisor_override=0)
