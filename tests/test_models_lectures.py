"""The lectures' further networks (ZFNet, VGG-19, GoogLeNet, FCN-32s/16s/8s) and the
receptive-field columns of summary(): parameter totals, map sizes, state-dict keys, rf
and jump by hand, and forwards (and, for the branching models, backwards) equal to
hand-written PyTorch twins.

Each twin is built with torch.nn modules of the same structure, on the meta device, and
takes our model's ``state_dict()`` (the arrays as tensors), so both compute with the same
weights. Our float32 output must be within 1e-4 of the twin's float32 output and within
1e-5 of its float64 output. The twins need the ``torch`` fixture, which skips them where
torch is missing; the rest needs only NumPy. The models run on im2col: the default
"auto" picks fft for FCN's fc6 (7x7 4096 on a 7x7 map), seconds slower.
"""

from collections import OrderedDict
from fractions import Fraction

import numpy as np
import pytest

import convbackends as cb
from convbackends import models, nn
from convbackends.models.fcn import bilinear_kernel
from convbackends.models.googlenet import INCEPTION_TABLE, Concat, GoogLeNetOutputs, Inception
from convbackends.tools.measure import relative_error

BACKEND = "im2col"


@pytest.fixture(scope="module")
def built():
    """``built(builder)``: one model per builder for this file, on im2col, seed 0 (the big
    ones take seconds to draw)."""
    cache = {}

    def get(build):
        if build not in cache:
            cache[build] = build(backend=BACKEND, rng=0)
        return cache[build]
    yield get
    cache.clear()


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch", reason="PyTorch twins need torch (CI installs it)")
    torch.manual_seed(0)
    return torch


# ----------------------------------------------------------------------------- totals, shapes, keys


def inception_params(cin, c1, r3, c3, r5, c5, pp):
    return (cin * c1 + c1 + cin * r3 + r3 + r3 * c3 * 9 + c3 + cin * r5 + r5
            + r5 * c5 * 25 + c5 + cin * pp + pp)


