"""Backend-specific tests of ``fft`` (the conformance suite covers the shared grid).

The whole-image and overlap-save plans, strided calls through the polyphase rewrite,
chunking under a small workspace limit, and transposed convolution with every parameter.
"""

import numpy as np
import pytest

import convbackends as cb
from conftest import conv_arrays
from convbackends.backends.fft import DEFAULT_WORKSPACE_LIMIT, FFTBackend
from convbackends.spec import conv_spec
from convbackends.tools.measure import TRANSFORM_TOLERANCE, relative_error
from reference import oracle

TOL = TRANSFORM_TOLERANCE


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fft_whole_image_plan(dtype):
    rng = np.random.default_rng(10)
    x, w, b = conv_arrays(rng, (1, 1, 64, 64), (2, 1, 31, 31), dtype)
    spec = conv_spec("c", x.shape, w.shape, padding=15)[0]
    plan = FFTBackend().plan("conv", spec)
    assert plan["method"] == "whole image" and "tile" not in plan
    y = cb.conv2d(x, w, b, padding=15, backend="fft")
    assert y.dtype == dtype
    assert relative_error(y, oracle.conv(x, w, b, padding=15)) < TOL[dtype]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("stride, dilation, padding", [
    (1, 1, 1), ((2, 3), 1, ((0, 2), (3, 1))), (1, (2, 1), 2), (3, 2, ((4, 0), (1, 5)))])
def test_fft_overlap_save(stride, dilation, padding, dtype):
    rng = np.random.default_rng(11)
    x, w, b = conv_arrays(rng, (2, 4, 150, 97), (6, 2, 3, 5), dtype)
    spec = conv_spec("c", x.shape, w.shape, stride=stride, padding=padding,
                     dilation=dilation, groups=2)[0]
    plan = FFTBackend().plan("conv", spec)
    assert plan["method"] == "overlap-save" and "tile" in plan
    if stride != 1:
        assert plan["input"] == f"polyphase: {np.prod(spec.stride)} phases as channels"
    y = cb.conv2d(x, w, b, stride, padding, dilation, groups=2, backend="fft")
    ref = oracle.conv(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=2)
    assert relative_error(y, ref) < TOL[dtype]


@pytest.mark.parametrize("nd", [1, 3])
def test_fft_1d_3d(nd):
    rng = np.random.default_rng(12)
    spatial = (300,) if nd == 1 else (20, 17, 23)
    x, w, b = conv_arrays(rng, (2, 3) + spatial, (5, 3) + (4,) * nd, "float64")
    y = cb.conv(x, w, b, stride=2, padding=3, dilation=2, backend="fft")
    assert relative_error(y, oracle.conv(x, w, b, stride=2, padding=3, dilation=2)) < 1e-10


def test_fft_default_workspace_limit():
    assert DEFAULT_WORKSPACE_LIMIT == 256 * 2**20
    assert FFTBackend().workspace_limit == DEFAULT_WORKSPACE_LIMIT


def test_fft_chunks_under_workspace_limit():
    rng = np.random.default_rng(13)
    x, w, b = conv_arrays(rng, (3, 8, 70, 40), (8, 8, 5, 5), "float64")
    small = FFTBackend(workspace_limit=200_000)
    spec = conv_spec("c", x.shape, w.shape, padding=2)[0]
    big = FFTBackend().workspace_bytes("conv", spec)
    assert small.workspace_bytes("conv", spec) < big
    assert small.plan("conv", spec)["rows_per_chunk"] < FFTBackend().plan("conv", spec)[
        "rows_per_chunk"]
    y = cb.conv2d(x, w, b, padding=2, backend=small)
    assert relative_error(y, oracle.conv(x, w, b, padding=2)) < 1e-10


def test_fft_chunks_below_one_tile_row():
    # A limit below the filter spectra: still one tile row per chunk, still exact.
    rng = np.random.default_rng(16)
    x, w, b = conv_arrays(rng, (2, 3, 41, 29), (4, 3, 3, 3), "float32")
    tiny = FFTBackend(workspace_limit=1)
    spec = conv_spec("c", x.shape, w.shape, padding=1)[0]
    assert tiny.plan("conv", spec)["rows_per_chunk"] == 1
    out = np.full((2, 4, 41, 29), np.nan, np.float32)
    y = cb.conv2d(x, w, b, padding=1, backend=tiny, out=out)
    assert y is out
    assert relative_error(y, oracle.conv(x, w, b, padding=1)) < 1e-4


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
    assert relative_error(y, ref) < 1e-10


def test_fft_conv_transpose_plan_names_phases():
    spec = conv_spec("c", (1, 4, 9, 9), (4, 3, 3, 3), op="conv_transpose", stride=(2, 3))[0]
    assert FFTBackend().plan("conv_transpose", spec)["input"] == \
        "sub-pixel: 6 output phases as channels"


def test_fft_leaves_inputs_alone_and_takes_views():
    rng = np.random.default_rng(15)
    x = rng.standard_normal((2, 6, 40, 30)).astype(np.float32)[:, ::2, :, ::-1]
    w = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    copies = [a.copy() for a in (x, w)]
    y = cb.conv2d(x, w, padding=2, backend="fft")
    for a, c in zip((x, w), copies):
        np.testing.assert_array_equal(a, c)
    assert relative_error(y, oracle.conv(x, w, padding=2)) < 1e-4


def test_fft_declines_pooling():
    # Max pooling has no lowering into a convolution: naming fft for it is refused.
    with pytest.raises(cb.UnsupportedError, match="fft computes convolutions only"):
        cb.max_pool2d(np.zeros((1, 1, 4, 4)), 2, backend="fft")
    spec = conv_spec("c", (1, 1, 4, 4), (1, 1, 3, 3))[0]
    fft = FFTBackend()
    for op in ("max_pool", "avg_pool", "adaptive_avg_pool"):
        assert fft.supports(op, spec) == f"fft computes convolutions only, not {op}"
    assert fft.supports("conv", spec) is None
    assert fft.supports("conv_transpose", spec) is None


def test_fft_explain_shows_method():
    text = str(cb.explain((1, 1, 512, 512), (1, 1, 31, 31), padding=15))
    assert "method=" in text
