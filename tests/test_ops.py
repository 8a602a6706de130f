"""The op table and its lowerings: every op defined once, every lowering equal to the oracle.

Lowerings are checked two ways: through real backends that lack the op (im2col and fft pool
through a depthwise convolution, winograd runs transposed convolution as a convolution), and
through a plug-in that has one kernel only, so each rewrite is exercised on its own.
"""

import uuid

import numpy as np
import pytest

import convbackends as cb
from convbackends import dispatch
from convbackends.backends.base import Backend
from convbackends.ops import LOWERINGS, OP_NAMES, OPS, get_op
from convbackends.tools.measure import relative_error
from reference import oracle


class OneKernel(Backend):
    """A plug-in with the naive backend's kernel for one op and nothing else."""

    def __init__(self, op):
        self.name = f"only_{op}_{uuid.uuid4().hex[:6]}"
        self.op = op
        setattr(self, op, getattr(cb.get_backend("naive"), op))

    def supports(self, op, spec):
        return None if op == self.op else f"{self.name} has only {self.op}"


@pytest.fixture
def only():
    made = []

    def register(op):
        made.append(cb.register_backend(OneKernel(op)))
        return made[-1]
    yield register
    for b in made:
        dispatch.registry._registry.pop(b.name, None)


def _rng(seed):
    return np.random.default_rng(seed)


def test_every_op_has_a_builder_an_oracle_and_known_lowerings():
    assert set(OP_NAMES) == {"conv", "conv_transpose", "max_pool", "max_pool_with_indices",
                             "avg_pool", "adaptive_avg_pool", "adaptive_max_pool", "max_unpool",
                             "conv_input_grad", "conv_weight_grad", "conv_transpose_input_grad",
                             "conv_transpose_weight_grad", "max_pool_input_grad",
                             "avg_pool_input_grad"}
    for op in OPS.values():
        assert callable(getattr(oracle, op.oracle)), op.name
        assert op.results in (("y",), ("values", "indices"), ("grad_input",), ("grad_weight",))
    for low in LOWERINGS:
        assert low.source in OPS and low.target in OPS
        # Only a layout lowering keeps its op: it changes the spec's data_format.
        assert (low.source != low.target) != low.name.endswith(":channels_last->channels_first")
        assert low in get_op(low.source).lowerings
    with pytest.raises(cb.ShapeError, match="unknown op 'maxpool'"):
        get_op("maxpool")


@pytest.mark.parametrize("backend", ["im2col", "fft"])
@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float64", 1e-12)])
@pytest.mark.parametrize("kw", [
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=((0, 1), (1, 1)), ceil_mode=True),
    dict(kernel_size=2, divisor_override=3),
    dict(kernel_size=3, padding=1, dilation=2, count_include_pad=False),
])
def test_avg_pool_through_depthwise_convolution(backend, dtype, tol, kw):
    x = _rng(1).standard_normal((2, 3, 9, 8)).astype(dtype)
    e = cb.explain(x.shape, op="avg_pool", dtype=dtype, backend=backend, **kw)
    assert e.choice == backend and [s.split(":")[0] for s in e.steps] == ["avg_pool -> conv",
                                                                          "conv"]
    y = cb.avg_pool2d(x, backend=backend, **kw)
    ref = oracle.avg_pool(x.astype(np.float64), **kw)
    assert y.dtype == x.dtype and y.shape == ref.shape
    assert relative_error(y, ref) < tol


def test_avg_pool_lowering_keeps_an_empty_window_nan(only):
    # count_include_pad=False over a window wholly in padding: 0/0, as the direct formula.
    conv_only = only("conv")
    x = _rng(2).standard_normal((1, 1, 2, 2))
    kw = dict(kernel_size=1, stride=2, padding=1, count_include_pad=False)
    y = cb.avg_pool2d(x, backend=conv_only, **kw)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(oracle.avg_pool(x, **kw)))
    assert np.isnan(y).any()


@pytest.mark.parametrize("kw", [
    dict(stride=1, padding=0), dict(stride=1, padding=1),
    dict(stride=2, padding=1, output_padding=1), dict(stride=(2, 3), padding=((1, 0), (2, 1))),
])
def test_winograd_runs_conv_transpose_as_a_convolution(kw):
    rng = _rng(3)
    x = rng.standard_normal((2, 4, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    e = cb.explain(x.shape, w.shape, op="conv_transpose", backend="winograd", **kw)
    assert e.backends["winograd"].route == "conv_transpose -> conv"
    y = cb.conv_transpose2d(x, w, b, backend="winograd", **kw)
    ref = oracle.conv_transpose(x.astype(np.float64), w.astype(np.float64),
                                b.astype(np.float64), **kw)
    assert relative_error(y, ref) < 1e-4


@pytest.mark.parametrize("kw,shapes", [
    (dict(stride=2, padding=1, output_padding=1, groups=2, dilation=2), ((2, 4, 5, 6), (4, 3, 3, 2))),
    (dict(stride=3, padding=(0, 2), groups=1), ((1, 2, 4, 3), (2, 5, 2, 3))),
    (dict(stride=2, padding=1, output_padding=1), ((2, 3, 5), (3, 2, 4))),
    (dict(stride=(1, 2, 2), padding=1, dilation=(1, 1, 2)), ((1, 2, 3, 4, 3), (2, 2, 3, 3, 3))),
])
def test_conv_transpose_lowering_every_geometry(only, kw, shapes):
    conv_only = only("conv")
    rng = _rng(4)
    x, w = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1])
    b = rng.standard_normal(w.shape[1] * kw.get("groups", 1))
    y = cb.conv_transpose(x, w, b, backend=conv_only, **kw)
    np.testing.assert_allclose(y, oracle.conv_transpose(x, w, b, **kw), rtol=1e-12, atol=1e-12)


