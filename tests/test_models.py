"""cb.models: the published parameter counts, summary(), state-dict key names, and forwards
equal to hand-written PyTorch twins (torchvision's layouts) on every backend that runs them.

Only the twin tests need torch: they import it through the ``torch`` fixture, which skips
them where it is missing.
"""

import os
import time
from collections import OrderedDict

import numpy as np
import pytest

import convbackends as cb
from convbackends import models, nn
from convbackends.backends.base import Backend
from convbackends.tools.measure import relative_error

# Backends too slow for the two big models (serial direct loops); lenet5 and resnet18
# cover them.
SLOW_FOR_BIG_MODELS = ("naive",)


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch", reason="PyTorch twins need torch (CI installs it)")
    torch.manual_seed(0)
    return torch


# ----------------------------------------------------------------------------- summary


@pytest.mark.parametrize("build, input_shape, total", [
    (models.lenet5, (1, 1, 32, 32), 61_706),
    (models.alexnet, (1, 3, 227, 227), 62_378_344),
    (models.resnet18, (1, 3, 224, 224), 11_689_512),
])
def test_published_parameter_counts(build, input_shape, total):
    model = build(rng=0)
    s = models.summary(model, input_shape)
    assert s.total_params == total == sum(p.size for p in model.parameters())
    assert s.rows[-1].output_shape[-1] == (10 if build is models.lenet5 else 1000)


def test_vgg16_summary_is_fast_and_exact():
    model = models.vgg16(rng=0)
    # The first backend query of a process imports the backends (numba, scipy): a one-time
    # cost of the library, not of summary().
    models.summary(models.lenet5(), (1, 1, 32, 32))
    start = time.perf_counter()
    s = models.summary(model, (2, 3, 224, 224))
    assert time.perf_counter() - start < 0.5
    assert s.total_params == 138_357_544
    assert s.total_macs == 2 * 15_470_264_320
    first = s.rows[0]
    assert (first.name, first.kind, first.output_shape, first.params) == (
        "features.0", "Conv2d", (2, 64, 224, 224), 1792)
    assert first.activation_bytes == 2 * 64 * 224 * 224 * 4
    assert s.total_activation_bytes == sum(r.activation_bytes for r in s.rows)
    assert [r.output_shape for r in s.rows if r.kind == "MaxPool2d"][-1] == (2, 512, 7, 7)
    text = str(s)
    assert text.splitlines()[0].split() == ["layer", "type", "output", "shape", "params",
                                            "MACs", "activation", "runs"]
    assert "138,357,544 parameters" in text and "classifier.6" in text


def test_alexnet_first_layer_and_lenet_shapes():
    s = models.summary(models.alexnet(rng=0), (1, 3, 227, 227))
    assert (s.rows[0].params, s.rows[0].output_shape) == (34_944, (1, 96, 55, 55))
    pools = [r.output_shape[2:] for r in s.rows if r.kind == "MaxPool2d"]
    assert pools == [(27, 27), (13, 13), (6, 6)]
    lenet = models.summary(models.lenet5(), (5, 1, 32, 32))
    shapes = {r.name: r.output_shape for r in lenet.rows}
    assert shapes["c1"] == (5, 6, 28, 28) and shapes["s2"] == (5, 6, 14, 14)
    assert shapes["c3"] == (5, 16, 10, 10) and shapes["s4"] == (5, 16, 5, 5)
    assert shapes["c5"] == (5, 120, 1, 1) and shapes["f6"] == (5, 84)
    with pytest.raises(cb.ShapeError):
        models.summary(models.lenet5(), (1, 3, 32, 32))


def test_resnet18_keys_and_structure():
    model = models.resnet18(rng=0, dtype=np.float64)
    keys = list(model.state_dict())
    assert len(keys) == 122
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv1.weight",
                "layer1.1.bn2.num_batches_tracked", "layer2.0.downsample.0.weight",
                "layer4.0.downsample.1.running_mean", "fc.weight", "fc.bias"):
        assert key in keys
    assert "layer1.0.downsample.0.weight" not in keys
    assert model.conv1.weight.dtype == np.float64
    s = models.summary(model, (1, 3, 224, 224))
    assert s.rows[0].activation_bytes == 64 * 112 * 112 * 8
    assert s.total_macs == 1_814_073_344


