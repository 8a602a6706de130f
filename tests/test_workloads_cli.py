"""The measuring room: workloads, the timing loop, float64 references, the command line."""

import ast
import contextlib
import csv
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convbackends as cb
from convbackends.errors import ConvError, ShapeError
from convbackends.tools import cli, compare, measure, peer, reference, report, workloads
from convbackends.tools.peer import Peer, PeerError, PeerKind
from reference import oracle

ROOT = Path(__file__).resolve().parents[1]

REQUIRED = ["lenet5", "alexnet", "vgg16", "resnet18", "resnet50", "mobilenet", "signals",
            "volumes", "large-kernels", "googlenet", "fcn8s"]


# ------------------------------------------------------------------------------ workloads

def test_suite_names_are_the_issue_list():
    assert workloads.suite_names() == REQUIRED


@pytest.mark.parametrize("name, layers, macs", [
    # Convolution multiply-accumulates per image. LeNet-5 and AlexNet by hand from the
    # lectures' sizes; ResNet-50's 4,089,184,256 and MobileNet v1's 568,740,352 (Howard et
    # al.: "569 million mult-adds") are published counts that include the classifier, whose
    # 2048x1000 and 1024x1000 MACs are taken off here.
    ("lenet5", 3, 6 * 28 * 28 * 25 + 16 * 10 * 10 * 6 * 25 + 120 * 16 * 25),
    ("alexnet", 5, 96 * 55 * 55 * 3 * 121 + 256 * 27 * 27 * 96 * 25
     + 13 * 13 * 9 * (384 * 256 + 384 * 384 + 256 * 384)),
    ("vgg16", 13, 9 * (224 ** 2 * (3 * 64 + 64 * 64) + 112 ** 2 * (64 * 128 + 128 * 128)
                       + 56 ** 2 * (128 * 256 + 2 * 256 * 256)
                       + 28 ** 2 * (256 * 512 + 2 * 512 * 512) + 14 ** 2 * 3 * 512 * 512)),
    ("resnet18", 20, 1_813_561_344),
    ("resnet50", 53, 4_089_184_256 - 2048 * 1000),
    ("mobilenet", 27, 568_740_352 - 1024 * 1000)])
def test_networks_count_their_layers_and_work(name, layers, macs):
    suite = workloads.suite(name)
    assert sum(lay.repeats for lay in suite) == layers
    assert sum(lay.repeats * lay.macs for lay in suite) == macs


@pytest.mark.parametrize("name, shape", [
    ("lenet5.c1", (1, 6, 28, 28)), ("lenet5.c3", (1, 16, 10, 10)),
    ("lenet5.c5", (1, 120, 1, 1)), ("alexnet.features.0", (1, 96, 55, 55)),
    ("vgg16.features.28", (1, 512, 14, 14)), ("resnet18.conv1", (1, 64, 112, 112)),
    ("resnet18.layer4.1.conv2", (1, 512, 7, 7)), ("resnet50.layer3.0.conv2", (1, 256, 14, 14)),
    ("mobilenet.block13.pw", (1, 1024, 7, 7)), ("signals.m5.conv1", (1, 128, 1981)),
    ("volumes.c3d.conv5b", (1, 512, 2, 7, 7))])
def test_layer_output_shapes_follow_the_networks(name, shape):
    assert workloads.layer(name).output_shape == shape


def test_repeats_are_merged_and_named():
    suite = workloads.suite("resnet18")
    assert len({lay.geometry for lay in suite}) == len(suite)
    first = workloads.layer("resnet18.layer1.0.conv1")
    assert first.repeats == 4
    assert first.also == ("resnet18.layer1.0.conv2", "resnet18.layer1.1.conv1",
                          "resnet18.layer1.1.conv2")
    assert workloads.layer("resnet18.layer1.1.conv2").name == "resnet18.layer1.0.conv1"


def test_every_suite_has_readable_unique_names():
    for name in REQUIRED:
        names = [lay.name for lay in workloads.suite(name)]
        names += [n for lay in workloads.suite(name) for n in lay.also]
        assert len(set(names)) == len(names)
        assert all(n.startswith(name + ".") for n in names)


def test_suites_cover_depthwise_1d_3d_and_large_kernels():
    assert all(lay.groups == lay.in_channels for lay in workloads.suite("mobilenet")
               if lay.name.endswith(".dw"))
    assert {lay.ndim for lay in workloads.suite("signals")} == {1}
    assert {lay.ndim for lay in workloads.suite("volumes")} == {3}
    assert max(max(lay.kernel) for lay in workloads.suite("large-kernels")) == 31


