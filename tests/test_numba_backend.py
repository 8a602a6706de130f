"""The ``numba`` backend against the float64 oracle, and the functional pooling API end to end
(``naive`` and ``numba``) against the oracle and PyTorch's golden pooling cases.

Shapes are small and odd so that every code path runs: unit-stride and strided phase
planes, one image and several, the depthwise kernel (3x3 and others, channel multipliers),
pairs of output channels and a lone last one, kernel widths that are and are not multiples
of three, chunks that split rows. The parity ops (``max_pool_with_indices``,
``adaptive_max_pool``, ``max_unpool``) and ``divisor_override`` are called on the backend
directly, with specs from :mod:`convbackends.spec`, and must equal the oracle exactly:
values and indices, ties, NaN and infinities included.
"""

import math
import zlib

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convbackends as cb
from convbackends.backends.numba import NumbaBackend
from convbackends.backends.numba import backend as numba_backend
from convbackends.spec import adaptive_pool_spec, pool_spec, unpool_spec
from reference import oracle
from reference.golden import load_cases

POOL_BACKENDS = ("naive", "numba")
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.fixture(autouse=True)
def all_threads(monkeypatch):
    """Run even these small calls on every thread, so that races between tasks would
    show."""
    monkeypatch.setattr(numba_backend, "GRAIN_MACS", 1)


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def assert_close(y, ref, rtol):
    """``||y - ref|| / ||ref|| <= rtol`` over finite entries; ``-inf`` and NaN positions
    identical."""
    y = np.asarray(y, np.float64)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(ref))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    finite = np.isfinite(ref)
    diff = np.linalg.norm(y[finite] - ref[finite])
    assert diff <= rtol * max(np.linalg.norm(ref[finite]), 1e-300), \
        f"relative error {diff / np.linalg.norm(ref[finite]):.3e} above {rtol:g}"


# --------------------------------------------------------------------------- convolution

# (input shape, weight shape, keyword arguments)
CONV_CASES = [
    ((2, 3, 17), (5, 3, 3), dict(padding=1)),
    ((1, 4, 40), (6, 2, 9), dict(padding=4, groups=2)),
    ((2, 3, 23), (4, 3, 4), dict(stride=3, padding=((2, 1),), dilation=2)),
    ((1, 2, 12), (3, 2, 1), dict()),
    ((2, 6, 11, 13), (4, 3, 3, 3), dict(padding=1, groups=2)),
    ((2, 5, 9, 10), (7, 5, 3, 3), dict(padding="same", bias=True)),
    ((1, 4, 11, 13), (5, 4, 2, 5), dict(stride=(2, 3), padding=((1, 2), (3, 0)),
                                        dilation=(2, 1))),
    ((2, 8, 9, 9), (8, 1, 3, 3), dict(padding=1, groups=8)),
    ((1, 6, 15, 14), (6, 1, 3, 3), dict(stride=2, padding=1, groups=6)),
    ((1, 3, 10, 9), (6, 1, 3, 2), dict(padding=((1, 0), (2, 1)), groups=3, dilation=(2, 1))),
    ((2, 4, 30), (8, 1, 5), dict(stride=2, padding=2, groups=4)),
    ((1, 4, 70), (4, 1, 4), dict(padding=((3, 0),), groups=4)),
    ((1, 3, 9, 30), (6, 3, 3, 7), dict(stride=(1, 2), padding=(0, 4), dilation=(1, 3))),
    ((1, 3, 8, 8), (4, 3, 5, 2), dict(stride=(2, 1), padding=(2, 1))),
    ((1, 3, 14, 13), (5, 3, 3, 2), dict(stride=(2, 1))),
    ((1, 2, 12), (3, 2, 3), dict(stride=2)),
    ((2, 4, 7, 7), (3, 4, 1, 1), dict()),
    ((1, 2, 6, 7, 8), (3, 2, 3, 3, 3), dict(padding=1)),
    ((1, 4, 5, 6, 7), (4, 1, 3, 3, 3), dict(stride=2, padding=1, groups=4)),
    ((2, 2, 7, 6, 5), (5, 2, 2, 3, 2), dict(stride=(2, 1, 1), padding=((1, 0), (0, 2), (1, 1)),
                                            dilation=(1, 2, 2))),
]


