"""``cuda``: Numba CUDA kernels on an NVIDIA GPU, with device-array interop.

Limits: needs numba-cuda and an NVIDIA GPU with its driver (or Numba's CPU simulator,
``NUMBA_ENABLE_CUDASIM=1``, which is how CI runs it); float32 and float64 only. NumPy callers
pay for host<->device copies of every call's input and output (the weight is copied once and
kept on the device while its bytes are unchanged); callers with device arrays pay nothing.

Convolution runs as an implicit GEMM (see ``kernels.implicit_gemm_conv``): per group,
output channels x output positions, reduced over input channels x kernel taps, staged through
shared memory without an im2col buffer. Where a group has fewer than
:data:`MIN_GEMM_CHANNELS` output channels (depthwise) the GEMM's channel tile would be mostly
empty, and a direct kernel, one thread per output, runs instead; ``plan()`` (shown by
``explain()``) names the kernel and why. Transposed convolution and pooling are direct
kernels (one thread per output element; divisors and adaptive windows come from the spec
as small device tables), ``max_unpool`` a deterministic claim-then-gather scatter. Arrays
with ``__cuda_array_interface__`` (Numba, CuPy, PyTorch CUDA tensors) are used in place and
the result is a Numba device array; NumPy arrays are copied in and the result copied out.
Launch planning (tiles, split-K, grids) is in :mod:`.plan`, the kernels in :mod:`.kernels`.
"""

import ctypes
import importlib.metadata
import importlib.util
import math
import os
import sys
import threading
from collections import OrderedDict

import numpy as np

from ...errors import ShapeError
from ...spec.geometry import pads_3d, params_3d
from ...spec.pool import invalid_index_error
from ..base import Backend
from .plan import (DEFAULT_SMS, GPU_TILES, MIN_GEMM_CHANNELS, SIMULATOR_TILES, Tile,
                   gemm_launch, gemm_refusal)

__all__ = ["CudaBackend"]

_KERNELS = ("auto", "implicit_gemm", "direct")

_availability_lock = threading.Lock()
_availability = []  # empty until probed, then [reason or None]: probing costs up to a second


def _numpy_hint():
    if tuple(int(v) for v in np.__version__.split(".")[:2]) >= (2, 5):
        return (f"; numba-cuda 0.30 is known to break on numpy >= 2.5 (numpy "
                f"{np.__version__} here): install numpy<2.5, e.g. "
                f"pip install 'convbackends[cuda]'")
    return ""


def _driver_missing():
    """Why the CUDA driver library cannot be loaded, or ``None``.

    Saves importing numba.cuda (a second or so) in every process on machines without a GPU;
    where the library loads, numba-cuda has the final word.
    """
    if sys.platform == "darwin":
        return "no CUDA driver on macOS"
    library = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
    try:
        ctypes.CDLL(library)
    except OSError as e:
        return f"no CUDA driver ({library} cannot be loaded: {e})"
    return None


def _probe():
    """Why the backend cannot run here, or ``None``; imports numba.cuda where it must."""
    if importlib.util.find_spec("numba_cuda") is None:
        return ("numba-cuda is not installed (numba's own deprecated CUDA target is not "
                "used): pip install 'convbackends[cuda]'")
    simulating = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
    if not simulating and "numba.cuda" not in sys.modules:
        why = _driver_missing()
        if why is not None:
            return why
    version = importlib.metadata.version("numba-cuda")
    try:
        from . import kernels
    except Exception as e:  # a broken install fails in many ways; report, never raise
        return (f"numba-cuda {version} fails to import ({type(e).__name__}: {e})"
                + _numpy_hint())
    if kernels.SIMULATOR:
        return None
    from numba import cuda
    if not cuda.is_available():
        try:
            count = len(cuda.gpus)
        except Exception as e:  # CudaSupportError: no driver library, or it failed to start
            lines = [line for line in str(e).splitlines() if line.strip(" :")]
            return f"no usable CUDA driver ({' '.join(lines[:2]) or type(e).__name__})"
        return "no CUDA GPU found" if count == 0 else "numba.cuda reports CUDA unavailable"
    try:
        kernels.probe()
    except Exception as e:
        return (f"numba-cuda {version} cannot compile and run a kernel here "
                f"({type(e).__name__}: {e})" + _numpy_hint())
    return None


def _available():
    with _availability_lock:
        if not _availability:
            _availability.append(_probe())
        return _availability[0]


