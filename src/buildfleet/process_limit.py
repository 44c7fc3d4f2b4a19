"""``--process-limit N``: start building only while fewer than N runs are active.

Shared CI machines run several buildfleet (or buildman) jobs at once; this
keeps at most N of them building. Each run that uses the flag holds an
exclusive ``flock`` on a file of its own in a per-user directory
(``$TMPDIR/buildfleet-runs-<uid>/``) for as long as it builds. A run counts the
files whose lock is held; a file whose lock can be taken belongs to a run
that ended, however it ended (the kernel drops a dead process's locks, even
after SIGKILL), and is removed. So no stale entry can block anyone: unlike
buildman's PID list, whose lock file may outlive its owner and then needs a
10 s "bust", and whose PIDs may be reused by unrelated processes.

Counting and registering happen under one more lock (``.lock`` in the same
directory), so two runs starting together cannot both take the last place.
"""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

POLL_SECONDS = 0.5
GUARD = ".lock"
SUFFIX = ".run"


def runs_dir() -> Path:
    """This user's directory of run locks (private: created 0700)."""
    path = Path(tempfile.gettempdir()) / f"buildfleet-runs-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    if path.is_symlink() or path.stat().st_uid != os.getuid():
        raise PermissionError(f"{path} is not a directory of this user's")
    return path


@dataclass
class Turn:
    """A place among the active runs, held until :meth:`release` or process exit."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)  # closing drops the lock
            self.fd = -1


def _active(directory: Path) -> int:
    """Runs holding their lock now; files of ended runs are removed."""
    count = 0
    for entry in directory.iterdir():
        if not entry.name.endswith(SUFFIX):
            continue
        try:
            fd = os.open(entry, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            count += 1
        else:
            entry.unlink(missing_ok=True)  # its run is gone
        finally:
            os.close(fd)
    return count


def try_take(limit: int, directory: Path) -> tuple[Turn | None, int]:
    """Take a place if fewer than ``limit`` runs are active: (turn or None, runs active)."""
    guard = os.open(directory / GUARD, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        active = _active(directory)
        if active >= limit:
            return None, active
        fd, name = tempfile.mkstemp(prefix=f"{os.getpid()}-", suffix=SUFFIX, dir=directory)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.set_inheritable(fd, False)
        return Turn(Path(name), fd), active
    finally:
        os.close(guard)  # drops the guard lock


def wait_for_turn(limit: int, directory: Path | None = None,
                  say: Callable[[str], None] | None = None,
                  poll: float = POLL_SECONDS) -> Turn:
    """Block until fewer than ``limit`` runs are active, then hold a place.

    Says once that it waits (on stderr by default) and once that it starts.
    Interruptible with Ctrl-C; waits as long as other runs build.
    """
    directory = directory or runs_dir()
    if say is None:
        def say(text: str) -> None:
            print(text, file=sys.stderr, flush=True)
    waited = False
    while True:
        turn, active = try_take(limit, directory)
        if turn is not None:
            if waited:
                say("done, starting build")
            return turn
        if not waited:
            say(f"Waiting for other buildfleet runs ({active} active, --process-limit "
                f"{limit})...")
            waited = True
        time.sleep(poll)