def test_batch_and_inputs():
    lay = workloads.layer("lenet5.c3", batch=3)
    assert lay.x_shape == (3, 6, 14, 14) and lay.w_shape == (16, 6, 5, 5)
    x, w, b = lay.make_inputs("float64", seed=1)
    assert x.dtype == w.dtype == b.dtype == np.float64
    assert (x.shape, w.shape, b.shape) == (lay.x_shape, lay.w_shape, (16,))
    x2, _, _ = lay.make_inputs("float64", seed=1)
    assert np.array_equal(x, x2)
    assert lay.with_batch(5).x_shape[0] == 5 and lay.with_batch(5).macs == lay.macs * 5 // 3
    assert workloads.layer("resnet18.conv1").make_inputs()[2] is None    # no bias there


@pytest.mark.parametrize("name", ["lenet5.c3", "mobilenet.block2.dw", "signals.wavenet.dilated16",
                                  "large-kernels.inception.conv1x7"])
def test_conv_kwargs_run_the_layer(name):
    lay = workloads.layer(name)
    x, w, b = lay.make_inputs("float64")
    y = cb.conv(x, w, b, backend="im2col", **lay.conv_kwargs())
    ref = oracle.conv(x, w, b, **lay.conv_kwargs())
    assert y.shape == lay.output_shape
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)


def test_describe():
    assert workloads.layer("resnet18.layer2.0.conv1").describe() == "64->128 3x3/2 @56x56"
    assert workloads.layer("mobilenet.block2.dw").describe() == "64->64 3x3/2 @112x112 dw"
    assert workloads.layer("signals.wavenet.dilated16").describe() == "64->128 2 @4000 dil16"


def test_unknown_names_list_the_known_ones():
    with pytest.raises(KeyError, match="known suites: lenet5, alexnet"):
        workloads.suite("resnet101")
    with pytest.raises(workloads.UnknownSuiteError, match="resnet18.conv1"):
        workloads.layer("resnet18.layer9.conv1")
    with pytest.raises(ShapeError):
        workloads.suite("lenet5", batch=0)
    assert issubclass(workloads.UnknownSuiteError, ConvError)
    assert issubclass(cli.UsageError, ConvError)
    assert cb.workloads is workloads


# ---------------------------------------------------------------------------- measure

def fake(seconds, log, name, fail_at=None):
    """A sampler that logs ``(name, settle)`` and claims ``seconds`` without waiting."""
    def sample(settle):
        log.append((name, settle))
        if fail_at is not None and len([n for n, _ in log if n == name]) == fail_at:
            raise RuntimeError(f"{name} broke")
        return seconds
    return sample


def test_rounds_rotate_and_settle_only_short_calls_of_several():
    log = []
    timings = measure.time_calls({"a": fake(0.01, log, "a"), "b": fake(1.0, log, "b")},
                                 repeat=3, settle=0.2, settle_below=0.5)
    assert log == [("a", 0.0), ("b", 0.0), ("a", 0.2), ("b", 0.0), ("b", 0.0), ("a", 0.2),
                   ("a", 0.2), ("b", 0.0)]
    assert timings["a"].first == 0.01 and timings["a"].samples == [0.01] * 3
    assert timings["b"].median == timings["b"].min == 1.0
    log.clear()
    measure.time_calls({"a": fake(0.01, log, "a")}, repeat=2)
    assert all(settle == 0.0 for _, settle in log)      # alone: nothing to settle


def test_budget_failures_and_slow_warm_ups():
    log = []
    timings = measure.time_calls(
        {"slow": fake(2.0, log, "slow"), "broken": fake(0.1, log, "broken", fail_at=1),
         "late": fake(0.1, log, "late", fail_at=3), "huge": fake(50.0, log, "huge")},
        repeat=5, budget=3.0, warmup_limit=10.0, catch=(RuntimeError,))
    assert timings["slow"].samples == [2.0, 2.0]
    assert timings["broken"].first is None and not timings["broken"].samples
    assert str(timings["broken"].failure) == "broken broke"
    assert timings["late"].samples == [0.1] and timings["late"].failure is not None
    assert timings["huge"].first == 50.0 and timings["huge"].samples == []
    with pytest.raises(RuntimeError):
        measure.time_calls({"broken": fake(0.1, [], "broken", fail_at=1)})