def _conv_call(xs, ws, kw, dtype, backend):
    rng = _rng(xs, ws, str(kw), dtype)
    kw = dict(kw)
    with_bias = kw.pop("bias", rng.random() < 0.5)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype) if with_bias else None
    y = cb.conv(x, w, b, backend=backend, **kw)
    padding = kw.pop("padding", 0)
    if padding == "same":
        totals = [d * (k - 1) for d, k in zip(np.broadcast_to(kw.get("dilation", 1), len(ws) - 2),
                                              ws[2:])]
        padding = [(t // 2, t - t // 2) for t in totals]
    return y, oracle.conv(x, w, b, padding=padding, **kw)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kw", CONV_CASES, ids=[f"{c[0]}-{c[1]}" for c in CONV_CASES])
def test_conv_matches_oracle(xs, ws, kw, dtype):
    y, ref = _conv_call(xs, ws, kw, dtype, "numba")
    assert y.dtype == dtype
    assert_close(y, ref, RTOL[dtype])


@pytest.mark.parametrize("xs, ws, kw", [
    ((2, 6, 9, 11), (10, 3, 3, 3), dict(padding=1, groups=2)),
    ((1, 5, 13, 40), (5, 5, 3, 4), dict(stride=(1, 2), padding=(1, 2))),
    ((1, 3, 50), (5, 3, 7), dict(padding=3)),
    ((1, 4, 13, 12), (8, 1, 3, 3), dict(padding=1, groups=4)),
])
def test_conv_small_blocks_and_chunks(monkeypatch, xs, ws, kw):
    """Blocks of three output channels (a pair and a single) and chunks of 16 outputs
    (splitting rows mid-way) change nothing."""
    monkeypatch.setattr(numba_backend, "CHANNEL_BLOCK", 3)
    monkeypatch.setattr(numba_backend, "ACCUMULATOR_BYTES", 1)
    spec = cb.explain(xs, ws, **kw).spec
    assert numba_backend._channel_block(spec) <= 3 and numba_backend._column_chunk(spec) == 16
    y, ref = _conv_call(xs, ws, kw, np.float64, "numba")
    assert_close(y, ref, RTOL[np.float64])


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_conv_random_geometry(data):
    nd = data.draw(st.integers(1, 3))
    groups = data.draw(st.integers(1, 3))
    cg, kg = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    kernel = tuple(data.draw(st.integers(1, 4)) for _ in range(nd))
    stride = tuple(data.draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(nd))
    padding = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2)))
                    for _ in range(nd))
    spatial = tuple(data.draw(st.integers(d * (k - 1) + 1, d * (k - 1) + 9))
                    for k, d in zip(kernel, dilation))
    batch = data.draw(st.integers(1, 2))
    x = _rng(spatial, kernel).standard_normal((batch, cg * groups) + spatial)
    w = _rng(kernel, spatial).standard_normal((kg * groups, cg) + kernel)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    assert_close(cb.conv(x, w, backend="numba", **kw), oracle.conv(x, w, **kw), 1e-12)


CONV_TRANSPOSE_CASES = [
    ((2, 3, 9), (3, 2, 3), dict(stride=2, padding=1, output_padding=1)),
    ((1, 4, 10), (4, 1, 4), dict(stride=3, padding=((2, 0),), groups=2, dilation=2)),
    ((2, 4, 5, 6), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=(1, 0))),
    ((1, 6, 7, 5), (6, 2, 3, 2), dict(stride=(1, 3), padding=((1, 2), (0, 1)), groups=3,
                                      dilation=(2, 1), output_padding=(1, 2))),
    ((2, 3, 4, 4), (3, 5, 1, 1), dict()),
    ((1, 2, 3, 4, 5), (2, 3, 2, 3, 2), dict(stride=(2, 1, 2), padding=1,
                                            output_padding=(1, 0, 0))),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, ws, kw", CONV_TRANSPOSE_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CONV_TRANSPOSE_CASES])
