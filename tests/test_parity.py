"""PyTorch parity of the pooling ops: max pooling with indices, adaptive max pooling, max
unpooling and average pooling with ``divisor_override``.

Three layers are held to PyTorch's golden outputs (``reference/golden/cases/parity``, computed
by ``make_golden.py`` ahead of time) and to each other: the float64 oracle, the ``naive``
backend's kernels called on specs built by ``convbackends.spec``, and the public functions.
Max values and indices must be equal exactly (NaN where PyTorch has NaN), unpooling exactly,
averages within 1e-12 relative in float64.
"""

import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import convbackends as cb  # noqa: E402
from convbackends.backends.naive import NaiveBackend  # noqa: E402
from convbackends.errors import ShapeError  # noqa: E402
from convbackends.spec import adaptive_pool_spec, pool_spec, unpool_spec  # noqa: E402
from reference import oracle  # noqa: E402
from reference.calls import run_oracle  # noqa: E402
from reference.golden import CASES_DIR, PARITY_DIR, load_cases  # noqa: E402

PARITY = load_cases(PARITY_DIR)
IDS = [c[0] for c in PARITY]
NAIVE = NaiveBackend()
NEW_OPS = ("max_pool_with_indices", "adaptive_max_pool", "max_unpool")

# PyTorch 2.13.0's messages (torch.nn.functional.max_unpool1d/2d/3d, avg_pool2d/3d), verbatim.
TORCH_BAD_INDEX_1D = "Found an invalid max index: 60 (output volumes are of size 6x1)"
TORCH_BAD_INDEX_2D = "Found an invalid max index: 98 (output volumes are of size 6x6)"
TORCH_BAD_INDEX_3D = "Found an invalid max index: 998 (output volumes are of size 6x6x6)"
TORCH_INDICES_SHAPE_2D = ("Expected shape of indices to be same as that of the input tensor "
                          "([1, 1, 2, 2]) but got indices tensor with shape: [1, 1, 2, 3]")
TORCH_INDICES_SHAPE_3D = ("Expected shape of indices to be same as that of the input tensor "
                          "([1, 1, 2, 2, 2]) but got indices tensor with shape: [1, 1, 2, 2, 3]")
TORCH_OUTPUT_SIZE_LIST = 'invalid output_size "[9, 9]" (dim 0 must be between 2 and 6)'
TORCH_OUTPUT_SIZE_TUPLE = 'invalid output_size "(9, 9)" (dim 0 must be between 2 and 6)'
TORCH_OUTPUT_SIZE_3D = 'invalid output_size "[4, 4, 9]" (dim 2 must be between 2 and 6)'
TORCH_OUTPUT_SIZE_LENGTH = ("output_size should be a sequence containing 2 or 4 elements, but "
                            "it has a length of '1'")
TORCH_ZERO_DIVISOR = "divisor must be not zero"


def nd_of(func):
    return int(func.rstrip("d")[-1])


def is_avg(func):
    return func.startswith("avg_pool")


def returns_indices(func, kwargs):
    return func.startswith(("max_pool", "adaptive_max_pool")) and kwargs.get("return_indices", False)


def assert_exact(y, ref, dtype):
    """Same shape and dtype, equal values; NaN exactly where ``ref`` has NaN."""
    y = np.asarray(y)
    assert y.dtype == dtype, (y.dtype, dtype)
    assert y.shape == ref.shape, (y.shape, ref.shape)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(y, np.asarray(ref).astype(dtype))


def assert_avg(y, ref, dtype):
    y = np.asarray(y)
    assert y.dtype == dtype and y.shape == ref.shape, (y.dtype, y.shape, ref.shape)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    scale = np.abs(ref).max()
    np.testing.assert_allclose(y.astype(np.float64), ref, rtol=rtol, atol=rtol * 1e-2 * scale)


def assert_outputs(func, kwargs, got, expected, dtype):
    """``got``, as the public function returns it, against ``expected = (y, y_indices)``."""
    y, y_indices = expected
    if returns_indices(func, kwargs):
        assert isinstance(got, tuple) and len(got) == 2
        values, indices = got
        assert_exact(values, y, dtype)
        assert_exact(indices, y_indices, np.int64)
    elif is_avg(func):
        assert_avg(got, y, dtype)
    else:
        assert_exact(got, y, dtype)


