"""``convbackends dashboard``: asv's dashboard, published so that it renders offline.

asv's page loads jQuery, flot, bootstrap and a few plug-ins from CDNs; without internet it
shows only "Can not determine continental origin of swallow". :func:`publish` runs
``asv publish``, then :func:`vendor` finds every external ``<script src>`` and ``<link
href>`` in the published HTML, takes the same package at the same version from the npm
registry (``https://registry.npmjs.org/<package>/-/<name>-<version>.tgz``), unpacks the
file with the package's top folder it sits in (``dist/``: bootstrap's CSS needs
``dist/fonts``) into ``vendor/`` of the published directory, and points the page at it.
The project ships none of that code: it is fetched at publish time, into the published
directory only. With ``cache_dir`` the tarballs are kept and looked up there first, so a
machine without internet can publish from a cache filled elsewhere.

A vendored file is compared with the page's ``integrity`` hash: most are the CDN's file
byte for byte; where a CDN serves its own minified build (cdnjs minifies flot 0.8.3, which
ships unminified on npm) or a release npm lacks (stupidtable 1.0.1: npm has only
``stupid-table-plugin`` 1.1.3, the same plug-in), the page gets the npm file and the
difference is reported. The ``integrity`` and ``crossorigin`` attributes are dropped: a
``file://`` page cannot check them.
"""

import base64
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ConvError

__all__ = ["DashboardError", "NpmFile", "Vendored", "REGISTRY", "external_urls",
           "npm_file", "vendor", "publish", "html_dir_of"]

REGISTRY = "https://registry.npmjs.org"
VENDOR_DIR = "vendor"
# cdnjs names that npm spells differently
CDNJS_TO_NPM = {"stupidtable": "stupid-table-plugin"}
_TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
_URL_ATTR = re.compile(r"""\b(src|href)\s*=\s*(["'])(https?://[^"']+)\2""", re.IGNORECASE)
_DROPPED_ATTRS = re.compile(r"""\s+(integrity|crossorigin|referrerpolicy)\s*=\s*(["'])[^"']*\2""",
                            re.IGNORECASE)
_INTEGRITY = re.compile(r"""\bintegrity\s*=\s*(["'])([^"']+)\1""", re.IGNORECASE)


class DashboardError(ConvError, RuntimeError):
    """Publishing failed: asv missing or failing, a package not on npm, no network."""


@dataclass(frozen=True)
class NpmFile:
    """One file of one npm release: ``candidates`` are its possible paths in the package."""

    package: str
    version: str
    candidates: tuple


@dataclass(frozen=True)
class Vendored:
    """A URL of the page and what replaced it."""

    url: str
    local: str
    package: str
    version: str
    identical: bool
    note: str = ""


def external_urls(page):
    """The ``http(s)`` URLs of the ``<script>`` and ``<link>`` tags of an HTML page."""
    return [m.group(3) for tag in _TAG.finditer(page) for m in [_URL_ATTR.search(tag.group())]
            if m]


def npm_file(url):
    """The :class:`NpmFile` a CDN URL serves, or raise :class:`DashboardError`."""
    m = re.match(r"https?://cdn\.jsdelivr\.net/npm/((?:@[^/]+/)?[^/@]+)@([^/]+)/(.+)$", url)
    if m:
        return NpmFile(m[1], m[2], (m[3],))
    m = re.match(r"https?://code\.jquery\.com/jquery-([\d.]+)(\.min)?\.js$", url)
    if m:
        return NpmFile("jquery", m[1], (f"dist/jquery{m[2] or ''}.js",))
    m = re.match(r"https?://cdnjs\.cloudflare\.com/ajax/libs/([^/]+)/([^/]+)/(.+)$", url)
    if m:
        path = m[3]
        unminified = re.sub(r"\.min\.(js|css)$", r".\1", path)
        return NpmFile(CDNJS_TO_NPM.get(m[1], m[1]), m[2],
                       tuple(dict.fromkeys([path, unminified])))
    raise DashboardError(f"no npm package known for {url}")


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as e:
        raise DashboardError(f"cannot fetch {url}: {e}") from e


def _release(package, version, cache_dir):
    """``(version, tarball bytes)``: the release asked for, or the newest one of the same
    major version when npm lacks it (the version returned says which)."""
    name = package.rsplit("/", 1)[-1]
    for v in (version, None):
        if v is None:
            meta = json.loads(_get(f"{REGISTRY}/{package}"))
            major = version.split(".")[0]
            same = [k for k in meta.get("versions", {}) if k.split(".")[0] == major
                    and "-" not in k]
            if not same:
                raise DashboardError(f"npm has no {package} {version} nor any {major}.x")
            v = max(same, key=lambda k: [int(p) for p in re.findall(r"\d+", k)])
        cached = cache_dir and Path(cache_dir) / f"{name}-{v}.tgz"
        if cached and cached.is_file():
            return v, cached.read_bytes()
        try:
            data = _get(f"{REGISTRY}/{package}/-/{name}-{v}.tgz")
        except DashboardError:
            if v != version:
                raise
            continue
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_bytes(data)
        return v, data
    raise AssertionError("unreachable")


