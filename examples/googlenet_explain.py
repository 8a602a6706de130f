"""GoogLeNet's forward pass, and what each branch of one inception module runs.

    python examples/googlenet_explain.py [--size 224] [--module 3a] [--backend auto]
                                         [--data-format channels_first]

Builds the lectures' GoogLeNet (``cb.models.googlenet``, random weights), runs one image of
``--size`` x ``--size`` through it and prints the logits' shape and the time taken. Then,
for the chosen inception module, prints every convolution and pooling layer of its four
branches (1x1; 1x1 reduce then 3x3; 1x1 reduce then 5x5; 3x3 max pooling then 1x1
projection) with the input shape it sees in that forward and its ``explain()`` report:
the backend that runs it, why, and every backend's workspace. With
``--data-format channels_last`` the image is ``(1, H, W, 3)`` and the reports show which
backends compute in that layout and which go through the layout lowering.
"""

import argparse
import sys
import time

import numpy as np

import convbackends as cb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="image side (at least 31)")
    parser.add_argument("--module", default="3a", help="inception module: 3a, 3b, 4a-4e, 5a, 5b")
    parser.add_argument("--backend", default=None, help="backend of every layer (default: auto)")
    parser.add_argument("--data-format", default="channels_first",
                        choices=["channels_first", "channels_last"])
    args = parser.parse_args(argv)

    model = cb.models.googlenet(backend=args.backend, rng=0,
                                data_format=args.data_format).eval()
    shape = (1, 3, args.size, args.size)
    if args.data_format == "channels_last":
        shape = (1, args.size, args.size, 3)
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    start = time.perf_counter()
    logits = model(x)
    print(f"GoogLeNet on {list(shape)} ({args.data_format}): logits {list(logits.shape)} "
          f"in {time.perf_counter() - start:.2f} s")

    prefix = f"inception{args.module}."
    rows = [(path, layer, in_shape) for path, layer, in_shape, _ in model.layer_shapes(shape)
            if path.startswith(prefix)]
    if not rows:
        parser.error(f"no inception module {args.module!r}")
    for path, layer, in_shape in rows:
        report = layer.explain(in_shape)
        if report is None:          # ReLU and the concatenation run no backend
            continue
        print(f"\n=== {path}: {type(layer).__name__} on {list(in_shape)}")
        print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
