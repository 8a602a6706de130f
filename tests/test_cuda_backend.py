"""The ``cuda`` backend: its kernels against the oracle, device-array interop, the weight
cache, its availability reasons, and that its kernels compile for an H100 (sm_90).

Numba picks its CUDA simulator when ``numba.cuda`` is first imported, once per process, so
this file works in two ways. In a process that already simulates (``NUMBA_ENABLE_CUDASIM=1``
exported) or that has a GPU, the backend tests run in it. Otherwise they skip here and
:func:`test_simulator_run` runs this file again in a subprocess with the simulator on, so
the normal ``pytest`` run checks the kernels on every machine with numba-cuda installed.
Shapes stay tiny: the simulator runs every CUDA thread as a Python thread.
"""

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convbackends as cb
from convbackends import functional
from convbackends.backends import cuda as cuda_backend
from convbackends.backends.cuda import CudaBackend, Tile
from convbackends.backends.cuda import backend as cuda_impl
from convbackends.backends.cuda import plan as cuda_plan
from convbackends.spec import ConvSpec, adaptive_pool_spec, pool_spec, unpool_spec
from reference import oracle
from convbackends.tools.measure import TOLERANCE
from reference.calls import assert_close, run_oracle

HAS_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None
SIMULATING = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
RTOL = TOLERANCE


def _why_not_here():
    if not HAS_NUMBA_CUDA:
        return "numba-cuda is not installed"
    why = cb.get_backend("cuda").available()
    if why is not None:
        return f"cuda unavailable in this process ({why}); test_simulator_run covers it"
    return None


WHY_NOT_HERE = _why_not_here()
needs_cuda = pytest.mark.skipif(WHY_NOT_HERE is not None, reason=str(WHY_NOT_HERE))

# Variants of the convolution kernel: the implicit GEMM with the automatic tile, with a tile
# whose threads hold two groups of 4 channels (on the simulator), with the reduction split
# in 3 slices, and the direct kernel.
VARIANTS = {
    "gemm": dict(kernel="implicit_gemm"),
    "gemm_two_groups": dict(kernel="implicit_gemm",
                            tile=(32, 32, 4, 8, 4) if SIMULATING else (128, 64, 8, 8, 4)),
    "gemm_split_k": dict(kernel="implicit_gemm", split_k=3),
    "direct": dict(kernel="direct"),
}

# (func, x shape, weight shape, kwargs)
CONV_CASES = [
    ("conv1d", (2, 3, 9), (8, 3, 3), {"stride": 2, "padding": [(2, 1)]}),
    ("conv2d", (1, 4, 6, 7), (8, 2, 3, 2),
     {"stride": (2, 1), "padding": [(1, 0), (2, 1)], "dilation": (1, 2), "groups": 2}),
    ("conv2d", (2, 3, 5, 5), (9, 3, 3, 3), {"padding": 1}),
    ("conv2d", (1, 3, 7, 7), (17, 3, 1, 1), {}),
    ("conv2d", (1, 4, 5, 6), (4, 1, 3, 3), {"groups": 4, "padding": "same"}),
    ("conv3d", (1, 2, 4, 5, 4), (8, 2, 2, 3, 2),
     {"stride": (1, 2, 1), "padding": [(1, 0), (1, 1), (0, 2)], "dilation": (2, 1, 1)}),
]

TRANSPOSE_CASES = [
    ("conv_transpose1d", (2, 4, 5), (4, 3, 3), {"stride": 2, "padding": 1, "output_padding": 1}),
    ("conv_transpose2d", (1, 4, 3, 4), (4, 3, 2, 3),
     {"stride": (2, 1), "groups": 2, "dilation": (1, 2), "padding": [(1, 0), (0, 1)]}),
    ("conv_transpose3d", (1, 2, 3, 3, 2), (2, 2, 2, 2, 2), {"stride": 2}),
]

