"""Fuzzing every public function: the right answer, or a ``ConvError``, and inputs untouched.

Hypothesis draws a valid call of one public function of ``convbackends`` (convolution,
transposed convolution, max, average, adaptive and global pooling, max unpooling and, where
``cb.grad`` exists, the gradients), then often one change to it. Some changes keep the call
valid (Fortran-ordered, strided or read-only arrays, nested lists, positional arguments,
``input=``, NumPy ints and 1-D arrays as parameters, padding as an array or wider than the
input, a correct ``out=``, the same weight again after an in-place change; the drawn calls
themselves take unbatched input, empty batches, ``None`` in an adaptive size, every padding
form and mode); the others break it in one way (wrong ranks, empty or negative sizes,
mismatched channels, bad groups, strides or dilations of 0, negative, too long or misspelt
padding, a bad ``padding_mode``, a kernel larger than the padded input, wrong dtypes (int,
bool, complex, float16) or mismatched ones, bad ``output_size``, unpooling indices of the
wrong dtype, shape or range, an ``out=`` of the wrong shape, dtype, kind or layout, an
unknown backend).

Each call runs on the default (``backend=None``, "auto") and on every available backend by
name, and must

- for a valid call: return the oracle's answer (``reference/calls.py``, or the gradients of
  ``reference/oracle.py``) within ``tolerance(backend, dtype)`` (max pooling, adaptive max
  pooling, max unpooling and indices exactly), in the input's dtype, as a new array or in
  ``out`` (sharing no memory with an input); where a sum cancels (``||ref|| < 0.1 ||scale||``,
  the scale being the oracle on absolute values) the error is measured against the scale, as
  in tests/test_conformance.py; a named backend may decline a valid call with
  ``UnsupportedError`` naming it and those that can (``naive``, ``numba``, ``cuda`` and the
  default never do);
- for a broken call: raise the ``ConvError`` subclass the change calls for (``ShapeError``,
  ``DTypeError``, ``UnknownBackendError``), whichever backend is named, since arguments are
  validated before a backend is chosen (docs/api.md §4.2);
- never raise anything else, and leave every input array as it was: values, dtype, shape,
  strides and flags.

Values are finite here; tests/test_nonfinite.py covers NaN and infinities.
"""

import copy
import inspect
import os
import re
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

import convbackends as cb
from convbackends.tools.measure import relative_error, tolerance
from reference import oracle
from reference.calls import run_oracle

SIMULATING = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
# The default first, then every available backend by name (cuda only on a GPU: the simulator
# is too slow for a fuzzer; tests/test_cuda_backend.py holds it to the oracle).
NAMED = [n for n in cb.available_backends() if n != "auto" and (n != "cuda" or not SIMULATING)]
BACKENDS = [None] + NAMED
COMPLETE = (None, "naive", "numba", "cuda")   # never decline a valid call

HAS_GRAD = hasattr(cb, "grad")
EXAMPLES = {"conv": 60, "conv_transpose": 45, "max_pool": 35, "avg_pool": 35,
            "adaptive": 30, "max_unpool": 30, "global": 15, "grad": 50}
SETTINGS = dict(deadline=None, database=None,
                phases=[Phase.explicit, Phase.generate, Phase.target, Phase.shrink],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])

FLOATS = (np.float32, np.float64)
BAD_DTYPES = (np.int32, np.int64, np.bool_, np.complex64, np.complex128, np.float16)


# --------------------------------------------------------------------------- the case


@dataclass
class Case:
    """One call: ``getattr(cb, func)(*operands, **params)``, what it must give or raise."""

    func: str                      # "conv2d", or "grad.conv2d_input"
    operands: list                 # [name, value] pairs, passed positionally
    params: dict
    dtype: object                  # the result's dtype (valid calls)
    ref: object = None             # () -> (float64 reference, scale), valid calls only
    expect: type = None            # None: valid; else the ConvError subclass it must raise
    change: str = "none"
    exact: bool = False
    out_shape: tuple = None        # the (values') result shape; None: the reference's
    backend: object = "each"       # "each": every backend in turn, else this one only
    input_keyword: bool = False    # pass the first operand as input=
    make_out: str = None           # the out= to pass: None, "ok" or what is wrong with it
    oracle: tuple = None           # (oracle function, params) of a forward call
    reuse: bool = False            # call again after changing the weight in place

    def __repr__(self):
        args = [_show(v) for _, v in self.operands]
        args += [f"{k}={_show(v)}" for k, v in self.params.items()]
        verdict = "valid" if self.expect is None else f"must raise {self.expect.__name__}"
        return f"<{self.change}: cb.{self.func}({', '.join(args)}) -- {verdict}>"


def _show(v):
    if isinstance(v, np.ndarray):
        layout = ("C" if v.flags.c_contiguous else "F" if v.flags.f_contiguous
                  else f"strides={v.strides}")
        ro = "" if v.flags.writeable else ", read-only"
        if v.size <= 48:
            return f"np.array({v.tolist()!r}, dtype=np.{v.dtype.name}) [{layout}{ro}]"
        return f"<array {v.dtype.name} {v.shape} {layout}{ro}>"
    if isinstance(v, list) and np.asarray(v).size > 48:
        return f"<nested list {np.shape(v)}>"
    return repr(v)


def _rng(draw):
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1)))