def test_conv_transpose_matches_oracle(xs, ws, kw, dtype):
    rng = _rng(xs, ws, dtype)
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[1] * kw.get("groups", 1)).astype(dtype)
    y = cb.conv_transpose(x, w, b, backend="numba", **kw)
    assert y.dtype == dtype
    assert_close(y, oracle.conv_transpose(x, w, b, **kw), RTOL[dtype])


def test_inputs_untouched_noncontiguous_and_out():
    rng = _rng("layout")
    x = np.asfortranarray(rng.standard_normal((2, 3, 9, 8)).astype(np.float32))
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)[:, :, ::-1, :]
    x0, w0 = x.copy(), w.copy()
    ref = oracle.conv(x, w, padding=1)
    out = np.full((2, 4, 9, 8), np.nan, np.float32)
    y = cb.conv2d(x, w, padding=1, backend="numba", out=out)
    assert y is out
    assert_close(out, ref, 1e-5)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(w, w0)
    pooled = np.empty((2, 3, 4, 4), np.float32)
    assert cb.max_pool2d(x, 2, backend="numba", out=pooled) is pooled
    assert_close(pooled, oracle.max_pool(x, 2), 1e-7)


def test_thread_count_is_respected_and_reported(monkeypatch):
    rng = _rng("threads")
    x = rng.standard_normal((2, 4, 10, 10))
    w = rng.standard_normal((6, 4, 3, 3))
    spec = cb.explain(x.shape, w.shape).spec
    backend = cb.get_backend("numba")
    before = numba.get_num_threads()
    assert backend.plan("conv", spec)["threads"] == before
    monkeypatch.setattr(numba_backend, "GRAIN_MACS", spec.macs + 1)
    assert backend.plan("conv", spec)["threads"] == 1  # small work: one thread
    cb.conv2d(x, w, backend="numba")
    assert numba.get_num_threads() == before  # the budget is restored
    monkeypatch.setattr(numba_backend, "GRAIN_MACS", 1)
    try:
        numba.set_num_threads(1)
        one = cb.conv2d(x, w, padding=1, backend="numba")
        assert backend.plan("conv", spec)["threads"] == 1
        assert numba_backend.threading_info()["threads"] == 1
    finally:
        numba.set_num_threads(before)
    np.testing.assert_allclose(cb.conv2d(x, w, padding=1, backend="numba"), one, rtol=1e-13)
    info = numba_backend.threading_info(start=True)
    assert info["threads"] == before
    assert info["threading_layer"] in ("omp", "tbb", "workqueue")


def test_explain_reports_the_tile():
    report = cb.explain((1, 8, 16, 16), (8, 1, 3, 3), groups=8, padding=1).backends["numba"]
    assert report.supported and report.workspace_bytes > 0
    assert report.plan["kernel"] == "depthwise"


# --------------------------------------------------------------------------- pooling

POOL_CASES = [
    # (op, x shape, keyword arguments)
    ("max_pool", (2, 3, 11), dict(kernel_size=3, stride=2, padding=1)),
    ("max_pool", (1, 2, 8), dict(kernel_size=3, stride=2, padding=((1, 1),), ceil_mode=True)),
    ("max_pool", (1, 2, 8), dict(kernel_size=3, stride=2, padding=((0, 2),), ceil_mode=True)),
    ("max_pool", (1, 2, 5), dict(kernel_size=2, stride=2, padding=((3, 0),))),
    ("max_pool", (2, 3, 9, 10), dict(kernel_size=(3, 2), stride=(2, 3), padding=(1, 1),
                                     dilation=(2, 1), ceil_mode=True)),
    ("max_pool", (1, 2, 6, 7), dict(kernel_size=2, padding=((2, 0), (0, 3)))),
    ("max_pool", (1, 2, 5, 6, 7), dict(kernel_size=(2, 3, 2), stride=(1, 2, 2), padding=1,
                                       ceil_mode=True)),
    ("max_pool", (1, 2, 8, 8), dict(kernel_size=3, stride=1, padding="same")),
    ("avg_pool", (2, 3, 11), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("avg_pool", (1, 2, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                 count_include_pad=False)),
    ("avg_pool", (1, 2, 9), dict(kernel_size=2, stride=2, padding=1, dilation=3,
                                 ceil_mode=True)),
    ("avg_pool", (2, 3, 9, 10), dict(kernel_size=(3, 2), stride=(2, 3), padding=((1, 2), (0, 1)),
                                     count_include_pad=False)),
    ("avg_pool", (1, 2, 7, 8), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                    dilation=(1, 2))),
    ("avg_pool", (1, 2, 5, 6, 7), dict(kernel_size=(3, 2, 3), stride=2, padding=1,
                                       ceil_mode=True, count_include_pad=False)),
    ("avg_pool", (1, 2, 6, 6, 6), dict(kernel_size=2)),
]


