"""Named suites of convolution layers taken from real networks, for benchmarks and ``compare``.

Each suite lists the distinct convolution geometries of one network (or family) in network
order. Layers are named as the network's own modules are (``resnet18.layer2.0.conv1``, after
torchvision); a geometry that occurs more than once is listed once, at its first occurrence,
with ``repeats`` counting its occurrences and ``also`` naming the others, so a suite's time
weighted by ``repeats`` is the network's convolution time.

>>> import convbackends as cb
>>> layer = cb.workloads.suite("resnet18", batch=8)[1]
>>> layer.name, layer.x_shape, layer.w_shape, layer.repeats
('resnet18.layer1.0.conv1', (8, 64, 56, 56), (64, 64, 3, 3), 4)
>>> x, w, b = layer.make_inputs()
>>> y = cb.conv(x, w, b, **layer.conv_kwargs())            # doctest: +SKIP
"""

import math
from dataclasses import dataclass, replace

import numpy as np

from ..errors import ConvError, ShapeError
from ..spec import conv_spec

__all__ = ["Layer", "SUITES", "suite", "suite_names", "layer", "UnknownSuiteError"]


class UnknownSuiteError(ConvError, KeyError):
    """No suite (or layer) has that name; the message lists the known ones."""

    def __str__(self):
        # KeyError.__str__ would wrap the message in quotes.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Layer:
    """One convolution geometry of a suite, with the means to run it.

    Attributes
    ----------
    name : str
        Dotted name, suite first: ``"resnet18.layer2.0.conv1"``.
    in_channels, out_channels, groups : int
    input_spatial, kernel, stride, padding, dilation : tuple of int, one per spatial dim
        ``padding`` is symmetric: that many zeros before and after.
    bias : bool
        Whether the network's layer has a bias (ResNet's and MobileNet's do not: BatchNorm
        follows them).
    batch : int
    repeats : int
        How many layers of the network have exactly this geometry (this one included).
    also : tuple of str
        The names of the other layers with this geometry.
    """

    name: str
    in_channels: int
    out_channels: int
    input_spatial: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int = 1
    bias: bool = True
    batch: int = 1
    repeats: int = 1
    also: tuple = ()

    @property
    def ndim(self):
        return len(self.kernel)

    @property
    def x_shape(self):
        return (self.batch, self.in_channels) + tuple(self.input_spatial)

    @property
    def w_shape(self):
        return (self.out_channels, self.in_channels // self.groups) + tuple(self.kernel)

    @property
    def geometry(self):
        """Everything but the name, batch and repeat count: equal geometries are repeats."""
        return (self.in_channels, self.out_channels, self.input_spatial, self.kernel,
                self.stride, self.padding, self.dilation, self.groups, self.bias)

    def conv_kwargs(self):
        """The keyword arguments of :func:`convbackends.conv` for this layer."""
        return {"stride": self.stride, "padding": self.padding, "dilation": self.dilation,
                "groups": self.groups}

    def spec(self, dtype="float32"):
        """The :class:`~convbackends.spec.ConvSpec` every backend sees for this layer."""
        spec, _ = conv_spec("conv", self.x_shape, self.w_shape,
                            (self.out_channels,) if self.bias else None,
                            dtype=dtype, **self.conv_kwargs())
        return spec

    @property
    def output_shape(self):
        return self.spec().output_shape

    @property
    def macs(self):
        """Multiply-accumulates of the direct formula (``ConvSpec.macs``)."""
        return self.spec().macs

    @property
    def flops(self):
        return 2 * self.macs

    def with_batch(self, batch):
        """The same layer at another batch size."""
        return replace(self, batch=int(batch))

    def make_inputs(self, dtype="float32", seed=0):
        """Random ``(x, weight, bias)`` for this layer (``bias`` is ``None`` without one).

        ``x`` is standard normal; ``weight`` and ``bias`` are normal with standard deviation
        ``1/sqrt(fan_in)``, so outputs stay of order one and relative errors mean the same on
        every layer. The same seed gives the same arrays.
        """
        rng = np.random.default_rng(seed)
        fan_in = self.in_channels // self.groups * math.prod(self.kernel)
        scale = 1.0 / math.sqrt(fan_in)
        x = rng.standard_normal(self.x_shape, dtype=np.float64).astype(dtype)
        w = (rng.standard_normal(self.w_shape, dtype=np.float64) * scale).astype(dtype)
        b = (rng.standard_normal(self.out_channels) * scale).astype(dtype) if self.bias else None
        return x, w, b

    def describe(self):
        """A short geometry string: ``64->128 3x3/2 56x56``, with groups and dilation."""
        dims = "x".join(map(str, self.kernel))
        text = f"{self.in_channels}->{self.out_channels} {dims}"
        if any(s != 1 for s in self.stride):
            strides = set(self.stride)
            text += "/" + (str(self.stride[0]) if len(strides) == 1
                           else "x".join(map(str, self.stride)))
        text += " @" + "x".join(map(str, self.input_spatial))
        if self.groups > 1:
            text += " dw" if self.groups == self.in_channels else f" g{self.groups}"
        if any(d != 1 for d in self.dilation):
            text += f" dil{max(self.dilation)}"
        return text


def _conv(name, cin, cout, size, k, stride=1, pad=None, dilation=1, groups=1, bias=True):
    """A layer from per-dim-or-int arguments; ``size`` and ``k`` fix the number of dims."""
    nd = len(size) if isinstance(size, tuple) else (len(k) if isinstance(k, tuple) else 2)

    def dims(v):
        return tuple(v) if isinstance(v, tuple) else (v,) * nd

    kernel, dil = dims(k), dims(dilation)
    if pad is None:     # "same" for odd kernels, as the networks below use
        pad = tuple(d * (kk - 1) // 2 for kk, d in zip(kernel, dil))
    return Layer(name, cin, cout, dims(size), kernel, dims(stride), dims(pad), dil,
                 groups, bias)


def _out(size, k, stride, pad):
    return (size + 2 * pad - k) // stride + 1


def _lenet5():
    return [_conv("lenet5.c1", 1, 6, 32, 5, pad=0),
            _conv("lenet5.c3", 6, 16, 14, 5, pad=0),
            _conv("lenet5.c5", 16, 120, 5, 5, pad=0)]


def _alexnet():
    # The lectures' AlexNet: 227x227 input, 96 11x11/4 filters, ungrouped.
    return [_conv("alexnet.features.0", 3, 96, 227, 11, stride=4, pad=0),
            _conv("alexnet.features.4", 96, 256, 27, 5),
            _conv("alexnet.features.8", 256, 384, 13, 3),
            _conv("alexnet.features.10", 384, 384, 13, 3),
            _conv("alexnet.features.12", 384, 256, 13, 3)]


def _vgg16():
    # torchvision's features indices: conv, relu per layer, a max pool after each block.
    layers, cin, size, index = [], 3, 224, 0
    for width, count in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for _ in range(count):
            layers.append(_conv(f"vgg16.features.{index}", cin, width, size, 3))
            cin, index = width, index + 2
        size, index = size // 2, index + 1
    return layers


def _resnet_stem(net):
    return _conv(f"{net}.conv1", 3, 64, 224, 7, stride=2, pad=3, bias=False)


def _resnet18():
    layers, cin, size = [_resnet_stem("resnet18")], 64, 56
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if block == 0 and stage > 1 else 1
            prefix = f"resnet18.layer{stage}.{block}"
            layers.append(_conv(f"{prefix}.conv1", cin, width, size, 3, stride, bias=False))
            out = _out(size, 3, stride, 1)
            layers.append(_conv(f"{prefix}.conv2", width, width, out, 3, bias=False))
            if stride != 1 or cin != width:
                layers.append(_conv(f"{prefix}.downsample.0", cin, width, size, 1, stride,
                                    bias=False))
            cin, size = width, out
    return layers


def _resnet50():
    # torchvision's ResNet-50 (v1.5): the stride sits on the 3x3 convolution.
    layers, cin, size = [_resnet_stem("resnet50")], 64, 56
    for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3)), start=1):
        for block in range(blocks):
            stride = 2 if block == 0 and stage > 1 else 1
            prefix = f"resnet50.layer{stage}.{block}"
            out = _out(size, 3, stride, 1)
            layers += [_conv(f"{prefix}.conv1", cin, width, size, 1, bias=False),
                       _conv(f"{prefix}.conv2", width, width, size, 3, stride, bias=False),
                       _conv(f"{prefix}.conv3", width, 4 * width, out, 1, bias=False)]
            if block == 0:
                layers.append(_conv(f"{prefix}.downsample.0", cin, 4 * width, size, 1, stride,
                                    bias=False))
            cin, size = 4 * width, out
    return layers


