"""The layer classes of docs/api.md §7: constructors, initialisation, state dicts, train/eval,
backend propagation, shapes from ``output_shape``, and forwards against PyTorch.

The PyTorch comparisons take the ``torch`` fixture, which skips them where torch is not
importable; everything else needs only NumPy.
"""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import convbackends as cb
from convbackends import layers as L
from convbackends.tools.measure import relative_error


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch twins need torch (CI installs it)")


def load_twin(ours, theirs):
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    return ours


def check_against_torch(torch, ours, theirs, x, tol=1e-5):
    """Our forward equals PyTorch's on ``x``, leaves ``x`` alone, and has the promised shape."""
    before = x.copy()
    y = ours(x)
    with torch.no_grad():
        ref = theirs(torch.from_numpy(x.copy())).numpy()
    np.testing.assert_array_equal(x, before)
    assert y.shape == ref.shape == tuple(ours.output_shape(x.shape))
    assert y.dtype == x.dtype
    assert relative_error(y, ref) < tol


# ----------------------------------------------------------------------------- convolution

CONV_CASES = [
    ("Conv1d", (4, 6, 3), dict(stride=2, padding=1, dilation=2), (2, 4, 17)),
    ("Conv2d", (4, 6, 3), dict(groups=2, padding="same", bias=False), (2, 4, 9, 8)),
    ("Conv2d", (3, 5, (3, 2)), dict(stride=(2, 1), padding=2, padding_mode="reflect"),
     (1, 3, 10, 9)),
    ("Conv3d", (2, 4, 3), dict(padding=1, padding_mode="circular"), (1, 2, 5, 6, 4)),
    ("ConvTranspose1d", (4, 6, 3), dict(stride=2, padding=1, output_padding=1), (2, 4, 7)),
    ("ConvTranspose2d", (4, 6, 3), dict(stride=2, groups=2, dilation=2), (2, 4, 5, 6)),
    ("ConvTranspose3d", (2, 3, 2), dict(stride=(1, 2, 2), bias=False), (1, 2, 3, 4, 3)),
]


@pytest.mark.parametrize("name, args, kwargs, x_shape", CONV_CASES,
                         ids=[c[0] + str(i) for i, c in enumerate(CONV_CASES)])
def test_conv_layers_match_torch(torch, rng, name, args, kwargs, x_shape):
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    ours = load_twin(getattr(L, name)(*args, **kwargs, rng=rng), theirs)
    check_against_torch(torch, ours, theirs, rng.standard_normal(x_shape, dtype=np.float32))


@pytest.mark.parametrize("cls, args, groups, weight_shape, fan_in", [
    (L.Conv2d, (4, 8, 3), 2, (8, 2, 3, 3), 18),
    (L.ConvTranspose2d, (4, 6, (3, 1)), 2, (4, 3, 3, 1), 9),
    (L.Conv1d, (3, 6, 7), 3, (6, 1, 7), 7),
])
def test_conv_init_state_dict_and_dtype(cls, args, groups, weight_shape, fan_in):
    layer = cls(*args, groups=groups, rng=1)
    assert layer.weight.shape == weight_shape and layer.weight.dtype == np.float32
    bound = 1 / math.sqrt(fan_in)
    assert np.abs(layer.weight).max() <= bound and np.abs(layer.bias).max() <= bound
    assert np.abs(layer.weight).max() > 0.8 * bound
    assert list(layer.state_dict()) == ["weight", "bias"]
    np.testing.assert_array_equal(cls(*args, groups=groups, rng=1).weight, layer.weight)
    wide = cls(*args, groups=groups, bias=False, dtype=np.float64)
    assert wide.weight.dtype == np.float64 and list(wide.state_dict()) == ["weight"]


def test_conv_transpose_layer_is_adjoint_of_conv(rng):
    conv = L.Conv2d(3, 4, 3, stride=2, padding=1, bias=False, dtype=np.float64, rng=rng)
    convt = L.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1, bias=False,
                              dtype=np.float64)
    convt.weight[...] = conv.weight
    x = rng.standard_normal((2, 3, 8, 8))
    y = rng.standard_normal((2, 4, 4, 4))
    assert convt(y).shape == x.shape
    assert np.isclose(np.vdot(conv(x), y), np.vdot(x, convt(y)), rtol=1e-12)


