"""Arrays of other libraries as inputs (docs/api.md §1.1): PyTorch CPU tensors and anything
with ``__dlpack__`` or ``__array__`` are read without a copy; results are NumPy arrays."""

import uuid

import numpy as np
import pytest

import convbackends as cb
from convbackends import dispatch
from convbackends.backends.base import Backend

torch = pytest.importorskip("torch")


class InputRecorder(Backend):
    """A plug-in that keeps the input array it was handed, then computes with im2col."""

    limits = "convolution only"

    def __init__(self, name):
        self.name = name
        self.seen = []

    def supports(self, op, spec):
        return None if op == "conv" else "the recorder only runs convolutions"

    def conv(self, x, weight, bias, spec):
        self.seen.append((x, weight))
        return cb.get_backend("im2col").conv(x, weight, bias, spec)


class DLPackOnly:
    """Memory offered through DLPack alone (no ``__array__``), as some libraries do."""

    def __init__(self, tensor):
        self._tensor = tensor
        self.shape = tuple(tensor.shape)
        self.ndim = tensor.ndim

    def __dlpack__(self, **kwargs):
        return self._tensor.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._tensor.__dlpack_device__()


@pytest.fixture
def recorder():
    backend = InputRecorder(f"input_recorder_{uuid.uuid4().hex[:8]}")
    cb.register_backend(backend)
    yield backend
    dispatch.registry._registry.pop(backend.name, None)


def _tensors(*shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g) for s in shapes]


def test_torch_tensors_are_not_copied(recorder):
    x, w = _tensors((2, 3, 9, 8), (4, 3, 3, 3))
    y = cb.conv2d(x, w, padding=1, backend=recorder.name)
    seen_x, seen_w = recorder.seen[-1]
    assert np.shares_memory(seen_x, x.numpy()) and np.shares_memory(seen_w, w.numpy())
    assert type(y) is np.ndarray and y.dtype == np.float32
    np.testing.assert_allclose(y, torch.nn.functional.conv2d(x, w, padding=1).numpy(),
                               rtol=1e-5, atol=1e-5)


def test_dlpack_only_objects_are_read_without_a_copy(recorder):
    x, w = _tensors((1, 2, 7, 7), (3, 2, 3, 3), seed=1)
    y = cb.conv2d(DLPackOnly(x), DLPackOnly(w), backend=recorder.name)
    seen_x, seen_w = recorder.seen[-1]
    assert np.shares_memory(seen_x, x.numpy()) and np.shares_memory(seen_w, w.numpy())
    np.testing.assert_array_equal(y, cb.conv2d(x.numpy(), w.numpy(), backend=recorder.name))


def test_strided_tensor_views_give_the_results_of_their_copies():
    (base,), (w,) = _tensors((2, 9, 3, 8)), _tensors((4, 3, 3, 3), seed=2)
    x = base.permute(0, 2, 1, 3)          # (2, 3, 9, 8), not contiguous
    assert not x.is_contiguous()
    np.testing.assert_array_equal(cb.conv2d(x, w, backend="im2col"),
                                  cb.conv2d(x.contiguous().numpy(), w.numpy(),
                                            backend="im2col"))


@pytest.mark.parametrize("call", [
    lambda t: cb.conv_transpose1d(t[:, :, 0], torch.ones(3, 2, 4), stride=2),
    lambda t: cb.max_pool2d(t, 3, stride=2, padding=1, return_indices=True),
    lambda t: cb.avg_pool2d(t, 2, ceil_mode=True, count_include_pad=False),
    lambda t: cb.adaptive_max_pool2d(t, (2, 3)),
    lambda t: cb.global_avg_pool(t),
], ids=["conv_transpose1d", "max_pool2d", "avg_pool2d", "adaptive_max_pool2d",
        "global_avg_pool"])
def test_every_family_takes_tensors(call):
    (t,) = _tensors((2, 3, 9, 8), seed=3)
    got, want = call(t), call(t.numpy())
    for g, e in zip(got if isinstance(got, tuple) else (got,),
                    want if isinstance(want, tuple) else (want,)):
        assert type(g) is np.ndarray
        np.testing.assert_array_equal(g, e)


def test_layers_and_state_dicts_take_tensors():
    torch_conv = torch.nn.Conv2d(3, 5, 3, padding=1)
    layer = cb.nn.Conv2d(3, 5, 3, padding=1)
    layer.load_state_dict(torch_conv.state_dict())        # tensors, no .numpy()
    (x,) = _tensors((2, 3, 8, 8), seed=4)
    with torch.no_grad():
        want = torch_conv(x).numpy()
    y = layer.eval()(x)
    assert type(y) is np.ndarray
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)


def test_inputs_are_not_modified():
    x, w = _tensors((1, 2, 6, 6), (2, 2, 3, 3), seed=5)
    x0, w0 = x.clone(), w.clone()
    cb.conv2d(x, w, padding=1, padding_mode="reflect")
    assert torch.equal(x, x0) and torch.equal(w, w0)


def test_tensors_numpy_cannot_read_raise_argument_type_errors():
    w = torch.ones(1, 1, 3, 3)
    with pytest.raises(cb.ArgumentTypeError, match="conv2d: cannot read a Tensor .*requires grad"):
        cb.conv2d(torch.ones(1, 1, 5, 5, requires_grad=True), w)
    with pytest.raises(cb.ArgumentTypeError, match="BFloat16"):
        cb.conv2d(torch.ones(1, 1, 5, 5, dtype=torch.bfloat16), w)