def _mobilenet():
    # MobileNet v1 (Howard et al. 2017), 224x224: depthwise 3x3 + pointwise 1x1 pairs.
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 \
        + [(1024, 2), (1024, 1)]
    layers, cin, size = [_conv("mobilenet.conv1", 3, 32, 224, 3, stride=2, bias=False)], 32, 112
    for i, (cout, stride) in enumerate(plan, start=1):
        layers.append(_conv(f"mobilenet.block{i}.dw", cin, cin, size, 3, stride, groups=cin,
                            bias=False))
        size = _out(size, 3, stride, 1)
        layers.append(_conv(f"mobilenet.block{i}.pw", cin, cout, size, 1, bias=False))
        cin = cout
    return layers


def _signals():
    # 1-D: Kim's sentence CNN (300-d embeddings, 64 words), M5 on 8 kHz raw audio (Dai et
    # al. 2017), SincNet's 251-tap filter bank, and one WaveNet-style dilated layer.
    return [_conv("signals.textcnn.conv3", 300, 100, (64,), 3, pad=0),
            _conv("signals.textcnn.conv4", 300, 100, (64,), 4, pad=0),
            _conv("signals.textcnn.conv5", 300, 100, (64,), 5, pad=0),
            _conv("signals.m5.conv1", 1, 128, (8000,), 80, stride=4, pad=0),
            _conv("signals.m5.conv2", 128, 128, (495,), 3, pad=0),
            _conv("signals.m5.conv3", 128, 256, (123,), 3, pad=0),
            _conv("signals.m5.conv4", 256, 512, (30,), 3, pad=0),
            _conv("signals.sincnet.conv1", 1, 80, (3200,), 251, pad=0),
            _conv("signals.wavenet.dilated16", 64, 128, (4000,), 2, dilation=16)]