def googlenet_params_by_hand(aux):
    total = (3 * 64 * 49 + 64) + (64 * 64 + 64) + (64 * 192 * 9 + 192)
    cin = 192
    for c1, r3, c3, r5, c5, pp in (
            (64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), (192, 96, 208, 16, 48, 64),
            (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
            (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128),
            (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)):
        total += inception_params(cin, c1, r3, c3, r5, c5, pp)
        cin = c1 + c3 + c5 + pp
    total += 1024 * 1000 + 1000
    if aux:
        for c in (512, 528):
            total += c * 128 + 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000
    return total


def fcn_params_by_hand(variant, k=21):
    vgg_convs = 14_714_688      # VGG-16's features: 138,357,544 minus its three FC layers
    total = vgg_convs + (512 * 49 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * k + k)
    ups = {"32s": (64,), "16s": (4, 32), "8s": (4, 4, 16)}[variant]
    skips = {"32s": (), "16s": (512,), "8s": (512, 256)}[variant]
    return total + sum(k * k * s * s for s in ups) + sum(c * k + k for c in skips)


PARAMS = [
    (models.zfnet, (1, 3, 224, 224), 107_627_624, 1000),
    (models.vgg19, (1, 3, 224, 224), 143_667_240, 1000),
    (models.googlenet, (1, 3, 224, 224), 6_998_552, 1000),
    (models.fcn32s, (1, 3, 224, 224), 136_152_917, 21),
    (models.fcn16s, (1, 3, 224, 224), 134_815_994, 21),
    (models.fcn8s, (1, 3, 224, 224), 134_489_759, 21),
]


@pytest.mark.parametrize("build, shape, total, classes", PARAMS,
                         ids=[p[0].__name__ for p in PARAMS])
def test_parameter_totals(built, build, shape, total, classes):
    model = built(build)
    s = models.summary(model, shape)
    assert s.total_params == total == sum(p.size for p in model.parameters())
    assert s.rows[-1].output_shape[1] == classes
    if build is models.googlenet:
        assert total == googlenet_params_by_hand(aux=False)
    if build in (models.fcn32s, models.fcn16s, models.fcn8s):
        assert total == fcn_params_by_hand(build.__name__[3:])
    if build is models.vgg19:
        # VGG-16 and three more 3x3 convolutions: 256 -> 256, and twice 512 -> 512
        assert total - 138_357_544 == (256 * 256 * 9 + 256) + 2 * (512 * 512 * 9 + 512)


def test_googlenet_with_auxiliary_classifiers_counts_them_in_training():
    model = models.googlenet(aux_logits=True, rng=0)
    total = googlenet_params_by_hand(aux=True)
    assert total == 13_378_280 == sum(p.size for p in model.parameters())
    assert models.summary(model, (1, 3, 224, 224)).total_params == total
    rows = models.summary(model, (1, 3, 224, 224)).rows
    names = [r.name for r in rows]
    # each head's rows follow the module it branches from
    assert names.index("aux1.avgpool") == names.index("inception4a.cat") + 1
    assert names.index("aux2.fc2") + 1 == names.index("inception4e.branch1.conv")
    aux1 = {r.name: r for r in rows}["aux1.avgpool"]
    assert aux1.output_shape == (1, 512, 4, 4)
    model.eval()            # the heads do not run: not in the table, not in the output
    s = models.summary(model, (1, 3, 224, 224))
    assert s.total_params == 6_998_552 and not any(r.name.startswith("aux") for r in s.rows)


def test_zfnet_maps_are_the_papers(built):
    s = models.summary(built(models.zfnet), (1, 3, 224, 224))
    convs = [r.output_shape for r in s.rows if r.kind == "Conv2d"]
    assert convs == [(1, 96, 110, 110), (1, 256, 26, 26), (1, 512, 13, 13),
                     (1, 1024, 13, 13), (1, 512, 13, 13)]
    pools = [r.output_shape[2:] for r in s.rows if r.kind == "MaxPool2d"]
    assert pools == [(55, 55), (13, 13), (6, 6)]
    assert s.rows[0].params == 96 * 3 * 7 * 7 + 96
    assert s.rows[0].rf == (7, 7) and s.rows[0].jump == (2, 2)
    # the lectures' change from AlexNet: 7x7/2 instead of 11x11/4
    alex = models.summary(models.alexnet(rng=0), (1, 3, 227, 227))
    assert alex.rows[0].rf == (11, 11) and alex.rows[0].jump == (4, 4)


def test_vgg19_layout_and_keys(built):
    model = built(models.vgg19)
    keys = list(model.state_dict())
    convs = [k for k in keys if k.startswith("features") and k.endswith("weight")]
    assert len(convs) == 16 and convs[-1] == "features.34.weight"
    assert [k for k in keys if k.startswith("classifier")] == [
        f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]
    s = models.summary(model, (1, 3, 224, 224))
    assert [r.name for r in s.rows if r.kind == "MaxPool2d"] == [
        "features.4", "features.9", "features.18", "features.27", "features.36"]
    assert s.rows[-1].output_shape == (1, 1000)


def test_googlenet_maps_channels_and_keys(built):
    model = built(models.googlenet)
    s = models.summary(model, (1, 3, 224, 224))
    out = {r.name: r.output_shape for r in s.rows}
    assert out["conv1.conv"] == (1, 64, 112, 112) and out["maxpool1"] == (1, 64, 56, 56)
    assert out["conv3.conv"] == (1, 192, 56, 56) and out["maxpool2"] == (1, 192, 28, 28)
    channels = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528,
                "4e": 832, "5a": 832, "5b": 1024}         # the paper's table
    for name, c in channels.items():
        size = 28 if name[0] == "3" else 14 if name[0] == "4" else 7
        assert out[f"inception{name}.cat"] == (1, c, size, size), name
        c1, _, c3, _, c5, pp = INCEPTION_TABLE[name]
        assert c1 + c3 + c5 + pp == c
    assert out["maxpool3"] == (1, 480, 14, 14) and out["maxpool4"] == (1, 832, 7, 7)
    assert out["avgpool"] == (1, 1024, 1, 1) and out["fc"] == (1, 1000)
    sd = model.state_dict()
    assert sd["inception3a.branch3.1.conv.weight"].shape == (32, 16, 5, 5)
    assert sd["inception5b.branch4.1.conv.weight"].shape == (128, 832, 1, 1)
    for key in ("conv1.conv.weight", "conv1.conv.bias", "inception3a.branch1.conv.weight",
                "inception4e.branch2.1.conv.bias", "fc.weight", "fc.bias"):
        assert key in sd, key
    assert not any(".bn." in k for k in sd) and not any(k.startswith("aux") for k in sd)
    # 3x3/2 poolings that round up: 31x31 is the smallest input (maxpool4 needs 2 rows)
    assert models.summary(model, (1, 3, 31, 31)).rows[-1].output_shape == (1, 1000)
    with pytest.raises(cb.ShapeError, match="^maxpool4: "):
        models.summary(model, (1, 3, 30, 30))


