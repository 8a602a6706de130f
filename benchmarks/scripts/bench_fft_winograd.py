"""Side-by-side timings and accuracy of the ``fft`` and ``winograd`` backends.

Usage (one benchmark at a time on a shared machine; BLAS variables unset for timing)::

    flock /tmp/convbackends-bench.lock env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 \\
        python benchmarks/scripts/bench_fft_winograd.py winograd|fft|crossover|accuracy

Each timing table interleaves the contenders call by call, ``--repeat`` rounds
(:func:`convbackends.tools.measure.time_calls`; PyTorch, where installed, in a process of
its own), and reports the median per contender and the ratios taken within the same run.
``accuracy`` prints the relative error ``||y - ref|| / ||ref||`` against the float64
reference per Winograd tile size and point set.
"""

import argparse
import contextlib
import importlib.util
import os
import pathlib
import platform
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import convbackends as cb  # noqa: E402
from convbackends.backends.winograd import toom_cook  # noqa: E402
from convbackends.tools import reference  # noqa: E402
from convbackends.tools.measure import Sampler, relative_error, time_calls  # noqa: E402
from convbackends.tools.peer import Peer  # noqa: E402

# (name, C_in, C_out, H=W): the 3x3 stride-1 layers (padding 1) of ResNet-18 and VGG-16.
RESNET18_3X3 = [("resnet18.layer1", 64, 64, 56), ("resnet18.layer2", 128, 128, 28),
                ("resnet18.layer3", 256, 256, 14), ("resnet18.layer4", 512, 512, 7)]
VGG16_3X3 = [("vgg16.conv1_1", 3, 64, 224), ("vgg16.conv1_2", 64, 64, 224),
             ("vgg16.conv2_1", 64, 128, 112), ("vgg16.conv2_2", 128, 128, 112),
             ("vgg16.conv3_1", 128, 256, 56), ("vgg16.conv3_2", 256, 256, 56),
             ("vgg16.conv4_1", 256, 512, 28), ("vgg16.conv4_2", 512, 512, 28),
             ("vgg16.conv5_1", 512, 512, 14)]
# (name, N, C_in, C_out, H=W, kernel, stride, padding): large kernels for fft.
LARGE_KERNELS = [("31x31 on 512x512, 1 channel", 1, 1, 1, 512, 31, 1, 15),
                 ("alexnet.conv1 11x11/4", 8, 3, 96, 227, 11, 4, 0),
                 ("resnet18.conv1 7x7/2", 8, 3, 64, 224, 7, 2, 3),
                 ("7x7 stride 1, 16 channels", 8, 16, 16, 128, 7, 1, 3)]