def test_conv_repr_shows_non_defaults():
    assert repr(L.Conv2d(3, 8, 3)) == "Conv2d(3, 8, kernel_size=(3, 3))"
    r = repr(L.Conv2d(3, 8, 3, stride=2, padding=1, bias=False, backend="im2col"))
    assert r == ("Conv2d(3, 8, kernel_size=(3, 3), stride=(2, 2), padding=1, bias=False, "
                 "backend='im2col')")


def test_conv_layer_rejects_bad_arguments():
    with pytest.raises(cb.ShapeError, match="in_channels must be divisible by groups"):
        L.Conv2d(3, 6, 3, groups=2)
    with pytest.raises(cb.ShapeError, match="strided"):
        L.Conv2d(3, 6, 3, stride=2, padding="same")
    with pytest.raises(cb.ShapeError, match="padding mode"):
        L.ConvTranspose2d(3, 6, 3, padding_mode="reflect")
    with pytest.raises(cb.ShapeError, match="to have 3 channels"):
        L.Conv2d(3, 6, 3)(np.zeros((1, 1, 28, 28), np.float32))


# ----------------------------------------------------------------------------- pooling

POOL_CASES = [
    ("MaxPool1d", (3,), dict(stride=2, padding=1, dilation=2, ceil_mode=True), (2, 3, 12)),
    ("MaxPool2d", (3, 2), dict(padding=1), (2, 3, 9, 8)),
    ("MaxPool3d", (2,), dict(ceil_mode=True), (1, 2, 5, 5, 4)),
    ("AvgPool1d", (3, 2, 1), dict(count_include_pad=False), (2, 3, 10)),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True), (2, 3, 8, 9)),
    ("AvgPool3d", ((2, 3, 2),), dict(), (1, 2, 4, 6, 5)),
    ("AdaptiveAvgPool2d", ((3, 5),), dict(), (2, 3, 7, 11)),
    ("AdaptiveAvgPool1d", (4,), dict(), (2, 3, 9)),
    ("AdaptiveAvgPool3d", ((2, None, 1),), dict(), (1, 2, 5, 3, 4)),
]


@pytest.mark.parametrize("name, args, kwargs, x_shape", POOL_CASES,
                         ids=[c[0] for c in POOL_CASES])
def test_pool_layers_match_torch(torch, rng, name, args, kwargs, x_shape):
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    ours = getattr(L, name)(*args, **kwargs)
    check_against_torch(torch, ours, theirs, rng.standard_normal(x_shape, dtype=np.float32))


def test_pool_layers_on_a_backend_that_does_not_pool(rng):
    """A backend with no route to an op (im2col has none to max pooling) leaves it to the
    default; one with a route runs it (im2col averages through a depthwise convolution, naive
    max-pools through its indices kernel); an unknown name is still an error."""
    x = rng.standard_normal((2, 3, 8, 8), dtype=np.float32)
    ref = cb.max_pool2d(x, 2, backend="naive")
    np.testing.assert_array_equal(L.MaxPool2d(2, backend="im2col")(x), ref)
    np.testing.assert_array_equal(L.MaxPool2d(2, backend="naive")(x), ref)
    pool = L.AdaptiveAvgPool2d(1, backend="im2col")
    assert pool.explain(x.shape).choice == "im2col"
    np.testing.assert_allclose(pool(x), cb.global_avg_pool(x, backend="naive"), rtol=1e-6)
    with pytest.raises(cb.UnknownBackendError):
        L.AvgPool2d(2, backend="no-such-backend")(x)


def test_pool_layer_reprs_show_non_defaults():
    assert repr(L.MaxPool2d(3, 2, 1)) == "MaxPool2d(kernel_size=3, stride=2, padding=1)"
    assert repr(L.MaxPool2d(2, return_indices=True)) == \
        "MaxPool2d(kernel_size=2, return_indices=True)"
    assert repr(L.AvgPool2d(2, divisor_override=3)) == \
        "AvgPool2d(kernel_size=2, divisor_override=3)"
    assert repr(L.AdaptiveMaxPool2d(3, True)) == \
        "AdaptiveMaxPool2d(output_size=3, return_indices=True)"
    assert repr(L.MaxUnpool2d(2, padding=1, backend="naive")) == \
        "MaxUnpool2d(kernel_size=2, padding=1, backend='naive')"


# ----------------------------------------------------------------------------- with indices


def torch_pair(pair):
    values, indices = pair
    return values.numpy(), indices.numpy()


