"""``convbackends report`` and ``dashboard`` on real asv output, checked in headless Chromium;
``info`` on an installation without the optional extras."""

import contextlib
import functools
import http.server
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import urllib.request
from pathlib import Path

import pytest

from convbackends.tools import asv_report, cli, dashboard

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH")
LAYERS = ["lenet5.c3", "mobilenet.block3.dw", "signals.m5.conv2"]      # the quick grid
BACKENDS = ["im2col", "numba"]


def _git(repo, *args):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, env=env,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def asv_project(tmp_path_factory):
    """A real ``asv run`` of the quick grid (two backends) labelled with the second of two
    commits of a scratch repository; the first commit gets a copy of that results file."""
    if importlib.util.find_spec("asv") is None:
        pytest.skip("asv is not installed (pip install -e '.[bench]')")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    base = tmp_path_factory.mktemp("asv")
    repo = base / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    for message in ("first", "second"):
        _git(repo, "commit", "-q", "--allow-empty", "-m", message)
    commits = _git(repo, "rev-list", "--reverse", "main").split()
    config = base / "asv.conf.json"
    config.write_text(json.dumps({
        "version": 1, "project": "convbackends", "repo": str(repo), "branches": ["main"],
        "environment_type": "virtualenv", "benchmark_dir": str(ROOT / "benchmarks"),
        "env_dir": str(base / "env"), "results_dir": str(base / "results"),
        "html_dir": str(base / "html")}))
    # asv keeps its machine description in ~/.asv-machine.json: a scratch home, so the
    # test needs no `asv machine` run beforehand and leaves the user's alone.
    home = base / "home"
    home.mkdir()
    env = {**os.environ, "CONVBACKENDS_ASV_QUICK": "1", "HOME": str(home),
           "CONVBACKENDS_ASV_BACKENDS": ",".join(BACKENDS)}
    machine = subprocess.run([sys.executable, "-m", "asv", "machine", "--yes", "--config",
                              str(config)], env=env, capture_output=True, text=True,
                             timeout=120)
    assert machine.returncode == 0, machine.stdout[-3000:] + machine.stderr[-3000:]
    done = subprocess.run(
        [sys.executable, "-m", "asv", "run", "--config", str(config), "--python=same",
         "--quick", "--show-stderr", "--set-commit-hash", commits[1],
         "-b", r"ConvLayer\.(time_forward|track_rel_error)"],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (latest,) = [p for p in (base / "results").glob("*/*.json") if p.name != "machine.json"]
    data = json.loads(latest.read_text())
    data["commit_hash"] = commits[0]
    data["date"] = int(_git(repo, "log", "-1", "--format=%ct", commits[0])) * 1000 - 1000
    latest.with_name(latest.name.replace(commits[1][:8], commits[0][:8])).write_text(
        json.dumps(data))
    return {"config": config, "results": base / "results", "commits": commits,
            "latest": json.loads(latest.read_text()), "base": base}


def _cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _asv_value(data, benchmark, backend, layer):
    row = data["results"][f"bench_conv.ConvLayer.{benchmark}"]
    entry = dict(zip(data["result_columns"], row))
    keys = [(b.strip("'"), lay.strip("'")) for b in entry["params"][0]
            for lay in entry["params"][1]]
    return entry["result"][keys.index((backend, layer))]


def test_report_is_one_self_contained_file_with_asv_numbers(asv_project, capsys, tmp_path):
    out_html = tmp_path / "report.html"
    code, out, err = _cli(capsys, "report", "--results", asv_project["results"], "-o", out_html)
    assert code == 0 and "2 runs, 2 commits" in out
    page = out_html.read_text()
    assert "<script" not in page and "<img" not in page and "<link" not in page
    assert re.findall(r"https?://[^\"' )]+", page) == ["http://www.w3.org/2000/svg"] * \
        page.count("<svg ")
    data = asv_project["latest"]
    for layer in LAYERS:
        assert f"<h4>{layer}</h4>" in page
        assert f"{layer}: time_forward" in page and f"{layer}: track_rel_error" in page
        for backend in BACKENDS:
            ms = _asv_value(data, "time_forward", backend, layer) * 1e3
            err_ = _asv_value(data, "track_rel_error", backend, layer)
            assert 0 < err_ < 1e-5
            row = (f"<td>{layer}</td><td>{backend}</td><td>{ms:.4g}</td>")
            assert row in page and f"<td>{err_:.1e}</td>" in page
    assert page.count("<svg ") == 2 * len(LAYERS)
    # every chart has both backends and a point per commit for each
    assert page.count("<circle ") == 2 * len(LAYERS) * len(BACKENDS) * 2
    assert "crossovers" in page and asv_project["commits"][1][:8] in page


def test_crossovers_name_the_commit_where_the_fastest_changed():
    def run(commit, times):
        r = asv_report.Run("m", commit, 0, "env")
        r.values[("s.C", "time_forward")] = {(b, "L"): t for b, t in times.items()}
        return r
    runs = [run("a" * 40, {"im2col": 2.0, "fft": 3.0, "auto": 2.1}),
            run("b" * 40, {"im2col": 2.0, "fft": 1.0, "auto": 1.1}),
            run("c" * 40, {"im2col": 2.0, "fft": 0.5, "auto": 0.5})]
    c = asv_report.crossovers(runs, "s.C")["L"]
    assert c["winner"] == "fft" and c["runner_up"] == "im2col" and c["margin"] == 4.0
    assert c["changes"] == [("bbbbbbbb", "im2col", "fft")]
    rows = asv_report.latest_table(runs[1], "s.C")
    assert rows[1][:5] == ("L", "fft", 1000.0, None, 1.0) and rows[1][-1] == "fastest"
    assert rows[0][4] == 2.0 and rows[2][4] == 1.1           # auto is timed, not a contestant


def test_report_errors_name_the_directory(capsys, tmp_path):
    code, _, err = _cli(capsys, "report", "--results", tmp_path / "none")
    assert code == 2 and f"no asv results directory at {tmp_path / 'none'}" in err
    (tmp_path / "m").mkdir()
    code, _, err = _cli(capsys, "report", "--results", tmp_path)
    assert code == 2 and "holds no asv results (run `asv run` first)" in err
    (tmp_path / "m" / "x.json").write_text('{"version": 1}')
    code, _, err = _cli(capsys, "report", "--results", tmp_path)
    assert code == 2 and "not an asv results file of format version 2" in err


def _chromium(url, *extra, budget=15000):
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", f"--virtual-time-budget={budget}", *extra,
                           url], capture_output=True, text=True, timeout=120)
    return done.stdout


