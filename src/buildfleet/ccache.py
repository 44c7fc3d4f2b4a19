"""ccache as the default toolchain wrapper, where a machine has a usable one.

Why: most compiles of a board are the same from one build to the next (a
re-check of a branch with ``-f``, a board coming back to a slot whose O= was
wiped for another board, the same tree built again by a worker), and ccache
turns those into copies. It is used through the toolchain wrapper that
already exists (``CROSS_COMPILE="ccache <prefix>"``, what buildman does with
``[toolchain-wrapper] wrapper = ccache``), so nothing else about a build
changes. A ``[toolchain-wrapper]`` the user set always wins; ``[global]
ccache = false`` or ``--no-ccache`` turns the default off.

Each machine decides for itself: the boss for its local slots, a worker for
its own machine. ccache must be on that machine's PATH and able to write its
cache (a ccache that cannot fails every compile), else that machine builds
without it: a default never makes a machine unusable.

One cache serves every slot, run and output tree of a login: nothing here
sets ``CCACHE_DIR`` (the user's, or ccache's default), ``CCACHE_BASEDIR`` or
``CCACHE_NOHASHDIR``. ccache's default hashing is kept on purpose: U-Boot
compiles with ``-g``, so an object holds the directory it was compiled in
(``DW_AT_comp_dir``). Sharing an object between two slot worktrees
(``hash_dir = false``) would give a board linked from both a second copy of
that path in ``.debug_line_str``, and ``base_dir`` makes ccache run the
compiler with relative paths instead of the absolute ones kbuild gave (on the
demo tree ``-I<O=>/include``), which changes the debug sections too: either
way ``<elf>.objdump`` would differ from a build without ccache. With the
defaults a hit is exactly the object the compiler would have written here,
and ccache replays the compiler's warnings, so every result file is the same.

Standard library only: workers import this on a machine's bare python3.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CCACHE = "ccache"
PROBE_TIMEOUT = 20.0

# ``ccache -p`` lines: "(default) cache_dir = /home/u/.cache/ccache" (ccache 3 and 4).
_CONFIG_RE = re.compile(r"^\(([^)]*)\) (\w+) = (.*)$", re.M)


@dataclass(frozen=True)
class CcacheProbe:
    """Whether builds on this machine can go through ccache.

    ``note`` says why an installed ccache is not used ("" when it is used, or
    when there is none, which is nothing to warn about).
    """

    usable: bool
    note: str = ""


def _writable(directory: Path) -> bool:
    """Can this user create ``directory`` (or write in it, if it exists)?"""
    for place in (directory, *directory.parents):
        if place.exists():
            return place.is_dir() and os.access(place, os.W_OK | os.X_OK)
    return False


def probe(env: Mapping[str, str] | None = None) -> CcacheProbe:
    """Look for a working ccache on ``env``'s PATH (default: this process's)."""
    environ = dict(os.environ if env is None else env)
    program = shutil.which(CCACHE, path=environ.get("PATH", ""))
    if program is None:
        return CcacheProbe(False)
    try:
        proc = subprocess.run([program, "-p"], env=environ, capture_output=True, text=True,
                              errors="replace", timeout=PROBE_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CcacheProbe(False, f"{program} does not run ({exc})")
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[0]
        return CcacheProbe(False, f"'{program} -p' failed: {why}")
    config = {key: value.strip() for _src, key, value in _CONFIG_RE.findall(proc.stdout)}
    if config.get("disable") == "true":
        return CcacheProbe(False)  # the user turned ccache off in its own configuration
    for key in ("cache_dir", "temporary_dir"):
        directory = config.get(key, "")
        if directory and not _writable(Path(directory)):
            return CcacheProbe(False, f"ccache cannot write its {key} {directory}")
    return CcacheProbe(True)


def choose_wrapper(configured: str | None, ccache: bool,
                   env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(the wrapper builds use, a note for the user or "").

    ``configured`` is the ``[toolchain-wrapper]`` (None or "": none set): it
    wins as it is (a missing program is the caller's error to report).
    Otherwise ccache when ``ccache`` is wanted and this machine has a usable
    one, else no wrapper.
    """
    if configured:
        return configured, ""
    if not ccache:
        return "", ""
    found = probe(env)
    if found.usable:
        return CCACHE, ""
    return "", f"{found.note}; building without ccache" if found.note else ""