def _is_device(a):
    """Numba device arrays (real or simulated) and anything with __cuda_array_interface__."""
    return a is not None and not isinstance(a, np.ndarray) and (
        getattr(a, "__cuda_ndarray__", False) or hasattr(a, "__cuda_array_interface__"))


class _Transfers:
    """Bytes copied between host and device during one call."""

    def __init__(self):
        self.host_to_device_bytes = 0
        self.device_to_host_bytes = 0
        self.weight = "none"

    def as_dict(self):
        return {"host_to_device_bytes": self.host_to_device_bytes,
                "device_to_host_bytes": self.device_to_host_bytes, "weight": self.weight}


class _DeviceCache:
    """A small LRU of device arrays, thread-safe."""

    def __init__(self, capacity):
        self.capacity = capacity
        self._items = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key, item):
        with self._lock:
            self._items[key] = item
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self):
        with self._lock:
            self._items.clear()


def _same_bytes(a, b):
    """Bitwise equality of two arrays of one dtype and shape (NaN and -0.0 included)."""
    unsigned = np.dtype(f"u{a.dtype.itemsize}")
    return np.array_equal(a.view(unsigned), b.view(unsigned))


# The parity ops return PyTorch's arg-max indices or scatter by them (see the kernels).


def _ints(values, fill):
    """One value per spatial dim -> 3 Python ints, leading dims filled (kernel arguments)."""
    return tuple(params_3d(values, fill).tolist())


def _pads(spec):
    """The before-pads as 3 Python ints."""
    return tuple(pads_3d(spec.padding)[0].tolist())


def _lifted(arrays, fill):
    """Per-dim int64 arrays of a spec -> three, leading dims ``[fill]``, end to end."""
    arrays = [np.asarray(a, np.int64) for a in arrays]
    lead = [np.array([fill], np.int64)] * (3 - len(arrays))
    return np.concatenate(lead + arrays)