POOL_CASES = [
    ("max_pool1d", (2, 3, 9), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("max_pool2d", (1, 2, 6, 7), {"kernel_size": 2, "stride": 2, "padding": [(3, 0), (0, 1)]}),
    ("max_pool2d", (1, 2, 7, 6), {"kernel_size": (3, 2), "dilation": (2, 1), "stride": 1}),
    ("max_pool3d", (1, 2, 4, 5, 4), {"kernel_size": 2, "stride": (1, 2, 2), "padding": 1}),
    ("avg_pool1d", (2, 3, 8), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ("avg_pool2d", (1, 2, 7, 6), {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True,
                                  "count_include_pad": False}),
    ("avg_pool2d", (1, 2, 6, 6), {"kernel_size": 2, "padding": [(1, 0), (0, 1)],
                                  "dilation": (2, 1), "stride": 1}),
    ("avg_pool3d", (1, 2, 4, 4, 5), {"kernel_size": (2, 2, 3), "stride": 2, "padding": 1}),
    ("adaptive_avg_pool1d", (2, 3, 7), {"output_size": 3}),
    ("adaptive_avg_pool2d", (1, 2, 7, 5), {"output_size": (3, 4)}),
    ("adaptive_avg_pool3d", (1, 2, 5, 4, 3), {"output_size": (2, 3, 2)}),
]


def _conv_call(rng, func, x_shape, w_shape, kwargs, dtype, backend, with_bias=True):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    transposed = func.startswith("conv_transpose")
    groups = kwargs.get("groups", 1)
    out_channels = w_shape[1] * groups if transposed else w_shape[0]
    b = rng.standard_normal(out_channels).astype(dtype) if with_bias else None
    y = getattr(cb, func)(x, w, b, backend=backend, **kwargs)
    return y, run_oracle(func, kwargs, {"x": x, "weight": w, "bias": b})


# --------------------------------------------------------------------------- kernels


@needs_cuda
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}-{c[2]}")
def test_conv_matches_oracle(rng, case, variant):
    func, x_shape, w_shape, kwargs = case
    backend = CudaBackend(**VARIANTS[variant])
    y, ref = _conv_call(rng, func, x_shape, w_shape, kwargs, "float32", backend,
                        with_bias=variant != "direct")
    assert isinstance(y, np.ndarray) and y.dtype == np.float32
    assert_close(y, ref, RTOL["float32"])


@needs_cuda
@pytest.mark.parametrize("tile", cuda_backend.GPU_TILES, ids=lambda t: f"{t.bm}x{t.bn}x{t.bk}")
def test_gpu_tiles_match_oracle(rng, tile):
    kwargs = {"padding": 1, "stride": (1, 2)}
    y, ref = _conv_call(rng, "conv2d", (2, 3, 5, 6), (9, 3, 3, 3), kwargs, "float32",
                        CudaBackend(kernel="implicit_gemm", tile=tile))
    assert_close(y, ref, RTOL["float32"])


@needs_cuda
def test_split_k_float64_is_exact_and_repeatable(rng):
    backend = CudaBackend(kernel="implicit_gemm", split_k=4)
    kwargs = {"padding": 1}
    y, ref = _conv_call(rng, "conv2d", (1, 5, 4, 5), (8, 5, 3, 3), kwargs, "float64", backend)
    assert backend.plan("conv", _spec(1, 5, 8))["split_k"] == 4
    assert_close(y, ref, RTOL["float64"])


@needs_cuda
@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[0]}-{c[2]}")
def test_conv_float64_matches_oracle(rng, case):
    func, x_shape, w_shape, kwargs = case
    y, ref = _conv_call(rng, func, x_shape, w_shape, kwargs, "float64", "cuda")
    assert y.dtype == np.float64
    assert_close(y, ref, RTOL["float64"])


@needs_cuda
@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_implicit_gemm_random_geometry(data):
    nd = data.draw(st.integers(1, 3), label="nd")
    groups = data.draw(st.integers(1, 2), label="groups")
    cg = data.draw(st.integers(1, 2), label="cg")
    kg = data.draw(st.integers(1, 10), label="kg")
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(nd))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(nd))
    stride = tuple(data.draw(st.integers(1, 2)) for _ in range(nd))
    padding = [tuple(data.draw(st.integers(0, 2)) for _ in range(2)) for _ in range(nd)]
    spatial = tuple(d * (k - 1) + 1 + data.draw(st.integers(0, 3))
                    for k, d in zip(kernel, dilation, strict=True))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    func = f"conv{nd}d"
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    y, ref = _conv_call(rng, func, (1, cg * groups) + spatial, (kg * groups, cg) + kernel,
                        kwargs, "float32", CudaBackend(kernel="implicit_gemm"))
    assert_close(y, ref, RTOL["float32"])


@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=lambda c: f"{c[0]}-{c[2]}")
def test_conv_transpose_matches_oracle(rng, case, dtype):
    func, x_shape, w_shape, kwargs = case
    y, ref = _conv_call(rng, func, x_shape, w_shape, kwargs, dtype, "cuda")
    assert_close(y, ref, RTOL[dtype])


@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: f"{c[0]}-{c[2]}")
def test_pooling_matches_oracle(rng, case, dtype):
    func, x_shape, kwargs = case
    x = rng.standard_normal(x_shape).astype(dtype)
    y = getattr(cb, func)(x, backend="cuda", **kwargs)
    assert y.dtype == np.dtype(dtype)
    assert_close(y, run_oracle(func, kwargs, {"x": x}), RTOL[dtype])