def golden_outputs(arrays):
    return arrays["y"], arrays.get("y_indices")


def oracle_outputs(func, kwargs, arrays):
    ref = run_oracle(func, kwargs, arrays)
    return ref if isinstance(ref, tuple) else (ref, None)


# --------------------------------------------------------------------------- the naive backend


def naive_call(func, kwargs, arrays):
    """Call the naive backend as the public function would: spec, then the op (batched)."""
    nd = nd_of(func)
    x = arrays["x"]
    unbatched = x.ndim == nd + 1
    xb = x[None] if unbatched else x
    kw = dict(kwargs)
    if func.startswith("max_unpool"):
        indices = arrays["indices"]
        spec, _ = unpool_spec(func, xb.shape, (indices[None] if unbatched else indices).shape, nd,
                              kw["kernel_size"], kw.get("stride"), kw.get("padding", 0),
                              kw.get("output_size"), dtype=x.dtype)
        out = NAIVE.max_unpool(xb, indices[None] if unbatched else indices, spec)
    elif func.startswith("adaptive_max_pool"):
        spec, _ = adaptive_pool_spec(func, xb.shape, nd, kw["output_size"], dtype=x.dtype,
                                     op="adaptive_max_pool")
        out = NAIVE.adaptive_max_pool(xb, spec)
        out = out if kw.get("return_indices", False) else out[0]
    elif func.startswith("adaptive_avg_pool"):
        spec, _ = adaptive_pool_spec(func, xb.shape, nd, kw["output_size"], dtype=x.dtype)
        out = NAIVE.adaptive_avg_pool(xb, spec)
    else:
        avg = is_avg(func)
        with_indices = kw.pop("return_indices", False)
        op = "avg_pool" if avg else "max_pool_with_indices" if with_indices else "max_pool"
        extra = dict(count_include_pad=kw.get("count_include_pad", True),
                     divisor_override=kw.get("divisor_override")) if avg else {}
        spec, _ = pool_spec(func, op, xb.shape, nd, kw["kernel_size"], kw.get("stride"),
                            kw.get("padding", 0), kw.get("dilation", 1), kw.get("ceil_mode", False),
                            dtype=x.dtype, **extra)
        if op == "max_pool":    # naive runs it through max_pool_with_indices (a lowering)
            out = NAIVE.max_pool_with_indices(xb, spec.replace(op="max_pool_with_indices"))[0]
        else:
            assert NAIVE.supports(op, spec) is None
            out = getattr(NAIVE, op)(xb, spec)
    if unbatched:
        out = tuple(a[0] for a in out) if isinstance(out, tuple) else out[0]
    return out


def in_dtype(arrays, dtype):
    """The case's arrays with ``x`` cast (indices untouched)."""
    return {k: (v.astype(dtype) if k == "x" else v) for k, v in arrays.items()}


# --------------------------------------------------------------------------- the cases themselves


def test_parity_cases_present():
    funcs = {}
    for _, func, _, _ in PARITY:
        funcs[func] = funcs.get(func, 0) + 1
    for op in ("max_pool", "adaptive_max_pool", "max_unpool"):
        for n in (1, 2, 3):
            assert funcs.get(f"{op}{n}d", 0) >= 5, (op, n, funcs)
    for n in (2, 3):
        assert any(f == f"avg_pool{n}d" and kw.get("divisor_override") for _, f, kw, _ in PARITY)
    with_indices = [a for _, f, kw, a in PARITY if returns_indices(f, kw)]
    assert len(with_indices) >= 50 and all(a["y_indices"].dtype == np.int64 for a in with_indices)
    assert any(np.isnan(a["y"]).any() for a in with_indices)
    assert any(np.isposinf(a["y"]).any() for a in with_indices)
    assert any((a["y_indices"] == -1).any() for a in with_indices)  # windows wholly in padding
    assert any(a["x"].dtype == np.float32 for a in with_indices)
    # max_unpool cases sending two (different) values to one place of a plane
    repeats = 0
    for _, f, _, a in PARITY:
        if f.startswith("max_unpool"):
            planes = a["indices"].reshape(-1, int(np.prod(a["indices"].shape[-nd_of(f):])))
            repeats += sum(len(np.unique(p)) < p.size for p in planes)
    assert repeats >= 10
    # output_size with N, C leading, and unbatched cases of every op
    assert any(f.startswith("max_unpool") and kw.get("output_size")
               and len(kw["output_size"]) == nd_of(f) + 2 for _, f, kw, _ in PARITY)
    for op in ("max_pool", "adaptive_max_pool", "max_unpool", "avg_pool"):
        assert any(f.startswith(op) and a["x"].ndim == nd_of(f) + 1 for _, f, _, a in PARITY), op
    # the main suite does not see them, and no name is used twice
    main = {name for name, *_ in load_cases(CASES_DIR)}
    assert not main & set(IDS) and len(set(IDS)) == len(IDS)