def check_pair_against_torch(torch, ours, theirs, x):
    """Our ``(values, indices)`` equal PyTorch's exactly; ``output_shape`` is the values'."""
    before = x.copy()
    values, indices = ours(x)
    with torch.no_grad():
        ref_values, ref_indices = torch_pair(theirs(torch.from_numpy(x.copy())))
    np.testing.assert_array_equal(x, before)
    assert values.shape == indices.shape == tuple(ours.output_shape(x.shape))
    assert values.dtype == x.dtype and indices.dtype == np.int64
    np.testing.assert_array_equal(values, ref_values)
    np.testing.assert_array_equal(indices, ref_indices)
    return values, indices


INDEX_CASES = [
    ("MaxPool1d", (3,), dict(stride=2, padding=1, dilation=2, ceil_mode=True), (2, 3, 12)),
    ("MaxPool2d", (3, 2), dict(padding=1), (2, 3, 9, 8)),
    ("MaxPool2d", ((2, 3),), dict(stride=1, dilation=(2, 1)), (3, 7, 6)),
    ("MaxPool3d", (2,), dict(ceil_mode=True), (1, 2, 5, 5, 4)),
    ("AdaptiveMaxPool2d", (3,), dict(), (2, 3, 7, 7)),
    ("AdaptiveMaxPool2d", ((3, None),), dict(), (2, 3, 7, 5)),
    ("AdaptiveMaxPool1d", (4,), dict(), (2, 3, 10)),
    ("AdaptiveMaxPool3d", ((2, 3, 2),), dict(), (1, 2, 5, 7, 3)),
]


@pytest.mark.parametrize("ties", [False, True], ids=["normal", "ties"])
@pytest.mark.parametrize("name, args, kwargs, x_shape", INDEX_CASES,
                         ids=[c[0] + str(i) for i, c in enumerate(INDEX_CASES)])
def test_max_pools_with_indices_match_torch(torch, rng, name, args, kwargs, x_shape, ties):
    """Values and indices equal PyTorch's, ties (the first maximum wins) included."""
    x = rng.standard_normal(x_shape, dtype=np.float32)
    if ties:
        x = np.round(x).astype(np.float32)
    theirs = getattr(torch.nn, name)(*args, **kwargs, return_indices=True)
    ours = getattr(L, name)(*args, **kwargs, return_indices=True)
    values, _ = check_pair_against_torch(torch, ours, theirs, x)
    np.testing.assert_array_equal(getattr(L, name)(*args, **kwargs)(x), values)


UNPOOL_CASES = [
    (1, (3,), dict(stride=2, padding=1), (2, 3, 11), None),
    (2, (2,), dict(), (2, 3, 7, 9), (7, 9)),
    (2, ((3, 2),), dict(stride=(2, 1), padding=(1, 0)), (1, 2, 8, 6), None),
    (2, (2,), dict(), (3, 6, 4), None),
    (3, (2,), dict(), (1, 2, 5, 4, 6), (1, 2, 5, 4, 6)),
]


@pytest.mark.parametrize("nd, args, kwargs, x_shape, output_size", UNPOOL_CASES)
def test_max_unpool_roundtrip_matches_torch(torch, rng, nd, args, kwargs, x_shape,
                                            output_size):
    x = rng.standard_normal(x_shape, dtype=np.float32)
    pool = getattr(L, f"MaxPool{nd}d")(*args, **kwargs, return_indices=True)
    unpool = getattr(L, f"MaxUnpool{nd}d")(*args, **kwargs)
    values, indices = pool(x)
    y = unpool(values, indices, output_size=output_size)
    t_pool = getattr(torch.nn, f"MaxPool{nd}d")(*args, **kwargs, return_indices=True)
    t_unpool = getattr(torch.nn, f"MaxUnpool{nd}d")(*args, **kwargs)
    with torch.no_grad():
        ref = t_unpool(*t_pool(torch.from_numpy(x)), output_size=output_size).numpy()
    np.testing.assert_array_equal(y, ref)
    assert y.dtype == x.dtype
    assert y.shape == unpool.output_shape(values.shape, output_size)
    if output_size is not None:
        assert y.shape == x.shape


def test_max_unpool_scatters_and_checks_output_size(rng):
    x = rng.standard_normal((1, 1, 4, 4), dtype=np.float32)
    values, indices = L.MaxPool2d(2, return_indices=True)(x)
    y = L.MaxUnpool2d(2)(values, indices)
    assert L.MaxUnpool2d(2).output_shape((1, 1, 2, 2)) == (1, 1, 4, 4) == y.shape
    np.testing.assert_array_equal(y.ravel()[indices.ravel()], values.ravel())
    assert np.count_nonzero(y) == values.size
    with pytest.raises(cb.ShapeError, match="invalid output_size"):
        L.MaxUnpool2d(2).output_shape((1, 1, 2, 2), output_size=(6, 4))
    with pytest.raises(cb.ShapeError, match="invalid output_size"):
        L.MaxUnpool2d(2)(values, indices, output_size=(6, 4))