def test_fcn_output_is_the_input_size_for_any_size(built):
    for build in (models.fcn32s, models.fcn16s, models.fcn8s):
        model = built(build)
        for h, w in [(1, 1), (2, 7), (31, 32), (33, 63), (64, 65), (97, 100), (224, 224),
                     (255, 257), (500, 375)]:
            assert model.output_shape((2, 3, h, w)) == (2, 21, h, w), (build.__name__, h, w)
    assert models.fcn32s(num_classes=5, rng=0).output_shape((1, 3, 9, 8)) == (1, 5, 9, 8)
    keys = list(built(models.fcn8s).state_dict())
    assert keys[:2] == ["features.0.weight", "features.0.bias"]
    assert [k for k in keys if not k.startswith("features")] == [
        "fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias", "score_fr.weight", "score_fr.bias",
        "upscore2.weight", "score_pool4.weight", "score_pool4.bias", "upscore_pool4.weight",
        "score_pool3.weight", "score_pool3.bias", "upscore8.weight"]


def _centre_map(layers):
    """The input coordinate of an output pixel's receptive-field centre, ``x = a*y + b``,
    through ``layers`` (input first): a window maps y to ``s*y - p + d*(k-1)/2``, a
    transposed one is that map's inverse."""
    a, b = 1.0, 0.0
    for kind, k, s, p in reversed(layers):
        if kind == "conv":
            a, b = s * a, s * b - p + (k - 1) / 2
        else:
            a, b = a / s, (b + p - (k - 1) / 2) / s
    return a, b


def test_fcn_crop_offsets_align_the_maps(built):
    """The crops are where each map's pixel 0 meets the input's (or the map it is added
    to): worked out from the layer geometry, independently of the model's constants."""
    model = built(models.fcn8s)
    vgg = []
    for layer in model.features.children():
        if isinstance(layer, nn.Conv2d):
            vgg.append(("conv", 3, 1, layer.padding))
        elif isinstance(layer, nn.MaxPool2d):
            vgg.append(("conv", 2, 2, 0))
    assert vgg[0] == ("conv", 3, 1, 100)
    pool = [i for i, v in enumerate(vgg) if v[1] == 2]
    to_pool3, to_pool4 = vgg[:pool[2] + 1], vgg[:pool[3] + 1]
    head = vgg + [("conv", 7, 1, 0), ("conv", 1, 1, 0), ("conv", 1, 1, 0)]
    # FCN-32s: the 64/32 upsampling's pixel i is input pixel i - 19
    assert _centre_map(head + [("up", 64, 32, 0)]) == (1.0, -19.0)
    up2 = head + [("up", 4, 2, 0)]
    # upscore2's pixel i is pool4's pixel i + 5 (score_pool4c's offset) ...
    a4, b4 = _centre_map(to_pool4)
    a, b = _centre_map(up2)
    assert (a, (b - b4) / a4) == (a4, 5.0)
    # ... and FCN-16s' 32/16 upsampling's pixel i is input pixel i - 27
    assert _centre_map(up2 + [("up", 32, 16, 0)]) == (1.0, -27.0)
    up4 = up2 + [("up", 4, 2, 0)]
    a3, b3 = _centre_map(to_pool3)
    a, b = _centre_map(up4)
    assert (a, (b - b3) / a3) == (a3, 9.0)
    assert _centre_map(up4 + [("up", 16, 8, 0)]) == (1.0, -31.0)
    assert (model.score_pool4c.offset, model.score_pool3c.offset, model.score.offset) == (
        5, 9, 31)
    assert built(models.fcn16s).score.offset == 27 and built(models.fcn32s).score.offset == 19


