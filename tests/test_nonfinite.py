"""NaN, +Inf, -Inf, exact zeros and huge finite values, on every backend, against the oracle.

The float64 oracle (``reference/oracle.py``) computes the direct formulas, so it defines what
a non-finite input gives:

- convolution: every padded zero takes part in the products, so ``0 * Inf`` in the padding
  is NaN, as is ``Inf - Inf`` anywhere in a sum;
- transposed convolution: the scatter of the real inputs only (the cropped ends of the full
  output do not matter);
- max pooling: a window holding a NaN gives NaN (PyTorch), with the indices' rules of
  docs/api.md §3.7; average pooling sums its window.

A backend's result must have the oracle's non-finite pattern exactly (``isnan``,
``isposinf`` and ``isneginf`` equal), its finite entries within the backend's tolerance
(``relative_error`` leaves the non-finite reference entries out; max pooling, adaptive max
pooling and max unpooling exactly, as docs/api.md §1.7 says), and its indices exactly the
oracle's. Huge values (float32's largest / 1e3) sit in one of input and weight (and in the
bias), so every direct sum stays finite in float32: wherever the oracle's result cast to
the dtype is finite, the backend's must be finite too. Two measures follow
tests/test_conformance.py where a relative error means nothing: where huge terms cancel
(``||ref|| < 0.1 ||scale||``, the scale being the oracle on absolute values) the error is
taken relative to the scale; and fft and winograd, whose rounding error follows the largest
magnitudes in a whole transform tile, are held with huge values present to
``max |y - ref| <= tolerance * max|x| * max|w| * taps`` (the other backends keep the
relative bound). No RuntimeWarning may escape a call whose result is right (cuda under the
simulator left out: its Python arithmetic warns where a GPU does not).

Every available backend runs here by name, and ``backend=None`` (``"auto"``, the default).
A backend may decline a call with ``UnsupportedError`` (winograd: stride 1, dilation 1,
kernels up to 7; im2col, fft and winograd have no max pooling): that example is passed over
for it, and a backend that declined every drawn example is reported as skipped. ``naive``,
``numba``, ``cuda`` and ``auto`` compute every op and may never decline.

The ``cuda`` backend joins under Numba's simulator: in a process that simulates
(``NUMBA_ENABLE_CUDASIM=1`` exported) it is one more backend, with fewer examples; otherwise
:func:`test_cuda_simulator_run` runs this file's cuda cases in a subprocess that simulates.
"""

import importlib.util
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

import convbackends as cb
from convbackends.tools.measure import TRANSFORM_BACKENDS, relative_error, tolerance
from reference.calls import run_oracle

SIMULATING = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
HAS_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None

# Every available backend but "auto" (cuda only under the simulator), then the default.
NAMED = [n for n in cb.available_backends() if n != "auto" and (n != "cuda" or SIMULATING)]
BACKENDS = [pytest.param(None, id="auto")] + NAMED
# Backends with a kernel, or a lowering they can run, for every op: they never decline.
COMPLETE = (None, "auto", "naive", "numba", "cuda")

EXAMPLES = 30          # per (op family, backend)
CUDA_EXAMPLES = 15     # the simulator runs every CUDA thread as a Python thread
WARNING_EXAMPLES = 12  # per family in the RuntimeWarning test, every backend each

HUGE = float(np.finfo(np.float32).max) / 1e3
VALUES = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "huge": HUGE, "-huge": -HUGE,
          "zero": 0.0}
NON_FINITE = ("nan", "inf", "-inf", "zero")
ALL_KINDS = NON_FINITE + ("huge", "-huge")
DTYPES = (np.float32, np.float64)

SETTINGS = dict(deadline=None, database=None,
                phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])


# --------------------------------------------------------------------------- values


def _placements(kinds, max_size=4):
    """Where special values go: (flat position, kind) pairs; positions wrap the array."""
    return st.lists(st.tuples(st.integers(0, 1 << 16), st.sampled_from(kinds)),
                    max_size=max_size)