def test_time_call_counts_calls():
    calls = []
    timing = measure.time_call(lambda: calls.append(1), repeat=3, number=2)
    assert len(calls) == 2 + 3 * 2 and len(timing.samples) == 3
    assert timing.first >= 0 and timing.min <= timing.median


def series(values, log, name):
    """A sampler returning ``values`` in turn (the last one for ever), logging its calls."""
    values = list(values)

    def sample(settle):
        log.append(name)
        return values.pop(0) if len(values) > 1 else values[0]
    return sample


def test_spread_is_the_interquartile_range_over_the_median():
    assert measure.spread([]) is None and measure.spread([1.0]) is None
    assert measure.spread([1.0, 1.0, 1.0]) == 0.0
    # inclusive quartiles of 1..5: 2 and 4, median 3
    assert measure.spread([5.0, 1.0, 3.0, 2.0, 4.0]) == pytest.approx(2 / 3)
    assert measure.spread([0.0, 0.0]) == float("inf")
    timing = measure.Timing(samples=[1.0, 1.02, 0.98, 1.0, 3.0])
    assert timing.spread == pytest.approx(0.02)
    assert not measure.is_wide(timing) and measure.is_wide(timing, threshold=0.01)
    assert not measure.is_wide(measure.Timing(samples=[2.0]))      # one sample: no spread


def test_excess_is_zero_within_the_spread_and_signed_beyond_it():
    pick = measure.Timing(samples=[10.0, 10.1, 9.9, 10.0])
    assert measure.excess(measure.Timing(samples=[10.05, 10.0, 10.1, 9.95]), pick) == 0.0
    below = measure.excess(measure.Timing(samples=[5.0, 5.05, 4.95, 5.0]), pick)
    assert below == pytest.approx(-0.5)
    above = measure.excess(measure.Timing(samples=[13.0, 13.1, 12.9, 13.0]), pick)
    assert above == pytest.approx(0.3)
    noisy = measure.Timing(samples=[5.0, 15.0, 10.0, 2.0])   # a spread wider than the gap
    assert measure.excess(noisy, pick) == 0.0
    assert measure.excess(measure.Timing(samples=[5.0]), pick) is None
    assert measure.excess(measure.Timing(samples=[10.4, 10.4]), pick, floor=0.05) == 0.0


def test_adaptive_sampling_stops_at_the_target_spread_or_the_limits():
    log = []
    steady = series([1.0], log, "steady")
    noisy_then_calm = series([1.0, 3.0] + [2.0] * 20, log, "calm")
    never = series([1.0, 2.0] * 50, log, "never")
    timings = measure.time_calls({"steady": steady, "calm": noisy_then_calm,
                                  "never": never}, repeat=3, warmup=0, target_spread=0.05,
                                 max_repeat=12)
    assert len(timings["steady"].samples) == 3           # calm at once: the least rounds
    assert len(timings["calm"].samples) == 5             # [1, 2, 2, 2, 3]: quartiles 2, 2
    assert timings["calm"].spread == 0.0
    assert len(timings["never"].samples) == 12           # the most rounds
    assert measure.is_wide(timings["never"])
    budgeted = measure.time_calls({"never": series([1.0, 2.0] * 50, [], "never")},
                                  repeat=2, warmup=0, target_spread=0.05, budget=6.0)
    assert len(budgeted["never"].samples) == 4           # 1 + 2 + 1 + 2 seconds
    default = measure.time_calls({"never": series([1.0, 2.0] * 50, [], "never")},
                                 repeat=3, warmup=0)
    assert len(default["never"].samples) == 3            # not adaptive unless asked


