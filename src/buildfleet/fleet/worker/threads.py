"""A machine's build threads, shared by every worker of one login on it.

Why: several bosses may use the same machine at once (two developers, a CI
job and a nightly run). Each gets a work directory of its own, but the CPU
threads are one budget: two workers that each start ``nthreads`` builds
would run twice as many compilers as the machine has threads. So a worker
claims its threads before it builds: ``<shared dir>/.threads/thread-<i>``
for i in 0..nthreads-1, one ``flock`` each (non-blocking), and builds with
as many as it got. The kernel drops a dead worker's locks with it (the
descriptors are not inherited by makes), so a killed worker never holds
threads. The file holds the holder's pid, for the message a busy machine
gives. Workers of other logins on the same machine are seen through the
load average at the probe (``busy_load``), not here.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from buildfleet.errors import InfraError

THREADS_DIR = ".threads"


class ThreadsError(InfraError):
    """The thread files cannot be used (one line, fit for an ``error`` reply).

    ``reason`` is ``busy`` when every thread is claimed by other workers (the
    boss waits for the machine), else "".
    """

    def __init__(self, msg: str, reason: str = "") -> None:
        super().__init__(msg)
        self.reason = reason


@dataclass
class ThreadClaim:
    """Threads held by this worker; ``release`` gives them back."""

    fds: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.fds)

    def release(self) -> None:
        for fd in self.fds:
            try:
                os.close(fd)  # closing drops the flock
            except OSError:
                pass
        self.fds = []


def claim_threads(shared_dir: Path, nthreads: int, want: int) -> tuple[ThreadClaim, list[int]]:
    """Claim up to ``want`` of the machine's ``nthreads`` threads.

    Returns the claim (possibly empty) and the pids holding the others.
    Raises ThreadsError if the directory cannot be made or a file opened.
    """
    folder = shared_dir / THREADS_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ThreadsError(f"cannot create {folder}: {exc.strerror}") from None
    claim = ThreadClaim()
    holders: list[int] = []
    for i in range(max(1, nthreads)):
        if claim.count >= want:
            break
        path = folder / f"thread-{i}"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            claim.release()
            raise ThreadsError(f"cannot open {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holders.append(_pid_in(fd))
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        claim.fds.append(fd)
    return claim, sorted({p for p in holders if p > 0})


def claim_free_threads(shared_dir: Path, nthreads: int,
                       log: Callable[[str], None]) -> ThreadClaim:
    """Every free thread of the machine; ThreadsError ``busy`` (with the holders' pids)
    if there is none. Fewer than all is said to ``log``."""
    claim, holders = claim_threads(shared_dir, nthreads, nthreads)
    if not claim.count:
        pids = ", ".join(str(p) for p in holders) or "unknown"
        raise ThreadsError(f"busy: all {nthreads} build threads of this machine are in use "
                           f"by other workers (pids {pids})", reason="busy")
    if claim.count < nthreads:
        log(f"{nthreads - claim.count} of {nthreads} threads are in use by other workers; "
            f"building with {claim.count}")
    return claim


def _pid_in(fd: int) -> int:
    try:
        return int(os.pread(fd, 32, 0).decode("ascii", "replace").strip() or 0)
    except (OSError, ValueError):
        return 0