def _machine():
    try:
        model = next(line.split(":", 1)[1].strip() for line in
                     subprocess.run(["lscpu"], capture_output=True, text=True).stdout
                     .splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    load = os.getloadavg()
    return f"{model}, {os.cpu_count()} CPUs, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def _time_side_by_side(names, x, w, stride, padding, repeat, peer):
    """Best and median seconds per contender over ``repeat`` interleaved rounds.

    On a shared machine the best is the one to compare (the median carries other
    processes' load); both are printed. ``"torch"`` runs in ``peer``, and is left out
    without one.
    """
    out = np.empty(cb.explain(x.shape, w.shape, stride=stride, padding=padding).output_shape,
                   x.dtype)
    samplers = {n: Sampler(lambda n=n: cb.conv2d(x, w, stride=stride, padding=padding,
                                                 backend=n, out=out))
                for n in names if n != "torch"}
    if "torch" in names and peer is not None:
        peer.setup_conv(x, w, threads=2, stride=stride, padding=padding)
        samplers["torch"] = peer.sample
    timings = time_calls(samplers, repeat=repeat)
    return {name: (t.min, t.median) for name, t in timings.items()}


def _table(rows, names, base):
    """Markdown: best (median) ms per contender, and ``base``'s time over each other's."""
    head = "| layer | " + " | ".join(f"{n} ms" for n in names) + " | " + " | ".join(
        f"{base} / {n}" for n in names if n != base) + " |"
    lines = [head, "|" + " --- |" * (2 * len(names))]
    for label, t in rows:
        cells = [f"{t[n][0] * 1e3:.1f} ({t[n][1] * 1e3:.1f})" if n in t else "-"
                 for n in names]
        ratios = [f"{t[base][0] / t[n][0]:.2f}" if n in t and base in t else "-"
                  for n in names if n != base]
        lines.append(f"| {label} | " + " | ".join(cells) + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def bench_winograd(args, peer):
    rng = np.random.default_rng(0)
    names = ["im2col", "winograd"] + (["torch"] if peer else [])
    rows = []
    for label, c, k, hw in RESNET18_3X3 + VGG16_3X3:
        x = rng.standard_normal((args.batch, c, hw, hw)).astype(np.float32)
        w = (rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
        rows.append((f"{label} {c}->{k} {hw}x{hw}",
                     _time_side_by_side(names, x, w, 1, 1, args.repeat, peer)))
        print(rows[-1], flush=True)
    return _table(rows, names, "im2col")


def bench_fft(args, peer):
    rng = np.random.default_rng(1)
    names = ["im2col", "fft"] + (["torch"] if peer else [])
    rows = []
    for label, n, c, k, hw, ks, s, p in LARGE_KERNELS:
        x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        w = rng.standard_normal((k, c, ks, ks)).astype(np.float32)
        rows.append((label, _time_side_by_side(names, x, w, s, p, args.repeat, peer)))
        print(rows[-1], flush=True)
    return _table(rows, names, "im2col")


def bench_crossover(args, peer):
    """Sweeps of kernel size, image size and channels: where fft / winograd start to win."""
    rng = np.random.default_rng(2)
    names = ["im2col", "fft", "winograd"]
    rows = []
    sweeps = ([("kernel", 8, 16, 16, 64, ks) for ks in (3, 5, 7, 9, 11, 15)]
              + [("image", 1, 1, 1, hw, 15) for hw in (32, 64, 128, 256, 512)]
              + [("channels", 8, c, c, 28, 3) for c in (8, 16, 32, 64, 128, 256)]
              + [("channels", 8, c, c, 56, 5) for c in (4, 16, 64)])
    for sweep, n, c, k, hw, ks in sweeps:
        x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
        w = rng.standard_normal((k, c, ks, ks)).astype(np.float32)
        active = [name for name in names if name != "winograd" or ks <= 7]
        t = _time_side_by_side(active, x, w, 1, ks // 2, args.repeat, peer)
        rows.append((f"{sweep}: N={n} C=K={c} {hw}x{hw} k={ks}", t))
        print(rows[-1], flush=True)
    return _table(rows, names, "im2col")


def _winograd_2d(x, w, m, points, dtype):
    """Plain NumPy F(m x m, r x r) with given points (valid correlation), for accuracy."""
    r = w.shape[-1]
    at, g, bt = (np.array([[float(v) for v in row] for row in a], dtype)
                 for a in toom_cook(m, r, points))
    alpha = m + r - 1
    n, c, h, wd = x.shape
    th, tw = -(-(h - r + 1) // m), -(-(wd - r + 1) // m)
    x = np.pad(x, [(0, 0), (0, 0), (0, th * m + r - 1 - h), (0, tw * m + r - 1 - wd)])
    tiles = np.lib.stride_tricks.sliding_window_view(x, (alpha, alpha), axis=(2, 3))[
        :, :, ::m, ::m][:, :, :th, :tw]
    v = np.einsum("iu,ncstuv,jv->ijcnst", bt, tiles.astype(dtype), bt, optimize=True)
    u = np.einsum("iu,kcuv,jv->ijkc", g, w.astype(dtype), g, optimize=True)
    mm = np.einsum("ijkc,ijcnst->ijknst", u, v, optimize=True)
    y = np.einsum("pi,ijknst,qj->nkpqst", at, mm, at, optimize=True)
    return y.transpose(0, 1, 4, 2, 5, 3).reshape(n, -1, th * m, tw * m)


POINT_SETS = {
    (2, 3): [(0, 1, -1)],
    (4, 3): [(0, 1, -1, 2, -2), (0, 1, -1, 0.5, -0.5), (0, 1, -1, 2, 0.5)],
    (6, 3): [(0, 1, -1, 2, -2, 0.5, -0.5), (0, 1, -1, 2, -2, 3, -3)],
    (2, 5): [(0, 1, -1, 2, -2)],
    (4, 5): [(0, 1, -1, 2, -2, 0.5, -0.5), (0, 1, -1, 2, -2, 3, -3)],
}


def bench_accuracy(args, peer):
    from fractions import Fraction
    rng = np.random.default_rng(3)
    layers = [(64, 56), (128, 28), (256, 14), (512, 7)]
    lines = ["| F(m, r) | points | " + " | ".join(f"C=K={c} {h}x{h} f32" for c, h in layers)
             + " | max f64 |", "|" + " --- |" * (3 + len(layers))]
    data = {}
    for (m, r), sets in POINT_SETS.items():
        for c, h in layers:
            if (c, h, r) not in data:
                x = rng.standard_normal((1, c, h + r - 1, h + r - 1))
                w = rng.standard_normal((c, c, r, r))
                data[c, h, r] = (x, w, reference.conv(x, w))
        for points in sets:
            pts = tuple(Fraction(p).limit_denominator(10) for p in points)
            errors, worst64 = [], 0.0
            for c, h in layers:
                x, w, ref = data[c, h, r]
                for dtype in ("float32", "float64"):
                    e = relative_error(_winograd_2d(x, w, m, pts, dtype)[..., :h, :h], ref)
                    if dtype == "float32":
                        errors.append(f"{e:.1e}")
                    else:
                        worst64 = max(worst64, e)
            label = ", ".join(str(p) for p in pts) + ", inf"
            lines.append(f"| F({m}, {r}) | {label} | " + " | ".join(errors)
                         + f" | {worst64:.1e} |")
            print(lines[-1], flush=True)
    for c, h in layers:
        x, w, ref = data[c, h, 3]
        x32, w32 = x.astype(np.float32), w.astype(np.float32)
        for name in ("im2col", "fft", "winograd"):
            e = relative_error(cb.conv2d(x32, w32, backend=name), ref)
            print(f"backend {name} 3x3 C=K={c} {h}x{h} float32: {e:.1e}", flush=True)
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["winograd", "fft", "crossover", "accuracy"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(_machine(), flush=True)
    bench = {"winograd": bench_winograd, "fft": bench_fft, "crossover": bench_crossover,
             "accuracy": bench_accuracy}[args.what]
    with_torch = args.what in ("winograd", "fft") and importlib.util.find_spec("torch")
    with Peer() if with_torch else contextlib.nullcontext() as peer:
        table = bench(args, peer)
    print(table)
    print(_machine())


if __name__ == "__main__":
    main()