def _normal(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _tuple(v, nd):
    if isinstance(v, np.ndarray):
        v = v.tolist()
    return tuple(v) if isinstance(v, (list, tuple)) else (int(v),) * nd


def _pairs(padding, nd):
    if isinstance(padding, (int, np.integer)):
        return [(int(padding), int(padding))] * nd
    return [tuple(p) if isinstance(p, (list, tuple)) else (p, p) for p in padding]


def _padding(draw, nd, top, strings=("valid",)):
    """int, per-dim ints, (before, after) pairs, mixed, or one of ``strings``."""
    form = draw(st.sampled_from(("int", "ints", "pairs", "mixed", "string")))
    if form == "string" and strings:
        return draw(st.sampled_from(strings))
    if form == "int":
        return draw(st.integers(0, top))
    if form == "ints":
        return tuple(draw(st.integers(0, top)) for _ in range(nd))
    if form == "mixed":
        return tuple(draw(st.integers(0, top)) if draw(st.booleans())
                     else (draw(st.integers(0, top)), draw(st.integers(0, top))) for _ in range(nd))
    return [(draw(st.integers(0, top)), draw(st.integers(0, top))) for _ in range(nd)]


def _per_dim(draw, nd, values):
    if draw(st.booleans()):
        return draw(st.sampled_from(values))
    return tuple(draw(st.sampled_from(values)) for _ in range(nd))


def _lead(draw, channels):
    """``(N, C)``, unbatched ``(C,)``, or an empty batch ``(0, C)``."""
    k = draw(st.integers(0, 9))
    if k == 0:
        return (0, channels)
    if k < 3:
        return (channels,)
    return (draw(st.integers(1, 2)), channels)


def _spatial(draw, nd, lo=1):
    return tuple(draw(st.integers(lo, 6 if nd < 3 else 4)) for _ in range(nd))


def _quiet_oracle(fn):
    with np.errstate(all="ignore"):
        return fn()


def _forward_ref(oracle_func, params, arrays):
    """The oracle through run_oracle, and the scale (the oracle on absolute values)."""
    params, arrays = copy.deepcopy(params), dict(arrays)   # changes edit the case's own

    x = arrays["x"]
    if x.ndim == int(oracle_func[-2]) + 2 and x.shape[0] == 0:
        # An empty batch: the oracle on one sample of zeros gives the shapes; keep none of it.
        one = {k: np.zeros((1,) + v.shape[1:], v.dtype) if k in ("x", "indices")
               else v for k, v in arrays.items()}
        inner = _forward_ref(oracle_func, params, one)

        def empty():
            y, scale = inner()
            cut = (lambda a: tuple(e[:0] for e in a)) if isinstance(y, tuple) else (lambda a: a[:0])
            return cut(y), cut(scale)
        return empty

    def ref():
        y = _quiet_oracle(lambda: run_oracle(oracle_func, params, arrays))
        absolute = {k: np.abs(v) if k != "indices" and v is not None else v
                    for k, v in arrays.items()}
        scale = _quiet_oracle(lambda: run_oracle(oracle_func, params, absolute))
        return y, scale
    return ref


# --------------------------------------------------------------------------- valid calls


def _same_pairs(kernel, dilation):
    return [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(kernel, dilation)]


@st.composite
def conv_calls(draw):
    func = draw(st.sampled_from(("conv", "conv1d", "conv2d", "conv3d")))
    nd = draw(st.integers(1, 3)) if func == "conv" else int(func[-2])
    dtype = draw(st.sampled_from(FLOATS))
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    dilation = _per_dim(draw, nd, (1, 1, 2))
    spatial = _spatial(draw, nd)
    strided = draw(st.booleans())
    stride = _per_dim(draw, nd, (1, 2, 3)) if strided else 1
    padding = _padding(draw, nd, 2, ("valid",) if strided else ("valid", "same"))
    d = _tuple(dilation, nd)
    pairs = (_same_pairs(kernel, d) if padding == "same"
             else [(0, 0)] * nd if padding == "valid" else _pairs(padding, nd))
    assume(all(L + b + a >= dd * (k - 1) + 1
               for L, (b, a), dd, k in zip(spatial, pairs, d, kernel)))
    modes = ["zeros"] * 3 + ["replicate"]
    if all(max(p) < L for p, L in zip(pairs, spatial)):
        modes.append("reflect")
    if all(max(p) <= L for p, L in zip(pairs, spatial)):
        modes.append("circular")
    padding_mode = draw(st.sampled_from(modes))
    rng = _rng(draw)
    x = _normal(rng, _lead(draw, c_in) + spatial, dtype)
    w = _normal(rng, (c_out, c_in // groups) + kernel, dtype)
    b = _normal(rng, (c_out,), dtype) if draw(st.booleans()) else None
    params = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    if padding_mode != "zeros" or draw(st.booleans()):
        params["padding_mode"] = padding_mode
    arrays = {"x": x, "weight": w, "bias": b}
    return "conv", nd, Case(func, [["x", x], ["weight", w], ["bias", b]], params, np.dtype(dtype),
                            _forward_ref(f"conv{nd}d", params, arrays),
                            oracle=(f"conv{nd}d", copy.deepcopy(params)))


@st.composite
def conv_transpose_calls(draw):
    func = draw(st.sampled_from(("conv_transpose", "conv_transpose1d", "conv_transpose2d",
                                 "conv_transpose3d")))
    nd = draw(st.integers(1, 3)) if func == "conv_transpose" else int(func[-2])
    dtype = draw(st.sampled_from(FLOATS))
    groups = draw(st.integers(1, 2))
    c_in, cout_g = groups * draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    stride = _per_dim(draw, nd, (1, 2, 3))
    dilation = _per_dim(draw, nd, (1, 1, 2))
    s, d = _tuple(stride, nd), _tuple(dilation, nd)
    output_padding = tuple(draw(st.integers(0, max(a, b) - 1)) for a, b in zip(s, d))
    if draw(st.booleans()) and len(set(output_padding)) == 1:
        output_padding = output_padding[0]
    spatial = _spatial(draw, nd)
    padding = _padding(draw, nd, 2)
    pairs = [(0, 0)] * nd if padding == "valid" else _pairs(padding, nd)
    op = _tuple(output_padding, nd)
    full = [(L - 1) * ss + dd * (k - 1) + 1 + p
            for L, ss, dd, k, p in zip(spatial, s, d, kernel, op)]
    assume(all(f - b - a >= 1 for f, (b, a) in zip(full, pairs)))
    rng = _rng(draw)
    x = _normal(rng, _lead(draw, c_in) + spatial, dtype)
    w = _normal(rng, (c_in, cout_g) + kernel, dtype)
    b = _normal(rng, (cout_g * groups,), dtype) if draw(st.booleans()) else None
    params = {"stride": stride, "padding": padding, "output_padding": output_padding,
              "groups": groups, "dilation": dilation}
    arrays = {"x": x, "weight": w, "bias": b}
    oracle_params = dict(params, padding=pairs)
    return "conv_transpose", nd, Case(func, [["x", x], ["weight", w], ["bias", b]], params,
                                      np.dtype(dtype),
                                      _forward_ref(f"conv_transpose{nd}d", oracle_params, arrays),
                                      oracle=(f"conv_transpose{nd}d", oracle_params))


def _pool_out(L, k, s, b, a, d, ceil_mode):
    span = L + b + a - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    return out - 1 if (out - 1) * s >= L + b else out


def _pool_pairs(padding, spatial, kernel, stride, dilation):
    nd = len(spatial)
    if padding == "valid":
        return [(0, 0)] * nd
    if padding == "same":
        pairs = []
        for L, k, s, d in zip(spatial, kernel, stride, dilation):
            total = max((-(-L // s) - 1) * s + d * (k - 1) + 1 - L, 0)
            pairs.append((total // 2, total - total // 2))
        return pairs
    return _pairs(padding, nd)


def _pool_valid(spatial, params):
    nd = len(spatial)
    kernel = _tuple(params["kernel_size"], nd)
    stride = kernel if params.get("stride") is None else _tuple(params["stride"], nd)
    dilation = _tuple(params.get("dilation", 1), nd)
    pairs = _pool_pairs(params.get("padding", 0), spatial, kernel, stride, dilation)
    return all(_pool_out(L, k, s, b, a, d, params.get("ceil_mode", False)) >= 1
               for L, k, s, (b, a), d in zip(spatial, kernel, stride, pairs, dilation))


@st.composite
def pool_calls(draw, kind):
    nd = draw(st.integers(1, 3))
    func = f"{kind}_pool{nd}d"
    dtype = draw(st.sampled_from(FLOATS))
    spatial = _spatial(draw, nd)
    kernel = _per_dim(draw, nd, (1, 2, 3))
    stride = draw(st.one_of(st.none(), st.sampled_from((1, 2)),
                            st.just(tuple(draw(st.integers(1, 3)) for _ in range(nd)))))
    params = {"kernel_size": kernel, "stride": stride,
              "padding": _padding(draw, nd, 2, ("valid", "same")),
              "dilation": _per_dim(draw, nd, (1, 1, 2)), "ceil_mode": draw(st.booleans())}
    if kind == "max":
        params["return_indices"] = draw(st.booleans())
    else:
        params["count_include_pad"] = draw(st.booleans())
        if nd > 1 and draw(st.booleans()):
            params["divisor_override"] = draw(st.sampled_from((1, 2, 5, -3)))
    assume(_pool_valid(spatial, params))
    rng = _rng(draw)
    x = _normal(rng, _lead(draw, draw(st.integers(1, 3))) + spatial, dtype)
    oracle_params = {k: v for k, v in params.items() if k != "stride" or v is not None}
    return f"{kind}_pool", nd, Case(func, [["x", x]], params, np.dtype(dtype),
                                    _forward_ref(func, oracle_params, {"x": x}),
                                    exact=kind == "max", oracle=(func, oracle_params))


@st.composite
def adaptive_calls(draw):
    nd = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(("avg", "max")))
    func = f"adaptive_{kind}_pool{nd}d"
    dtype = draw(st.sampled_from(FLOATS))
    spatial = _spatial(draw, nd)
    if draw(st.booleans()):
        output_size = draw(st.integers(1, max(spatial) + 2))
    else:
        output_size = tuple(draw(st.one_of(st.none(), st.integers(1, L + 2))) for L in spatial)
        if draw(st.booleans()):
            output_size = list(output_size)
    params = {"output_size": output_size}
    if kind == "max" and draw(st.booleans()):
        params["return_indices"] = draw(st.booleans())
    rng = _rng(draw)
    x = _normal(rng, _lead(draw, draw(st.integers(1, 3))) + spatial, dtype)
    oracle_params = dict(params, output_size=tuple(output_size) if isinstance(output_size, list)
                         else output_size)
    return "adaptive", nd, Case(func, [["x", x]], params, np.dtype(dtype),
                                _forward_ref(func, oracle_params, {"x": x}), exact=kind == "max")


def _unpool_default(spatial, kernel, stride, pairs):
    return [(L - 1) * s - b - a + k for L, k, s, (b, a) in zip(spatial, kernel, stride, pairs)]


@st.composite
def max_unpool_calls(draw):
    nd = draw(st.integers(1, 3))
    func = f"max_unpool{nd}d"
    dtype = draw(st.sampled_from(FLOATS))
    spatial = _spatial(draw, nd)
    kernel = _per_dim(draw, nd, (1, 2, 3))
    stride = draw(st.one_of(st.none(), st.sampled_from((1, 2)),
                            st.just(tuple(draw(st.integers(1, 3)) for _ in range(nd)))))
    padding = _padding(draw, nd, 1, ())
    k = _tuple(kernel, nd)
    s = k if stride is None else _tuple(stride, nd)
    pairs = _pairs(padding, nd)
    default = _unpool_default(spatial, k, s, pairs)
    assume(all(v >= 1 for v in default))
    output_size = None
    if draw(st.booleans()):
        output_size = [draw(st.integers(max(1, v - ss + 1), v + ss - 1))
                       for v, ss in zip(default, s)]
    sizes = output_size or default
    rng = _rng(draw)
    lead = _lead(draw, draw(st.integers(1, 3)))
    if output_size is not None and draw(st.booleans()):
        output_size = [1, 1] + output_size    # N and C first: only the last nd count
    x = _normal(rng, lead + spatial, dtype)
    indices = rng.integers(0, int(np.prod(sizes)), size=x.shape, dtype=np.int64)
    params = {"kernel_size": kernel, "stride": stride, "padding": padding,
              "output_size": output_size}
    oracle_params = {"kernel_size": kernel, "stride": stride, "padding": pairs,
                     "output_size": output_size}
    return "max_unpool", nd, Case(func, [["x", x], ["indices", indices]], params,
                                  np.dtype(dtype),
                                  _forward_ref(func, oracle_params, {"x": x, "indices": indices}),
                                  exact=True)


@st.composite
def global_calls(draw):
    nd = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(FLOATS))
    rng = _rng(draw)
    x = _normal(rng, (draw(st.integers(0, 2)), draw(st.integers(1, 3))) + _spatial(draw, nd), dtype)
    return "global", nd, Case("global_avg_pool", [["x", x]], {}, np.dtype(dtype),
                              _forward_ref(f"adaptive_avg_pool{nd}d", {"output_size": 1}, {"x": x}))


# --------------------------------------------------------------------------- gradients


def _pad_adjoint(g, shape, pairs, mode):
    """The adjoint of ``np.pad(x, pairs, mode)`` (x of ``shape``) applied to ``g``."""
    size = int(np.prod(shape))
    basis = np.eye(size).reshape((size,) + tuple(shape))
    padded = np.pad(basis, [(0, 0), (0, 0), (0, 0)] + [tuple(p) for p in pairs], mode=mode)
    return (padded.reshape(size, -1) @ g.reshape(-1)).reshape(shape)


NP_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@st.composite
def grad_calls(draw):
    which = draw(st.sampled_from(("conv_input", "conv_weight", "conv_transpose_input",
                                  "conv_transpose_weight", "max_pool_input", "avg_pool_input")))
    nd = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from(FLOATS))
    rng = _rng(draw)
    spatial = _spatial(draw, nd)
    batch = draw(st.integers(1, 2))
    if which.startswith("conv"):
        groups = draw(st.integers(1, 2))
        c_in = groups * draw(st.integers(1, 2))
        kernel = tuple(draw(st.integers(1, 3)) for _ in range(nd))
        stride = _per_dim(draw, nd, (1, 2))
        dilation = _per_dim(draw, nd, (1, 1, 2))
        s, d = _tuple(stride, nd), _tuple(dilation, nd)
        padding = _padding(draw, nd, 2, ())
        pairs = _pairs(padding, nd)
        x_shape = (batch, c_in) + spatial
        params = {"stride": stride, "padding": padding}
        if which.startswith("conv_transpose"):
            cout_g = draw(st.integers(1, 2))
            w_shape = (c_in, cout_g) + kernel
            op = tuple(draw(st.integers(0, max(a, b) - 1)) for a, b in zip(s, d))
            full = [(L - 1) * ss + dd * (k - 1) + 1 + p
                    for L, ss, dd, k, p in zip(spatial, s, d, kernel, op)]
            assume(all(f - b - a >= 1 for f, (b, a) in zip(full, pairs)))
            out_spatial = tuple(f - b - a for f, (b, a) in zip(full, pairs))
            gy_shape = (batch, cout_g * groups) + out_spatial
            params.update(output_padding=op, groups=groups, dilation=dilation)
            okw = dict(stride=s, padding=pairs, output_padding=op, groups=groups, dilation=d)
            mode = "zeros"
        else:
            c_out = groups * draw(st.integers(1, 2))
            w_shape = (c_out, c_in // groups) + kernel
            assume(all(L + b + a >= dd * (k - 1) + 1
                       for L, (b, a), dd, k in zip(spatial, pairs, d, kernel)))
            out_spatial = tuple((L + b + a - dd * (k - 1) - 1) // ss + 1
                                for L, (b, a), dd, k, ss in zip(spatial, pairs, d, kernel, s))
            gy_shape = (batch, c_out) + out_spatial
            params.update(dilation=dilation, groups=groups)
            modes = ["zeros", "zeros", "replicate"]
            if all(max(p) < L for p, L in zip(pairs, spatial)):
                modes.append("reflect")
            if all(max(p) <= L for p, L in zip(pairs, spatial)):
                modes.append("circular")
            mode = draw(st.sampled_from(modes))
            if mode != "zeros":
                params["padding_mode"] = mode
            okw = dict(stride=s, padding=pairs, dilation=d, groups=groups)
        x, w, gy = (_normal(rng, x_shape, dtype), _normal(rng, w_shape, dtype),
                    _normal(rng, gy_shape, dtype))
        if which.endswith("input"):
            operands = [["input_size", x_shape], ["weight", w], ["grad_output", gy]]
            out_shape = x_shape
        else:
            operands = [["input", x], ["weight_size", w_shape], ["grad_output", gy]]
            out_shape = w_shape

        def compute(w, gy, x):
            if which == "conv_input":
                if mode == "zeros":
                    return oracle.conv_input_grad(x_shape, w, gy, **okw)
                padded = x_shape[:2] + tuple(L + b + a for L, (b, a) in zip(spatial, pairs))
                gp = oracle.conv_input_grad(padded, w, gy, **dict(okw, padding=0))
                return _pad_adjoint(gp, x_shape, pairs, NP_MODE[mode])
            if which == "conv_weight":
                if mode == "zeros":
                    return oracle.conv_weight_grad(x, w_shape, gy, **okw)
                xp = np.pad(np.asarray(x, np.float64), [(0, 0), (0, 0)] + list(pairs),
                            mode=NP_MODE[mode])
                return oracle.conv_weight_grad(xp, w_shape, gy, **dict(okw, padding=0))
            if which == "conv_transpose_input":
                return oracle.conv_transpose_input_grad(x_shape, w, gy, **okw)
            return oracle.conv_transpose_weight_grad(x, w_shape, gy, **okw)
    else:
        kernel = _per_dim(draw, nd, (1, 2, 3))
        stride = draw(st.one_of(st.none(), st.sampled_from((1, 2))))
        padding = _padding(draw, nd, 1, ())
        params = {"kernel_size": kernel, "stride": stride, "padding": padding,
                  "ceil_mode": draw(st.booleans())}
        if which == "avg_pool_input":
            params["count_include_pad"] = draw(st.booleans())
            if draw(st.booleans()):
                params["divisor_override"] = draw(st.sampled_from((1, 3)))
        params["dilation"] = _per_dim(draw, nd, (1, 1, 2))
        assume(_pool_valid(spatial, params))
        k = _tuple(kernel, nd)
        s = k if stride is None else _tuple(stride, nd)
        pairs = _pairs(padding, nd)
        out_spatial = tuple(_pool_out(L, kk, ss, b, a, dd, params["ceil_mode"])
                            for L, kk, ss, (b, a), dd
                            in zip(spatial, k, s, pairs, _tuple(params["dilation"], nd)))
        x_shape = (batch, draw(st.integers(1, 2))) + spatial
        x, w = _normal(rng, x_shape, dtype), None
        gy = _normal(rng, x_shape[:2] + out_spatial, dtype)
        okw = {kk: (pairs if kk == "padding" else v) for kk, v in params.items()}
        out_shape = x_shape
        if which == "max_pool_input":
            operands = [["input", x], ["grad_output", gy]]
        else:
            operands = [["input_size", x_shape], ["grad_output", gy]]
        positional = [["kernel_size", params.pop("kernel_size")]]
        operands += positional

        def compute(w, gy, x):
            if which == "max_pool_input":
                return oracle.max_pool_input_grad(x, gy, **okw)
            return oracle.avg_pool_input_grad(x_shape, gy, **okw)

    def ref():
        y = _quiet_oracle(lambda: compute(w, gy, x))
        scale = _quiet_oracle(lambda: compute(None if w is None else np.abs(w), np.abs(gy),
                                              np.abs(x) if which != "max_pool_input" else x))
        return y, np.abs(scale)

    name = re.sub(r"_(input|weight)$", rf"{nd}d_\1", which)     # conv_input -> conv2d_input
    return "grad", nd, Case(f"grad.{name}",
                            operands, params, np.dtype(dtype), ref, out_shape=out_shape)


FAMILIES = {"conv": conv_calls(), "conv_transpose": conv_transpose_calls(),
            "max_pool": pool_calls("max"), "avg_pool": pool_calls("avg"),
            "adaptive": adaptive_calls(), "max_unpool": max_unpool_calls(),
            "global": global_calls(), "grad": grad_calls()}


# --------------------------------------------------------------------------- changes


def _operand(case, name):
    for pair in case.operands:
        if pair[0] == name:
            return pair
    raise KeyError(name)


def _arrays(case):
    return [pair for pair in case.operands if isinstance(pair[1], np.ndarray)]


def _x_name(case):
    return next(n for n, v in case.operands if n in ("x", "input", "grad_output")
                and isinstance(v, np.ndarray))


# Each change: (draw, case, family, nd) -> the ConvError subclass the call must raise now, or
# None when it stays valid; assume(False) when it does not apply to this case.

def ch_fortran(draw, case, family, nd):
    pair = draw(st.sampled_from([p for p in _arrays(case) if p[1].ndim >= 2] or [None]))
    assume(pair is not None)
    pair[1] = np.asfortranarray(pair[1])
    return None


def ch_strided(draw, case, family, nd):
    pair = draw(st.sampled_from(_arrays(case)))
    a = pair[1]
    if draw(st.booleans()) and a.ndim >= 2:
        view = np.ascontiguousarray(a.swapaxes(-1, -2)).swapaxes(-1, -2)
    else:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1] + 1,), a.dtype)
        big[..., 1::2] = a
        view = big[..., 1::2]
    pair[1] = view
    return None


def ch_readonly(draw, case, family, nd):
    pair = draw(st.sampled_from(_arrays(case)))
    pair[1] = pair[1].copy()
    pair[1].setflags(write=False)
    return None


def ch_list(draw, case, family, nd):
    """A nested list: NumPy reads float64 (int64 for indices)."""
    pair = draw(st.sampled_from(_arrays(case)))
    assume(pair[1].size > 0)
    name, a = pair
    pair[1] = a.tolist()
    if name == "indices" or a.dtype == np.float64:
        return None
    floats = [p for p in _arrays(case) if p[1].dtype.kind == "f"]
    if floats:     # another operand stays float32
        return cb.DTypeError
    case.dtype = np.dtype(np.float64)
    return None


def ch_positional(draw, case, family, nd):
    params = list(inspect.signature(_function(case.func)).parameters)
    order = params[len(case.operands):]
    moved = 0
    for name in order:
        if name not in case.params:
            break
        case.operands.append([name, case.params.pop(name)])
        moved += 1
    assume(moved)
    return None


def ch_input_keyword(draw, case, family, nd):
    assume(not case.func.startswith("grad.") and case.operands[0][0] == "x")
    case.input_keyword = True
    return None


def ch_numpy_params(draw, case, family, nd):
    keys = [k for k in ("stride", "dilation", "kernel_size", "groups") if k in case.params
            and case.params[k] is not None]
    assume(keys)
    k = draw(st.sampled_from(keys))
    v = case.params[k]
    if k != "groups" and draw(st.booleans()):
        case.params[k] = np.array(_tuple(v, nd), dtype=np.int64)     # a 1-D array
    elif isinstance(v, tuple):
        case.params[k] = tuple(np.int32(i) for i in v)
    else:
        case.params[k] = np.int64(v)
    return None


def ch_padding_array(draw, case, family, nd):
    pad = case.params.get("padding")
    assume(isinstance(pad, (list, tuple)) and all(isinstance(p, int) for p in pad) or
           isinstance(pad, list) and all(isinstance(p, tuple) for p in pad))
    case.params["padding"] = np.array(pad, dtype=np.int64)
    return None


def ch_weight_reused(draw, case, family, nd):
    """The same weight array again after an in-place change: no stale cached transform."""
    case.reuse = True
    return None


def ch_out_ok(draw, case, family, nd):
    case.make_out = "ok"
    return None


def ch_out_bad(draw, case, family, nd):
    kind = draw(st.sampled_from(("shape", "dtype", "list", "strided", "readonly")))
    case.make_out = kind
    return cb.DTypeError if kind in ("dtype", "list") else cb.ShapeError


def ch_backend_unknown(draw, case, family, nd):
    case.backend = draw(st.sampled_from(("im2cl", "NAIVE", "")))
    return cb.UnknownBackendError


def ch_x_rank(draw, case, family, nd):
    name = _x_name(case)
    pair = _operand(case, name)
    a = pair[1]
    if family == "global":
        pair[1] = (a[(slice(None), slice(None)) + (0,) * nd] if draw(st.booleans())
                   else a[None, None, None])
        return cb.ShapeError
    if family == "grad":
        pair[1] = a[None]        # one dim too many
        return cb.ShapeError
    if draw(st.booleans()):
        assume(a.ndim >= 2 and a.shape[0] > 0)
        pair[1] = a[(0,) * (a.ndim - nd)]              # spatial dims only
        if family == "max_unpool":
            idx = _operand(case, "indices")
            idx[1] = idx[1][(0,) * (a.ndim - nd)]
    else:
        pair[1] = a[None, None] if a.ndim == nd + 1 else a[None]
        if family == "max_unpool":
            idx = _operand(case, "indices")
            idx[1] = idx[1][None, None] if a.ndim == nd + 1 else idx[1][None]
    return cb.ShapeError


def ch_zero_size(draw, case, family, nd):
    name = _x_name(case)
    pair = _operand(case, name)
    a = pair[1]
    if family in ("grad",):
        assume(False)
    if family == "global":
        axis = draw(st.integers(1, a.ndim - 1))
    else:
        axis = draw(st.integers(a.ndim - nd - (1 if a.ndim == nd + 2 else 1), a.ndim - 1))
    shape = list(a.shape)
    shape[axis] = 0
    pair[1] = np.zeros(shape, a.dtype)
    if family == "max_unpool":
        _operand(case, "indices")[1] = np.zeros(shape, np.int64)
    return cb.ShapeError


def ch_weight_zero(draw, case, family, nd):
    assume(family in ("conv", "conv_transpose"))
    w = _operand(case, "weight")
    shape = list(w[1].shape)
    shape[draw(st.sampled_from([0] + list(range(2, len(shape)))))] = 0
    w[1] = np.zeros(shape, w[1].dtype)
    return cb.ShapeError


def ch_bad_dtype(draw, case, family, nd):
    pair = draw(st.sampled_from([p for p in _arrays(case) if p[0] != "indices"]))
    dt = draw(st.sampled_from(BAD_DTYPES))
    pair[1] = pair[1].astype(dt)
    return cb.DTypeError


def ch_mixed_dtype(draw, case, family, nd):
    floats = [p for p in _arrays(case) if p[1].dtype.kind == "f"]
    assume(len(floats) >= 2)
    pair = draw(st.sampled_from(floats))
    other = np.float64 if pair[1].dtype == np.float32 else np.float32
    pair[1] = pair[1].astype(other)
    return cb.DTypeError


def _conv_like(family):
    return family in ("conv", "conv_transpose")


def ch_channels(draw, case, family, nd):
    assume(_conv_like(family))
    x = _operand(case, "x")
    a = x[1]
    axis = a.ndim - nd - 1
    shape = list(a.shape)
    shape[axis] += 1
    x[1] = np.ones(shape, a.dtype)
    return cb.ShapeError


def ch_bias(draw, case, family, nd):
    assume(_conv_like(family))
    pair = _operand(case, "bias")
    w = _operand(case, "weight")[1]
    dtype = w.dtype
    pair[1] = draw(st.sampled_from((np.ones((3, 7), dtype), np.ones(13, dtype),
                                    np.ones((), dtype))))
    return cb.ShapeError


def ch_weight_rank(draw, case, family, nd):
    assume(_conv_like(family))
    w = _operand(case, "weight")
    a = w[1]
    if case.func in ("conv", "conv_transpose"):
        w[1] = (a[(slice(None), slice(None)) + (0,) * nd] if draw(st.booleans())
                else a.reshape(a.shape + (1,) * (6 - a.ndim)))
    else:
        w[1] = a[..., None] if draw(st.booleans()) or nd == 1 else a[..., 0]
    return cb.ShapeError


def ch_groups(draw, case, family, nd):
    assume(_conv_like(family) or case.func.startswith("grad.conv"))
    g = case.params.get("groups", 1)
    new = draw(st.sampled_from((0, -1, g + 1, g * 2 + 1, True, 1.5, "2")))
    if "transpose" in case.func and isinstance(new, int) and not isinstance(new, bool) and new > 0:
        # a transposed convolution's weight is (C_in, C_out // groups, ...): another groups
        # that divides C_in is a different valid call
        c_in = (_operand(case, "weight")[1].shape[0] if any(n == "weight" for n, _ in case.operands)
                else _operand(case, "weight_size")[1][0])
        assume(c_in % new)
    case.params["groups"] = new
    return cb.ShapeError


def ch_stride(draw, case, family, nd):
    assume(family not in ("adaptive", "global"))
    key = draw(st.sampled_from([k for k in ("stride", "dilation") if k in case.params
                                or k == "stride"]))
    bad = draw(st.sampled_from(("zero", "negative", "long", "float", "nested")))
    value = {"zero": 0, "negative": -1, "long": (1,) * (nd + 1), "float": 1.5,
             "nested": ((1, 1),) * nd}[bad]
    if bad == "zero" and nd > 1 and draw(st.booleans()):
        value = (1,) * (nd - 1) + (0,)
    if key == "dilation" and family == "max_unpool":
        assume(False)
    case.params[key] = value
    return cb.ShapeError


def ch_kernel_size(draw, case, family, nd):
    assume(family in ("max_pool", "avg_pool", "max_unpool") or
           (family == "grad" and "pool" in case.func))
    bad = draw(st.sampled_from((0, -2, (2,) * (nd + 1), 2.0, None)))
    if "kernel_size" in case.params:
        case.params["kernel_size"] = bad
    else:
        _operand(case, "kernel_size")[1] = bad
    return cb.ShapeError


def ch_padding(draw, case, family, nd):
    assume(family not in ("adaptive", "global"))
    bad = draw(st.sampled_from(("negative", "long", "triple", "string", "float", "None")))
    value = {"negative": -1, "long": (0,) * (nd + 1), "triple": ((1, 1, 1),) * nd,
             "string": draw(st.sampled_from(("full", "SAME", "causal", ""))), "float": 0.5,
             "None": None}[bad]
    if bad == "negative" and draw(st.booleans()):
        value = [(0, 0)] * (nd - 1) + [(1, -1)]
    case.params["padding"] = value
    return cb.ShapeError


def ch_same_strided(draw, case, family, nd):
    assume(family == "conv")
    case.params["padding"] = "same"
    case.params["stride"] = (1,) * (nd - 1) + (2,)
    return cb.ShapeError


def ch_same_transposed(draw, case, family, nd):
    assume(family == "conv_transpose")
    case.params["padding"] = "same"
    return cb.ShapeError


def ch_huge_crop(draw, case, family, nd):
    """Padding that crops away more than the whole output (unpooling: its default size)."""
    assume(family in ("conv_transpose", "max_unpool"))
    case.params["padding"] = draw(st.sampled_from((10**6, 2**62)))
    if family == "max_unpool":
        case.params["output_size"] = None
    return cb.ShapeError


def ch_wide_padding(draw, case, family, nd):
    """Padding wider than the input (windows wholly in padding); valid, a new reference."""
    assume(nd <= 2 and case.oracle is not None)
    x = _operand(case, "x")[1]
    wide = tuple(L + draw(st.integers(1, 4)) for L in x.shape[-nd:])
    case.params["padding"] = wide if draw(st.booleans()) else [(0, p) for p in wide]
    func, params = case.oracle
    params = dict(params, padding=case.params["padding"])
    if family == "conv":
        case.params["padding_mode"] = params["padding_mode"] = "zeros"
        case.params["stride"] = params["stride"] = 1 if params.get("stride", 1) == 1 else 2
    arrays = {n: v for n, v in case.operands if n in ("x", "weight", "bias")}
    case.ref = _forward_ref(func, params, arrays)
    return None


def ch_output_padding(draw, case, family, nd):
    assume(family == "conv_transpose")
    s = _tuple(case.params.get("stride", 1), nd)
    d = _tuple(case.params.get("dilation", 1), nd)
    if draw(st.booleans()):
        case.params["output_padding"] = tuple(max(a, b) for a, b in zip(s, d))
    else:
        case.params["output_padding"] = -1
    return cb.ShapeError


def ch_padding_mode(draw, case, family, nd):
    assume(family == "conv" or (family == "grad" and "padding_mode" in inspect.signature(
        _function(case.func)).parameters))
    x = next(v for n, v in case.operands if n in ("x", "input", "input_size"))
    spatial = (x.shape if isinstance(x, np.ndarray) else tuple(x))[-nd:]
    kind = draw(st.sampled_from(("unknown", "reflect", "circular")))
    if kind == "unknown":
        case.params["padding_mode"] = draw(st.sampled_from(("mirror", "ZEROS", "constant", None)))
        return cb.ShapeError
    big = [L if kind == "reflect" else L + 1 for L in spatial]
    case.params["padding_mode"] = kind
    case.params["padding"] = [(b, 0) for b in big]
    if family == "conv":
        w = _operand(case, "weight")[1]
        d = _tuple(case.params.get("dilation", 1), nd)
        case.params["stride"] = 1
        assume(all(L + b >= dd * (k - 1) + 1 for L, b, dd, k in zip(spatial, big, d, w.shape[2:])))
    else:
        assume(False)      # a gradient's padding fixes grad_output's shape
    return cb.ShapeError


def ch_kernel_too_big(draw, case, family, nd):
    if family == "conv":
        w = _operand(case, "weight")
        x = _operand(case, "x")[1]
        assume(case.params.get("padding") != "same")
        spatial = x.shape[-nd:]
        pad = case.params.get("padding", 0)
        pairs = [(0, 0)] * nd if pad == "valid" else _pairs(pad, nd)
        d = _tuple(case.params.get("dilation", 1), nd)
        shape = list(w[1].shape)
        need = spatial[0] + sum(pairs[0])           # the dilated kernel exceeds it by one
        shape[2] = need // d[0] + 2
        w[1] = np.ones(shape, w[1].dtype)
        return cb.ShapeError
    if family in ("max_pool", "avg_pool"):
        x = _operand(case, "x")[1]
        spatial = x.shape[-nd:]
        kernel = list(_tuple(case.params["kernel_size"], nd))
        kernel[0] = spatial[0] + 3 + 2 * 2
        case.params["kernel_size"] = tuple(kernel)
        if case.params.get("padding") == "same":
            case.params["padding"] = "valid"
        assume(not _pool_valid(spatial, case.params))   # ceil_mode may keep one window
        return cb.ShapeError
    assume(False)


def ch_divisor(draw, case, family, nd):
    assume(family == "avg_pool" and nd > 1 or (family == "grad" and "avg_pool" in case.func))
    case.params["divisor_override"] = draw(st.sampled_from((0, 0.5, "3")))
    return cb.ShapeError


def ch_output_size(draw, case, family, nd):
    assume(family in ("adaptive", "max_unpool"))
    if family == "adaptive":
        case.params["output_size"] = draw(st.sampled_from(
            (0, -1, (1,) * (nd + 1), (0,) * nd, 1.5, "2")))
        return cb.ShapeError
    x = _operand(case, "x")[1]
    spatial = x.shape[-nd:]
    k = _tuple(case.params["kernel_size"], nd)
    s = k if case.params.get("stride") is None else _tuple(case.params["stride"], nd)
    default = _unpool_default(spatial, k, s, _pairs(case.params.get("padding", 0), nd))
    bad = draw(st.sampled_from(("low", "high", "long")))
    if bad == "long":
        case.params["output_size"] = list(default) + [1]
    else:
        sizes = list(default)
        sizes[-1] = default[-1] - s[-1] if bad == "low" else default[-1] + s[-1]
        case.params["output_size"] = sizes
    return cb.ShapeError


def ch_indices(draw, case, family, nd):
    assume(family == "max_unpool")
    pair = _operand(case, "indices")
    idx = pair[1]
    bad = draw(st.sampled_from(("int32", "float", "bool", "shape", "high", "negative")))
    if bad == "int32":
        pair[1] = idx.astype(np.int32)
        return cb.DTypeError
    if bad == "float":
        pair[1] = idx.astype(np.float64)
        return cb.DTypeError
    if bad == "bool":
        pair[1] = idx.astype(bool)
        return cb.DTypeError
    if bad == "shape":
        pair[1] = np.zeros(idx.shape[:-1] + (idx.shape[-1] + 1,), np.int64)
        return cb.ShapeError
    assume(idx.size > 0)
    idx = idx.copy()
    idx.flat[draw(st.integers(0, idx.size - 1))] = -1 if bad == "negative" else 10**6
    pair[1] = idx
    return cb.ShapeError


def ch_grad_output_shape(draw, case, family, nd):
    assume(family == "grad")
    pair = _operand(case, "grad_output")
    a = pair[1]
    shape = list(a.shape)
    shape[draw(st.integers(1, len(shape) - 1))] += 1
    pair[1] = np.ones(shape, a.dtype)
    return cb.ShapeError


def ch_grad_size(draw, case, family, nd):
    assume(family == "grad")
    pair = next((p for p in case.operands if p[0] in ("input_size", "weight_size")), None)
    assume(pair is not None)
    size = list(pair[1])
    bad = draw(st.sampled_from(("zero", "negative", "long", "channels")))
    if bad in ("zero", "negative"):
        size[-1] = 0 if bad == "zero" else -3
    elif bad == "long":
        size = [1] + size
    else:
        size[1] += 1
    pair[1] = tuple(size)
    return cb.ShapeError


VALID_CHANGES = [ch_fortran, ch_strided, ch_readonly, ch_list, ch_positional, ch_out_ok]
INVALID_CHANGES = [ch_out_bad, ch_backend_unknown, ch_x_rank, ch_bad_dtype]
_CONV = [ch_weight_zero, ch_mixed_dtype, ch_channels, ch_bias, ch_weight_rank, ch_groups,
         ch_stride, ch_padding]
_WINDOW = [ch_stride, ch_kernel_size, ch_padding]
CHANGES = {   # family: (more valid changes, more invalid ones)
    "conv": ([ch_input_keyword, ch_numpy_params, ch_padding_array, ch_weight_reused,
              ch_weight_reused, ch_wide_padding],
             _CONV + [ch_zero_size, ch_same_strided, ch_padding_mode, ch_kernel_too_big]),
    "conv_transpose": ([ch_input_keyword, ch_numpy_params, ch_padding_array, ch_weight_reused],
                       _CONV + [ch_zero_size, ch_same_transposed, ch_huge_crop,
                                ch_output_padding]),
    "max_pool": ([ch_input_keyword, ch_numpy_params, ch_padding_array, ch_wide_padding],
                 _WINDOW + [ch_zero_size, ch_kernel_too_big]),
    "avg_pool": ([ch_input_keyword, ch_numpy_params, ch_wide_padding],
                 _WINDOW + [ch_zero_size, ch_kernel_too_big, ch_divisor]),
    "adaptive": ([ch_input_keyword], [ch_zero_size, ch_output_size]),
    "max_unpool": ([ch_input_keyword, ch_numpy_params],
                   _WINDOW + [ch_zero_size, ch_output_size, ch_indices, ch_huge_crop]),
    "global": ([ch_input_keyword], [ch_zero_size]),
    "grad": ([ch_numpy_params], [ch_mixed_dtype, ch_groups, ch_stride, ch_kernel_size,
                                 ch_padding, ch_padding_mode, ch_divisor,
                                 ch_grad_output_shape, ch_grad_size]),
}


@st.composite
def calls(draw, family):
    _, nd, case = draw(FAMILIES[family])
    kind = draw(st.sampled_from(("as drawn", "valid", "valid", "invalid", "invalid", "invalid")))
    if kind == "as drawn":
        return case
    valid, invalid = CHANGES[family]
    change = draw(st.sampled_from(VALID_CHANGES + valid if kind == "valid"
                                  else INVALID_CHANGES + invalid))
    case.change = change.__name__[3:]
    case.expect = change(draw, case, family, nd)
    return case


# --------------------------------------------------------------------------- running


def _function(func):
    obj = cb
    for part in func.split("."):
        obj = getattr(obj, part)
    return obj


def _make_out(case, shape, dtype):
    kind = case.make_out
    if kind is None:
        return None
    if kind == "ok":
        return np.full(shape, 7.0, dtype)
    if kind == "shape":
        return np.zeros(tuple(shape[:-1]) + (shape[-1] + 1,), dtype)
    if kind == "dtype":
        return np.zeros(shape, np.float32 if np.dtype(dtype) == np.float64 else np.float64)
    if kind == "list":
        return np.zeros(shape, dtype).tolist()
    if kind == "strided":
        return np.zeros(tuple(shape[:-1]) + (2 * shape[-1],), dtype)[..., ::2]
    out = np.zeros(shape, dtype)
    out.setflags(write=False)
    return out


def _snapshot(value):
    if isinstance(value, np.ndarray):
        return ("array", value.copy(), value.dtype, value.shape, value.strides,
                value.flags.c_contiguous, value.flags.f_contiguous, value.flags.writeable,
                value.tobytes())
    return ("other", copy.deepcopy(value))


def _unchanged(value, snap):
    if snap[0] == "other":
        return value == snap[1] if not isinstance(value, np.ndarray) else False
    _, c, dtype, shape, strides, cc, fc, wr, raw = snap
    return (value.dtype == dtype and value.shape == shape and value.strides == strides
            and value.flags.c_contiguous == cc and value.flags.f_contiguous == fc
            and value.flags.writeable == wr and value.tobytes() == raw)


def _compare(y, ref, scale, case, backend):
    """Why ``y`` is not right, or None."""
    if not isinstance(y, np.ndarray):
        return f"returned {type(y).__name__}, not an ndarray"
    if y.shape != ref.shape:
        return f"shape {y.shape}, expected {ref.shape}"
    if y.dtype != case.dtype:
        return f"dtype {y.dtype}, expected {case.dtype}"
    y64 = y.astype(np.float64)
    for name, test in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        if not np.array_equal(test(y64), test(ref)):
            return f"{name} pattern differs: got {y64.ravel()[:8]}, oracle {ref.ravel()[:8]}"
    finite = np.isfinite(ref)
    if case.exact:
        want = ref.astype(case.dtype).astype(np.float64)
        if not np.array_equal(y64[finite], want[finite]):
            i = tuple(int(v) for v in np.argwhere(finite & (y64 != want))[0])
            return f"not exact at {list(i)}: got {y64[i]!r}, oracle {want[i]!r}"
        return None
    rtol = tolerance(backend, case.dtype)
    err = relative_error(y64, ref)
    norm = float(np.linalg.norm(ref[finite]))
    bound = float(np.linalg.norm(scale[finite]))
    if norm < 0.1 * bound:        # the sum cancels: measure against the terms' scale
        err = float(np.linalg.norm(y64[finite] - ref[finite])) / bound
    if not err < rtol:
        return f"relative error {err:.3e} above {rtol:g}"
    return None


def _run_one(case, backend, ref_cache):
    """Call once; return a description of what went wrong, or None."""
    operands = [v for _, v in case.operands]
    kwargs = dict(case.params)
    if case.input_keyword:
        kwargs["input"] = operands.pop(0)
    snaps = [(n, v, _snapshot(v)) for n, v in case.operands]
    out = None
    if case.make_out is not None:
        shape = case.out_shape
        if shape is None:
            ref = ref_cache()[0]
            shape = (ref[0] if isinstance(ref, tuple) else ref).shape
        out = _make_out(case, shape, case.dtype)
        kwargs["out"] = out
        if case.make_out == "strided" and out.flags.c_contiguous:
            # an empty view, or one whose strided dim has length 1, is C-contiguous: valid
            case = copy.copy(case)
            case.expect, case.make_out = None, "ok"
    out_snap = _snapshot(out) if out is not None and case.make_out != "ok" else None
    try:
        got = _function(case.func)(*operands, backend=backend, **kwargs)
        raised = None
    except Exception as e:  # noqa: BLE001 -- the point of the test
        got, raised = None, e
    problems = []
    for name, value, snap in snaps:
        if not _unchanged(value, snap):
            problems.append(f"input {name} was modified")
    if out_snap is not None and not _unchanged(out, out_snap):
        problems.append("a refused out= was written to")
    if raised is not None:
        if not isinstance(raised, cb.ConvError):
            problems.append(f"raised {type(raised).__module__}.{type(raised).__name__}: {raised}")
        elif case.expect is not None:
            if not isinstance(raised, case.expect):
                problems.append(f"raised {type(raised).__name__} ({raised}), expected "
                                f"{case.expect.__name__}")
        elif isinstance(raised, cb.UnsupportedError):
            if backend in COMPLETE:
                problems.append(f"{backend!r} declined a valid call: {raised}")
            elif repr(backend) not in str(raised) or "Backends that can:" not in str(raised):
                problems.append(f"UnsupportedError without the backend's name and those "
                                f"that can: {raised}")
        else:
            problems.append(f"a valid call raised {type(raised).__name__}: {raised}")
        return "; ".join(problems) or None
    if case.expect is not None:
        problems.append(f"returned {_brief(got)} instead of raising {case.expect.__name__}")
        return "; ".join(problems)
    ref, scale = ref_cache()
    if isinstance(ref, tuple):
        if not (isinstance(got, tuple) and len(got) == 2):
            problems.append(f"returned {_brief(got)}, expected (values, indices)")
            return "; ".join(problems)
        y, idx = got
        ref, ref_idx = ref
        scale = scale[0]
        if not (isinstance(idx, np.ndarray) and idx.dtype == np.int64
                and np.array_equal(idx, ref_idx)):
            problems.append(f"indices {_brief(idx)} differ from the oracle's {ref_idx.ravel()[:8]}")
    else:
        y = got
    why = _compare(y, ref, scale, case, backend)
    if why:
        problems.append(why)
    if out is not None and y is not out:
        problems.append("out= was given but another array returned")
    if out is None and isinstance(y, np.ndarray):
        for name, value, _ in snaps:
            if isinstance(value, np.ndarray) and np.shares_memory(y, value):
                problems.append(f"the result shares memory with input {name}")
    return "; ".join(problems) or None


def _brief(v):
    if isinstance(v, np.ndarray):
        return f"array {v.dtype} {v.shape}"
    if isinstance(v, tuple):
        return "(" + ", ".join(_brief(e) for e in v) + ")"
    return type(v).__name__


def _cached(fn):
    box = []

    def get():
        if not box:
            box.append(fn())
        return box[0]
    return get


def _rerun_modified(case, backend):
    """Change the weight in place, call again, and compare with the oracle of the new one."""
    pair = _operand(case, "weight")
    w = pair[1]
    saved = w.copy()
    try:
        w *= -2.0
        w += 0.5
        func, params = case.oracle
        arrays = {n: v for n, v in case.operands if n in ("x", "weight", "bias")}
        again = copy.copy(case)
        again.reuse = False
        return _run_one(again, backend, _cached(_forward_ref(func, params, arrays)))
    finally:
        w[...] = saved


def _fuzz(case):
    ref = _cached(case.ref) if case.ref is not None else None
    backends = BACKENDS if case.backend == "each" else [case.backend]
    failures = []
    for backend in backends:
        why = _run_one(case, backend, ref)
        if why is None and case.reuse:
            why = _rerun_modified(case, backend)
            why = why and f"after the weight changed in place: {why}"
        if why:
            failures.append(f"backend {backend!r}: {why}")
    assert not failures, f"{case!r}\n  " + "\n  ".join(failures)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "grad" or HAS_GRAD])
def test_fuzz(family):
    @settings(max_examples=EXAMPLES[family], **SETTINGS)
    @given(case=calls(family))
    def run(case):
        _fuzz(case)
    run()