def _unpack(data, candidates, dest):
    """Unpack the first of ``candidates`` in the tarball, with the rest of the package's top
    folder it sits in (only the file when it sits at the top), into ``dest``; returns its
    path relative to ``dest``."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        files = {PurePosixPath(m.name).relative_to("package").as_posix(): m
                 for m in tar.getmembers() if m.isfile() and m.name.startswith("package/")}
        path = next((c for c in candidates if c in files), None)
        if path is None:
            raise DashboardError(f"none of {', '.join(candidates)} is in the package")
        top = PurePosixPath(path).parts[0] if "/" in path else None
        for name, member in files.items():
            inside = PurePosixPath(name).parts[0] == top if top else name == path
            if not inside or ".." in PurePosixPath(name).parts:
                continue
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    return path


def _matches(integrity, content):
    """Whether ``content`` has one of the ``integrity`` attribute's hashes."""
    for token in integrity.split():
        algo, _, digest = token.partition("-")
        if algo in ("sha256", "sha384", "sha512") and base64.b64encode(
                hashlib.new(algo, content).digest()).decode() == digest:
            return True
    return False


def vendor(html_dir, cache_dir=None, progress=None):
    """Replace every CDN asset of the ``*.html`` pages in ``html_dir`` by a local copy.

    Returns the :class:`Vendored` list (one per distinct URL); ``progress(i, n, text)`` is
    called before each download.
    """
    html_dir = Path(html_dir)
    pages = sorted(html_dir.glob("*.html"))
    texts = {p: p.read_text(encoding="utf-8") for p in pages}
    urls = list(dict.fromkeys(u for t in texts.values() for u in external_urls(t)))
    integrity = {}
    for text in texts.values():
        for tag in _TAG.finditer(text):
            url, sri = _URL_ATTR.search(tag.group()), _INTEGRITY.search(tag.group())
            if url and sri:
                integrity[url.group(3)] = sri.group(2)
    done, releases = {}, {}
    for i, url in enumerate(urls):
        if progress:
            progress(i, len(urls), url)
        want = npm_file(url)
        key = (want.package, want.version)
        if key not in releases:             # flot's four plug-ins are one tarball
            releases[key] = _release(want.package, want.version, cache_dir)
        version, data = releases[key]
        dest = html_dir / VENDOR_DIR / f"{want.package.replace('/', '+')}@{version}"
        path = _unpack(data, want.candidates, dest)
        local = (dest / path).relative_to(html_dir).as_posix()
        identical = url in integrity and _matches(integrity[url], (dest / path).read_bytes())
        notes = []
        if version != want.version:
            notes.append(f"npm has no {want.package} {want.version}: {version} instead")
        if path != want.candidates[0]:
            notes.append(f"npm ships {path}, not the CDN's {want.candidates[0]}")
        done[url] = Vendored(url, local, want.package, version, identical, "; ".join(notes))
    if progress:
        progress(len(urls), len(urls), "done")
    for page, text in texts.items():
        page.write_text(_TAG.sub(lambda m: _rewrite(m.group(), done), text), encoding="utf-8")
    return list(done.values())


def _rewrite(tag, done):
    m = _URL_ATTR.search(tag)
    if not m or m.group(3) not in done:
        return tag
    tag = tag.replace(m.group(3), done[m.group(3)].local)
    return _DROPPED_ATTRS.sub("", tag)


def html_dir_of(config):
    """The ``html_dir`` an asv configuration file names, relative to its folder."""
    config = Path(config)
    try:
        conf = json.loads("\n".join(line for line in config.read_text().splitlines()
                                    if not line.lstrip().startswith("//")))
    except (OSError, ValueError) as e:
        raise DashboardError(f"cannot read the asv configuration {config}: {e}") from e
    return config.parent / conf.get("html_dir", "html")


def publish(config="asv.conf.json", html_dir=None, cache_dir=None, progress=None):
    """``asv publish`` with ``config``, then :func:`vendor` on what it wrote.

    Returns ``(html_dir, vendored)``.
    """
    cmd = [sys.executable, "-m", "asv", "publish", "--config", str(config)]
    if html_dir is not None:
        cmd += ["--html-dir", str(html_dir)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise DashboardError(f"cannot run asv: {e}") from e
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise DashboardError("asv publish failed" + (": " + " | ".join(tail) if tail else "")
                             + (" (pip install 'convbackends[bench]')"
                                if "No module named asv" in done.stderr else ""))
    html_dir = Path(html_dir) if html_dir is not None else html_dir_of(config)
    return html_dir, vendor(html_dir, cache_dir, progress)