def _pool_oracle(op, x, kw):
    kw = dict(kw)
    if kw.get("padding") == "same":  # only used with kernel 3, stride 1
        kw["padding"] = [(1, 1)] * (x.ndim - 2)
    return getattr(oracle, op)(x, **kw)


@pytest.mark.parametrize("backend", POOL_BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op, xs, kw", POOL_CASES, ids=[f"{c[0]}-{c[1]}" for c in POOL_CASES])
def test_pooling_matches_oracle(op, xs, kw, dtype, backend):
    x = _rng(op, xs, str(kw)).standard_normal(xs).astype(dtype)
    y = getattr(cb, f"{op}{len(xs) - 2}d")(x, backend=backend, **kw)
    assert y.dtype == dtype
    assert_close(y, _pool_oracle(op, x, kw), RTOL[dtype])


@pytest.mark.parametrize("backend", POOL_BACKENDS)
def test_max_pool_window_wholly_in_padding(backend):
    x = np.arange(5.0)[None, None]
    y = cb.max_pool1d(x, 2, 2, padding=[(3, 0)], backend=backend)
    np.testing.assert_array_equal(y[0, 0], [-np.inf, 0.0, 2.0, 4.0])
    x2 = -np.ones((1, 1, 3, 3), np.float32)
    y2 = cb.max_pool2d(x2, 2, 2, padding=((2, 0), (0, 0)), backend=backend)
    np.testing.assert_array_equal(y2[0, 0], [[-np.inf], [-1.0]])


@pytest.mark.parametrize("backend", POOL_BACKENDS)
def test_max_pool_propagates_nan(backend):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 1, 2] = np.nan
    y = cb.max_pool2d(x, 2, backend=backend)
    np.testing.assert_array_equal(np.isnan(y[0, 0]), [[False, True], [False, False]])
    assert y[0, 0, 1, 1] == 15.0


@pytest.mark.parametrize("backend", POOL_BACKENDS)
def test_avg_pool_ceil_mode_divisors(backend):
    x = np.ones((1, 1, 5))
    inc = cb.avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=True, backend=backend)
    exc = cb.avg_pool1d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False, backend=backend)
    np.testing.assert_allclose(inc[0, 0], [2 / 3, 1, 2 / 3])
    np.testing.assert_allclose(exc[0, 0], [1, 1, 1])


@pytest.mark.parametrize("backend", POOL_BACKENDS)
def test_ceil_mode_window_longer_than_input(backend):
    """PyTorch 2.13 gives one window here (max 1, mean 1/2): the window starts inside the
    input, and ceil mode keeps it although it reaches past the end."""
    x = np.array([[[0.0, 1.0]]])
    np.testing.assert_array_equal(cb.max_pool1d(x, 3, 2, ceil_mode=True, backend=backend),
                                  [[[1.0]]])
    np.testing.assert_array_equal(cb.avg_pool1d(x, 3, 2, ceil_mode=True, backend=backend),
                                  [[[0.5]]])


@pytest.mark.parametrize("backend", POOL_BACKENDS)
@pytest.mark.parametrize("xs, output_size", [
    ((2, 3, 10), 4), ((1, 2, 5, 7), (3, 5)), ((1, 2, 6, 9), [None, 4]),
    ((1, 2, 9, 9), 1), ((2, 3, 4, 5, 6), (2, 3, None)), ((1, 2, 3, 3), 5),
])
def test_adaptive_avg_pool(xs, output_size, backend):
    nd = len(xs) - 2
    x = _rng(xs).standard_normal(xs)
    y = getattr(cb, f"adaptive_avg_pool{nd}d")(x, output_size, backend=backend)
    sizes = output_size if isinstance(output_size, (list, tuple)) else (output_size,) * nd
    sizes = tuple(L if s is None else s for L, s in zip(xs[2:], sizes))
    assert_close(y, oracle.adaptive_avg_pool(x, sizes), 1e-12)


