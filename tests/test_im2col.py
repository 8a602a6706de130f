"""Backend-specific tests of ``im2col`` (the conformance suite covers the shared grid).

Each path the backend takes is forced and observed: a 1x1 stride-1 kernel reads the input as
its column matrix (no unfold), small outputs put the batch into the GEMM's columns, larger
ones run one GEMM per sample, grouped and transposed calls, and the unfold split across
threads. The workspace is bounded by ``workspace_limit``: with a small limit the batch runs
in chunks, ``workspace_bytes`` and ``plan`` say so, the memory really stays bounded, and the
results still match the float64 oracle.
"""

import math
import threading
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

import convbackends as cb
from conftest import conv_arrays
from convbackends.backends import im2col
from convbackends.backends.im2col import DEFAULT_WORKSPACE_LIMIT, SMALL_OUTPUT, Im2colBackend
from convbackends.spec import conv_spec
from convbackends.tools.measure import relative_error, tolerance
from reference import oracle

DTYPES = ["float32", "float64"]


def tol(dtype):
    return tolerance("im2col", dtype)


def spec_of(x_shape, w_shape, dtype="float32", **kwargs):
    return conv_spec("test", x_shape, w_shape, dtype=dtype, **kwargs)[0]


def columns_bytes(spec):
    """One sample's unfolded columns: ``C * prod(kernel) * prod(out)`` elements."""
    return (spec.in_channels * math.prod(spec.kernel) * math.prod(spec.output_spatial)
            * spec.itemsize)


def transpose_bytes(spec):
    """One sample's workspace in a transposed call: ``W_groupᵀ @ x`` for every kernel tap,
    and the full output before the padding is cropped."""
    cols = spec.out_channels * math.prod(spec.kernel) * math.prod(spec.input_spatial)
    full = spec.out_channels * math.prod(
        o + pb + pa for o, (pb, pa) in zip(spec.output_spatial, spec.padding))
    return (cols + full) * spec.itemsize


@pytest.fixture
def unfolds(monkeypatch):
    """Every column fill, as ``(thread name, samples)``."""
    calls = []
    real = im2col._fill_columns

    def spy(cols, x, spec):
        calls.append((threading.current_thread().name, len(x)))
        real(cols, x, spec)

    monkeypatch.setattr(im2col, "_fill_columns", spy)
    return calls


@pytest.fixture
def batch_gemms(monkeypatch):
    """Counts the calls of the batch-in-columns GEMM path."""
    calls = []
    real = Im2colBackend._conv_batch_gemm

    def spy(self, x, w, y, spec, *finish):
        calls.append(len(x))
        real(self, x, w, y, spec, *finish)

    monkeypatch.setattr(Im2colBackend, "_conv_batch_gemm", spy)
    return calls


def cores(monkeypatch, n):
    """Make im2col see ``n`` CPUs (only im2col: its own ``os`` name is replaced)."""
    monkeypatch.setattr(im2col, "os", SimpleNamespace(cpu_count=lambda: n))


# --------------------------------------------------------------------------- 1x1, stride 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spatial, groups", [((11,), 1), ((7, 9), 1), ((7, 9), 3),
                                             ((4, 5, 3), 2)])
