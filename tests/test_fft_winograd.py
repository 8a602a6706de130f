"""Backend-specific tests of ``fft`` and ``winograd`` (the conformance suite covers the grid).

Winograd: the generated Toom-Cook transforms are exact in rational arithmetic; every tile
size meets the accuracy contract; the filter-transform cache never serves a stale transform.
FFT: the whole-image and overlap-save plans, chunking under a small workspace limit, and
transposed convolution with every parameter.
"""

import gc
from fractions import Fraction

import numpy as np
import pytest

import convbackends as cb
from convbackends.backends.fft import FFTBackend
from convbackends.backends.winograd import WinogradBackend, toom_cook
from convbackends.spec import conv_spec
from reference import oracle

TOL = {"float32": 1e-4, "float64": 1e-10}


def _rel(y, ref):
    return np.linalg.norm(np.asarray(y, np.float64) - ref) / np.linalg.norm(ref)


def _data(rng, x_shape, w_shape, dtype, bias=True):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if bias else None
    return x, w, b


def _oracle_conv(x, w, b, stride=1, padding=0, dilation=1, groups=1):
    nd = w.ndim - 2
    pairs = padding if isinstance(padding, (list, tuple)) else [(padding, padding)] * nd
    return oracle.conv(x.astype(np.float64), w.astype(np.float64),
                       None if b is None else b.astype(np.float64), stride=stride,
                       padding=pairs, dilation=dilation, groups=groups)


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


def test_toom_cook_rejects_bad_points():
    with pytest.raises(ValueError, match="distinct points"):
        toom_cook(2, 3, (0, 1, 1))