def test_contention_is_waiting_that_our_own_threads_do_not_explain():
    before = {"1": (1.0, 0.1), "2": (0.5, 0.0), "gone": (9.0, 9.0)}
    after = {"1": (1.6, 0.5), "2": (0.9, 0.1), "new": (0.1, 0.0)}
    # 1.1 s on a CPU and 0.5 s waiting in 1 s on 2 CPUs: 0.9 s of CPU went elsewhere
    assert measure.contention(before, after, 1.0, cpus=2) == pytest.approx(0.5)
    # our threads held both CPUs all along: our own pools oversubscribed, no one else
    busy = {"1": (2.0, 0.5), "2": (1.5, 0.4)}
    assert measure.contention(before, busy, 1.0, cpus=2) == 0.0
    assert measure.contention(None, after, 1.0) is None
    # what the other processes ran bounds it: a wake-up's latency is no one else's doing
    assert measure.contention(before, after, 1.0, cpus=2,
                              others=({"x": 3.0}, {"x": 3.1, "y": 0.05})) == pytest.approx(0.15)
    assert measure.contention(before, after, 1.0, cpus=2, others=(None, {"x": 1.0})) \
        == pytest.approx(0.5)                   # no scan: our own wait alone
    reading = measure.run_queue_wait()
    if reading is None:
        pytest.skip("no per-thread scheduler statistics here")
    assert all(run >= 0 and wait >= 0 for run, wait in reading.values())
    others = measure.others_run()
    assert others is None or all(pid != os.getpid() for pid, _ in others)
    watched = measure.Sampler(lambda: sum(range(1000)), min_time=0.001, watch=True)
    watched()
    assert watched.last_wait is not None and watched.last_wait >= 0.0
    unwatched = measure.Sampler(lambda: None)
    unwatched()
    assert unwatched.last_wait is None          # the autotuner's samplers read nothing


class Disturbed:
    """A sampler object with ``last_wait``, replaying ``(seconds, wait)`` pairs."""

    def __init__(self, pairs):
        self.pairs, self.last_wait = list(pairs), None

    def __call__(self, settle=0.0):
        seconds, self.last_wait = self.pairs.pop(0) if len(self.pairs) > 1 else self.pairs[0]
        return seconds


def test_disturbed_samples_are_set_aside_and_taken_again():
    sampler = Disturbed([(1.0, 0.0), (9.0, 0.8), (1.0, 0.0), (7.0, 0.5), (1.0, 0.02)])
    t = measure.time_calls({"a": sampler}, repeat=3, warmup=0, max_wait=0.1)["a"]
    assert t.samples == [1.0, 1.0, 1.0] and t.disturbed == [9.0, 7.0]
    assert t.median == 1.0 and t.spread == 0.0
    everything = measure.time_calls({"a": Disturbed([(2.0, 0.9), (4.0, 0.9)])}, repeat=2,
                                    warmup=0, max_wait=0.1)["a"]
    assert everything.samples == [] and len(everything.disturbed) == 4   # 2 * max_repeat
    assert everything.median == 4.0                 # nothing better: the disturbed count
    kept = measure.time_calls({"a": Disturbed([(2.0, 0.9), (4.0, 0.9)])}, repeat=2,
                              warmup=0)["a"]
    assert kept.samples == [2.0, 4.0] and kept.disturbed == []    # no max_wait: no check
    result = compare.Result("x", t)
    assert result.disturbed == "2 of 5 samples disturbed"
    assert compare.Result("x", everything).disturbed.endswith("all counted")


def test_sampler_min_time_batches_tiny_calls():
    calls = []
    sampler = measure.Sampler(lambda: calls.append(1), min_time=0.01)
    assert 0 < sampler() < 0.01
    assert len(calls) > 10
    calls.clear()
    measure.Sampler(lambda: calls.append(1), number=3)()
    assert len(calls) == 3                               # without min_time: number calls


def test_relative_error_skips_non_finite_reference_entries():
    ref = np.array([1.0, np.inf, 2.0])
    assert measure.relative_error(np.array([1.0, 0.0, 2.0]), ref) == 0.0
    assert measure.relative_error(np.ones(2), np.zeros(2)) == pytest.approx(2 ** 0.5)


def test_measure_imports_only_numpy_and_the_standard_library():
    tree = ast.parse(Path(measure.__file__).read_text(encoding="utf-8"))
    imported = [alias.name for node in tree.body if isinstance(node, ast.Import)
                for alias in node.names]
    imported += [node.module if node.level == 0 else "." for node in tree.body
                 if isinstance(node, ast.ImportFrom)]
    allowed = sys.stdlib_module_names | {"numpy"}
    assert imported and all(name.split(".")[0] in allowed for name in imported)


def constant_contender(value):
    """A peer setup target: a contender returning ``value``, and the process it runs in."""
    return (lambda: np.full(3, value)), {"pid": os.getpid()}


def test_peer_runs_its_contender_in_a_process_of_its_own():
    with Peer() as worker:
        info = worker.setup(f"{__name__}:constant_contender", value=2.0)
        assert info["pid"] != os.getpid()
        timings = measure.time_calls({"peer": worker.sample}, repeat=2)
        assert len(timings["peer"].samples) == 2
        np.testing.assert_array_equal(worker.result(), [2.0, 2.0, 2.0])
        with pytest.raises(PeerError, match="ValueError"):
            worker.setup("os:getcwd")           # not a (run, info) pair
        with pytest.raises(PeerError, match="unknown request"):
            worker._ask(cmd="dance")
    assert issubclass(PeerError, ConvError)


