"""Whose fault a failure is: the code's (a result to write) or the machine's (build elsewhere).

Why one classifier: a full disk, a git that cannot check out, or a make
killed by a signal says nothing about the commit being built. Writing such a
failure would blame the code, and a later run would skip the board as done.
Local slots and remote workers both run the slot runner, which asks here,
so a board fails the same way wherever it was built.

Stdlib and ``buildfleet`` only: workers import this on a bare ``python3``.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from buildfleet.errors import InfraError
from buildfleet.model import BuildResult

# A failed build with one of these in its output failed for the machine, not the code.
NO_SPACE_MARKERS = ("No space left on device", "Disk quota exceeded")
# Below this much free space where a slot builds, a failed build is blamed on the disk.
MIN_FREE_BYTES = 1 << 20


def infra_reason(result: BuildResult, work_path: Path | None) -> str | None:
    """Why a failed ``result`` is the machine's fault, or None for an ordinary result.

    ``work_path`` is where the slot builds (its free space is checked); None
    skips that check. Infrastructure: the output says the disk is full or
    over quota, the disk under ``work_path`` has less than ``MIN_FREE_BYTES``
    free, or make was killed by a signal (negative return code: it did not
    finish, so nothing it printed is a verdict on the code). A compiler error
    is never classified here; a successful result never is.
    """
    if result.return_code == 0:
        return None
    if result.return_code < 0:
        return f"make killed by signal {-result.return_code}"
    text = result.stderr + result.stdout
    for marker in NO_SPACE_MARKERS:
        if marker in text:
            return f"out of disk space ({marker})"
    if work_path is not None:
        try:
            st = os.statvfs(work_path)
        except OSError:
            return None
        if st.f_bavail * st.f_frsize < MIN_FREE_BYTES:
            return f"out of disk space ({st.f_bavail * st.f_frsize} bytes free)"
    return None


def is_infra_exception(exc: BaseException) -> bool:
    """Did a board's build raise because of the machine (disk, git, ...), not a bug?

    OS errors (a full disk while checking out, a vanished worktree) and
    ``InfraError`` (git, ...) are the machine's: the board is built
    elsewhere and no thread exception is counted. Anything else is a bug in
    buildfleet and counts as a thread exception (exit 102).
    """
    return isinstance(exc, OSError | InfraError)


def exception_reason(exc: BaseException) -> str:
    """The reason a board's build raised, as results and the log give it.

    A full disk or quota met by buildfleet's own writes (a checkout, a kept
    directory's state, a rename) is ``out of disk space``, as when make's
    output says so: one classification whichever process hit the disk.
    """
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"out of disk space ({exc})"
    return f"exception: {exc}"


def infra_line(executor: str, target: str, reason: str) -> str:
    """The one line that reports a board given up on ``executor`` for the machine's fault."""
    return (f"{executor}: {target} failed for an infrastructure reason ({reason.strip()}); "
            "building it elsewhere")
