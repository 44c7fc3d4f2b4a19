"""ccache by default, where a machine has a usable one: masquerading as the compiler.

Why: most compiles of a board are the same from one build to the next (a
re-check of a branch with ``-f``, a board coming back to a slot whose O= was
wiped for another board, the same tree built again by a worker), and ccache
turns those into copies.

A default must never change a build's result, so the default does not touch
``CROSS_COMPILE`` (nor any make variable or make command): with
``CROSS_COMPILE="ccache <prefix>"`` every ``$(CROSS_COMPILE)tool`` becomes
two words, and a rule passing one as a single argument breaks (U-Boot's
``build_api.py --objcopy $(OBJCOPY)``: "unrecognized arguments"). Instead a
private directory of links named as the compilers make runs (``<prefix>gcc``,
``<prefix>cc``) pointing at ccache goes first on the make's ``PATH``
(ccache's masquerade mode: ccache then runs the real compiler of that name
found later on ``PATH``, skipping itself). That needs the compiler found on
``PATH``: with ``-p`` (an absolute ``CROSS_COMPILE``) or ``-O`` (make gets CC
itself) builds run without ccache. ``[toolchain-wrapper]`` is the user's own
choice and stays what buildman does with it: in ``CROSS_COMPILE``.
``[global] ccache = false`` or ``--no-ccache`` turns the default off.

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

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
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
    program: str = ""  # the ccache found (absolute), when usable


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
    return CcacheProbe(True, program=os.path.abspath(program))


@dataclass(frozen=True)
class WrapperChoice:
    """How a machine's builds run: ``wrapper`` goes into ``CROSS_COMPILE`` (the
    user's ``[toolchain-wrapper]``, or ""); ``ccache`` is the ccache program
    to masquerade as the compiler (the default, or ""); ``note`` is for the
    user ("" for nothing to say)."""

    wrapper: str = ""
    ccache: str = ""
    note: str = ""


def choose_wrapper(configured: str | None, ccache: bool,
                   env: Mapping[str, str] | None = None) -> WrapperChoice:
    """The user's wrapper, else ccache (masquerading) where wanted and usable, else none.

    ``configured`` is the ``[toolchain-wrapper]`` (None or "": none set): it
    wins as it is (a missing program is the caller's error to report).
    """
    if configured:
        return WrapperChoice(wrapper=configured)
    if not ccache:
        return WrapperChoice()
    found = probe(env)
    if found.usable:
        return WrapperChoice(ccache=found.program)
    return WrapperChoice(note=f"{found.note}; building without ccache" if found.note else "")


def masquerade_names(cross: str, compiler_dir: Path) -> list[str]:
    """The compilers of a toolchain a build may run by name: ``<cross>gcc`` and,
    where the toolchain has it, ``<cross>cc``. A name with no real program
    beside it gets no link (ccache would fail where make says "not found")."""
    return [f"{cross}{name}" for name in ("gcc", "cc")
            if name == "gcc" or (compiler_dir / f"{cross}{name}").exists()]


def link_dir_base(env: Mapping[str, str] | None = None) -> Path:
    """Where this login's masquerade directories live (``~/.cache/buildfleet/ccache-bin``)."""
    environ = os.environ if env is None else env
    cache = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(cache) / "buildfleet" / "ccache-bin"


def _links_ok(directory: Path, program: str, names: list[str]) -> bool:
    try:
        return sorted(os.listdir(directory)) == sorted(names) and all(
            os.readlink(directory / name) == program for name in names)
    except OSError:
        return False


def masquerade_dir(program: str, names: list[str], base: Path | None = None) -> Path:
    """A directory holding only ``names``, each a link to ``program`` (ccache).

    Named after what it holds, and never changed once made, so any number of
    runs and slots share it: it is built under a temporary name and renamed
    into place (a run that loses the race uses the winner's). OSError when
    it cannot be made.
    """
    base = link_dir_base() if base is None else base
    key = hashlib.sha256("\0".join([program, *sorted(names)]).encode()).hexdigest()[:16]
    final = base / key
    if _links_ok(final, program, names):
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=base))
    try:
        for name in names:
            os.symlink(program, tmp / name)
        tmp.chmod(0o755)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _links_ok(final, program, names):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
