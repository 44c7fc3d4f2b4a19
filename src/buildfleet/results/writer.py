"""The one writer of results into the output tree, whoever built them.

A result directory appears whole or not at all: files are written into a
private temporary directory and renamed into place, so an interrupted run, a
full disk or a worker that died half-way never leaves a board marked done
with missing files. Writing the same board × commit twice is refused.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

from buildfleet.model import BuildResult, Commit
from buildfleet.results.paths import build_dir, is_safe_name

# Names the writer itself owns; a result may not supply these as files.
RESERVED = frozenset({"done", "err", "log", "duration", "host"})


class UnsafeResult(ValueError):
    """A result named a board or file that would leave the output tree."""


class ResultWriter:
    """Writes ``BuildResult``s under ``base``; thread-safe, at most once per board × commit."""

    def __init__(self, base: Path, commits: list[Commit]) -> None:
        self.base = base
        self.commits = {c.sequence: c for c in commits}
        self._written: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def path_for(self, target: str, sequence: int) -> Path:
        return build_dir(self.base, self.commits[sequence], target)

    def write(self, result: BuildResult) -> Path | None:
        """Write ``result``; None if this board × commit was already written this run."""
        if not is_safe_name(result.target):
            raise UnsafeResult(f"refusing result for unsafe board name {result.target!r}")
        if result.sequence not in self.commits:
            raise UnsafeResult(f"result for unknown commit {result.sequence} of "
                               f"{result.target}")
        for name in result.files:
            if not is_safe_name(name) and not (name.startswith(".") and
                                               is_safe_name(name[1:])):
                raise UnsafeResult(f"refusing file {name!r} in result of {result.target}")
        key = (result.target, result.sequence)
        with self._lock:
            if key in self._written:
                return None
            self._written.add(key)
        final = self.path_for(result.target, result.sequence)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{result.target}.tmp-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, data in result.files.items():
            if name not in RESERVED:
                (tmp / name).write_bytes(data)
        (tmp / "log").write_text(result.stdout)
        if result.stderr:
            (tmp / "err").write_text(result.stderr)
        (tmp / "duration").write_text(f"{result.duration:.3f}\n")
        if result.host:
            (tmp / "host").write_text(result.host + "\n")
        (tmp / "done").write_text(str(result.return_code))
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        return final

    def already_written(self, target: str, sequence: int) -> bool:
        with self._lock:
            return (target, sequence) in self._written