@pytest.mark.parametrize("name, args, kwargs, x_shape", [
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True, divisor_override=5),
     (2, 3, 8, 9)),
    ("AvgPool2d", ((2, 3),), dict(count_include_pad=False, padding=1, divisor_override=2),
     (3, 5, 7)),
    ("AvgPool3d", (2,), dict(divisor_override=3), (1, 2, 4, 6, 5)),
])
def test_avg_pool_divisor_override_matches_torch(torch, rng, name, args, kwargs, x_shape):
    theirs = getattr(torch.nn, name)(*args, **kwargs)
    ours = getattr(L, name)(*args, **kwargs)
    check_against_torch(torch, ours, theirs, rng.standard_normal(x_shape, dtype=np.float32))


def test_new_pool_layers_on_a_backend_that_does_not_pool(rng):
    """As for the other pooling layers, im2col (no pooling at all) leaves them to auto."""
    x = rng.standard_normal((2, 3, 8, 8), dtype=np.float32)
    values, indices = cb.max_pool2d(x, 2, return_indices=True, backend="auto")
    got = L.MaxPool2d(2, return_indices=True, backend="im2col")(x)
    np.testing.assert_array_equal(got[0], values)
    np.testing.assert_array_equal(got[1], indices)
    np.testing.assert_array_equal(L.MaxUnpool2d(2, backend="im2col")(values, indices),
                                  cb.max_unpool2d(values, indices, 2, backend="auto"))
    np.testing.assert_array_equal(L.AdaptiveMaxPool2d(3, backend="im2col")(x),
                                  cb.adaptive_max_pool2d(x, 3, backend="auto"))
    np.testing.assert_array_equal(L.AvgPool2d(2, divisor_override=3, backend="im2col")(x),
                                  cb.avg_pool2d(x, 2, divisor_override=3, backend="auto"))


# ----------------------------------------------------------------------------- batch norm


def test_batchnorm_training_and_eval_match_torch(torch, rng):
    theirs = torch.nn.BatchNorm2d(5)
    with torch.no_grad():
        theirs.weight.copy_(torch.randn(5))
        theirs.bias.copy_(torch.randn(5))
    ours = load_twin(L.BatchNorm2d(5), theirs)
    for step in range(3):
        x = (rng.standard_normal((4, 5, 6, 7)) * (step + 1) + step).astype(np.float32)
        check_against_torch(torch, ours, theirs, x)
    assert int(ours.num_batches_tracked) == 3
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-5)
    ours.eval()
    theirs.eval()
    check_against_torch(torch, ours, theirs, rng.standard_normal((2, 5, 3, 3),
                                                                 dtype=np.float32))
    assert int(ours.num_batches_tracked) == 3


@pytest.mark.parametrize("kwargs", [dict(momentum=None), dict(affine=False),
                                    dict(track_running_stats=False, eps=1e-3)])
def test_batchnorm_options_match_torch(torch, rng, kwargs):
    theirs = torch.nn.BatchNorm2d(3, **kwargs)
    ours = L.BatchNorm2d(3, **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for _ in range(2):
        check_against_torch(torch, ours, theirs,
                            rng.standard_normal((3, 3, 4, 4), dtype=np.float32) + 2)
    ours.eval()
    theirs.eval()
    check_against_torch(torch, ours, theirs, rng.standard_normal((1, 3, 4, 4),
                                                                 dtype=np.float32))


def test_batchnorm_state_and_errors(rng):
    bn = L.BatchNorm2d(4, dtype=np.float64)
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                     "num_batches_tracked"]
    assert bn.num_batches_tracked.shape == () and bn.num_batches_tracked.dtype == np.int64
    assert [k for k, _ in bn.named_parameters()] == ["weight", "bias"]
    x = rng.standard_normal((8, 4, 5, 5)) * 3 + 1
    y = bn(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-4)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1))
    with pytest.raises(cb.ShapeError, match="expected 4D input"):
        bn(np.zeros((4, 5, 5)))
    with pytest.raises(cb.ShapeError, match="more than 1 value per channel"):
        bn(np.zeros((1, 4, 1, 1)))
    with pytest.raises(cb.ShapeError, match="4 channels"):
        bn(np.zeros((2, 3, 2, 2)))