@pytest.mark.parametrize("backend", POOL_BACKENDS)
@pytest.mark.parametrize("xs", [(2, 3, 7), (2, 3, 5, 6), (1, 4, 3, 4, 5)])
def test_global_avg_pool(xs, backend):
    x = _rng(xs).standard_normal(xs).astype(np.float32)
    y = cb.global_avg_pool(x, backend=backend)
    assert y.shape == xs[:2] + (1,) * (len(xs) - 2)
    np.testing.assert_allclose(y, x.mean(axis=tuple(range(2, len(xs))), keepdims=True),
                               rtol=1e-5, atol=1e-7)


POOL_GOLDEN = [c for c in load_cases() if "pool" in c[1]]


def test_golden_pooling_cases_cover_the_edges():
    names = [name for name, *_ in POOL_GOLDEN]
    assert any("ninf" in n for n in names) and any("ceil" in n for n in names)
    assert any("out_none_4" in n for n in names)


@pytest.mark.parametrize("backend", POOL_BACKENDS)
@pytest.mark.parametrize("name, func, kwargs, arrays", POOL_GOLDEN,
                         ids=[c[0] for c in POOL_GOLDEN])
def test_golden_pooling(name, func, kwargs, arrays, backend):
    x, ref = arrays["x"], arrays["y"]
    x0 = x.copy()
    y = getattr(cb, func)(x, backend=backend, **kwargs)
    assert y.dtype == x.dtype
    assert_close(y, ref.astype(np.float64), 1e-5 if x.dtype == np.float32 else 1e-12)
    np.testing.assert_array_equal(x, x0)


# --------------------------------------------------------------------------- parity ops

# (x shape, keyword arguments of max pooling): 1-D/2-D/3-D, odd sizes, dilation, ceil mode,
# asymmetric padding pairs, overlapping windows, windows wholly in padding.
INDEX_POOL_CASES = [
    ((2, 3, 11), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 9), dict(kernel_size=3, stride=2, padding=((1, 1),), ceil_mode=True)),
    ((1, 2, 10), dict(kernel_size=2, stride=3, padding=((0, 2),), dilation=3, ceil_mode=True)),
    ((1, 2, 5), dict(kernel_size=2, stride=2, padding=((3, 0),))),
    ((2, 3, 9, 7), dict(kernel_size=(3, 2), stride=(2, 1), padding=1, dilation=(2, 1),
                        ceil_mode=True)),
    ((1, 2, 7, 8), dict(kernel_size=2, padding=((2, 0), (0, 3)))),
    ((1, 3, 8, 9), dict(kernel_size=3, stride=1, padding=((1, 1), (0, 2)), dilation=(1, 2))),
    ((1, 2, 5, 6, 7), dict(kernel_size=(2, 3, 2), stride=(1, 2, 2), padding=1,
                           ceil_mode=True)),
    ((1, 2, 5, 5, 6), dict(kernel_size=2, stride=(2, 1, 3), padding=((1, 0), (0, 1), (1, 1)),
                           dilation=(2, 1, 2))),
]
ADAPTIVE_MAX_CASES = [
    ((2, 3, 10), (4,)), ((1, 2, 7), (7,)), ((1, 2, 5), (8,)),
    ((1, 2, 7, 5), (3, 4)), ((2, 2, 9, 9), (1, 1)), ((1, 2, 3, 3), (5, 2)),
    ((1, 2, 5, 4, 7), (2, 3, 3)), ((1, 1, 3, 4, 5), (4, 4, 4)),
]
INPUT_KINDS = ("normal", "ties", "special")


def parity_input(shape, dtype, kind, key):
    """Random normals; small integers (many equal maxima); or integers with NaN, +inf and
    -inf sprinkled in (several NaNs per window, windows of -inf)."""
    rng = _rng(shape, str(dtype), kind, key)
    if kind == "normal":
        return rng.standard_normal(shape).astype(dtype)
    x = rng.integers(-2, 3, shape).astype(dtype)
    if kind == "special":
        u = rng.random(shape)
        x[u < 0.15] = np.nan
        x[(u >= 0.15) & (u < 0.25)] = np.inf
        x[(u >= 0.25) & (u < 0.45)] = -np.inf
    return x


