"""Channels-last (``data_format="channels_last"``): every backend, every conv and pooling op,
against the oracle applied to the channels-first input; errors that name the layout; the
layout lowering and native kernels in dispatch; layers and models in both layouts."""

import numpy as np
import pytest

import convbackends as cb
from conftest import BACKENDS
from convbackends.backends.base import Backend
from convbackends.spec import conv_spec
from convbackends.spec.layout import layout_refusal
from convbackends.tools.measure import tolerance
from reference.calls import assert_close, run_oracle
from test_conformance import CONV_CASES, POOL_CASES, TRANSPOSE_CASES

LAST = "channels_last"


def _last(a):
    """A channels-first array as a C-contiguous channels-last one."""
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def _first(a):
    return np.moveaxis(a, -1, 1)


def _conv_case(rng, x_shape, w_shape, kwargs, dtype, transposed=False):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    channels = w_shape[1] * kwargs.get("groups", 1) if transposed else w_shape[0]
    b = rng.standard_normal(channels).astype(dtype)
    return x, w, b


def _run_last(backend, func, x, *args, **kwargs):
    """``func`` on the channels-last copy of ``x``; ``None`` when the backend declines."""
    try:
        return getattr(cb, func)(_last(x), *args, backend=backend, data_format=LAST,
                                 **kwargs)
    except cb.UnsupportedError as e:
        assert repr(backend) in str(e) and "Backends that can:" in str(e)
        return None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("func, x_shape, w_shape, kwargs", CONV_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CONV_CASES)])
