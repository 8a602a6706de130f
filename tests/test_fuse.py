"""Inference fusion: the convolution epilogue (``residual=``, ``activation=``) on every
backend against the float64 oracle, and ``fuse(model)`` against the unfused model."""

import threading

import numpy as np
import pytest

import convbackends as cb
from convbackends.tools.measure import relative_error, tolerance
from reference import oracle

from conftest import BACKENDS, conv_arrays

GEOMETRIES = [
    # x_shape, w_shape, params
    ((2, 5, 11, 9), (7, 5, 3, 3), dict(padding=1)),
    ((3, 6, 10, 13), (8, 3, 3, 3), dict(stride=2, padding=(1, 0), groups=2)),
    ((1, 4, 12, 12), (6, 4, 1, 1), dict()),
    ((2, 3, 17), (4, 3, 5), dict(padding=2, dilation=2)),
    ((1, 2, 6, 7, 5), (3, 2, 3, 3, 3), dict(padding=1)),
    ((5, 16, 4, 4), (24, 16, 3, 3), dict(padding=1)),     # im2col's batch-in-columns path
]


def _reference(x, w, b, params, residual, activation):
    y = oracle.conv(x, w, b, **params)
    if residual is not None:
        y = y + residual.astype(np.float64)
    if activation == "relu":
        y = np.maximum(y, 0)
    elif activation == "tanh":
        y = np.tanh(y)
    return y


def _supported(backend, x, w, params):
    spec, _ = cb.ops.get_op("conv").build_spec("conv", None, (x.shape, w.shape, None),
                                                x.dtype.name, **params)
    return cb.get_backend(backend).supports("conv", spec) is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x_shape, w_shape, params", GEOMETRIES)
@pytest.mark.parametrize("residual, activation", [(True, "relu"), (False, "relu"),
                                                  (True, None), (True, "tanh")])
def test_epilogue_matches_the_oracle(rng, backend, x_shape, w_shape, params, residual,
                                     activation):
    x, w, b = conv_arrays(rng, x_shape, w_shape, np.float32)
    if not _supported(backend, x, w, params):
        pytest.skip(f"{backend} declines this geometry")
    out_shape = cb.conv(x, w, b, backend="naive", **params).shape
    r = rng.standard_normal(out_shape).astype(np.float32) if residual else None
    r_before = None if r is None else r.copy()
    y = cb.conv(x, w, b, backend=backend, residual=r, activation=activation, **params)
    ref = _reference(x, w, b, params, r, activation)
    assert y.shape == ref.shape and y.dtype == np.float32
    assert relative_error(y, ref) < tolerance(backend, "float32")
    if activation == "relu":
        assert (y >= 0).all() and (ref == 0).sum() > 0
        assert ((y == 0) == (ref == 0)).mean() > 0.99
    if r is not None:
        np.testing.assert_array_equal(r, r_before)


@pytest.mark.parametrize("backend", BACKENDS)
def test_epilogue_keeps_the_direct_formulas_nan_and_inf(rng, backend):
    x, w, b = conv_arrays(rng, (2, 4, 9, 9), (6, 4, 3, 3), np.float32)
    x[0, 1, 4, 4] = np.nan
    x[1, 2, 0, 0] = np.inf
    params = dict(padding=1)
    out_shape = (2, 6, 9, 9)
    r = rng.standard_normal(out_shape).astype(np.float32)
    r[1, 3, 8, 8] = -np.inf
    r[0, 5, 0, 1] = np.nan
    ref = _reference(x, w, b, params, r, "relu")
    y = cb.conv(x, w, b, backend=backend, residual=r, activation="relu", **params)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(ref))
    assert not np.isneginf(y).any()       # relu turns -inf into 0
    assert relative_error(y, ref) < tolerance(backend, "float32")


def test_epilogue_unbatched_and_out():
    rng = np.random.default_rng(3)
    x, w, b = conv_arrays(rng, (3, 8, 8), (4, 3, 3, 3), np.float32)
    r = rng.standard_normal((4, 6, 6)).astype(np.float32)
    out = np.empty((4, 6, 6), np.float32)
    y = cb.conv2d(x, w, b, backend="im2col", out=out, residual=r, activation="relu")
    assert y is out
    ref = _reference(x[None], w, b, {}, r[None], "relu")[0]
    assert relative_error(y, ref) < 1e-5


