"""The worker's process plumbing: a clean protocol stream and its own process group.

Apart from the command loop because it is about file descriptors and process
groups, not the protocol: fds 0 and 1 are taken for the protocol and replaced
by /dev/null and stderr, so that nothing the worker or its children print can
reach the boss as a protocol line, and no child can read the boss's commands.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from buildfleet.fleet.protocol import encode_reply


def cpu_threads() -> int:
    """CPU threads this process may use (its affinity mask, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Output:
    """The protocol stream: whole lines, one writer at a time."""

    def __init__(self, stream: IO[bytes], on_broken: Callable[[], None]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._on_broken = on_broken
        self.broken = False

    def send(self, obj: dict[str, Any]) -> None:
        data = encode_reply(obj)
        with self._lock:
            if self.broken:
                return
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError):
                self.broken = True
        if self.broken:
            self._on_broken()


def private_streams() -> tuple[IO[bytes], IO[bytes]]:
    """Take fds 0 and 1 for the protocol; leave /dev/null and stderr in their place."""
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    return os.fdopen(proto_in, "rb"), os.fdopen(proto_out, "wb")


def become_leader() -> bool:
    """Lead our own process group if we can; True if we do."""
    if os.getpgrp() == os.getpid():
        return True
    try:
        os.setpgrp()
    except OSError:
        return False
    return os.getpgrp() == os.getpid()