class CudaBackend(Backend):
    """Numba CUDA kernels: implicit-GEMM convolution, direct kernels for the rest.

    Parameters
    ----------
    kernel : {"auto", "implicit_gemm", "direct"}
        Convolution kernel. ``"auto"`` takes the implicit GEMM unless a group has fewer than
        :data:`MIN_GEMM_CHANNELS` output channels or the grid would exceed CUDA's limits;
        ``"implicit_gemm"`` makes ``supports()`` decline what the GEMM kernel cannot run.
        Transposed convolution and pooling always use direct kernels. Default: "auto".
    tile : Tile or tuple ``(bm, bn, bk, tm, tn)``, optional
        Force one implicit-GEMM tile; default: chosen per call from :data:`GPU_TILES`
        (:data:`SIMULATOR_TILES` under the simulator) by :func:`choose_tile`.
    split_k : int, optional
        Force this many reduction slices; default: :func:`choose_split` per call.
    weight_cache_size : int
        NumPy weights kept on the device (least recently used dropped). A cached copy is
        reused only while the weight's bytes equal the snapshot taken when it was copied,
        so a weight changed in place is copied again. Device weights are never cached.
        Default: 32.

    Attributes
    ----------
    last_transfers : dict
        ``host_to_device_bytes``, ``device_to_host_bytes`` and ``weight`` (``"copied"``,
        ``"cached"``, ``"device"`` or ``"none"``) of the last call in this process.

    Notes
    -----
    ``max_pool_with_indices`` and ``adaptive_max_pool`` return ``(values, indices)``, the
    indices int64 and flat into each input plane, with PyTorch's CPU tie rules (first of
    equal maxima, last of several NaNs). ``max_unpool`` resolves duplicate indices as
    PyTorch's CPU loop does, the last input in scan order winning, and deterministically:
    an atomic max of input positions picks each output's winner, then outputs gather. It
    copies an 8-byte flag each way to raise :class:`~convbackends.errors.ShapeError`
    on an index outside the output plane (nothing is written for it).
    """

    name = "cuda"
    limits = ("needs numba-cuda and an NVIDIA GPU (or NUMBA_ENABLE_CUDASIM=1); float32 and "
              "float64; NumPy callers pay host<->device copies")
    accepts_device_arrays = True
    writes_out = True

    def __init__(self, kernel="auto", tile=None, split_k=None, weight_cache_size=32):
        if kernel not in _KERNELS:
            raise ShapeError(f"kernel must be one of {_KERNELS}, got {kernel!r}")
        if split_k is not None and (not isinstance(split_k, int) or split_k < 1):
            raise ShapeError(f"split_k must be a positive int or None, got {split_k!r}")
        self.kernel = kernel
        self.split_k = split_k
        self.tile = None if tile is None else Tile(*tile)
        if self.tile is not None and self.tile.check() is not None:
            raise ShapeError(f"tile {tuple(self.tile)} cannot be used: {self.tile.check()}")
        self._weights = _DeviceCache(weight_cache_size)
        self._tables = _DeviceCache(64)
        self.last_transfers = _Transfers().as_dict()

    # ------------------------------------------------------------------ capability

    def available(self):
        """``None``, or why not: no numba-cuda, no GPU or driver, a broken numba-cuda."""
        return _available()

    def supports(self, op, spec):
        why = super().supports(op, spec)
        if why is not None:
            return why
        if spec.dtype not in ("float32", "float64"):
            return f"cuda computes float32 and float64, not {spec.dtype}"
        if op == "conv" and self.kernel == "implicit_gemm":
            why = self._gemm_refusal(spec)
            if why is not None:
                return f"the implicit-GEMM kernel (kernel='implicit_gemm') cannot run it: {why}"
        return None

    def _tiles(self):
        from . import kernels
        return SIMULATOR_TILES if kernels.SIMULATOR else GPU_TILES

    def _gemm_launch(self, spec):
        """Tile, reduction slices and grid of the implicit GEMM for ``spec``."""
        return gemm_launch(spec, self._tiles(), _sm_count(), self.tile, self.split_k)

    def _gemm_refusal(self, spec):
        return gemm_refusal(spec, self._gemm_launch(spec))

    def _conv_variant(self, spec):
        """``(kernel name, GemmLaunch or None, why)`` for a convolution."""
        if self.kernel == "direct":
            return "direct", None, "kernel='direct' requested"
        if self.kernel == "implicit_gemm":
            return "implicit_gemm", self._gemm_launch(spec), "kernel='implicit_gemm' requested"
        refusal = self._gemm_refusal(spec)
        if refusal is not None:
            return "direct", None, refusal
        kg = spec.out_channels // spec.groups
        if kg < MIN_GEMM_CHANNELS:
            return "direct", None, (f"{kg} output channel(s) per group < {MIN_GEMM_CHANNELS}: "
                                    f"the GEMM's channel tile would be mostly empty")
        return "implicit_gemm", self._gemm_launch(spec), \
            f">= {MIN_GEMM_CHANNELS} output channels per group"

    def workspace_bytes(self, op, spec):
        """Device memory beyond input, weight and output copies: the GEMM's weight
        transpose, tap table and split-K partial sums; max_unpool's per-output winners."""
        if op == "max_unpool":
            return math.prod(spec.output_shape) * 8 + 8
        if op != "conv":
            return 0
        variant, launch, _ = self._conv_variant(spec)
        if variant != "implicit_gemm":
            return 0
        reduction = spec.in_channels // spec.groups * math.prod(spec.kernel)
        partials = launch.k_slices * math.prod(spec.output_shape) if launch.k_slices > 1 else 0
        return (spec.out_channels * reduction + partials) * spec.itemsize + reduction * 4 * 8

    def plan(self, op, spec):
        """Kernel, tile, grid and the copies a NumPy caller pays (device callers pay none)."""
        facts = {}
        if op == "conv":
            variant, launch, why = self._conv_variant(spec)
            facts["kernel"] = variant
            if launch is not None:
                kg = spec.out_channels // spec.groups
                positions = spec.batch * math.prod(spec.output_spatial)
                reduction = spec.in_channels // spec.groups * math.prod(spec.kernel)
                facts["tile"] = str(launch.tile)
                facts["split_k"] = launch.k_slices
                facts["grid"] = launch.grid
                facts["gemm_per_group"] = f"M={kg} N={positions} K={reduction}"
            facts["why"] = why
        elif op == "conv_transpose":
            facts["kernel"] = "direct_gather"
        elif op == "max_unpool":
            facts["kernel"] = "unpool_claim_gather"
            facts["duplicates"] = "last in scan order wins (atomic max of input positions)"
        else:
            facts["kernel"] = f"direct_{op}"
        in_bytes = math.prod(spec.input_shape) * spec.itemsize
        out_bytes = math.prod(spec.output_shape) * spec.itemsize
        if op in ("conv", "conv_transpose"):
            weight_bytes = math.prod(spec.weight_shape) * spec.itemsize
            in_bytes += weight_bytes + (spec.out_channels * spec.itemsize if spec.has_bias else 0)
            facts["weight_on_device"] = "NumPy weight copied once, kept while unchanged"
        elif op in ("max_pool_with_indices", "adaptive_max_pool"):
            out_bytes += math.prod(spec.output_shape) * 8
        elif op == "max_unpool":
            in_bytes += math.prod(spec.input_shape) * 8
        facts["host_to_device_bytes"] = in_bytes
        facts["device_to_host_bytes"] = out_bytes
        facts["device_array_callers"] = "no host copies, Numba device array out"
        return facts

    def clear_weight_cache(self):
        """Drop the device copies of NumPy weights."""
        self._weights.clear()

    # ------------------------------------------------------------------ ops

    def conv(self, x, weight, bias, spec, out=None):
        from numba import cuda

        from . import kernels
        io = _Transfers()
        variant, launch, _ = self._conv_variant(spec)
        dx = self._device_flat(x, io)
        db = None if bias is None else self._device_flat(bias, io)
        total = math.prod(spec.output_shape)
        dy = cuda.device_array(total, dtype=spec.dtype)
        C, K, G = spec.in_channels, spec.out_channels, spec.groups
        geometry = (_ints(spec.input_spatial, 1), _ints(spec.output_spatial, 1))
        stride, pad = _ints(spec.stride, 1), _pads(spec)
        # Without a bias any array of the dtype fills the argument: has_bias=False, never read.
        if variant == "implicit_gemm":
            dw = self._gemm_weight(weight, spec, io)
            table = self._tap_table(spec)
            reduction = C // G * math.prod(spec.kernel)
            positions = spec.batch * math.prod(spec.output_spatial)
            tile, slices = launch.tile, launch.k_slices
            # Split-K: partial sums per slice first, the bias with their sum.
            target = dy if slices == 1 else cuda.device_array(slices * total, dtype=spec.dtype)
            kernel = kernels.implicit_gemm_conv(spec.dtype, tuple(tile), slices > 1)
            kernel[launch.grid, tile.threads](
                dx, dw, table, dy if db is None else db, db is not None and slices == 1,
                target, *geometry, stride, pad, C, K, C // G, K // G, reduction, positions,
                slices)
            if slices > 1:
                kernels.launch_1d(kernels.sum_slices(spec.dtype), total, target, dy,
                                  dy if db is None else db, db is not None, slices, total, K,
                                  math.prod(spec.output_spatial))
        else:
            dw = self._direct_weight(weight, io)
            kernels.launch_1d(kernels.direct_conv(spec.dtype), total, dx, dw,
                              dy if db is None else db, db is not None, dy, *geometry,
                              _ints(spec.kernel, 1), stride, pad, _ints(spec.dilation, 1), C,
                              K, C // G, K // G, total)
        return self._finish(dy, spec, out, io, x, weight, bias)

    def conv_transpose(self, x, weight, bias, spec, out=None):
        from numba import cuda

        from . import kernels
        io = _Transfers()
        dx = self._device_flat(x, io)
        db = None if bias is None else self._device_flat(bias, io)
        dw = self._direct_weight(weight, io)
        total = math.prod(spec.output_shape)
        dy = cuda.device_array(total, dtype=spec.dtype)
        C, K, G = spec.in_channels, spec.out_channels, spec.groups
        kernels.launch_1d(kernels.direct_conv_transpose(spec.dtype), total, dx, dw,
                          dy if db is None else db, db is not None, dy,
                          _ints(spec.input_spatial, 1), _ints(spec.output_spatial, 1),
                          _ints(spec.kernel, 1), _ints(spec.stride, 1), _pads(spec),
                          _ints(spec.dilation, 1), C, K, C // G, K // G, total)
        return self._finish(dy, spec, out, io, x, weight, bias)

    def _window_params(self, spec):
        return (_ints(spec.kernel, 1), _ints(spec.stride, 1), _pads(spec),
                _ints(spec.dilation, 1))

    def max_pool(self, x, spec, out=None):
        from . import kernels
        return self._pool(kernels.max_pool(spec.dtype), x, spec, out,
                          *self._window_params(spec))

    def avg_pool(self, x, spec, out=None):
        from . import kernels
        counts = self._geometry_table(spec, "divisors",
                                      lambda: _lifted(spec.divisor_counts(), 1))
        return self._pool(kernels.avg_pool(spec.dtype), x, spec, out,
                          *self._window_params(spec), counts)

    def adaptive_avg_pool(self, x, spec, out=None):
        from . import kernels
        return self._pool(kernels.adaptive_avg_pool(spec.dtype), x, spec, out,
                          self._windows(spec))

    def max_pool_with_indices(self, x, spec, out=None):
        """``(values, indices)`` of max pooling; ``out``, when given, receives the values."""
        from . import kernels
        return self._pool(kernels.max_pool_with_indices(spec.dtype), x, spec, out,
                          *self._window_params(spec), indices=True)

    def adaptive_max_pool(self, x, spec, out=None):
        """``(values, indices)`` of adaptive max pooling over ``spec.adaptive_windows()``."""
        from . import kernels
        return self._pool(kernels.adaptive_max_pool(spec.dtype), x, spec, out,
                          self._windows(spec), indices=True)

    def max_unpool(self, x, indices, spec, out=None):
        """Zeros of ``spec.output_shape`` with ``y[n, c].flat[indices[n, c, i]] = x[n, c, i]``;
        of duplicate indices the last in scan order wins."""
        from numba import cuda

        from . import kernels
        io = _Transfers()
        dx = self._device_flat(x, io)
        dind = self._device_flat(indices, io, np.int64)
        total_in = math.prod(spec.input_shape)
        total = math.prod(spec.output_shape)
        out_plane = math.prod(spec.output_spatial)
        winner = cuda.device_array(total, dtype=np.int64)
        bad = cuda.to_device(np.zeros(1, np.int64))
        io.host_to_device_bytes += 8
        kernels.launch_1d(kernels.unpool_clear, total, winner, total)
        kernels.launch_1d(kernels.unpool_claim, total_in, dind, winner, bad,
                          math.prod(spec.input_spatial), out_plane, total_in)
        last_bad = int(bad.copy_to_host()[0]) - 1
        io.device_to_host_bytes += 8
        if last_bad >= 0:
            index = int(dind[last_bad:last_bad + 1].copy_to_host()[0])
            raise invalid_index_error(index, spec)
        dy = cuda.device_array(total, dtype=spec.dtype)
        kernels.launch_1d(kernels.unpool_gather(spec.dtype), total, dx, winner, dy, total)
        return self._finish(dy, spec, out, io, x, indices)

    def _pool(self, kernel, x, spec, out, *params, indices=False):
        from numba import cuda

        from . import kernels
        io = _Transfers()
        dx = self._device_flat(x, io)
        total = math.prod(spec.output_shape)
        dy = cuda.device_array(total, dtype=spec.dtype)
        outputs = (dy, cuda.device_array(total, dtype=np.int64)) if indices else (dy,)
        kernels.launch_1d(kernel, total, dx, *outputs, _ints(spec.input_spatial, 1),
                          _ints(spec.output_spatial, 1), *params, total)
        values = self._finish(dy, spec, out, io, x)
        if not indices:
            return values
        return values, self._finish(outputs[1], spec, None, io, x)

    # ------------------------------------------------------------------ geometry tables

    def _geometry_table(self, spec, kind, make_host):
        """A small int64 device array computed from ``spec``'s geometry, cached per
        geometry and device (divisors, adaptive windows)."""
        from numba import cuda
        key = (kind, spec.input_spatial, spec.output_spatial, spec.kernel, spec.stride,
               spec.padding, spec.dilation, spec.count_include_pad, spec.divisor_override,
               _device_id())
        table = self._tables.get(key)
        if table is None:
            table = cuda.to_device(np.ascontiguousarray(make_host(), np.int64))
            self._tables.put(key, table)
        return table

    def _windows(self, spec):
        """``spec.adaptive_windows()`` lifted to 3 dims: the starts end to end, then the
        ends."""
        def host():
            windows = spec.adaptive_windows()
            return np.concatenate([_lifted([w[0] for w in windows], 0),
                                   _lifted([w[1] for w in windows], 1)])
        return self._geometry_table(spec, "adaptive", host)

    # ------------------------------------------------------------------ data movement

    def _device_flat(self, a, io, dtype=None):
        """A flat, C-ordered device array of ``a`` (in place for contiguous device arrays);
        with ``dtype``, of that dtype (a device array of another dtype goes via the host)."""
        from numba import cuda

        from . import kernels
        if _is_device(a):
            d = a if getattr(a, "__cuda_ndarray__", False) else cuda.as_cuda_array(a)
            if dtype is not None and np.dtype(d.dtype) != np.dtype(dtype):
                host = d.copy_to_host()
                io.device_to_host_bytes += host.nbytes
                return self._device_flat(host, io, dtype)
            if not d.is_c_contiguous():
                flat = cuda.device_array(d.size, dtype=d.dtype)
                kernels.launch_1d(kernels.contiguous_copy(d.ndim), d.size, d, flat, d.size)
                return flat
            return d.reshape(d.size)
        host = np.ascontiguousarray(a, dtype).reshape(-1)
        io.host_to_device_bytes += host.nbytes
        return cuda.to_device(host)

    def _cached_weight(self, weight, layout, make_host, io):
        """Device copy of a NumPy weight in ``layout``, reused while its bytes are unchanged."""
        from numba import cuda
        current = np.ascontiguousarray(weight)
        key = (id(weight), current.shape, current.dtype.str, layout, _device_id())
        hit = self._weights.get(key)
        if hit is not None and _same_bytes(hit[0], current):
            io.weight = "cached"
            return hit[1]
        snapshot = current.copy()
        host = np.ascontiguousarray(make_host(snapshot)).reshape(-1)
        device = cuda.to_device(host)
        io.host_to_device_bytes += host.nbytes
        io.weight = "copied"
        self._weights.put(key, (snapshot, device))
        return device

    def _direct_weight(self, weight, io):
        if _is_device(weight):
            io.weight = "device"
            return self._device_flat(weight, io)
        return self._cached_weight(weight, "direct", lambda w: w, io)

    def _gemm_weight(self, weight, spec, io):
        """The weight as ``(groups, Cg*taps, Kg)``, so tile loads along channels coalesce."""
        G, K = spec.groups, spec.out_channels
        reduction = spec.in_channels // G * math.prod(spec.kernel)
        if not _is_device(weight):
            return self._cached_weight(
                weight, ("gemm", G),
                lambda w: w.reshape(G, K // G, reduction).transpose(0, 2, 1), io)
        from numba import cuda

        from . import kernels
        io.weight = "device"
        flat = self._device_flat(weight, io)
        transposed = cuda.device_array(flat.size, dtype=flat.dtype)
        kernels.launch_1d(kernels.transpose_weight(), flat.size, flat, transposed, K // G,
                          reduction, flat.size)
        return transposed

    def _tap_table(self, spec):
        """Device table ``(Cg*taps, 4)``: input offset and (dz, dy, dx) of each reduction
        index, built once per geometry."""
        from numba import cuda
        D, H, W = _ints(spec.input_spatial, 1)
        ksize, dil = _ints(spec.kernel, 1), _ints(spec.dilation, 1)
        cg = spec.in_channels // spec.groups
        key = (cg, ksize, dil, (D, H, W), _device_id())
        table = self._tables.get(key)
        if table is None:
            c, r, s, t = np.indices((cg,) + ksize).reshape(4, -1)
            dz, dy, dx = r * dil[0], s * dil[1], t * dil[2]
            host = np.stack([c * (D * H * W) + (dz * H + dy) * W + dx, dz, dy, dx], axis=1)
            table = cuda.to_device(np.ascontiguousarray(host, dtype=np.int64))
            self._tables.put(key, table)
        return table

    def _finish(self, dy, spec, out, io, *inputs):
        """Shape the result: into ``out``, a device array for device callers, else NumPy."""
        dy = dy.reshape(spec.output_shape)
        if out is not None:
            dy.copy_to_host(out)
            io.device_to_host_bytes += out.nbytes
            result = out
        elif any(_is_device(a) for a in inputs):
            result = dy
        else:
            result = dy.copy_to_host()
            io.device_to_host_bytes += result.nbytes
        self.last_transfers = io.as_dict()
        return result


def _device_id():
    from numba import cuda
    return getattr(cuda.get_current_device(), "id", 0)


_sm_counts = {}


def _sm_count():
    """Multiprocessors of the current device (a fixed H100 count under the simulator)."""
    from . import kernels
    if kernels.SIMULATOR:
        return DEFAULT_SMS
    from numba import cuda
    device = cuda.get_current_device()
    if device.id not in _sm_counts:
        _sm_counts[device.id] = device.MULTIPROCESSOR_COUNT
    return _sm_counts[device.id]