def assert_pair_equal(got, ref, dtype):
    """Values (dtype and NaN positions included) and int64 indices exactly as the oracle."""
    values, indices = got
    ref_values, ref_indices = ref
    assert values.dtype == dtype and values.shape == ref_values.shape
    assert indices.dtype == np.int64 and indices.shape == ref_indices.shape
    np.testing.assert_array_equal(values, ref_values.astype(dtype))
    np.testing.assert_array_equal(indices, ref_indices)


def index_pool_spec(xs, kw, dtype):
    nd = len(xs) - 2
    return pool_spec(f"max_pool{nd}d", "max_pool_with_indices", xs, nd, kw["kernel_size"],
                     kw.get("stride"), kw.get("padding", 0), kw.get("dilation", 1),
                     kw.get("ceil_mode", False), dtype=dtype)[0]


def adaptive_max_spec(xs, sizes, dtype):
    nd = len(xs) - 2
    return adaptive_pool_spec(f"adaptive_max_pool{nd}d", xs, nd, sizes, dtype,
                              op="adaptive_max_pool")[0]


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, kw", INDEX_POOL_CASES, ids=[str(c[0]) for c in INDEX_POOL_CASES])
def test_max_pool_with_indices_matches_oracle(xs, kw, dtype, kind):
    x = parity_input(xs, dtype, kind, str(kw))
    got = NumbaBackend().max_pool_with_indices(x, index_pool_spec(xs, kw, dtype))
    assert_pair_equal(got, oracle.max_pool_with_indices(x, **kw), dtype)


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, sizes", ADAPTIVE_MAX_CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in ADAPTIVE_MAX_CASES])
def test_adaptive_max_pool_matches_oracle(xs, sizes, dtype, kind):
    x = parity_input(xs, dtype, kind, sizes)
    got = NumbaBackend().adaptive_max_pool(x, adaptive_max_spec(xs, sizes, dtype))
    assert_pair_equal(got, oracle.adaptive_max_pool(x, sizes), dtype)


def test_max_pool_with_indices_rules_by_hand():
    """The rules spelled out: first of equal maxima, last of several NaNs, a window of -inf
    keeps its first in-bounds tap, a window wholly in padding gives (-inf, -1)."""
    x = np.array([[[1.0, 3.0, 3.0, np.nan, 2.0, np.nan, -np.inf, -np.inf, 4.0]]])
    spec = index_pool_spec(x.shape, dict(kernel_size=3, stride=3, padding=((3, 0),)),
                           np.float64)
    values, indices = NumbaBackend().max_pool_with_indices(x, spec)
    np.testing.assert_array_equal(values[0, 0], [-np.inf, 3.0, np.nan, 4.0])
    np.testing.assert_array_equal(indices[0, 0], [-1, 1, 5, 8])
    x = np.full((1, 1, 2, 3), -np.inf)
    spec = index_pool_spec(x.shape, dict(kernel_size=2, stride=1, padding=((1, 0), (0, 0))),
                           np.float64)
    values, indices = NumbaBackend().max_pool_with_indices(x, spec)
    np.testing.assert_array_equal(indices[0, 0], [[0, 1], [0, 1]])


def test_max_pool_with_indices_writes_out():
    x = parity_input((2, 3, 7, 6), np.float32, "ties", "out")
    kw = dict(kernel_size=3, stride=2, padding=1)
    spec = index_pool_spec(x.shape, kw, np.float32)
    out = np.full(spec.output_shape, np.nan, np.float32)
    values, indices = NumbaBackend().max_pool_with_indices(x, spec, out=out)
    assert values is out
    assert_pair_equal((out, indices), oracle.max_pool_with_indices(x, **kw), np.float32)


