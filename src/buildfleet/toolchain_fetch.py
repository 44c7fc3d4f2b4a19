"""``--fetch-arch``: download a cross toolchain and make it known.

Kept apart from discovery (``toolchains``) because it is the only part that
talks to the network and unpacks archives; it must also run on a machine's
own, possibly older, Python 3.11 when the boss fetches remotely.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from buildfleet.settings import Settings, SettingsError, add_download_path
from buildfleet.toolchains import (
    PRIO_DOWNLOAD,
    Log,
    Toolchain,
    gccs_in,
    split_gcc_name,
    test_gcc,
)

FETCH_VERSIONS = ("14.2.0", "13.2.0")
DEFAULT_FETCH_URL = "https://www.kernel.org/pub/tools/crosstool/files/bin/{host}/"
FETCH_URL_ENV = "BUILDFLEET_FETCH_URL"
DOWNLOAD_DIR = ".buildman-toolchains"


def host_arch() -> str:
    """kernel.org's name for this host's arch (``uname -m``, aarch64 -> arm64)."""
    machine = platform.machine() or "x86_64"
    return "arm64" if machine == "aarch64" else machine


def fetch_base_url(settings: Settings, base_url: str | None = None) -> str:
    """Where the per-version index pages live (argument, setting, env, kernel.org)."""
    url = base_url or os.environ.get(FETCH_URL_ENV) or settings.fetch_url or DEFAULT_FETCH_URL
    url = url.replace("{host}", host_arch())
    return url if url.endswith("/") else url + "/"


_HREF_RE = re.compile(r"""href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_TAR_ARCH_RE = re.compile(r"nolibc[-_]([^-/]+)-")


def _tarball_arch(name: str) -> str | None:
    m = _TAR_ARCH_RE.search(name)
    return m.group(1) if m else None


def _tarball_matches(name: str, arch: str) -> bool:
    found = _tarball_arch(name)
    if found is not None:
        return found == arch
    return re.search(rf"[-_]{re.escape(arch)}-", name) is not None


def _read_index(url: str) -> list[str] | None:
    """Absolute URLs of the ``.tar.xz`` links on an index page; None if unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            page = resp.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    links = []
    for href in _HREF_RE.findall(page):
        full = urllib.parse.urljoin(url, href)
        if urllib.parse.urlparse(full).path.endswith(".tar.xz"):
            links.append(full)
    return links


def _link_name(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlparse(url).path.rsplit("/", 1)[-1])


def _gccs_for(root: Path, arch: str) -> list[Path]:
    """gcc programs for ``arch`` in a download directory (``root/*/*``)."""
    found = []
    for sub in sorted(glob.glob(str(root / "*" / "*"))):
        for directory in (Path(sub), Path(sub) / "bin", Path(sub) / "usr" / "bin"):
            found += [g for g in gccs_in(directory) if split_gcc_name(g.name)[1] == arch]
    return found


def _merge_into(src: Path, dest: Path) -> None:
    """Move an unpacked tree into ``dest``, merging directories that exist.

    Unpacking elsewhere first means a bad tarball leaves nothing behind.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        target = dest / entry.name
        if entry.is_dir() and not entry.is_symlink() and target.is_dir():
            _merge_into(entry, target)
        else:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)


def _safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Unpack without letting a member escape ``dest``.

    Python 3.11.4+ has extraction filters; a machine's older 3.11 (Debian
    ships 3.11.2) does not, so the same rules are checked by hand there.
    """
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in tar.getmembers():
        target = (dest / member.name).resolve()
        if member.name.startswith("/") or not target.is_relative_to(root):
            raise tarfile.TarError(f"unsafe path in archive: {member.name}")
        if member.issym() or member.islnk():
            link = (target.parent / member.linkname).resolve()
            if member.linkname.startswith("/") or not link.is_relative_to(root):
                raise tarfile.TarError(f"unsafe link in archive: {member.name}")
        if member.isdev():
            raise tarfile.TarError(f"device file in archive: {member.name}")
    tar.extractall(dest)  # noqa: S202 - every member checked above


def _fetch_one(arch: str, indexes: list[tuple[str, list[str]]], settings: Settings,
               dest: Path, log: Log) -> int:
    url = next((link for _, links in indexes for link in links
                if _tarball_matches(_link_name(link), arch)), None)
    if url is None:
        log(f"Cannot find toolchain for arch '{arch}' - use 'list' to list")
        return 2
    name = _link_name(url)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=dest) as tmp:
            tarball = Path(tmp) / name
            log(f"Downloading: {url}")
            with urllib.request.urlopen(url, timeout=60) as resp, open(tarball, "wb") as out:
                shutil.copyfileobj(resp, out)
            log(f"Unpacking to: {dest}")
            unpack = Path(tmp) / "unpack"
            with tarfile.open(tarball, "r:*") as tar:
                _safe_extract(tar, unpack)
            _merge_into(unpack, dest)
    except (urllib.error.URLError, OSError, tarfile.TarError, EOFError) as exc:
        log(f"Error: download of '{url}' failed: {exc}")
        return 1
    log("Testing")
    gccs = _gccs_for(dest, arch)
    if not gccs:
        log("Could not locate C compiler - fetch failed.")
        return 1
    if len(gccs) > 1:
        log(f"Warning, ambiguous toolchains: {', '.join(str(g) for g in gccs)}")
    gcc = gccs[0]
    cross, _ = split_gcc_name(gcc.name)
    ok, output = test_gcc(Toolchain(gcc=gcc, arch=arch, cross=cross, priority=PRIO_DOWNLOAD))
    if not ok:
        log(f"Error: '{gcc} --version' failed: {output.splitlines()[0] if output else ''}")
        return 1
    pattern = f"{dest}/*/*"
    if pattern not in settings.toolchain_paths.values():
        log(f"Adding 'download' to config file '{settings.path}'")
        try:
            add_download_path(settings, pattern)
        except SettingsError as exc:
            log(f"Error: {exc}")
            return 1
    return 0


def fetch_arch(arch: str, settings: Settings, *, base_url: str | None = None,
               dest: Path | None = None, log: Log = print) -> int:
    """``--fetch-arch``: ``list``, ``all``, one arch or a comma list.

    Returns 0 when everything asked for was fetched and works, 2 when an arch
    is not offered, 1 when a download, unpack or compiler test fails.
    """
    base = fetch_base_url(settings, base_url)
    dest = dest if dest is not None else Path.home() / DOWNLOAD_DIR
    indexes: list[tuple[str, list[str]]] = []
    for version in FETCH_VERSIONS:
        url = f"{base}{version}/"
        log(f"Checking: {url}")
        links = _read_index(url)
        if links is not None:
            indexes.append((version, links))
    if not indexes:
        log(f"Error: no toolchain index found at {base}")
        return 1
    offered: list[str] = []
    for _, links in indexes:
        for link in links:
            found = _tarball_arch(_link_name(link))
            if found and found not in offered:
                offered.append(found)
    wanted = arch.strip()
    if wanted == "list":
        log(f"Available architectures: {' '.join(sorted(offered))}")
        return 0
    archs = offered if wanted == "all" else [a.strip() for a in wanted.split(",") if a.strip()]
    if not archs:
        log("Error: no architecture given")
        return 2
    codes = [_fetch_one(one, indexes, settings, dest, log) for one in archs]
    failures = [rc for rc in codes if rc]
    return min(failures) if failures else 0
