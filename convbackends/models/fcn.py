"""Fully convolutional networks for semantic segmentation (Long, Shelhamer and Darrell
2015): FCN-32s, FCN-16s and FCN-8s on a VGG-16 backbone, laid out as the paper's
reference models (layer names, the first convolution's 100-pixel padding, pooling that
rounds up, the crops)."""

import numpy as np

from ..errors import ShapeError
from ..nn import Conv2d, ConvTranspose2d, Dropout, Module, ReLU
from ..nn.container import _join
from ..nn.layout import set_data_format, spatial_of
from ..nn.module import _non_defaults, _with_path
from ..spec.layout import CHANNELS_FIRST, CHANNELS_LAST, check_data_format
from .init import kaiming_normal_fan_out
from .vgg import _features

__all__ = ["fcn32s", "fcn16s", "fcn8s", "FCN", "Crop", "Add", "bilinear_kernel"]


def bilinear_kernel(channels, size, dtype=np.float32):
    """The ``(channels, channels, size, size)`` weight of a transposed convolution that
    upsamples each channel by bilinear interpolation (and mixes none).

    Along each dim the taps are the triangle ``1 - |i - c| / f`` with ``f = ceil(size /
    2)`` and centre ``c = f - 1`` (odd ``size``) or ``f - 1/2`` (even); the 2-D kernel is
    the outer product. With ``size = 2 * stride`` (FCN's 4/2, 16/8, 32/16, 64/32) a
    transposed convolution of that stride interpolates linearly between input pixels.
    """
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 else factor - 0.5
    taps = 1 - np.abs(np.arange(size) - centre) / factor
    weight = np.zeros((channels, channels, size, size), dtype)
    weight[np.arange(channels), np.arange(channels)] = np.outer(taps, taps)
    return weight


class Crop(Module):
    """``x[..., o:o + H, o:o + W]`` for ``crop(x, (H, W))``: the reference models' crop
    layer with a fixed ``offset`` in both spatial dims (FCN's ``score_pool4c``, ``score``).
    No parameters; its backward puts the gradient back in place, zero around it. With
    ``data_format="channels_last"`` the spatial dims are the two before the last."""

    def __init__(self, offset, *, data_format=CHANNELS_FIRST):
        super().__init__()
        self.offset = offset
        self.data_format = check_data_format(data_format)

    def _window(self, h, w):
        o = self.offset
        window = (slice(o, o + h), slice(o, o + w))
        return (Ellipsis,) + window + ((slice(None),) if self.data_format == CHANNELS_LAST
                                       else ())

    def output_shape(self, input_shape, size=None):
        shape = tuple(input_shape)
        if size is None:
            return shape
        size, o = tuple(size)[-2:], self.offset
        last = self.data_format == CHANNELS_LAST
        if len(shape) < 2 + last or any(o + s > n for s, n in
                                        zip(size, spatial_of(shape, self.data_format))):
            raise ShapeError(f"Crop: cannot take {list(size)} at offset {o} from input of "
                             f"size {list(shape)}")
        return shape[:-3] + size + shape[-1:] if last else shape[:-2] + size

    def forward(self, x, size):
        x = np.asarray(x)
        h, w = spatial_of(self.output_shape(x.shape, size), self.data_format)
        y = np.ascontiguousarray(x[self._window(h, w)])
        self._keep(y, x.shape)
        return y

    def _backward(self, grad_output):
        grad, (shape,) = self._take(grad_output)
        full = np.zeros(shape, grad.dtype)
        full[self._window(*spatial_of(grad.shape, self.data_format))] = grad
        return full

    def extra_repr(self):
        return f"offset={self.offset}" + _non_defaults(self, (("data_format", CHANNELS_FIRST),))