def counting_contender():
    """A peer setup target whose run counts its calls (reported by ``result``)."""
    calls = []

    def run():
        calls.append(1)
        return np.array([len(calls)], np.float64)
    return run, {"environment": os.environ.get("OMP_WAIT_POLICY")}


def test_peer_samples_batch_calls_for_min_time():
    with Peer() as worker:
        worker.setup(f"{__name__}:counting_contender", min_time=0.02)
        seconds = worker.sample()
        calls = worker.result()[0] - 1                  # result() called once more
        assert calls > 1 and seconds * calls == pytest.approx(0.02, rel=1.0)
        if measure.run_queue_wait() is not None:
            assert worker.last_wait >= 0.0              # the worker's own contention


def test_peers_run_with_their_own_defaults_not_ours(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setattr(peer, "_initial_names", lambda: {"PATH"})
    assert "OMP_WAIT_POLICY" not in peer.peer_environment()     # convbackends set it
    with Peer() as worker:
        assert worker.setup(f"{__name__}:counting_contender")["environment"] is None
    monkeypatch.setattr(peer, "_initial_names", lambda: {"OMP_WAIT_POLICY"})
    assert peer.peer_environment()["OMP_WAIT_POLICY"] == "PASSIVE"  # the user set it
    monkeypatch.setattr(peer, "_initial_names", lambda: None)
    assert peer.peer_environment()["OMP_WAIT_POLICY"] == "PASSIVE"  # cannot tell: keep


def fake_conv(inputs, threads=None, stride=1, padding=0, dilation=1, groups=1):
    """A peer library without a library: the float64 reference, cast to the input's dtype."""
    with np.load(inputs) as arrays:
        x, w = arrays["x"], arrays["w"]
        b = arrays["b"] if "b" in arrays.files else None
    kw = {k: tuple(v) if isinstance(v, list) else v
          for k, v in dict(stride=stride, padding=padding, dilation=dilation).items()}
    y = reference.conv(x, w, b, groups=groups, **kw).astype(x.dtype)
    return (lambda: y), {"library": "fake", "threads": threads, "pid": os.getpid()}


@pytest.fixture
def fake_peer(monkeypatch):
    """A peer named ``fake`` whose worker runs :func:`fake_conv`."""
    kind = PeerKind("fake", "a fake peer", ("numpy",), f"{__name__}:fake_conv")
    monkeypatch.setitem(peer.PEERS, "fake", kind)
    return kind


def test_compare_times_a_fake_peer_through_the_worker_protocol(capsys, tmp_path, fake_peer):
    path = tmp_path / "fake.csv"
    code, out, err = run_cli(capsys, "compare", "--suite", "lenet5", "--backends", "im2col",
                             "--repeat", "2", "--max-repeat", "3", "--peers", "fake",
                             "--threads", "1", "--csv", str(path))
    assert code == 0, err
    assert "fake ms" in out and "fake / auto" in out
    assert "geometric mean fake / auto:" in out and "over 3 layers" in out
    assert "auto against its own pick:" in out and " ±" in out
    rows = [r for r in csv.DictReader(path.open()) if r["backend"] == "fake"]
    assert len(rows) == 3
    for r in rows:
        assert float(r["rel_error"]) < 1e-6
        tried = int(r["samples"]) + int(r["disturbed"])      # disturbed ones taken again
        assert 2 <= tried <= 6 and r["note"] != "best"          # the peer is no contestant
        assert r["spread"] != ""


@pytest.mark.parametrize("text, torch, names", [
    ("torch", False, ["torch"]), ("onnxruntime, torch", False, ["onnxruntime", "torch"]),
    (None, True, ["torch"]), ("torch,fake", True, ["torch", "fake"]), (None, False, [])])
def test_peers_parse_in_order_with_torch_as_an_alias(monkeypatch, fake_peer, text, torch,
                                                     names):
    monkeypatch.setattr(peer, "missing_packages", lambda kind: [])
    monkeypatch.setattr(cli, "missing_packages", lambda kind: [])
    assert cli.chosen_peers(text, torch) == names
    parsed = cli.build_parser().parse_args(["compare", "--torch"])
    assert parsed.torch and parsed.peers is None


@pytest.mark.parametrize("argv, message", [
    (["--peers", "tensorflow"], "unknown peer 'tensorflow'; known peers: torch, onnxruntime"),
    (["--peers", "torch,jax"], "unknown peer 'jax'"),
    (["--peers", " , "], "no peer given; known peers: torch"),
    (["--spread", "0"], "must be above 0")])
def test_bad_peers_are_usage_errors(capsys, argv, message):
    try:
        code = cli.main(["compare", "--suite", "lenet5", *argv])
    except SystemExit as e:                 # argparse's own errors (a bad --spread)
        code = e.code
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert message in err and "Traceback" not in err


def test_a_peer_whose_package_is_missing_exits_2(capsys, monkeypatch):
    kind = peer.PEERS["onnxruntime"]
    monkeypatch.setitem(peer.PEERS, "onnxruntime", PeerKind(
        kind.name, kind.label, ("onnxruntime_not_installed_here", "onnx"), kind.conv))
    code, out, err = run_cli(capsys, "compare", "--suite", "lenet5", "--backends", "im2col",
                             "--peers", "onnxruntime")
    assert code == 2 and out == ""
    assert "peer 'onnxruntime' needs onnxruntime_not_installed_here" in err
    assert "pip install 'convbackends[bench]'" in err and "Traceback" not in err


# -------------------------------------------------------------------------- reference

@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((2, 6, 9, 11), (4, 3, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2),
                                       groups=2)),
    ((1, 4, 17), (4, 1, 5), dict(stride=3, padding=2, dilation=2, groups=4)),
    ((2, 3, 5, 6, 7), (5, 3, 2, 3, 2), dict(padding=1))])