@pytest.mark.parametrize("name, x_shape", [("BatchNorm1d", (4, 5)), ("BatchNorm1d", (4, 5, 7)),
                                           ("BatchNorm3d", (2, 5, 3, 4, 3))])
def test_batchnorm_1d_3d_training_and_eval_match_torch(torch, rng, name, x_shape):
    theirs = getattr(torch.nn, name)(5)
    with torch.no_grad():
        theirs.weight.copy_(torch.randn(5))
        theirs.bias.copy_(torch.randn(5))
    ours = load_twin(getattr(L, name)(5), theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for step in range(3):
        x = (rng.standard_normal(x_shape) * (step + 1) + step).astype(np.float32)
        check_against_torch(torch, ours, theirs, x)
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-5)
    ours.eval()
    theirs.eval()
    check_against_torch(torch, ours, theirs, rng.standard_normal(x_shape, dtype=np.float32))
    assert int(ours.num_batches_tracked) == 3


@pytest.mark.parametrize("kwargs", [dict(bias=False), dict(affine=False, momentum=None)])
def test_batchnorm1d_options_match_torch(torch, rng, kwargs):
    theirs = torch.nn.BatchNorm1d(3, **kwargs)
    ours = L.BatchNorm1d(3, **kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for _ in range(2):
        check_against_torch(torch, ours, theirs,
                            rng.standard_normal((6, 3), dtype=np.float32) + 2)


def test_batchnorm_repr_and_bias_keyword():
    assert repr(L.BatchNorm3d(4, momentum=None, bias=False)) == \
        "BatchNorm3d(4, momentum=None, bias=False)"
    assert list(L.BatchNorm1d(4, bias=False).state_dict())[:2] == ["weight", "running_mean"]


@pytest.mark.parametrize("cls, bad_shape, message", [
    (L.BatchNorm1d, (2, 3, 4, 5), r"expected 2D or 3D input \(got 4D input\)"),
    (L.BatchNorm1d, (3,), r"expected 2D or 3D input \(got 1D input\)"),
    (L.BatchNorm3d, (2, 3, 4, 5), r"expected 5D input \(got 4D input\)"),
    (L.BatchNorm2d, (2, 3, 4), r"expected 4D input \(got 3D input\)"),
    (L.BatchNorm1d, (2, 4), "expected input with 3 channels"),
    (L.BatchNorm1d, (1, 3), "more than 1 value per channel"),
])
def test_batchnorm_input_errors(cls, bad_shape, message):
    with pytest.raises(cb.ShapeError, match=message):
        cls(3)(np.ones(bad_shape, np.float32))


# ----------------------------------------------------------------------------- other layers


def test_linear_init_forward_and_errors(torch, rng):
    layer = L.Linear(50, 7, rng=rng)
    assert layer.weight.shape == (7, 50) and layer.bias.shape == (7,)
    assert np.abs(layer.weight).max() <= 1 / math.sqrt(50)
    theirs = torch.nn.Linear(50, 7)
    load_twin(layer, theirs)
    check_against_torch(torch, layer, theirs, rng.standard_normal((3, 2, 50),
                                                                  dtype=np.float32))
    assert layer.macs((3, 2, 50)) == 6 * 50 * 7
    with pytest.raises(cb.ShapeError, match=r"\(3x40 and 50x7\)"):
        layer(np.zeros((3, 40), np.float32))
    with pytest.raises(TypeError, match="float64"):
        layer(np.zeros((3, 50)))
    assert list(L.Linear(2, 3, bias=False).state_dict()) == ["weight"]


@pytest.mark.parametrize("name, args", [("ReLU", ()), ("Tanh", ()), ("Flatten", ()),
                                        ("Flatten", (0, 2)),
                                        ("LocalResponseNorm", (5, 1e-4, 0.75, 2.0)),
                                        ("LocalResponseNorm", (2, 0.1, 0.5))])
def test_stateless_layers_match_torch(torch, rng, name, args):
    x = rng.standard_normal((2, 6, 3, 4), dtype=np.float32) * 3
    check_against_torch(torch, getattr(L, name)(*args), getattr(torch.nn, name)(*args), x)


def test_local_response_norm_formula(rng):
    x = rng.standard_normal((1, 4, 2, 2))
    y = L.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=2.0)(x)
    c = 1
    window = (x[:, 0] ** 2 + x[:, 1] ** 2 + x[:, 2] ** 2)
    np.testing.assert_allclose(y[:, c], x[:, c] / (2 + 0.5 / 3 * window) ** 0.75)