@needs_cuda
def test_max_pool_window_in_padding_is_minus_inf_and_nan_propagates():
    x = np.arange(12, dtype=np.float32).reshape(1, 1, 12)
    x[0, 0, 7] = np.nan
    y = cb.max_pool1d(x, 2, stride=2, padding=[(3, 0)], backend="cuda")
    assert y[0, 0, 0] == -np.inf
    assert np.isnan(y[0, 0, 5])
    assert np.isnan(y).sum() == 1


# --------------------------------------------------------------------------- parity ops
# Tiny shapes (the simulator runs a Python thread per output): values and indices must equal
# the float64 oracle exactly, ties, NaN and infinities included.

INDEX_POOL_CASES = [
    ((1, 2, 9), dict(kernel_size=3, stride=2, padding=((1, 1),), ceil_mode=True)),
    ((1, 1, 10), dict(kernel_size=2, stride=3, padding=((0, 2),), dilation=3, ceil_mode=True)),
    ((1, 2, 5), dict(kernel_size=2, stride=2, padding=((3, 0),))),
    ((1, 2, 7, 5), dict(kernel_size=(3, 2), stride=(2, 1), padding=1, dilation=(2, 1),
                        ceil_mode=True)),
    ((1, 1, 5, 6), dict(kernel_size=2, padding=((2, 0), (0, 3)))),
    ((1, 1, 4, 5, 5), dict(kernel_size=(2, 3, 2), stride=(1, 2, 2), padding=1,
                           ceil_mode=True)),
    ((1, 1, 5, 3, 6), dict(kernel_size=2, stride=(2, 1, 3), padding=((1, 0), (0, 1), (1, 1)),
                           dilation=(2, 1, 2))),
]
ADAPTIVE_MAX_CASES = [((1, 2, 10), (4,)), ((1, 1, 5), (8,)), ((1, 2, 7, 5), (3, 4)),
                      ((1, 1, 3, 3), (5, 2)), ((1, 1, 5, 4, 3), (2, 3, 2))]
UNPOOL_CASES = [
    ((1, 2, 11), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 7, 5), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0))),
    ((1, 1, 5, 6), dict(kernel_size=2, stride=2, padding=((1, 0), (0, 1)))),
    ((1, 1, 4, 4, 5), dict(kernel_size=(2, 3, 2), stride=(1, 2, 2), padding=1)),
]
INPUT_KINDS = ("normal", "ties", "special")


def _parity_input(rng, shape, dtype, kind):
    """Normals; small integers (equal maxima); or integers with NaN, +inf and -inf."""
    if kind == "normal":
        return rng.standard_normal(shape).astype(dtype)
    x = rng.integers(-2, 3, shape).astype(dtype)
    if kind == "special":
        u = rng.random(shape)
        x[u < 0.15] = np.nan
        x[(u >= 0.15) & (u < 0.25)] = np.inf
        x[(u >= 0.25) & (u < 0.45)] = -np.inf
    return x


def _assert_pair_equal(got, ref, dtype):
    values, indices = got
    assert isinstance(values, np.ndarray) and values.dtype == dtype
    assert indices.dtype == np.int64 and indices.shape == values.shape
    np.testing.assert_array_equal(values, ref[0].astype(dtype))
    np.testing.assert_array_equal(indices, ref[1])


def _index_spec(xs, kw, dtype):
    nd = len(xs) - 2
    return pool_spec(f"max_pool{nd}d", "max_pool_with_indices", xs, nd, kw["kernel_size"],
                     kw.get("stride"), kw.get("padding", 0), kw.get("dilation", 1),
                     kw.get("ceil_mode", False), dtype=dtype)[0]


@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", INDEX_POOL_CASES, ids=lambda c: str(c[0]))
def test_max_pool_with_indices_matches_oracle(rng, case, dtype):
    xs, kw = case
    spec = _index_spec(xs, kw, dtype)
    for kind in INPUT_KINDS:
        x = _parity_input(rng, xs, dtype, kind)
        _assert_pair_equal(CudaBackend().max_pool_with_indices(x, spec),
                           oracle.max_pool_with_indices(x, **kw), dtype)


@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ADAPTIVE_MAX_CASES, ids=lambda c: f"{c[0]}-{c[1]}")
def test_adaptive_max_pool_matches_oracle(rng, case, dtype):
    xs, sizes = case
    nd = len(xs) - 2
    spec = adaptive_pool_spec(f"adaptive_max_pool{nd}d", xs, nd, sizes, dtype,
                              op="adaptive_max_pool")[0]
    for kind in INPUT_KINDS:
        x = _parity_input(rng, xs, dtype, kind)
        _assert_pair_equal(CudaBackend().adaptive_max_pool(x, spec),
                           oracle.adaptive_max_pool(x, sizes), dtype)