TORCH_INDEX_CASES = [
    ((2, 3, 11), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((2, 3, 9, 8), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(2, 1),
                        ceil_mode=True)),
    ((1, 2, 5, 6, 7), dict(kernel_size=(2, 3, 3), stride=(1, 2, 2), padding=1,
                           dilation=(1, 1, 2))),
]


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("xs, kw", TORCH_INDEX_CASES, ids=[str(c[0]) for c in TORCH_INDEX_CASES])
def test_parity_ops_match_torch(xs, kw, kind):
    """PyTorch's CPU kernels themselves, where their geometry allows (symmetric padding of
    at most half the window)."""
    torch = pytest.importorskip("torch")
    nd = len(xs) - 2
    x = parity_input(xs, np.float32, kind, "torch")
    pool = getattr(torch.nn.functional, f"max_pool{nd}d")
    ref = pool(torch.from_numpy(x), return_indices=True, **kw)
    got = NumbaBackend().max_pool_with_indices(x, index_pool_spec(xs, kw, np.float32))
    assert_pair_equal(got, tuple(t.numpy() for t in ref), np.float32)
    sizes = tuple(max(1, (L + 1) // 2) for L in xs[2:])
    ref = getattr(torch.nn.functional, f"adaptive_max_pool{nd}d")(
        torch.from_numpy(x), sizes, return_indices=True)
    got = NumbaBackend().adaptive_max_pool(x, adaptive_max_spec(xs, sizes, np.float32))
    assert_pair_equal(got, tuple(t.numpy() for t in ref), np.float32)


# (x shape, keyword arguments of the pooling whose indices are unpooled): no window wholly
# in padding, so every index is valid; overlapping windows send duplicates.
UNPOOL_CASES = [
    ((2, 3, 11), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 9), dict(kernel_size=2, stride=2)),
    ((2, 3, 9, 7), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))),
    ((1, 2, 7, 8), dict(kernel_size=2, stride=2, padding=((1, 0), (0, 1)))),
    ((1, 2, 5, 6, 7), dict(kernel_size=(2, 3, 2), stride=(1, 2, 2), padding=1)),
]


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, kw", UNPOOL_CASES, ids=[str(c[0]) for c in UNPOOL_CASES])
def test_max_unpool_round_trip(xs, kw, dtype, kind):
    nd = len(xs) - 2
    x = parity_input(xs, dtype, kind, "unpool")
    backend = NumbaBackend()
    values, indices = backend.max_pool_with_indices(x, index_pool_spec(xs, kw, dtype))
    assert indices.min() >= 0
    spec = unpool_spec(f"max_unpool{nd}d", values.shape, indices.shape, nd, kw["kernel_size"],
                       kw.get("stride"), kw.get("padding", 0), output_size=xs[2:],
                       dtype=dtype)[0]
    y = backend.max_unpool(values, indices, spec)
    assert y.dtype == dtype and y.shape == xs
    ref = oracle.max_unpool(values, indices, kw["kernel_size"], kw.get("stride"),
                            kw.get("padding", 0), output_size=xs[2:])
    np.testing.assert_array_equal(y, ref.astype(dtype))
    # Every value lands where its index says (duplicates carry equal values here).
    flat = y.reshape(xs[:2] + (-1,))
    picked = np.take_along_axis(flat, indices.reshape(xs[:2] + (-1,)), axis=2)
    np.testing.assert_array_equal(picked, values.reshape(picked.shape))


@pytest.mark.parametrize("kind", INPUT_KINDS)
@pytest.mark.parametrize("xs, kw", [c for c in UNPOOL_CASES if not isinstance(
    c[1].get("padding", 0), tuple)], ids=str)
def test_max_unpool_matches_torch(xs, kw, kind):
    torch = pytest.importorskip("torch")
    nd = len(xs) - 2
    x = torch.from_numpy(parity_input(xs, np.float32, kind, "torch unpool"))
    pooled, where = getattr(torch.nn.functional, f"max_pool{nd}d")(x, return_indices=True, **kw)
    ref = getattr(torch.nn.functional, f"max_unpool{nd}d")(pooled, where, output_size=xs[2:],
                                                           **kw)
    spec = unpool_spec(f"max_unpool{nd}d", tuple(pooled.shape), tuple(where.shape), nd,
                       kw["kernel_size"], kw.get("stride"), kw.get("padding", 0),
                       output_size=xs[2:], dtype="float32")[0]
    y = NumbaBackend().max_unpool(pooled.numpy(), where.numpy(), spec)
    np.testing.assert_array_equal(y, ref.numpy())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs", [(2, 3, 8), (1, 2, 4, 5), (1, 2, 3, 2, 3)])
