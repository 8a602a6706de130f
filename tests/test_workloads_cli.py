"""Named layer suites (convbackends.workloads) and the command line (convbackends.cli)."""

import csv
import subprocess
import sys

import numpy as np
import pytest

import convbackends as cb
from convbackends import cli, workloads
from reference import oracle

REQUIRED = ["lenet5", "alexnet", "vgg16", "resnet18", "resnet50", "mobilenet", "signals",
            "volumes", "large-kernels"]


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
    with pytest.raises(ValueError):
        workloads.suite("lenet5", batch=0)


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
    assert "limits: convolution and transposed convolution only" in out     # im2col's line
    assert "numba" in out and "threads" in out and "BLAS" in out
    assert "autotune: " in out


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
                             "naive,im2col", "--repeat", "2", "--csv", str(path))
    assert code == 0
    assert "reference: float64 oracle" in out and "picks " in out
    assert "3/3" in err                         # the progress line reached the end
    rows = list(csv.DictReader(path.open()))
    assert [(r["layer"], r["backend"]) for r in rows] == [
        (lay, b) for lay in ("lenet5.c1", "lenet5.c3", "lenet5.c5")
        for b in ("naive", "im2col", "auto")]
    for r in rows:
        assert float(r["rel_error"]) < 1e-5
        assert float(r["median_s"]) > 0 and int(r["samples"]) >= 1
        assert r["auto_pick"] in cb.available_backends()
    best = [r for r in rows if r["backend"] != "auto" and float(r["x_best"]) == 1.0]
    assert len(best) == 3                       # one best per layer


def test_compare_markdown_and_plot(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "c.png"
    code, out, _ = run_cli(capsys, "compare", "--suite", "lenet5", "--backends", "im2col",
                           "--repeat", "1", "--format", "markdown", "--plot", str(png))
    assert code == 0
    assert "| layer | best | best ms | auto picks | pick / best | auto ms |" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_torch_column(capsys, tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "t.csv"
    code, out, _ = run_cli(capsys, "compare", "--suite", "lenet5", "--backends", "im2col",
                           "--repeat", "1", "--torch", "--csv", str(path))
    assert code == 0
    assert "geometric mean torch / auto" in out
    rows = [r for r in csv.DictReader(path.open()) if r["backend"] == "torch"]
    assert len(rows) == 3 and all(float(r["rel_error"]) < 1e-5 for r in rows)


def test_naive_is_left_out_of_big_layers_unless_named():
    lay = workloads.layer("vgg16.features.2")
    explanation = cb.explain(lay.x_shape, lay.w_shape, **lay.conv_kwargs())
    assert cli._skip_reason("naive", lay, explanation, named=False).startswith("skipped")
    assert cli._skip_reason("naive", lay, explanation, named=True) is None


def test_python_m_convbackends():
    done = subprocess.run([sys.executable, "-m", "convbackends", "--version"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"convbackends {cb.__version__}"