@needs_cuda
def test_max_pool_with_indices_rules_and_out():
    x = np.array([[[1.0, 3.0, 3.0, np.nan, 2.0, np.nan, -np.inf, -np.inf, 4.0]]])
    spec = _index_spec(x.shape, dict(kernel_size=3, stride=3, padding=((3, 0),)), "float64")
    out = np.full(spec.output_shape, 7.0)
    backend = CudaBackend()
    values, indices = backend.max_pool_with_indices(x, spec, out=out)
    assert values is out
    np.testing.assert_array_equal(values[0, 0], [-np.inf, 3.0, np.nan, 4.0])
    np.testing.assert_array_equal(indices[0, 0], [-1, 1, 5, 8])
    assert backend.last_transfers["device_to_host_bytes"] == 4 * 8 + 4 * 8


@needs_cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", UNPOOL_CASES, ids=lambda c: str(c[0]))
def test_max_unpool_round_trip(rng, case, dtype):
    xs, kw = case
    nd = len(xs) - 2
    backend = CudaBackend()
    for kind in INPUT_KINDS:
        x = _parity_input(rng, xs, dtype, kind)
        values, indices = backend.max_pool_with_indices(x, _index_spec(xs, kw, dtype))
        spec = unpool_spec(f"max_unpool{nd}d", values.shape, indices.shape, nd,
                           kw["kernel_size"], kw.get("stride"), kw.get("padding", 0),
                           output_size=xs[2:], dtype=dtype)[0]
        y = backend.max_unpool(values, indices, spec)
        ref = oracle.max_unpool(values, indices, kw["kernel_size"], kw.get("stride"),
                                kw.get("padding", 0), output_size=xs[2:])
        assert y.dtype == dtype and y.shape == xs
        np.testing.assert_array_equal(y, ref.astype(dtype))


@needs_cuda
def test_max_unpool_duplicates_are_deterministic_and_last_wins(rng):
    """Many inputs sent to one output: the last in scan order stays, whatever the threads'
    order (the claim pass takes the atomic max of input positions)."""
    xs = (2, 2, 3, 4)
    x = rng.standard_normal(xs)
    indices = rng.integers(0, 5, xs)
    spec = unpool_spec("max_unpool2d", xs, xs, 2, 2, dtype="float64")[0]
    ref = oracle.max_unpool(x, indices, 2)
    for _ in range(2):
        np.testing.assert_array_equal(CudaBackend().max_unpool(x, indices, spec), ref)
    out = np.full(spec.output_shape, np.nan)
    assert CudaBackend().max_unpool(x, indices, spec, out=out) is out
    np.testing.assert_array_equal(out, ref)


@needs_cuda
def test_max_unpool_invalid_index_raises():
    xs = (1, 2, 2, 2)
    indices = np.zeros(xs, np.int64)
    indices[0, 0, 0, 1] = 99
    indices[0, 1, 1, 0] = -4  # the last bad one in scan order is named, as PyTorch
    spec = unpool_spec("max_unpool2d", xs, xs, 2, 2, dtype="float32")[0]
    with pytest.raises(cb.ShapeError, match=r"Found an invalid max index: -4 \(output "
                                            r"volumes are of size 4x4\)"):
        CudaBackend().max_unpool(np.ones(xs, np.float32), indices, spec)


@needs_cuda
def test_parity_ops_keep_device_arrays_on_the_device(rng):
    from numba import cuda
    x = _parity_input(rng, (1, 2, 6, 5), "float32", "ties")
    kw = dict(kernel_size=2, stride=2, padding=((0, 0), (1, 0)))
    backend = CudaBackend()
    values, indices = backend.max_pool_with_indices(cuda.to_device(x), _index_spec(
        x.shape, kw, "float32"))
    assert getattr(values, "__cuda_ndarray__", False) and getattr(indices, "__cuda_ndarray__",
                                                                  False)
    assert backend.last_transfers["host_to_device_bytes"] == 0
    ref = oracle.max_pool_with_indices(x, **kw)
    _assert_pair_equal((values.copy_to_host(), indices.copy_to_host()), ref, "float32")
    spec = unpool_spec("max_unpool2d", values.shape, indices.shape, 2, 2, 2, ((0, 0), (1, 0)),
                       output_size=x.shape[2:])[0]
    y = backend.max_unpool(values, indices, spec)
    assert getattr(y, "__cuda_ndarray__", False)
    np.testing.assert_array_equal(y.copy_to_host(), oracle.max_unpool(
        ref[0], ref[1], 2, 2, ((0, 0), (1, 0)), output_size=x.shape[2:]).astype(np.float32))


@needs_cuda
@pytest.mark.parametrize("case", [((1, 2, 9), dict(kernel_size=3, stride=2, padding=1,
                                                   ceil_mode=True), -3),
                                  ((1, 1, 5, 6), dict(kernel_size=(3, 2), stride=2,
                                                      padding=((1, 2), (0, 1)),
                                                      count_include_pad=False), 5),
                                  ((1, 1, 3, 4, 5), dict(kernel_size=2, padding=1), 7)],
                         ids=lambda c: str(c[0]))