def test_reference_conv_matches_the_oracle(x_shape, w_shape, kwargs):
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s) for s in (x_shape, w_shape, w_shape[0]))
    np.testing.assert_allclose(reference.conv(x, w, b, **kwargs),
                               oracle.conv(x, w, b, **kwargs), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs, dilation", [
    (dict(kernel_size=3, stride=2, padding=1), 2),
    (dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1)), 1)])
def test_reference_pools_match_the_oracle(kwargs, dilation):
    x = np.random.default_rng(1).standard_normal((2, 3, 11, 12))
    np.testing.assert_array_equal(reference.max_pool(x, **kwargs, dilation=dilation),
                                  oracle.max_pool(x, **kwargs, dilation=dilation))
    for include in (True, False):
        np.testing.assert_allclose(reference.avg_pool(x, **kwargs, count_include_pad=include),
                                   oracle.avg_pool(x, **kwargs, count_include_pad=include),
                                   rtol=1e-12)


# ------------------------------------------------------------------------------------ cli

def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_reports_backends_threads_and_blas(capsys):
    code, out, _ = run_cli(capsys, "info")
    assert code == 0
    assert out.startswith(f"convbackends {cb.__version__}")
    for name in cb.backends():
        assert f"  {name} " in out
    assert "limits:" not in out and len(out.splitlines()) <= 18
    assert "numba" in out and "threads" in out and "BLAS: " in out
    assert "autotune: " in out and "plug-ins: " in out
    code, out, _ = run_cli(capsys, "info", "--limits")
    assert "limits: convolution and transposed convolution only" in out     # im2col's line


@pytest.mark.parametrize("argv, listed", [
    (["compare", "--suite", "resnet101"], "known suites: lenet5, alexnet, vgg16"),
    (["compare", "--backends", "im2col,winogard"], "known backends: naive, im2col")])
def test_unknown_names_exit_2_without_traceback(capsys, argv, listed):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert listed in err and "Traceback" not in err


def test_compare_checks_every_result_and_writes_csv(capsys, tmp_path):
    path = tmp_path / "lenet5.csv"
    code, out, err = run_cli(capsys, "compare", "--suite", "lenet5", "--backends",
                             "naive,im2col", "--repeat", "2", "--max-repeat", "2",
                             "--csv", str(path))
    assert code == 0
    assert f"reference: {compare.REFERENCE_LABEL}" in out and "picks " in out
    assert "3/3" in err                         # the progress line reached the end
    rows = list(csv.DictReader(path.open()))
    assert [(r["layer"], r["backend"]) for r in rows] == [
        (lay, b) for lay in ("lenet5.c1", "lenet5.c3", "lenet5.c5")
        for b in ("naive", "im2col", "auto")]
    for r in rows:
        assert float(r["rel_error"]) < 1e-5
        assert float(r["median_s"]) > 0 and int(r["samples"]) + int(r["disturbed"]) >= 1
        assert r["auto_pick"] in cb.available_backends()
    best = [r for r in rows if r["backend"] != "auto" and float(r["x_best"]) == 1.0]
    assert len(best) == 3                       # one best per layer


