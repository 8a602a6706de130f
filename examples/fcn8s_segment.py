"""FCN-8s segmenting an image of odd size: a score per class and pixel, and the skip path.

    python examples/fcn8s_segment.py [--height 45] [--width 37] [--backend auto]
                                     [--data-format channels_first]

Builds FCN-8s (``cb.models.fcn8s``: VGG-16 backbone, 21 PASCAL VOC classes, random
weights; the upsampling starts as bilinear interpolation) and runs one random image of
``--height`` x ``--width`` through it. It prints the output's shape, which is the input's
size whatever that is (the first convolution's 100 pixels of padding and the final crop
make it so), then the skip path: where the scores of pool4 and pool3 join the upsampled
coarse scores, each crop's input and output shape, and the per-pixel class map's shape.
"""

import argparse
import sys
import time

import numpy as np

import convbackends as cb

# The layers of the head after the backbone and fc6/fc7, in forward order.
SKIP_PATH = ("score_fr", "upscore2", "score_pool4", "score_pool4c", "fuse_pool4",
             "upscore_pool4", "score_pool3", "score_pool3c", "fuse_pool3", "upscore8",
             "score")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=45)
    parser.add_argument("--width", type=int, default=37)
    parser.add_argument("--backend", default=None, help="backend of every layer (default: auto)")
    parser.add_argument("--data-format", default="channels_first",
                        choices=["channels_first", "channels_last"])
    args = parser.parse_args(argv)

    model = cb.models.fcn8s(backend=args.backend, rng=0, data_format=args.data_format).eval()
    last = args.data_format == "channels_last"
    shape = (1, args.height, args.width, 3) if last else (1, 3, args.height, args.width)
    image = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    start = time.perf_counter()
    scores = model(image)
    elapsed = time.perf_counter() - start
    print(f"FCN-8s on {list(shape)} ({args.data_format}): scores {list(scores.shape)} in "
          f"{elapsed:.2f} s")
    spatial = scores.shape[1:3] if last else scores.shape[2:]
    print(f"output size {spatial[0]}x{spatial[1]} == input size {args.height}x{args.width}: "
          f"{tuple(spatial) == (args.height, args.width)}")

    shapes = {path: (layer, tuple(i), tuple(o))
              for path, layer, i, o in model.layer_shapes(shape)}
    for name in ("features.16", "features.23", "features.30"):
        print(f"{name:14} {'pool' + str({'16': 3, '23': 4, '30': 5}[name.split('.')[1]]):6} "
              f"-> {list(shapes[name][2])}")
    print("skip path:")
    for name in SKIP_PATH:
        layer, in_shape, out_shape = shapes[name]
        what = repr(layer) if type(layer).__name__ == "Crop" else type(layer).__name__
        print(f"  {name:14} {what:40} {str(list(in_shape)):20} -> {list(out_shape)}")
    classes = scores.argmax(axis=-1 if last else 1)
    print(f"class map {list(classes.shape)}, {len(np.unique(classes))} classes present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