def test_avg_pool_divisor_override(rng, case):
    xs, kw, divisor = case
    nd = len(xs) - 2
    x = rng.standard_normal(xs)
    spec = pool_spec(f"avg_pool{nd}d", "avg_pool", xs, nd, kw["kernel_size"], kw.get("stride"),
                     kw.get("padding", 0), 1, kw.get("ceil_mode", False),
                     kw.get("count_include_pad", True), dtype="float64",
                     divisor_override=divisor)[0]
    assert_close(CudaBackend().avg_pool(x, spec),
                 oracle.avg_pool(x, divisor_override=divisor, **kw), RTOL["float64"])


def test_supports_the_parity_ops():
    backend = CudaBackend()
    xs = (1, 2, 6, 6)
    specs = {"max_pool_with_indices": _index_spec(xs, dict(kernel_size=2), "float32"),
             "adaptive_max_pool": adaptive_pool_spec("a", xs, 2, 3, "float32",
                                                     op="adaptive_max_pool")[0],
             "max_unpool": unpool_spec("max_unpool2d", xs, xs, 2, 2)[0]}
    for op, spec in specs.items():
        assert backend.supports(op, spec) is None, op
        assert backend.plan(op, spec)["kernel"]
    assert "float32 and float64" in backend.supports(
        "max_unpool", specs["max_unpool"].replace(dtype="float16"))
    assert backend.workspace_bytes("max_unpool", specs["max_unpool"]) == 2 * 12 * 12 * 8 + 8


# --------------------------------------------------------------------------- interop


@needs_cuda
def test_device_input_gives_device_output_without_host_copies(rng):
    from numba import cuda
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    dx, dw, db = cuda.to_device(x), cuda.to_device(w), cuda.to_device(b)
    backend = CudaBackend()
    spec, _ = cb.spec.conv_spec("conv2d", x.shape, w.shape, b.shape, padding=1)
    y = backend.conv(dx, dw, db, spec)
    assert not isinstance(y, np.ndarray) and getattr(y, "__cuda_ndarray__", False)
    assert backend.last_transfers == {"host_to_device_bytes": 0, "device_to_host_bytes": 0,
                                      "weight": "device"}
    assert_close(y.copy_to_host(), run_oracle("conv2d", {"padding": 1},
                                              {"x": x, "weight": w, "bias": b}), 1e-5)


@needs_cuda
def test_functional_api_keeps_device_arrays_on_the_device(rng):
    from numba import cuda
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    dx = cuda.to_device(x)
    if not functional.is_device_array(dx):
        pytest.skip("functional.is_device_array does not recognise Numba's simulated device "
                    "arrays (they set __cuda_ndarray__, not __cuda_array_interface__)")
    y = cb.max_pool2d(dx, 2, backend="cuda")
    assert not isinstance(y, np.ndarray)
    y = cb.avg_pool2d(dx, 2)  # auto picks cuda for device input
    assert not isinstance(y, np.ndarray)
    assert_close(y.copy_to_host(), run_oracle("avg_pool2d", {"kernel_size": 2}, {"x": x}), 1e-5)