def test_compare_markdown_and_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "c.png"
    code, out, _ = run_cli(capsys, "compare", "--suite", "lenet5", "--backends", "im2col",
                           "--repeat", "1", "--max-repeat", "1", "--format", "markdown",
                           "--plot", str(png))
    assert code == 0
    assert "| layer | best | best ms | auto picks | pick / best | auto ms |" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_puts_gflops_on_a_log_axis_and_speed_relative_to_the_fastest():
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    layers = workloads.suite("lenet5", 1)[:2]
    runs = [compare.run_layer(layer, ["im2col", "numba", "auto"], repeat=1, max_repeat=1)
            for layer in layers]
    fig = report.plot_figure(runs, "lenet5")
    gflops, speed = fig.axes
    assert gflops.get_yscale() == "log" and speed.get_yscale() == "linear"
    heights = [p.get_height() for p in speed.patches]
    assert len(heights) == 6 and max(heights) >= 1.0 and min(heights) > 0
    for run in runs:                 # the fastest backend's bar is exactly 1
        assert any(abs(h - 1.0) < 1e-12 for h in heights)
        assert run.best in ("im2col", "numba")
    assert [t.get_text() for t in speed.get_xticklabels()] == ["c1", "c3"]
    plt.close(fig)


@pytest.mark.parametrize("peer_name, modules", [("torch", ["torch"]),
                                                ("onnxruntime", ["onnxruntime", "onnx"])])
def test_compare_real_peer_runs_elsewhere(capsys, tmp_path, peer_name, modules):
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    imported_before = [m for m in modules if m in sys.modules]   # other tests may have
    path = tmp_path / "t.csv"
    code, out, err = run_cli(capsys, "compare", "--suite", "lenet5", "--batch", "1",
                             "--backends", "im2col", "--repeat", "2", "--max-repeat", "3",
                             "--threads", "2", "--peers", peer_name, "--csv", str(path))
    assert code == 0, err
    assert f"geometric mean {peer_name} / auto" in out and "over 3 layers" in out
    assert peer.PEERS[peer_name].label in out
    rows = [r for r in csv.DictReader(path.open()) if r["backend"] == peer_name]
    assert len(rows) == 3 and all(float(r["rel_error"]) < 1e-5 for r in rows)
    assert all(float(r["median_s"]) > 0 for r in rows)
    assert not [m for m in modules if m in sys.modules and m not in imported_before]


def timing(*samples):
    return measure.Timing(first=samples[0], samples=list(samples))


def hand_run(auto, pick, peer_samples=None):
    """A LayerRun of lenet5.c3 with these samples for auto and its pick (im2col)."""
    results = {"im2col": compare.Result("im2col", timing(*pick)),
               "naive": compare.Result("naive", timing(1.0, 1.0)),
               "auto": compare.Result("auto", timing(*auto))}
    peers = ()
    if peer_samples:
        results["fake"] = compare.Result("fake", timing(*peer_samples))
        peers = ("fake",)
    run = compare.LayerRun(workloads.layer("lenet5.c3"), results, "im2col", "a rule", peers)
    run.auto_excess = measure.excess(results["auto"].timing, results["im2col"].timing,
                                     floor=run.target_spread)
    return run


