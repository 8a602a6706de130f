"""Backend-specific tests of ``winograd`` (the conformance suite covers the shared grid).

The generated Toom-Cook transforms are exact in rational arithmetic and refuse bad points
with a :class:`ShapeError`; every tile size meets the accuracy contract; tile rows are
chunked under a small ``chunk_bytes``; the filter-transform cache never serves a stale
transform.
"""

import gc
from fractions import Fraction

import numpy as np
import pytest

import convbackends as cb
from conftest import conv_arrays
from convbackends.backends.winograd import WinogradBackend, toom_cook
from convbackends.spec import conv_spec
from convbackends.tools.measure import TRANSFORM_TOLERANCE, relative_error
from reference import oracle

TOL = TRANSFORM_TOLERANCE


# --------------------------------------------------------------------------- Toom-Cook


@pytest.mark.parametrize("m, r", [(2, 3), (4, 3), (6, 3), (2, 5), (4, 5), (1, 1), (3, 2),
                                  (2, 7), (3, 4), (3, 6)])
def test_toom_cook_is_exact(m, r):
    at, g, bt = toom_cook(m, r)
    alpha = m + r - 1
    assert (len(at), len(at[0]), len(g), len(g[0]), len(bt)) == (m, alpha, alpha, r, alpha)
    rng = np.random.default_rng(m * 10 + r)
    d = [Fraction(int(v)) for v in rng.integers(-9, 10, alpha)]
    w = [Fraction(int(v)) for v in rng.integers(-9, 10, r)]
    gw = [sum(gi * wi for gi, wi in zip(row, w)) for row in g]
    bd = [sum(bi * di for bi, di in zip(row, d)) for row in bt]
    y = [sum(a * u * v for a, u, v in zip(row, gw, bd)) for row in at]
    assert y == [sum(w[k] * d[i + k] for k in range(r)) for i in range(m)]


def test_toom_cook_f23_matches_lavin():
    # Lavin & Gray's F(2, 3) with points 0, 1, -1 (up to the sign of row 0 of B and G).
    at, g, bt = toom_cook(2, 3)
    assert at == [[1, 1, 1, 0], [0, 1, -1, 1]]
    assert [abs(v) for row in bt for v in row] == [1, 0, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0,
                                                    0, 1, 0, 1]


def test_toom_cook_takes_other_points():
    # Any distinct points give an exact F(2, 3); here 0, 2, -2 instead of 0, 1, -1.
    at, g, bt = toom_cook(2, 3, (0, 2, -2))
    assert at[1] == [0, 2, -2, 1]
    d, w = [Fraction(v) for v in (3, -1, 4, 1)], [Fraction(v) for v in (2, 7, -5)]
    gw = [sum(a * b for a, b in zip(row, w)) for row in g]
    bd = [sum(a * b for a, b in zip(row, d)) for row in bt]
    assert [sum(a * u * v for a, u, v in zip(row, gw, bd)) for row in at] == [-21, 21]


@pytest.mark.parametrize("points, message", [
    ((0, 1, 1), r"F\(2, 3\) needs 3 distinct points, got \(0, 1, 1\)"),
    ((0, 1), r"F\(2, 3\) needs 3 distinct points, got \(0, 1\)"),
    ((0, 1, -1, 2), r"F\(2, 3\) needs 3 distinct points, got \(0, 1, -1, 2\)"),
])
def test_toom_cook_rejects_bad_points(points, message):
    with pytest.raises(cb.ShapeError, match=message) as info:
        toom_cook(2, 3, points)
    # A library error, and still the ValueError callers unaware of the library catch.
    assert isinstance(info.value, cb.ConvError) and isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tile, k", [(2, 3), (4, 3), (6, 3), (2, 5), (4, 5)])
