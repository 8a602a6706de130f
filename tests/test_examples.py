"""The GoogLeNet and FCN-8s examples run, as a user runs them, on small images."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script, *args):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("data_format", ["channels_first", "channels_last"])
def test_googlenet_explain_prints_every_branch_layer(data_format):
    out = _run("googlenet_explain.py", "--size", "40", "--module", "4a",
               "--data-format", data_format)
    assert re.search(r"GoogLeNet on \[1, (3, 40, 40|40, 40, 3)\] \(" + data_format
                     + r"\): logits \[1, 1000\]", out)
    # 4a's input is 480 channels at 2x2 (40 -> 20 -> 10 -> 5 -> 2): six convolutions and
    # the pooling branch's max pooling, each with its report.
    headers = re.findall(r"^=== (inception4a\.\S+): (\w+) on (\[.*\])$", out, re.M)
    assert [h[0] for h in headers] == [
        "inception4a.branch1.conv", "inception4a.branch2.0.conv", "inception4a.branch2.1.conv",
        "inception4a.branch3.0.conv", "inception4a.branch3.1.conv", "inception4a.branch4.0",
        "inception4a.branch4.1.conv"]
    first_input = "[1, 480, 2, 2]" if data_format == "channels_first" else "[1, 2, 2, 480]"
    assert headers[0][1:] == ("Conv2d", first_input)
    assert headers[5][1] == "MaxPool2d"
    assert out.count("choice: ") == 7
    if data_format == "channels_last":
        # 2x2 maps are too small for im2col's channels-last kernel: every layer lowered
        assert "lowering conv:channels_last->channels_first" in out
        assert "lowering max_pool:channels_last->channels_first" in out


def test_fcn8s_segment_keeps_the_input_size_and_shows_the_skips():
    out = _run("fcn8s_segment.py", "--height", "9", "--width", "7")
    assert "scores [1, 21, 9, 7]" in out
    assert "output size 9x7 == input size 9x7: True" in out
    # 9x7 padded by 100 (207x205, rounded up by each pooling): pool3 26x26, pool4 13x13,
    # pool5 7x7 -> fc6 1x1; the crops take the skip scores to the upsampled maps' size.
    assert re.search(r"features\.16 +pool3 +-> \[1, 256, 26, 26\]", out)
    assert re.search(r"features\.23 +pool4 +-> \[1, 512, 13, 13\]", out)
    assert re.search(r"score_pool4c +Crop\(offset=5\) +\[1, 21, 13, 13\] +-> \[1, 21, 4, 4\]",
                     out)
    assert re.search(r"score_pool3c +Crop\(offset=9\) +\[1, 21, 26, 26\] +-> \[1, 21, 10, 10\]",
                     out)
    assert re.search(r"score +Crop\(offset=31\) +\[1, 21, 88, 88\] +-> \[1, 21, 9, 7\]", out)
    assert re.search(r"class map \[1, 9, 7\]", out)
