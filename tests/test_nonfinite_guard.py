"""The non-finite guard (``convbackends.ops.nonfinite``) piece by piece, and the exact NaN
and Inf patterns it gives the transform kernels.

- the affected-output masks against a brute-force scan of every window (every tap of every
  output) and of every scatter, over odd geometries, stride, dilation, groups, padding pairs,
  1-D to 3-D, transposed;
- finite calls run the raw kernel untouched (the same bytes as the backend's own method);
- float32 calls whose bound could overflow run in float64, and their results are finite
  where the direct result is (the raw kernels overflow there);
- no RuntimeWarning escapes a call on NaN, Inf or huge values;
- the NaN, +Inf and -Inf patterns of fft, winograd, im2col, numba and naive against the
  float64 oracle's, for the examples of the issue (9 and 36 NaN), transposed convolution and
  pooling; the raw fft and winograd methods do spread them (what the guard is for).
"""

import itertools
import warnings

import numpy as np
import pytest

import convbackends as cb
from convbackends.dispatch import plan_call
from convbackends.backends.winograd import transforms
from convbackends.ops import nonfinite
from convbackends.spec import conv_spec
from reference import oracle

FAST = ("fft", "winograd")
EXACT_KERNELS = ("naive", "im2col", "numba")
CONV_BACKENDS = ("naive", "im2col", "fft", "winograd", "numba", None)
F32_MAX = float(np.finfo(np.float32).max)


def _pattern(a):
    a = np.asarray(a, np.float64)
    return np.isnan(a), np.isposinf(a), np.isneginf(a)


def _same_pattern(y, ref):
    return all(np.array_equal(p, q) for p, q in zip(_pattern(y), _pattern(ref)))


def _oracle(func, *args, **kw):
    with np.errstate(all="ignore"):
        return func(*args, **kw)


def _assert_matches(y, ref, tol):
    """The oracle's non-finite pattern exactly, its finite values within ``tol``."""
    for name, p, q in zip(("NaN", "+Inf", "-Inf"), _pattern(y), _pattern(ref)):
        assert np.array_equal(p, q), (f"{name} at {np.argwhere(p != q)[:5].tolist()}: "
                                      f"{p.sum()} against the oracle's {q.sum()}")
    finite = np.isfinite(ref)
    if finite.any():
        err = np.linalg.norm(y[finite] - ref[finite]) / max(np.linalg.norm(ref[finite]), 1e-300)
        assert err <= tol, err


# --------------------------------------------------------------------------- masks


def _brute_conv(x_bad, w_bad, spec):
    """Every tap of every window: affected if a bad input sits under it (padding is not
    bad) or the channel holds a bad weight anywhere."""
    N, K, nd = spec.batch, spec.out_channels, spec.ndim
    cg, kg = spec.in_channels // spec.groups, K // spec.groups
    out = np.zeros((N, K) + spec.output_spatial, bool)
    for n, k in itertools.product(range(N), range(K)):
        g = k // kg
        for o in np.ndindex(*spec.output_spatial):
            hit = w_bad[k].any()
            for c, r in itertools.product(range(cg), np.ndindex(*spec.kernel)):
                p = [oi * s - pb + ri * d for oi, s, (pb, _), ri, d
                     in zip(o, spec.stride, spec.padding, r, spec.dilation)]
                if all(0 <= pi < L for pi, L in zip(p, spec.input_spatial)) \
                        and x_bad[(n, g * cg + c) + tuple(p)]:
                    hit = True
            out[(n, k) + o] = hit
    return out


def _brute_transpose(x_bad, w_bad, spec):
    """Every real input and tap: the output it scatters onto is affected if either is bad."""
    N, K = spec.batch, spec.out_channels
    cg, kg = spec.in_channels // spec.groups, K // spec.groups
    out = np.zeros((N, K) + spec.output_spatial, bool)
    for n, ci in itertools.product(range(N), range(spec.in_channels)):
        g = ci // cg
        for i in np.ndindex(*spec.input_spatial):
            for kk, r in itertools.product(range(kg), np.ndindex(*spec.kernel)):
                o = tuple(ii * s + ri * d - pb for ii, s, ri, d, (pb, _)
                          in zip(i, spec.stride, r, spec.dilation, spec.padding))
                if not all(0 <= oi < O for oi, O in zip(o, spec.output_spatial)):
                    continue
                if x_bad[(n, ci) + i] or w_bad[(ci, kk) + r]:
                    out[(n, g * kg + kk) + o] = True
    return out


