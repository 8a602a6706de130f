"""Gradients (docs/api.md §12, ``cb.grad``): the oracle against PyTorch's autograd, every
backend against the oracle through the op table's lowerings, every padding form and mode."""

import numpy as np
import pytest

import convbackends as cb
from convbackends.tools.measure import relative_error, tolerance
from reference import oracle

BACKENDS = [n for n in cb.available_backends() if n != "auto"] + [None]

# (input shape, weight shape, forward keywords): strides, dilations, groups, padding pairs.
CONV_CASES = [
    ((2, 4, 9, 8), (6, 2, 3, 2), dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)),
    ((1, 3, 11), (2, 3, 4), dict(stride=3, padding=2)),
    ((2, 2, 7, 6), (3, 2, 3, 3), dict(padding=((0, 2), (1, 0)))),
    ((1, 2, 5, 4, 5), (2, 1, 2, 3, 2), dict(stride=2, padding=1, groups=2)),
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(padding=1)),
]
TRANSPOSE_CASES = [
    ((2, 4, 5, 6), (4, 3, 3, 2), dict(stride=2, padding=1, output_padding=1, groups=2)),
    ((1, 3, 6), (3, 2, 4), dict(stride=3, padding=2, output_padding=2)),
    ((1, 2, 3, 4, 3), (2, 2, 2, 3, 2), dict(stride=(1, 2, 2), padding=1, dilation=(1, 1, 2))),
]
POOL_CASES = [
    ((2, 3, 9, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 11), dict(kernel_size=4, stride=3, padding=((2, 1),))),
    ((1, 2, 5, 6, 5), dict(kernel_size=2, stride=(1, 2, 2), dilation=(2, 1, 1))),
]
AVG_EXTRA = [dict(), dict(count_include_pad=False), dict(divisor_override=3)]


def _data(rng, *shapes, dtype=np.float64):
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def _fwd_out(x_shape, w_shape, kw, transposed=False):
    op = "conv_transpose" if transposed else "conv"
    return cb.explain(x_shape, w_shape, op=op, bias=False, **kw).output_shape


def _check(y, ref, backend, dtype):
    assert y.dtype == dtype and y.shape == ref.shape
    assert relative_error(y, ref) < tolerance(backend, dtype), backend


# ------------------------------------------------------------------ the oracle is PyTorch's