def test_dropout_training_and_eval(rng):
    x = rng.standard_normal((200, 100)).astype(np.float32) + 5
    before = x.copy()
    drop = L.Dropout(0.3, rng=7)
    y = drop(x)
    np.testing.assert_array_equal(x, before)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], x[kept] / 0.7, rtol=1e-6)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(L.Dropout(0.3, rng=7)(x), y)
    assert not np.array_equal(drop(x), y)          # the generator moves on
    assert drop.eval()(x) is x
    assert np.all(L.Dropout(1.0)(x) == 0)
    assert L.Dropout(0.0)(x) is x
    with pytest.raises(ValueError, match="between 0 and 1"):
        L.Dropout(1.5)


# ----------------------------------------------------------------------------- containers


def test_layers_is_an_alias_of_nn():
    assert L.__all__ == cb.nn.__all__
    assert all(getattr(L, name) is getattr(cb.nn, name) for name in cb.nn.__all__)


def small_net(**kwargs):
    return L.Sequential(L.Conv2d(3, 4, 3, padding=1, rng=0), L.BatchNorm2d(4), L.ReLU(),
                        L.MaxPool2d(2), L.Flatten(), L.Dropout(0.5),
                        L.Linear(4 * 4 * 4, 5, rng=1), **kwargs)


def test_sequential_backend_train_eval_and_names(rng):
    net = small_net(backend="im2col")
    assert all(m.backend == "im2col" for m in net.modules())
    assert net[0].backend == "im2col" and len(net) == 7
    head = net[1:3]
    assert isinstance(head, L.Sequential) and head[0] is net[1]
    assert list(head.state_dict())[0] == "1.weight"
    x = rng.standard_normal((2, 3, 8, 8), dtype=np.float32)
    net.eval()
    assert not any(m.training for m in net.modules())
    y = net(x)
    net.backend = "naive"
    assert net[3].backend == "naive"
    np.testing.assert_allclose(net(x), y, rtol=1e-5, atol=1e-6)
    assert net.train() is net and all(m.training for m in net.modules())
    assert list(net.state_dict())[:2] == ["0.weight", "0.bias"]
    assert "6.bias" in net.state_dict()
    named = L.Sequential({"conv": L.Conv2d(1, 1, 1), "act": L.Tanh()})
    assert list(named.state_dict()) == ["conv.weight", "conv.bias"]
    assert "(conv): Conv2d(1, 1, kernel_size=(1, 1))" in repr(named)
    with pytest.raises(TypeError, match="not a Module"):
        L.Sequential(L.ReLU(), np.tanh)


def test_load_state_dict_is_strict_and_all_or_nothing():
    net = small_net()
    good = {k: np.ones_like(v) for k, v in net.state_dict().items()}
    before = {k: v.copy() for k, v in net.state_dict().items()}
    bad = dict(good)
    del bad["0.bias"]
    bad["9.weight"] = np.zeros(3)
    bad["6.weight"] = np.zeros((5, 3))
    bad["1.running_mean"] = np.zeros(5)
    with pytest.raises(cb.ShapeError) as info:
        net.load_state_dict(bad)
    message = str(info.value)
    for part in ("missing keys: 0.bias", "unexpected keys: 9.weight",
                 "6.weight: expected shape [5, 64], got [5, 3]",
                 "1.running_mean: expected shape [4], got [5]"):
        assert part in message
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    net.load_state_dict(good)
    assert all(np.all(v == 1) for v in net.state_dict().values())
    partial = {"0.bias": np.zeros(4), "extra": np.zeros(1)}
    net.load_state_dict(partial, strict=False)
    assert np.all(net[0].bias == 0) and np.all(net[0].weight == 1)


def test_output_shape_and_macs_without_running():
    net = small_net()
    rows = list(net.layer_shapes((2, 3, 8, 8)))
    assert [r[0] for r in rows] == [str(i) for i in range(7)]
    assert rows[3][3] == (2, 4, 4, 4) and net.output_shape((2, 3, 8, 8)) == (2, 5)
    assert net[0].macs((2, 3, 8, 8)) == 2 * 4 * 64 * 3 * 9
    with pytest.raises(cb.ShapeError, match=r"\(2x100 and 64x5\)"):
        net.output_shape((2, 3, 10, 10))