def _volumes():
    # 3-D: C3D (Tran et al. 2015) on 16x112x112 clips, and a 3-D U-Net's first level on 64³.
    layers, cin = [], 3
    plan = [("conv1a", 64, (16, 112, 112)), ("conv2a", 128, (16, 56, 56)),
            ("conv3a", 256, (8, 28, 28)), ("conv3b", 256, (8, 28, 28)),
            ("conv4a", 512, (4, 14, 14)), ("conv4b", 512, (4, 14, 14)),
            ("conv5a", 512, (2, 7, 7)), ("conv5b", 512, (2, 7, 7))]
    for name, cout, size in plan:
        layers.append(_conv(f"volumes.c3d.{name}", cin, cout, size, 3))
        cin = cout
    layers += [_conv("volumes.unet3d.enc1a", 1, 32, (64, 64, 64), 3),
               _conv("volumes.unet3d.enc1b", 32, 32, (64, 64, 64), 3)]
    return layers


def _large_kernels():
    # Where the kernel, not the channel count, makes the work: FFT territory.
    return [_conv("large-kernels.alexnet.conv1", 3, 96, 227, 11, stride=4, pad=0),
            _conv("large-kernels.inception.conv1x7", 128, 128, 17, (1, 7)),
            _conv("large-kernels.convnext.dw7", 96, 96, 56, 7, groups=96),
            _conv("large-kernels.replknet.dw31", 128, 128, 56, 31, groups=128),
            _conv("large-kernels.dense15", 32, 32, 64, 15),
            _conv("large-kernels.blur31", 1, 1, 256, 31, bias=False)]