def test_tflearn_cnn_summary_totals_by_hand():
    """The lectures' TFLearn network: 'same' 3x3 convolutions keep 32x32 and 16x16, each
    max pooling halves, so FC 512 reads 64 maps of 8x8."""
    convs = sum(3 * 3 * cin * cout + cout for cin, cout in ((3, 32), (32, 64), (64, 64)))
    params = convs + 64 * 8 * 8 * 512 + 512 + 512 * 10 + 10
    assert params == 2_159_114
    macs = (32 * 32 * 32 * 3 * 9 + 16 * 16 * 64 * 32 * 9 + 16 * 16 * 64 * 64 * 9
            + 4096 * 512 + 512 * 10)
    model = models.tflearn_cnn(rng=0)
    s = models.summary(model, (8, 3, 32, 32))
    assert s.total_params == params == sum(p.size for p in model.parameters())
    assert s.total_macs == 8 * macs == 137_142_272
    shapes = {r.name: r.output_shape for r in s.rows}
    assert shapes == {
        "conv1": (8, 32, 32, 32), "relu1": (8, 32, 32, 32), "pool1": (8, 32, 16, 16),
        "conv2": (8, 64, 16, 16), "relu2": (8, 64, 16, 16), "conv3": (8, 64, 16, 16),
        "relu3": (8, 64, 16, 16), "pool2": (8, 64, 8, 8), "flatten": (8, 4096),
        "fc1": (8, 512), "relu4": (8, 512), "dropout": (8, 512), "fc2": (8, 10)}
    assert [k for k, _ in model.named_parameters()] == [
        f"{name}.{p}" for name in ("conv1", "conv2", "conv3", "fc1", "fc2")
        for p in ("weight", "bias")]
    assert model.dropout.p == 0.5 and model.conv1.padding == "same"
    assert models.summary(models.tflearn_cnn(num_classes=3), (1, 3, 32, 32)).rows[-1] \
        .output_shape == (1, 3)
    with pytest.raises(cb.ShapeError):      # FC 512 takes 4096 features: 32x32 input only
        models.summary(model, (1, 3, 64, 64))
    np.testing.assert_array_equal(models.tflearn_cnn(rng=3).fc1.weight,
                                  models.tflearn_cnn(rng=3).fc1.weight)


def test_backend_reaches_every_convolution():
    model = models.resnet18(backend="im2col")
    convs = [m for m in model.modules() if isinstance(m, cb.layers.Conv2d)]
    assert len(convs) == 20 and all(m.backend == "im2col" for m in convs)
    model.backend = "naive"
    assert all(m.backend == "naive" for m in model.modules())
    np.testing.assert_array_equal(models.lenet5(rng=3).c1.weight,
                                  models.lenet5(rng=3).c1.weight)