MASK_CASES = [
    # (op, x_shape, w_shape, params)
    ("conv", (2, 2, 9), (3, 2, 3), dict(padding=((2, 0),), stride=2)),
    ("conv", (1, 4, 7), (4, 2, 2), dict(padding=((1, 3),), dilation=3, groups=2)),
    ("conv", (2, 2, 7, 5), (2, 1, 3, 2), dict(padding=((1, 2), (0, 1)), stride=(2, 1),
                                               dilation=(1, 2), groups=2)),
    ("conv", (1, 1, 6, 6), (2, 1, 3, 3), dict(padding=1)),
    ("conv", (1, 3, 5, 6), (3, 1, 2, 3), dict(padding=((0, 1), (2, 2)), stride=(1, 3),
                                               groups=3)),
    ("conv", (1, 2, 4, 5, 3), (2, 2, 2, 3, 2), dict(padding=((1, 0), (1, 1), (0, 2)),
                                                     stride=(2, 1, 1), dilation=(1, 1, 2))),
    ("conv_transpose", (2, 2, 5), (2, 2, 3), dict(stride=3, padding=((1, 2),),
                                                    output_padding=1)),
    ("conv_transpose", (1, 4, 4), (4, 1, 2), dict(stride=2, dilation=3, groups=2,
                                                    padding=((0, 1),))),
    ("conv_transpose", (1, 2, 4, 3), (2, 2, 3, 2), dict(stride=(2, 3), padding=((1, 1), (2, 0)),
                                                        dilation=(2, 1), output_padding=(1, 2))),
    ("conv_transpose", (2, 2, 3, 3), (2, 1, 2, 2), dict(stride=1, padding=1, groups=2)),
    ("conv_transpose", (1, 2, 3, 2, 3), (2, 1, 2, 2, 3), dict(stride=(1, 2, 2),
                                                              padding=((0, 1), (1, 0), (2, 1)),
                                                              output_padding=(0, 1, 0))),
]


def _spec(op, x_shape, w_shape, params):
    return conv_spec("test", x_shape, w_shape, None, op=op, **params)[0]


@pytest.mark.parametrize("density", [0.05, 0.3])
@pytest.mark.parametrize("case", MASK_CASES, ids=lambda c: f"{c[0]}-{len(c[1]) - 2}d-{c[2]}")
def test_affected_masks_against_a_brute_force_scan(case, density, rng):
    op, x_shape, w_shape, params = case
    spec = _spec(op, x_shape, w_shape, params)
    brute = _brute_conv if op == "conv" else _brute_transpose
    for which in ("x", "w", "both"):
        x_bad = (rng.random(x_shape) < density) & (which != "w")
        w_bad = (rng.random(w_shape) < density / 3) & (which != "x")
        got = nonfinite.affected(op, spec, x_bad, w_bad)
        assert got.shape == (spec.batch, spec.out_channels) + spec.output_spatial
        np.testing.assert_array_equal(got, brute(x_bad, w_bad, spec), err_msg=which)
    # Nothing bad, nothing affected.
    assert not nonfinite.affected(op, spec, np.zeros(x_shape, bool),
                                  np.zeros(w_shape, bool)).any()


def test_one_bad_input_reaches_exactly_its_windows():
    # A 3x3 window over a bad input in the corner with padding 1: the 2x2 outputs whose
    # windows hold it, in every output channel (weights of the group).
    spec = _spec("conv", (1, 1, 5, 5), (2, 1, 3, 3), dict(padding=1))
    x_bad = np.zeros((1, 1, 5, 5), bool)
    x_bad[0, 0, 0, 0] = True
    got = nonfinite.affected("conv", spec, x_bad, np.zeros((2, 1, 3, 3), bool))
    want = np.zeros((1, 2, 5, 5), bool)
    want[:, :, :2, :2] = True
    np.testing.assert_array_equal(got, want)