def test_wide_rows_are_marked_and_auto_is_held_to_its_pick():
    calm = hand_run(auto=(0.0101, 0.0100, 0.0102), pick=(0.0100, 0.0101, 0.0100),
                    peer_samples=(0.02, 0.02))
    assert calm.auto_flag() == "" and calm.best == "im2col"     # the peer is no contestant
    assert report.peer_ratio(calm, "fake") == pytest.approx(2 / 1.01, rel=1e-3)
    faster = hand_run(auto=(0.005, 0.0051, 0.005), pick=(0.0165, 0.0166, 0.0164))
    assert faster.auto_flag().startswith("auto 70% below its pick im2col")
    slower = hand_run(auto=(0.106, 0.107, 0.105), pick=(0.0165, 0.0166, 0.0164))
    assert slower.auto_flag().startswith("auto 542% above its pick im2col")
    noisy = hand_run(auto=(0.005, 0.05, 0.02, 0.001), pick=(0.0165, 0.0166, 0.0164))
    assert noisy.auto_flag() == "" and noisy.wide("auto") and not noisy.wide("im2col")
    detail = report.detail_table([noisy, faster])
    auto_row = [line for line in detail.splitlines() if " auto " in line][0]
    assert "~12.5" in auto_row and "  ±  " in detail.splitlines()[0]
    assert "70% below its pick" in detail
    summary = report.summary_table([calm, faster], markdown=True)
    assert "| check |" in summary and "| fake ms | fake / auto |" in summary
    lines = report.summary_lines([calm, faster, noisy])
    assert any(line.startswith("auto against its own pick: 1 of 3 layers") for line in lines)
    assert any(line.startswith("spread above 5% after sampling (marked ~): 1 of") for line
               in lines)


def test_auto_disagreeing_with_its_pick_is_timed_head_to_head_again():
    log = []
    run = hand_run(auto=(0.005, 0.0051, 0.005), pick=(0.0165, 0.0166, 0.0164))
    timings = {n: r.timing for n, r in run.results.items()}
    samplers = {"auto": series([0.0165], log, "auto"), "im2col": series([0.0165], log, "im2col"),
                "naive": series([1.0], log, "naive")}
    d = compare._recheck_auto(run, timings, samplers, budget=10.0)
    assert sorted(set(log)) == ["auto", "im2col"]           # only those two, alternating
    assert log.count("auto") == log.count("im2col") == compare.RECHECK_ROUNDS
    assert len(timings["auto"].samples) == 3 + compare.RECHECK_ROUNDS
    assert d == 0.0                 # with the new rounds the medians agree
    log.clear()
    calm = hand_run(auto=(0.0101, 0.0100, 0.0102), pick=(0.0100, 0.0101, 0.0100))
    compare._recheck_auto(calm, {n: r.timing for n, r in calm.results.items()}, samplers, 10.0)
    assert log == []                # nothing to recheck


def test_naive_is_left_out_of_big_layers_unless_named():
    lay = workloads.layer("vgg16.features.2")
    explanation = cb.explain(lay.x_shape, lay.w_shape, **lay.conv_kwargs())
    assert compare.skip_reason("naive", lay, explanation, named=False).startswith("skipped")
    assert compare.skip_reason("naive", lay, explanation, named=True) is None


def test_python_m_convbackends():
    done = subprocess.run([sys.executable, "-m", "convbackends", "--version"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"convbackends {cb.__version__}"


def test_console_script_is_the_cli():
    tomllib = pytest.importorskip("tomllib")            # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    module, _, name = pyproject["project"]["scripts"]["convbackends"].partition(":")
    assert getattr(importlib.import_module(module), name) is cli.main


# Run after the compare tests above, so Numba's on-disk cache is warm.
AUDITED_COMPARE = """
import json, os, site, sys
opened = []
def audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        opened.append(os.path.abspath(os.fsdecode(args[0])))
sys.addaudithook(audit)
from convbackends.tools import cli
code = cli.main(["compare", "--suite", "lenet5", "--backends", "im2col", "--repeat", "1",
                 "--max-repeat", "1"])
print(json.dumps({"code": code, "opened": opened,
                  "installed": [sys.prefix, sys.base_prefix] + site.getsitepackages()}))
"""


def test_cli_reads_no_file_outside_the_package(tmp_path):
    """``compare``, run elsewhere, opens no file of the checkout but the package's own.

    The checkout is not on ``sys.path`` (the package is reached through a link), and every
    file Python opens, imports included, is audited: reading ``reference/`` or anything
    else beside the package would break the installed wheel, which ships only
    ``convbackends``. Files of the Python installation (a virtual environment may sit in
    the checkout) do not count.
    """
    package = Path(cb.__file__).resolve().parent
    (tmp_path / "path").mkdir()
    (tmp_path / "path" / "convbackends").symlink_to(package, target_is_directory=True)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "path"))
    done = subprocess.run([sys.executable, "-c", AUDITED_COMPARE], cwd=tmp_path, env=env,
                          capture_output=True, text=True, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0
    allowed = [package] + [Path(p) for p in report["installed"]]
    outside = [p for p in map(Path, report["opened"])
               if p.is_relative_to(ROOT) and not any(p.is_relative_to(a) for a in allowed)]
    assert outside == []