class Add(Module):
    """``a + b`` of two arrays of one shape (the reference models' ``fuse`` layers). No
    parameters; its backward passes the gradient to both."""

    def output_shape(self, input_shape, other_shape=None):
        shape = tuple(input_shape)
        if other_shape is not None and tuple(other_shape) != shape:
            raise ShapeError(f"Add: the inputs have sizes {list(shape)} and "
                             f"{list(other_shape)}")
        return shape

    def forward(self, a, b):
        a, b = np.asarray(a), np.asarray(b)
        self.output_shape(a.shape, b.shape)
        y = a + b
        self._keep(y)
        return y

    def _backward(self, grad_output):
        grad, _ = self._take(grad_output)
        return grad, grad


# Each variant's head after score_fr: (upsampling layers (name, kernel, stride), the skip
# layers (score name, source pool, channels, crop name, crop offset, fuse name)) and the
# final crop's offset. The offsets are the reference models': where the upsampled map's
# pixel 0 meets the input's, from the layers' geometry.
_SKIPS = {
    "32s": ((("upscore", 64, 32),), (), 19),
    "16s": ((("upscore2", 4, 2), ("upscore16", 32, 16)),
            (("score_pool4", "pool4", 512, "score_pool4c", 5, "fuse_pool4"),), 27),
    "8s": ((("upscore2", 4, 2), ("upscore_pool4", 4, 2), ("upscore8", 16, 8)),
           (("score_pool4", "pool4", 512, "score_pool4c", 5, "fuse_pool4"),
            ("score_pool3", "pool3", 256, "score_pool3c", 9, "fuse_pool3")), 31),
}
# features indices after which pool3 and pool4 are taken (VGG-16's 3rd and 4th pooling).
_POOLS = {"pool3": 16, "pool4": 23}