def test_conv_channels_last_matches_oracle(backend, func, x_shape, w_shape, kwargs, rng):
    dtype = np.float64 if len(kwargs) % 2 else np.float32
    x, w, b = _conv_case(rng, x_shape, w_shape, kwargs, dtype)
    y = _run_last(backend, func, x, w, b, **kwargs)
    if y is None:
        return
    ref = run_oracle(func, kwargs, {"x": x, "weight": w, "bias": b})
    assert y.dtype == dtype and y.flags.c_contiguous
    assert y.shape == _last(ref).shape
    assert_close(_first(y), ref, tolerance(backend, dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("func, x_shape, w_shape, kwargs", TRANSPOSE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(TRANSPOSE_CASES)])
def test_conv_transpose_channels_last_matches_oracle(backend, func, x_shape, w_shape, kwargs,
                                                     rng):
    x, w, b = _conv_case(rng, x_shape, w_shape, kwargs, np.float32, transposed=True)
    y = _run_last(backend, func, x, w, b, **kwargs)
    if y is None:
        return
    ref = run_oracle(func, kwargs, {"x": x, "weight": w, "bias": b})
    assert_close(_first(y), ref, tolerance(backend, np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("func, x_shape, kwargs", POOL_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(POOL_CASES)])
def test_pool_channels_last_matches_oracle(backend, func, x_shape, kwargs, rng):
    x = rng.standard_normal(x_shape).astype(np.float32)
    y = _run_last(backend, func, x, **kwargs)
    if y is None:
        return
    ref = run_oracle(func, kwargs, {"x": x})
    assert y.shape == _last(ref).shape
    assert_close(_first(y), ref, tolerance(backend, np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool_indices_and_unpool_channels_last(backend, nd, rng):
    """Indices are laid out like the values and count within each (n, c) plane, so the
    channels-last indices are the channels-first ones transposed, and unpool inverts."""
    x = rng.standard_normal((2, 3) + (7, 6, 5)[:nd]).astype(np.float32)
    pool, unpool = getattr(cb, f"max_pool{nd}d"), getattr(cb, f"max_unpool{nd}d")
    values, indices = pool(x, 2, return_indices=True)
    try:
        values_l, indices_l = pool(_last(x), 2, return_indices=True, backend=backend,
                                   data_format=LAST)
    except cb.UnsupportedError:
        return
    np.testing.assert_array_equal(indices_l, _last(indices))
    np.testing.assert_array_equal(values_l, _last(values))
    restored = unpool(values_l, indices_l, 2, output_size=x.shape[2:], backend=backend,
                      data_format=LAST)
    np.testing.assert_array_equal(restored, _last(unpool(values, indices, 2,
                                                         output_size=x.shape[2:])))


@pytest.mark.parametrize("backend", BACKENDS)
def test_adaptive_max_pool_channels_last(backend, rng):
    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)
    values, indices = cb.adaptive_max_pool2d(x, (4, 3), return_indices=True)
    try:
        got = cb.adaptive_max_pool2d(_last(x), (4, 3), return_indices=True,
                                     backend=backend, data_format=LAST)
    except cb.UnsupportedError:
        return
    np.testing.assert_array_equal(got[0], _last(values))
    np.testing.assert_array_equal(got[1], _last(indices))


def test_unbatched_out_and_global_pool_channels_last(rng):
    x, w, b = _conv_case(rng, (3, 8, 9), (4, 3, 3, 3), {}, np.float32)
    ref = cb.conv2d(x, w, b, padding=1)                      # unbatched (C, H, W)
    y = cb.conv2d(np.ascontiguousarray(np.moveaxis(x, 0, -1)), w, b, padding=1,
                  data_format=LAST)
    assert y.shape == (8, 9, 4)
    np.testing.assert_allclose(np.moveaxis(y, -1, 0), ref, rtol=1e-5, atol=1e-5)
    xb = x[None]
    out = np.empty((1, 8, 9, 4), np.float32)
    got = cb.conv2d(_last(xb), w, b, padding=1, data_format=LAST, out=out)
    assert got is out
    np.testing.assert_allclose(_first(out), ref[None], rtol=1e-5, atol=1e-5)
    with pytest.raises(cb.ShapeError, match=r"out has shape \[1, 8, 9, 4\]|expected \[1, 8, 9, 4\]"):
        cb.conv2d(_last(xb), w, b, padding=1, data_format=LAST,
                  out=np.empty((1, 4, 8, 9), np.float32))
    g = cb.global_avg_pool(_last(xb), data_format=LAST)
    assert g.shape == (1, 1, 1, 3)
    np.testing.assert_allclose(g[0, 0, 0], x.mean(axis=(1, 2)), rtol=1e-6)


def test_errors_name_the_layout():
    x = np.zeros((1, 28, 28, 1), np.float32)
    w = np.zeros((8, 3, 3, 3), np.float32)
    with pytest.raises(cb.ShapeError, match=r"expected input of shape \(N, H, W, C=3\) in "
                                            r"channels_last, but got input of size "
                                            r"\[1, 28, 28, 1\] \(C=1\)"):
        cb.conv2d(x, w, data_format=LAST)
    # channels-first wording is PyTorch's, unchanged
    with pytest.raises(cb.ShapeError, match=r"expected input\[1, 28, 28, 1\] to have 3 "
                                            r"channels, but got 28 channels instead"):
        cb.conv2d(x, w)
    with pytest.raises(cb.ShapeError, match=r"data_format must be one of "
                                            r"\['channels_first', 'channels_last'\], but got "
                                            r"data_format='NHWC'"):
        cb.conv2d(x, w, data_format="NHWC")
    with pytest.raises(cb.ShapeError, match=r"data_format must be one of"):
        cb.max_pool2d(x, 2, data_format="nhwc")
    with pytest.raises(cb.ShapeError, match=r"\(L, C\) or \(N, L, C\) in channels_last"):
        cb.max_pool1d(np.zeros((1, 2, 3, 4), np.float32), 2, data_format=LAST)


def test_reflect_padding_pads_spatial_axes_only(rng):
    x, w, _ = _conv_case(rng, (1, 2, 7, 8), (3, 2, 3, 3), {}, np.float64)
    ref = cb.conv2d(x, w, padding=(2, 1), padding_mode="reflect")
    y = cb.conv2d(_last(x), w, padding=(2, 1), padding_mode="reflect", data_format=LAST)
    np.testing.assert_allclose(_first(y), ref, rtol=1e-12, atol=1e-12)


class _ChannelsFirstPlugin(Backend):
    """A plug-in written for channels-first arrays only: it never sees a channels-last one."""

    name = "layout-probe"

    def __init__(self):
        self.seen = []

    def supports(self, op, spec):
        return None if op == "conv" else "conv only"

    def conv(self, x, weight, bias, spec):
        self.seen.append((spec.data_format, x.shape))
        return cb.get_backend("naive").conv(x, weight, bias, spec)


def test_a_channels_first_backend_gets_transposed_views(rng):
    plugin = _ChannelsFirstPlugin()
    spec, _ = conv_spec("conv2d", (1, 5, 6, 2), (3, 2, 3, 3), data_format=LAST)
    assert layout_refusal(plugin, "conv", spec) == "layout-probe has no channels_last " \
                                                   "kernel for conv"
    assert layout_refusal(plugin, "conv", spec.replace(data_format="channels_first")) is None
    x, w, _ = _conv_case(rng, (1, 2, 5, 6), (3, 2, 3, 3), {}, np.float64)
    y = cb.conv2d(_last(x), w, backend=plugin, data_format=LAST)
    assert plugin.seen == [("channels_first", (1, 2, 5, 6))]
    np.testing.assert_allclose(_first(y), cb.conv2d(x, w), rtol=1e-12)


def test_explain_shows_the_layout_lowering():
    text = str(cb.explain((2, 9, 9, 3), (4, 3, 3, 3), padding=1, data_format=LAST,
                          backend="naive"))
    assert "output [2, 9, 9, 4]" in text
    assert "lowering conv:channels_last->channels_first" in text


# ----------------------------------------------------------------------------- layers

def _pair(cls, *args, **kwargs):
    """The layer in both layouts, the channels-last one with the first one's state."""
    first, last = cls(*args, **kwargs), cls(*args, data_format=LAST, **kwargs)
    last.load_state_dict(first.state_dict())
    return first, last


LAYERS = [
    (lambda **kw: cb.nn.Conv2d(3, 4, 3, stride=2, padding=1, rng=0, dtype=np.float64, **kw), (2, 3, 9, 8)),
    (lambda **kw: cb.nn.Conv1d(3, 4, 3, padding="same", padding_mode="reflect", rng=0, dtype=np.float64, **kw),
     (2, 3, 11)),
    (lambda **kw: cb.nn.Conv3d(2, 4, 2, groups=2, rng=0, dtype=np.float64, **kw), (1, 2, 4, 5, 3)),
    (lambda **kw: cb.nn.ConvTranspose2d(3, 2, 3, stride=2, output_padding=1, rng=0, dtype=np.float64, **kw),
     (2, 3, 5, 4)),
    (lambda **kw: cb.nn.MaxPool2d(3, 2, 1, **kw), (2, 3, 9, 8)),
    (lambda **kw: cb.nn.AvgPool2d(3, 2, 1, count_include_pad=False, **kw), (2, 3, 9, 8)),
    (lambda **kw: cb.nn.AvgPool1d(2, **kw), (2, 3, 9)),
    (lambda **kw: cb.nn.AdaptiveAvgPool2d((3, 2), **kw), (2, 3, 7, 8)),
    (lambda **kw: cb.nn.AdaptiveMaxPool2d((3, 2), **kw), (2, 3, 7, 8)),
    (lambda **kw: cb.nn.BatchNorm2d(3, dtype=np.float64, **kw), (4, 3, 5, 6)),
    (lambda **kw: cb.nn.LocalResponseNorm(3, **kw), (2, 5, 4, 3)),
]


@pytest.mark.parametrize("make, shape", LAYERS,
                         ids=[type(make()).__name__ + f"-{i}" for i, (make, _) in
                              enumerate(LAYERS)])
def test_layer_both_layouts_forward_and_backward(make, shape, rng):
    """Same outputs and gradients (input and parameters) in both layouts."""
    first, last = make(), make(data_format=LAST)
    last.load_state_dict(first.state_dict())
    x = rng.standard_normal(shape)
    y = first(x)
    y_last = last(_last(x))
    assert y_last.shape == _last(y).shape
    np.testing.assert_allclose(_first(y_last), y, rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(y.shape)
    gx = first.backward(g)
    gx_last = last.backward(_last(g))
    assert gx_last.shape == _last(gx).shape
    np.testing.assert_allclose(_first(gx_last), gx, rtol=1e-10, atol=1e-12)
    for (name, a), (_, b) in zip(first.named_grads(), last.named_grads()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12, err_msg=name)
    assert "data_format='channels_last'" in repr(last)


def test_max_unpool_layer_channels_last(rng):
    x = rng.standard_normal((2, 3, 6, 7))
    pool, unpool = cb.nn.MaxPool2d(2, return_indices=True), cb.nn.MaxUnpool2d(2)
    pool_l = cb.nn.MaxPool2d(2, return_indices=True, data_format=LAST)
    unpool_l = cb.nn.MaxUnpool2d(2, data_format=LAST)
    y = unpool(*pool(x), output_size=(6, 7))
    y_last = unpool_l(*pool_l(_last(x)), output_size=(6, 7))
    np.testing.assert_array_equal(_first(y_last), y)
    g = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(_first(unpool_l.backward(_last(g))), unpool.backward(g))


def test_layer_errors_name_the_layout():
    with pytest.raises(cb.ShapeError, match=r"expected input of shape \(N, H, W, C=3\) in "
                                            r"channels_last"):
        cb.nn.Conv2d(3, 4, 3, data_format=LAST)(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(cb.ShapeError, match=r"3 channels \(last dim, channels_last\)"):
        cb.nn.BatchNorm2d(3, data_format=LAST)(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(cb.ShapeError, match="data_format must be one of"):
        cb.nn.MaxPool2d(2, data_format="NHWC")


def test_flatten_order_is_pytorchs_channels_last():
    """Channels last, Flatten merges in (C, H, W) order, so a Linear after it keeps its
    PyTorch weights; plain Flatten() on channels-last input is Keras' (H, W, C) order."""
    x = np.arange(2 * 3 * 2 * 4, dtype=np.float64).reshape(2, 3, 2, 4)
    flat = cb.nn.Flatten()(x)
    flat_last = cb.nn.Flatten(data_format=LAST)
    np.testing.assert_array_equal(flat_last(_last(x)), flat)
    np.testing.assert_array_equal(cb.nn.Flatten()(_last(x)), _last(x).reshape(2, -1))
    assert flat_last.output_shape((2, 2, 4, 3)) == (2, 24)
    grad = flat_last.backward(flat)
    np.testing.assert_array_equal(grad, _last(x))


# ----------------------------------------------------------------------------- models

@pytest.mark.parametrize("name, shape", [("resnet18", (2, 3, 32, 32)),
                                         ("googlenet", (1, 3, 40, 40)),
                                         ("fcn8s", (1, 3, 13, 17)),
                                         ("alexnet", (1, 3, 67, 67))])
def test_model_channels_last_gives_the_same_outputs(name, shape, rng):
    first = getattr(cb.models, name)(rng=0).eval()
    last = getattr(cb.models, name)(rng=1, data_format=LAST).eval()
    last.load_state_dict(first.state_dict())      # PyTorch's weight layout in both
    x = rng.standard_normal(shape).astype(np.float32)
    y, y_last = first(x), last(_last(x))
    if y.ndim == 4:                                # FCN: per-pixel scores, channels last
        assert y_last.shape == _last(y).shape
        y_last = _first(y_last)
    np.testing.assert_allclose(y_last, y, rtol=2e-4, atol=2e-4 * np.abs(y).max())
    y_shape = _last(y).shape if y.ndim == 4 else y.shape
    assert cb.models.summary(last, _last(x).shape).rows[-1].output_shape == y_shape


def test_training_step_channels_last_matches_channels_first(rng):
    """One SGD step of a small network: the same loss, gradients and updated weights."""
    def net(**kw):
        return cb.nn.Sequential(
            cb.nn.Conv2d(3, 6, 3, padding=1, rng=0, **kw), cb.nn.BatchNorm2d(6, **kw),
            cb.nn.ReLU(), cb.nn.MaxPool2d(2, **kw),
            cb.nn.Conv2d(6, 4, 3, rng=1, **kw), cb.nn.AvgPool2d(2, **kw),
            cb.nn.Flatten(**kw), cb.nn.Linear(4 * 2 * 2, 5, rng=2))
    first, last = net(), net(data_format=LAST)
    x = rng.standard_normal((4, 3, 12, 12)).astype(np.float32)
    target = np.array([0, 3, 1, 4])
    losses = []
    for model, inp in ((first, x), (last, _last(x))):
        model.train()
        crit, opt = cb.nn.CrossEntropyLoss(), cb.optim.SGD(model, lr=0.1, momentum=0.9)
        opt.zero_grad()
        losses.append(crit(model(inp), target))
        model.backward(crit.backward())
        opt.step()
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    for (name, a), (_, b) in zip(first.named_grads(), last.named_grads()):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5, err_msg=name)
    for (name, a), (_, b) in zip(first.state_dict().items(), last.state_dict().items()):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nonfinite_weight_with_padding_channels_last(backend, rng):
    """An Inf weight meets the padding's zeros: NaN where the direct formula has 0 * Inf,
    in channels last as in channels first (native kernels included)."""
    x, w, b = _conv_case(rng, (2, 4, 6, 7), (3, 4, 3, 3), {}, np.float32)
    w[1, 2, 0, 0], w[2, 0, 1, 1] = np.inf, np.nan
    x[1, 3, 2, 2] = -np.inf
    y = _run_last(backend, "conv2d", x, w, b, padding=1)
    if y is None:
        return
    ref = run_oracle("conv2d", {"padding": 1}, {"x": x, "weight": w, "bias": b})
    y = _first(y)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(ref))
    finite = np.isfinite(ref)
    assert_close(y[finite], ref[finite], tolerance(backend, np.float32))


# Geometries above im2col's thresholds for its own channels-last kernel.
NATIVE_CASES = [
    ("conv2d", (1, 16, 30, 30), (8, 16, 3, 3), {"padding": 1}),
    ("conv2d", (2, 16, 20, 21), (8, 16, 1, 1), {}),
    ("conv2d", (2, 17, 41, 39), (5, 17, 3, 2), {"stride": 2, "padding": [(2, 0), (1, 3)]}),
    ("conv2d", (1, 16, 31, 33), (4, 16, 3, 3), {"dilation": 2, "padding": "same",
                                                "padding_mode": "reflect"}),
    ("conv1d", (2, 16, 450), (6, 16, 5), {"padding": 2}),
    ("conv3d", (1, 16, 10, 10, 9), (4, 16, 3, 3, 3), {"padding": 1}),
]


@pytest.mark.skipif("im2col" not in BACKENDS, reason="im2col is not available")
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("func, x_shape, w_shape, kwargs", NATIVE_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(NATIVE_CASES)])
def test_im2col_channels_last_kernel_matches_oracle(func, x_shape, w_shape, kwargs, dtype,
                                                   rng):
    x, w, b = _conv_case(rng, x_shape, w_shape, kwargs, dtype)
    report = str(cb.explain(_last(x).shape, w.shape, dtype=np.dtype(dtype).name,
                            data_format=LAST, backend="im2col",
                            **{k: v for k, v in kwargs.items() if k != "padding_mode"}))
    assert "plan: conv: im2col's own kernel" in report
    assert "layout=channels_last, no transposes" in report
    y = _run_last("im2col", func, x, w, b, **kwargs)
    out = np.empty_like(y)
    again = getattr(cb, func)(_last(x), w, b, backend="im2col", data_format=LAST, out=out,
                              **kwargs)
    assert again is out
    np.testing.assert_array_equal(out, y)
    ref = run_oracle(func, kwargs, {"x": x, "weight": w, "bias": b})
    assert_close(_first(y), ref, tolerance("im2col", dtype))


def test_im2col_channels_last_below_thresholds_takes_the_lowering():
    small = str(cb.explain((1, 14, 14, 256), (256, 256, 3, 3), padding=1,
                           data_format=LAST, backend="im2col"))
    assert "lowering conv:channels_last->channels_first" in small
    stem = cb.explain((1, 224, 224, 3), (64, 3, 7, 7), stride=2, padding=3,
                      data_format=LAST, backend="im2col")
    assert stem.steps[0].startswith("conv -> conv: lowering conv:channels_last")
    big = cb.explain((8, 56, 56, 64), (64, 64, 3, 3), padding=1, data_format=LAST,
                     backend="im2col")
    assert big.steps == ["conv: im2col's own kernel"]


def test_fused_channels_last_model_gives_the_unfused_outputs(rng):
    """Inference fusion keeps the layout: BatchNorm folded, ReLU and the residual add as
    the epilogue, on NHWC input, with the channels-first model's logits."""
    first = cb.models.resnet18(rng=0).eval()
    last = cb.models.resnet18(rng=1, data_format=LAST).eval()
    last.load_state_dict(first.state_dict())
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    ref = first(x)
    fused = cb.nn.fuse(last)
    assert "FusedConv" in repr(fused)
    np.testing.assert_allclose(fused(_last(x)), ref, rtol=2e-4, atol=2e-4 * np.abs(ref).max())


def test_im2col_channels_last_kernel_applies_the_epilogue(rng):
    x, w, b = _conv_case(rng, (4, 16, 16, 16), (8, 16, 3, 3), {}, np.float32)
    res = rng.standard_normal((4, 8, 16, 16)).astype(np.float32)
    assert "im2col's own kernel" in str(cb.explain((4, 16, 16, 16), (8, 16, 3, 3), padding=1,
                                                   data_format=LAST, backend="im2col"))
    got = cb.conv2d(_last(x), w, b, padding=1, backend="im2col", data_format=LAST,
                    activation="relu", residual=_last(res))
    ref = run_oracle("conv2d", {"padding": 1}, {"x": x, "weight": w, "bias": b})
    assert_close(_first(got), np.maximum(ref + res, 0), tolerance("im2col", np.float32))