def test_bilinear_kernel_interpolates():
    w = bilinear_kernel(3, 4)
    assert w.shape == (3, 3, 4, 4) and w.dtype == np.float32
    np.testing.assert_allclose(w[1, 1, 0], [1 / 16, 3 / 16, 3 / 16, 1 / 16])
    assert not w[0, 1].any() and not w[2, 0].any()
    np.testing.assert_allclose(bilinear_kernel(1, 3, np.float64)[0, 0, 1], [0.5, 1, 0.5])
    # Upsampling a linear ramp by 2 and by 8 gives the ramp at the finer spacing inside.
    for stride in (2, 8):
        ramp = np.add.outer(np.arange(6.0), 2 * np.arange(6.0))[None, None]
        up = cb.conv_transpose2d(ramp, bilinear_kernel(1, 2 * stride, np.float64),
                                 stride=stride, padding=stride // 2)
        assert up.shape[-1] == 6 * stride
        t = (np.arange(6 * stride) - (stride - 1) / 2) / stride
        inner = slice(stride, -stride)
        expected = np.add.outer(t, 2 * t)[inner, inner]
        np.testing.assert_allclose(up[0, 0][inner, inner], expected, atol=1e-12)
    model = models.fcn8s(num_classes=4, rng=0)
    np.testing.assert_array_equal(model.upscore8.weight, bilinear_kernel(4, 16))
    assert model.upscore8.bias is None


# ----------------------------------------------------------------------------- receptive fields


def test_receptive_field_of_the_lectures_dilated_stack():
    """Dilated 3x3 convolutions (dilation 1, 2, 4) have effective kernels 3, 5, 9 and see
    3x3, 7x7 and 15x15: the field grows by (k_eff - 1) * (product of earlier strides)."""
    stack = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=0), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=2, dilation=2, rng=0), nn.ReLU(),
                          nn.Conv2d(4, 4, 3, padding=4, dilation=4, rng=0))
    rows = models.summary(stack, (1, 1, 32, 32)).rows
    assert [r.rf for r in rows] == [(3, 3)] * 2 + [(7, 7)] * 2 + [(15, 15)]
    assert all(r.jump == (1, 1) for r in rows)
    # with strides: 3x3/2, then a dilation-2 3x3 (k_eff 5) grows by 4 * 2; then 2x2/2 pooling
    strided = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, rng=0),
                            nn.Conv2d(4, 4, 3, dilation=2, rng=0), nn.MaxPool2d(2),
                            nn.Conv2d(4, 4, (1, 3), rng=0))
    rows = models.summary(strided, (1, 1, 64, 64)).rows
    assert [(r.rf, r.jump) for r in rows] == [
        ((3, 3), (2, 2)), ((11, 11), (2, 2)), ((13, 13), (4, 4)), ((13, 21), (4, 4))]
    text = models.summary(strided, (1, 1, 64, 64)).table(rf=True)
    header = text.splitlines()[0].split()
    assert header[:7] == ["layer", "type", "output", "shape", "rf", "jump", "params"]
    assert "(13, 21)" in text.splitlines()[5]
    assert str(models.summary(strided, (1, 1, 64, 64))).splitlines()[0].split()[4] == "params"


def test_receptive_fields_of_alexnet_vgg16_resnet18():
    rows = {r.name: r for r in models.summary(models.alexnet(rng=0), (1, 3, 227, 227)).rows}
    # 11 -> pool 11+2*4 -> conv2 19+4*8 -> pool 51+2*8 -> 3x3s +2*16 each -> pool +2*16
    expected = {"features.0": 11, "features.2": 19, "features.4": 51, "features.6": 67,
                "features.8": 99, "features.10": 131, "features.12": 163,
                "features.14": 195, "avgpool": 195}
    for name, rf in expected.items():
        assert rows[name].rf == (rf, rf), name
    assert rows["features.14"].jump == (32, 32) and rows["flatten"].rf is None
    assert rows["classifier.6"].rf is None and rows["classifier.6"].jump is None
    rows = {r.name: r for r in models.summary(models.vgg16(rng=0), (1, 3, 224, 224)).rows}
    # block by block: 5, 6 | 14, 16 | 40, 44 | 92, 100 | 196 at conv5_3, 212 at pool5
    for name, rf, jump in (("features.2", 5, 1), ("features.4", 6, 2), ("features.9", 16, 4),
                           ("features.16", 44, 8), ("features.23", 100, 16),
                           ("features.28", 196, 16), ("features.30", 212, 32)):
        assert (rows[name].rf, rows[name].jump) == ((rf, rf), (jump, jump)), name
    rows = {r.name: r for r in models.summary(models.resnet18(rng=0), (1, 3, 224, 224)).rows}
    # the shortcut's 1x1/2 sees less than the two 3x3s: the block takes the wider field
    assert rows["layer2.0.downsample.0"].rf == (43, 43)
    assert rows["layer2.0.bn2"].rf == (67, 67) and rows["layer2.0.relu"].rf == (67, 67)
    assert rows["layer4.1.bn2"].rf == (435, 435) and rows["layer4.1.bn2"].jump == (32, 32)
    # global average pooling over the 7x7 map: the whole map
    assert rows["avgpool"].rf == (435 + 6 * 32,) * 2 and rows["avgpool"].jump == (224, 224)


