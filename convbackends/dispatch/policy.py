"""The ``"auto"`` policy: which backend runs a call when none is named.

``AutoPolicy.choose`` answers, in this order:

1. a device array (``__cuda_array_interface__``) goes to ``cuda``;
2. with the autotuner on (:func:`convbackends.dispatch.autotune.set_autotune`,
   ``CONVBACKENDS_AUTOTUNE=1``), the fastest backend measured for this geometry, timed once
   and then remembered (see :mod:`convbackends.dispatch.autotune`);
3. the first of :data:`RULES` whose predicate holds and one of whose preferred backends is
   registered, available and supports the call;
4. the first backend of :data:`DEFAULT_ORDER` (then any other registered one) that can run it.

Gradient ops (``conv_input_grad``, ``conv_weight_grad``) are judged by the forward layer's
geometry (their spec is the forward call's), never by the lowered call's: the weight
gradient's lowering is a convolution whose "kernel" is the output gradient, which no
forward rule fits. A gradient rule may name a backend that reaches the op only through one
of the op table's lowerings onto its own kernels; dispatch then plans that lowering.

So ``"auto"`` never raises :class:`UnsupportedError` while any registered, available
backend supports the call, and a rule naming a backend that is missing on this machine
(``fft``, ``winograd``, ``numba``, ``cuda`` are optional) simply passes to the next choice.
The rules are the crossovers measured by ``convbackends compare`` (docs/perf-compare.md).
FFT is preferred in both dtypes (its measured error, ~7e-16 in float64 and ~3e-7 in float32,
equals the direct sums'); Winograd only in float32, where its ~10x larger error (~2e-6)
still sits well inside the float32 bound.
"""

import math
from dataclasses import dataclass

from ..errors import UnsupportedError
from ..ops import get_op
from ..spec import POOL_OPS
from ..spec.layout import layout_refusal

__all__ = ["AutoPolicy", "Rule", "RULES", "DEFAULT_ORDER", "GRADIENT_OPS"]

# Used when no rule names a backend that can run the call.
DEFAULT_ORDER = ("im2col", "numba", "fft", "winograd", "naive")
# Ops judged by their forward call's geometry; a rule may reach them through a lowering.
GRADIENT_OPS = ("conv_input_grad", "conv_weight_grad")

@dataclass(frozen=True)
class Rule:
    """One crossover: when ``applies(op, spec)`` holds, try ``prefer`` in order.

    ``name`` and ``why`` (the measurement behind it) make ``explain()``'s reason.
    """

    name: str
    why: str
    prefer: tuple
    applies: object

    def __call__(self, op, spec):
        return self.applies(op, spec)


def _conv(op, spec):
    return op == "conv"


def _is_depthwise(spec):
    return spec.groups > 1 and spec.groups == spec.in_channels


def _depthwise(op, spec):
    return op in ("conv", "conv_transpose") and _is_depthwise(spec)


def _unit_stride_dilation(spec):
    return all(s == 1 for s in spec.stride) and all(d == 1 for d in spec.dilation)


def _channels_per_group(spec):
    return spec.in_channels // spec.groups