@needs_cuda
def test_non_contiguous_device_input(rng):
    from numba import cuda
    x = rng.standard_normal((1, 3, 6, 10)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    dx = cuda.to_device(x)[:, :, :, ::2]
    dw = cuda.to_device(np.repeat(w, 2, axis=3))[..., ::2]
    assert not dx.is_c_contiguous() and not dw.is_c_contiguous()
    spec, _ = cb.spec.conv_spec("conv2d", dx.shape, dw.shape)
    y = CudaBackend().conv(dx, dw, None, spec)
    assert_close(y.copy_to_host(), run_oracle("conv2d", {}, {"x": x[..., ::2], "weight": w}),
                 1e-5)


@needs_cuda
def test_numpy_weight_stays_on_device_until_changed_in_place(rng):
    backend = CudaBackend()
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((8, 2, 3, 3)).astype(np.float32)
    cb.conv2d(x, w, backend=backend)
    assert backend.last_transfers["weight"] == "copied"
    y = cb.conv2d(x, w, backend=backend)
    assert backend.last_transfers == {"host_to_device_bytes": x.nbytes,
                                      "device_to_host_bytes": y.nbytes, "weight": "cached"}
    w[0, 0, 0, 0] += 1.0
    y = cb.conv2d(x, w, backend=backend)
    assert backend.last_transfers["weight"] == "copied"
    assert_close(y, run_oracle("conv2d", {}, {"x": x, "weight": w}), 1e-5)
    w[1, 1, 1, 1] = 0.0
    cb.conv2d(x, w, backend=backend)
    w[1, 1, 1, 1] = -0.0  # equal as numbers, not as bytes: the copy is refreshed all the same
    cb.conv2d(x, w, backend=backend)
    assert backend.last_transfers["weight"] == "copied"


@needs_cuda
def test_out_receives_the_result(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float64)
    w = rng.standard_normal((8, 2, 3, 3)).astype(np.float64)
    out = np.full((1, 8, 3, 3), np.nan)
    y = cb.conv2d(x, w, backend="cuda", out=out)
    assert y is out
    assert_close(out, run_oracle("conv2d", {}, {"x": x, "weight": w}), 1e-12)


# --------------------------------------------------------------------------- choices


def _spec(groups, channels, out_channels, kernel=(3, 3)):
    return ConvSpec(op="conv", batch=1, in_channels=channels, out_channels=out_channels,
                    input_spatial=(5, 5), kernel=kernel, stride=(1, 1),
                    padding=((1, 1), (1, 1)), dilation=(1, 1), groups=groups)


@needs_cuda
def test_plan_names_the_kernel_and_why():
    backend = cb.get_backend("cuda")
    gemm = backend.plan("conv", _spec(1, 16, 32))
    assert gemm["kernel"] == "implicit_gemm" and "tile" in gemm and "grid" in gemm
    assert gemm["split_k"] >= 1
    assert gemm["host_to_device_bytes"] == (16 * 25 + 32 * 16 * 9) * 4
    depthwise = backend.plan("conv", _spec(16, 16, 16))
    assert depthwise["kernel"] == "direct" and "output channel(s) per group" in depthwise["why"]
    assert backend.plan("conv_transpose", _spec(1, 4, 4).replace(op="conv_transpose"))[
        "kernel"] == "direct_gather"
    report = cb.explain((1, 16, 5, 5), (32, 16, 3, 3), padding=1).backends["cuda"]
    assert report.supported and report.plan["kernel"] == "implicit_gemm"


@needs_cuda
def test_forced_implicit_gemm_declines_instead_of_falling_back(rng):
    groups = 65536
    x = rng.standard_normal((1, groups, 1, 1)).astype(np.float32)
    w = rng.standard_normal((groups, 1, 1, 1)).astype(np.float32)
    with pytest.raises(cb.UnsupportedError, match="grid's z limit"):
        cb.conv2d(x, w, groups=groups, backend=CudaBackend(kernel="implicit_gemm"))
    assert cb.get_backend("cuda").plan("conv", _spec(groups, groups, groups, (1, 1)))[
        "kernel"] == "direct"


def test_tile_rules():
    assert Tile(64, 128, 8, 4, 8).threads == 256
    for tile in cuda_backend.GPU_TILES + cuda_backend.SIMULATOR_TILES:
        assert tile.check() is None, tile
    assert "multiples of 4" in Tile(64, 64, 8, 2, 8).check()
    with pytest.raises(ValueError, match="cannot be used"):
        CudaBackend(tile=(128, 16, 8, 8, 4))
    with pytest.raises(ValueError, match="kernel must be one of"):
        CudaBackend(kernel="winograd")
    with pytest.raises(ValueError, match="split_k must be"):
        CudaBackend(split_k=0)


def test_choose_tile_fills_the_gpu():
    tiles = cuda_backend.GPU_TILES
    # ResNet's 56x56x64 3x3 at batch 32: 64 channels, 100,352 positions: no channel waste.
    assert cuda_backend.choose_tile(tiles, 64, 32 * 56 * 56, 1, 132).bm == 64
    # 512 channels at 7x7: wide channel tiles, still >= 100 blocks.
    chosen = cuda_backend.choose_tile(tiles, 512, 32 * 49, 1, 132)
    assert (512 // chosen.bm) * math.ceil(32 * 49 / chosen.bn) >= 100
    # 16 channels: the 32-row tile wastes least.
    assert cuda_backend.choose_tile(tiles, 16, 10_000, 1, 132).bm == 32


def test_choose_split_only_where_tiles_are_few():
    # 56x56x64 3x3 at batch 32: 784 tiles of 64x128 fill 132 SMs without help.
    assert cuda_backend.choose_split(784, 72, 132) == 1
    # 7x7x512 3x3: 104 tiles and 576 steps of 8 rows: three slices give 312 blocks.
    assert cuda_backend.choose_split(104, 576, 132) == 3
    # A short reduction is not worth slicing; the slice count is capped.
    assert cuda_backend.choose_split(10, 12, 132) == 1
    assert cuda_backend.choose_split(1, 10_000, 132) == cuda_backend.MAX_K_SLICES


def test_plan_needs_no_gpu():
    """Planning is pure Python: a convolution's launch, and the grid limits' refusals."""
    spec = _spec(1, 16, 32)
    launch = cuda_plan.gemm_launch(spec, cuda_backend.GPU_TILES, 132)
    assert launch.tile in cuda_backend.GPU_TILES and launch.k_slices >= 1
    assert launch.grid[2] == launch.k_slices and cuda_plan.gemm_refusal(spec, launch) is None
    forced = cuda_plan.gemm_launch(spec, cuda_backend.GPU_TILES, 132, Tile(32, 64, 8, 4, 4), 2)
    assert forced.tile == Tile(32, 64, 8, 4, 4) and forced.grid == (1, 1, 2)
    wide = _spec(65536, 65536, 65536, (1, 1))
    assert "z limit" in cuda_plan.gemm_refusal(
        wide, cuda_plan.gemm_launch(wide, cuda_backend.GPU_TILES, 132))
    assert cuda_plan.grid_1d(1, 256) == 1 and cuda_plan.grid_1d(10**9, 256) == 1 << 16


# --------------------------------------------------------------------------- availability


@pytest.mark.skipif(not HAS_NUMBA_CUDA, reason="numba-cuda is not installed")
def test_broken_numba_cuda_becomes_a_reason(monkeypatch):
    from numba import cuda

    from convbackends.backends.cuda import kernels as cuda_kernels

    def broken():
        raise AttributeError("module 'numpy' has no attribute 'row_stack'")

    monkeypatch.setattr(cuda_impl, "_driver_missing", lambda: None)
    monkeypatch.setattr(cuda_kernels, "SIMULATOR", False)
    monkeypatch.setattr(cuda, "is_available", lambda: True)
    monkeypatch.setattr(cuda_kernels, "probe", broken)
    monkeypatch.setattr(np, "__version__", "2.5.2")
    why = cuda_impl._probe()
    assert "cannot compile and run a kernel" in why and "row_stack" in why
    assert "numpy<2.5" in why


def test_missing_numba_cuda_becomes_a_reason(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "numba_cuda" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    why = cuda_impl._probe()
    assert "numba-cuda is not installed" in why and "convbackends[cuda]" in why


@pytest.mark.skipif(not HAS_NUMBA_CUDA or SIMULATING, reason="needs numba-cuda, no simulator")
def test_no_gpu_reason_is_a_sentence():
    why = cb.get_backend("cuda").available()
    if why is None:
        pytest.skip("this machine has a usable GPU")
    assert "CUDA" in why and "Traceback" not in why
    with pytest.raises(cb.BackendUnavailableError, match="cannot run on this machine"):
        cb.conv1d(np.ones((1, 1, 4)), np.ones((1, 1, 2)), backend="cuda")


def test_numba_cuda_is_imported_only_where_it_must_be():
    """Not by ``import convbackends`` or the registry; by ``available()`` only when a CUDA
    driver is there to ask (or the simulator is on)."""
    code = ("import sys, convbackends as cb; cb.backends(); b = cb.get_backend('cuda'); "
            "assert 'numba.cuda' not in sys.modules, 'imported by the registry'; "
            "why = b.available(); "
            "assert 'numba.cuda' not in sys.modules or why is None or 'driver' not in why, "
            "'imported by available() without a driver'")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1],
                   env=env)


# --------------------------------------------------------------------------- compilation


def _kernel_signatures(dtype):
    """Every kernel of the backend with the argument types the backend launches it with."""
    from numba import types as nbt

    from convbackends.backends.cuda import kernels
    f = nbt.float32 if dtype == "float32" else nbt.float64
    flat, dims, i8, flag = f[::1], nbt.UniTuple(nbt.int64, 3), nbt.int64, nbt.boolean
    table = nbt.int64[::1]
    gemm_args = (flat, flat, nbt.int64[:, ::1], flat, flag, flat) + (dims,) * 4 + (i8,) * 7
    direct_args = (flat, flat, flat, flag, flat) + (dims,) * 6 + (i8,) * 5
    found = {f"implicit_gemm_{'x'.join(map(str, t[:3]))}{'_split' if split else ''}":
             (kernels.implicit_gemm_conv(dtype, tuple(t), split), gemm_args)
             for t in cuda_backend.GPU_TILES for split in (False, True)}
    found.update({
        "sum_slices": (kernels.sum_slices(dtype), (flat, flat, flat, flag) + (i8,) * 4),
        "direct_conv": (kernels.direct_conv(dtype), direct_args),
        "direct_conv_transpose": (kernels.direct_conv_transpose(dtype), direct_args),
        "max_pool": (kernels.max_pool(dtype), (flat, flat) + (dims,) * 6 + (i8,)),
        "avg_pool": (kernels.avg_pool(dtype), (flat, flat) + (dims,) * 6 + (table, i8)),
        "adaptive_avg_pool": (kernels.adaptive_avg_pool(dtype),
                              (flat, flat, dims, dims, table, i8)),
        "max_pool_with_indices": (kernels.max_pool_with_indices(dtype),
                                  (flat, flat, table) + (dims,) * 6 + (i8,)),
        "adaptive_max_pool": (kernels.adaptive_max_pool(dtype),
                              (flat, flat, table, dims, dims, table, i8)),
        "unpool_clear": (kernels.unpool_clear, (table, i8)),
        "unpool_claim": (kernels.unpool_claim, (table, table, table, i8, i8, i8)),
        "unpool_gather": (kernels.unpool_gather(dtype), (flat, table, flat, i8)),
        "transpose_weight": (kernels.transpose_weight(), (flat, flat, i8, i8, i8)),
    })
    for ndim in range(1, 6):
        found[f"contiguous_copy_{ndim}d"] = (kernels.contiguous_copy(ndim),
                                             (nbt.Array(f, ndim, "A"), flat, i8))
    return found


KERNEL_NAMES = (
    [f"implicit_gemm_{t}{split}" for t in ("64x128x8", "128x64x8", "32x64x8")
     for split in ("", "_split")]
    + ["sum_slices", "direct_conv", "direct_conv_transpose", "max_pool", "avg_pool",
       "adaptive_avg_pool", "max_pool_with_indices", "adaptive_max_pool", "unpool_clear",
       "unpool_claim", "unpool_gather", "transpose_weight"]
    + [f"contiguous_copy_{n}d" for n in range(1, 6)])


@pytest.fixture(scope="module")
def sm90_compiler():
    """Skip unless NVVM and NVRTC can be loaded (pip's ``cuda-toolkit[nvvm,nvrtc]``)."""
    if not HAS_NUMBA_CUDA or SIMULATING:
        pytest.skip("needs numba-cuda, no simulator")
    from numba import cuda
    from numba import types as nbt

    def store_one(a):
        a[0] = 1.0

    try:
        cuda.compile_ptx(store_one, (nbt.float32[::1],), cc=(9, 0))
    except Exception as e:  # no NVVM/NVRTC libraries: nothing to compile with
        pytest.skip(f"no CUDA compiler libraries here: {str(e).splitlines()[0]}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", KERNEL_NAMES)
def test_kernels_compile_for_sm90(sm90_compiler, monkeypatch, name, dtype):
    """PTX for an H100 without a GPU: the simulator runs kernels as Python and checks no
    types, this does."""
    from numba import cuda
    from numba.cuda import dispatcher

    class H100:
        compute_capability = (9, 0)

    # Device functions ask the current device for its compute capability; there is none.
    monkeypatch.setattr(dispatcher, "get_current_device", lambda: H100())
    kernel, signature = _kernel_signatures(dtype)[name]
    ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
    assert ".target sm_90" in ptx
    if name.startswith("implicit_gemm"):
        assert "ld.shared.v4" in ptx or "ld.shared.v2" in ptx  # vectorised shared loads
        assert "__local_depot" not in ptx  # the micro-tile lives in registers


# ------------------------------------------------------------------ PyTorch's parity cases


def _small_parity_cases():
    from reference.golden import PARITY_DIR, load_cases
    # The simulator runs a thread per output element in Python: the small cases suffice.
    return [c for c in load_cases(PARITY_DIR) if c[3]["x"].size <= 256]


SMALL_PARITY = _small_parity_cases()


@needs_cuda
@pytest.mark.parametrize("name, func, kwargs, arrays", SMALL_PARITY,
                         ids=[c[0] for c in SMALL_PARITY])
def test_parity_golden_cases(name, func, kwargs, arrays):
    """max pooling with indices, adaptive max pooling, unpooling and divisor_override on
    cuda give PyTorch's values and indices exactly (averages within the float bound)."""
    fn = getattr(cb, func)
    operands = (arrays["x"], arrays["indices"]) if func.startswith("max_unpool") \
        else (arrays["x"],)
    got = fn(*operands, **kwargs, backend="cuda")
    got = got if isinstance(got, tuple) else (got,)
    expected = (arrays["y"],) + ((arrays["y_indices"],) if "y_indices" in arrays else ())
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        if func.startswith("avg_pool"):
            np.testing.assert_allclose(g, e, rtol=RTOL[e.dtype.name], atol=1e-6)
        else:
            np.testing.assert_array_equal(g, e)
            assert g.dtype == e.dtype


# --------------------------------------------------------------------------- the simulator run


@pytest.mark.skipif(not HAS_NUMBA_CUDA, reason="numba-cuda is not installed")
@pytest.mark.skipif(SIMULATING, reason="this process already runs the simulator")
def test_simulator_run():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", __file__],
        cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
