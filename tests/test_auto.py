"""The "auto" policy: its rules, its fall-backs, and the opt-in autotuner with its disk cache."""

import json
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import convbackends as cb
from convbackends import dispatch
from convbackends.dispatch import autotune, policy
from convbackends.errors import UnsupportedError
from convbackends.spec import conv_spec, pool_spec
from reference import oracle


def spec_of(x_shape, w_shape, dtype="float32", **kwargs):
    return conv_spec("test", x_shape, w_shape, (w_shape[0],), dtype=dtype, **kwargs)[0]


DEPTHWISE = spec_of((2, 32, 28, 28), (32, 1, 3, 3), padding=1, groups=32)
LARGE = spec_of((1, 4, 64, 64), (4, 4, 15, 15), padding=7)
DENSE = spec_of((2, 16, 14, 14), (16, 16, 3, 3), padding=1)
POOL = pool_spec("test", "max_pool", (2, 8, 16, 16), 2, 3, 2, 1)[0]


class FakeBackend:
    """A backend whose speed and support are set by the test; counts its calls."""

    accepts_device_arrays = False

    def __init__(self, name, seconds=0.0, available=None, unsupported=None,
                 ops=("conv", "conv_transpose")):
        self.name, self.seconds, self.ops = name, seconds, ops
        self._available, self._unsupported = available, unsupported
        self.calls = 0

    def available(self):
        return self._available

    def supports(self, op, spec):
        return self._unsupported if op in self.ops else f"{self.name} lacks {op}"

    def conv(self, x, weight, bias, spec):
        self.calls += 1
        time.sleep(self.seconds)
        return np.zeros(spec.output_shape, spec.dtype)

    max_pool = conv


@pytest.fixture
def registry(monkeypatch):
    """Replace the registry by fake backends: ``registry(FakeBackend(...), ...)``."""
    def install(*fakes):
        table = {f.name: f for f in fakes}
        table["auto"] = policy.AutoPolicy(lambda: list(table), table.__getitem__)
        return table["auto"]
    return install


@pytest.fixture(autouse=True)
def autotune_off(monkeypatch, tmp_path):
    """Every test starts with the tuner off and a private, empty cache directory."""
    monkeypatch.delenv(autotune.ENV_AUTOTUNE, raising=False)
    monkeypatch.setenv(autotune.ENV_CACHE_DIR, str(tmp_path / "cache"))
    autotune.set_autotune(None)
    yield
    autotune.set_autotune(None)


# ---------------------------------------------------------------------------------- rules

def test_depthwise_rule_prefers_numba(registry):
    auto = registry(FakeBackend("im2col"), FakeBackend("numba"))
    backend, reason = auto.choose("conv", DEPTHWISE)
    assert backend.name == "numba" and reason.startswith("rule depthwise")


def test_rule_passes_over_an_unavailable_backend(registry):
    auto = registry(FakeBackend("im2col"), FakeBackend("numba", available="no numba here"))
    backend, reason = auto.choose("conv", DEPTHWISE)
    assert backend.name == "im2col" and reason.startswith("default order")


def test_large_kernel_goes_to_fft_if_present(registry):
    auto = registry(FakeBackend("im2col"), FakeBackend("fft"))
    backend, reason = auto.choose("conv", LARGE)
    assert backend.name == "fft" and reason.startswith("rule large-kernel")
    assert auto.choose("conv", LARGE.replace(dtype="float64"))[0].name == "fft"
    assert auto.choose("conv", LARGE.replace(stride=(2, 2)))[0].name == "im2col"
    auto = registry(FakeBackend("im2col"))           # fft not even registered
    assert auto.choose("conv", LARGE)[0].name == "im2col"


def test_depthwise_stays_with_numba_even_for_large_kernels(registry):
    big = spec_of((1, 16, 64, 64), (16, 1, 31, 31), padding=15, groups=16)
    auto = registry(FakeBackend("im2col"), FakeBackend("numba"), FakeBackend("fft"))
    assert auto.choose("conv", big)[0].name == "numba"
    auto = registry(FakeBackend("im2col"), FakeBackend("fft"))
    assert auto.choose("conv", big)[0].name == "im2col"    # no rule sends depthwise to fft