# --------------------------------------------------------------------------- winograd


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("tile, k", [(2, 3), (4, 3), (6, 3), (2, 5), (4, 5)])
def test_winograd_tile_sizes_2d(tile, k, dtype):
    rng = np.random.default_rng(tile * 7 + k)
    x, w, b = _data(rng, (2, 6, 19, 14), (8, 6, k, k), dtype)
    backend = WinogradBackend(tile=tile)
    y = cb.conv2d(x, w, b, padding=((1, 2), (k // 2, 0)), backend=backend)
    assert y.dtype == dtype
    assert _rel(y, _oracle_conv(x, w, b, padding=((1, 2), (k // 2, 0)))) < TOL[dtype]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("nd, k", [(1, 3), (1, 5), (2, (3, 5)), (2, (1, 3)), (3, 3)])
def test_winograd_dims_groups_padding(nd, k, dtype):
    rng = np.random.default_rng(nd)
    kernel = k if isinstance(k, tuple) else (k,) * nd
    spatial = (13, 11, 9)[:nd]
    x, w, b = _data(rng, (3, 6) + spatial, (4, 3) + kernel, dtype)
    pads = [(1, 0), (2, 2), (0, 1)][:nd]
    y = cb.conv(x, w, b, padding=pads, groups=2, backend="winograd")
    assert _rel(y, _oracle_conv(x, w, b, padding=pads, groups=2)) < TOL[dtype]


def test_winograd_chunks_of_tile_rows():
    # A chunk smaller than one sample's tiles: rows of one sample are split across chunks.
    rng = np.random.default_rng(3)
    x, w, b = _data(rng, (2, 4, 37, 21), (5, 4, 3, 3), "float64")
    backend = WinogradBackend(chunk_bytes=1)
    assert backend.plan("conv", conv_spec("c", x.shape, w.shape)[0])["rows_per_chunk"] == 1
    y = cb.conv2d(x, w, b, padding=1, backend=backend)
    assert _rel(y, _oracle_conv(x, w, b, padding=1)) < 1e-12


def test_winograd_writes_out_and_leaves_inputs_alone():
    rng = np.random.default_rng(4)
    x, w, b = _data(rng, (2, 3, 10, 10), (4, 3, 3, 3), "float32")
    x = np.asfortranarray(x)
    copies = [a.copy() for a in (x, w, b)]
    out = np.empty((2, 4, 10, 10), np.float32)
    y = cb.conv2d(x, w, b, padding=1, backend="winograd", out=out)
    assert y is out
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)
    assert _rel(y, _oracle_conv(x, w, b, padding=1)) < 1e-4


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
    with pytest.raises(cb.UnsupportedError, match="convolutions only"):
        cb.conv_transpose2d(x, np.zeros((2, 2, 3, 3), np.float32), backend="winograd")
    with pytest.raises(cb.UnsupportedError, match="convolutions only"):
        cb.max_pool2d(x, 2, backend="winograd")
    with pytest.raises(cb.UnsupportedError, match="interpolation points"):
        cb.conv2d(x, np.zeros((2, 2, 3, 3), np.float32), backend=WinogradBackend(tile=7))


def test_winograd_filter_transform_cached_per_weight():
    rng = np.random.default_rng(5)
    x, w, _ = _data(rng, (1, 4, 9, 9), (4, 4, 3, 3), "float64", bias=False)
    backend = WinogradBackend()
    cache = backend.filter_cache
    y1 = cb.conv2d(x, w, backend=backend)
    y2 = cb.conv2d(x, w, backend=backend)
    assert (cache.misses, cache.hits) == (1, 1)
    np.testing.assert_array_equal(y1, y2)


def test_winograd_cache_sees_in_place_change():
    rng = np.random.default_rng(6)
    x, w, _ = _data(rng, (1, 4, 9, 9), (4, 4, 3, 3), "float64", bias=False)
    backend = WinogradBackend()
    cb.conv2d(x, w, backend=backend)
    w[1, 2, 0, 1] += 1.0          # in place: same object, same address
    y = cb.conv2d(x, w, backend=backend)
    assert _rel(y, _oracle_conv(x, w, None)) < 1e-12
    base = np.ascontiguousarray(w)
    view = base[:, :, :, :]
    cb.conv2d(x, view, backend=backend)
    base[0] *= -2.0               # through another view of the same memory
    assert _rel(cb.conv2d(x, view, backend=backend), _oracle_conv(x, base, None)) < 1e-12


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
    assert _rel(cb.conv2d(x, new, backend=backend), _oracle_conv(x, new, None)) < 1e-12
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


# --------------------------------------------------------------------------- fft


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fft_whole_image_plan(dtype):
    rng = np.random.default_rng(10)
    x, w, b = _data(rng, (1, 1, 64, 64), (2, 1, 31, 31), dtype)
    spec = conv_spec("c", x.shape, w.shape, padding=15)[0]
    assert FFTBackend().plan("conv", spec)["method"] == "whole image"
    y = cb.conv2d(x, w, b, padding=15, backend="fft")
    assert y.dtype == dtype
    assert _rel(y, _oracle_conv(x, w, b, padding=15)) < TOL[dtype]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("stride, dilation, padding", [
    (1, 1, 1), ((2, 3), 1, ((0, 2), (3, 1))), (1, (2, 1), 2), (3, 2, ((4, 0), (1, 5)))])
def test_fft_overlap_save(stride, dilation, padding, dtype):
    rng = np.random.default_rng(11)
    x, w, b = _data(rng, (2, 4, 150, 97), (6, 2, 3, 5), dtype)
    spec = conv_spec("c", x.shape, w.shape, stride=stride, padding=padding,
                     dilation=dilation, groups=2)[0]
    assert FFTBackend().plan("conv", spec)["method"] == "overlap-save"
    y = cb.conv2d(x, w, b, stride, padding, dilation, groups=2, backend="fft")
    ref = _oracle_conv(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=2)
    assert _rel(y, ref) < TOL[dtype]


@pytest.mark.parametrize("nd", [1, 3])
def test_fft_1d_3d(nd):
    rng = np.random.default_rng(12)
    spatial = (300,) if nd == 1 else (20, 17, 23)
    x, w, b = _data(rng, (2, 3) + spatial, (5, 3) + (4,) * nd, "float64")
    y = cb.conv(x, w, b, stride=2, padding=3, dilation=2, backend="fft")
    assert _rel(y, _oracle_conv(x, w, b, stride=2, padding=3, dilation=2)) < 1e-10


def test_fft_chunks_under_workspace_limit():
    rng = np.random.default_rng(13)
    x, w, b = _data(rng, (3, 8, 70, 40), (8, 8, 5, 5), "float64")
    small = FFTBackend(workspace_limit=200_000)
    spec = conv_spec("c", x.shape, w.shape, padding=2)[0]
    big = FFTBackend().workspace_bytes("conv", spec)
    assert small.workspace_bytes("conv", spec) < big
    assert small.plan("conv", spec)["rows_per_chunk"] < FFTBackend().plan("conv", spec)[
        "rows_per_chunk"]
    y = cb.conv2d(x, w, b, padding=2, backend=small)
    assert _rel(y, _oracle_conv(x, w, b, padding=2)) < 1e-10


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("stride, padding, output_padding, dilation, groups", [
    (1, 0, 0, 1, 1), (2, 1, 1, 1, 2), (3, 4, 2, 2, 1), (2, 0, 1, 3, 2)])
def test_fft_conv_transpose(nd, stride, padding, output_padding, dilation, groups):
    rng = np.random.default_rng(14)
    spatial = (9, 7, 6)[:nd]
    x = rng.standard_normal((2, 4) + spatial)
    w = rng.standard_normal((4, 3) + (3, 2, 3)[:nd])
    b = rng.standard_normal(3 * groups)
    y = cb.conv_transpose(x, w, b, stride, padding, output_padding, groups, dilation,
                          backend="fft")
    ref = oracle.conv_transpose(x, w, b, stride=stride, padding=padding,
                                output_padding=output_padding, groups=groups,
                                dilation=dilation)
    assert _rel(y, ref) < 1e-10


def test_fft_leaves_inputs_alone_and_takes_views():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((2, 6, 40, 30)).astype(np.float32)[:, ::2, :, ::-1]
    w, b = rng.standard_normal((4, 3, 5, 5)).astype(np.float32), None
    copies = [a.copy() for a in (x, w)]
    y = cb.conv2d(x, w, b, padding=2, backend="fft")
    for a, c in zip((x, w), copies):
        np.testing.assert_array_equal(a, c)
    assert _rel(y, _oracle_conv(x, w, b, padding=2)) < 1e-4


def test_fft_declines_pooling():
    with pytest.raises(cb.UnsupportedError, match="convolutions only"):
        cb.avg_pool2d(np.zeros((1, 1, 4, 4)), 2, backend="fft")


def test_fft_explain_shows_method():
    text = str(cb.explain((1, 1, 512, 512), (1, 1, 31, 31), padding=15))
    assert "method=" in text