def test_basic_block(rng):
    down = L.Sequential(L.Conv2d(4, 8, 1, 2, bias=False, rng=rng), L.BatchNorm2d(8))
    block = L.BasicBlock(4, 8, 2, down, rng=rng, backend="im2col").eval()
    assert block.conv1.backend == "im2col" and down[0].backend == "im2col"
    x = rng.standard_normal((2, 4, 6, 6), dtype=np.float32)
    main = block.bn2(block.conv2(np.maximum(block.bn1(block.conv1(x)), 0)))
    np.testing.assert_allclose(block(x), np.maximum(main + down(x), 0), rtol=1e-6)
    assert block.output_shape(x.shape) == (2, 8, 3, 3)
    assert [r[0] for r in block.layer_shapes(x.shape, "b")][-3:] == [
        "b.downsample.0", "b.downsample.1", "b.relu"]
    assert "downsample.0.weight" in block.state_dict()
    with pytest.raises(cb.ShapeError, match="downsample"):
        L.BasicBlock(4, 8).output_shape(x.shape)
    # The forward refuses the same block (NumPy would have broadcast or failed on its own).
    with pytest.raises(cb.ShapeError, match="a downsample module is needed"):
        L.BasicBlock(4, 8, rng=rng)(x)


# ----------------------------------------------------------------------------- error paths

WINOGRAD_STRIDE = ("backend 'winograd' cannot run this conv: winograd needs stride 1, got "
                   "stride (2, 2)")


def test_error_names_the_nested_layer_once_and_keeps_the_original():
    strided = L.Conv2d(3, 4, 3, stride=2, backend="winograd", rng=0)
    net = L.Sequential(L.ReLU(), L.Sequential(L.Tanh(), strided))
    x = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(cb.UnsupportedError) as info:
        net(x)
    e = info.value
    assert type(e) is cb.UnsupportedError and e.layer_path == "1.1"
    assert str(e).startswith("1.1: " + WINOGRAD_STRIDE)
    assert str(e).count("1.1") == 1 and "1: 1" not in str(e)
    # Chained once: the original, whose message is the rest of this one.
    original = e.__cause__
    assert type(original) is cb.UnsupportedError and str(e) == f"1.1: {original}"
    assert not hasattr(original, "layer_path") and original.__cause__ is None
    assert any(k.startswith(e.layer_path + ".") for k in net.state_dict())
    # The same layer called on its own, or through the inner container, says less.
    with pytest.raises(cb.UnsupportedError) as alone:
        strided(x)
    assert str(alone.value).startswith(WINOGRAD_STRIDE) and not hasattr(alone.value,
                                                                         "layer_path")
    with pytest.raises(cb.UnsupportedError, match=r"^1: backend 'winograd'"):
        net[1](x)


def test_error_names_a_downsample_inside_named_containers(rng):
    down = L.Sequential(L.Conv2d(4, 8, 1, 2, bias=False, rng=rng), L.BatchNorm2d(8))
    block = L.BasicBlock(4, 8, 2, down, backend="winograd", rng=rng)
    block.conv1.backend = "im2col"          # the block's own strided 3x3 runs; its shortcut not
    net = L.Sequential({"stem": L.Conv2d(4, 4, 3, padding=1, rng=rng),
                        "stage": L.Sequential(block)}, backend=None)
    x = rng.standard_normal((2, 4, 8, 8), dtype=np.float32)
    with pytest.raises(cb.UnsupportedError) as info:
        net(x)
    assert info.value.layer_path == "stage.0.downsample.0"
    assert str(info.value) == f"stage.0.downsample.0: {info.value.__cause__}"
    assert "stage.0.downsample.0.weight" in net.state_dict()
    with pytest.raises(cb.UnsupportedError, match=r"^downsample\.0: "):
        block(x)


def test_shape_errors_name_the_layer_in_forward_and_output_shape():
    net = L.Sequential(L.Conv2d(3, 4, 3, rng=0), L.Sequential(L.BatchNorm2d(5)))
    x = np.zeros((1, 3, 8, 8), np.float32)
    message = "1.0: BatchNorm2d: expected input with 5 channels, got input of size [1, 4, 6, 6]"
    for call in (lambda: net(x), lambda: net.output_shape(x.shape),
                 lambda: list(net.layer_shapes(x.shape))):
        with pytest.raises(cb.ShapeError) as info:
            call()
        assert str(info.value) == message and info.value.layer_path == "1.0"
    # A wrong input names the first layer that refuses it.
    with pytest.raises(cb.ShapeError, match=r"^0: Given groups=1, weight of size \[4, 3, 3, 3\], "
                                            r"expected input\[1, 2, 8, 8\] to have 3 channels"):
        net(np.zeros((1, 2, 8, 8), np.float32))
    with pytest.raises(cb.ShapeError, match=r"^0\.1: BasicBlock: the shortcut gives"):
        L.Sequential(L.Sequential(L.ReLU(), L.BasicBlock(4, 8)))(np.zeros((1, 4, 6, 6),
                                                                          np.float32))