def test_ties_and_nans_are_really_exercised():
    """The golden indices tell the rules apart from their alternatives: taking the last of
    equal maxima, or the first of several NaNs, would change some of them."""
    last_of_ties = first_nan = 0
    for name, func, kwargs, arrays in PARITY:
        if not returns_indices(func, kwargs):
            continue
        x = arrays["x"].astype(np.float64)
        if "_ties_" in name:  # integers: a later tap a little larger wins ties instead
            later = x + 1e-3 * np.arange(x.size).reshape(x.shape) / x.size
            _, indices = oracle_outputs(func, kwargs, dict(arrays, x=later))
            last_of_ties += int((indices != arrays["y_indices"]).sum())
        if np.isnan(x).any():  # NaNs as +inf (and +inf as 10): the first NaN would win
            first = np.where(np.isnan(x), np.inf, np.where(np.isposinf(x), 10.0, x))
            _, indices = oracle_outputs(func, kwargs, dict(arrays, x=first))
            first_nan += int((indices != arrays["y_indices"]).sum())
    assert last_of_ties > 100 and first_nan > 10, (last_of_ties, first_nan)


@pytest.mark.parametrize("name, func, kwargs, arrays", PARITY, ids=IDS)
def test_oracle_matches_golden(name, func, kwargs, arrays):
    ref = oracle_outputs(func, kwargs, arrays)
    assert ref[0].dtype == np.float64
    y, y_indices = golden_outputs(arrays)
    if is_avg(func):
        assert_avg(ref[0].astype(y.dtype), y.astype(np.float64), y.dtype)
        if y.dtype == np.float64:
            np.testing.assert_allclose(ref[0], y, rtol=1e-12, atol=1e-14 * np.abs(y).max())
    else:
        assert_exact(ref[0].astype(y.dtype), y, y.dtype)
    if returns_indices(func, kwargs):
        assert_exact(ref[1], y_indices, np.int64)
    else:
        assert ref[1] is None


@pytest.mark.parametrize("name, func, kwargs, arrays", PARITY, ids=IDS)
def test_naive_matches_golden(name, func, kwargs, arrays):
    x0 = arrays["x"].copy()
    got = naive_call(func, kwargs, arrays)
    assert_outputs(func, kwargs, got, golden_outputs(arrays), arrays["x"].dtype)
    np.testing.assert_array_equal(arrays["x"], x0)


@pytest.mark.parametrize("name, func, kwargs, arrays", PARITY, ids=IDS)
def test_naive_other_dtype_matches_oracle(name, func, kwargs, arrays):
    """The case in the other float dtype, against the oracle of the cast input."""
    dtype = np.float64 if arrays["x"].dtype == np.float32 else np.float32
    cast = in_dtype(arrays, dtype)
    got = naive_call(func, kwargs, cast)
    ref = oracle_outputs(func, kwargs, cast)
    assert_outputs(func, kwargs, got, ref, dtype)


MAIN_AVG = [c for c in load_cases(CASES_DIR) if c[1].startswith(("avg_pool", "adaptive_avg_pool"))]


@pytest.mark.parametrize("name, func, kwargs, arrays", MAIN_AVG, ids=[c[0] for c in MAIN_AVG])
def test_naive_average_pooling_main_golden(name, func, kwargs, arrays):
    """naive's averages, now fed by the spec's divisors and windows, on every main case."""
    got = naive_call(func, kwargs, arrays)
    assert_avg(got, arrays["y"].astype(np.float64), arrays["x"].dtype)


# --------------------------------------------------------------------------- random geometries