def test_magnitude():
    assert nonfinite.magnitude(np.array([1.0, -3.0, 2.0])) == 3.0
    assert np.isnan(nonfinite.magnitude(np.array([np.inf, np.nan, 1.0], np.float32)))
    assert nonfinite.magnitude(np.array([-np.inf, 1.0])) == np.inf
    assert nonfinite.magnitude(np.zeros((0, 3))) == 0.0 and nonfinite.magnitude(None) == 0.0


# --------------------------------------------------------------------------- planning


def test_which_plans_are_guarded():
    x, w = (2, 16, 12, 12), (16, 16, 3, 3)
    spec = _spec("conv", x, w, dict(padding=1))
    for name in FAST:
        plan = plan_call("conv", spec, name)
        assert plan.guarded and plan.growth() > 1
    for name in EXACT_KERNELS:
        assert not plan_call("conv", spec, name).guarded
    # An exact lowering passes the question on: avg_pool -> conv is guarded at its conv.
    pool = cb.explain(x, op="avg_pool", kernel_size=2, backend="fft")
    assert pool.steps[0].startswith("avg_pool -> conv") and "guarded" not in pool.steps[0]
    assert "guarded" in pool.steps[1]
    # conv_transpose -> conv is not exact: guarded at the top, its conv runs raw below it.
    t = cb.explain((1, 4, 6, 6), (4, 4, 3, 3), op="conv_transpose", stride=2, backend="winograd")
    assert "guarded" in t.steps[0] and "guarded" not in t.steps[1]
    assert "guarded" not in cb.explain(x, w, padding=1, backend="im2col").steps[0]


# --------------------------------------------------------------------------- fast path


@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_calls_are_the_raw_kernel_byte_for_byte(name, dtype, rng):
    x = rng.standard_normal((2, 8, 11, 13)).astype(dtype)
    w = rng.standard_normal((6, 8, 3, 3)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    spec = cb.explain(x.shape, w.shape, dtype=np.dtype(dtype).name, padding=1).spec
    raw = cb.get_backend(name).conv(x, w, b, spec)
    assert cb.conv2d(x, w, b, padding=1, backend=name).tobytes() == raw.tobytes()
    out = np.empty_like(raw)
    assert cb.conv2d(x, w, b, padding=1, backend=name, out=out) is out
    assert out.tobytes() == raw.tobytes()


# --------------------------------------------------------------------------- huge values


@pytest.mark.parametrize("name,kw", [("winograd", dict(padding=1)), ("fft", dict(padding=1)),
                                     ("fft", dict(padding=2, stride=2))])
def test_huge_values_run_in_float64_and_stay_finite(name, kw, rng):
    # max|x| * max|w| * growth is far past float32's range; every direct sum is finite
    # (at most 144 * max|x| * max|w|). The signs follow F(4, 3)'s row of Bᵀ and of G with
    # the largest absolute sums, so one 6x6 tile's transform grows the most.
    _, g, bt = transforms(4, 3, "float64")
    row = int(np.argmax(np.abs(bt).sum(axis=1) * np.abs(g).sum(axis=1)))
    s_in, s_w = np.where(bt[row] < 0, -1.0, 1.0), np.where(g[row] < 0, -1.0, 1.0)
    x = rng.uniform(-1, 1, (1, 16, 12, 12)).astype(np.float32)
    x[0, :, 3:9, 3:9] = F32_MAX / 300 * np.outer(s_in, s_in)
    w = np.broadcast_to(np.outer(s_w, s_w), (4, 16, 3, 3)).astype(np.float32)
    b = np.array([1.0, -2.0, F32_MAX / 1e3, 0.0], np.float32)
    ref = oracle.conv(x, w, b, **kw)
    assert np.isfinite(ref.astype(np.float32)).all()
    spec = cb.explain(x.shape, w.shape, **kw).spec
    backend = cb.get_backend(name)
    with np.errstate(all="ignore"):
        raw = backend.conv(x, w, b, spec)
    assert not np.isfinite(raw).all()               # what the escalation is for
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = cb.conv2d(x, w, b, backend=name, **kw)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    # Exactly the float64 kernel, cast back.
    y64 = backend.conv(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64),
                       spec.replace(dtype="float64"))
    np.testing.assert_array_equal(y, y64.astype(np.float32))
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-6


