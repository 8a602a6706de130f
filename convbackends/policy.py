"""The ``"auto"`` policy: which backend runs a call when none is named.

``AutoPolicy.choose`` walks a short list of rules, each a predicate on the spec with the
backends it prefers, and takes the first preferred backend that is available and supports
the call; when no rule matches (or none of its backends can run), it takes the first
backend in the default order that can. It never raises :class:`UnsupportedError` while
any registered, available backend supports the call.
"""

from .errors import UnsupportedError

# Used when no rule names a backend that can run the call.
DEFAULT_ORDER = ("im2col", "numba", "fft", "winograd", "naive")


def _rules(op, spec):
    """Yield ``(reason, preferred backend names)`` for the rules that match ``spec``."""
    if op in ("max_pool", "avg_pool", "adaptive_avg_pool"):
        yield "pooling is memory-bound: the parallel direct loop wins", ("numba", "naive")
        return
    if spec.groups > 1 and spec.groups == spec.in_channels:
        yield "depthwise: a GEMM per channel is too small for BLAS", ("numba", "naive")


class AutoPolicy:
    """The policy registered as ``"auto"``."""

    name = "auto"
    accepts_device_arrays = True

    def available(self):
        return None

    def supports(self, op, spec):
        return None

    def choose(self, op, spec, device=False):
        """Return ``(backend, reason)`` for this call."""
        from .dispatch import backends, get_backend

        def runnable(name):
            if name not in backends():
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
                return b, "rule: the input is a device array"
        for reason, names in _rules(op, spec):
            for name in names:
                b = runnable(name)
                if b is not None:
                    return b, f"rule: {reason}"
        order = list(DEFAULT_ORDER) + [n for n in backends() if n not in DEFAULT_ORDER]
        for name in order:
            if name == "auto":
                continue
            b = runnable(name)
            if b is not None:
                return b, f"default order {', '.join(DEFAULT_ORDER)}: first that supports it"
        raise UnsupportedError(f"no registered, available backend can run this {op}"
                               + (" on a device array" if device else ""))