def test_pointwise_reads_input_as_columns(spatial, groups, dtype, unfolds, rng):
    nd = len(spatial)
    x, w, b = conv_arrays(rng, (3, 6) + spatial, (6, 6 // groups) + (1,) * nd, dtype)
    spec = spec_of(x.shape, w.shape, dtype, groups=groups)
    for backend in (Im2colBackend(), Im2colBackend(workspace_limit=1)):
        assert backend.plan("conv", spec) == {"unfold": "none (1x1, stride 1)",
                                              "gemm": "per group"}
        assert backend.workspace_bytes("conv", spec) == 0
        y = cb.conv(x, w, b, groups=groups, backend=backend)
        assert y.dtype == dtype and y.shape == (3, 6) + spatial
        assert relative_error(y, oracle.conv(x, w, b, groups=groups)) < tol(dtype)
    assert unfolds == []


@pytest.mark.parametrize("kwargs, unfolded", [
    ({"stride": 2}, True),
    ({"stride": (1, 3)}, True),
    ({"padding": 1}, True),
    ({"padding": [(0, 1), (0, 0)]}, True),
    ({"dilation": 3}, False),          # a 1x1 kernel ignores dilation
    ({"padding": "same"}, False),      # which is no padding for 1x1
])
def test_pointwise_unfolds_only_when_strided_or_padded(kwargs, unfolded, unfolds, rng):
    x, w, b = conv_arrays(rng, (2, 4, 8, 7), (5, 4, 1, 1), "float64")
    spec = spec_of(x.shape, w.shape, "float64", **kwargs)
    backend = Im2colBackend()
    assert ("batch_chunk" in backend.plan("conv", spec)) == unfolded
    assert (backend.workspace_bytes("conv", spec) > 0) == unfolded
    y = cb.conv2d(x, w, b, backend=backend, **kwargs)
    pads = spec.padding
    ref = oracle.conv(x, w, b, stride=spec.stride, padding=pads, dilation=spec.dilation)
    assert relative_error(y, ref) < 1e-12
    assert (len(unfolds) > 0) == unfolded


# --------------------------------------------------------------------------- GEMM layouts


SMALL_CASES = [
    ((5, 4, 9, 8), (6, 4, 3, 3), {"padding": 1}),
    ((3, 4, 15, 13), (6, 2, 3, 2), {"stride": 2, "dilation": (2, 1), "groups": 2,
                                    "padding": [(2, 0), (1, 3)]}),
    ((4, 3, 30), (5, 3, 4), {"stride": 3, "padding": [(2, 1)]}),
    ((2, 2, 5, 6, 7), (3, 2, 3, 3, 3), {"padding": 1}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, kwargs", SMALL_CASES)
def test_small_outputs_put_batch_in_columns(x_shape, w_shape, kwargs, dtype, batch_gemms,
                                            rng):
    x, w, b = conv_arrays(rng, x_shape, w_shape, dtype)
    spec = spec_of(x_shape, w_shape, dtype, **kwargs)
    assert math.prod(spec.output_spatial) < SMALL_OUTPUT
    backend = Im2colBackend()
    assert backend.plan("conv", spec)["gemm"] == "per group, batch in columns"
    y = cb.conv(x, w, b, backend=backend, **kwargs)
    assert batch_gemms == [x_shape[0]]
    ref = oracle.conv(x, w, b, stride=spec.stride, padding=spec.padding,
                      dilation=spec.dilation, groups=spec.groups)
    assert relative_error(y, ref) < tol(dtype)


@pytest.mark.parametrize("length, batch_in_columns", [(SMALL_OUTPUT + 1, True),
                                                      (SMALL_OUTPUT + 2, False)])
def test_small_output_threshold(length, batch_in_columns, batch_gemms, rng):
    # Kernel 3 without padding: SMALL_OUTPUT - 1 and SMALL_OUTPUT outputs.
    x, w, b = conv_arrays(rng, (3, 2, length), (4, 2, 3), "float64")
    spec = spec_of(x.shape, w.shape, "float64")
    expected = "per group, batch in columns" if batch_in_columns else "per group and sample"
    assert Im2colBackend().plan("conv", spec)["gemm"] == expected
    y = cb.conv1d(x, w, b, backend="im2col")
    assert len(batch_gemms) == int(batch_in_columns)
    assert relative_error(y, oracle.conv(x, w, b)) < 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
def test_large_outputs_gemm_per_sample(dtype, batch_gemms, unfolds, rng):
    x, w, b = conv_arrays(rng, (2, 3, 20, 17), (4, 3, 3, 3), dtype)
    spec = spec_of(x.shape, w.shape, dtype, padding=(1, 0))
    assert math.prod(spec.output_spatial) >= SMALL_OUTPUT
    assert Im2colBackend().plan("conv", spec)["gemm"] == "per group and sample"
    y = cb.conv2d(x, w, b, padding=(1, 0), backend="im2col")
    assert batch_gemms == [] and sum(n for _, n in unfolds) == 2
    assert relative_error(y, oracle.conv(x, w, b, padding=(1, 0))) < tol(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spatial", [(7, 6), (19, 18)], ids=["batch-in-columns", "per-sample"])
@pytest.mark.parametrize("groups, out_channels", [(1, 4), (2, 4), (3, 9), (6, 6), (6, 12)])
def test_grouped(groups, out_channels, spatial, dtype, rng):
    # groups=6 with 6 input channels is depthwise; 12 outputs give a multiplier of 2.
    x, w, b = conv_arrays(rng, (2, 6) + spatial, (out_channels, 6 // groups, 3, 3), dtype)
    y = cb.conv2d(x, w, b, padding=1, groups=groups, backend="im2col")
    assert relative_error(y, oracle.conv(x, w, b, padding=1, groups=groups)) < tol(dtype)


def test_taps_wholly_in_padding(rng):
    # Several kernel taps never touch the input: their column slabs are all zero.
    x, w, b = conv_arrays(rng, (2, 3, 2), (4, 3, 5), "float64")
    y = cb.conv1d(x, w, b, padding=4, dilation=2, backend="im2col")
    assert y.shape == (2, 4, 2)
    assert relative_error(y, oracle.conv(x, w, b, padding=4, dilation=2)) < 1e-12
    x, w, b = conv_arrays(rng, (2, 2, 5, 4), (3, 2, 4, 3), "float64")
    kw = {"stride": 3, "padding": [(5, 0), (0, 4)], "dilation": (2, 3)}
    y = cb.conv2d(x, w, b, backend="im2col", **kw)
    assert relative_error(y, oracle.conv(x, w, b, **kw)) < 1e-12


def test_views_out_and_unbatched_input(rng):
    base = rng.standard_normal((2, 6, 12, 11)).astype(np.float32)
    x = base[:, ::2, ::-1, 1:]                 # strided channels, reversed rows
    w, b = rng.standard_normal((4, 3, 3, 3)).astype(np.float32), None
    copies = x.copy(), w.copy()
    out = np.full((2, 4, 6, 5), np.nan, np.float32)
    y = cb.conv2d(x, w, b, stride=2, padding=1, backend="im2col", out=out)
    assert y is out
    np.testing.assert_array_equal(x, copies[0])
    np.testing.assert_array_equal(w, copies[1])
    assert relative_error(y, oracle.conv(x, w, stride=2, padding=1)) < 1e-5
    single = cb.conv2d(x[1], w, stride=2, padding=1, backend="im2col")
    assert single.shape == (4, 6, 5)
    assert relative_error(single, oracle.conv(x[1:], w, stride=2, padding=1)[0]) < 1e-5


# --------------------------------------------------------------------------- transposed


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nd, stride, padding, output_padding, dilation, groups", [
    (1, 1, 0, 0, 1, 1),
    (1, 3, [(2, 0)], 2, 2, 2),
    (2, 2, 1, 1, 1, 2),
    (2, (3, 1), [(1, 3), (0, 2)], (2, 0), (1, 2), 1),
    (3, 2, 1, (1, 0, 1), 1, 2),
])
def test_conv_transpose(nd, stride, padding, output_padding, dilation, groups, dtype, rng):
    spatial = (7, 6, 4)[:nd]
    x, w, b = conv_arrays(rng, (2, 4) + spatial, (4, 3) + (3, 2, 3)[:nd], dtype,
                          bias_channels=3 * groups)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
              dilation=dilation)
    spec = spec_of(x.shape, w.shape, dtype, op="conv_transpose", **kw)
    plan = Im2colBackend().plan("conv_transpose", spec)
    assert plan["batch_chunk"] == 2 and plan["gemm"] == "per group and sample"
    y = cb.conv_transpose(x, w, b, backend="im2col", **kw)
    assert y.shape == spec.output_shape and y.dtype == dtype
    ref = oracle.conv_transpose(x, w, b, stride=stride, padding=spec.padding,
                                output_padding=output_padding, groups=groups,
                                dilation=dilation)
    assert relative_error(y, ref) < tol(dtype)


# --------------------------------------------------------------------------- threads


def test_unfold_split_across_threads(monkeypatch, unfolds, rng):
    cores(monkeypatch, 4)
    x, w, b = conv_arrays(rng, (5, 8, 40, 40), (4, 8, 3, 3), "float32")
    backend = Im2colBackend()
    y = cb.conv2d(x, w, b, padding=1, backend=backend)
    # Four workers for five samples: slices of 1, 1, 1 and 2 samples, each on a pool thread.
    assert sorted(n for _, n in unfolds) == [1, 1, 1, 2]
    assert all(name.startswith("convbackends-im2col") for name, _ in unfolds)
    assert relative_error(y, oracle.conv(x, w, b, padding=1)) < 1e-5
    pool = backend._pool
    assert pool is not None
    cb.conv2d(x, w, b, padding=1, backend=backend)
    assert backend._pool is pool and len(unfolds) == 8


def test_threaded_unfold_into_batch_columns(monkeypatch, unfolds, batch_gemms, rng):
    # Small outputs: the threads fill a view with the batch axis moved inside the columns.
    cores(monkeypatch, 4)
    x, w, b = conv_arrays(rng, (4, 64, 14, 14), (8, 64, 3, 3), "float64")
    y = cb.conv2d(x, w, b, padding=1, backend=Im2colBackend())
    assert batch_gemms == [4]
    assert sorted(n for _, n in unfolds) == [1, 1, 1, 1]
    assert all(name.startswith("convbackends-im2col") for name, _ in unfolds)
    assert relative_error(y, oracle.conv(x, w, b, padding=1)) < 1e-12


@pytest.mark.parametrize("n_cores, shape", [(4, (2, 3, 9, 9)), (1, (5, 8, 40, 40))],
                         ids=["small-unfold", "one-core"])
def test_unfold_stays_on_caller_thread(monkeypatch, unfolds, n_cores, shape, rng):
    cores(monkeypatch, n_cores)
    x, w, b = conv_arrays(rng, shape, (4, shape[1], 3, 3), "float32")
    backend = Im2colBackend()
    y = cb.conv2d(x, w, b, padding=1, backend=backend)
    assert unfolds == [(threading.current_thread().name, shape[0])]
    assert backend._pool is None
    assert relative_error(y, oracle.conv(x, w, b, padding=1)) < 1e-5


# --------------------------------------------------------------------------- workspace


def test_default_workspace_limit():
    assert DEFAULT_WORKSPACE_LIMIT == 256 * 2**20
    assert Im2colBackend().workspace_limit == DEFAULT_WORKSPACE_LIMIT
    assert Im2colBackend(workspace_limit=1000).workspace_limit == 1000


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((3, 3, 20, 17), (4, 3, 3, 3), {"padding": 1}),                     # per sample
    ((4, 5, 9, 8), (6, 5, 3, 3), {"stride": (1, 2), "groups": 1}),       # batch in columns
    ((3, 4, 11, 10, 9), (6, 2, 2, 3, 2), {"groups": 2, "dilation": 2}),  # 3-D, per sample
])
def test_tiny_limit_runs_one_sample_at_a_time(x_shape, w_shape, kwargs, dtype, monkeypatch,
                                              unfolds, rng):
    cores(monkeypatch, 1)
    n = x_shape[0]
    x, w, b = conv_arrays(rng, x_shape, w_shape, dtype)
    spec = spec_of(x_shape, w_shape, dtype, **kwargs)
    tiny, default = Im2colBackend(workspace_limit=1), Im2colBackend()
    assert tiny.plan("conv", spec)["batch_chunk"] == 1
    assert default.plan("conv", spec)["batch_chunk"] == n
    assert tiny.workspace_bytes("conv", spec) == columns_bytes(spec)
    assert default.workspace_bytes("conv", spec) == n * columns_bytes(spec)
    out = np.full(spec.output_shape, np.nan, dtype)    # every chunk must write its samples
    y = cb.conv(x, w, b, backend=tiny, out=out, **kwargs)
    assert y is out
    assert [s for _, s in unfolds] == [1] * n
    ref = oracle.conv(x, w, b, stride=spec.stride, padding=spec.padding,
                      dilation=spec.dilation, groups=spec.groups)
    assert relative_error(y, ref) < tol(dtype)


@pytest.mark.parametrize("batch_in_columns", [False, True])
def test_limit_between_samples_gives_uneven_chunks(batch_in_columns, monkeypatch, unfolds,
                                                   rng):
    cores(monkeypatch, 1)
    spatial = (8, 9) if batch_in_columns else (20, 21)
    x, w, b = conv_arrays(rng, (5, 3) + spatial, (4, 3, 3, 3), "float64")
    spec = spec_of(x.shape, w.shape, "float64", padding=1)
    per_sample = columns_bytes(spec)
    backend = Im2colBackend(workspace_limit=2 * per_sample + per_sample // 2)
    assert backend.plan("conv", spec)["batch_chunk"] == 2
    assert backend.workspace_bytes("conv", spec) == 2 * per_sample
    y = cb.conv2d(x, w, b, padding=1, backend=backend)
    assert [s for _, s in unfolds] == [2, 2, 1]
    assert relative_error(y, oracle.conv(x, w, b, padding=1)) < 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
def test_tiny_limit_chunks_conv_transpose(dtype, monkeypatch, rng):
    chunks = []
    real = im2col._offsets
    # The transposed call walks the kernel offsets once per chunk.
    monkeypatch.setattr(im2col, "_offsets", lambda k: chunks.append(k) or real(k))
    x, w, b = conv_arrays(rng, (3, 4, 6, 5), (4, 3, 3, 3), dtype, bias_channels=6)
    kw = dict(stride=2, padding=1, output_padding=1, groups=2)
    spec = spec_of(x.shape, w.shape, dtype, op="conv_transpose", **kw)
    tiny, default = Im2colBackend(workspace_limit=1), Im2colBackend()
    assert tiny.plan("conv_transpose", spec)["batch_chunk"] == 1
    assert default.plan("conv_transpose", spec)["batch_chunk"] == 3
    assert tiny.workspace_bytes("conv_transpose", spec) == transpose_bytes(spec)
    assert default.workspace_bytes("conv_transpose", spec) == 3 * transpose_bytes(spec)
    out = np.full(spec.output_shape, np.nan, dtype)
    y = cb.conv_transpose2d(x, w, b, backend=tiny, out=out, **kw)
    assert y is out and len(chunks) == 3
    ref = oracle.conv_transpose(x, w, b, **kw)
    assert relative_error(y, ref) < tol(dtype)


def _peak_bytes(call):
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("op", ["conv", "conv_transpose"])
def test_limit_bounds_the_memory_really_used(op, monkeypatch, rng):
    # NumPy reports its allocations to tracemalloc: the peak of a chunked call stays near
    # one sample's workspace, while the unchunked one holds the whole batch's.
    cores(monkeypatch, 1)
    n = 8
    if op == "conv":
        x, w, b = conv_arrays(rng, (n, 3, 64, 64), (4, 3, 3, 3), "float64")
        kw = {"padding": 1}
    else:
        x, w, b = conv_arrays(rng, (n, 4, 24, 24), (4, 3, 3, 3), "float64", bias_channels=3)
        kw = {"stride": 2, "padding": 1, "output_padding": 1}
    spec = spec_of(x.shape, w.shape, "float64", op=op, **kw)
    func = cb.conv2d if op == "conv" else cb.conv_transpose2d
    out = np.empty(spec.output_shape)
    tiny, default = Im2colBackend(workspace_limit=1), Im2colBackend()
    per_sample = tiny.workspace_bytes(op, spec)
    assert default.workspace_bytes(op, spec) == n * per_sample
    chunked = _peak_bytes(lambda: func(x, w, b, backend=tiny, out=out, **kw))
    whole = _peak_bytes(lambda: func(x, w, b, backend=default, out=out, **kw))
    assert chunked < 2 * per_sample + 2**16
    assert whole >= n * per_sample
    ref = (oracle.conv(x, w, b, **kw) if op == "conv" else oracle.conv_transpose(x, w, b, **kw))
    assert relative_error(out, ref) < 1e-12


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize("op", ["max_pool", "avg_pool", "adaptive_avg_pool"])
def test_declines_pooling(op):
    spec = spec_of((1, 2, 8, 8), (2, 2, 3, 3))
    assert Im2colBackend().supports(op, spec) == f"im2col computes convolutions only, not {op}"
    assert Im2colBackend().supports("conv", spec) is None
    assert Im2colBackend().supports("conv_transpose", spec) is None