def test_receptive_fields_through_branches_and_upsampling(built):
    rows = {r.name: r for r in models.summary(built(models.googlenet),
                                              (1, 3, 224, 224)).rows}
    # stem: 7 (/2), pool 7+2*2 (/4), 3x3 11+2*4, pool 19+2*4 (/8)
    assert [rows[n].rf[0] for n in ("conv1.conv", "maxpool1", "conv2.conv", "conv3.conv",
                                    "maxpool2")] == [7, 11, 11, 19, 27]
    # inception 3a: 1x1 27, 3x3 27+2*8, 5x5 27+4*8, pool+1x1 27+2*8; joined: the widest
    branches = ["inception3a.branch1.conv"] + [f"inception3a.branch{i}.1.conv"
                                               for i in (2, 3, 4)]
    assert [rows[n].rf[0] for n in branches] == [27, 43, 59, 43]
    assert rows["inception3a.cat"].rf == (59, 59) and rows["inception3b.cat"].rf == (91, 91)
    assert rows["inception5b.cat"].jump == (32, 32)
    # a transposed convolution of stride 2, kernel 4: floor(3/2) more input steps, jump / 2
    up = nn.Sequential(nn.Conv2d(1, 1, 3, stride=4, rng=0), nn.ConvTranspose2d(1, 1, 4, 2),
                       nn.ConvTranspose2d(1, 1, 4, 2), nn.Conv2d(1, 1, 3, rng=0),
                       nn.ConvTranspose2d(1, 1, 3, 2))
    rows = models.summary(up, (1, 1, 64, 64)).rows
    assert [(r.rf[0], r.jump[0]) for r in rows] == [
        (3, 4), (7, 2), (9, 1), (11, 1), (12, Fraction(1, 2))]
    rows = {r.name: r for r in models.summary(built(models.fcn8s), (1, 3, 64, 64)).rows}
    # fc6 on pool5 (212, /32): 212 + 6*32; upscore2 +32 (/16), added to pool4's 100;
    # upscore_pool4 +16 (/8); upscore8 floor(15/8)*8 = +8 (/1); crops keep it
    assert rows["fc6"].rf == (404, 404) and rows["score_pool4"].rf == (100, 100)
    assert (rows["upscore2"].rf, rows["fuse_pool4"].rf) == ((436, 436), (436, 436))
    assert rows["upscore_pool4"].rf == (452, 452) and rows["fuse_pool3"].jump == (8, 8)
    assert (rows["score"].rf, rows["score"].jump) == ((460, 460), (1, 1))
    assert rows["score"].output_shape == (1, 21, 64, 64)


# ----------------------------------------------------------------------------- PyTorch twins


def torch_zfnet(tnn):
    features = tnn.Sequential(
        tnn.Conv2d(3, 96, 7, 2, 1), tnn.ReLU(), tnn.MaxPool2d(3, 2, ceil_mode=True),
        tnn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        tnn.Conv2d(96, 256, 5, 2), tnn.ReLU(), tnn.MaxPool2d(3, 2, ceil_mode=True),
        tnn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
        tnn.Conv2d(256, 512, 3, padding=1), tnn.ReLU(), tnn.Conv2d(512, 1024, 3, padding=1),
        tnn.ReLU(), tnn.Conv2d(1024, 512, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(3, 2))
    classifier = tnn.Sequential(tnn.Dropout(), tnn.Linear(18432, 4096), tnn.ReLU(),
                                tnn.Dropout(), tnn.Linear(4096, 4096), tnn.ReLU(),
                                tnn.Linear(4096, 1000))
    return tnn.Sequential(OrderedDict(features=features, avgpool=tnn.AdaptiveAvgPool2d(6),
                                      flatten=tnn.Flatten(), classifier=classifier))


def vgg_features(tnn, config, first_padding=1, ceil_mode=False):
    layers, channels = [], 3
    for v in config:
        if v == "M":
            layers.append(tnn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
        else:
            layers += [tnn.Conv2d(channels, v, 3, padding=first_padding if not layers else 1),
                       tnn.ReLU()]
            channels = v
    return tnn.Sequential(*layers)


CONFIG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
            512, 512, 512, "M")
CONFIG_E = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
            512, 512, 512, 512, "M")


