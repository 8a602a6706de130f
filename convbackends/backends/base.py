"""The Backend base class: what every backend (built-in or plug-in) looks like.

A backend is any object with ``name``, ``available()``, ``supports(op, spec)`` and one method
per op it implements: ``conv(x, weight, bias, spec)``, ``conv_transpose(x, weight, bias,
spec)``, ``max_pool(x, spec)``, ``avg_pool(x, spec)``, and any other op of the op table
(:mod:`convbackends.ops`: ``max_pool_with_indices``, ``adaptive_avg_pool``,
``adaptive_max_pool``, ``max_unpool(x, indices, spec)``). Ops it has no kernel for reach it
through the table's lowerings. Subclassing :class:`Backend` is optional; it supplies the
defaults below.
"""

import numpy as np

from ..ops import OP_NAMES as OPS


class Backend:
    """Defaults for a backend.

    Attributes
    ----------
    name : str
        The registered name.
    limits : str
        One line stating what the backend cannot do (shown by ``convbackends info``).
    accepts_device_arrays : bool
        Whether ops take arrays with ``__cuda_array_interface__`` (only the CUDA backend).
    writes_out : bool
        Whether ops take a keyword ``out=`` and write the result into it.
    fuses_epilogue : bool
        Whether its ``conv`` kernel takes a keyword ``epilogue=``
        (:class:`convbackends.ops.epilogue.Epilogue`: a residual add, then an activation)
        and applies it itself; dispatch applies it after any other kernel.
    exact_nonfinite : bool
        Whether its ``conv`` and ``conv_transpose`` kernels give NaN and Inf exactly where
        the direct formula does (docs/api.md §1.8). Dispatch guards a kernel that says
        ``False`` (:mod:`convbackends.ops.nonfinite`); calling the method directly is raw.
    """

    name = None
    limits = ""
    accepts_device_arrays = False
    writes_out = False
    fuses_epilogue = False
    exact_nonfinite = True

    def magnitude_growth(self, op, spec):
        """A bound ``g`` with ``|intermediate| <= g * max|x| * max|w| + max|bias|`` for the
        ``conv`` or ``conv_transpose`` kernel on ``spec``, or ``None`` when its
        intermediates are partial sums of the direct formula's terms. Dispatch runs a
        float32 call whose bound would overflow float32 in float64 instead."""
        return None

    def available(self):
        """``None`` when the backend can run on this machine, else the reason it cannot."""
        return None

    def supports(self, op, spec):
        """``None`` when the backend can run ``op`` on ``spec``, else the reason it cannot."""
        if op not in OPS or not callable(getattr(self, op, None)):
            return f"{self.name} does not implement {op}"
        return None

    def workspace_bytes(self, op, spec):
        """Bytes of temporary memory the op allocates beyond its output."""
        return 0

    def plan(self, op, spec):
        """Per-phase facts for ``explain()`` (algorithm variant, tiles, chunks), as a dict."""
        return {}

    def __repr__(self):
        return f"<convbackends backend {self.name!r}>"


def is_immutable(array):
    """Whether ``array``'s memory can never change: it is read-only and its chain of bases
    ends in a ``bytes`` object (NumPy refuses to make such an array writeable). Prepacked
    weights (:func:`convbackends.nn.fuse`) are made so, and a cache keyed on one may skip
    comparing its bytes."""
    while isinstance(array, np.ndarray):
        if array.flags.writeable:
            return False
        array = array.base
    return isinstance(array, bytes)
