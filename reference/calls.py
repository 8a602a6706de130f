"""Call the float64 oracle the way a ``convbackends`` function is called.

``run_oracle(func, kwargs, arrays)`` takes a public function name (``"conv2d"``,
``"max_pool1d"``, ...) and its keyword arguments in any of the contract's forms (padding as an
int, per-dim ints, pairs, ``"valid"``/``"same"``; ``padding_mode``; unbatched input) and
returns the float64 reference: for ``return_indices=True`` (max and adaptive max pooling) a
tuple ``(values, indices)``, indices int64, as the public function returns it; for
``max_unpool*`` the indices come from ``arrays["indices"]``. ``assert_close`` is the
contract's accuracy check. Imports nothing from ``convbackends``.
"""

import numpy as np

from . import oracle

__all__ = ["run_oracle", "assert_close"]

NP_PAD_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _spatial_dims(func):
    return int(func.rstrip("d")[-1])


def _pairs(padding, nd, kernel=None, dilation=None):
    """Any convbackends padding form as (before, after) pairs."""
    if padding == "valid":
        return [(0, 0)] * nd
    if padding == "same":  # the total dilation*(k-1); an odd total puts the extra after
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return [(t // 2, t - t // 2) for t in totals]
    if isinstance(padding, int):
        return [(padding, padding)] * nd
    return [tuple(p) if isinstance(p, (list, tuple)) else (p, p) for p in padding]


def _per_dim(value, nd):
    return [value] * nd if isinstance(value, int) else list(value)


def _pool_pairs(padding, spatial, kw):
    """Pooling padding as pairs; ``"same"`` as TensorFlow defines it: ``ceil(L / stride)`` outputs."""
    nd = len(spatial)
    if padding != "same":
        return _pairs(padding, nd)
    kernel = _per_dim(kw["kernel_size"], nd)
    stride = kernel if kw.get("stride") is None else _per_dim(kw["stride"], nd)
    dilation = _per_dim(kw.get("dilation", 1), nd)
    pairs = []
    for L, k, s, d in zip(spatial, kernel, stride, dilation):
        total = max((-(-L // s) - 1) * s + d * (k - 1) + 1 - L, 0)
        pairs.append((total // 2, total - total // 2))
    return pairs


def run_oracle(func, kwargs, arrays):
    """Call the oracle as ``convbackends.<func>(**arrays, **kwargs)`` would compute.

    ``arrays`` holds ``"x"`` and, where the function takes them, ``"weight"``, ``"bias"``
    (convolutions) or ``"indices"`` (``max_unpool*``); other entries are ignored.
    """
    nd = _spatial_dims(func)
    kw = dict(kwargs)
    x = arrays["x"]
    unbatched = x.ndim == nd + 1
    if unbatched:
        x = x[None]
    weight, bias = arrays.get("weight"), arrays.get("bias")
    if func.startswith("conv_transpose"):
        kw["padding"] = _pairs(kw.get("padding", 0), nd)
        y = oracle.conv_transpose(x, weight, bias, **kw)
    elif func.startswith("conv"):
        kernel = weight.shape[2:]
        pairs = _pairs(kw.pop("padding", 0), nd, kernel, _per_dim(kw.get("dilation", 1), nd))
        mode = kw.pop("padding_mode", "zeros")
        if mode != "zeros":  # pad-then-conv, as torch.nn.ConvNd does
            x = np.pad(x, [(0, 0), (0, 0)] + pairs, mode=NP_PAD_MODE[mode])
            pairs = 0
        y = oracle.conv(x, weight, bias, padding=pairs, **kw)
    elif func.startswith(("max_pool", "avg_pool")):
        kw["padding"] = _pool_pairs(kw.get("padding", 0), x.shape[2:], kw)
        if func.startswith("avg_pool"):
            y = oracle.avg_pool(x, **kw)
        elif kw.pop("return_indices", False):
            y = oracle.max_pool_with_indices(x, **kw)
        else:
            y = oracle.max_pool(x, **kw)
    elif func.startswith("adaptive_avg_pool"):
        y = oracle.adaptive_avg_pool(x, **kw)
    elif func.startswith("adaptive_max_pool"):
        with_indices = kw.pop("return_indices", False)
        y = oracle.adaptive_max_pool(x, **kw)
        y = y if with_indices else y[0]
    elif func.startswith("max_unpool"):
        indices = arrays["indices"]
        y = oracle.max_unpool(x, indices[None] if unbatched else indices, **kw)
    else:
        raise AssertionError(f"unknown func {func}")
    if isinstance(y, tuple):  # (values, indices), as with return_indices=True
        return tuple(a[0] for a in y) if unbatched else y
    return y[0] if unbatched else y


def assert_close(y, ref, rtol):
    """Relative error ||y - ref|| / ||ref|| below rtol; -inf positions identical."""
    assert y.shape == ref.shape, (y.shape, ref.shape)
    assert not np.isnan(ref).any() and not np.isnan(y).any()
    ninf = np.isneginf(ref)
    np.testing.assert_array_equal(np.isneginf(y), ninf)
    assert np.isfinite(ref[~ninf]).all() and np.isfinite(y[~ninf]).all()
    diff = np.linalg.norm(np.asarray(y, np.float64)[~ninf] - ref[~ninf])
    norm = np.linalg.norm(ref[~ninf])
    assert diff <= rtol * norm, f"relative error {diff / norm:.3e} above {rtol:g}"
