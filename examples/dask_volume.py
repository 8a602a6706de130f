"""Convolve a volume larger than a worker's memory, chunk by chunk, from one .npy file to another.

Writes a random float32 volume to a ``.npy`` file (memory-mapped, never whole in memory),
starts a ``distributed.LocalCluster`` whose workers each have ``--memory-limit``, convolves
the volume with ``convbackends.distributed.conv3d`` (each chunk with its halo from its
neighbours) and streams the result into a second ``.npy`` file with ``dask.array.store``.
Then it checks a block that straddles chunk boundaries, and a corner, against the
in-memory call on the same input. Needs ``pip install "convbackends[distributed]"``.

    python examples/dask_volume.py                       # 640^3 float32: 1 GiB per file
    python examples/dask_volume.py --size 256 --chunk 64 --memory-limit 2GiB   # quick
"""

import argparse
import os
import tempfile
import time

import dask
import dask.array as da
import distributed
import numpy as np

import convbackends as cb
import convbackends.distributed as cbd


class NpyVolume:
    """A ``.npy`` file as an array that Dask reads by slices: each worker opens the file
    memory-mapped and copies out only its chunk (a memmap itself would be pickled whole)."""

    def __init__(self, path):
        self.path = path
        header = np.load(path, mmap_mode="r")
        self.shape, self.dtype, self.ndim = header.shape, header.dtype, header.ndim

    def __getitem__(self, index):
        return np.array(np.load(self.path, mmap_mode="r")[index])

    def __setitem__(self, index, value):
        volume = np.load(self.path, mmap_mode="r+")
        volume[index] = value
        volume.flush()


def write_random_volume(path, shape, chunk, seed=0):
    """A volume of standard normal float32, written slab by slab."""
    volume = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    rng = np.random.default_rng(seed)
    for start in range(0, shape[2], chunk):
        slab = volume[:, :, start:start + chunk]
        slab[...] = rng.standard_normal(slab.shape, dtype=np.float32)
    volume.flush()
    del volume


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=640, help="edge of the cubic volume")
    p.add_argument("--chunk", type=int, default=128, help="edge of a cubic chunk")
    p.add_argument("--kernel", type=int, default=3, help="edge of the cubic kernel")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="768MiB", help="per worker")
    p.add_argument("--backend", default=None)
    p.add_argument("--dir", default=None, help="where the two .npy files go (default: a "
                                               "temporary directory, removed after)")
    return p.parse_args()


def main():
    args = parse_args()
    shape = (1, 1) + (args.size,) * 3
    k, pad = args.kernel, args.kernel // 2
    weight = np.random.default_rng(1).standard_normal((1, 1, k, k, k)).astype(np.float32)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        src, dst = os.path.join(tmp, "volume.npy"), os.path.join(tmp, "convolved.npy")
        write_random_volume(src, shape, args.chunk)
        np.lib.format.open_memmap(dst, mode="w+", dtype=np.float32, shape=shape).flush()
        nbytes = np.prod(shape) * 4
        limit = dask.utils.parse_bytes(args.memory_limit)
        print(f"volume {shape} float32: {nbytes / 2**20:.0f} MiB per file; "
              f"{args.workers} workers of {limit / 2**20:.0f} MiB each")
        assert nbytes > limit, "the point is a volume larger than a worker's memory"

        with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                      memory_limit=args.memory_limit,
                                      dashboard_address=":0") as cluster, \
                distributed.Client(cluster):
            x = da.from_array(NpyVolume(src), chunks=(1, 1) + (args.chunk,) * 3,
                              meta=np.empty((0,) * 5, np.float32))
            y = cbd.conv3d(x, weight, padding=pad, backend=args.backend)
            start = time.perf_counter()
            da.store(y, NpyVolume(dst), lock=False)
            seconds = time.perf_counter() - start
            print(f"{y.npartitions} chunks of {args.chunk}^3 convolved and stored in "
                  f"{seconds:.1f} s ({np.prod(shape) / seconds / 1e6:.0f} Mvoxel/s)")

        volume, result = np.load(src, mmap_mode="r"), np.load(dst, mmap_mode="r")
        # A block across chunk boundaries: its input plus the halo, with no padding.
        lo, hi = args.chunk - 5, min(args.chunk + 7, args.size - pad)
        block = (slice(None), slice(None)) + (slice(lo, hi),) * 3
        around = (slice(None), slice(None)) + (slice(lo - pad, hi + pad),) * 3
        want = cb.conv3d(np.array(volume[around]), weight, backend=args.backend)
        np.testing.assert_allclose(result[block], want, rtol=1e-5, atol=1e-5)
        # A corner: the array's own zero padding.
        corner = (slice(None), slice(None)) + (slice(0, args.chunk // 2),) * 3
        near = (slice(None), slice(None)) + (slice(0, args.chunk // 2 + pad),) * 3
        want = cb.conv3d(np.array(volume[near]), weight, padding=pad,
                         backend=args.backend)[corner]
        np.testing.assert_allclose(result[corner], want, rtol=1e-5, atol=1e-5)
        print("a block across chunk boundaries and a corner match the in-memory call")
        del volume, result


if __name__ == "__main__":
    main()