def test_conv_transpose_lowering_declines_padding_beyond_the_kernel(only):
    conv_only = only("conv")
    x, w = _rng(5).standard_normal((1, 2, 6)), _rng(6).standard_normal((2, 2, 2))
    with pytest.raises(cb.UnsupportedError) as info:
        cb.conv_transpose1d(x, w, stride=2, padding=2, backend=conv_only)
    assert "through conv_transpose->conv" not in str(info.value)   # it did not apply
    assert ("conv_transpose->conv does not apply: padding larger than dilation*(kernel-1)"
            in str(info.value))
    assert f"{conv_only.name} has only conv" in str(info.value)


def test_max_pool_from_the_indices_kernel(only):
    b = only("max_pool_with_indices")
    x = _rng(7).standard_normal((2, 3, 9, 7))
    x[0, 1, 2, 2] = np.nan
    y = cb.max_pool2d(x, 3, 2, padding=1, ceil_mode=True, backend=b)
    np.testing.assert_array_equal(y, oracle.max_pool(x, 3, 2, padding=1, ceil_mode=True))
    assert cb.explain(x.shape, op="max_pool", kernel_size=3, backend=b).steps[0].startswith(
        "max_pool -> max_pool_with_indices")


@pytest.mark.parametrize("op,func", [("max_pool_with_indices", "adaptive_max_pool2d"),
                                     ("avg_pool", "adaptive_avg_pool2d")])
def test_adaptive_pools_with_even_windows_lower_to_fixed_ones(only, op, func):
    b = only(op)
    x = _rng(8).standard_normal((2, 3, 12, 8))
    y = getattr(cb, func)(x, (4, 2), backend=b)
    ref = getattr(oracle, func.replace("2d", ""))(x, (4, 2))
    if op == "max_pool_with_indices":
        values, indices = cb.adaptive_max_pool2d(x, (4, 2), return_indices=True, backend=b)
        np.testing.assert_array_equal(values, ref[0])
        np.testing.assert_array_equal(indices, ref[1])
        ref = ref[0]
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    with pytest.raises(cb.UnsupportedError, match="not a multiple of the output size"):
        getattr(cb, func)(x, (5, 3), backend=b)


def test_auto_prefers_kernels_and_lowers_only_when_none_has_one(only, monkeypatch):
    e = cb.explain((1, 3, 8, 8), op="avg_pool", kernel_size=2)
    assert e.steps == [f"avg_pool: {e.choice}'s own kernel"]
    ep = cb.explain((1, 3, 8, 8), op="adaptive_max_pool", output_size=3)
    assert ep.choice in ("naive", "numba") and len(ep.steps) == 1


@pytest.mark.parametrize("op,kw", [
    ("conv", dict(w_shape=(4, 3, 3, 3), padding=1)),
    ("conv_transpose", dict(w_shape=(3, 2, 3, 3), stride=2)),
    ("max_pool", dict(kernel_size=2)), ("max_pool_with_indices", dict(kernel_size=3, stride=2)),
    ("avg_pool", dict(kernel_size=2, divisor_override=3)),
    ("adaptive_avg_pool", dict(output_size=3)), ("adaptive_max_pool", dict(output_size=(3, 2))),
    ("max_unpool", dict(kernel_size=2)),
])
def test_explain_every_op(op, kw):
    e = cb.explain((2, 3, 8, 8), op=op, **kw)
    assert e.choice in cb.available_backends() and e.steps
    assert e.output_shape == tuple(e.spec.output_shape)
    text = str(e)
    assert op in text and "plan:" in text and "choice:" in text
    assert set(e.backends) == {n for n in cb.backends() if n != "auto"}


def test_named_backend_without_kernel_or_lowering_says_both():
    x = _rng(9).standard_normal((1, 2, 6, 6))
    with pytest.raises(cb.UnsupportedError) as info:
        cb.max_pool2d(x, 2, backend="im2col")
    msg = str(info.value)
    assert "im2col computes convolutions only, not max_pool" in msg
    assert "through max_pool->max_pool_with_indices" in msg
    assert "Backends that can:" in msg and "naive" in msg
