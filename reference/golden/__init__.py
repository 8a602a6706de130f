"""Golden cases: PyTorch 2.13.0 outputs for small convolution and pooling calls.

Each case is one ``.npz`` in ``cases/``, written by ``make_golden.py``. Loading them needs
only NumPy and :mod:`json`. The parity cases (max pooling with indices, adaptive max pooling,
max unpooling, average pooling with ``divisor_override``, max pooling of NaN and infinite
inputs) sit apart in ``cases/parity/``: ``load_cases(PARITY_DIR)``. Besides ``x`` and ``y``
they may hold ``y_indices`` (the int64 indices a ``return_indices=True`` call returns, second
in its tuple) or ``indices`` (``max_unpool``'s second argument), and ``y`` may hold NaN.
"""

import json
import pathlib

import numpy as np

__all__ = ["CASES_DIR", "PARITY_DIR", "load_cases"]

CASES_DIR = pathlib.Path(__file__).resolve().parent / "cases"
PARITY_DIR = CASES_DIR / "parity"


def load_cases(directory=CASES_DIR):
    """Load every golden case.

    Parameters
    ----------
    directory : path-like, optional
        Folder of ``.npz`` cases. Default: ``reference/golden/cases``.

    Returns
    -------
    list of (name, func, kwargs, arrays)
        Sorted by name. ``name`` is the file's stem; ``func`` the ``convbackends`` function
        the case exercises (``"conv2d"``, ``"max_pool1d"``, ...); ``kwargs`` the keyword
        arguments as that function takes them (JSON types: lists for tuples, ``None`` for
        null); ``arrays`` a dict with ``"x"``, ``"y"`` and, where present, ``"weight"`` and
        ``"bias"`` (float32 or float64, as stored), ``"indices"`` or ``"y_indices"`` (int64,
        parity cases). Subfolders (``parity/``) are not read: pass them as ``directory``.
    """
    cases = []
    for path in sorted(pathlib.Path(directory).glob("*.npz")):
        with np.load(path, allow_pickle=False) as data:
            params = json.loads(str(data["params"][()]))
            arrays = {key: data[key] for key in data.files if key != "params"}
        cases.append((path.stem, params["func"], params["kwargs"], arrays))
    return cases
