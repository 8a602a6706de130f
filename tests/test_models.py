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
                                            "MACs", "activation"]
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


TWINS = {"lenet5": (torch_lenet5, (4, 1, 32, 32)),
         "alexnet": (torch_alexnet, (1, 3, 227, 227)),
         "vgg16": (torch_vgg16, (1, 3, 64, 64)),
         "resnet18": (torch_resnet18, (2, 3, 64, 64))}


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
