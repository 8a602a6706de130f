"""convbackends.distributed (docs/api.md §13): Dask arrays chunked along the batch and in
space give what the in-memory calls give, on threads, synchronously and on a two-process
``distributed.LocalCluster``."""

import importlib
import os
import pickle
import random
import subprocess
import sys
import uuid

import numpy as np
import pytest

import convbackends as cb
from convbackends import dispatch
from convbackends.backends.base import Backend

da = pytest.importorskip("dask.array", reason="needs the extra convbackends[distributed]")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed",
                                  reason="needs the extra convbackends[distributed]")
cbd = importlib.import_module("convbackends.distributed")
from convbackends.distributed.halo import plan_axis  # noqa: E402


@pytest.fixture(scope="module")
def client():
    # distributed's nanny puts MALLOC_TRIM_THRESHOLD_ and thread limits into os.environ
    # for its workers; later tests of this process must not see them.
    saved = dict(os.environ)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", memory_limit="1GiB")
    try:
        with cluster, distributed.Client(cluster, set_as_default=False) as c:
            yield c
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _data(x_shape, w_shape=None, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    return x if w_shape is None else (x, rng.standard_normal(w_shape))


def _sync(y):
    return y.compute(scheduler="synchronous")


# -- the halo plan, against in-memory calls on the halo'd blocks (no Dask) ------------------

def _blocks_by_plan(x, plan):
    starts = np.cumsum((0,) + plan.in_chunks)
    last = len(plan.in_chunks) - 1
    for j, (a, b, pad_before, pad_after) in enumerate(plan.windows):
        lo = starts[j] - (plan.depth[0] if j else 0)
        hi = starts[j + 1] + (plan.depth[1] if j < last else 0)
        yield x[..., lo:hi][..., a:b], (pad_before, pad_after)


def test_halo_plans_reproduce_the_whole_axis():
    rng, checked = random.Random(0), 0
    for trial in range(300):
        length, kernel, stride = rng.randint(3, 30), rng.randint(1, 5), rng.randint(1, 4)
        op = rng.choice(["conv", "max", "avg_include", "avg_exclude"])
        dilation = rng.randint(1, 3) if op in ("conv", "max") else 1
        if dilation * (kernel - 1) + 1 > length:
            continue
        if op == "conv":
            pads, ceil_mode = (rng.randint(0, 4), rng.randint(0, 4)), False
        else:
            p = rng.randint(0, kernel // 2)
            pads, ceil_mode = (p, p), rng.random() < 0.5
        cuts = sorted(rng.sample(range(1, length), min(rng.randint(0, 5), length - 1)))
        chunks = [b - a for a, b in zip([0] + cuts, cuts + [length])]
        x = np.random.default_rng(trial).standard_normal((1, 1, length))

        def call(a, pad):
            if op == "conv":
                return cb.conv1d(a, np.arange(1.0, kernel + 1).reshape(1, 1, kernel),
                                 stride=stride, dilation=dilation, padding=[pad],
                                 backend="naive")
            if op == "max":
                return cb.max_pool1d(a, kernel, stride, [pad], dilation, ceil_mode)
            return cb.avg_pool1d(a, kernel, stride, [pad], ceil_mode,
                                 count_include_pad=op == "avg_include")
        whole = call(x, pads)
        plan = plan_axis(chunks, kernel, stride, dilation, pads, ceil_mode)
        parts = [call(block, pad) for block, pad in _blocks_by_plan(x, plan)]
        assert [p.shape[-1] for p in parts] == list(plan.out_chunks)
        np.testing.assert_array_equal(np.concatenate(parts, -1), whole,
                                      err_msg=f"{op} {chunks} {plan}")
        checked += 1
    assert checked > 200


def test_aligned_pooling_needs_no_halo():
    plan = plan_axis((8, 8, 6), 2, 2, 1, (0, 0))
    assert plan.depth == (0, 0) and plan.out_chunks == (4, 4, 3)
    plan = plan_axis((8, 8, 8), 3, 1, 1, (1, 1))     # a 3-wide window reads one each side
    assert plan.depth == (1, 1) and plan.out_chunks == (8, 8, 8)


def test_chunks_smaller_than_the_halo_are_merged():
    plan = plan_axis((1, 7, 2, 6), 5, 1, 1, (2, 2))
    assert min(plan.in_chunks) >= 2 and sum(plan.in_chunks) == 16
    assert sum(plan.out_chunks) == 16


# -- in space ---------------------------------------------------------------------------

SPATIAL_CONVS = [
    ("conv3d", (2, 3, 11, 9, 10), (4, 3, 3, 3, 3), (1, 3, 4, 5, 3), dict(padding=1)),
    ("conv2d", (3, 2, 17, 13), (4, 2, 3, 3), (2, 1, 5, 6), dict(stride=2, padding=1)),
    ("conv2d", (1, 2, 15, 14), (2, 2, 3, 3), (1, 2, 4, 4), dict(stride=3, padding=(2, 0),
                                                                dilation=2)),
    ("conv2d", (2, 4, 12, 11), (6, 2, 3, 2), (1, 4, 5, 3), dict(groups=2, padding="same")),
    ("conv2d", (1, 2, 13, 12), (3, 2, 5, 3), (1, 2, 4, 5),
     dict(padding=[(2, 1), (0, 2)])),
    ("conv2d", (2, 2, 14, 9), (3, 2, 3, 3), (1, 2, 5, 4),
     dict(padding="same", padding_mode="reflect")),
    ("conv3d", (1, 2, 9, 8, 7), (2, 2, 3, 3, 3), (1, 2, 4, 3, 7),
     dict(padding=1, padding_mode="circular")),
    ("conv1d", (2, 3, 40), (5, 3, 4), (1, 3, 7), dict(stride=3, padding=2,
                                                      padding_mode="replicate")),
]


@pytest.mark.parametrize("func, x_shape, w_shape, chunks, kwargs", SPATIAL_CONVS)
def test_convolutions_chunked_in_space_equal_the_whole_call(func, x_shape, w_shape, chunks,
                                                            kwargs):
    x, w = _data(x_shape, w_shape)
    b = np.linspace(-1, 1, w_shape[0])
    xd = da.from_array(x, chunks=chunks)
    y = getattr(cbd, func)(xd, w, b, backend="naive", **kwargs)
    whole = getattr(cb, func)(x, w, b, backend="naive", **kwargs)
    assert y.shape == whole.shape and y.dtype == whole.dtype
    np.testing.assert_array_equal(_sync(y), whole)       # the same backend: bitwise
    auto = _sync(getattr(cbd, func)(xd.astype(np.float32), w.astype(np.float32),
                                    b.astype(np.float32), **kwargs))
    err = np.linalg.norm(auto - whole) / np.linalg.norm(whole)
    assert err < 1e-5


def test_strides_that_divide_the_chunks_give_chunks_of_chunk_over_stride():
    x, w = _data((1, 2, 24, 24), (3, 2, 3, 3))
    y = cbd.conv2d(da.from_array(x, chunks=(1, 2, 8, 12)), w, stride=2, padding=1)
    assert y.chunks[2:] == ((4, 4, 4), (6, 6))


@pytest.mark.parametrize("func, kwargs", [
    ("max_pool3d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("max_pool3d", dict(kernel_size=2, dilation=2)),
    ("avg_pool3d", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                        count_include_pad=False)),
    ("avg_pool3d", dict(kernel_size=(2, 3, 2), stride=(2, 1, 3), padding=(1, 1, 0),
                        ceil_mode=True)),
    ("avg_pool3d", dict(kernel_size=2, divisor_override=3)),
])
def test_pooling_chunked_in_space_equals_the_whole_call(func, kwargs):
    x = _data((2, 3, 13, 11, 9))
    x[0, 0, :3] = -np.inf
    y = getattr(cbd, func)(da.from_array(x, chunks=(1, 2, 4, 5, 3)), **kwargs)
    np.testing.assert_array_equal(_sync(y), getattr(cb, func)(x, **kwargs))


def test_unbatched_input_returns_unbatched():
    x, w = _data((2, 12, 10), (3, 2, 3, 3))
    y = cbd.conv2d(da.from_array(x, chunks=(2, 5, 4)), w, padding=1, backend="naive")
    assert y.ndim == 3
    np.testing.assert_array_equal(_sync(y), cb.conv2d(x, w, padding=1, backend="naive"))


# -- along the batch ---------------------------------------------------------------------

BATCH_ONLY = [
    ("adaptive_avg_pool2d", lambda m, x: m.adaptive_avg_pool2d(x, (3, 4))),
    ("adaptive_max_pool2d", lambda m, x: m.adaptive_max_pool2d(x, 3, return_indices=True)),
    ("max_pool2d indices", lambda m, x: m.max_pool2d(x, 3, 2, 1, return_indices=True)),
    ("global_avg_pool", lambda m, x: m.global_avg_pool(x)),
    ("conv_transpose2d", lambda m, x: m.conv_transpose2d(
        x, np.ones((3, 2, 3, 3)), stride=2, padding=1, output_padding=1, backend="naive")),
]


@pytest.mark.parametrize("name, call", BATCH_ONLY, ids=[n for n, _ in BATCH_ONLY])
def test_ops_that_read_the_whole_plane_chunk_along_the_batch(name, call):
    x = _data((5, 3, 11, 10))
    got = call(cbd, da.from_array(x, chunks=(2, 1, 11, 10)))
    want = call(cb, x)
    for g, e in zip(got if isinstance(got, tuple) else (got,),
                    want if isinstance(want, tuple) else (want,)):
        assert g.chunks[0] == (2, 2, 1) and g.dtype == e.dtype
        np.testing.assert_array_equal(_sync(g), e)
    with pytest.raises(cb.UnsupportedError, match=r"chunked along spatial axes \[3\].*"
                                                  r"x\.rechunk\(\{3: -1\}\)"):
        call(cbd, da.from_array(x, chunks=(2, 3, 11, 5)))


def test_max_unpool_takes_dask_indices():
    x = _data((4, 2, 9, 8))
    values, indices = cbd.max_pool2d(da.from_array(x, chunks=(3, 2, 9, 8)), 2,
                                     return_indices=True)
    y = cbd.max_unpool2d(values, indices, 2, output_size=(9, 8))
    v, i = cb.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(_sync(y), cb.max_unpool2d(v, i, 2, output_size=(9, 8)))


# -- errors, weights, schedulers -----------------------------------------------------------

def test_bad_calls_raise_before_any_graph_is_built():
    x, w = _data((2, 3, 8, 8), (4, 2, 3, 3))
    xd = da.from_array(x, chunks=(1, 3, 4, 4))
    with pytest.raises(cb.ShapeError, match=r"expected input\[2, 3, 8, 8\] to have 2 "
                                            r"channels, but got 3 channels instead"):
        cbd.conv2d(xd, w)
    with pytest.raises(cb.DTypeError, match="input dtype float64 and weight dtype float32"):
        cbd.conv2d(xd, w[:, :1].repeat(3, 1).astype(np.float32))
    with pytest.raises(cb.UnknownBackendError, match="im2cl"):
        cbd.conv2d(xd, w[:, :1].repeat(3, 1), backend="im2cl")
    with pytest.raises(cb.UnsupportedError, match="winograd"):
        cbd.conv2d(xd, w[:, :1].repeat(3, 1), stride=2, backend="winograd")
    with pytest.raises(cb.UnsupportedError, match="dask.array.store"):
        cbd.max_pool2d(xd, 2, out=np.empty((2, 3, 4, 4)))
    with pytest.raises(cb.ShapeError, match="padding_mode must be one of"):
        cbd.conv2d(xd, w[:, :1].repeat(3, 1), padding=1, padding_mode="mirror")


def test_weights_enter_the_graph_once():
    w = np.ones((32, 32, 3, 3, 3), np.float32)                      # 110 kB
    x = da.zeros((1, 32, 32, 32, 32), dtype=np.float32)
    sizes = {}
    for chunk in (16, 8):
        graph = dict(cbd.conv3d(x.rechunk((1, 32) + (chunk,) * 3), w, padding=1)
                     .__dask_graph__())
        holders = [k for k, v in graph.items()
                   if isinstance(getattr(v, "value", None), np.ndarray)
                   and v.value.shape == w.shape]
        assert len(holders) == 1
        sizes[chunk] = len(pickle.dumps(graph))
    # 8 blocks -> 64 blocks: the graph grows by far less than one weight per block
    assert sizes[8] - sizes[16] < 56 * w.nbytes / 10


class BlockRecorder(Backend):
    """A plug-in that counts its calls, then computes with im2col."""

    limits = "convolution only"

    def __init__(self, name):
        self.name = name
        self.calls = 0

    def supports(self, op, spec):
        return None if op == "conv" else "the recorder only runs convolutions"

    def conv(self, x, weight, bias, spec):
        self.calls += 1
        return cb.get_backend("im2col").conv(x, weight, bias, spec)


def test_the_default_backend_where_the_graph_is_built_runs_the_blocks():
    recorder = BlockRecorder(f"block_recorder_{uuid.uuid4().hex[:8]}")
    cb.register_backend(recorder)
    try:
        x, w = _data((4, 2, 8, 8), (3, 2, 3, 3))
        with cb.set_backend(recorder.name):
            y = cbd.conv2d(da.from_array(x, chunks=(1, 2, 8, 8)), w, padding=1)
            pooled = cbd.max_pool2d(da.from_array(x, chunks=(1, 2, 8, 8)), 2)
        y.compute(scheduler="threads")          # worker threads: no set_backend block there
        assert recorder.calls == 4
        np.testing.assert_array_equal(pooled.compute(scheduler="threads"),
                                      cb.max_pool2d(x, 2))   # no max_pool: left to auto
    finally:
        dispatch.registry._registry.pop(recorder.name, None)


def test_every_scheduler_gives_the_same_result(client):
    x, w = _data((4, 3, 14, 13), (5, 3, 3, 3))
    x, w = x.astype(np.float32), w.astype(np.float32)
    xd = da.from_array(x, chunks=(2, 3, 5, 7))
    y = cbd.conv2d(xd, w, stride=2, padding=1, backend="numba")
    on_cluster = client.compute(y).result()
    np.testing.assert_array_equal(on_cluster, y.compute(scheduler="threads"))
    np.testing.assert_array_equal(on_cluster, _sync(y))
    np.testing.assert_allclose(on_cluster, cb.conv2d(x, w, stride=2, padding=1),
                               rtol=1e-5, atol=1e-5)
    workers = client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2


def test_forward_over_batch_chunks(client):
    model = cb.models.lenet5(rng=0).eval()
    x = _data((7, 1, 32, 32)).astype(np.float32)
    y = cbd.forward(model, da.from_array(x, chunks=(3, 1, 32, 32)))
    assert y.shape == (7, 10) and y.chunks == ((3, 3, 1), (10,))
    got = client.compute(y).result()
    np.testing.assert_array_equal(got, np.concatenate([model(x[:3]), model(x[3:6]),
                                                       model(x[6:])]))
    np.testing.assert_allclose(got, model(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(cb.UnsupportedError, match="training mode"):
        cbd.forward(model.train(), da.from_array(x, chunks=3))
    with pytest.raises(cb.UnsupportedError, match=r"x\.rechunk\(\{2: -1\}\)"):
        cbd.forward(model.eval(), da.from_array(x, chunks=(3, 1, 16, 32)))


def test_import_needs_dask_and_convbackends_does_not_import_it(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("convbackends.distributed")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "dask.array", None)
    with pytest.raises(ImportError, match=r'pip install "convbackends\[distributed\]"'):
        importlib.import_module("convbackends.distributed")
    code = "import sys, convbackends; print(any(m.startswith('dask') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_tensors_and_numpy_arrays_become_one_chunk():
    torch = pytest.importorskip("torch")
    x, w = _data((2, 3, 9, 8), (4, 3, 3, 3))
    y = cbd.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1, backend="naive")
    assert y.numblocks == (1, 1, 1, 1)
    np.testing.assert_array_equal(_sync(y), cb.conv2d(x, w, padding=1, backend="naive"))
