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

from buildfleet import __version__
from buildfleet.errors import InfraError
from buildfleet.model import COPIED_FROM, IMAGE_HASHES, TOOLCHAIN_ERROR_RC, BuildResult, Commit
from buildfleet.results.paths import commit_dir, is_safe_name
from buildfleet.results.reproducer import SCRIPT_NAME, Reproducer

# Names the writer itself owns; a result may not supply these as files.
RESERVED = frozenset({"done", "err", "log", "duration", "host", SCRIPT_NAME})


class UnsafeResult(InfraError, ValueError):
    """A result named a board or file that would leave the output tree."""


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def _put(dir_fd: int, name: str, data: bytes, mode: int = 0o666) -> None:
    """Create ``name`` in the directory ``dir_fd`` holding exactly ``data``.

    Plain ``os`` calls relative to an open directory: a world build writes
    ~15 files per result, thousands of results a second on a big fleet, and
    pathlib plus buffered file objects cost more than the writes themselves.
    """
    fd = os.open(name, _CREATE, mode, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _text(text: str) -> bytes:
    return text.encode("utf-8", "replace")


class ResultWriter:
    """Writes ``BuildResult``s under ``base``; thread-safe, at most once per board × commit.

    It also remembers, per written board × commit, the ``images.sha256`` it
    wrote and the host that built it (see :meth:`written_hashes`), so a second
    copy of the same result can be compared without reading the tree back.
    """

    def __init__(self, base: Path, commits: list[Commit], in_place: Path | None = None) -> None:
        self.base = base
        self.in_place = in_place
        self.commits = {c.sequence: c for c in commits}
        self._written: set[tuple[str, int]] = set()
        self._hashes: dict[tuple[str, int], tuple[bytes, str]] = {}
        self._dirs: dict[int, str] = {}
        self._lock = threading.Lock()

    def _commit_dir(self, sequence: int) -> str:
        """The commit's directory (created once per run, then remembered)."""
        with self._lock:
            path = self._dirs.get(sequence)
        if path is None:
            path = str(commit_dir(self.base, self.commits[sequence]))
            os.makedirs(path, exist_ok=True)
            with self._lock:
                self._dirs[sequence] = path
        return path

    def write(self, result: BuildResult) -> Path | None:
        """Write ``result``; None if this board × commit was already written this run."""
        if not self.reserve(result):
            return None
        return self.commit(result)

    def reserve(self, result: BuildResult) -> bool:
        """Check ``result`` and claim its board × commit; False if already claimed.

        Cheap and synchronous, so an executor learns at once that a result is
        unsafe (UnsafeResult) or a duplicate; ``commit`` does the file I/O.
        """
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
                return False
            self._written.add(key)
            hashes = result.files.get(IMAGE_HASHES)
            if hashes is not None and COPIED_FROM not in result.files:
                self._hashes[key] = (hashes, result.host)
        return True

    def commit(self, result: BuildResult) -> Path:
        """Write a reserved result into the tree (whole, or not at all)."""
        key = (result.target, result.sequence)
        try:
            return self._write(result)
        except BaseException:
            with self._lock:  # nothing was written: a later copy may still be
                self._written.discard(key)
                self._hashes.pop(key, None)
            raise

    def _write(self, result: BuildResult) -> Path:
        if self.in_place is not None:
            return self._write_in_place(self.in_place, result)
        parent = self._commit_dir(result.sequence)
        final = os.path.join(parent, result.target)
        tmp = os.path.join(parent, f".{result.target}.tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            os.mkdir(tmp)
        except FileExistsError:
            shutil.rmtree(tmp, ignore_errors=True)
            os.mkdir(tmp)
        try:
            self._fill(tmp, result, self.commits[result.sequence].hash)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            os.rename(tmp, final)
        except OSError:
            # An older result of this board (a forced rebuild): replace it whole.
            shutil.rmtree(final, ignore_errors=True)
            os.rename(tmp, final)
        return Path(final)

    def _write_in_place(self, path: Path, result: BuildResult) -> Path:
        """``-w``: the result's files go straight into ``path`` (the build's O=).

        It cannot be renamed into place (make's objects live there), so ``done``
        goes first (removed) and last (written): a half-written result never
        looks finished.
        """
        path.mkdir(parents=True, exist_ok=True)
        (path / "done").unlink(missing_ok=True)
        (path / "err").unlink(missing_ok=True)
        self._fill(str(path), result, self.commits[result.sequence].hash)
        return path

    @staticmethod
    def _fill(tmp: str, result: BuildResult, commit_hash: str | None) -> None:
        dir_fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name, data in result.files.items():
                if name not in RESERVED:
                    _put(dir_fd, name, data)
            # Rendered here, from the files every builder sends, so a board
            # built by a worker gets exactly the script a local one gets.
            repro = Reproducer.from_files(result.target, commit_hash, result.files,
                                          result.return_code)
            if repro is not None:
                script = repro.script(f"buildfleet {__version__}")
                _put(dir_fd, SCRIPT_NAME, script.encode(), 0o777)
            _put(dir_fd, "log", _text(result.stdout))
            if result.stderr:
                _put(dir_fd, "err", _text(result.stderr))
            _put(dir_fd, "duration", f"{result.duration:.3f}\n".encode())
            if result.host:
                _put(dir_fd, "host", _text(result.host + "\n"))
            if result.return_code == TOOLCHAIN_ERROR_RC and "toolchain" not in result.files:
                _put(dir_fd, "done", b"2\n")  # no toolchain: buildman's marker
            else:
                _put(dir_fd, "done", str(result.return_code).encode())
        finally:
            os.close(dir_fd)

    def written_hashes(self, target: str, sequence: int) -> tuple[bytes, str] | None:
        """``images.sha256`` and host of the result written for this board × commit."""
        with self._lock:
            return self._hashes.get((target, sequence))
