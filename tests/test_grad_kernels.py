"""The backends' own kernels for the weight gradient of ``conv`` (``conv_weight_grad``):
im2col's (every geometry) and numba's (depthwise layers), against the float64 oracle on odd
geometries, groups, depthwise with channel multipliers, padding forms and modes, batch
chunks, non-finite operands; and the plans that run them."""

import warnings

import numpy as np
import pytest

import convbackends as cb
from convbackends.backends.im2col import Im2colBackend
from convbackends.spec import conv_spec
from convbackends.tools.measure import relative_error, tolerance
from reference import oracle

NATIVE = ["conv_weight_grad: im2col's own kernel"]
HAS_NUMBA = "numba" in cb.available_backends()

# (input shape, weight shape, forward keywords)
CASES = [
    ((3, 5, 17), (4, 5, 4), dict(stride=3, padding=2, dilation=2)),
    ((2, 6, 9), (4, 3, 3), dict(padding=((3, 0),), groups=2)),
    ((2, 4, 9, 8), (6, 2, 3, 2), dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)),
    ((2, 2, 7, 6), (3, 2, 3, 3), dict(padding=((0, 2), (1, 0)))),
    ((1, 3, 11, 13), (5, 3, 5, 4), dict(stride=(3, 2), padding=(2, 1))),
    ((3, 4, 6, 5), (8, 4, 1, 1), dict(stride=2)),                 # 1x1, strided
    ((2, 3, 5, 5), (4, 3, 1, 1), {}),                             # 1x1, stride 1
    ((2, 3, 7, 7), (2, 3, 7, 7), {}),                             # kernel = input: 1x1 output
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(padding="same", dilation=2)),
    ((1, 2, 5, 4, 5), (2, 1, 2, 3, 2), dict(stride=2, padding=1, groups=2)),
    ((2, 3, 4, 5, 3), (4, 3, 3, 2, 2), dict(padding=((1, 0), (0, 1), (1, 1)),
                                             dilation=(1, 2, 1))),
    # depthwise: one input channel per group, with channel multipliers 1, 2, 3
    ((3, 6, 7, 9), (6, 1, 3, 3), dict(stride=2, padding=1, groups=6)),
    ((2, 4, 13), (8, 1, 5), dict(padding=3, dilation=2, groups=4)),
    ((2, 3, 6, 7), (9, 1, 3, 2), dict(stride=(1, 2), padding=((2, 0), (0, 1)), groups=3)),
    ((1, 2, 4, 5, 4), (2, 1, 2, 2, 3), dict(padding=1, groups=2)),
]


def _is_depthwise(x_shape, kw):
    groups = kw.get("groups", 1)
    return groups > 1 and groups == x_shape[1]


# Every case on im2col; the depthwise ones on numba too.
BACKEND_CASES = [pytest.param("im2col", *case, id=f"im2col-{i}") for i, case in enumerate(CASES)]
BACKEND_CASES += [pytest.param("numba", *case, id=f"numba-{i}",
                               marks=pytest.mark.skipif(not HAS_NUMBA, reason="no numba"))
                  for i, case in enumerate(CASES) if _is_depthwise(case[0], case[2])]


def _grad_output_shape(x_shape, w_shape, kw):
    return cb.explain(x_shape, w_shape, bias=False, **kw).output_shape


def _weight_grad(nd):
    return getattr(cb.grad, f"conv{nd}d_weight")


def _arrays(rng, x_shape, w_shape, kw, dtype):
    x = rng.standard_normal(x_shape).astype(dtype)
    gy = rng.standard_normal(_grad_output_shape(x_shape, w_shape, kw)).astype(dtype)
    return x, gy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend, x_shape, w_shape, kw", BACKEND_CASES)
def test_native_weight_grad_matches_the_oracle(rng, dtype, backend, x_shape, w_shape, kw):
    x, gy = _arrays(rng, x_shape, w_shape, kw, dtype)
    x0, gy0 = x.copy(), gy.copy()
    nd = len(x_shape) - 2
    e = cb.explain(x_shape, w_shape, op="conv_weight_grad", dtype=np.dtype(dtype).name,
                   backend=backend, **kw)
    assert e.steps == [f"conv_weight_grad: {backend}'s own kernel"]
    gw = _weight_grad(nd)(x, w_shape, gy, **kw, backend=backend)
    ref = oracle.conv_weight_grad(x, w_shape, gy, **_oracle_padding(x_shape, w_shape, kw))
    assert gw.dtype == dtype and gw.shape == w_shape
    assert relative_error(gw, ref) < tolerance(backend, dtype)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(gy, gy0)


