"""One GNU make jobserver shared by every slot of a machine.

Why: a slot's ``make -jN`` is fixed when that make starts, so the last board
of a run keeps the share it got while the other slots were busy, and the
cores they free sit idle until it ends. With one jobserver for the machine,
every make draws its jobs from the same pool of tokens, and a tail board
takes up the cores the others give back.

The protocol is GNU make's (manual, "POSIX Jobserver Interaction"; make 4.2
and later as a client): a pipe holding one byte per job token, named to make
as ``--jobserver-auth=R,W`` in ``MAKEFLAGS`` with both descriptors inherited.
make must then get no ``-j`` (``-jN`` starts a jobserver of its own). Each
make may always run one job without a token (its implicit one), so the slot
takes one token from the pipe for each make it starts and puts it back when
that make ends: the pipe starts with ``size`` tokens and at most ``size``
jobs run on the machine, however many makes are running.

A make that is killed cannot give back the tokens it held; whenever no make
of this jobserver is running, the pipe is refilled to exactly ``size``.

Stdlib only (workers run this on a bare ``python3``); Linux (``/proc``).
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Mapping

__all__ = ["Jobserver", "makeflags_with"]

TOKEN = b"+"
POLL_SECONDS = 0.2

# Words of an inherited MAKEFLAGS that would make make ignore (or fight) ours.
_JOB_WORDS = ("-j", "--jobs", "--jobserver-auth=", "--jobserver-fds=")


def makeflags_with(inherited: str, auth: str) -> str:
    """``inherited`` MAKEFLAGS without job options, plus ``--jobserver-auth=auth``.

    A ``-j``/``--jobs`` left in the environment (some users export
    ``MAKEFLAGS=-j8``) would make make start its own jobserver; variable
    assignments after ``--`` are kept as they are.
    """
    words = inherited.split()
    head, tail = words, []
    if "--" in words:
        cut = words.index("--")
        head, tail = words[:cut], words[cut:]
    kept = [w for w in head if not w.startswith(_JOB_WORDS)]
    return " ".join([*kept, f"--jobserver-auth={auth}", *tail])


class Jobserver:
    """A pool of ``size`` job tokens for the makes of one machine.

    ``acquire``/``release`` bracket each make a slot runs; ``environ`` gives
    the environment that make needs and ``fds`` the descriptors it must
    inherit. Raises ``OSError`` if the pipe cannot be made.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a jobserver needs at least one token, not {size}")
        self.size = size
        self._read, self._write = os.pipe()
        # Our own non-blocking description of the read end: make 4.2 reads the
        # shared one blocking and dies of EAGAIN if anyone sets O_NONBLOCK on it.
        self._poll = os.open(f"/proc/self/fd/{self._read}", os.O_RDONLY | os.O_NONBLOCK)
        self._lock = threading.Lock()
        self._running = 0
        self._closed = False
        os.write(self._write, TOKEN * size)

    @property
    def fds(self) -> tuple[int, int]:
        """The descriptors every make must inherit (read end, write end)."""
        return (self._read, self._write)

    @property
    def running(self) -> int:
        """Makes holding a token right now."""
        with self._lock:
            return self._running

    def environ(self, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with MAKEFLAGS naming this jobserver (not for out-env: fd numbers)."""
        auth = f"{self._read},{self._write}"
        return {**env, "MAKEFLAGS": makeflags_with(env.get("MAKEFLAGS", ""), auth)}

    def acquire(self, stop: threading.Event) -> bool:
        """Take the token of one make, waiting for one if all are in use.

        False if ``stop`` was set or the jobserver closed first (then nothing
        is held).
        """
        while True:
            with self._lock:
                if self._closed:
                    return False
                try:
                    got = os.read(self._poll, 1)
                except BlockingIOError:
                    got = b""
                if got:
                    self._running += 1
                    return True
            if stop.is_set():
                return False
            select.select([self._poll], [], [], POLL_SECONDS)

    def release(self) -> None:
        """Give back the token of a make that has ended (killed or not)."""
        with self._lock:
            self._running -= 1
            if self._closed:
                return
            if self._running:
                os.write(self._write, TOKEN)
                return
            # No make of ours is running: every token not in the pipe is lost.
            while True:
                try:
                    if not os.read(self._poll, 4096):
                        break
                except BlockingIOError:
                    break
            os.write(self._write, TOKEN * self.size)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for fd in (self._poll, self._read, self._write):
                os.close(fd)

    def __enter__(self) -> Jobserver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