@pytest.mark.parametrize("x_shape, w_shape, kw", CONV_CASES)
def test_oracle_conv_gradients_are_pytorchs(x_shape, w_shape, kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, w = _data(rng, x_shape, w_shape)
    nd = len(x_shape) - 2
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    pairs = kw.get("padding", 0)
    tkw = dict(kw)
    if isinstance(pairs, tuple) and isinstance(pairs[0], tuple):    # torch pads symmetrically
        tx_in = torch.nn.functional.pad(tx, [p for pair in reversed(pairs) for p in pair])
        tkw["padding"] = 0
    else:
        tx_in = tx
    y = getattr(torch.nn.functional, f"conv{nd}d")(tx_in, tw, **tkw)
    gy = rng.standard_normal(tuple(y.shape))
    y.backward(torch.tensor(gy))
    np.testing.assert_allclose(oracle.conv_input_grad(x_shape, w, gy, **kw), tx.grad.numpy(),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(oracle.conv_weight_grad(x, w_shape, gy, **kw), tw.grad.numpy(),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("x_shape, w_shape, kw", TRANSPOSE_CASES)
def test_oracle_conv_transpose_gradients_are_pytorchs(x_shape, w_shape, kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x, w = _data(rng, x_shape, w_shape)
    nd = len(x_shape) - 2
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    y = getattr(torch.nn.functional, f"conv_transpose{nd}d")(tx, tw, **kw)
    gy = rng.standard_normal(tuple(y.shape))
    y.backward(torch.tensor(gy))
    np.testing.assert_allclose(oracle.conv_transpose_input_grad(x_shape, w, gy, **kw),
                               tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(oracle.conv_transpose_weight_grad(x, w_shape, gy, **kw),
                               tw.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("extra", [dict(), dict(count_include_pad=False),
                                   dict(divisor_override=3)])
def test_oracle_pool_gradients_are_pytorchs(extra):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 9, 7))
    x[0, 0, :3, :3] = 1.0                                   # ties: the first maximum wins
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    tx = torch.tensor(x, requires_grad=True)
    y = torch.nn.functional.avg_pool2d(tx, **kw, **extra)
    gy = rng.standard_normal(tuple(y.shape))
    y.backward(torch.tensor(gy))
    np.testing.assert_allclose(oracle.avg_pool_input_grad(x.shape, gy, **kw, **extra),
                               tx.grad.numpy(), rtol=1e-12, atol=1e-14)
    tx = torch.tensor(x, requires_grad=True)
    y = torch.nn.functional.max_pool2d(tx, **kw)
    y.backward(torch.tensor(gy))
    np.testing.assert_array_equal(oracle.max_pool_input_grad(x, gy, **kw), tx.grad.numpy())


# ------------------------------------------------------------- every backend, every lowering


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape, kw", CONV_CASES)
def test_conv_gradients_on_every_backend(backend, dtype, x_shape, w_shape, kw):
    rng = np.random.default_rng(3)
    nd = len(x_shape) - 2
    x, w, gy = _data(rng, x_shape, w_shape, _fwd_out(x_shape, w_shape, kw), dtype=dtype)
    x0, w0, gy0 = x.copy(), w.copy(), gy.copy()
    ref_x = oracle.conv_input_grad(x_shape, w, gy, **kw)
    ref_w = oracle.conv_weight_grad(x, w_shape, gy, **kw)
    try:
        gx = getattr(cb.grad, f"conv{nd}d_input")(x_shape, w, gy, **kw, backend=backend)
        gw = getattr(cb.grad, f"conv{nd}d_weight")(x, w_shape, gy, **kw, backend=backend)
    except cb.UnsupportedError as e:
        assert backend == "winograd", e           # only winograd declines these geometries
        return
    _check(gx, ref_x, backend, dtype)
    _check(gw, ref_w, backend, dtype)
    for a, a0 in ((x, x0), (w, w0), (gy, gy0)):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x_shape, w_shape, kw", TRANSPOSE_CASES)
def test_conv_transpose_gradients_on_every_backend(backend, x_shape, w_shape, kw):
    rng = np.random.default_rng(4)
    nd = len(x_shape) - 2
    x, w, gy = _data(rng, x_shape, w_shape, _fwd_out(x_shape, w_shape, kw, True))
    try:
        gx = getattr(cb.grad, f"conv_transpose{nd}d_input")(x_shape, w, gy, **kw,
                                                             backend=backend)
        gw = getattr(cb.grad, f"conv_transpose{nd}d_weight")(x, w_shape, gy, **kw,
                                                              backend=backend)
    except cb.UnsupportedError as e:
        assert backend == "winograd", e
        return
    _check(gx, oracle.conv_transpose_input_grad(x_shape, w, gy, **kw), backend, np.float64)
    _check(gw, oracle.conv_transpose_weight_grad(x, w_shape, gy, **kw), backend, np.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x_shape, kw", POOL_CASES)
def test_pool_gradients_on_every_backend(backend, x_shape, kw):
    rng = np.random.default_rng(5)
    nd = len(x_shape) - 2
    x = rng.standard_normal(x_shape)
    out = cb.explain(x_shape, op="max_pool", **kw).output_shape
    gy = rng.standard_normal(out)
    try:
        gx = getattr(cb.grad, f"max_pool{nd}d_input")(x, gy, **kw, backend=backend)
        np.testing.assert_allclose(gx, oracle.max_pool_input_grad(x, gy, **kw), rtol=1e-12)
    except cb.UnsupportedError as e:
        assert backend in ("im2col", "fft", "winograd"), e      # no max pooling kernel
    for extra in AVG_EXTRA if nd > 1 else AVG_EXTRA[:2]:
        out = cb.explain(x_shape, op="avg_pool", **kw, **extra).output_shape
        gy = rng.standard_normal(out)
        try:
            gx = getattr(cb.grad, f"avg_pool{nd}d_input")(x_shape, gy, **kw, **extra,
                                                          backend=backend)
        except cb.UnsupportedError as e:
            assert backend == "winograd", e
            continue
        _check(gx, oracle.avg_pool_input_grad(x_shape, gy, **kw, **extra), backend,
               np.float64)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("padding", [1, 2, ((2, 1), (0, 2)), "same"])
def test_padding_modes_fold_back_onto_the_input(mode, padding):
    """conv with a padding_mode is conv of the padded input: its input gradient is the padded
    input's gradient folded back (checked against the adjoint identity)."""
    rng = np.random.default_rng(6)
    x, w = _data(rng, (2, 3, 7, 6), (4, 3, 3, 2))
    y = cb.conv2d(x, w, padding=padding, padding_mode=mode)
    gy = rng.standard_normal(y.shape)
    gx = cb.grad.conv2d_input(x.shape, w, gy, padding=padding, padding_mode=mode)
    gw = cb.grad.conv2d_weight(x, w.shape, gy, padding=padding, padding_mode=mode)
    # <conv(x, w), gy> is linear in x and in w: its gradients are gx and gw.
    dx, dw = _data(rng, x.shape, w.shape)
    lhs_x = np.vdot(cb.conv2d(dx, w, padding=padding, padding_mode=mode), gy)
    lhs_w = np.vdot(cb.conv2d(x, dw, padding=padding, padding_mode=mode), gy)
    np.testing.assert_allclose(np.vdot(dx, gx), lhs_x, rtol=1e-10)
    np.testing.assert_allclose(np.vdot(dw, gw), lhs_w, rtol=1e-10)


def test_wrong_grad_output_shape_names_both_sizes():
    w, gy = np.ones((4, 3, 3, 3)), np.ones((2, 4, 5, 5))
    with pytest.raises(cb.ShapeError, match=r"conv2d_input: grad_output has size \[2, 4, 5, 5\]"
                                            r", but the forward call's output has size "
                                            r"\[2, 4, 6, 6\]"):
        cb.grad.conv2d_input((2, 3, 8, 8), w, gy)
    with pytest.raises(cb.DTypeError):
        cb.grad.conv2d_input((2, 3, 8, 8), w.astype(np.float32), np.ones((2, 4, 6, 6)))
    with pytest.raises(cb.ShapeError, match="expected a 4-D weight"):
        cb.grad.conv2d_weight(np.ones((2, 3, 8)), (4, 3, 3), np.ones((2, 4, 6)))


def test_gradients_are_planned_through_lowerings():
    # im2col has a weight-gradient kernel of its own (tests/test_grad_kernels.py).
    e = cb.explain((2, 3, 9, 9), (4, 3, 3, 3), op="conv_weight_grad", padding=1,
                   backend="naive")
    assert e.output_shape == (4, 3, 3, 3) and e.choice == "naive"
    assert e.steps[0].startswith("conv_weight_grad -> conv")
    e = cb.explain((2, 3, 9, 9), op="max_pool_input_grad", kernel_size=2)
    assert e.steps[0].startswith("max_pool_input_grad -> max_pool_with_indices")
    assert e.output_shape == (2, 3, 9, 9)
