"""im2col vs naive vs PyTorch CPU on the 3x3 layers of ResNet-18 (issue 2's measurement).

Run (timing only; see docs/performance.md for why the variables):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE MALLOC_MMAP_THRESHOLD_=1073741824 \
        MALLOC_TRIM_THRESHOLD_=1073741824 OMP_WAIT_POLICY=PASSIVE \
        python benchmarks/scripts/bench_im2col.py --batch 8

Contenders run in interleaved rounds (:func:`convbackends.tools.measure.time_calls`) and
the median is reported; PyTorch (torch.nn.functional.conv2d, 2 threads), the yardstick, runs
in a process of its own in the same rounds. naive takes seconds a call: it is sampled once
per layer (``--budget``). OMP_WAIT_POLICY=PASSIVE keeps PyTorch's OpenMP threads from
spinning against NumPy's OpenBLAS threads when the two alternate.
"""

import argparse

import numpy as np

import convbackends as cb
from convbackends.spec import conv_spec
from convbackends.tools.measure import Sampler, time_calls
from convbackends.tools.peer import Peer

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


def samplers(names, x, w, stride, peer):
    """Our backends into one reused ``out=`` buffer, and PyTorch in ``peer``."""
    spec, _ = conv_spec("conv2d", x.shape, w.shape, stride=stride, padding=1)
    out = np.empty(spec.output_shape, np.float32)
    ours = {n: Sampler(lambda n=n: cb.conv2d(x, w, stride=stride, padding=1, backend=n,
                                             out=out)) for n in names}
    peer.setup_conv(x, w, threads=2, stride=stride, padding=1)
    return {**ours, "torch": peer.sample}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds of timed calls per contender and layer (at least one)")
    parser.add_argument("--backends", default="im2col,naive")
    args = parser.parse_args()
    names = args.backends.split(",")
    print(f"| layer | {' | '.join(names)} | torch | " + " | ".join(f"{n}/torch" for n in names)
          + " |")
    print("|---" * (2 * len(names) + 2) + "|")
    rng = np.random.default_rng(0)
    with Peer() as peer:
        for name, cin, cout, hw, stride in RESNET18_3X3:
            x = rng.standard_normal((args.batch, cin, hw, hw)).astype(np.float32)
            w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
            timings = time_calls(samplers(names, x, w, stride, peer), repeat=args.repeat,
                                 budget=args.budget)
            med = {k: t.median for k, t in timings.items()}
            print(f"| {name} ({cin}->{cout}, {hw}px, s{stride}) | "
                  + " | ".join(f"{med[n] * 1e3:.1f} ms" for n in names)
                  + f" | {med['torch'] * 1e3:.1f} ms | "
                  + " | ".join(f"{med[n] / med['torch']:.2f}" for n in names) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
