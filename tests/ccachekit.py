"""Helpers for the tests of ccache as the default (masquerading as the compilers).

The tests use the real ``/usr/bin/ccache``, each with a cache directory of its
own (``CCACHE_DIR``), and read its counters with ``ccache --print-stats``.
A machine without ccache is a ``PATH`` without it: a directory of links to
every program of ``/usr/bin`` but ccache (the compilers resolve their own
directories through the links).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from buildfleet.results.reproducer import parse_out_env
from ci_skip import require

CCACHE = "/usr/bin/ccache"


def require_ccache() -> None:
    """Skip (fail under CI=true, where scripts/setup installs it) without ccache."""
    require(os.access(CCACHE, os.X_OK), f"{CCACHE} is not installed (apt-get install ccache)")


def stats(cache_dir: Path) -> dict[str, int]:
    """The counters of the cache in ``cache_dir`` (``ccache --print-stats``)."""
    proc = subprocess.run([CCACHE, "--print-stats"], env=dict(os.environ, CCACHE_DIR=str(
        cache_dir)), capture_output=True, text=True, check=True, timeout=60)
    out = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("\t")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


def hits(counters: dict[str, int]) -> int:
    return counters.get("direct_cache_hit", 0) + counters.get("preprocessed_cache_hit", 0)


def compiles(counters: dict[str, int]) -> int:
    """Compiles ccache handled (hits and misses; not links, which it passes on)."""
    return hits(counters) + counters.get("cache_miss", 0)


def zero_stats(cache_dir: Path) -> None:
    subprocess.run([CCACHE, "-z"], env=dict(os.environ, CCACHE_DIR=str(cache_dir)),
                   capture_output=True, check=True, timeout=60)


def path_without_ccache(directory: Path) -> Path:
    """``directory`` filled with links to ``/usr/bin``'s programs, ccache left out."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    for entry in os.scandir("/usr/bin"):
        if entry.name != "ccache":
            (directory / entry.name).symlink_to(entry.path)
    assert shutil.which("ccache", path=str(directory)) is None
    return directory


def cross_compile(build: Path) -> str:
    """``CROSS_COMPILE`` of a result as its ``out-env`` records it."""
    text = (build / "out-env").read_text()
    start = text.index('CROSS_COMPILE="') + len('CROSS_COMPILE="')
    return text[start:text.index('"', start)]


def out_path(build: Path) -> str:
    """``PATH`` of a result as its ``out-env`` records it."""
    return parse_out_env((build / "out-env").read_text())["PATH"]


def masquerade(build: Path) -> Path | None:
    """The directory of links to ccache first on the result's make ``PATH``, if any."""
    first = Path(out_path(build).split(os.pathsep)[0])
    gcc = [p for p in first.glob("*gcc") if p.is_symlink()]
    if gcc and all(Path(os.path.realpath(p)).name == "ccache" for p in first.iterdir()):
        return first
    return None