@pytest.mark.parametrize("name", FAST)
def test_values_within_the_bound_stay_float32_and_finite(name):
    # Every input and weight at the largest magnitude the bound lets through in float32,
    # all of one sign: the worst case for every sum. The raw kernel stays finite there.
    shape, w_shape = (1, 8, 10, 10), (4, 8, 3, 3)
    spec = cb.explain(shape, w_shape, padding=1, bias=False).spec
    growth = cb.get_backend(name).magnitude_growth("conv", spec)
    mx = nonfinite.FLOAT32_LIMIT / growth * 0.99
    x = np.full(shape, mx, np.float32)
    w = np.ones(w_shape, np.float32)
    y = cb.conv2d(x, w, padding=1, backend=name)
    assert np.isfinite(y).all()
    assert y.tobytes() == cb.get_backend(name).conv(x, w, None, spec).tobytes()


def test_avg_pool_through_fft_escalates_with_ones_as_weights():
    x = np.full((1, 2, 8, 8), F32_MAX / 20, np.float32)
    ref = oracle.avg_pool(x, 3, 1, 1)
    y = cb.avg_pool2d(x, 3, 1, 1, backend="fft")
    assert np.isfinite(y).all() and np.allclose(y, ref, rtol=1e-5)


def test_naive_forms_products_in_float64():
    # 2e19 * 2e19 overflows float32, and Inf - Inf would be NaN; the direct sums are 0 (and
    # +-4e38 at the transposed output's ends, beyond float32: +-Inf).
    x = np.full((1, 1, 2), 2e19, np.float32)
    w = np.array([[[2e19, -2e19]]], np.float32)
    np.testing.assert_array_equal(cb.conv1d(x, w, backend="naive"), [[[0.0]]])
    np.testing.assert_array_equal(cb.conv_transpose1d(x, w, backend="naive"),
                                  [[[np.inf, 0.0, -np.inf]]])


# --------------------------------------------------------------------------- warnings


def _special_cases():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    x[0, 1, 2, 2], x[1, 0, 5, 6], x[1, 2, 0, 8] = np.nan, np.inf, -np.inf
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w[1, 0, 0, 0], w[2, 2, 1, 1] = np.inf, 0.0
    wt = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    wt[0, 1, 2, 0] = -np.inf
    b = np.array([0.0, np.inf, -np.inf, 1.0], np.float32)
    huge = np.full((1, 3, 9, 9), F32_MAX / 50, np.float32)
    return x, w, wt, b, huge


@pytest.mark.parametrize("name", CONV_BACKENDS)
def test_no_runtime_warning_escapes(name):
    x, w, wt, b, huge = _special_cases()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cb.conv2d(x, w, b, padding=1, backend=name)
        cb.conv2d(huge, np.abs(w) / 30, padding=1, backend=name)
        # winograd too, through conv_transpose -> conv
        cb.conv_transpose2d(x, wt, b, stride=2, padding=1, backend=name)
        if name != "winograd":
            cb.avg_pool2d(x, 3, 2, 1, backend=name)
            cb.adaptive_avg_pool2d(x, (3, 9), backend=name)


# --------------------------------------------------------------------------- patterns


def _issue_examples():
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, 1, 5, 5)).astype(np.float32)
    w1 = np.ones((1, 1, 3, 3), np.float32)
    w1[0, 0, 0, 0] = np.inf
    x2 = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    x2[1, 2, 5, 7] = np.nan
    w2 = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    x3 = x2.copy()
    x3[1, 2, 5, 7] = np.inf
    return [("inf weight in padding", x1, w1, 9, 16), ("one NaN input", x2, w2, 36, 0),
            ("one Inf input", x3, w2, 0, 36)]