def test_winograd_tile_sizes_2d(tile, k, dtype):
    rng = np.random.default_rng(tile * 7 + k)
    x, w, b = conv_arrays(rng, (2, 6, 19, 14), (8, 6, k, k), dtype)
    backend = WinogradBackend(tile=tile)
    pads = ((1, 2), (k // 2, 0))
    y = cb.conv2d(x, w, b, padding=pads, backend=backend)
    assert y.dtype == dtype
    assert relative_error(y, oracle.conv(x, w, b, padding=pads)) < TOL[dtype]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("nd, k", [(1, 3), (1, 5), (2, (3, 5)), (2, (1, 3)), (3, 3)])
def test_winograd_dims_groups_padding(nd, k, dtype):
    rng = np.random.default_rng(nd)
    kernel = k if isinstance(k, tuple) else (k,) * nd
    spatial = (13, 11, 9)[:nd]
    x, w, b = conv_arrays(rng, (3, 6) + spatial, (4, 3) + kernel, dtype)
    pads = [(1, 0), (2, 2), (0, 1)][:nd]
    y = cb.conv(x, w, b, padding=pads, groups=2, backend="winograd")
    assert relative_error(y, oracle.conv(x, w, b, padding=pads, groups=2)) < TOL[dtype]


def test_winograd_chunks_of_tile_rows():
    # A chunk smaller than one sample's tiles: rows of one sample are split across chunks.
    rng = np.random.default_rng(3)
    x, w, b = conv_arrays(rng, (2, 4, 37, 21), (5, 4, 3, 3), "float64")
    backend = WinogradBackend(chunk_bytes=1)
    spec = conv_spec("c", x.shape, w.shape, padding=1)[0]
    assert backend.plan("conv", spec)["rows_per_chunk"] == 1
    assert WinogradBackend().plan("conv", spec)["rows_per_chunk"] > 1
    assert backend.workspace_bytes("conv", spec) < WinogradBackend().workspace_bytes("conv",
                                                                                      spec)
    y = cb.conv2d(x, w, b, padding=1, backend=backend)
    assert relative_error(y, oracle.conv(x, w, b, padding=1)) < 1e-12


def test_winograd_writes_out_and_leaves_inputs_alone():
    rng = np.random.default_rng(4)
    x, w, b = conv_arrays(rng, (2, 3, 10, 10), (4, 3, 3, 3), "float32")
    x = np.asfortranarray(x)
    copies = [a.copy() for a in (x, w, b)]
    out = np.full((2, 4, 10, 10), np.nan, np.float32)
    y = cb.conv2d(x, w, b, padding=1, backend="winograd", out=out)
    assert y is out
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)
    assert relative_error(y, oracle.conv(x, w, b, padding=1)) < 1e-4


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize("kwargs, reason", [
    ({"stride": 2}, "needs stride 1"),
    ({"dilation": 2}, "needs dilation 1"),
])
def test_winograd_declines_with_reason(kwargs, reason):
    x = np.zeros((1, 2, 12, 12), np.float32)
    w = np.zeros((2, 2, 3, 3), np.float32)
    with pytest.raises(cb.UnsupportedError, match=reason):
        cb.conv2d(x, w, backend="winograd", **kwargs)


def test_winograd_declines_other_ops_and_kernels():
    x = np.zeros((1, 2, 12, 12), np.float32)
    with pytest.raises(cb.UnsupportedError, match="no tile size for kernel"):
        cb.conv2d(x, np.zeros((2, 2, 9, 9), np.float32), backend="winograd")
    with pytest.raises(cb.UnsupportedError, match="winograd computes convolutions only"):
        cb.max_pool2d(x, 2, backend="winograd")
    with pytest.raises(cb.UnsupportedError, match="interpolation points"):
        cb.conv2d(x, np.zeros((2, 2, 3, 3), np.float32), backend=WinogradBackend(tile=7))
    spec = conv_spec("c", x.shape, (2, 2, 3, 3), op="conv_transpose")[0]
    assert WinogradBackend().supports("conv_transpose", spec) == \
        "winograd computes convolutions only, not conv_transpose"


def test_winograd_runs_lowered_conv_transpose():
    # No transposed kernel of its own: named for one, winograd runs the stride-1
    # convolution it is lowered into (spread input, flipped filters).
    rng = np.random.default_rng(9)
    x, w, b = conv_arrays(rng, (2, 4, 7, 6), (4, 3, 3, 3), "float64", bias_channels=3)
    y = cb.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1,
                            backend="winograd")
    ref = oracle.conv_transpose(x, w, b, stride=2, padding=1, output_padding=1)
    assert relative_error(y, ref) < 1e-10


# --------------------------------------------------------------------------- filter cache


def test_winograd_filter_transform_cached_per_weight():
    rng = np.random.default_rng(5)
    x, w, _ = conv_arrays(rng, (1, 4, 9, 9), (4, 4, 3, 3), "float64", bias=False)
    backend = WinogradBackend()
    cache = backend.filter_cache
    y1 = cb.conv2d(x, w, backend=backend)
    y2 = cb.conv2d(x, w, backend=backend)
    assert (cache.misses, cache.hits) == (1, 1)
    np.testing.assert_array_equal(y1, y2)


def test_winograd_cache_sees_in_place_change():
    rng = np.random.default_rng(6)
    x, w, _ = conv_arrays(rng, (1, 4, 9, 9), (4, 4, 3, 3), "float64", bias=False)
    backend = WinogradBackend()
    cb.conv2d(x, w, backend=backend)
    w[1, 2, 0, 1] += 1.0          # in place: same object, same address
    y = cb.conv2d(x, w, backend=backend)
    assert relative_error(y, oracle.conv(x, w)) < 1e-12
    base = np.ascontiguousarray(w)
    view = base[:, :, :, :]
    cb.conv2d(x, view, backend=backend)
    base[0] *= -2.0               # through another view of the same memory
    assert relative_error(cb.conv2d(x, view, backend=backend), oracle.conv(x, base)) < 1e-12


def test_winograd_cache_sees_recycled_address():
    # Simulate CPython giving a new array the address of a dead one: move the dead array's
    # entry to the new array's id. The weak reference must refuse it.
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 4, 9, 9))
    backend = WinogradBackend()
    cache = backend.filter_cache
    old = rng.standard_normal((4, 4, 3, 3))
    cb.conv2d(x, old, backend=backend)
    new = old.copy()            # equal bytes: only the weak reference can tell them apart
    del old
    gc.collect()
    (key, entry), = cache._entries.items()
    cache._entries[(id(new),) + key[1:]] = cache._entries.pop(key)
    assert relative_error(cb.conv2d(x, new, backend=backend), oracle.conv(x, new)) < 1e-12
    assert cache.misses == 2


def test_winograd_cache_is_bounded():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 8, 6, 6))
    backend = WinogradBackend(cache_bytes=1)
    weights = [rng.standard_normal((8, 8, 3, 3)) for _ in range(3)]
    for w in weights:
        cb.conv2d(x, w, backend=backend)
    assert len(backend.filter_cache._entries) == 1


def test_winograd_explain_names_the_tiles():
    report = cb.explain((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
    plan = report.backends["winograd"].plan
    assert plan["algorithm"] == "F(4,3) x F(4,3)"
    assert report.backends["winograd"].workspace_bytes > 0