def special_input(rng, shape, dtype):
    x = rng.integers(-2, 3, shape).astype(dtype)
    u = rng.random(shape)
    x[u < 0.07] = np.nan
    x[(u >= 0.07) & (u < 0.11)] = np.inf
    x[(u >= 0.11) & (u < 0.18)] = -np.inf
    return x


def random_pool_geometry(rng):
    """Odd sizes, dilation, ceil_mode and (before, after) pads, some wider than PyTorch allows
    (windows wholly in padding); redrawn until the output is not empty."""
    while True:
        nd = int(rng.integers(1, 4))
        hi = 10 if nd < 3 else 6
        spatial = tuple(int(v) for v in rng.integers(1, hi, nd))
        kernel = tuple(int(v) for v in rng.integers(1, 5, nd))
        stride = tuple(int(v) for v in rng.integers(1, 4, nd))
        dilation = tuple(int(v) for v in rng.integers(1, 4, nd))
        padding = [[int(v) for v in rng.integers(0, k + 2, 2)] for k in kernel]
        ceil_mode = bool(rng.integers(0, 2))
        try:
            spec, _ = pool_spec("max_pool", "max_pool_with_indices", (2, 3) + spatial, nd, kernel,
                                stride, padding, dilation, ceil_mode, dtype="float64")
        except ShapeError:
            continue
        return nd, spatial, dict(kernel_size=list(kernel), stride=list(stride), padding=padding,
                                 dilation=list(dilation), ceil_mode=ceil_mode), spec