@needs_chromium
def test_report_renders_in_chromium(asv_project, tmp_path):
    out_html = tmp_path / "report.html"
    asv_report.write_report(asv_project["results"], out_html)
    dom = _chromium(out_html.as_uri(), "--dump-dom", budget=2000)
    assert "bench_conv.ConvLayer: latest run" in dom and "bench_conv.ConvLayer: crossovers" in dom
    assert dom.count("<svg") == 2 * len(LAYERS) and dom.count("<polyline") > 0
    png = tmp_path / "report.png"
    _chromium(out_html.as_uri(), f"--screenshot={png}", "--window-size=1280,900", budget=2000)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------ dashboard

def _asv_index():
    spec = importlib.util.find_spec("asv")
    if spec is None:
        pytest.skip("asv is not installed")
    return (Path(spec.origin).parent / "www" / "index.html").read_text()


def test_every_cdn_asset_of_asvs_page_maps_to_an_npm_release():
    urls = dashboard.external_urls(_asv_index())
    assert len(urls) >= 8 and all(u.startswith("https://") for u in urls)
    files = {u: dashboard.npm_file(u) for u in urls}
    assert files["https://code.jquery.com/jquery-3.3.1.min.js"] == dashboard.NpmFile(
        "jquery", "3.3.1", ("dist/jquery.min.js",))
    flot = files["https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js"]
    assert flot.candidates == ("jquery.flot.min.js", "jquery.flot.js")
    assert {f.package for f in files.values()} >= {"jquery", "flot", "bootstrap",
                                                    "stupid-table-plugin", "blueimp-md5"}
    with pytest.raises(dashboard.DashboardError, match="no npm package known for"):
        dashboard.npm_file("https://example.org/x.js")