def _array(rng, shape, dtype, placed):
    """Uniform in [-1, 1), then the placed special values (later ones win)."""
    a = rng.uniform(-1.0, 1.0, shape).astype(dtype)
    flat = a.reshape(-1)
    for pos, kind in placed:
        flat[pos % flat.size] = VALUES[kind]
    return a


def _nd_and_dtype(draw):
    return draw(st.integers(1, 3)), draw(st.sampled_from(DTYPES))


def _spatial(draw, nd, lo=1):
    return tuple(draw(st.integers(lo, 7 if nd < 3 else 4)) for _ in range(nd))


def _lead(draw, channels):
    """``(N, C)`` or, unbatched, ``(C,)``."""
    if draw(st.booleans()) and draw(st.booleans()):
        return (channels,)
    return (draw(st.integers(1, 2)), channels)


def _pads(draw, nd, top):
    """Padding as an int, per-dim ints or (before, after) pairs."""
    form = draw(st.sampled_from(("int", "ints", "pairs")))
    if form == "int":
        return draw(st.integers(0, top))
    if form == "ints":
        return tuple(draw(st.integers(0, top)) for _ in range(nd))
    return [(draw(st.integers(0, top)), draw(st.integers(0, top))) for _ in range(nd)]


def _pairs(padding, nd):
    if isinstance(padding, int):
        return [(padding, padding)] * nd
    return [p if isinstance(p, (tuple, list)) else (p, p) for p in padding]


def _per_dim(draw, nd, values):
    """One value for all dims, or one per dim."""
    if draw(st.booleans()):
        return draw(st.sampled_from(values))
    return tuple(draw(st.sampled_from(values)) for _ in range(nd))


def _tuple(value, nd):
    return (value,) * nd if isinstance(value, int) else tuple(value)


# --------------------------------------------------------------------------- cases
# Each strategy gives (func, kwargs, arrays): a valid call of ``cb.<func>`` with its arrays.