SEEDS = range(60)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_max_pool_with_indices(seed, dtype):
    rng = np.random.default_rng(1000 + seed)
    nd, spatial, kw, spec = random_pool_geometry(rng)
    x = special_input(rng, (2, 3) + spatial, dtype)
    spec = spec.replace(dtype=np.dtype(dtype).name)
    values, indices = NAIVE.max_pool_with_indices(x, spec)
    ref_v, ref_i = oracle.max_pool_with_indices(x, **kw)
    assert_exact(values, ref_v, dtype)
    assert_exact(indices, ref_i, np.int64)
    # every index points at its value (or lies in padding: -inf, -1)
    planes = x.reshape(6, -1)
    picked = np.take_along_axis(planes, np.maximum(indices.reshape(6, -1), 0), axis=1)
    inside = indices.reshape(6, -1) >= 0
    assert_exact(np.where(inside, picked, -np.inf), values.reshape(6, -1), dtype)
    # naive's max_pool is this kernel through the lowering that drops the indices
    assert_exact(getattr(cb, f"max_pool{nd}d")(x, **kw, backend="naive"), ref_v, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_adaptive_max_pool(seed, dtype):
    rng = np.random.default_rng(2000 + seed)
    nd = int(rng.integers(1, 4))
    spatial = tuple(int(v) for v in rng.integers(1, 11 if nd < 3 else 7, nd))
    out = [int(rng.integers(1, L + 3)) for L in spatial]
    x = special_input(rng, (2, 3) + spatial, dtype)
    spec, _ = adaptive_pool_spec("adaptive_max_pool", x.shape, nd, out, dtype=x.dtype,
                                 op="adaptive_max_pool")
    values, indices = NAIVE.adaptive_max_pool(x, spec)
    ref_v, ref_i = oracle.adaptive_max_pool(x, out)
    assert_exact(values, ref_v, dtype)
    assert_exact(indices, ref_i, np.int64)
    assert (indices >= 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_avg_pool(seed, dtype):
    rng = np.random.default_rng(3000 + seed)
    nd, spatial, kw, spec = random_pool_geometry(rng)
    x = rng.standard_normal((2, 3) + spatial).astype(dtype)
    cip = bool(rng.integers(0, 2))
    divisor = [None, int(rng.integers(1, 9)), -int(rng.integers(1, 9))][int(rng.integers(0, 3))]
    spec = spec.replace(op="avg_pool", count_include_pad=cip, divisor_override=divisor,
                        dtype=np.dtype(dtype).name)
    y = NAIVE.avg_pool(x, spec)
    ref = oracle.avg_pool(x, count_include_pad=cip, divisor_override=divisor, **kw)
    assert y.dtype == dtype and y.shape == ref.shape
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))  # windows without counted taps
    ok = ~np.isnan(ref)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    scale = max(1.0, np.abs(ref[ok]).max(initial=0))
    np.testing.assert_allclose(y[ok], ref[ok], rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_max_unpool_round_trip(seed, dtype):
    """Unpool the indices pooling gave, with fresh values (duplicates: the last one stays)."""
    rng = np.random.default_rng(4000 + seed)
    name = np.dtype(dtype).name
    while True:
        nd, spatial, kw, spec = random_pool_geometry(rng)
        kernel, stride = kw["kernel_size"], kw["stride"]
        pads = [p[0] for p in kw["padding"]]
        if any(2 * p > k for p, k in zip(pads, kernel)):
            continue
        try:
            spec, _ = pool_spec("max_pool", "max_pool_with_indices", (2, 3) + spatial, nd, kernel,
                                stride, pads, 1, kw["ceil_mode"], dtype=name)
        except ShapeError:
            continue
        pooled = (2, 3) + spec.output_spatial
        # no output_size, the pooled input's size, or that with N, C leading
        output_size = [None, list(spatial), [2, 3] + list(spatial)][int(rng.integers(0, 3))]
        try:
            uspec, _ = unpool_spec("max_unpool", pooled, pooled, nd, kernel, stride, pads,
                                   output_size, dtype=name)
        except ShapeError:  # outside PyTorch's bounds, or an empty default size: redraw
            continue
        break
    _, indices = NAIVE.max_pool_with_indices(special_input(rng, (2, 3) + spatial, dtype), spec)
    values = rng.standard_normal(indices.shape).astype(dtype)
    try:
        ref = oracle.max_unpool(values, indices, kernel, stride, pads, output_size)
    except ValueError as err:  # the default size is smaller than the pooled input
        with pytest.raises(ShapeError) as got:
            NAIVE.max_unpool(values, indices, uspec)
        assert str(got.value) == str(err)
        assert str(err).startswith("Found an invalid max index: ")
        return
    y = NAIVE.max_unpool(values, indices, uspec)
    assert_exact(y, ref, dtype)


def test_max_unpool_last_write_wins():
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    idx = np.array([[[2, 0, 2, 0]]])
    spec, _ = unpool_spec("max_unpool1d", x.shape, idx.shape, 1, 2)
    spec = spec.replace(dtype="float64")
    expected = [4.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    np.testing.assert_array_equal(NAIVE.max_unpool(x, idx, spec)[0, 0], expected)
    np.testing.assert_array_equal(oracle.max_unpool(x, idx, 2)[0, 0], expected)


# --------------------------------------------------------------------------- rules, one at a time


def test_nan_rule_and_ties_by_hand():
    nan, inf = np.nan, np.inf
    x = np.array([[[1.0, 3.0, 3.0, nan, 2.0, nan, 5.0, -inf, -inf, -inf, inf, inf, -inf, -inf, -inf]]])
    spec, _ = pool_spec("max_pool1d", "max_pool_with_indices", x.shape, 1, 3, dtype="float64")
    values, indices = NAIVE.max_pool_with_indices(x, spec)
    # PyTorch 2.13.0: F.max_pool1d(x, 3, return_indices=True)
    np.testing.assert_array_equal(values[0, 0], [3.0, nan, 5.0, inf, -inf])
    np.testing.assert_array_equal(indices[0, 0], [1, 5, 6, 10, 12])
    ref_v, ref_i = oracle.max_pool_with_indices(x, 3)
    np.testing.assert_array_equal(ref_v, values)
    np.testing.assert_array_equal(ref_i, indices)
    np.testing.assert_array_equal(cb.max_pool1d(x, 3, backend="naive")[0, 0], values[0, 0])
    aspec, _ = adaptive_pool_spec("adaptive_max_pool1d", x.shape, 1, 1, dtype="float64",
                                  op="adaptive_max_pool")
    values, indices = NAIVE.adaptive_max_pool(x, aspec)
    np.testing.assert_array_equal(indices[0, 0], [5])  # the last NaN of the whole row
    assert np.isnan(values[0, 0, 0])


def test_window_wholly_in_padding_gives_minus_one():
    x = np.array([[[-np.inf, 2.0, -np.inf]]])
    spec, _ = pool_spec("max_pool1d", "max_pool_with_indices", x.shape, 1, 2, 2, [[4, 1]],
                        dtype="float64")
    values, indices = NAIVE.max_pool_with_indices(x, spec)
    # windows [-4, -3], [-2, -1] in padding; [0, 1]; [2, 3]: -inf at 2, pad at 3
    np.testing.assert_array_equal(values[0, 0], [-np.inf, -np.inf, 2.0, -np.inf])
    np.testing.assert_array_equal(indices[0, 0], [-1, -1, 1, 2])
    ref_v, ref_i = oracle.max_pool_with_indices(x, 2, 2, [[4, 1]])
    np.testing.assert_array_equal(ref_i[0, 0], indices[0, 0])
    np.testing.assert_array_equal(ref_v[0, 0], values[0, 0])


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_flat_indices_address_the_plane(nd):
    shape = (1, 2) + (3, 4, 5)[-nd:]
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    spec, _ = pool_spec("max_pool", "max_pool_with_indices", shape, nd, 1, dtype="float64")
    values, indices = NAIVE.max_pool_with_indices(x, spec)
    np.testing.assert_array_equal(values, x)
    plane = np.arange(np.prod(shape[2:])).reshape(shape[2:])
    np.testing.assert_array_equal(indices, np.broadcast_to(plane, shape))


def test_naive_supports_the_new_ops():
    spec, _ = pool_spec("max_pool2d", "max_pool_with_indices", (1, 1, 4, 4), 2, 2)
    aspec, _ = adaptive_pool_spec("adaptive_max_pool2d", (1, 1, 4, 4), 2, 2, op="adaptive_max_pool")
    uspec, _ = unpool_spec("max_unpool2d", (1, 1, 2, 2), (1, 1, 2, 2), 2, 2)
    for op, s in zip(NEW_OPS, (spec, aspec, uspec)):
        assert NAIVE.supports(op, s) is None, op
    assert NAIVE.supports("no_such_op", spec) is not None


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("nd, message", [(1, TORCH_BAD_INDEX_1D), (2, TORCH_BAD_INDEX_2D),
                                         (3, TORCH_BAD_INDEX_3D)])
def test_invalid_index_message_is_torchs(nd, message):
    """PyTorch's CPU kernel reports the last invalid index in scan order over (n, c, i)."""
    shape = (2, 2) + (3,) * nd
    x = np.ones(shape)
    idx = np.zeros(shape, dtype=np.int64)
    first = {1: 50, 2: 99, 3: 999}[nd]
    last = {1: 60, 2: 98, 3: 998}[nd]
    idx[(0, 1) + (1,) * nd] = first
    idx[(1, 0) + (nd - 1) * (0,) + (2 if nd == 1 else 0,)] = last
    if nd == 1:
        idx[0, 1, 0] = -3
    spec, _ = unpool_spec(f"max_unpool{nd}d", shape, shape, nd, 2, dtype="float64")
    with pytest.raises(ShapeError) as err:
        NAIVE.max_unpool(x, idx, spec)
    assert str(err.value) == message
    with pytest.raises(ValueError) as err:
        oracle.max_unpool(x, idx, 2)
    assert str(err.value) == message


@pytest.mark.parametrize("bad", [-1, 8, 2 ** 40, -(2 ** 40)])
def test_invalid_index_writes_nothing_out_of_bounds(bad):
    x = np.arange(4.0).reshape(1, 1, 4)
    idx = np.array([[[0, bad, 3, 5]]])
    spec, _ = unpool_spec("max_unpool1d", x.shape, idx.shape, 1, 2, dtype="float64")
    with pytest.raises(ShapeError, match=f"^Found an invalid max index: {bad} "
                                         r"\(output volumes are of size 8x1\)$"):
        NAIVE.max_unpool(x, idx, spec)


def test_unpool_spec_indices_shape_message_is_torchs():
    with pytest.raises(ShapeError) as err:
        unpool_spec("max_unpool2d", (1, 1, 2, 2), (1, 1, 2, 3), 2, 2)
    assert str(err.value) == TORCH_INDICES_SHAPE_2D
    with pytest.raises(ShapeError) as err:
        unpool_spec("max_unpool3d", (1, 1, 2, 2, 2), (1, 1, 2, 2, 3), 3, 2)
    assert str(err.value) == TORCH_INDICES_SHAPE_3D


def test_unpool_spec_impossible_output_size_message_is_torchs():
    for output_size in ([9, 9], [1, 1, 9, 9]):
        with pytest.raises(ShapeError) as err:
            unpool_spec("max_unpool2d", (1, 1, 2, 2), (1, 1, 2, 2), 2, 2, output_size=output_size)
        assert str(err.value) == TORCH_OUTPUT_SIZE_LIST
    with pytest.raises(ShapeError) as err:
        unpool_spec("max_unpool3d", (1, 1, 2, 2, 2), (1, 1, 2, 2, 2), 3, 2, output_size=[4, 4, 9])
    assert str(err.value) == TORCH_OUTPUT_SIZE_3D
    # the bounds are exclusive: default 4, stride 2 -> 3, 4, 5 allowed, 2 and 6 refused
    for size, ok in ((2, False), (3, True), (5, True), (6, False)):
        args = ("max_unpool1d", (1, 1, 2), (1, 1, 2), 1, 2)
        if ok:
            assert unpool_spec(*args, output_size=[size])[0].output_shape == (1, 1, size)
        else:
            with pytest.raises(ShapeError, match="^invalid output_size"):
                unpool_spec(*args, output_size=[size])


def test_unpool_spec_output_size_tuple_message_is_torchs():
    """PyTorch prints output_size as given: a tuple as ``(9, 9)``."""
    with pytest.raises(ShapeError) as err:
        unpool_spec("max_unpool2d", (1, 1, 2, 2), (1, 1, 2, 2), 2, 2, output_size=(9, 9))
    assert str(err.value) == TORCH_OUTPUT_SIZE_TUPLE


def test_unpool_spec_output_size_length_message_is_torchs():
    with pytest.raises(ShapeError) as err:
        unpool_spec("max_unpool2d", (1, 1, 2, 2), (1, 1, 2, 2), 2, 2, output_size=[4])
    assert str(err.value) == TORCH_OUTPUT_SIZE_LENGTH


def test_zero_divisor_message_is_torchs():
    for nd in (2, 3):
        with pytest.raises(ShapeError) as err:
            pool_spec(f"avg_pool{nd}d", "avg_pool", (1, 1) + (4,) * nd, nd, 2, divisor_override=0)
        assert str(err.value) == TORCH_ZERO_DIVISOR


# --------------------------------------------------------------------------- the public functions


def public_call(func, kwargs, arrays, **extra):
    fn = getattr(cb, func)
    if func.startswith("max_unpool"):
        return fn(arrays["x"], arrays["indices"], **kwargs, **extra)
    return fn(arrays["x"], **kwargs, **extra)


@pytest.mark.parametrize("backend", [None, "naive", "numba"])
@pytest.mark.parametrize("name, func, kwargs, arrays", PARITY, ids=IDS)
def test_public_api_matches_golden(name, func, kwargs, arrays, backend):
    got = public_call(func, kwargs, arrays, backend=backend)
    assert_outputs(func, kwargs, got, golden_outputs(arrays), arrays["x"].dtype)


@pytest.mark.parametrize("nd, message", [(1, TORCH_BAD_INDEX_1D), (2, TORCH_BAD_INDEX_2D),
                                         (3, TORCH_BAD_INDEX_3D)])
def test_public_max_unpool_invalid_index(nd, message):
    shape = (2, 2) + (3,) * nd
    idx = np.zeros(shape, dtype=np.int64)
    last = {1: 60, 2: 98, 3: 998}[nd]
    idx[(0, 1) + (1,) * nd] = last + 1
    idx[(1, 0) + (nd - 1) * (0,) + (2 if nd == 1 else 0,)] = last
    with pytest.raises(ShapeError) as err:
        getattr(cb, f"max_unpool{nd}d")(np.ones(shape), idx, 2)
    assert str(err.value) == message


def test_public_return_indices_false_is_values_only():
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 7))
    y = cb.max_pool2d(x, 3, 2, return_indices=False)
    assert isinstance(y, np.ndarray)
    values, indices = cb.max_pool2d(x, 3, 2, return_indices=True)
    np.testing.assert_array_equal(values, y)
    assert indices.dtype == np.int64
    y = cb.adaptive_max_pool2d(x, [3, 4])
    assert isinstance(y, np.ndarray) and y.shape == (1, 2, 3, 4)