def _tarball(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def test_vendor_from_a_filled_cache_needs_no_network(tmp_path, monkeypatch):
    page = _asv_index()
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text(page)
    cache = tmp_path / "cache"
    cache.mkdir()
    wanted = {}
    for url in dashboard.external_urls(page):
        f = dashboard.npm_file(url)
        wanted.setdefault((f.package, f.version), {})[f.candidates[-1]] = url.encode()
    for (package, version), files in wanted.items():
        files["dist/fonts/x.woff"] = b"font"                # bootstrap's CSS needs ../fonts
        (cache / f"{package}-{version}.tgz").write_bytes(_tarball(files))

    def offline(url, *a, **k):
        raise AssertionError(f"fetched {url}")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    done = dashboard.vendor(tmp_path / "site", cache_dir=cache)
    rewritten = (tmp_path / "site" / "index.html").read_text()
    assert dashboard.external_urls(rewritten) == []
    assert "integrity=" not in rewritten and "crossorigin=" not in rewritten
    assert len(done) == len(dashboard.external_urls(page))
    for v in done:
        assert (tmp_path / "site" / v.local).read_bytes() == v.url.encode()
        assert f'"{v.local}"' in rewritten and not v.identical
    assert (tmp_path / "site/vendor/bootstrap@3.1.1/dist/fonts/x.woff").is_file()


def _registry_reachable():
    try:
        urllib.request.urlopen(f"{dashboard.REGISTRY}/jquery/3.3.1", timeout=10).close()
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _served(folder):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@needs_chromium
def test_dashboard_renders_without_internet(asv_project, capsys, tmp_path):
    if not _registry_reachable():
        pytest.skip(f"the npm registry ({dashboard.REGISTRY}) is not reachable from here")
    site = tmp_path / "site"
    code, out, err = _cli(capsys, "dashboard", "--config", asv_project["config"],
                          "--html-dir", site, "--npm-cache", tmp_path / "npm")
    assert code == 0, err
    assert "jquery 3.3.1 -> vendor/jquery@3.3.1/dist/jquery.min.js (identical" in out
    assert "renders without internet" in out and "done" in err
    plain = tmp_path / "plain"
    subprocess.run([sys.executable, "-m", "asv", "publish", "--config",
                    str(asv_project["config"]), "--html-dir", str(plain)], check=True,
                   capture_output=True)
    # a proxy that answers nothing: everything beyond this machine is out of reach
    offline = "--proxy-server=http://127.0.0.1:9"
    with _served(tmp_path) as root:
        vendored = _chromium(f"{root}/site/index.html", offline, "--dump-dom")
        bare = _chromium(f"{root}/plain/index.html", offline, "--dump-dom")
    assert "continental origin of swallow" in bare          # asv's page as published
    assert "continental origin of swallow" not in vendored
    for name in ("ConvLayer.time_forward", "ConvLayer.track_rel_error"):
        assert name in vendored


def test_info_is_short_and_clean_without_optional_extras():
    code = ("import sys\n"
            "for m in ('threadpoolctl', 'yaml', 'matplotlib', 'asv'):\n"
            "    sys.modules[m] = None\n"
            "from convbackends.tools.cli import main\n"
            "sys.exit(main(['info']))\n")
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                          text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert 12 <= len(lines) <= 18, done.stdout
    blas = [line for line in lines if line.startswith("BLAS: ")]
    assert blas and all("threads" in line or "threadpoolctl" in line for line in blas)
    assert any(line.startswith("numba ") and "threads" in line for line in lines)
    assert not any(line.startswith(("{", '  "')) for line in lines)   # no config JSON
