"""A volume convolved through Dask: 1 and 2 workers, the overhead against the in-memory call,
and dask-image's ``ndfilters.convolve`` on the same volume and clusters.

Usage (from the repository root; dask-image is a benchmark-only tool, not a dependency)::

    python -m pip install -e ".[distributed]" dask-image
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        .venv/bin/python benchmarks/scripts/bench_dask.py [--size 256] [--chunk 128] \\
        [--kernel 5] [--repeat 3] [--json results.json]

Contenders, each in a process of its own (:class:`convbackends.tools.peer.Peer`), sampled
in rotating rounds by :func:`convbackends.tools.measure.time_calls`:

- ``in-memory``: ``cb.conv3d(x, w, padding=k // 2)`` on the whole volume, 2 threads.
- ``dask synchronous``: ``cbd.conv3d`` on the same NumPy volume with Dask's synchronous
  scheduler in that process, 2 threads per block: the cost of chunks and halos alone.
- ``dask 1 worker`` / ``dask 2 workers``: ``cbd.conv3d`` on a ``distributed.LocalCluster``
  of 1 worker process with 2 threads for Numba and BLAS, or 2 worker processes with 1 each.
- ``dask-image 1 worker`` / ``dask-image 2 workers``: ``dask_image.ndfilters.convolve``
  (``scipy.ndimage`` per chunk, ``mode="constant"``, the kernel flipped, so it computes the
  same cross-correlation with zero padding) on the same clusters.

On a cluster the volume is scattered to the workers once, before timing (``persist``), and
each timed call computes the convolution and gathers it into the client as one NumPy array,
as the in-memory call returns one; the ``kept`` contenders leave the result on the workers
(``persist`` and ``wait``): the cluster's throughput without the transfer. Each result is
checked against the in-memory call.
Throughput is input voxels per second; GFLOP/s counts 2 FLOPs per multiply-add.
"""

import argparse
import json
import os
import platform
import sys

import numpy as np

THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS")


def _volume(size, kernel):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1) + (size,) * 3, dtype=np.float32)
    w = rng.standard_normal((1, 1) + (kernel,) * 3, dtype=np.float32)
    return x, w


def _set_threads(threads):
    """Threads of every pool for this process and the worker processes it starts."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)


def setup(contender, size, chunk, kernel, workers=0, threads=2, gather=True):
    """A Peer target: ``(run, info)`` for one contender (see the module's docstring)."""
    _set_threads(threads)
    x, w = _volume(size, kernel)
    pad = kernel // 2
    if contender == "in-memory":
        import convbackends as cb
        out = np.empty_like(x)
        info = {"backend": cb.explain(x.shape, w.shape, padding=pad).choice}
        return (lambda: cb.conv3d(x, w, padding=pad, out=out)), info

    import dask.array as da
    xd = da.from_array(x, chunks=(1, 1) + (chunk,) * 3)
    if contender == "dask-image":
        from dask_image import ndfilters
        flipped = np.ascontiguousarray(w[0, 0, ::-1, ::-1, ::-1])

        def build(volume):
            return ndfilters.convolve(volume[0, 0], flipped, mode="constant",
                                      cval=0.0)[None, None]
    else:
        import convbackends.distributed as cbd

        def build(volume):
            return cbd.conv3d(volume, w, padding=pad)
    if workers == 0:
        y = build(xd)
        return (lambda: y.compute(scheduler="synchronous")), {}

    import distributed
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                       processes=True, dashboard_address=":0")
    client = distributed.Client(cluster)
    scattered = client.persist(xd)
    distributed.wait(scattered)
    y = build(scattered)
    if gather:
        return (lambda: client.compute(y).result()), {"workers": workers}

    def kept():
        result = client.persist(y)      # computed on the workers, left there
        distributed.wait(result)
        return result
    return kept, {"workers": workers}


CONTENDERS = [  # name, setup arguments
    ("in-memory", dict(contender="in-memory")),
    ("dask synchronous", dict(contender="convbackends")),
    ("dask 1 worker", dict(contender="convbackends", workers=1)),
    ("dask 2 workers", dict(contender="convbackends", workers=2, threads=1)),
    ("dask-image 1 worker", dict(contender="dask-image", workers=1)),
    ("dask-image 2 workers", dict(contender="dask-image", workers=2, threads=1)),
    ("dask 1 worker, kept", dict(contender="convbackends", workers=1, gather=False)),
    ("dask 2 workers, kept", dict(contender="convbackends", workers=2, threads=1,
                                  gather=False)),
    ("dask-image 2 workers, kept", dict(contender="dask-image", workers=2, threads=1,
                                        gather=False)),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--chunk", type=int, default=128)
    p.add_argument("--kernel", type=int, default=5)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--only", default=None, help="comma-separated contender names")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from convbackends.tools import measure
    from convbackends.tools.peer import Peer

    chosen = [c for c in CONTENDERS
              if args.only is None or c[0] in args.only.split(",")]
    geometry = dict(size=args.size, chunk=args.chunk, kernel=args.kernel)
    peers, infos = {}, {}
    try:
        for name, kwargs in chosen:
            peers[name] = Peer()
            infos[name] = peers[name].setup("bench_dask:setup", **geometry, **kwargs)
        timings = measure.time_calls({n: peer.sample for n, peer in peers.items()},
                                     repeat=args.repeat, warmup=1)
        reference = peers["in-memory"].result() if "in-memory" in peers else None
        errors = {n: (None if reference is None else
                      float(measure.relative_error(peer.result(), reference)))
                  for n, peer in peers.items()}
    finally:
        for peer in peers.values():
            peer.close()

    voxels = args.size ** 3
    flops = 2 * voxels * args.kernel ** 3
    base = timings["in-memory"].median if "in-memory" in timings else None
    print(f"volume {args.size}^3 float32, kernel {args.kernel}^3, chunks {args.chunk}^3 "
          f"({(args.size // args.chunk) ** 3} chunks), {platform.node()}, "
          f"load {os.getloadavg()[0]:.1f}; in-memory backend: "
          f"{infos.get('in-memory', {}).get('backend')}")
    print("| contender | median s | spread | Mvoxel/s | GFLOP/s | vs in-memory | rel. error |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for name, _ in chosen:
        t = timings[name]
        ratio = "" if base is None else f"{t.median / base:.2f}x"
        err = "" if errors[name] is None else f"{errors[name]:.1e}"
        print(f"| {name} | {t.median:.3f} | {t.spread or 0:.0%} | {voxels / t.median / 1e6:.0f} "
              f"| {flops / t.median / 1e9:.1f} | {ratio} | {err} |")
        rows.append(dict(name=name, median=t.median, samples=t.samples, first=t.first,
                         error=errors[name]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(geometry=geometry, rows=rows, infos=infos), f, indent=1)


if __name__ == "__main__":
    main()
