"""The split GEMM: rows of a product over single-threaded OpenBLAS calls, side by side."""

import os
import threading

import numpy as np
import pytest

from convbackends.backends import _blas


def _openblas_threads():
    return _blas._state["get"]() if _blas._probe() else None


@pytest.mark.parametrize("shape_a, shape_b", [((64, 147), (147, 12544)),
                                              ((256, 2304), (2304, 49)),
                                              ((37, 500), (3, 500, 211)),     # batched b
                                              ((8, 30), (30, 40))])           # too small
def test_split_product_equals_numpys(shape_a, shape_b):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    out = np.full(shape_b[:-2] + (shape_a[0], shape_b[-1]), np.nan, np.float32)
    before = _openblas_threads()
    got = _blas.matmul(a, b, out)
    assert got is out
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)
    assert _openblas_threads() == before        # the thread setting is restored


def test_split_runs_side_by_side_and_restores_the_setting_across_threads():
    if not _blas._probe():
        pytest.skip("NumPy's BLAS is not an OpenBLAS this process can reach")
    before = _openblas_threads()
    rng = np.random.default_rng(1)
    a = rng.standard_normal((128, 1152)).astype(np.float32)
    b = rng.standard_normal((1152, 784)).astype(np.float32)
    want = a @ b
    results, errors = [None] * 4, []

    def work(i):
        try:
            out = np.empty_like(want)
            for _ in range(3):
                _blas.matmul(a, b, out)
            results[i] = out
        except Exception as e:      # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_allclose(r, want, rtol=1e-5, atol=1e-3)
    assert _openblas_threads() == before


def test_a_one_thread_limit_means_no_split():
    if not _blas._probe():
        pytest.skip("NumPy's BLAS is not an OpenBLAS this process can reach")
    before = _openblas_threads()
    _blas._state["set"](1)
    try:
        assert _blas.split_threads() == 1
    finally:
        _blas._state["set"](before)
    assert _blas.split_threads() == min(before, os.cpu_count())


@pytest.mark.parametrize("x_shape, w_shape, params", [
    ((2, 16, 30, 30), (64, 16, 3, 3), dict(padding=1)),           # GEMM per sample
    ((3, 64, 7, 7), (96, 64, 3, 3), dict(padding=1)),             # batch in columns
    ((2, 32, 20, 20), (64, 32, 1, 1), dict()),                    # no unfold
    ((2, 64, 9, 9), (64, 16, 3, 3), dict(groups=4, stride=2)),
])
def test_backends_with_split_products_match_the_oracle(x_shape, w_shape, params):
    from convbackends.backends.im2col import Im2colBackend
    from convbackends.backends.winograd import WinogradBackend
    from convbackends.spec import conv_spec
    from reference import oracle
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    spec, _ = conv_spec("conv2d", x.shape, w.shape, None, dtype="float32", **params)
    want = oracle.conv(x, w, **params)
    for backend in (Im2colBackend(split_gemm=True), WinogradBackend(split_gemm=True)):
        if backend.supports("conv", spec) is not None:
            continue
        got = backend.conv(x, w, None, spec)
        assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-4