def test_summary_of_the_parity_layers():
    """Indices-returning pools are tabulated by their values' shape; 1-D and 3-D batch norm
    and adaptive max pooling have their shapes too."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, rng=0), nn.BatchNorm2d(4),
                        nn.MaxPool2d(2, return_indices=True))
    s = models.summary(net, (2, 3, 9, 9))
    assert [(r.kind, r.output_shape) for r in s.rows][1:] == [
        ("BatchNorm2d", (2, 4, 7, 7)), ("MaxPool2d", (2, 4, 3, 3))]
    assert s.rows[2].activation_bytes == 2 * 4 * 3 * 3 * 4
    seq = nn.Sequential(nn.Conv1d(2, 6, 3, rng=0), nn.BatchNorm1d(6), nn.AdaptiveMaxPool1d(4),
                        nn.Flatten(), nn.Linear(24, 5, rng=1), nn.BatchNorm1d(5))
    rows = models.summary(seq, (3, 2, 11)).rows
    assert [r.output_shape for r in rows] == [(3, 6, 9), (3, 6, 9), (3, 6, 4), (3, 24),
                                              (3, 5), (3, 5)]
    assert rows[1].params == rows[5].params + 2 == 12
    vol = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1, rng=0), nn.BatchNorm3d(2),
                        nn.AvgPool3d(2, divisor_override=3), nn.AdaptiveMaxPool3d((1, 2, 1)))
    assert models.summary(vol, (1, 1, 4, 6, 4)).rows[-1].output_shape == (1, 2, 1, 2, 1)
    with pytest.raises(cb.ShapeError, match="expected 5D input"):
        models.summary(vol, (1, 4, 6, 4))


# ----------------------------------------------------------------------------- backends per layer

WINOGRAD_STRIDE = "winograd needs stride 1, got stride (2, 2)"
STRIDED = ("conv1", "layer2.0.conv1", "layer2.0.downsample.0", "layer3.0.conv1",
           "layer3.0.downsample.0", "layer4.0.conv1", "layer4.0.downsample.0")


def test_resnet18_on_winograd_names_the_layer_it_cannot_run():
    model = models.resnet18(backend="winograd", rng=0).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32)
    with pytest.raises(cb.UnsupportedError) as info:
        model(x)
    assert str(info.value).startswith(
        f"conv1: backend 'winograd' cannot run this conv: {WINOGRAD_STRIDE}. Backends that "
        f"can: ")
    assert info.value.layer_path == "conv1"
    assert isinstance(info.value.__cause__, cb.UnsupportedError)
    # With the stem and the block's strided 3x3 moved to im2col, the 1x1 shortcut is next.
    model.conv1.backend = "im2col"
    model.layer2[0].conv1.backend = "im2col"
    with pytest.raises(cb.UnsupportedError) as info:
        model(x)
    e = info.value
    assert e.layer_path == "layer2.0.downsample.0"
    assert f"{e.layer_path}.weight" in model.state_dict()
    assert str(e) == f"layer2.0.downsample.0: {e.__cause__}"
    assert str(e).count("layer2.0.downsample.0") == 1 and WINOGRAD_STRIDE in str(e)
    assert e.__cause__.__cause__ is None


def test_resnet18_shape_errors_name_the_layer():
    model = models.resnet18(rng=0).eval()
    with pytest.raises(cb.ShapeError, match=r"^conv1: Given groups=1, weight of size "
                                            r"\[64, 3, 7, 7\], expected input\[1, 4, 32, 32\] "
                                            r"to have 3 channels, but got 4 channels instead"):
        model(np.zeros((1, 4, 32, 32), np.float32))
    model.layer3[1].conv2 = nn.Conv2d(128, 256, 3, padding=1, bias=False, rng=0)
    message = (r"^layer3\.1\.conv2: Given groups=1, weight of size \[256, 128, 3, 3\], "
               r"expected input\[1, 256, 2, 2\] to have 128 channels")
    with pytest.raises(cb.ShapeError, match=message):
        model(np.zeros((1, 3, 32, 32), np.float32))
    with pytest.raises(cb.ShapeError, match=message):
        models.summary(model, (1, 3, 32, 32))


def test_summary_says_which_layers_the_backend_runs():
    model = models.resnet18(backend="winograd", rng=0)
    s = models.summary(model, (1, 3, 32, 32))
    rows = {r.name: r for r in s.rows}
    prefixes = {k.rsplit(".", 1)[0] for k in model.state_dict()}
    assert all(r.name in prefixes for r in s.rows if r.params)
    for name in STRIDED:
        assert (rows[name].runs, rows[name].backend_ok, rows[name].runs_on) == (
            f"no: {WINOGRAD_STRIDE}", False, None), name
    assert s.cannot_run == STRIDED
    for r in s.rows:
        if r.kind == "Conv2d" and r.name not in STRIDED:      # the 3x3s at stride 1
            assert (r.runs, r.backend_ok, r.runs_on) == ("yes", True, "winograd"), r.name
    for name in ("bn1", "relu", "layer1.0.bn2", "flatten", "fc"):
        assert (rows[name].runs, rows[name].backend_ok) == (None, None)
    # winograd has no pooling: the pooling layers run on what "auto" chooses.
    auto = cb.explain((1, 64, 16, 16), op="max_pool", kernel_size=3, stride=2,
                      padding=1).choice
    assert rows["maxpool"].runs == f"auto: {auto}" and rows["maxpool"].runs_on == auto
    # The final 1x1 average runs on winograd itself, lowered to a 1x1 convolution.
    assert rows["avgpool"].runs == "lowered: adaptive_avg_pool -> avg_pool -> conv"
    assert rows["avgpool"].backend_ok
    text = str(s)
    conv1 = next(line for line in text.splitlines() if line.startswith("conv1 "))
    assert conv1.endswith(f"no: {WINOGRAD_STRIDE}")
    assert next(line for line in text.splitlines()
                if line.startswith("layer1.0.conv1 ")).endswith("  yes")
    assert text.splitlines()[-1] == f"cannot run on their backend (7): {', '.join(STRIDED)}"
    # Moving layers to another backend changes the column as it changes the forward.
    model.conv1.backend = "im2col"
    model.layer2[0].conv1.backend = "im2col"
    s = models.summary(model, (1, 3, 32, 32))
    assert s.rows[0].runs == "yes" and s.cannot_run == STRIDED[2:]


def test_summary_reports_auto_lowerings_and_defaults():
    lenet = models.summary(models.lenet5(rng=0), (2, 1, 32, 32))
    for r in lenet.rows:
        if r.kind in ("Conv2d", "AvgPool2d"):
            assert r.runs == f"auto: {r.runs_on}" and r.backend_ok
    net = nn.Sequential(nn.ConvTranspose2d(4, 4, 3, rng=0), nn.AvgPool2d(2),
                        nn.Conv2d(4, 4, 3, stride=2, rng=0), backend="winograd")
    rows = models.summary(net, (1, 4, 8, 8)).rows
    assert (rows[0].runs, rows[0].runs_on) == ("lowered: conv_transpose -> conv", "winograd")
    # winograd's lowering of the 2x2/2 average needs stride 1: the default leaves it to auto
    assert rows[1].runs.startswith("auto: ")          # what its forward runs on
    assert rows[2].runs == f"no: {WINOGRAD_STRIDE}"
    net.backend = "im2col"
    rows = models.summary(net, (1, 4, 8, 8)).rows
    assert [r.runs for r in rows] == ["yes", "lowered: avg_pool -> conv", "yes"]
    net(np.zeros((1, 4, 8, 8), np.float32))
    # A default backend set around summary() is the one reported, as for a forward.
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, rng=0), nn.MaxPool2d(2))
    with cb.set_backend("winograd"):
        rows = models.summary(plain, (1, 3, 9, 9)).rows
        with pytest.raises(cb.UnsupportedError, match=r"^0: "):
            plain(np.zeros((1, 3, 9, 9), np.float32))
    assert rows[0].runs == f"no: {WINOGRAD_STRIDE}" and rows[1].runs.startswith("auto: ")
    with cb.set_backend("naive"):
        # naive has an avg_pool kernel; its max pooling is its indices kernel, lowered.
        averaged = nn.Sequential(plain[0], nn.AvgPool2d(2))
        assert [r.runs for r in models.summary(averaged, (1, 3, 9, 9)).rows] == ["yes", "yes"]
        assert models.summary(plain, (1, 3, 9, 9)).rows[1].runs == \
            "lowered: max_pool -> max_pool_with_indices"
    plain.backend = "no-such-backend"
    row = models.summary(plain, (1, 3, 9, 9)).rows[0]
    assert row.backend_ok is False and row.runs.startswith("no: Unknown backend")


class _IndicesOnly(Backend):
    """Has a max_pool method but declines it, so max pooling runs through its lowering."""

    name = "indices-only"

    def supports(self, op, spec):
        return None if op == "max_pool_with_indices" else "indices-only declines " + op

    def max_pool(self, x, spec):
        raise AssertionError("declined, never called")

    def max_pool_with_indices(self, x, spec):
        return cb.get_backend("naive").max_pool_with_indices(x, spec)


def test_summary_lowered_pooling_is_what_the_forward_runs():
    pool = nn.MaxPool2d(2, backend=_IndicesOnly())
    row = models.summary(nn.Sequential(pool), (1, 2, 6, 6)).rows[0]
    assert (row.runs, row.runs_on, row.backend_ok) == ("lowered", "indices-only", True)
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 6), dtype=np.float32)
    np.testing.assert_array_equal(pool(x), cb.max_pool2d(x, 2, backend="naive"))


# ----------------------------------------------------------------------------- PyTorch twins


def torch_lenet5(nn):
    return nn.Sequential(OrderedDict(
        c1=nn.Conv2d(1, 6, 5), tanh1=nn.Tanh(), s2=nn.AvgPool2d(2),
        c3=nn.Conv2d(6, 16, 5), tanh3=nn.Tanh(), s4=nn.AvgPool2d(2),
        c5=nn.Conv2d(16, 120, 5), tanh5=nn.Tanh(), flatten=nn.Flatten(),
        f6=nn.Linear(120, 84), tanh6=nn.Tanh(), output=nn.Linear(84, 10)))


def torch_alexnet(nn):
    features = nn.Sequential(
        nn.Conv2d(3, 96, 11, 4), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        nn.Conv2d(96, 256, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 384, 3, padding=1),
        nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
    classifier = nn.Sequential(nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(),
                               nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
    return nn.Sequential(OrderedDict(features=features, avgpool=nn.AdaptiveAvgPool2d(6),
                                     flatten=nn.Flatten(), classifier=classifier))


def torch_vgg16(nn):
    layers, channels = [], 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU()]
            channels = v
    classifier = nn.Sequential(nn.Linear(25088, 4096), nn.ReLU(), nn.Dropout(),
                               nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
                               nn.Linear(4096, 1000))
    return nn.Sequential(OrderedDict(features=nn.Sequential(*layers),
                                     avgpool=nn.AdaptiveAvgPool2d(7), flatten=nn.Flatten(),
                                     classifier=classifier))


def torch_resnet18(nn):
    class Block(nn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride,
                                                          bias=False), nn.BatchNorm2d(planes))

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    stages = OrderedDict()
    for i, (inplanes, planes, stride) in enumerate(
            ((64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)), 1):
        stages[f"layer{i}"] = nn.Sequential(Block(inplanes, planes, stride),
                                            Block(planes, planes, 1))
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 64, 7, 2, 3, bias=False), bn1=nn.BatchNorm2d(64), relu=nn.ReLU(),
        maxpool=nn.MaxPool2d(3, 2, 1), **stages, avgpool=nn.AdaptiveAvgPool2d(1),
        flatten=nn.Flatten(), fc=nn.Linear(512, 1000)))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):   # non-trivial statistics, so eval mode is tested
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    return model


def torch_tflearn_cnn(nn):
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 32, 3, padding="same"), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(32, 64, 3, padding="same"), relu2=nn.ReLU(),
        conv3=nn.Conv2d(64, 64, 3, padding="same"), relu3=nn.ReLU(), pool2=nn.MaxPool2d(2),
        flatten=nn.Flatten(), fc1=nn.Linear(4096, 512), relu4=nn.ReLU(),
        dropout=nn.Dropout(0.5), fc2=nn.Linear(512, 10)))


TWINS = {"lenet5": (torch_lenet5, (4, 1, 32, 32)),
         "alexnet": (torch_alexnet, (1, 3, 227, 227)),
         "vgg16": (torch_vgg16, (1, 3, 64, 64)),
         "resnet18": (torch_resnet18, (2, 3, 64, 64)),
         "tflearn_cnn": (torch_tflearn_cnn, (4, 3, 32, 32))}


@pytest.fixture(scope="module")
def twins(torch):
    """name -> (our model with the twin's weights, PyTorch's output, input), built once."""
    cache = {}

    def get(name):
        if name not in cache:
            make, shape = TWINS[name]
            theirs = make(torch.nn).eval()
            ours = getattr(models, name)().eval()
            ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
            x = np.random.default_rng().standard_normal(shape, dtype=np.float32)
            with torch.no_grad():
                ref = theirs(torch.from_numpy(x)).numpy()
            cache[name] = ours, ref, x
        return cache[name]
    return get


@pytest.mark.parametrize("backend", cb.backends())
@pytest.mark.parametrize("name", list(TWINS))
def test_forward_equals_pytorch_twin(twins, name, backend):
    if backend not in cb.available_backends():
        pytest.skip(f"backend {backend!r} is not available here")
    if name in ("alexnet", "vgg16") and backend in SLOW_FOR_BIG_MODELS:
        pytest.skip(f"{backend} is too slow for {name}; lenet5 and resnet18 cover it")
    if backend == "cuda" and os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
        pytest.skip("the CUDA simulator interprets every thread in Python: far too slow "
                    "for a whole model")
    ours, ref, x = twins(name)
    before = x.copy()
    ours.backend = backend
    try:
        y = ours(x)
    except cb.UnsupportedError as e:
        pytest.skip(f"{backend} declines a layer of {name}: {e}")
    np.testing.assert_array_equal(x, before)
    assert y.shape == ref.shape and y.dtype == np.float32
    assert relative_error(y, ref) < 1e-4


def test_resnet18_training_mode_matches_pytorch(torch):
    theirs = torch_resnet18(torch.nn).train()
    ours = models.resnet18(backend="auto")
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    # 64x64 leaves layer4 eight values per channel; with two (32x32) batch statistics
    # amplify float32 rounding past 1e-4 (float64 agrees to 1e-12 there too).
    x = np.random.default_rng().standard_normal((2, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        ref = theirs(torch.from_numpy(x)).numpy()
    assert relative_error(ours(x), ref) < 1e-4
    for key, value in theirs.state_dict().items():
        assert relative_error(ours.state_dict()[key], value.numpy()) < 1e-5, key
    assert int(ours.layer3[1].bn2.num_batches_tracked) == 1