# The crossovers, measured with `convbackends compare` and the sweeps in
# docs/perf-compare.md (2 cores, OpenBLAS Haswell kernel, batch 8).
LARGE_KERNEL = {1: 31, 2: 7, 3: 7}      # per dim, from which FFT beats GEMM and direct loop
FEW_CHANNELS = {1: 4, 2: 32, 3: 32}     # C_in / groups up to which the direct loop wins
FEW_OUTPUTS = {1: 128, 2: 32, 3: 32}    # ... and C_out / groups up to which it still does
WINOGRAD_MAX_SIDE = 112                 # output side up to which Winograd's tiles pay
WINOGRAD_MIN_TILES = 32                 # 4x4 output tiles (whole batch) its GEMMs need
# FFT's work per channel pair: ``bins * (4 * batch + FFT_FILTER_WORK)`` (a complex
# multiply-add per sample and bin, and the filter's transform, which no batch shares),
# ``bins`` the product of ``output + kernel - 1``; the direct formula's is ``batch *
# prod(output) * prod(kernel)``. FFT won where the direct work was at least
# FFT_MIN_ADVANTAGE times its own (7x7 kernels, 64 channels, batch 8: 0.53x im2col's time at
# 14x14 outputs, 2.3x at 7x7; 512 channels at batch 1: 7.7x at 14x14; FCN's fc6, a 7x7
# kernel on a 7x7 map: 4.4 s against im2col's 0.1 s).
FFT_FILTER_WORK = 40
FFT_MIN_ADVANTAGE = 2
# Output positions from which numba's depthwise weight-gradient kernel beats im2col's
# einsum (batch 8, 2 threads: 7-23 ms against 27-127 at 56x56 and 112x112; 5.3-7.0
# against 4.1-5.8 at 14x14).
DEPTHWISE_GRAD_MIN_OUTPUT = 28 * 28
# 4x4 tiles of the input (the whole batch) from which Winograd's conv of the output gradient
# beat im2col on a stride-1 3x3 layer's input gradient (batch 8, one BLAS thread: 3.9 ms
# against 6.0 at 64 channels 28x28, 392 tiles; 2.7 against 5.5 at 128 channels 14x14, 128
# tiles; 7.5 against 5.2 at 256 channels 7x7, 32 tiles).
WINOGRAD_GRAD_MIN_TILES = 128


def _fft_pays(spec):
    """Whether the direct formula's work outweighs FFT's for this output size and batch."""
    bins = math.prod(o + k - 1 for o, k in zip(spec.output_spatial, spec.kernel))
    direct = spec.batch * math.prod(spec.output_spatial) * math.prod(spec.kernel)
    return direct >= FFT_MIN_ADVANTAGE * bins * (4 * spec.batch + FFT_FILTER_WORK)


def _large_kernel_geometry(spec):
    # A 1-D filter bank over one or a few channels stays with the direct loop (SincNet's
    # 251 taps: numba 8.9 ms, FFT 19.7 ms), so few channels are left to the next rule.
    return (_unit_stride_dilation(spec) and not _is_depthwise(spec)
            and min(spec.kernel) >= LARGE_KERNEL[spec.ndim]
            and (spec.ndim > 1 or _channels_per_group(spec) > FEW_CHANNELS[1])
            and _fft_pays(spec))


def _large_kernel(op, spec):
    return _conv(op, spec) and _large_kernel_geometry(spec)


def _gradient_of_large_kernel(op, spec):
    return op in GRADIENT_OPS and _large_kernel_geometry(spec)


def _depthwise_input_grad(op, spec):
    return op == "conv_input_grad" and _is_depthwise(spec)


def _depthwise_weight_grad(op, spec):
    return (op == "conv_weight_grad" and _is_depthwise(spec)
            and math.prod(spec.output_spatial) >= DEPTHWISE_GRAD_MIN_OUTPUT)