def test_epilogue_errors():
    rng = np.random.default_rng(4)
    x, w, b = conv_arrays(rng, (1, 3, 8, 8), (4, 3, 3, 3), np.float32)
    with pytest.raises(cb.ShapeError, match=r"activation must be one of \[None, 'relu', "
                                            r"'tanh'\], "
                                            r"but got activation='gelu'"):
        cb.conv2d(x, w, b, activation="gelu")
    with pytest.raises(cb.ShapeError, match=r"conv2d: residual has shape \[1, 4, 8, 8\], "
                                            r"expected the output's \[1, 4, 6, 6\]"):
        cb.conv2d(x, w, b, residual=np.zeros((1, 4, 8, 8), np.float32))
    with pytest.raises(cb.DTypeError, match="residual has dtype float64, expected the "
                                            "output's float32"):
        cb.conv2d(x, w, b, residual=np.zeros((1, 4, 6, 6)))


def _randomise_batch_norms(model, rng):
    """Non-trivial running statistics and affine parameters, so folding has work to do."""
    for m in model.modules():
        if isinstance(m, cb.nn.BatchNorm2d):
            c = m.num_features
            m.running_mean[:] = rng.standard_normal(c) * 0.2
            m.running_var[:] = rng.uniform(0.3, 3.0, c)
            m.weight[:] = rng.uniform(0.5, 1.5, c)
            m.bias[:] = rng.standard_normal(c) * 0.2
    return model


@pytest.mark.parametrize("backend", [None, "im2col", "winograd", "numba", "fft"])
def test_fused_resnet18_matches_the_unfused_model(backend):
    rng = np.random.default_rng(5)
    model = _randomise_batch_norms(cb.models.resnet18(rng=1), rng).eval()
    for m in model.modules():     # winograd takes the 3x3 stride-1 layers, the rest auto
        if isinstance(m, cb.nn.Conv2d) and (backend != "winograd" or (
                m.kernel_size == (3, 3) and m.stride == (1, 1))):
            m.backend = backend
    fused = model.fuse()
    assert {m.backend for m in fused.modules() if isinstance(m, cb.nn.FusedConv)} \
        >= {backend}
    x = rng.standard_normal((2, 3, 64, 48)).astype(np.float32)
    want = model(x)
    got = fused(x)
    assert relative_error(got, want) < 1e-5
    again = fused(x)                       # buffers reused: same answer
    np.testing.assert_array_equal(again, got)
    convs = [m for m in fused.modules() if isinstance(m, cb.nn.FusedConv)]
    assert len(convs) == 20
    assert sum(m.activation == "relu" for m in convs) == 17   # all but the 3 downsamples
    assert not any(isinstance(m, cb.nn.BatchNorm2d) for m in fused.modules())
    assert all(isinstance(b, cb.nn.FusedBasicBlock) for b in
               (fused.layer1[0], fused.layer2[1], fused.layer4[0]))


def test_fuse_leaves_the_model_alone_and_keeps_the_conv_names():
    rng = np.random.default_rng(6)
    model = _randomise_batch_norms(cb.models.resnet18(rng=2), rng)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    fused = cb.nn.fuse(model)
    assert model.training and not fused.training
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    norms = [k[:-len("running_mean")] for k in before if k.endswith("running_mean")]
    kept = {k for k in before if not k.startswith(tuple(norms))}
    folded_biases = {k[:-len("weight")] + "bias" for k, v in before.items() if v.ndim == 4}
    assert len(norms) == 20 and len(folded_biases) == 20
    assert set(fused.state_dict()) == kept | folded_biases
    # the folded weight: w * gamma / sqrt(var + eps), per output channel
    bn, conv = model.bn1, model.conv1
    scale = bn.weight / np.sqrt(bn.running_var.astype(np.float64) + bn.eps)
    np.testing.assert_allclose(fused.conv1.weight, conv.weight * scale[:, None, None, None],
                               rtol=1e-6)
    np.testing.assert_allclose(fused.conv1.bias, bn.bias - bn.running_mean * scale,
                               rtol=1e-6, atol=1e-7)


