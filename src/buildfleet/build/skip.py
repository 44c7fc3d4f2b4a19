"""Skipping a board at a commit that cannot change its result.

In a series where most commits touch one driver, most boards compile nothing
new at most commits: their make re-links nothing and their result files come
out as the previous commit's. When that is certain, the builder records the
previous commit's result again (``copied_result``) instead of running make.

"Certain" is decided conservatively (``why_build`` gives the first reason to
build; None means the result cannot differ). The previous commit must have
been built in this O= directory by this builder (same flags, same toolchain)
with return code 0, and every file the commit changes must be

- modified, not added, deleted, renamed or changed in type (a new header can
  shadow another on the include path, a new source can be picked up by a
  ``$(wildcard)``, and a dependency file cannot tell of either);
- a C, assembler or device-tree source or header (``.c .h .S .s .dts
  .dtsi``) outside ``scripts/``: Makefiles, Kconfig, ``*.mk``, linker
  scripts, scripts and binary blobs are read by make or by rules whose reads
  no dependency file records;
- named in no dependency file make left in O= (kbuild's ``.<target>.cmd``,
  gcc ``-MD`` ``.d`` files, ``*.dep``). Every word of those files counts as a
  path (a superset of the real dependencies), read relative to O= and to the
  source tree, with symbolic links resolved (U-Boot links
  ``include/asm/arch`` to ``arch-<soc>`` in O=);
- not present under O= by the same name (a generated file of that name).

A build directory with no dependency file at all is always built.

Stdlib and ``buildfleet`` only: workers run this on a bare ``python3``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from buildfleet.model import COPIED_FROM, BuildResult

SOURCE_SUFFIXES = frozenset({".c", ".h", ".S", ".s", ".dts", ".dtsi"})
BUILD_SCRIPT_DIRS = ("scripts/",)


def is_dep_file(name: str) -> bool:
    """A file in which make or the compiler records what a target was built from."""
    return ((name.startswith(".") and name.endswith(".cmd")) or name.endswith(".d")
            or name.endswith(".dep"))


def _words(text: str) -> set[str]:
    words = set()
    for raw in text.split():
        word = raw.rstrip(":)\\").strip("'\"")
        if word and word[0] not in "-$" and "=" not in word:
            words.add(word)
    return words


def read_deps(out_dir: Path, source_dir: Path) -> frozenset[str] | None:
    """Every source-relative path the dependency files under ``out_dir`` name.

    None when there is no dependency file. Paths are relative to
    ``source_dir`` (words outside it are kept as written, normalised).
    """
    words: set[str] = set()
    found = False
    for top, _dirs, files in os.walk(out_dir):
        for name in files:
            if not is_dep_file(name):
                continue
            try:
                with open(os.path.join(top, name), encoding="utf-8", errors="replace") as f:
                    words |= _words(f.read())
            except OSError:
                return None  # unreadable: not known, so not trusted
            found = True
    if not found:
        return None
    src_real = os.path.realpath(source_dir)
    paths: set[str] = set()
    for word in words:
        paths.add(os.path.normpath(word))
        for base in (str(out_dir), str(source_dir)):
            joined = os.path.join(base, word)
            for candidate in (os.path.normpath(joined), os.path.realpath(joined)):
                if candidate.startswith(src_real + os.sep):
                    paths.add(os.path.relpath(candidate, src_real))
                elif candidate.startswith(str(source_dir) + os.sep):
                    paths.add(os.path.relpath(candidate, source_dir))
    return frozenset(paths)


def why_build(changed: list[tuple[str, str]], out_dir: Path,
              deps: Callable[[], frozenset[str] | None]) -> str | None:
    """The first reason the commit must be built, or None if it cannot change the result.

    ``changed`` is ``(git status letter, path)`` per file the commit changes
    (``gitutil.changed_status``); ``deps()`` gives what :func:`read_deps`
    finds, asked only once the cheap checks have passed (on a real tree O=
    holds thousands of ``.cmd`` files).
    """
    for status, path in changed:
        if status != "M":
            return f"{path}: not only modified ({status})"
        if (os.path.splitext(path)[1] not in SOURCE_SUFFIXES
                or path.startswith(BUILD_SCRIPT_DIRS)):
            return f"{path}: a build input make reads without recording it"
        if os.path.lexists(out_dir / path):
            return f"{path}: also a generated file in O="
    known = deps()
    if known is None:
        return "no dependency files in O="
    for _status, path in changed:
        if path in known:
            return f"{path}: read by the previous build"
    return None


def copied_result(previous: BuildResult, sequence: int, from_hash: str, out_cmd: bytes,
                  duration: float) -> BuildResult:
    """``previous`` recorded again for the commit ``sequence``, marked as a copy.

    Every file is the previous result's, but ``out-cmd``: the make command this
    commit would have run (a build without configure), as an unskipped build
    of it writes.
    """
    files = dict(previous.files)
    files["out-cmd"] = out_cmd
    files[COPIED_FROM] = f"{from_hash}\n".encode()
    return BuildResult(previous.target, sequence, previous.return_code, previous.stdout,
                       previous.stderr, duration, previous.host, files)