def _few_channels(op, spec):
    # Strided stems with large kernels (ResNet's 7x7/2, AlexNet's 11x11/4) stay with the
    # GEMM (1.1-1.4x faster there); a strided 3x3 stem (MobileNet's) does not. With many
    # output channels (VGG's 3->64 stem, MobileNet's 32->64 pointwise) the GEMM wins again.
    small_or_unstrided = all(s == 1 for s in spec.stride) or max(spec.kernel) <= 3
    return (_conv(op, spec) and small_or_unstrided
            and _channels_per_group(spec) <= FEW_CHANNELS[spec.ndim]
            and spec.out_channels // spec.groups <= FEW_OUTPUTS[spec.ndim])


def _winograd_fits(spec, channels_in, channels_out, spatial, min_tiles):
    """A float32 2-D 3x3 stride-1 convolution, groups 1, with ``channels_in`` and
    ``channels_out`` past the few-channels bounds, sides of ``spatial`` up to
    ``WINOGRAD_MAX_SIDE`` and at least ``min_tiles`` 4x4 tiles over the batch."""
    return (spec.dtype == "float32" and spec.ndim == 2
            and all(k == 3 for k in spec.kernel) and _unit_stride_dilation(spec)
            and spec.groups == 1 and channels_in > FEW_CHANNELS[2]
            and channels_out > FEW_OUTPUTS[2] and max(spatial) <= WINOGRAD_MAX_SIDE
            and spec.batch * math.prod(-(-L // 4) for L in spatial) >= min_tiles)


def _winograd_3x3(op, spec):
    # Every stride-1 3x3 layer of ResNet-18 and VGG-16 at batch 8 from 64 channels on
    # (1.03x-2.6x over im2col), but for VGG's 64 channels at 224x224, a draw (0.89x in one
    # run, 1.05x in the next) that the GEMM keeps: the transformed tiles outgrow the caches.
    # Too few tiles starve its GEMMs: ResNet-18's 512 channels at 7x7 and batch 1 (4 tiles)
    # took 2.3x im2col's time, 256 at 14x14 (16 tiles) 1.08x; at batch 8 (32 tiles) 0.84x.
    return _conv(op, spec) and _winograd_fits(spec, spec.in_channels, spec.out_channels,
                                              spec.output_spatial, WINOGRAD_MIN_TILES)


def _winograd_input_grad(op, spec):
    # The input gradient of a stride-1 3x3 layer is a stride-1 3x3 convolution of the
    # output gradient (channels swapped, filter flipped) over the input's size.
    return op == "conv_input_grad" and _winograd_fits(
        spec, spec.out_channels, spec.in_channels, spec.input_spatial,
        WINOGRAD_GRAD_MIN_TILES)


RULES = (
    Rule("pooling", "pooling is memory-bound: the parallel direct loop wins",
         ("numba", "naive"), lambda op, spec: op in POOL_OPS),
    # Gradients, by the forward layer's geometry (docs/perf-training.md; batch 8 but for
    # LeNet-5's 64, one thread unless said).
    Rule("gradient-large-kernel", "the forward layer passes the large-kernel rule: FFT "
         "through the gradient's lowering (9x9, 16 channels, 64x64: input gradient 36 ms "
         "against im2col's 151, weight gradient 20 against 165)", ("fft",),
         _gradient_of_large_kernel),
    Rule("gradient-depthwise-input", "a depthwise layer's input gradient: numba's "
         "conv_transpose through the lowering (16 ms against im2col's 47-110 from 14x14 to "
         "112x112)", ("numba",), _depthwise_input_grad),
    Rule("gradient-depthwise-weight", "a depthwise layer's weight gradient over at least "
         f"{DEPTHWISE_GRAD_MIN_OUTPUT} outputs: numba's kernel, one pass over each channel's "
         "plane (2 threads: 2.8-5.4x im2col's einsum at 56x56 to 112x112)", ("numba",),
         _depthwise_weight_grad),
    Rule("gradient-weight", "im2col's weight-gradient kernel: the unfold and one GEMM over "
         "batch and positions (on ResNet-18's layers 1.5-10x faster than its lowering, a "
         "tiny-batch convolution with an output-sized kernel); depthwise, an einsum per "
         "kernel offset", ("im2col",),
         lambda op, spec: op == "conv_weight_grad"),
    Rule("gradient-input-winograd", "a stride-1 3x3 layer's input gradient over at least "
         f"{WINOGRAD_GRAD_MIN_TILES} 4x4 tiles: winograd's conv of the output gradient "
         "through conv_transpose (batch 8: 3.9 ms against im2col's 6.0 at 64 channels "
         "28x28, 2.7 against 5.5 at 128 channels 14x14)", ("winograd",),
         _winograd_input_grad),
    Rule("gradient-input", "im2col's conv_transpose through the lowering: its GEMM and "
         "col2im (a native GEMM + col2im measured no faster; on ResNet-18's and LeNet-5's "
         "layers numba took 1.7-58x its time, FFT 1.0-3.5x)", ("im2col",),
         lambda op, spec: op == "conv_input_grad"),
    Rule("depthwise", "depthwise: one GEMM per channel is too small for BLAS; the direct "
         "loop beat FFT up to 31x31 kernels", ("numba",), _depthwise),
    Rule("large-kernel", "stride 1, kernel >= 7x7 (31 in 1-D), an output large enough "
         f"that the direct work is {FFT_MIN_ADVANTAGE}x FFT's: FFT's cost does not grow with "
         "the kernel", ("fft",), _large_kernel),
    Rule("few-channels", f"at most {FEW_CHANNELS[2]} input and {FEW_OUTPUTS[2]} output channels "
         f"per group ({FEW_CHANNELS[1]} and {FEW_OUTPUTS[1]} in 1-D), stride 1 or a 3x3 kernel: "
         "too short a GEMM to pay for the unfold", ("numba",), _few_channels),
    Rule("winograd-3x3", f"float32 3x3, stride 1, more than {FEW_CHANNELS[2]} channels, output "
         f"up to {WINOGRAD_MAX_SIDE}x{WINOGRAD_MAX_SIDE}, at least {WINOGRAD_MIN_TILES} 4x4 "
         "tiles: 2.25x fewer multiplies than the GEMM",
         ("winograd",), _winograd_3x3),
)


class AutoPolicy:
    """The policy registered as ``"auto"``."""

    name = "auto"
    limits = "chooses among the others: device arrays -> cuda, autotuner, rules, default order"
    accepts_device_arrays = True

    def __init__(self, backends, get_backend):
        # The registry's lookups, handed in so the policy never imports the registry.
        self._backends, self._get_backend = backends, get_backend
        self._tuner = None

    def available(self):
        return None

    def supports(self, op, spec):
        return None

    @property
    def tuner(self):
        """The :class:`~convbackends.dispatch.autotune.Autotuner` (made when first needed)."""
        if self._tuner is None:
            from .autotune import Autotuner
            self._tuner = Autotuner()
        return self._tuner

    def choose(self, op, spec, device=False, dry_run=False):
        """Return ``(backend, reason)`` for this call; ``reason`` names the rule or cache entry.

        For a gradient op the backend may lack a kernel for it (a rule chose its route
        through a lowering): the caller plans that route (:func:`~.plan.backend_plan`).

        With ``dry_run`` (``explain()``) the autotuner answers only from what it has already
        timed; an unknown geometry falls to the rules, and the reason says so.
        """
        from .autotune import autotune_enabled
        backends, get_backend = self._backends, self._get_backend

        def runnable(name, op=op, spec=spec):
            if name == "auto" or name not in backends():
                return None
            b = get_backend(name)
            if device and not getattr(b, "accepts_device_arrays", False):
                return None
            if not callable(getattr(b, op, None)):
                return None
            if layout_refusal(b, op, spec) is not None:
                return None
            if b.available() is not None or b.supports(op, spec) is not None:
                return None
            return b

        def reachable(name, op=op, spec=spec, depth=2):
            """``runnable``, or for a gradient op, runnable through a chain of at most
            ``depth`` lowerings (an input gradient reaches winograd's ``conv`` through
            ``conv_transpose``)."""
            b = runnable(name, op, spec)
            if b is not None or depth == 0 or device:
                return b
            for low in get_op(op).lowerings:
                target = low.rewrite(spec)
                if not isinstance(target, str) and reachable(name, low.target, target,
                                                             depth - 1):
                    return get_backend(name)
            return None

        if device:
            b = runnable("cuda")
            if b is not None:
                return b, "rule device: the input is a device array"
        order = list(DEFAULT_ORDER) + [n for n in backends() if n not in DEFAULT_ORDER]
        untimed = ""
        if autotune_enabled() and not device:
            candidates = {n: b for n in order if (b := runnable(n)) is not None}
            if len(candidates) > 1:
                found = (self.tuner.lookup(op, spec, candidates) if dry_run
                         else self.tuner.choose(op, spec, candidates))
                if found is not None:
                    return candidates[found[0]], found[1]
                untimed = "autotune has not timed this geometry yet (its first call will); " \
                          "until then "
        for rule in RULES:
            if rule(op, spec):
                for name in rule.prefer:
                    b = reachable(name) if op in GRADIENT_OPS else runnable(name)
                    if b is not None:
                        return b, f"{untimed}rule {rule.name}: {rule.why}"
        for name in order:
            b = runnable(name)
            if b is not None:
                return b, (f"{untimed}default order {', '.join(DEFAULT_ORDER)}: first that "
                           f"supports it")
        raise UnsupportedError(f"no registered, available backend can run this {op}"
                               + (" on a device array" if device else ""))