def torch_vgg19(tnn):
    classifier = tnn.Sequential(tnn.Linear(25088, 4096), tnn.ReLU(), tnn.Dropout(),
                                tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Dropout(),
                                tnn.Linear(4096, 1000))
    return tnn.Sequential(OrderedDict(features=vgg_features(tnn, CONFIG_E),
                                      avgpool=tnn.AdaptiveAvgPool2d(7), flatten=tnn.Flatten(),
                                      classifier=classifier))


def torch_googlenet(torch, aux_logits=False, dropout=0.4, aux_dropout=0.7):
    tnn, F = torch.nn, torch.nn.functional

    class Conv(tnn.Module):
        def __init__(self, cin, cout, k, stride=1, padding=0):
            super().__init__()
            self.conv = tnn.Conv2d(cin, cout, k, stride, padding)

        def forward(self, x):
            return F.relu(self.conv(x))

    class Inception(tnn.Module):
        def __init__(self, cin, c1, r3, c3, r5, c5, pp):
            super().__init__()
            self.branch1 = Conv(cin, c1, 1)
            self.branch2 = tnn.Sequential(Conv(cin, r3, 1), Conv(r3, c3, 3, padding=1))
            self.branch3 = tnn.Sequential(Conv(cin, r5, 1), Conv(r5, c5, 5, padding=2))
            self.branch4 = tnn.Sequential(tnn.MaxPool2d(3, 1, 1, ceil_mode=True),
                                          Conv(cin, pp, 1))

        def forward(self, x):
            return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x),
                              self.branch4(x)], 1)

    class Aux(tnn.Module):
        def __init__(self, cin):
            super().__init__()
            self.conv = Conv(cin, 128, 1)
            self.fc1 = tnn.Linear(2048, 1024)
            self.fc2 = tnn.Linear(1024, 1000)

        def forward(self, x):
            x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
            return self.fc2(F.dropout(F.relu(self.fc1(x)), aux_dropout, self.training))

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = Conv(3, 64, 7, 2, 3)
            self.maxpool1 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            self.conv2 = Conv(64, 64, 1)
            self.conv3 = Conv(64, 192, 3, padding=1)
            self.maxpool2 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            cin = 192
            for name, row in INCEPTION_TABLE.items():
                setattr(self, "inception" + name, Inception(cin, *row))
                cin = row[0] + row[2] + row[4] + row[5]
            self.maxpool3 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            self.maxpool4 = tnn.MaxPool2d(3, 2, ceil_mode=True)
            self.norm = tnn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
            if aux_logits:
                self.aux1, self.aux2 = Aux(512), Aux(528)
            self.fc = tnn.Linear(1024, 1000)

        def forward(self, x):
            x = self.norm(self.maxpool1(self.conv1(x)))
            x = self.maxpool2(self.norm(self.conv3(self.conv2(x))))
            x = self.maxpool3(self.inception3b(self.inception3a(x)))
            x = self.inception4a(x)
            heads = aux_logits and self.training
            a1 = self.aux1(x) if heads else None
            x = self.inception4d(self.inception4c(self.inception4b(x)))
            a2 = self.aux2(x) if heads else None
            x = self.maxpool4(self.inception4e(x))
            x = torch.flatten(F.adaptive_avg_pool2d(self.inception5b(self.inception5a(x)), 1),
                              1)
            x = self.fc(F.dropout(x, dropout, self.training))
            return (x, a2, a1) if heads else x

    return Net()