class FCN(Module):
    """An FCN on a VGG-16 backbone; see :func:`fcn32s`, :func:`fcn16s`, :func:`fcn8s`.

    Input ``(N, 3, H, W)`` of any size; output ``(N, num_classes, H, W)``, a score per
    class and pixel. The backbone is VGG-16's ``features`` (keys ``features.0`` ...
    ``features.30``, so VGG-16's convolution weights load) with the reference model's
    changes: 100 pixels of zero padding on the first convolution and 2x2 poolings that
    round up (``ceil_mode``), so that any input, down to 1x1, leaves enough map for FC6
    and the crops. FC6 and FC7 are convolutions, ``fc6`` 7x7 4096 and ``fc7`` 1x1 4096
    (ReLU and dropout after each; VGG-16's ``classifier.0`` weight reshaped to
    ``(4096, 512, 7, 7)`` is ``fc6``'s), then ``score_fr``, a 1x1 convolution to the
    class scores, and the variant's upsampling, skips and crops. The transposed
    convolutions have no bias and start as bilinear interpolation
    (:func:`bilinear_kernel`); the 1x1 score layers and FC6/FC7 keep PyTorch's default
    initialisation (the reference zero-fills the score layers), the backbone VGG-16's
    (N(0, 2/fan_out), bias zero). The crop offsets are the reference model's: where each
    upsampled map's pixel 0 meets the input's, or the map it is added to, from the layers'
    geometry. ``backward`` runs through every layer, the skips' gradients adding into the
    backbone at pool3 and pool4.

    Children in forward order: ``features`` (VGG-16's, keys ``features.N``), ``fc6``,
    ``relu6``, ``drop6``, ``fc7``, ``relu7``, ``drop7``, ``score_fr``, then per variant
    the upsampling (``upscore2``, ``upscore_pool4``, ``upscore8``, ...), skip scores
    (``score_pool4``, ``score_pool3``), their crops (``score_pool4c``, ``score_pool3c``),
    the additions (``fuse_pool4``, ``fuse_pool3``) and the final crop ``score``.
    """

    def __init__(self, variant, num_classes=21, dropout=0.5, *, dtype=np.float32,
                 rng=None):
        super().__init__()
        self.data_format = CHANNELS_FIRST     # set_data_format sets it with its layers
        if variant not in _SKIPS:
            raise ShapeError(f"FCN: variant must be one of {list(_SKIPS)}, got {variant!r}")
        gen = np.random.default_rng(rng)
        kw = dict(dtype=dtype, rng=gen)
        self.variant = variant
        self.features = _features(dtype, gen, first_padding=100, ceil_mode=True)
        kaiming_normal_fan_out(self.features, gen)
        self.fc6 = Conv2d(512, 4096, 7, **kw)
        self.relu6 = ReLU(inplace=True)
        self.drop6 = Dropout(dropout, rng=gen)
        self.fc7 = Conv2d(4096, 4096, 1, **kw)
        self.relu7 = ReLU(inplace=True)
        self.drop7 = Dropout(dropout, rng=gen)
        self.score_fr = Conv2d(4096, num_classes, 1, **kw)
        ups, skips, offset = _SKIPS[variant]
        for i, (name, kernel, stride) in enumerate(ups):
            up = ConvTranspose2d(num_classes, num_classes, kernel, stride, bias=False, **kw)
            up.weight[...] = bilinear_kernel(num_classes, kernel, dtype)
            setattr(self, name, up)
            if i < len(skips):
                score, _, channels, crop, crop_offset, fuse = skips[i]
                setattr(self, score, Conv2d(channels, num_classes, 1, **kw))
                setattr(self, crop, Crop(crop_offset))
                setattr(self, fuse, Add())
        self.score = Crop(offset)

    # The layers in forward order, as (name, layer) and ("skip", (score, pool, crop, fuse))
    # and ("crop", final crop) steps.
    def _steps(self):
        ups, skips, _ = _SKIPS[self.variant]
        steps = [(name, getattr(self, name)) for name in
                 ("fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "score_fr")]
        for i, (name, _, _) in enumerate(ups):
            steps.append((name, getattr(self, name)))
            if i < len(skips):
                score, pool, _, crop, _, fuse = skips[i]
                steps.append(("skip", (score, pool, crop, fuse)))
        return steps

    def _pieces(self):
        """``features`` in three runs of layers, ending at pool3, pool4 and pool5."""
        layers = self.features.named_children()
        a, b = _POOLS["pool3"] + 1, _POOLS["pool4"] + 1
        return (("pool3", layers[:a]), ("pool4", layers[a:b]), ("pool5", layers[b:]))

    def forward(self, x):
        x = np.asarray(x)
        size = spatial_of(x.shape, self.data_format)
        pools, h = {}, x
        for pool, layers in self._pieces():
            for _, layer in layers:
                h = layer(h)
            pools[pool] = h
        for name, step in self._steps():
            if name == "skip":
                score, pool, crop, fuse = step
                skip = getattr(self, crop)(getattr(self, score)(pools[pool]),
                                           spatial_of(h.shape, self.data_format))
                h = getattr(self, fuse)(h, skip)
            else:
                h = step(h)
        return self.score(h, size)

    def _backward(self, grad_output):
        """Back through the head; each skip's gradient goes through its crop and score
        layer into the pooling it came from, and adds to the backbone's there."""
        grad = self.score.backward(grad_output)
        into_pool = {}
        for name, step in reversed(self._steps()):
            if name == "skip":
                score, pool, crop, fuse = step
                grad, skip = getattr(self, fuse).backward(grad)
                into_pool[pool] = getattr(self, score).backward(
                    getattr(self, crop).backward(skip))
            else:
                grad = step.backward(grad)
        for pool, layers in reversed(self._pieces()):
            if pool in into_pool:
                grad = grad + into_pool[pool]
            for _, layer in reversed(layers):
                grad = layer.backward(grad)
        return grad

    def layer_shapes(self, input_shape, prefix=""):
        shape = tuple(input_shape)
        size = spatial_of(shape, self.data_format)
        pools = {}
        for pool, layers in self._pieces():
            for name, layer in layers:
                for row in layer.layer_shapes(shape, _join(prefix, f"features.{name}")):
                    shape = row[3]
                    yield row
            pools[pool] = shape
        for name, step in self._steps():
            if name == "skip":
                score, pool, crop, fuse = step
                s = yield from self._leaf(score, pools[pool], prefix)
                s = yield from self._leaf(crop, s, prefix,
                                          spatial_of(shape, self.data_format))
                shape = yield from self._leaf(fuse, shape, prefix, s)
            else:
                shape = yield from self._leaf(name, shape, prefix)
        yield from self._leaf("score", shape, prefix, size)

    def _leaf(self, name, shape, prefix, *args):
        """Yield the row of child ``name`` on ``shape`` (the crop's size or the addition's
        other shape in ``args``); return its output shape."""
        layer, path = getattr(self, name), _join(prefix, name)
        if not args:
            rows = list(layer.layer_shapes(shape, path))
            yield from rows
            return rows[-1][3]
        try:
            out = layer.output_shape(shape, *args)
        except ShapeError as error:
            raise _with_path(error, path) from error
        yield path, layer, tuple(shape), out
        return out

    def _receptive_field(self, walk, field):
        """The backbone's field at each pooling; crops keep a field, additions take the
        wider of their two."""
        pools = {}
        for pool, layers in self._pieces():
            for _, layer in layers:
                field = walk.run(layer, field)
            pools[pool] = field
        for name, step in self._steps():
            if name == "skip":
                score, pool, crop, fuse = step
                skip = walk.run(getattr(self, score), pools[pool])
                skip = walk.row(getattr(self, crop), skip, skip)
                field = walk.row(getattr(self, fuse), field, walk.merge(field, skip))
            else:
                field = walk.run(step, field)
        return walk.row(self.score, field, field)

    def extra_repr(self):
        return f"variant={self.variant!r}"


def _fcn(variant, num_classes, dropout, backend, dtype, rng, data_format):
    model = FCN(variant, num_classes, dropout, dtype=dtype, rng=rng)
    if backend is not None:
        model.backend = backend
    return set_data_format(model, data_format)


def fcn32s(*, num_classes=21, dropout=0.5, backend=None, dtype=np.float32, rng=None,
           data_format=CHANNELS_FIRST):
    """FCN-32s: 136,152,917 parameters at 21 classes (PASCAL VOC's, the default).

    The backbone and FC6/FC7 as :class:`FCN` describes, then ``score_fr``; ``upscore``
    (transposed 64x64, stride 32) upsamples the scores 32x in one step and ``score``
    crops them to the input's ``H x W`` at offset 19. Input ``(N, 3, H, W)`` of any
    size, output ``(N, num_classes, H, W)``; ``data_format="channels_last"``: input
    ``(N, H, W, 3)``, output ``(N, H, W, num_classes)``, the same scores.
    """
    return _fcn("32s", num_classes, dropout, backend, dtype, rng, data_format)


def fcn16s(*, num_classes=21, dropout=0.5, backend=None, dtype=np.float32, rng=None,
           data_format=CHANNELS_FIRST):
    """FCN-16s: 134,815,994 parameters at 21 classes.

    As :func:`fcn32s` up to ``score_fr``; ``upscore2`` (transposed 4x4, stride 2)
    upsamples the scores 2x, ``score_pool4`` (1x1 on pool4) cropped at offset 5
    (``score_pool4c``) is added to them (``fuse_pool4``), ``upscore16`` (32x32, stride
    16) upsamples the sum and ``score`` crops it at offset 27. ``data_format`` as
    :func:`fcn32s`'s.
    """
    return _fcn("16s", num_classes, dropout, backend, dtype, rng, data_format)


def fcn8s(*, num_classes=21, dropout=0.5, backend=None, dtype=np.float32, rng=None,
          data_format=CHANNELS_FIRST):
    """FCN-8s: 134,489,759 parameters at 21 classes.

    As :func:`fcn16s` up to ``fuse_pool4``; ``upscore_pool4`` (transposed 4x4, stride 2)
    upsamples the sum 2x, ``score_pool3`` (1x1 on pool3) cropped at offset 9
    (``score_pool3c``) is added (``fuse_pool3``), ``upscore8`` (16x16, stride 8)
    upsamples that and ``score`` crops it at offset 31. ``data_format`` as
    :func:`fcn32s`'s.
    """
    return _fcn("8s", num_classes, dropout, backend, dtype, rng, data_format)