@pytest.mark.parametrize("x_shape, w_shape, kwargs, expected, rule", [
    ((4, 1, 3200), (80, 1, 251), {}, "numba", "few-channels"),         # SincNet
    ((4, 64, 4000), (64, 64, 31), {"padding": 15}, "fft", "large-kernel"),
    ((4, 16, 1000), (16, 16, 9), {"padding": 4}, "im2col", "default order"),
    ((4, 16, 32, 32), (16, 16, 3, 3), {"padding": 1}, "numba", "few-channels"),
    ((4, 16, 32, 32), (16, 16, 3, 3), {"stride": 2}, "numba", "few-channels"),
    ((4, 3, 224, 224), (64, 3, 7, 7), {"stride": 2, "padding": 3}, "im2col", "default order"),
    ((2, 16, 8, 8, 8), (16, 16, 3, 3, 3), {"padding": 1}, "numba", "few-channels"),
    ((8, 256, 28, 28), (512, 256, 3, 3), {"padding": 1}, "winograd", "winograd-3x3"),
    ((8, 512, 14, 14), (512, 512, 3, 3), {"padding": 1}, "winograd", "winograd-3x3"),
    ((8, 256, 14, 14), (256, 256, 3, 3), {"padding": 1}, "winograd", "winograd-3x3"),
    ((8, 128, 112, 112), (128, 128, 3, 3), {"padding": 1}, "winograd", "winograd-3x3"),
    ((8, 64, 224, 224), (64, 64, 3, 3), {"padding": 1}, "im2col", "default order"),
    ((8, 512, 7, 7), (512, 512, 3, 3), {"padding": 1}, "winograd", "winograd-3x3"),
    ((1, 512, 7, 7), (512, 512, 3, 3), {"padding": 1}, "im2col", "default order"),
    ((1, 256, 14, 14), (256, 256, 3, 3), {"padding": 1}, "im2col", "default order"),
    ((1, 128, 28, 28), (128, 128, 3, 3), {"padding": 1}, "winograd", "winograd-3x3"),
    ((8, 3, 224, 224), (64, 3, 3, 3), {"padding": 1}, "im2col", "default order"),
    ((8, 32, 112, 112), (64, 32, 1, 1), {}, "im2col", "default order"),
    ((8, 128, 28, 28), (128, 128, 1, 1), {}, "im2col", "default order"),
])
def test_crossover_rules(registry, x_shape, w_shape, kwargs, expected, rule):
    auto = registry(*(FakeBackend(n) for n in ("im2col", "numba", "fft", "winograd")))
    backend, reason = auto.choose("conv", spec_of(x_shape, w_shape, **kwargs))
    assert backend.name == expected
    assert reason.startswith(f"rule {rule}" if rule != "default order" else rule)


def test_winograd_only_in_float32(registry):
    auto = registry(FakeBackend("im2col"), FakeBackend("winograd"))
    spec = spec_of((8, 256, 28, 28), (256, 256, 3, 3), padding=1)
    assert auto.choose("conv", spec)[0].name == "winograd"
    assert auto.choose("conv", spec.replace(dtype="float64"))[0].name == "im2col"


def test_pooling_skips_backends_without_pooling(registry):
    auto = registry(FakeBackend("im2col"), FakeBackend("naive", ops=("conv", "max_pool")))
    backend, reason = auto.choose("max_pool", POOL)
    assert backend.name == "naive" and reason.startswith("rule pooling")


def test_plug_in_backend_is_the_last_resort(registry):
    auto = registry(FakeBackend("im2col", unsupported="no"), FakeBackend("mine"))
    backend, reason = auto.choose("conv", DENSE)
    assert backend.name == "mine" and reason.startswith("default order")


def test_nothing_supports_it(registry):
    auto = registry(FakeBackend("im2col", unsupported="no"))
    with pytest.raises(UnsupportedError, match="no registered, available backend"):
        auto.choose("conv", DENSE)


def test_every_rule_names_known_backends():
    known = set(dispatch.backends())
    for rule in policy.RULES:
        assert set(rule.prefer) <= known, rule.name


@settings(max_examples=60, deadline=None)
@given(nd=st.integers(1, 3), c=st.integers(1, 6), k=st.integers(1, 6), size=st.integers(1, 9),
       kernel=st.integers(1, 5), stride=st.integers(1, 3), dilation=st.integers(1, 2),
       pad=st.integers(0, 2), depthwise=st.booleans(), double=st.booleans())
