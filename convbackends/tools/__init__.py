"""Measuring convbackends: the timing loop, float64 references, workloads, the command line.

:mod:`.measure` (one timing loop, ``relative_error``, naive's MAC limits; NumPy only),
:mod:`.reference` (float64 formulas to check results against), :mod:`.workloads` (layers
of real networks), :mod:`.peer` (another library timed in a process of its own),
:mod:`.compare` and :mod:`.report` (``convbackends compare``), :mod:`.info`
(``convbackends info``) and :mod:`.cli` (the command). Nothing is imported here, so the
autotuner can import :mod:`.measure` without loading the rest.
"""
