"""The ``"auto"`` policy: which backend runs a call when none is named.

``AutoPolicy.choose`` answers, in this order:

1. a device array (``__cuda_array_interface__``) goes to ``cuda``;
2. with the autotuner on (:func:`convbackends.autotune.set_autotune`,
   ``CONVBACKENDS_AUTOTUNE=1``), the fastest backend measured for this geometry, timed once
   and then remembered (see :mod:`convbackends.autotune`);
3. the first of :data:`RULES` whose predicate holds and one of whose preferred backends is
   registered, available and supports the call;
4. the first backend of :data:`DEFAULT_ORDER` (then any other registered one) that can run it.

So ``"auto"`` never raises :class:`UnsupportedError` while any registered, available
backend supports the call, and a rule naming a backend that is missing on this machine
(``fft``, ``winograd``, ``numba``, ``cuda`` are optional) simply passes to the next choice.
The rules are the crossovers measured by ``convbackends compare`` (docs/perf-compare.md);
FFT and Winograd are preferred for float32 only, since their larger rounding error
(``1e-4`` against ``1e-5``) is within float32 noise but not within float64's.
"""

from dataclasses import dataclass

from .errors import UnsupportedError

__all__ = ["AutoPolicy", "Rule", "RULES", "DEFAULT_ORDER"]

# Used when no rule names a backend that can run the call.
DEFAULT_ORDER = ("im2col", "numba", "fft", "winograd", "naive")

POOL_OPS = ("max_pool", "avg_pool", "adaptive_avg_pool")


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


def _depthwise(op, spec):
    return op in ("conv", "conv_transpose") and spec.groups > 1 \
        and spec.groups == spec.in_channels


def _unit_stride_dilation(spec):
    return all(s == 1 for s in spec.stride) and all(d == 1 for d in spec.dilation)


def _fft_friendly(op, spec, min_kernel):
    """float32, stride 1, dilation 1 and at least ``min_kernel`` taps along every dim."""
    return (_conv(op, spec) and spec.dtype == "float32" and _unit_stride_dilation(spec)
            and min(spec.kernel) >= min_kernel)


def _large_depthwise(op, spec):
    return _depthwise(op, spec) and _fft_friendly(op, spec, LARGE_DEPTHWISE_KERNEL)


def _large_kernel(op, spec):
    return (not _depthwise(op, spec) and spec.ndim >= 2
            and _fft_friendly(op, spec, LARGE_KERNEL))


def _one_d(op, spec):
    return op == "conv" and spec.ndim == 1


# Crossovers measured with `convbackends compare` and the sweeps in docs/perf-compare.md.
LARGE_KERNEL = 9            # dense kernels from 9x9 up: FFT beats the GEMM
LARGE_DEPTHWISE_KERNEL = 15  # depthwise kernels from 15x15 up: FFT beats the direct loop

RULES = (
    Rule("pooling", "pooling is memory-bound: the parallel direct loop wins",
         ("numba", "naive"), lambda op, spec: op in POOL_OPS),
    Rule("large-depthwise", f"depthwise, float32, stride 1, kernel >= {LARGE_DEPTHWISE_KERNEL}"
         " per dim: FFT's cost does not grow with the kernel", ("fft", "numba"),
         _large_depthwise),
    Rule("depthwise", "depthwise: one GEMM per channel is too small for BLAS",
         ("numba",), _depthwise),
    Rule("large-kernel", f"float32, stride 1, kernel >= {LARGE_KERNEL} per dim: FFT's cost "
         "does not grow with the kernel", ("fft",), _large_kernel),
    Rule("1-d", "1-D: rows too short for a GEMM to pay for its unfold; the direct loop wins",
         ("numba",), _one_d),
)


class AutoPolicy:
    """The policy registered as ``"auto"``."""

    name = "auto"
    limits = "chooses among the others: device arrays -> cuda, autotuner, rules, default order"
    accepts_device_arrays = True

    def __init__(self):
        self._tuner = None

    def available(self):
        return None

    def supports(self, op, spec):
        return None

    @property
    def tuner(self):
        """The :class:`~convbackends.autotune.Autotuner` (made when first needed)."""
        if self._tuner is None:
            from .autotune import Autotuner
            self._tuner = Autotuner()
        return self._tuner

    def choose(self, op, spec, device=False):
        """Return ``(backend, reason)`` for this call; ``reason`` names the rule or cache entry."""
        from .autotune import autotune_enabled
        from .dispatch import backends, get_backend

        def runnable(name):
            if name == "auto" or name not in backends():
                return None
            b = get_backend(name)
            if device and not getattr(b, "accepts_device_arrays", False):
                return None
            if b.available() is not None or b.supports(op, spec) is not None:
                return None
            return b

        if device:
            b = runnable("cuda")
            if b is not None:
                return b, "rule device: the input is a device array"
        order = list(DEFAULT_ORDER) + [n for n in backends() if n not in DEFAULT_ORDER]
        if autotune_enabled() and not device:
            candidates = {n: b for n in order if (b := runnable(n)) is not None}
            if len(candidates) > 1:
                name, reason = self.tuner.choose(op, spec, candidates)
                return candidates[name], reason
        for rule in RULES:
            if rule(op, spec):
                for name in rule.prefer:
                    b = runnable(name)
                    if b is not None:
                        return b, f"rule {rule.name}: {rule.why}"
        for name in order:
            b = runnable(name)
            if b is not None:
                return b, f"default order {', '.join(DEFAULT_ORDER)}: first that supports it"
        raise UnsupportedError(f"no registered, available backend can run this {op}"
                               + (" on a device array" if device else ""))