def torch_fcn(torch, variant, classes=21, dropout=0.5):
    tnn = torch.nn

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.features = vgg_features(tnn, CONFIG_D, first_padding=100, ceil_mode=True)
            self.fc6 = tnn.Conv2d(512, 4096, 7)
            self.fc7 = tnn.Conv2d(4096, 4096, 1)
            self.score_fr = tnn.Conv2d(4096, classes, 1)
            self.drop = tnn.Dropout(dropout)
            if variant == "32s":
                self.upscore = tnn.ConvTranspose2d(classes, classes, 64, 32, bias=False)
                return
            self.upscore2 = tnn.ConvTranspose2d(classes, classes, 4, 2, bias=False)
            self.score_pool4 = tnn.Conv2d(512, classes, 1)
            if variant == "16s":
                self.upscore16 = tnn.ConvTranspose2d(classes, classes, 32, 16, bias=False)
                return
            self.upscore_pool4 = tnn.ConvTranspose2d(classes, classes, 4, 2, bias=False)
            self.score_pool3 = tnn.Conv2d(256, classes, 1)
            self.upscore8 = tnn.ConvTranspose2d(classes, classes, 16, 8, bias=False)

        def forward(self, x):
            def crop(t, offset, size):
                return t[:, :, offset:offset + size[0], offset:offset + size[1]]

            h, pools = x, {}
            for i, layer in enumerate(self.features):
                h = layer(h)
                pools[i] = h
            h = self.drop(torch.relu(self.fc7(self.drop(torch.relu(self.fc6(h))))))
            h = self.score_fr(h)
            if variant == "32s":
                return crop(self.upscore(h), 19, x.shape[2:])
            h = self.upscore2(h)
            h = h + crop(self.score_pool4(pools[23]), 5, h.shape[2:])
            if variant == "16s":
                return crop(self.upscore16(h), 27, x.shape[2:])
            h = self.upscore_pool4(h)
            h = h + crop(self.score_pool3(pools[16]), 9, h.shape[2:])
            return crop(self.upscore8(h), 31, x.shape[2:])

    return Net()


def twin_from(torch, make, ours):
    """``make()`` on the meta device, given our model's arrays as its tensors."""
    with torch.device("meta"):
        theirs = make()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state, assign=True)
    return theirs


def agree(torch, ours, theirs, x):
    """Our float32 output against the twin's in float32 and float64: both errors."""
    y = ours(x)
    with torch.no_grad():
        ref32 = theirs(torch.from_numpy(x)).numpy()
        ref64 = theirs.double()(torch.from_numpy(x.astype(np.float64))).numpy()
    assert y.shape == ref32.shape and y.dtype == np.float32
    return relative_error(y, ref32), relative_error(y, ref64)


TWINS = {
    # name: (our builder, twin builder given torch, input)
    "zfnet": (models.zfnet, lambda t: torch_zfnet(t.nn), (1, 3, 224, 224)),
    "vgg19": (models.vgg19, lambda t: torch_vgg19(t.nn), (1, 3, 64, 64)),
    "googlenet-31": (models.googlenet, torch_googlenet, (1, 3, 31, 31)),
    "googlenet-96": (models.googlenet, torch_googlenet, (1, 3, 96, 96)),
    "fcn32s": (models.fcn32s, lambda t: torch_fcn(t, "32s"), (1, 3, 40, 40)),
    "fcn16s": (models.fcn16s, lambda t: torch_fcn(t, "16s"), (1, 3, 37, 50)),
    "fcn8s": (models.fcn8s, lambda t: torch_fcn(t, "8s"), (1, 3, 17, 23)),
}


@pytest.mark.parametrize("name", list(TWINS))
def test_forward_equals_pytorch_twin(built, torch, name):
    build, make, shape = TWINS[name]
    ours = built(build).eval()
    theirs = twin_from(torch, lambda: make(torch), ours).eval()
    assert sum(p.numel() for p in theirs.parameters()) == sum(p.size for p in
                                                              ours.parameters())
    x = np.random.default_rng(1).standard_normal(shape, dtype=np.float32)
    err32, err64 = agree(torch, ours, theirs, x)
    assert err32 < 1e-4 and err64 < 1e-5, (err32, err64)