class _Refusal(cb.ShapeError):
    """A library error with an attribute and a constructor of its own."""

    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


class _Refuses(L.Module):
    def output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, x):
        error = _Refusal("refused here", code=7)
        error.add_note("a note")
        raise error


class _CallsItsGrandchild(L.Module):
    """A custom module that calls a layer two levels down directly."""

    def __init__(self):
        super().__init__()
        self.inner = L.Sequential(L.ReLU(), _Refuses())

    def forward(self, x):
        return self.inner[1](self.inner[0](x))


def test_located_error_keeps_class_attributes_and_custom_paths():
    net = L.Sequential({"wrap": _CallsItsGrandchild()})
    with pytest.raises(_Refusal) as info:
        net(np.zeros(3, np.float32))
    e = info.value
    assert type(e) is _Refusal and e.code == 7 and e.__notes__ == ["a note"]
    assert str(e) == "wrap.inner.1: refused here" and e.layer_path == "wrap.inner.1"
    assert type(e.__cause__) is _Refusal and str(e.__cause__) == "refused here"
    # Errors that are not the library's pass through untouched.
    with pytest.raises(ValueError) as plain:
        L.Sequential(_RaisesPlain())(np.zeros(3))
    assert str(plain.value) == "plain" and not hasattr(plain.value, "layer_path")


class _RaisesPlain(L.Module):
    def forward(self, x):
        raise ValueError("plain")


def test_layer_explain_reports_the_backend_that_would_run():
    conv = L.Conv2d(3, 4, 3, stride=2, backend="winograd", rng=0)
    report = conv.explain((1, 3, 8, 8))
    assert report.choice is None and "winograd needs stride 1" in report.reason
    conv.backend = "im2col"
    assert conv.explain((1, 3, 8, 8)).choice == "im2col"
    up = L.ConvTranspose2d(4, 3, 3, backend="winograd", rng=0).explain((1, 4, 5, 5))
    assert up.choice == "winograd" and up.backends["winograd"].route == "conv_transpose -> conv"
    # A pooling layer on a backend with no route to the op is left to "auto", as its forward
    # is; one with a lowering that fits runs it.
    pool = L.MaxPool2d(2, backend="im2col").explain((1, 3, 8, 8), np.float64)
    assert pool.choice == cb.explain((1, 3, 8, 8), op="max_pool", kernel_size=2,
                                     dtype="float64").choice
    assert pool.spec.dtype == "float64"
    avg = L.AvgPool2d(2, backend="im2col").explain((1, 3, 8, 8))
    assert avg.choice == "im2col" and avg.backends["im2col"].route == "avg_pool -> conv"
    assert L.MaxPool2d(2, return_indices=True).explain((1, 3, 8, 8)).op == \
        "max_pool_with_indices"
    assert L.MaxUnpool2d(2).explain((1, 3, 4, 4)).output_shape == (1, 3, 8, 8)
    assert L.AdaptiveMaxPool2d(2).explain((1, 3, 8, 8)).op == "adaptive_max_pool"
    assert L.Linear(3, 4).explain((2, 3)) is None and L.Sequential(L.ReLU()).explain((2,)) is None


@settings(max_examples=30, deadline=None)
@given(size=st.integers(1, 9), kernel=st.integers(1, 4), stride=st.integers(1, 3),
       padding=st.integers(0, 2), dilation=st.integers(1, 2), pool=st.booleans(),
       ceil_mode=st.booleans())
def test_output_shape_agrees_with_forward(size, kernel, stride, padding, dilation, pool,
                                          ceil_mode):
    """``output_shape`` (what summary() uses) is the forward's shape, or both refuse."""
    if pool:
        layer = L.MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    else:
        layer = L.Conv2d(2, 3, kernel, stride, padding, dilation, rng=0)
    x = np.zeros((1, 2, size, size + 1), np.float32)
    try:
        expected = layer.output_shape(x.shape)
    except cb.ShapeError:
        with pytest.raises(cb.ShapeError):
            layer(x)
        return
    assert layer(x).shape == expected