@st.composite
def conv_cases(draw):
    nd, dtype = _nd_and_dtype(draw)
    groups = draw(st.integers(1, 2))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = _per_dim(draw, nd, (1, 1, 2))
    spatial = _spatial(draw, nd)
    if draw(st.integers(0, 4)) == 0:
        stride, padding = 1, draw(st.sampled_from(("same", "valid")))
    else:
        stride, padding = _per_dim(draw, nd, (1, 1, 2)), _pads(draw, nd, 2)
    if padding == "same":
        pairs = [(0, d * (k - 1)) for d, k in zip(_tuple(dilation, nd), kernel)]
    else:
        pairs = [(0, 0)] * nd if padding == "valid" else _pairs(padding, nd)
    assume(all(L + b + a >= d * (k - 1) + 1 for L, (b, a), d, k
               in zip(spatial, pairs, _tuple(dilation, nd), kernel)))
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    return _with_weights(draw, f"conv{nd}d", kwargs, _lead(draw, c_in) + spatial,
                         (c_out, c_in // groups) + kernel, c_out, dtype)


@st.composite
def conv_transpose_cases(draw):
    nd, dtype = _nd_and_dtype(draw)
    groups = draw(st.integers(1, 2))
    c_in, cout_g = groups * draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = _tuple(_per_dim(draw, nd, (1, 2, 3)), nd)
    dilation = _tuple(_per_dim(draw, nd, (1, 1, 2)), nd)
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    spatial = _spatial(draw, nd)
    padding = _pads(draw, nd, 2)
    full = [(L - 1) * s + d * (k - 1) + 1 + p
            for L, s, d, k, p in zip(spatial, stride, dilation, kernel, output_padding)]
    assume(all(f - b - a >= 1 for f, (b, a) in zip(full, _pairs(padding, nd))))
    kwargs = {"stride": stride, "padding": padding, "output_padding": output_padding,
              "groups": groups, "dilation": dilation}
    return _with_weights(draw, f"conv_transpose{nd}d", kwargs, _lead(draw, c_in) + spatial,
                         (c_in, cout_g) + kernel, cout_g * groups, dtype)


def _with_weights(draw, func, kwargs, x_shape, w_shape, bias_channels, dtype):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    huge_in = draw(st.sampled_from(("x", "weight")))
    kinds = {op: ALL_KINDS if op == huge_in else NON_FINITE for op in ("x", "weight")}
    arrays = {"x": _array(rng, x_shape, dtype, draw(_placements(kinds["x"]))),
              "weight": _array(rng, w_shape, dtype, draw(_placements(kinds["weight"], 3)))}
    if draw(st.booleans()):
        arrays["bias"] = _array(rng, (bias_channels,), dtype, draw(_placements(ALL_KINDS, 2)))
    return func, kwargs, arrays


def _pool_input(draw, nd, dtype):
    spatial = _spatial(draw, nd)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = _lead(draw, draw(st.integers(1, 2))) + spatial
    return spatial, _array(rng, shape, dtype, draw(_placements(ALL_KINDS, 6)))


def _window(draw, nd, spatial, with_dilation=True):
    kernel = _per_dim(draw, nd, (1, 2, 3))
    stride = draw(st.one_of(st.none(), st.just(1), st.just(2), st.just((1, 2, 3)[:nd])))
    dilation = _per_dim(draw, nd, (1, 1, 2)) if with_dilation else 1
    ceil_mode = draw(st.booleans())
    if draw(st.integers(0, 5)) == 0:
        padding = draw(st.sampled_from(("same", "valid")))
    else:
        # Pads up to the kernel: windows wholly in padding happen.
        padding = _pads(draw, nd, max(_tuple(kernel, nd)))
    return kernel, stride, padding, dilation, ceil_mode


def _pool_fits(spatial, kernel, stride, padding, dilation, ceil_mode):
    nd = len(spatial)
    if isinstance(padding, str):
        return True if padding == "same" else all(
            L >= d * (k - 1) + 1
                for L, k, d in zip(spatial, _tuple(kernel, nd), _tuple(dilation, nd)))
    k, d = _tuple(kernel, nd), _tuple(dilation, nd)
    s = k if stride is None else _tuple(stride, nd)
    for L, kk, ss, (b, a), dd in zip(spatial, k, s, _pairs(padding, nd), d):
        span = L + b + a - dd * (kk - 1) - 1
        out = (-(-span // ss) + 1) if ceil_mode else span // ss + 1
        if ceil_mode and (out - 1) * ss >= L + b:
            out -= 1
        if out < 1:
            return False
    return True


@st.composite
def max_pool_cases(draw):
    nd, dtype = _nd_and_dtype(draw)
    spatial, x = _pool_input(draw, nd, dtype)
    kernel, stride, padding, dilation, ceil_mode = _window(draw, nd, spatial)
    assume(_pool_fits(spatial, kernel, stride, padding, dilation, ceil_mode))
    kwargs = {"kernel_size": kernel, "stride": stride, "padding": padding,
              "dilation": dilation, "ceil_mode": ceil_mode,
              "return_indices": draw(st.booleans())}
    return f"max_pool{nd}d", kwargs, {"x": x}


@st.composite
def avg_pool_cases(draw):
    nd, dtype = _nd_and_dtype(draw)
    spatial, x = _pool_input(draw, nd, dtype)
    kernel, stride, padding, dilation, ceil_mode = _window(draw, nd, spatial)
    assume(_pool_fits(spatial, kernel, stride, padding, dilation, ceil_mode))
    kwargs = {"kernel_size": kernel, "stride": stride, "padding": padding,
              "ceil_mode": ceil_mode, "count_include_pad": draw(st.booleans()),
              "dilation": dilation}
    if nd > 1 and draw(st.booleans()):
        kwargs["divisor_override"] = draw(st.sampled_from((1, 3, 7, -2)))
    return f"avg_pool{nd}d", kwargs, {"x": x}


@st.composite
def adaptive_cases(draw):
    nd, dtype = _nd_and_dtype(draw)
    spatial, x = _pool_input(draw, nd, dtype)
    if draw(st.booleans()):
        output_size = draw(st.integers(1, min(spatial) + 1))
    else:
        output_size = tuple(draw(st.one_of(st.none(), st.integers(1, L + 1))) for L in spatial)
    kind = draw(st.sampled_from(("avg", "max")))
    kwargs = {"output_size": output_size}
    if kind == "max":
        kwargs["return_indices"] = draw(st.booleans())
    return f"adaptive_{kind}_pool{nd}d", kwargs, {"x": x}


@st.composite
def max_unpool_cases(draw):
    nd, dtype = _nd_and_dtype(draw)
    spatial, x = _pool_input(draw, nd, dtype)
    kernel = _tuple(_per_dim(draw, nd, (1, 2, 3)), nd)
    stride = draw(st.one_of(st.none(), st.just(_tuple(_per_dim(draw, nd, (1, 2, 3)), nd))))
    s = kernel if stride is None else stride
    pads = [(p, p) for p in (draw(st.integers(0, (k - 1) // 2)) for k in kernel)]
    default = [(L - 1) * ss - b - a + k for L, ss, (b, a), k in zip(spatial, s, pads, kernel)]
    assume(all(v >= 1 for v in default))
    output_size = None
    if draw(st.booleans()):
        output_size = [draw(st.integers(max(1, v - ss + 1), v + ss - 1))
                       for v, ss in zip(default, s)]
    sizes = output_size or default
    plane = int(np.prod(sizes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    indices = rng.integers(0, plane, size=x.shape, dtype=np.int64)  # repeats: last one wins
    kwargs = {"kernel_size": kernel, "stride": stride, "padding": [p[0] for p in pads],
              "output_size": output_size}
    return f"max_unpool{nd}d", kwargs, {"x": x, "indices": indices}


FAMILIES = {"conv": conv_cases(), "conv_transpose": conv_transpose_cases(),
            "max_pool": max_pool_cases(), "avg_pool": avg_pool_cases(),
            "adaptive_pool": adaptive_cases(), "max_unpool": max_unpool_cases()}


# --------------------------------------------------------------------------- checks


def _call(func, kwargs, arrays, backend):
    f = getattr(cb, func)
    if func.startswith("conv"):
        return f(arrays["x"], arrays["weight"], arrays.get("bias"), backend=backend, **kwargs)
    if func.startswith("max_unpool"):
        return f(arrays["x"], arrays["indices"], backend=backend, **kwargs)
    return f(arrays["x"], backend=backend, **kwargs)


def _oracle(func, kwargs, arrays):
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return run_oracle(func, kwargs, arrays)


def _describe(func, kwargs, arrays):
    parts = [f"{func}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"]
    for name, a in arrays.items():
        where = {kind: np.argwhere(test(a)).tolist()[:6] for kind, test in
                 (("nan", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf),
                  ("huge", lambda v: np.isfinite(v) & (np.abs(v) > 1e30)))
                 if a.dtype.kind == "f" and test(a).any()}
        parts.append(f"{name}: {a.dtype} {a.shape} specials {where}")
    return "\n  ".join(parts)


EXACT = ("max_pool", "adaptive_max_pool", "max_unpool")  # docs/api.md §1.7: exact


def _is_huge(a):
    return np.isfinite(a) & (np.abs(a) > HUGE / 2)


def _taps(func, kwargs, arrays):
    """Products (or window taps) that make up one output element, at most."""
    x = arrays["x"]
    if "weight" in arrays:
        w = arrays["weight"]
        transposed = func.startswith("conv_transpose")
        per = w.shape[0] // kwargs.get("groups", 1) if transposed else w.shape[1]
        return per * int(np.prod(w.shape[2:]))
    if "kernel_size" in kwargs:
        return int(np.prod(_tuple(kwargs["kernel_size"], x.ndim - 2)))
    return int(np.prod(x.shape[-int(func[-2]):]))  # adaptive: at most the whole plane


def _mismatch(y, ref, scale, dtype, backend, global_scale=None, exact=False):
    """Why ``y`` is not the oracle's ``ref`` (float values), or None when it is.

    ``scale`` is the oracle on the operands' absolute values: where the sum cancels
    (``||ref|| < 0.1 ||scale||`` over the finite entries, as in tests/test_conformance.py)
    the error is measured against it, the scale float rounding errors are bounded by.
    ``global_scale`` (transform backends, with huge values present) bounds the largest
    error instead: a transform mixes every element of a tile, so its rounding error
    follows the largest magnitudes of the operands, not those of each output's own terms.
    """
    if y.shape != ref.shape:
        return f"shape {y.shape}, expected {ref.shape}"
    if y.dtype != dtype:
        return f"dtype {y.dtype}, expected {np.dtype(dtype)}"
    y64 = np.asarray(y, np.float64)
    with np.errstate(over="ignore"):
        cast = ref.astype(dtype)
    # Where the float64 reference overflows the dtype no pattern is asserted; the huge
    # values are placed so that this does not happen in a direct sum.
    free = np.isfinite(ref) & ~np.isfinite(cast)
    for name, test in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        got, want = test(y64) & ~free, test(ref) & ~free
        if not np.array_equal(got, want):
            bad = np.argwhere(got != want)
            i = tuple(int(v) for v in bad[0])
            return (f"{name} pattern differs at {len(bad)} of {y.size} entries, first at "
                    f"{list(i)}: got {y64[i]!r}, oracle {ref[i]!r}")
    finite = np.isfinite(cast)
    if not np.isfinite(y64[finite]).all():
        i = tuple(int(v) for v in np.argwhere(finite & ~np.isfinite(y64))[0])
        return (f"non-finite {y64[i]!r} at {list(i)} where the oracle's "
                f"{np.dtype(dtype).name} result is {cast[i]!r}")
    if exact:
        if not np.array_equal(y64[finite], cast[finite]):
            i = tuple(int(v) for v in np.argwhere(finite & (y64 != cast))[0])
            return f"not exact: got {y64[i]!r} at {list(i)}, oracle {cast[i]!r}"
        return None
    rtol = tolerance(backend, dtype)
    diff = y64[finite] - ref[finite]
    if global_scale is not None:
        worst = float(np.abs(diff).max(initial=0.0))
        if not worst <= rtol * global_scale:
            return (f"largest error {worst:.3e} above {rtol:g} x {global_scale:.3e} (the "
                    f"largest operand magnitudes times the taps per output)")
        return None
    err = relative_error(y64, np.where(finite, ref, np.nan))
    norm = float(np.linalg.norm(ref[finite]))
    bound = float(np.linalg.norm(scale[finite]))
    if norm < 0.1 * bound:
        err = float(np.linalg.norm(diff)) / bound
        if not err < rtol:
            return (f"error {err:.3e} relative to the scale of the terms (the sum cancels) "
                    f"above {rtol:g}")
        return None
    if not err < rtol:
        return f"relative error {err:.3e} over the finite entries, above {rtol:g}"
    return None


def _must_run(backend, func, kwargs, arrays):
    """Whether ``backend`` claims this call (docs/api.md §5.1 and §5.4), so may not decline."""
    if backend in COMPLETE:
        return True
    nd = int(func[-2])
    ones = all(v == 1 for key in ("stride", "dilation") for v in _tuple(kwargs.get(key) or 1, nd))
    if func.startswith("conv"):       # im2col and fft: own kernels; winograd: stride 1, dilation 1
        return backend in ("im2col", "fft") or (
            backend == "winograd" and not func.startswith("conv_transpose") and ones)
    if func.startswith("avg_pool"):   # always lowered to a depthwise convolution
        return backend in ("im2col", "fft")
    if func.startswith("adaptive_avg_pool"):   # through avg_pool where the windows are fixed
        out = kwargs["output_size"]
        spatial = arrays["x"].shape[-nd:]
        sizes = [L if o is None else o for o, L in zip(_tuple(out, nd) if out is not None
                                                        else spatial, spatial)]
        return backend in ("im2col", "fft") and all(L % o == 0 for L, o in zip(spatial, sizes))
    return False


def _check(backend, func, kwargs, arrays):
    """Run one case on ``backend``: True if it ran and matched, False if it declined."""
    snapshot = {k: v.copy() for k, v in arrays.items()}
    try:
        got = _call(func, kwargs, arrays, backend)
    except cb.UnsupportedError as e:
        assert not _must_run(backend, func, kwargs, arrays), (
            f"{backend!r} declined: {e}\n  {_describe(func, kwargs, arrays)}")
        return False
    for k, v in arrays.items():
        assert np.array_equal(v, snapshot[k], equal_nan=True), f"{backend!r} modified {k}"
    ref = _oracle(func, kwargs, arrays)
    dtype = arrays["x"].dtype
    if isinstance(ref, tuple):
        assert isinstance(got, tuple) and len(got) == 2, type(got)
        (y, idx), (ref, ref_idx) = got, ref
        assert idx.dtype == np.int64 and idx.shape == ref_idx.shape, (idx.dtype, idx.shape)
        if not np.array_equal(idx, ref_idx):
            i = tuple(int(v) for v in np.argwhere(idx != ref_idx)[0])
            raise AssertionError(f"backend {backend!r}: indices differ at {list(i)}: got "
                                 f"{idx[i]}, oracle {ref_idx[i]} (values {np.asarray(y)[i]!r}, "
                                 f"oracle {ref[i]!r})\n  {_describe(func, kwargs, arrays)}")
    else:
        y = got
    exact = func.startswith(EXACT)
    scale = global_scale = None
    if not exact:
        absolute = {k: (np.abs(v) if k != "indices" else v) for k, v in arrays.items()}
        scale = _oracle(func, kwargs, absolute)
        floats = [v for k, v in arrays.items() if k in ("x", "weight")]
        if backend in TRANSFORM_BACKENDS and any(_is_huge(v).any() for v in arrays.values()):
            largest = [float(np.abs(np.where(np.isfinite(v), v, 0)).max()) for v in floats]
            global_scale = float(np.prod(largest)) * _taps(func, kwargs, arrays)
            if arrays.get("bias") is not None:
                b = arrays["bias"]
                global_scale += float(np.abs(np.where(np.isfinite(b), b, 0)).max())
    why = _mismatch(np.asarray(y), ref, scale, dtype, backend, global_scale, exact)
    assert why is None, f"backend {backend!r}: {why}\n  {_describe(func, kwargs, arrays)}"
    return True


def _run_family(family, backend):
    ran = []

    @settings(max_examples=CUDA_EXAMPLES if backend == "cuda" else EXAMPLES, **SETTINGS)
    @given(case=FAMILIES[family])
    def run(case):
        if _check(backend, *case):
            ran.append(case[0])

    run()
    if not ran:
        pytest.skip(f"backend {backend!r} declined every drawn {family} case")


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv(backend):
    _run_family("conv", backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_transpose(backend):
    _run_family("conv_transpose", backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pool(backend):
    _run_family("max_pool", backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_avg_pool(backend):
    _run_family("avg_pool", backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_adaptive_pool(backend):
    _run_family("adaptive_pool", backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_unpool(backend):
    _run_family("max_unpool", backend)


# --------------------------------------------------------------------------- fixed cases
# The semantics above, one case each, readable when they fail.


def _inf_weight_in_padding(dtype):
    x = np.ones((1, 1, 4, 4), dtype)
    w = np.ones((1, 1, 3, 3), dtype)
    w[0, 0, 0, 0] = np.inf  # meets the padded zeros at the top and left edges: NaN there
    return "conv2d", {"padding": 1}, {"x": x, "weight": w}


def _inf_input_with_zero_tap(dtype):
    x = np.ones((1, 1, 5, 5), dtype)
    x[0, 0, 2, 2] = np.inf
    w = np.ones((1, 1, 3, 3), dtype)
    w[0, 0, 1, 1] = 0.0  # the one window centred on the Inf gives 0 * Inf = NaN
    return "conv2d", {}, {"x": x, "weight": w}


def _opposite_infs(dtype):
    x = np.zeros((1, 1, 6), dtype)
    x[0, 0, 2], x[0, 0, 3] = np.inf, -np.inf  # windows holding both give NaN
    return "conv1d", {"padding": 1}, {"x": x, "weight": np.ones((1, 1, 3), dtype)}


def _transpose_scatter(dtype):
    x = np.ones((1, 1, 3), dtype)
    x[0, 0, 1] = np.nan
    w = np.ones((1, 1, 2), dtype)
    # stride 3 leaves gaps the NaN never reaches; padding crops the full output's ends
    return "conv_transpose1d", {"stride": 3, "padding": 1}, {"x": x, "weight": w}


def _nan_in_max_window(dtype):
    x = np.arange(16, dtype=dtype).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 3, 3] = -np.inf
    return "max_pool2d", {"kernel_size": 2, "return_indices": True}, {"x": x}


def _huge_input(dtype):
    x = np.full((1, 2, 5, 5), HUGE, dtype)
    w = np.full((3, 2, 3, 3), 0.5, dtype)  # 18 * HUGE / 2 stays finite in float32
    return "conv2d", {"padding": 1}, {"x": x, "weight": w}


FIXED = [_inf_weight_in_padding, _inf_input_with_zero_tap, _opposite_infs,
         _transpose_scatter, _nan_in_max_window, _huge_input]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("make", FIXED, ids=[f.__name__.lstrip("_") for f in FIXED])
def test_fixed_case(make, dtype, backend):
    if not _check(backend, *make(dtype)):
        pytest.skip(f"backend {backend!r} declines this call")


# --------------------------------------------------------------------------- warnings


def _warning_escapes(backend, func, kwargs, arrays):
    """The RuntimeWarning that escapes a call whose result is right, or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            _call(func, kwargs, arrays, backend)
    except cb.UnsupportedError:
        return None
    except RuntimeWarning as w:
        try:  # the right result despite the warning?
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                right = _check(backend, func, kwargs, arrays)
        except AssertionError:
            return None  # a wrong result: the tests above report it
        return w if right else None
    return None


# The simulator's Python arithmetic warns where no GPU does: cuda is left out here.
WARNING_BACKENDS = [None] + [b for b in NAMED if b != "cuda"]


@pytest.mark.parametrize("backend", WARNING_BACKENDS, ids=lambda b: b or "auto")
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("make", FIXED, ids=[f.__name__.lstrip("_") for f in FIXED])
def test_no_runtime_warning_fixed(make, dtype, backend):
    """A call whose result is right raises no RuntimeWarning (invalid value, overflow)."""
    case = make(dtype)
    w = _warning_escapes(backend, *case)
    assert w is None, (f"backend {backend!r} gives the right result but a RuntimeWarning "
                       f"escapes: {w}\n  {_describe(*case)}")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_no_runtime_warning_escapes(family):
    """As above, on drawn cases, every backend but cuda on each."""
    @settings(max_examples=WARNING_EXAMPLES, **SETTINGS)
    @given(case=FAMILIES[family])
    def run(case):
        escaped = [(b, w) for b in WARNING_BACKENDS
                   if (w := _warning_escapes(b, *case)) is not None]
        assert not escaped, ("the right result but a RuntimeWarning escapes on "
                             + ", ".join(f"{b!r} ({w})" for b, w in escaped)
                             + f"\n  {_describe(*case)}")
    run()


# --------------------------------------------------------------------------- cuda


@pytest.mark.skipif(not HAS_NUMBA_CUDA, reason="numba-cuda is not installed")
@pytest.mark.skipif(SIMULATING, reason="this process runs the simulator: cuda is in BACKENDS")
@pytest.mark.skipif("cuda" in cb.available_backends(),
                    reason="cuda runs on a GPU in this process; run the file with "
                           "NUMBA_ENABLE_CUDASIM=1 to include it")
def test_cuda_simulator_run():
    """This file's cuda cases, in a process that runs Numba's CUDA simulator."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda", __file__],
        cwd=Path(__file__).parents[1], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
