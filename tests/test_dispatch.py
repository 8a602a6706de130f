"""The registry, the default-backend precedence, plug-ins and explain() (docs/api.md §5)."""

import threading
import uuid

import numpy as np
import pytest

import convbackends as cb
from convbackends import dispatch
from convbackends.backends.base import Backend


class Recorder(Backend):
    """A plug-in that computes with im2col and remembers that it ran."""

    limits = "2-D convolution only"

    def __init__(self, name):
        self.name = name
        self.calls = 0

    def supports(self, op, spec):
        if op != "conv" or spec.ndim != 2:
            return "the recorder only runs 2-D convolutions"
        return None

    def conv(self, x, weight, bias, spec):
        self.calls += 1
        return cb.get_backend("im2col").conv(x, weight, bias, spec)


@pytest.fixture
def plugin(monkeypatch):
    backend = Recorder(f"recorder_{uuid.uuid4().hex[:8]}")
    cb.register_backend(backend)
    yield backend
    dispatch.registry._registry.pop(backend.name, None)


@pytest.fixture
def clean_defaults(monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    cb.set_global_backend(None)
    yield
    cb.set_global_backend(None)


def _data():
    rng = np.random.default_rng(3)
    return rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 3))


def test_registered_names_in_order():
    names = cb.backends()
    assert names[:7] == ["naive", "im2col", "fft", "winograd", "numba", "cuda", "auto"]
    assert {"naive", "im2col", "auto"} <= set(cb.available_backends())


def test_unknown_backend_lists_registered_names():
    with pytest.raises(cb.UnknownBackendError) as info:
        cb.get_backend("cudnn")
    assert "Unknown backend 'cudnn'" in str(info.value)
    assert "naive, im2col, fft, winograd, numba, cuda, auto" in str(info.value)
    x, w = _data()
    with pytest.raises(KeyError):
        cb.conv2d(x, w, backend="cudnn")
    with pytest.raises(cb.UnknownBackendError):
        with cb.set_backend("nope"):
            pass


def test_plugin_reached_by_name_set_backend_and_global(plugin, clean_defaults):
    x, w = _data()
    ref = cb.conv2d(x, w, backend="naive")
    np.testing.assert_allclose(cb.conv2d(x, w, backend=plugin.name), ref, rtol=1e-12)
    assert plugin.calls == 1
    with cb.set_backend(plugin.name):
        cb.conv2d(x, w)
    assert plugin.calls == 2
    cb.set_global_backend(plugin.name)
    cb.conv2d(x, w)
    assert plugin.calls == 3
    cb.set_global_backend(None)
    cb.conv2d(x, w)
    assert plugin.calls == 3
    assert plugin.name in cb.backends() and plugin.name in cb.available_backends()


def test_register_refuses_taken_name_and_incomplete_objects(plugin):
    with pytest.raises(ValueError, match="already registered"):
        cb.register_backend(Recorder(plugin.name))
    with pytest.raises(ValueError, match="already registered"):
        cb.register_backend(Recorder("naive"))

    class NoOps:
        name = "noops"

        def available(self):
            return None

        def supports(self, op, spec):
            return None

    with pytest.raises(TypeError, match="implements none of the ops"):
        cb.register_backend(NoOps())


def test_precedence(plugin, clean_defaults, monkeypatch):
    x, w = _data()
    # env var < global < set_backend < call argument
    monkeypatch.setenv(dispatch.ENV_VAR, plugin.name)
    assert dispatch.current_backend() is plugin
    cb.set_global_backend("naive")
    assert dispatch.current_backend().name == "naive"
    with cb.set_backend("im2col"):
        assert dispatch.current_backend().name == "im2col"
        with cb.set_backend(plugin.name):
            assert dispatch.current_backend() is plugin
            calls = plugin.calls
            cb.conv2d(x, w, backend="naive")       # the call's argument wins
            assert plugin.calls == calls
        assert dispatch.current_backend().name == "im2col"
    assert dispatch.current_backend().name == "naive"
    cb.set_global_backend(None)
    assert dispatch.current_backend() is plugin
    monkeypatch.delenv(dispatch.ENV_VAR)
    assert dispatch.current_backend().name == "auto"


def test_set_backend_is_context_local(clean_defaults):
    seen = {}
    inside, release = threading.Event(), threading.Event()

    def other_thread():
        inside.wait()
        seen["other"] = dispatch.current_backend().name
        release.set()

    t = threading.Thread(target=other_thread)
    t.start()
    with cb.set_backend("naive"):
        inside.set()
        release.wait(10)
        seen["this"] = dispatch.current_backend().name
    t.join()
    assert seen == {"this": "naive", "other": "auto"}


def test_set_backend_restores_on_error(clean_defaults):
    with pytest.raises(RuntimeError):
        with cb.set_backend("naive"):
            raise RuntimeError("boom")
    assert dispatch.current_backend().name == "auto"


def test_named_backend_that_declines_raises_unsupported(plugin):
    x = np.random.default_rng(0).standard_normal((1, 2, 9))
    w = np.random.default_rng(1).standard_normal((3, 2, 3))
    with pytest.raises(cb.UnsupportedError) as info:
        cb.conv1d(x, w, backend=plugin.name)
    msg = str(info.value)
    assert f"backend {plugin.name!r} cannot run this conv" in msg
    assert "only runs 2-D convolutions" in msg
    assert "Backends that can:" in msg and "naive" in msg and "im2col" in msg
    with pytest.raises(cb.UnsupportedError, match="im2col computes convolutions only"):
        cb.max_pool1d(x, 2, backend="im2col")


