"""The user manual shipped in the package, and ``-H`` that prints it.

The manual lives next to the code as package data so that every install
(wheel, editable checkout, the zipapp shipped to workers) carries the text
that matches its own flags. ``-H`` shows it through a pager when a person is
reading at a terminal; otherwise it writes the file's bytes unchanged, so
scripts and tests see exactly what is on disk (UTF-8 arrows included).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import BinaryIO

MANUAL_NAME = "buildfleet.rst"
DEFAULT_PAGER = "less"


def manual_path() -> Path:
    """Path of the manual inside the installed package."""
    ref = resources.files("buildfleet") / "docs" / MANUAL_NAME
    return Path(str(ref))


def _read_manual() -> bytes | None:
    try:
        return (resources.files("buildfleet") / "docs" / MANUAL_NAME).read_bytes()
    except OSError:
        return None


def _pager_argv() -> list[str] | None:
    """The pager to use: ``$PAGER`` if set, else ``less`` if installed."""
    pager = os.environ.get("PAGER", "").strip()
    if pager:
        try:
            argv = shlex.split(pager)
        except ValueError:
            argv = []
        if argv:
            return argv
    less = shutil.which(DEFAULT_PAGER)
    return [less] if less else None


def _page(data: bytes, argv: list[str]) -> bool:
    """Feed ``data`` to the pager; False if the pager could not run."""
    env = dict(os.environ)
    env.setdefault("LESSCHARSET", "utf-8")
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, env=env)
    except OSError:
        return False
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the reader quit the pager before the end: that is fine
    try:
        proc.wait()
    except KeyboardInterrupt:
        proc.wait()
    return True


def _write_plain(data: bytes, out: BinaryIO) -> None:
    try:
        out.write(data)
        out.flush()
    except BrokenPipeError:
        # e.g. ``buildfleet -H | head``: stop quietly, and keep the
        # interpreter's final flush of stdout from complaining too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        finally:
            os.close(devnull)


def show_manual(out: BinaryIO | None = None) -> int:
    """Print the manual; returns the exit code for ``-H``.

    With ``out`` given, its bytes are written there unchanged. Otherwise, on a
    terminal the manual goes through ``$PAGER`` (else ``less``, else plain);
    when stdout is not a terminal the file's exact bytes are written to it.
    """
    data = _read_manual()
    if data is None:
        print(f"buildfleet: the manual {MANUAL_NAME} is missing from this install",
              file=sys.stderr)
        return 1
    if out is not None:
        _write_plain(data, out)
        return 0
    if sys.stdout.isatty():
        argv = _pager_argv()
        if argv is not None:
            sys.stdout.flush()
            if _page(data, argv):
                return 0
    _write_plain(data, sys.stdout.buffer)
    return 0