def test_fused_weights_are_immutable_and_winograd_trusts_them():
    rng = np.random.default_rng(7)
    model = _randomise_batch_norms(cb.nn.Sequential(
        cb.nn.Conv2d(8, 16, 3, padding=1, rng=1, backend="winograd"), cb.nn.BatchNorm2d(16),
        cb.nn.ReLU()), rng).eval()
    fused = model.fuse()
    w = fused[0].weight
    assert not w.flags.writeable
    with pytest.raises(ValueError):
        w.flags.writeable = True
    assert isinstance(fused[1], cb.nn.Identity) and isinstance(fused[2], cb.nn.Identity)
    winograd = cb.get_backend("winograd")
    winograd.filter_cache.clear()
    x = rng.standard_normal((1, 8, 12, 12)).astype(np.float32)
    first = fused(x).copy()
    hits = winograd.filter_cache.hits
    np.testing.assert_array_equal(fused(x), first)
    assert winograd.filter_cache.hits == hits + 1
    (entry,) = winograd.filter_cache._entries.values()
    assert entry[1] is None          # no guard copy kept for an immutable weight
    assert relative_error(first, model(x)) < 1e-4


def test_output_buffers_are_reused_only_when_nobody_holds_them():
    rng = np.random.default_rng(8)
    model = cb.nn.Sequential(cb.nn.Conv2d(3, 4, 3, rng=1), cb.nn.ReLU()).eval()
    fused = model.fuse()
    x1 = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    x2 = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    y1 = fused(x1)
    kept = y1.copy()
    y2 = fused(x2)                       # y1 is still held: a new buffer
    assert not np.shares_memory(y1, y2)
    np.testing.assert_array_equal(y1, kept)
    view = y2[0]
    del y2
    y3 = fused(x1)                       # a view keeps y2's buffer alive too
    assert not np.shares_memory(view, y3)
    address = y3.__array_interface__["data"][0]
    del y1, y3, view
    y4 = fused(x2)                       # nothing holds the last output: reused
    assert y4.__array_interface__["data"][0] == address
    np.testing.assert_allclose(y4, model(x2), rtol=1e-6, atol=1e-6)


def test_fused_model_runs_in_threads():
    rng = np.random.default_rng(9)
    model = _randomise_batch_norms(cb.models.resnet18(rng=3, num_classes=10), rng).eval()
    fused = model.fuse()
    xs = [rng.standard_normal((1, 3, 40, 40)).astype(np.float32) for _ in range(4)]
    want = [model(x) for x in xs]
    got = [None] * len(xs)

    def work(i):
        for _ in range(2):
            got[i] = fused(xs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        assert relative_error(g, w) < 1e-5


def test_fused_model_is_inference_only():
    fused = cb.models.lenet5(rng=0).fuse()
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 32)).astype(np.float32)
    fused(x)
    assert [m.activation for m in fused.modules() if isinstance(m, cb.nn.FusedConv)] == \
        ["tanh"] * 3
    with pytest.raises(cb.UnsupportedError, match="needs a forward in train mode"):
        fused.backward(np.ones((2, 10), np.float32))
    fused.train()
    with pytest.raises(cb.UnsupportedError, match="fused for inference"):
        fused(x)


@pytest.mark.parametrize("build, shape", [
    (lambda: cb.models.lenet5(rng=0), (3, 1, 32, 32)),
    (lambda: cb.models.googlenet(rng=0, num_classes=10), (1, 3, 64, 64)),
])
def test_fused_lecture_models_match(build, shape):
    rng = np.random.default_rng(10)
    model = _randomise_batch_norms(build(), rng).eval()
    x = rng.standard_normal(shape).astype(np.float32)
    fused = model.fuse()
    assert any(isinstance(m, cb.nn.FusedConv) for m in fused.modules())
    assert relative_error(fused(x), model(x)) < 1e-5