def test_unavailable_backend_raises_backend_unavailable():
    class Absent(Backend):
        name = f"absent_{uuid.uuid4().hex[:8]}"

        def available(self):
            return "needs a quantum accelerator"

        def conv(self, x, weight, bias, spec):
            raise AssertionError("must not run")

    b = cb.register_backend(Absent())
    try:
        x, w = _data()
        with pytest.raises(cb.BackendUnavailableError, match="needs a quantum accelerator"):
            cb.conv2d(x, w, backend=b.name)
        assert b.name not in cb.available_backends()
        assert cb.conv2d(x, w, backend="auto").shape == (2, 4, 7, 6)   # auto skips it
    finally:
        dispatch.registry._registry.pop(b.name)


def test_auto_never_raises_unsupported_while_someone_can():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 7, 7))
    y = cb.max_pool2d(x, 3, 2, backend="auto")
    ref = cb.max_pool2d(x, 3, 2, backend="naive")
    np.testing.assert_array_equal(y, ref)


def test_entry_point_discovery(monkeypatch):
    name = f"ep_{uuid.uuid4().hex[:8]}"

    class FakeEntryPoint:
        def __init__(self):
            self.name = name

        def load(self):
            return type("EPBackend", (Recorder,), {"__init__": lambda s: Recorder.__init__(s, name)})

    import importlib.metadata as md
    monkeypatch.setattr(md, "entry_points", lambda group: [FakeEntryPoint()]
                        if group == dispatch.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(dispatch.registry, "_entry_points_loaded", False)
    try:
        assert name in cb.backends()
        assert isinstance(cb.get_backend(name), Recorder)
    finally:
        dispatch.registry._registry.pop(name, None)


def test_explain_report():
    e = cb.explain((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
    assert e.output_shape == (8, 64, 56, 56)
    assert e.macs == 8 * 64 * 56 * 56 * 64 * 9
    assert e.choice in cb.available_backends()
    assert e.reason
    im2col = e.backends["im2col"]
    assert im2col.supported and im2col.workspace_bytes == 8 * 64 * 9 * 56 * 56 * 4
    assert set(e.backends) == {n for n in cb.backends() if n != "auto"}
    text = str(e)
    assert "choice:" in text and "im2col" in text and "924,844,032" in text
    pool = cb.explain((1, 3, 8, 8), (4, 3, 1, 1), backend="naive")
    assert pool.choice == "naive" and pool.reason == "backend 'naive' named explicitly"
    t = cb.explain((1, 4, 5, 5), (4, 2, 3, 3), op="conv_transpose", stride=2, dtype="float64")
    assert t.output_shape == (1, 2, 11, 11) and t.macs == 4 * 25 * 2 * 9


def test_explain_unbatched_and_padding_mode():
    e = cb.explain((3, 10, 10), (4, 3, 3, 3), padding=1, padding_mode="reflect")
    assert e.output_shape == (4, 10, 10)
    assert e.spec.padding == ((0, 0), (0, 0)) and e.spec.input_spatial == (12, 12)


def test_default_backend_without_the_op_leaves_it_to_auto(clean_defaults):
    """set_backend("im2col") runs a model's convolutions on im2col and its pooling on auto;
    naming im2col for a pooling call still raises."""
    x = np.random.default_rng(2).standard_normal((1, 2, 6, 6))
    with cb.set_backend("im2col"):
        np.testing.assert_array_equal(cb.max_pool2d(x, 2), cb.max_pool2d(x, 2, backend="naive"))
        _, reason = dispatch.resolve("conv", cb.explain(x.shape, (3, 2, 3, 3)).spec)
        assert reason == "backend 'im2col' set as the default"
    with pytest.raises(cb.UnsupportedError):
        cb.max_pool2d(x, 2, backend="im2col")


def _entry_points(monkeypatch, *eps):
    import importlib.metadata as md
    monkeypatch.setattr(md, "entry_points", lambda group: list(eps)
                        if group == dispatch.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(dispatch.registry, "_entry_points_loaded", False)
    monkeypatch.setattr(dispatch.registry, "_plugin_problems", [])


class _EP:
    def __init__(self, name, load):
        self.name, self.load = name, load


def test_broken_entry_points_are_reported_and_never_replace_a_builtin(monkeypatch):
    im2col = cb.get_backend("im2col")

    def broken():
        raise ImportError("no module named quantum")

    _entry_points(monkeypatch,
                  _EP("broken", broken),
                  _EP("hollow", lambda: type("Hollow", (), {"name": "hollow"})),
                  _EP("impostor", lambda: Recorder("im2col")))
    names = cb.backends()
    assert "broken" not in names and "hollow" not in names
    assert cb.get_backend("im2col") is im2col
    problems = dispatch.plugin_report()
    assert len(problems) == 3
    assert problems[0].startswith("broken: fails to load (ImportError: no module named quantum")
    assert problems[1] == "hollow: backend 'hollow' lacks the method available()"
    assert problems[2] == "impostor: takes the registered name 'im2col'; left out"
    x, w = _data()
    np.testing.assert_allclose(cb.conv2d(x, w), cb.conv2d(x, w, backend="naive"), rtol=1e-12)


def test_registration_errors_are_conv_errors():
    with pytest.raises(cb.RegistrationError, match="already registered") as info:
        cb.register_backend(Recorder("naive"))
    assert isinstance(info.value, cb.ConvError) and isinstance(info.value, ValueError)
    with pytest.raises(cb.RegistrationError, match="non-empty string `name`") as info:
        cb.register_backend(object())
    assert isinstance(info.value, TypeError)


def test_environment_setting_error_names_the_variable(monkeypatch, clean_defaults):
    monkeypatch.setenv(dispatch.ENV_VAR, "im2cl")
    x, w = _data()
    with pytest.raises(cb.UnknownBackendError, match="CONVBACKENDS_BACKEND=im2cl: Unknown "
                                                     "backend 'im2cl'"):
        cb.conv2d(x, w)