@pytest.mark.parametrize("name", CONV_BACKENDS)
@pytest.mark.parametrize("example", _issue_examples(), ids=lambda e: e[0])
def test_issue_examples(name, example):
    _, x, w, nans, infs = example
    ref = _oracle(oracle.conv, x, w, padding=1)
    assert (np.isnan(ref).sum(), np.isinf(ref).sum()) == (nans, infs)
    y = cb.conv2d(x, w, padding=1, backend=name)
    assert (np.isnan(y).sum(), np.isinf(y).sum()) == (nans, infs)
    _assert_matches(y, ref, 1e-4)


@pytest.mark.parametrize("name", FAST)
def test_raw_methods_stay_raw(name):
    # Called directly, the transform spreads the NaN over its tile: the guard is dispatch's.
    _, x, w, nans, _ = _issue_examples()[1]
    spec = cb.explain(x.shape, w.shape, padding=1).spec
    with np.errstate(all="ignore"):
        raw = cb.get_backend(name).conv(x, w, None, spec)
    assert np.isnan(raw).sum() > nans


def _conv_cases():
    rng = np.random.default_rng(11)
    cases = []
    for nd, groups, stride, dil, pads in [
            (1, 1, 1, 1, ((2, 1),)), (1, 2, 2, 2, ((0, 3),)),
            (2, 1, 1, 1, ((1, 1), (2, 0))), (2, 2, (2, 1), (1, 2), ((1, 0), (0, 2))),
            (3, 1, 1, 1, ((1, 0), (0, 1), (1, 1)))]:
        spatial = (11,) if nd == 1 else ((7, 8) if nd == 2 else (4, 5, 4))
        x = rng.uniform(-1, 1, (2, 2 * groups) + spatial).astype(np.float32)
        w = rng.uniform(-1, 1, (2 * groups, 2) + (3,) * nd).astype(np.float32)
        b = rng.uniform(-1, 1, 2 * groups).astype(np.float32)
        for a, kinds in ((x, 5), (w, 2), (b, 1)):
            flat = a.reshape(-1)
            at = rng.choice(flat.size, kinds, replace=False)
            flat[at] = rng.choice([np.nan, np.inf, -np.inf, 0.0], kinds)
        cases.append((x, w, b, dict(stride=stride, dilation=dil, padding=pads, groups=groups)))
    return cases


@pytest.mark.parametrize("name", CONV_BACKENDS)
@pytest.mark.parametrize("case", range(5))
def test_conv_patterns(name, case):
    x, w, b, kw = _conv_cases()[case]
    ref = _oracle(oracle.conv, x, w, b, **kw)
    try:
        y = cb.conv(x, w, b, backend=name, **kw)
    except cb.UnsupportedError:
        assert name == "winograd"
        pytest.skip("winograd: stride 1 and dilation 1 only")
    _assert_matches(y, ref, 1e-4)


def _transpose_cases():
    rng = np.random.default_rng(12)
    cases = []
    for nd, groups, stride, dil, pads, op in [
            (1, 1, 3, 1, ((1, 1),), (1,)), (1, 2, 2, 2, ((0, 2),), (0,)),
            (2, 1, 1, 1, ((1, 1), (0, 0)), (0, 0)), (2, 2, (2, 3), (1, 1), ((1, 0), (2, 1)), (1, 2)),
            (3, 1, (2, 1, 1), 1, ((0, 1), (1, 0), (1, 1)), (1, 0, 0))]:
        spatial = (5,) if nd == 1 else ((4, 5) if nd == 2 else (3, 3, 4))
        x = rng.uniform(-1, 1, (2, 2 * groups) + spatial).astype(np.float32)
        w = rng.uniform(-1, 1, (2 * groups, 2) + (3,) * nd).astype(np.float32)
        b = rng.uniform(-1, 1, 2 * groups).astype(np.float32)
        for a, kinds in ((x, 3), (w, 2)):
            flat = a.reshape(-1)
            flat[rng.choice(flat.size, kinds, replace=False)] = rng.choice(
                [np.nan, np.inf, -np.inf], kinds)
        cases.append((x, w, b, dict(stride=stride, dilation=dil, padding=pads, groups=groups,
                                    output_padding=op)))
    return cases