def test_max_unpool_duplicates_last_write_wins(xs, dtype):
    """Random indices, many sent to one place: the last in scan order stays, as PyTorch."""
    nd = len(xs) - 2
    rng = _rng("duplicates", xs)
    x = rng.standard_normal(xs).astype(dtype)
    indices = rng.integers(0, 6, xs)
    spec = unpool_spec(f"max_unpool{nd}d", xs, xs, nd, 2, dtype=dtype)[0]
    y = NumbaBackend().max_unpool(x, indices, spec)
    np.testing.assert_array_equal(y, oracle.max_unpool(x, indices, 2).astype(dtype))
    out_buffer = np.full(spec.output_shape, np.nan, dtype)
    assert NumbaBackend().max_unpool(x, indices, spec, out=out_buffer) is out_buffer
    np.testing.assert_array_equal(out_buffer, y)


@pytest.mark.parametrize("bad", [-1, 12, 10**12])
def test_max_unpool_invalid_index_raises_and_writes_nothing_outside(bad):
    xs = (2, 3, 2, 3)
    x = np.ones(xs)
    indices = np.zeros(xs, np.int64)
    indices[1, 2, 1, 0] = bad
    spec = unpool_spec("max_unpool2d", xs, xs, 2, 2, dtype="float64")[0]
    assert math.prod(spec.output_spatial) == 24
    indices[1, 2, 1, 0] = bad if bad != 12 else 24
    with pytest.raises(cb.ShapeError, match=r"Found an invalid max index: "
                       + str(indices[1, 2, 1, 0]) + r" \(output volumes are of size 4x6\)"):
        NumbaBackend().max_unpool(x, indices, spec)
    spec1 = unpool_spec("max_unpool1d", (1, 1, 3), (1, 1, 3), 1, 2, dtype="float64")[0]
    with pytest.raises(cb.ShapeError, match=r"Found an invalid max index: 6 \(output "
                                            r"volumes are of size 6x1\)"):
        NumbaBackend().max_unpool(np.ones((1, 1, 3)), np.array([[[0, 6, 1]]]), spec1)


DIVISOR_CASES = [
    ((2, 3, 11), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), 2),
    ((1, 2, 9), dict(kernel_size=2, stride=2, padding=1, dilation=3, ceil_mode=True), -3),
    ((2, 3, 9, 10), dict(kernel_size=(3, 2), stride=(2, 3), padding=((1, 2), (0, 1)),
                         count_include_pad=False), 5),
    ((1, 2, 5, 6, 7), dict(kernel_size=(3, 2, 3), stride=2, padding=1, ceil_mode=True), 7),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("xs, kw, divisor", DIVISOR_CASES, ids=[str(c[0]) for c in DIVISOR_CASES])
def test_avg_pool_divisor_override(xs, kw, divisor, dtype):
    nd = len(xs) - 2
    x = _rng("divisor", xs).standard_normal(xs).astype(dtype)
    spec = pool_spec(f"avg_pool{nd}d", "avg_pool", xs, nd, kw["kernel_size"], kw.get("stride"),
                     kw.get("padding", 0), kw.get("dilation", 1), kw.get("ceil_mode", False),
                     kw.get("count_include_pad", True), dtype=dtype,
                     divisor_override=divisor)[0]
    y = NumbaBackend().avg_pool(x, spec)
    assert y.dtype == dtype
    assert_close(y, oracle.avg_pool(x, divisor_override=divisor, **kw), RTOL[dtype])


def test_supports_the_parity_ops():
    backend = NumbaBackend()
    xs = (1, 2, 6, 6)
    specs = {"max_pool_with_indices": index_pool_spec(xs, dict(kernel_size=2), "float32"),
             "adaptive_max_pool": adaptive_max_spec(xs, (3, 3), "float32"),
             "max_unpool": unpool_spec("max_unpool2d", xs, xs, 2, 2)[0]}
    for op, spec in specs.items():
        assert backend.supports(op, spec) is None, op
