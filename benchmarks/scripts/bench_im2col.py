"""im2col vs naive vs PyTorch CPU on the 3x3 layers of ResNet-18 (issue 2's measurement).

Run (timing only; see docs/performance.md for why the variables):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE MALLOC_MMAP_THRESHOLD_=1073741824 \
        MALLOC_TRIM_THRESHOLD_=1073741824 OMP_WAIT_POLICY=PASSIVE \
        python benchmarks/scripts/bench_im2col.py --batch 8

Backends are interleaved within each repeat and the median is reported; PyTorch
(torch.nn.functional.conv2d, 2 threads) is the yardstick. naive is timed once per layer
(it takes seconds). OMP_WAIT_POLICY=PASSIVE keeps PyTorch's OpenMP threads from spinning
against NumPy's OpenBLAS threads when the two interleave (without it both slow down).
"""

import argparse
import statistics
import time

import numpy as np

import convbackends as cb
from convbackends.spec import conv_spec

# name, C_in, C_out, H=W, stride: the distinct 3x3 geometries of ResNet-18 at 224x224.
RESNET18_3X3 = [
    ("layer1.0.conv1", 64, 64, 56, 1),
    ("layer2.0.conv1", 64, 128, 56, 2),
    ("layer2.0.conv2", 128, 128, 28, 1),
    ("layer3.0.conv1", 128, 256, 28, 2),
    ("layer3.0.conv2", 256, 256, 14, 1),
    ("layer4.0.conv1", 256, 512, 14, 2),
    ("layer4.0.conv2", 512, 512, 7, 1),
]


def _time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="im2col,naive")
    args = parser.parse_args()
    import torch
    torch.set_num_threads(2)
    names = args.backends.split(",")
    print(f"| layer | {' | '.join(names)} | torch | " + " | ".join(f"{n}/torch" for n in names)
          + " |")
    print("|---" * (2 * len(names) + 2) + "|")
    rng = np.random.default_rng(0)
    for name, cin, cout, hw, stride in RESNET18_3X3:
        x = rng.standard_normal((args.batch, cin, hw, hw)).astype(np.float32)
        w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
        spec, _ = conv_spec("conv2d", x.shape, w.shape, stride=stride, padding=1)
        out = np.empty(spec.output_shape, np.float32)
        tx, tw = torch.from_numpy(x), torch.from_numpy(w)
        fns = {n: (lambda n=n: cb.conv2d(x, w, stride=stride, padding=1, backend=n, out=out))
               for n in names}
        fns["torch"] = lambda: torch.nn.functional.conv2d(tx, tw, stride=stride, padding=1)
        results = {k: [] for k in fns}
        for k, fn in fns.items():
            fn()
        for _ in range(args.repeat):
            for k, fn in fns.items():
                if k == "naive" and results[k]:
                    continue                        # seconds per call: timed once
                results[k].append(_time(fn, 1 if k == "naive" else 3))
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"| {name} ({cin}->{cout}, {hw}px, s{stride}) | "
              + " | ".join(f"{med[n] * 1e3:.1f} ms" for n in names)
              + f" | {med['torch'] * 1e3:.1f} ms | "
              + " | ".join(f"{med[n] / med['torch']:.2f}" for n in names) + " |")


if __name__ == "__main__":
    main()