@pytest.mark.parametrize("name", CONV_BACKENDS)
@pytest.mark.parametrize("case", range(5))
def test_conv_transpose_patterns(name, case):
    x, w, b, kw = _transpose_cases()[case]
    ref = _oracle(oracle.conv_transpose, x, w, b, **kw)
    try:
        y = cb.conv_transpose(x, w, b, backend=name, **kw)
    except cb.UnsupportedError:
        assert name == "winograd"
        pytest.skip("winograd: its conv_transpose -> conv lowering needs dilation 1")
    _assert_matches(y, ref, 1e-4)


def test_transpose_outputs_no_input_reaches_get_the_bias():
    # Stride 3 leaves gaps; an Inf weight meets no inserted zero there (the scatter).
    x = np.ones((1, 1, 3), np.float32)
    w = np.array([[[np.inf, 1.0]]], np.float32)
    b = np.array([0.5], np.float32)
    ref = _oracle(oracle.conv_transpose, x, w, b, stride=3)
    np.testing.assert_array_equal(ref[0, 0], [np.inf, 1.5, 0.5, np.inf, 1.5, 0.5, np.inf, 1.5])
    for name in CONV_BACKENDS:
        _assert_matches(cb.conv_transpose1d(x, w, b, stride=3, backend=name), ref, 1e-6)


POOL_BACKENDS = ("naive", "numba", None)


def _pool_input():
    x = np.random.default_rng(13).standard_normal((2, 2, 7, 6)).astype(np.float32)
    x[0, 0, 1, 1], x[0, 1, 4, 2], x[1, 0, 6, 5] = np.nan, np.inf, -np.inf
    x[1, 1, 3, 3], x[1, 1, 3, 4] = np.inf, -np.inf
    return x


@pytest.mark.parametrize("name", POOL_BACKENDS)
def test_max_pools_keep_nan(name):
    x = _pool_input()
    kw = dict(kernel_size=3, stride=2, padding=1)
    v, i = cb.max_pool2d(x, **kw, return_indices=True, backend=name)
    rv, ri = _oracle(oracle.max_pool_with_indices, x, **kw)
    _assert_matches(v, rv, 0)
    np.testing.assert_array_equal(i, ri)
    _assert_matches(cb.max_pool2d(x, **kw, backend=name), rv, 0)
    av, ai = cb.adaptive_max_pool2d(x, (3, 4), return_indices=True, backend=name)
    rav, rai = _oracle(oracle.adaptive_max_pool, x, (3, 4))
    _assert_matches(av, rav, 0)
    np.testing.assert_array_equal(ai, rai)
    assert np.isnan(v).sum() >= 1 and np.isnan(av).sum() >= 1


@pytest.mark.parametrize("name", ("naive", "numba", "im2col", "fft", None))
@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=2, stride=1, ceil_mode=True,
                                     count_include_pad=False, divisor_override=-2),
                                dict(kernel_size=(1, 2), stride=2, padding=1, ceil_mode=True,
                                     count_include_pad=False)])
def test_avg_pools_are_the_direct_sum(name, kw):
    x = _pool_input()
    ref = _oracle(oracle.avg_pool, x, **kw)
    y = cb.avg_pool2d(x, backend=name, **kw)
    assert y.shape == ref.shape
    _assert_matches(y, ref, 1e-4)
    if name in ("naive", "numba", None):
        _assert_matches(cb.adaptive_avg_pool2d(x, (3, 5), backend=name),
                        _oracle(oracle.adaptive_avg_pool, x, (3, 5)), 1e-5)
    _assert_matches(cb.adaptive_avg_pool2d(x, (7, 3), backend=name),
                    _oracle(oracle.adaptive_avg_pool, x, (7, 3)), 1e-4)


def test_avg_pool_windows_of_no_tap_are_nan_on_fft():
    # 0/0 for the windows wholly in padding, however the transform rounded their sum.
    x = np.random.default_rng(14).uniform(1, 2, (1, 1, 3, 3)).astype(np.float32)
    kw = dict(kernel_size=1, stride=1, padding=1, count_include_pad=False)
    ref = oracle.avg_pool(x, **kw)
    assert np.isnan(ref).sum() == 16
    _assert_matches(cb.avg_pool2d(x, backend="fft", **kw), ref, 1e-5)
