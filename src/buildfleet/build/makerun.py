"""Running one make: its own process group, its output watched while it runs.

Why a watcher instead of ``communicate``: three things must be seen while
make runs, not after it ends. A stop (Ctrl-C, a cancelled hedge copy, a
worker shutting down) kills make's whole process group at once; a Kconfig
restart loop (``conf`` asking the same ``(SYMBOL) [] (NEW)`` question again
and again, as it does for an int/hex symbol with no default when stdin is
/dev/null) would otherwise print until the disk is full; and a build past its
time limit (``[global] build_timeout``) would otherwise hold a run forever.
The loop's text is buildman's, so users can grep for it.

A make that buildfleet itself ended is never passed off as a make that
failed on its own: a stop raises :class:`BuildInterrupted` (even when make
happened to end between two checks of the stop flag), and a guard sets
:attr:`MakeRun.stopped` to the message the result records.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from buildfleet.errors import BuildfleetError

POLL_SECONDS = 0.2
CHUNK = 1 << 16
PIPE_GRACE = 5.0
KCONFIG_LOOP_TEXT = "(** did you define an int/hex Kconfig with no default? **)"
_RESTART = b"Restart config"
_NEW_PROMPT = re.compile(rb"\((\w+)\) \[\] \(NEW\)")
# Long enough to hold a prompt split across two reads.
_TAIL = 512


class BuildInterrupted(BuildfleetError):
    """The slot was told to stop; the board's unfinished commit has no result."""


@dataclass
class MakeRun:
    """What one make did: its exit status (negative: killed by that signal), its output,
    and ``stopped``: empty if make ended by itself, else why buildfleet ended it."""

    return_code: int
    stdout: str
    stderr: str
    stopped: str = ""


class KconfigLoop:
    """Watches one output stream for Kconfig asking a question twice after a restart.

    ``feed`` gets the stream's bytes as they come and returns True once, after
    ``Restart config``, some ``(SYMBOL) [] (NEW)`` prompt has appeared a second
    time. Only a short tail is kept between reads, so a long build's output
    costs nothing here.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._restarted = False
        self._asked: set[bytes] = set()

    def feed(self, data: bytes) -> bool:
        self._buf += data
        if not self._restarted:
            at = self._buf.find(_RESTART)
            if at < 0:
                del self._buf[:max(0, len(self._buf) - len(_RESTART))]
                return False
            self._restarted = True
            del self._buf[:at]
        end = 0
        for match in _NEW_PROMPT.finditer(self._buf):
            symbol = match.group(1)
            if symbol in self._asked:
                return True
            self._asked.add(symbol)
            end = match.end()
        del self._buf[:max(end, len(self._buf) - _TAIL)]
        return False


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal (SIGKILL) a process group this process created (gone already: nothing to do)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _exited(pid: int) -> bool:
    """Has ``pid`` (our child) exited? Leaves it unreaped, so its group id stays ours."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def run_make(argv: list[str], cwd: Path, env: dict[str, str], stop: threading.Event,
             deadline: float | None = None, timeout_text: str = "",
             pass_fds: tuple[int, ...] = ()) -> MakeRun:
    """Run one make in a new session, stdin /dev/null, watching it until it ends.

    ``deadline`` is a ``time.monotonic()`` value; past it the group is killed
    and ``stopped`` is ``timeout_text``. Raises BuildInterrupted if ``stop`` is
    set at any point before the result is returned (the group is killed first).
    When make ends, whatever is left in its group (a compiler that outlived a
    killed make) is killed too, so nothing keeps writing into the build
    directory. Output is decoded as UTF-8 with replacement. ``pass_fds``:
    descriptors make inherits (the machine's jobserver pipe).
    """
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, pass_fds=pass_fds)
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    streams = {out_fd: bytearray(), err_fd: bytearray()}
    guards = {fd: KconfigLoop() for fd in streams}
    stopped = ""
    interrupted = False
    group_ended = 0.0  # when make was seen to have exited
    sel = selectors.DefaultSelector()
    try:
        for fd in streams:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            wait = POLL_SECONDS
            if deadline is not None and not stopped:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            for key, _ in sel.select(wait):
                fd = int(key.fd)
                try:
                    data = os.read(fd, CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(fd)
                    continue
                streams[fd] += data
                if not stopped and guards[fd].feed(data):
                    stopped = KCONFIG_LOOP_TEXT
                    kill_group(proc.pid)
            if stop.is_set() and not interrupted:
                interrupted = True
                kill_group(proc.pid)
            if deadline is not None and not stopped and time.monotonic() >= deadline:
                stopped = timeout_text or "build time limit reached"
                kill_group(proc.pid)
            if not group_ended and _exited(proc.pid):
                # make is gone but still a zombie, so its group id cannot have been
                # reused: end anything it left (which may also hold the pipes open).
                group_ended = time.monotonic()
                kill_group(proc.pid)
            elif group_ended and time.monotonic() - group_ended > PIPE_GRACE:
                break  # a process of another session holds the pipes: not make's output
    finally:
        sel.close()
        if not group_ended:
            kill_group(proc.pid)  # an exception above: nothing of it may go on
        proc.stdout.close()
        proc.stderr.close()
    rc = proc.wait()
    if interrupted or stop.is_set():
        raise BuildInterrupted()
    return MakeRun(rc, streams[out_fd].decode("utf-8", "replace"),
                   streams[err_fd].decode("utf-8", "replace"), stopped)