def _ceil_pool(size, k=3, stride=2):
    """The output size of a pooling that rounds up, as GoogLeNet's and FCN's do."""
    return -(-(size - k) // stride) + 1


def _googlenet():
    # The lectures' GoogLeNet (cb.models.googlenet) at 224x224: the stem, then each
    # inception module's six convolutions (1x1; 1x1 reduce, 3x3; 1x1 reduce, 5x5; the
    # pooling branch's 1x1 projection), named as the model's modules.
    from ..models.googlenet import INCEPTION_TABLE    # a table of ints; no layers built
    layers = [_conv("googlenet.conv1.conv", 3, 64, 224, 7, stride=2, pad=3)]
    size = _ceil_pool(112)
    layers += [_conv("googlenet.conv2.conv", 64, 64, size, 1),
               _conv("googlenet.conv3.conv", 64, 192, size, 3)]
    cin, size = 192, _ceil_pool(size)
    for name, (c1, c3r, c3, c5r, c5, proj) in INCEPTION_TABLE.items():
        if name in ("4a", "5a"):
            size = _ceil_pool(size)
        prefix = f"googlenet.inception{name}"
        layers += [_conv(f"{prefix}.branch1.conv", cin, c1, size, 1),
                   _conv(f"{prefix}.branch2.0.conv", cin, c3r, size, 1),
                   _conv(f"{prefix}.branch2.1.conv", c3r, c3, size, 3),
                   _conv(f"{prefix}.branch3.0.conv", cin, c5r, size, 1),
                   _conv(f"{prefix}.branch3.1.conv", c5r, c5, size, 5),
                   _conv(f"{prefix}.branch4.1.conv", cin, proj, size, 1)]
        cin = c1 + c3 + c5 + proj
    return layers


def _fcn8s():
    # FCN-8s (cb.models.fcn8s) at 224x224: VGG-16's convolutions with the first one's
    # 100-pixel padding (422x422 maps in block 1) and poolings that round up, fc6 (7x7 over
    # pool5's 14x14: a 411 MB float32 weight), fc7, the class scores (21, PASCAL VOC) and
    # the two skip scores. The transposed upsampling layers are not convolutions here.
    layers, cin, size, index = [], 3, 224, 0
    for width, count in ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)):
        for i in range(count):
            pad = 100 if index == 0 else 1
            layers.append(_conv(f"fcn8s.features.{index}", cin, width, size, 3, pad=pad))
            size = _out(size, 3, 1, pad)
            cin, index = width, index + 2
        size, index = _ceil_pool(size, 2, 2), index + 1
        if index == 17:
            pool3 = size
        elif index == 24:
            pool4 = size
    layers += [_conv("fcn8s.fc6", 512, 4096, size, 7, pad=0),
               _conv("fcn8s.fc7", 4096, 4096, _out(size, 7, 1, 0), 1),
               _conv("fcn8s.score_fr", 4096, 21, _out(size, 7, 1, 0), 1),
               _conv("fcn8s.score_pool4", 512, 21, pool4, 1),
               _conv("fcn8s.score_pool3", 256, 21, pool3, 1)]
    return layers


SUITES = {"lenet5": _lenet5, "alexnet": _alexnet, "vgg16": _vgg16, "resnet18": _resnet18,
          "resnet50": _resnet50, "mobilenet": _mobilenet, "signals": _signals,
          "volumes": _volumes, "large-kernels": _large_kernels, "googlenet": _googlenet,
          "fcn8s": _fcn8s}


def suite_names():
    """The names :func:`suite` knows, in a fixed order."""
    return list(SUITES)


def _dedupe(layers):
    """Merge equal geometries into their first occurrence (``repeats``, ``also``)."""
    first, order = {}, []
    for lay in layers:
        key = lay.geometry
        if key not in first:
            first[key] = lay
            order.append(key)
        else:
            kept = first[key]
            first[key] = replace(kept, repeats=kept.repeats + 1, also=kept.also + (lay.name,))
    return [first[k] for k in order]


def suite(name, batch=1):
    """The distinct convolution layers of a named suite, at batch size ``batch``.

    Parameters
    ----------
    name : str
        One of :func:`suite_names`: ``lenet5``, ``alexnet``, ``vgg16``, ``resnet18``,
        ``resnet50``, ``mobilenet`` (depthwise separable), ``signals`` (1-D), ``volumes``
        (3-D), ``large-kernels``, ``googlenet`` (stem and inception branches, 224x224),
        ``fcn8s`` (VGG-16 backbone with 100 pixels of padding, fc6/fc7 as convolutions,
        the score layers; 224x224 input).
    batch : int. Default: 1

    Returns
    -------
    list of Layer
        In network order; repeated geometries merged (see :class:`Layer`).

    Raises
    ------
    UnknownSuiteError
        ``name`` is not a suite; the message lists the known ones.
    ShapeError
        ``batch`` is below 1.
    """
    if name not in SUITES:
        raise UnknownSuiteError(f"unknown suite {name!r}; known suites: "
                                f"{', '.join(SUITES)}")
    if int(batch) < 1:
        raise ShapeError(f"batch must be at least 1, got {batch}")
    return [lay.with_batch(batch) for lay in _dedupe(SUITES[name]())]


def layer(name, batch=1):
    """One layer by its full name (``"vgg16.features.2"``); repeats resolve to their first."""
    suite_name = name.split(".", 1)[0]
    for lay in suite(suite_name, batch):
        if name == lay.name or name in lay.also:
            return lay
    raise UnknownSuiteError(f"unknown layer {name!r}; layers of {suite_name}: "
                            f"{', '.join(lay.name for lay in suite(suite_name))}")