def test_auto_always_picks_a_backend_that_supports_the_call(nd, c, k, size, kernel, stride,
                                                            dilation, pad, depthwise, double):
    groups = c if depthwise else 1
    k = c if depthwise else k
    if dilation * (kernel - 1) + 1 > size + 2 * pad:
        return
    spec = spec_of((2, c) + (size,) * nd, (k, c // groups) + (kernel,) * nd,
                   dtype="float64" if double else "float32", stride=stride, padding=pad,
                   dilation=dilation, groups=groups)
    backend, reason = cb.get_backend("auto").choose("conv", spec)
    assert backend.available() is None and backend.supports("conv", spec) is None
    assert reason.startswith(("rule ", "default order"))


def test_explain_gives_the_rule():
    e = cb.explain((2, 32, 28, 28), (32, 1, 3, 3), padding=1, groups=32)
    if "numba" in cb.available_backends():
        assert e.choice == "numba" and e.reason.startswith("rule depthwise")
    else:
        assert e.reason.startswith("default order")


# ------------------------------------------------------------------------------ autotuner

def test_set_autotune_and_the_environment_variable(monkeypatch):
    assert autotune.autotune_enabled() is False
    monkeypatch.setenv(autotune.ENV_AUTOTUNE, "1")
    assert autotune.autotune_enabled() is True
    assert autotune.set_autotune(False) is True          # returns the previous state
    assert autotune.autotune_enabled() is False           # the call wins over the variable
    autotune.set_autotune(None)
    assert autotune.autotune_enabled() is True


def test_cache_file_is_per_machine_and_version(tmp_path):
    path = autotune.cache_path()
    assert path.parent == tmp_path / "cache"
    assert autotune.machine_id() in path.name and f"v{cb.__version__}" in path.name


def test_autotuner_times_once_keeps_the_winner_and_writes_it(registry):
    slow, fast = FakeBackend("im2col", seconds=0.004), FakeBackend("numba")
    auto = registry(slow, fast)
    autotune.set_autotune(True)
    backend, reason = auto.choose("conv", DENSE)
    assert backend is fast and reason.startswith("autotune: timed now")
    assert "numba" in reason and "im2col" in reason       # both times are reported
    timed = (slow.calls, fast.calls)
    assert min(timed) >= 2                                 # warm-up plus at least one timing
    backend, reason = auto.choose("conv", DENSE)
    assert backend is fast and reason.startswith("autotune cache entry")
    assert (slow.calls, fast.calls) == timed               # a known key is never re-timed

    entries = json.loads(autotune.cache_path().read_text())["entries"]
    (key, entry), = entries.items()
    assert key.startswith("conv|") and "numba+im2col" not in key and "im2col+numba" in key
    assert entry["backend"] == "numba" and set(entry["seconds"]) == {"im2col", "numba"}


def test_a_dry_run_never_times(registry):
    """explain() with the tuner on answers from the cache or the rules, timing nothing."""
    slow, fast = FakeBackend("im2col", seconds=0.004), FakeBackend("numba")
    auto = registry(slow, fast)
    autotune.set_autotune(True)
    backend, reason = auto.choose("conv", DENSE, dry_run=True)
    assert (slow.calls, fast.calls) == (0, 0)
    assert reason.startswith("autotune has not timed this geometry yet")
    auto.choose("conv", DENSE)
    timed = (slow.calls, fast.calls)
    backend, reason = auto.choose("conv", DENSE, dry_run=True)
    assert backend is fast and reason.startswith("autotune cache entry")
    assert (slow.calls, fast.calls) == timed


def test_a_new_process_reads_the_disk_cache(registry):
    slow, fast = FakeBackend("im2col", seconds=0.004), FakeBackend("numba")
    autotune.set_autotune(True)
    registry(slow, fast).choose("conv", DENSE)
    timed = (slow.calls, fast.calls)
    fresh = registry(slow, fast)                           # a new policy: empty memory
    backend, reason = fresh.choose("conv", DENSE)
    assert backend is fast and reason.startswith("autotune cache entry in")
    assert (slow.calls, fast.calls) == timed


def test_a_new_backend_gets_its_chance(registry):
    im2col, numba = FakeBackend("im2col", seconds=0.004), FakeBackend("numba", seconds=0.002)
    autotune.set_autotune(True)
    assert registry(im2col, numba).choose("conv", DENSE)[0] is numba
    fft = FakeBackend("fft")
    backend, reason = registry(im2col, numba, fft).choose("conv", DENSE)
    assert backend is fft and reason.startswith("autotune: timed now")


def test_autotuner_skips_naive_on_big_calls_and_single_choices(registry):
    naive, im2col = FakeBackend("naive"), FakeBackend("im2col", seconds=0.001)
    autotune.set_autotune(True)
    big = spec_of((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
    assert registry(naive, im2col).choose("conv", big)[0] is im2col
    assert naive.calls == 0
    backend, reason = registry(FakeBackend("im2col")).choose("conv", big)
    assert reason.startswith("default order")              # one candidate: nothing to time


def test_unreadable_cache_is_ignored_with_a_warning(registry):
    autotune.cache_path().parent.mkdir(parents=True)
    autotune.cache_path().write_text("{not json")
    autotune.set_autotune(True)
    with pytest.warns(RuntimeWarning, match="unreadable cache"):
        backend, _ = registry(FakeBackend("im2col", seconds=0.002),
                              FakeBackend("numba")).choose("conv", DENSE)
    assert backend.name == "numba"


def test_autotuned_conv_is_still_exact():
    autotune.set_autotune(True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 9))
    w = rng.standard_normal((4, 3, 3, 3))
    y = cb.conv2d(x, w, padding=1)
    np.testing.assert_allclose(y, oracle.conv(x, w, padding=1), rtol=1e-10, atol=1e-10)
    if len([n for n in cb.available_backends() if n != "auto"]) > 1:
        e = cb.explain(x.shape, w.shape, dtype="float64", padding=1, bias=False)
        assert e.reason.startswith("autotune cache entry")


# ------------------------------------------------------------- gradient ops and fc6's case

class TransposeFakeBackend(FakeBackend):
    """A fake with a conv_transpose kernel, which the input gradient lowers onto."""

    def conv_transpose(self, x, weight, bias, spec):
        return np.zeros(spec.output_shape, spec.dtype)


class GradFakeBackend(TransposeFakeBackend):
    """A fake with im2col's kernels: conv, conv_transpose and conv's weight gradient."""

    def __init__(self, name, **kwargs):
        super().__init__(name, ops=("conv", "conv_transpose", "conv_weight_grad"), **kwargs)

    def conv_weight_grad(self, x, grad_output, spec):
        return np.zeros(spec.weight_shape, spec.dtype)


FCN_FC6 = dict(x_shape=(1, 512, 7, 7), w_shape=(4096, 512, 7, 7))   # models/fcn.py's fc6


@pytest.mark.parametrize("batch", [1, 8])
def test_fc6_a_large_kernel_on_a_map_its_size_stays_with_the_gemm(registry, batch):
    """FCN's fc6 (7x7, 512 -> 4096 on a 7x7 map: one output position) took 4.4 s on FFT
    against 0.1 s on im2col: the large-kernel rule weighs the output size."""
    spec = spec_of((batch,) + FCN_FC6["x_shape"][1:], FCN_FC6["w_shape"])
    auto = registry(*(FakeBackend(n) for n in ("im2col", "numba", "fft", "winograd")))
    backend, reason = auto.choose("conv", spec)
    assert backend.name == "im2col" and reason.startswith("default order")
    assert not policy._fft_pays(spec)
    # The same kernel over an output 4x the kernel's side does go to FFT.
    wide = spec_of((batch, 512, 34, 34), FCN_FC6["w_shape"])
    assert auto.choose("conv", wide)[0].name == ("fft" if batch == 8 else "im2col")


def test_fc6_in_explain():
    e = cb.explain((1, 512, 7, 7), (4096, 512, 7, 7))
    assert e.choice == "im2col" and e.steps == ["conv: im2col's own kernel"]
    e = cb.explain((1, 512, 7, 7), (4096, 512, 7, 7), op="conv_weight_grad")
    assert e.choice == "im2col" and e.steps == ["conv_weight_grad: im2col's own kernel"]


@pytest.mark.parametrize("x_shape, w_shape, kwargs, op, expected, rule", [
    # ResNet-18's 3x3 (the lowered weight gradient's "kernel" is 28x28: FFT before)
    ((8, 128, 14, 14), (128, 128, 3, 3), {"padding": 1}, "conv_weight_grad", "im2col",
     "gradient-weight"),
    ((8, 128, 14, 14), (128, 128, 3, 3), {"padding": 1}, "conv_input_grad", "winograd",
     "gradient-input-winograd"),
    ((8, 64, 28, 28), (64, 64, 3, 3), {"padding": 1}, "conv_input_grad", "winograd",
     "gradient-input-winograd"),
    # 32 tiles (256 channels at 7x7), a strided layer, batch 1 at 28x28 (49 tiles): im2col
    ((8, 256, 7, 7), (256, 256, 3, 3), {"padding": 1}, "conv_input_grad", "im2col",
     "gradient-input"),
    ((8, 64, 28, 28), (128, 64, 3, 3), {"padding": 1, "stride": 2}, "conv_input_grad",
     "im2col", "gradient-input"),
    ((1, 64, 28, 28), (64, 64, 3, 3), {"padding": 1}, "conv_input_grad", "im2col",
     "gradient-input"),
    ((8, 3, 112, 112), (64, 3, 7, 7), {"stride": 2, "padding": 3}, "conv_weight_grad",
     "im2col", "gradient-weight"),
    ((64, 1, 32, 32), (6, 1, 5, 5), {}, "conv_input_grad", "im2col", "gradient-input"),
    ((8, 32, 56, 56), (32, 1, 3, 3), {"padding": 1, "groups": 32}, "conv_weight_grad",
     "numba", "gradient-depthwise-weight"),
    ((8, 512, 14, 14), (512, 1, 3, 3), {"padding": 1, "groups": 512}, "conv_weight_grad",
     "im2col", "gradient-weight"),
    ((8, 32, 56, 56), (32, 1, 3, 3), {"padding": 1, "groups": 32}, "conv_input_grad",
     "numba", "gradient-depthwise-input"),
    ((8, 16, 64, 64), (16, 16, 9, 9), {"padding": 4}, "conv_weight_grad", "fft",
     "gradient-large-kernel"),
    ((8, 16, 64, 64), (16, 16, 9, 9), {"padding": 4}, "conv_input_grad", "fft",
     "gradient-large-kernel"),
    ((1, 512, 7, 7), (4096, 512, 7, 7), {}, "conv_weight_grad", "im2col", "gradient-weight"),
])
def test_gradients_are_judged_by_the_forward_geometry(registry, x_shape, w_shape, kwargs, op,
                                                      expected, rule):
    auto = registry(GradFakeBackend("im2col"),
                    *(TransposeFakeBackend(n) for n in ("numba", "fft", "winograd")))
    backend, reason = auto.choose(op, spec_of(x_shape, w_shape, **kwargs))
    assert backend.name == expected and reason.startswith(f"rule {rule}")


def test_a_gradient_rule_passes_over_a_backend_it_cannot_reach(registry):
    """fft has no route to the weight gradient here (it runs no conv): im2col's kernel."""
    auto = registry(GradFakeBackend("im2col"),
                    TransposeFakeBackend("fft", ops=("conv_transpose",)))
    spec = spec_of((8, 16, 64, 64), (16, 16, 9, 9), padding=4)
    backend, reason = auto.choose("conv_weight_grad", spec)
    assert backend.name == "im2col" and reason.startswith("rule gradient-weight")
    assert auto.choose("conv_input_grad", spec)[0].name == "fft"


@pytest.mark.parametrize("x_shape, w_shape, kwargs, op, route", [
    ((8, 64, 28, 28), (64, 64, 3, 3), {"padding": 1}, "conv_weight_grad",
     ["conv_weight_grad: im2col's own kernel"]),
    ((8, 16, 64, 64), (16, 16, 9, 9), {"padding": 4}, "conv_weight_grad",
     ["conv_weight_grad -> conv", "conv: fft's own kernel"]),
    ((8, 16, 64, 64), (16, 16, 9, 9), {"padding": 4}, "conv_input_grad",
     ["conv_input_grad -> conv_transpose", "conv_transpose: fft's own kernel"]),
    ((8, 32, 28, 28), (32, 1, 3, 3), {"padding": 1, "groups": 32}, "conv_input_grad",
     ["conv_input_grad -> conv_transpose", "conv_transpose: numba's own kernel"]),
    ((8, 32, 56, 56), (32, 1, 3, 3), {"padding": 1, "groups": 32}, "conv_weight_grad",
     ["conv_weight_grad: numba's own kernel"]),
    ((8, 32, 56, 56), (32, 2, 3, 3), {"padding": 1, "groups": 16}, "conv_weight_grad",
     ["conv_weight_grad: im2col's own kernel"]),
])
def test_explain_plans_the_route_a_gradient_rule_chose(x_shape, w_shape, kwargs, op, route):
    needed = {step.split(":")[1].split("'")[0].strip() for step in route if "'" in step}
    if not needed <= set(cb.available_backends()):
        pytest.skip(f"needs {needed}")
    e = cb.explain(x_shape, w_shape, op=op, **kwargs)
    assert e.reason.startswith("rule gradient-")
    assert len(e.steps) == len(route)
    for step, expected in zip(e.steps, route):
        assert step.startswith(expected), (step, expected)


def test_a_gradient_through_a_chosen_lowering_is_exact():
    """auto's FFT route for a large-kernel layer's gradients, against the oracle."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 8, 20, 20))
    w = rng.standard_normal((8, 8, 7, 7))
    gy = rng.standard_normal((2, 8, 20, 20))
    e = cb.explain(x.shape, w.shape, op="conv_weight_grad", padding=3, dtype="float64")
    gw = cb.grad.conv2d_weight(x, w.shape, gy, padding=3)
    gx = cb.grad.conv2d_input(x.shape, w, gy, padding=3)
    from convbackends.tools.measure import relative_error, tolerance
    assert relative_error(gw, oracle.conv_weight_grad(x, w.shape, gy, padding=3)) \
        < tolerance(e.choice, np.float64)
    assert relative_error(gx, oracle.conv_input_grad(x.shape, w, gy, padding=3)) \
        < tolerance(e.choice, np.float64)


def test_autotuner_times_weight_gradient_kernels(registry):
    """Two backends with a weight-gradient kernel: the tuner calls each with the op's
    operands (the input and the output gradient) and keeps the faster."""
    class Slow(GradFakeBackend):
        def conv_weight_grad(self, x, grad_output, spec):
            assert x.shape == spec.input_shape and grad_output.shape == spec.output_shape
            self.calls += 1
            time.sleep(0.004)
            return np.zeros(spec.weight_shape, spec.dtype)

    slow, fast = Slow("im2col"), GradFakeBackend("numba")
    auto = registry(slow, fast)
    autotune.set_autotune(True)
    backend, reason = auto.choose("conv_weight_grad", DEPTHWISE)
    assert backend is fast and reason.startswith("autotune: timed now")
    assert slow.calls >= 2


def test_winograd_input_gradient_is_planned_and_right():
    """A stride-1 3x3 input gradient runs winograd's conv through conv_transpose, guarded;
    its values match the oracle's transposed convolution within Winograd's float32 bound,
    and an Inf weight still gives the direct formula's NaN pattern."""
    e = cb.explain((8, 64, 28, 28), (64, 64, 3, 3), op="conv_input_grad", padding=1)
    assert e.choice == "winograd" and "rule gradient-input-winograd" in e.reason
    assert e.steps[-1] == "conv: winograd's own kernel" and "guarded" in e.steps[1]
    rng = np.random.default_rng(11)
    w = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    go = rng.standard_normal((8, 64, 28, 28)).astype(np.float32)
    ref = oracle.conv_transpose(go.astype(np.float64), w.astype(np.float64), padding=1)
    for backend in ("auto", "winograd", "im2col"):
        got = cb.grad.conv2d_input((8, 64, 28, 28), w, go, padding=1, backend=backend)
        err = np.abs(got - ref).max() / np.abs(ref).max()
        assert err < (2e-5 if backend != "im2col" else 2e-6), (backend, err)
    w[3, 5, 0, 2] = np.inf
    ref = oracle.conv_transpose(go[:1].astype(np.float64), w.astype(np.float64), padding=1)
    for backend in ("auto", "winograd", "im2col"):
        got = cb.grad.conv2d_input((1, 64, 28, 28), w, go[:1], padding=1, backend=backend)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref))
        assert np.isnan(ref).any() or np.isinf(ref).any()
