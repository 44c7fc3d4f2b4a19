"""A worker's work directory: create it, lock it, make it a push target.

Two bosses sharing one work directory would check out over each other's
worktrees, so each directory has a lock. buildman's lock was machine-wide and
trusted ``pgrep`` for "any worker": one boss per machine, and a crashed worker
from another user blocked everyone. Here the lock is per directory: the file
``<work_dir>/.lock`` holds ``pid hostname`` and an ``flock`` for the worker's
lifetime. A lock is live only if its pid runs on this host and is a
buildfleet worker (or its flock is still held); anything else is stale and
replaced.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from buildfleet import gitutil
from buildfleet.errors import InfraError
from buildfleet.fleet.worker.reaper import reap_inside

LOCK_NAME = ".lock"


class WorkDirError(InfraError):
    """The work directory cannot be used; the text is the ``error`` reply.

    ``reason`` is ``in_use`` when another live worker holds it (the boss then
    tries another directory of its own), else "".
    """

    def __init__(self, msg: str, reason: str = "") -> None:
        super().__init__(msg)
        self.reason = reason


def is_worker_argv(argv: list[bytes]) -> bool:
    """Is this argv (``/proc/PID/cmdline`` split at NULs) a buildfleet worker's?

    The one answer to "is this process a worker": the lock check here and
    ``--kill-workers`` (which sends this function's source to machines
    without buildfleet) both use it. Self-contained on purpose.
    """
    return b"--worker" in argv and any(b"buildfleet" in a or b"buildman" in a for a in argv)


def is_worker_process(pid: int) -> bool:
    """True if ``pid`` runs on this machine and is a buildfleet worker."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False  # gone since (or no /proc): only the flock can tell
    except OSError:
        return True  # alive and unreadable: assume the worst
    return is_worker_argv([a for a in raw.split(b"\0") if a])


def _read_lock(text: str) -> tuple[int, str]:
    parts = text.split()
    try:
        pid = int(parts[0])
    except (IndexError, ValueError):
        return 0, ""
    return pid, parts[1] if len(parts) > 1 else ""


@dataclass
class WorkDir:
    """A set-up work directory; ``release`` gives it up (lock and temp dir)."""

    path: Path
    git_dir: Path
    temporary: bool = False
    _lock_fd: int | None = field(default=None, repr=False)

    @property
    def slots_root(self) -> Path:
        return self.path / ".bm-work"

    def release(self) -> None:
        """Remove our lock (if it is still ours) and a temporary directory."""
        if self._lock_fd is None:
            return
        lock = self.path / LOCK_NAME
        try:
            pid, host = _read_lock(lock.read_text())
            if pid == os.getpid() and host == socket.gethostname():
                lock.unlink()
        except OSError:
            pass
        os.close(self._lock_fd)
        self._lock_fd = None
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)


def _take_lock(path: Path) -> int:
    """Lock ``path``/.lock for this process, or raise WorkDirError."""
    lock = path / LOCK_NAME
    me = f"{os.getpid()} {socket.gethostname()}\n"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise WorkDirError(f"cannot create lock {lock}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = False
        except OSError:
            held = True
        text = os.pread(fd, 256, 0).decode("utf-8", "replace")
        pid, host = _read_lock(text)
        if held or (host == socket.gethostname() and pid != os.getpid()
                    and is_worker_process(pid)):
            where = f"pid {pid}" if pid else "another worker"
            if host and host != socket.gethostname():
                where += f" on {host}"
            raise WorkDirError(f"work directory {path} is in use by {where}", reason="in_use")
        if host and host != socket.gethostname() and pid:
            # Another machine sharing this directory (NFS home): we cannot
            # see its processes, and its flock did not reach us. Refuse.
            raise WorkDirError(f"work directory {path} is locked by pid {pid} on {host} "
                               f"(remove {lock} if that worker is gone)", reason="in_use")
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        return fd
    except BaseException:
        os.close(fd)
        raise


def setup_work_dir(work_dir: str) -> WorkDir:
    """Create (or reuse) and lock a work directory with a git repo that accepts pushes.

    An empty ``work_dir`` means a fresh temporary directory, deleted on release.
    """
    temporary = not work_dir
    if temporary:
        path = Path(tempfile.mkdtemp(prefix="bm-worker-"))
    else:
        path = Path(os.path.expanduser(work_dir)).absolute()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkDirError(f"cannot create work directory {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise WorkDirError(f"work directory {path} is not a directory")
    fd = _take_lock(path)
    # The directory is ours now: whatever still runs in it belongs to a worker
    # that died without stopping its makes (SIGKILL); stop them before reuse.
    reap_inside(path)
    wd = WorkDir(path, path / ".git", temporary, fd)
    try:
        if not (path / ".git").exists():
            gitutil.git(["init", "-q"], cwd=path)
        gitutil.git(["config", "receive.denyCurrentBranch", "updateInstead"], cwd=path)
    except gitutil.GitError as exc:
        wd.release()
        raise WorkDirError(f"git init failed in {path}: {exc}") from None
    return wd