def test_googlenet_auxiliary_heads_train_as_pytorch(torch):
    """Training mode with both heads (dropout 0, so both draw nothing): the three outputs,
    the input's gradient and every parameter's gradient, in float64."""
    ours = models.googlenet(aux_logits=True, dropout=0.0, aux_dropout=0.0, dtype=np.float64,
                            backend=BACKEND, rng=0)
    theirs = twin_from(torch, lambda: torch_googlenet(torch, True, 0.0, 0.0), ours).train()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 64, 64))
    outs = ours(x)
    assert isinstance(outs, GoogLeNetOutputs) and outs.aux_logits1.shape == (2, 1000)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    touts = theirs(tx)
    grads = [rng.standard_normal(o.shape) for o in outs]
    for o, t in zip(outs, touts):
        assert relative_error(o, t.detach().numpy()) < 1e-10
    sum((t * torch.from_numpy(g)).sum() for t, g in zip(touts, grads)).backward()
    gx = ours.backward(tuple(grads))
    assert relative_error(gx, tx.grad.numpy()) < 1e-10
    theirs_grads = {k: p.grad.numpy() for k, p in theirs.named_parameters()}
    ours_grads = dict(ours.named_grads())
    assert set(ours_grads) == set(theirs_grads)
    for key, g in ours_grads.items():
        assert relative_error(g, theirs_grads[key]) < 1e-9, key
    # only the logits' gradient: the heads get none, the main path the same as above
    ours.zero_grad()
    ours(x)
    g_main = ours.backward(grads[0])
    tx.grad = None
    theirs.zero_grad()
    theirs(tx)[0].mul(torch.from_numpy(grads[0])).sum().backward()
    assert relative_error(g_main, tx.grad.numpy()) < 1e-10
    assert not any(k.startswith("aux") for k, _ in ours.named_grads())
    ours.eval()
    assert ours(x).shape == (2, 1000)
    with pytest.raises(cb.UnsupportedError, match="needs a forward in train mode"):
        ours.backward(grads[0])
    plain = models.googlenet(dtype=np.float64, backend=BACKEND, rng=0)
    logits = plain(x)
    assert logits.shape == (2, 1000)
    with pytest.raises(cb.ShapeError, match="no auxiliary outputs"):
        plain.backward((logits, grads[1], grads[2]))


def test_fcn8s_trains_as_pytorch(built, torch):
    """Both skips' gradients flow back into the backbone: the input's gradient and the
    gradients of layers on each path, float32, dropout 0."""
    ours = built(models.fcn8s).train()
    ours.drop6.p = ours.drop7.p = 0.0
    theirs = twin_from(torch, lambda: torch_fcn(torch, "8s", dropout=0.0), ours).train()
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 20, 28), dtype=np.float32)
    y = ours(x)
    g = rng.standard_normal(y.shape, dtype=np.float32)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ty = theirs(tx)
    assert relative_error(y, ty.detach().numpy()) < 1e-4
    (ty * torch.from_numpy(g)).sum().backward()
    gx = ours.backward(g)
    assert gx.shape == x.shape
    assert relative_error(gx, tx.grad.numpy()) < 1e-4
    theirs_grads = {k: p.grad.numpy() for k, p in theirs.named_parameters()}
    ours_grads = dict(ours.named_grads())
    assert set(ours_grads) == set(theirs_grads)
    for key in ("features.0.weight", "features.17.weight", "features.24.bias", "fc6.weight",
                "score_pool3.weight", "score_pool4.bias", "upscore2.weight",
                "upscore8.weight"):
        assert relative_error(ours_grads[key], theirs_grads[key]) < 1e-4, key
    ours.zero_grad()
    ours.drop6.p = ours.drop7.p = 0.5
    ours.eval()


# ----------------------------------------------------------------------------- containers


def test_inception_and_concat_on_their_own():
    block = Inception(8, 2, 3, 4, 2, 3, 5, dtype=np.float64, rng=0)
    x = np.random.default_rng(4).standard_normal((2, 8, 6, 5))
    y = block(x)
    assert y.shape == (2, 14, 6, 5) == block.output_shape(x.shape)
    np.testing.assert_array_equal(y[:, :2], block.branch1(x))
    np.testing.assert_array_equal(y[:, 9:], block.branch4(x))
    g = np.random.default_rng(5).standard_normal(y.shape)
    gx = block.backward(g)
    # the gradient is the four branches' gradients added
    total = 0
    for i, branch in enumerate((block.branch1, block.branch2, block.branch3, block.branch4)):
        branch(x)
        lo = [0, 2, 6, 9, 14]
        total = total + branch.backward(g[:, lo[i]:lo[i + 1]])
    np.testing.assert_allclose(gx, total, rtol=1e-12)
    assert Concat().output_shape((1, 2, 3, 3), (1, 4, 3, 3)) == (1, 6, 3, 3)
    with pytest.raises(cb.ShapeError, match="sizes of tensors must match"):
        Concat().output_shape((1, 2, 3, 3), (1, 4, 3, 2))
    bad = nn.Sequential(block, nn.MaxPool2d(2))
    assert models.summary(bad, (1, 8, 6, 6)).rows[-1].output_shape == (1, 14, 3, 3)
    with pytest.raises(cb.ShapeError, match=r"^0\.branch1\.conv: "):
        models.summary(bad, (1, 7, 6, 6))