def _oracle_padding(x_shape, w_shape, kw):
    """The oracle takes explicit padding; ``"same"`` becomes its pairs."""
    kw = dict(kw)
    if kw.get("padding") == "same":
        dilation = kw.get("dilation", 1)
        nd = len(w_shape) - 2
        dilation = (dilation,) * nd if isinstance(dilation, int) else dilation
        totals = [d * (k - 1) for k, d in zip(w_shape[2:], dilation)]
        kw["padding"] = tuple((t // 2, t - t // 2) for t in totals)
    return kw


def test_random_geometries_match_the_oracle():
    """Forty drawn geometries: every dim count, stride, dilation, padding pair, groups."""
    rng = np.random.default_rng(13)
    for _ in range(40):
        nd = int(rng.integers(1, 4))
        groups = int(rng.choice([1, 1, 2, 3]))
        cg, kg = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        kernel = tuple(int(k) for k in rng.integers(1, 4, nd))
        stride = tuple(int(s) for s in rng.integers(1, 4, nd))
        dilation = tuple(int(d) for d in rng.integers(1, 3, nd))
        padding = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (nd, 2)))
        spatial = tuple(d * (k - 1) + 1 + int(rng.integers(0, 6))
                        for k, d in zip(kernel, dilation))
        x_shape = (int(rng.integers(1, 4)), groups * cg) + spatial
        w_shape = (groups * kg, cg) + kernel
        kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
        x, gy = _arrays(rng, x_shape, w_shape, kw, np.float64)
        gw = _weight_grad(nd)(x, w_shape, gy, **kw, backend="im2col")
        ref = oracle.conv_weight_grad(x, w_shape, gy, **kw)
        assert relative_error(gw, ref) < 1e-12, (x_shape, w_shape, kw)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("w_shape, groups", [((4, 3, 3, 2), 1), ((6, 1, 3, 3), 3)])
def test_padding_modes(rng, mode, w_shape, groups):
    """A padding mode is the oracle on the input padded that way, with zero padding."""
    x = rng.standard_normal((2, 3, 7, 6))
    pairs = ((2, 1), (0, 2))
    gy = rng.standard_normal(_grad_output_shape(x.shape, w_shape,
                                                dict(padding=pairs, groups=groups)))
    gw = cb.grad.conv2d_weight(x, w_shape, gy, padding=pairs, groups=groups,
                               padding_mode=mode, backend="im2col")
    np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
    xp = np.pad(x, ((0, 0), (0, 0)) + pairs, mode=np_mode)
    ref = oracle.conv_weight_grad(xp, w_shape, gy, groups=groups)
    assert relative_error(gw, ref) < 1e-12


@pytest.mark.parametrize("w_shape, groups", [((6, 2, 3, 3), 2), ((8, 1, 3, 3), 4)])
def test_batch_chunks_accumulate(rng, w_shape, groups):
    """A workspace limit of about one sample runs the batch in chunks; the sum is the same."""
    x_shape, kw = (5, 4, 9, 8), dict(stride=(1, 2), padding=1, groups=groups)
    x, gy = _arrays(rng, x_shape, w_shape, kw, np.float64)
    spec = conv_spec("test", x_shape, w_shape, None, dtype="float64", **kw)[0]
    whole = Im2colBackend()
    one_sample = Im2colBackend(workspace_limit=whole.workspace_bytes(
        "conv_weight_grad", spec) // spec.batch)
    assert whole.plan("conv_weight_grad", spec)["batch_chunk"] == 5
    assert one_sample.plan("conv_weight_grad", spec)["batch_chunk"] == 1
    assert one_sample.workspace_bytes("conv_weight_grad", spec) \
        == whole.workspace_bytes("conv_weight_grad", spec) // 5
    ref = oracle.conv_weight_grad(x, w_shape, gy, **kw)
    for backend in (whole, one_sample):
        assert relative_error(backend.conv_weight_grad(x, gy, spec), ref) < 1e-12


def test_out_unbatched_and_non_contiguous(rng):
    x = np.asfortranarray(rng.standard_normal((3, 10, 9)).astype(np.float32))
    gy = rng.standard_normal((4, 5, 5)).astype(np.float32)[:, :, ::-1]
    out = np.empty((4, 3, 3, 3), np.float32)
    got = cb.grad.conv2d_weight(x, out.shape, gy, stride=2, padding=1, backend="im2col",
                                out=out)
    assert got is out
    ref = oracle.conv_weight_grad(x[None], out.shape, gy[None], stride=2, padding=1)
    assert relative_error(out, ref) < 1e-5


# ------------------------------------------------------------------------ non-finite

SPECIAL = (np.nan, np.inf, -np.inf, 0.0)


def _assert_same_pattern(got, ref, backend, dtype):
    for name, test in (("NaN", np.isnan), ("+Inf", np.isposinf), ("-Inf", np.isneginf)):
        np.testing.assert_array_equal(test(got), test(ref), err_msg=f"{name} pattern")
    assert relative_error(got, ref) < tolerance(backend, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend, x_shape, w_shape, kw",
                         [c for i, c in enumerate(BACKEND_CASES) if i % 2 == 0 or
                          c.values[0] == "numba"])
def test_non_finite_operands_give_the_direct_formulas_pattern(dtype, backend, x_shape,
                                                              w_shape, kw):
    """NaN, +Inf, -Inf and zeros placed in the input and the output gradient: the result's
    NaN and Inf are exactly the direct sum's (a padded zero meeting an infinite output
    gradient is NaN, +Inf and -Inf in one sum are NaN), and no RuntimeWarning escapes."""
    rng = np.random.default_rng(len(x_shape) * 100 + w_shape[0])
    nd = len(x_shape) - 2
    kw_ref = _oracle_padding(x_shape, w_shape, kw)
    for trial in range(6):
        x, gy = _arrays(rng, x_shape, w_shape, kw, dtype)
        for a in (x, gy) if trial % 3 == 0 else ((x,) if trial % 3 == 1 else (gy,)):
            flat = a.reshape(-1)
            for _ in range(int(rng.integers(1, 4))):
                flat[rng.integers(flat.size)] = rng.choice(SPECIAL)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gw = _weight_grad(nd)(x, w_shape, gy, **kw, backend=backend)
        with np.errstate(invalid="ignore", over="ignore"):
            ref = oracle.conv_weight_grad(x, w_shape, gy, **kw_ref)
        _assert_same_pattern(gw, ref, backend, dtype)


@pytest.mark.parametrize("backend", ["im2col"] + (["numba"] if HAS_NUMBA else []))
def test_an_infinite_output_gradient_meets_the_padding(backend):
    """Every tap that reads padding for the infinite output is NaN (0 * Inf); the others are
    that Inf times a positive input."""
    x = np.ones((1, 2, 3, 3))
    gy = np.zeros((1, 2, 3, 3))
    gy[0, :, 0, 0] = np.inf                     # the top-left output: its window is 2/3 padding
    expected = np.full((3, 3), np.nan)
    expected[1:, 1:] = np.inf
    gw = cb.grad.conv2d_weight(x, (2, 1, 3, 3), gy, padding=1, groups=2, backend=backend)
    np.testing.assert_array_equal(gw[:, 0], np.broadcast_to(expected, (2, 3, 3)))
    gw = cb.grad.conv2d_weight(x, (6, 1, 3, 3), np.repeat(gy, 3, axis=1), padding=1,
                               groups=2, backend=backend)
    np.testing.assert_array_equal(gw[:, 0], np.broadcast_to(expected, (6, 3, 3)))
    gw = cb.grad.conv2d_weight(x[:, :1], (3, 1, 3, 3), gy[:, :1].repeat(3, axis=1), padding=1,
                               backend="im2col")
    np.testing.assert_array_equal(gw[:, 0], np.broadcast_to(expected, (3, 3, 3)))


# ------------------------------------------------------------------------------ plans

def test_explain_shows_the_native_kernel_not_the_lowering():
    e = cb.explain((8, 64, 28, 28), (128, 64, 3, 3), op="conv_weight_grad", stride=2,
                   padding=1, backend="im2col")
    assert e.steps == NATIVE and e.choice == "im2col"
    report = e.backends["im2col"]
    assert report.route == "kernel" and report.plan["gemm"].startswith("per group")
    cols = 64 * 9 * 14 * 14 + 128 * 14 * 14           # a sample's columns and gradient
    assert report.workspace_bytes == 8 * cols * 4
    e = cb.explain((8, 32, 28, 28), (32, 1, 3, 3), op="conv_weight_grad", padding=1,
                   groups=32, backend="im2col")
    assert e.steps == NATIVE
    assert e.backends["im2col"].plan["reduction"].startswith("depthwise")
    assert e.backends["im2col"].workspace_bytes == 8 * 32 * 30 * 30 * 4
    assert "conv_weight_grad: im2col's own kernel" in str(e)


@pytest.mark.skipif(not HAS_NUMBA, reason="no numba")
def test_numba_lowers_the_weight_gradient_of_other_layers():
    """numba's kernel is for depthwise layers; elsewhere its conv over swapped axes runs."""
    e = cb.explain((2, 4, 9, 9), (6, 2, 3, 3), op="conv_weight_grad", groups=2, padding=1,
                   backend="numba")
    assert e.steps[0].startswith("conv_weight_grad -> conv") and e.choice == "numba"
    assert "depthwise" in cb.get_backend("numba").supports(
        "conv_weight_grad", conv_spec("test", (2, 4, 9, 9), (6, 2, 3, 3), None, groups=2)[0])
    e = cb.explain((2, 4, 9, 9), (8, 1, 3, 3), op="conv_weight_grad", groups=4, padding=1,
                   backend="numba")
    assert e.steps == ["conv_weight_grad: numba's own kernel"]
    assert e.backends["numba"].plan["kernel"].startswith("depthwise")
    assert e.backends["numba"].workspace_bytes >= 2 * 4 * 11 * 11 * 4
