"""A line-oriented connection to a worker process started from an argv.

The boss talks to every worker through this, whether the argv is
``ssh ... host -- cmd`` or a local ``buildfleet --worker`` in tests; nothing
here knows which. The process gets its own session (process group), so
``close`` can stop exactly what the boss started and nothing else. Every read
has a timeout: a silent worker must never hang the boss (buildman's waits for
``ready`` and ``quit_ack`` had none).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from buildfleet.errors import InfraError
from buildfleet.fleet.protocol import (
    MAX_REPLY_LINE,
    ProtocolError,
    decode_reply_line,
    encode_command,
    read_lines,
)

STDERR_TAIL = 20


class ChannelError(InfraError):
    """Base of the channel's own errors."""


class ChannelClosed(ChannelError):
    """The process closed its stdout (or its stdin is gone)."""


class ChannelTimeout(ChannelError):
    """No message arrived within the timeout."""


class _Eof:
    """Queue marker: stdout reached its end."""


class Channel:
    """A running process speaking the worker protocol on stdin/stdout."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
                 cwd: str | Path | None = None,
                 on_stderr: Callable[[str], None] | None = None,
                 on_noise: Callable[[str], None] | None = None,
                 name: str = "") -> None:
        self.name = name or os.path.basename(argv[0])
        self.bytes_sent = 0
        self.bytes_received = 0
        self._on_stderr = on_stderr
        self._on_noise = on_noise
        self._tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self._queue: queue.Queue[dict[str, Any] | ProtocolError | _Eof] = queue.Queue()
        self._send_lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._closed = False
        self._eof = False
        try:
            self._proc = subprocess.Popen(
                list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=dict(env) if env is not None else None,
                cwd=cwd, start_new_session=True)
        except OSError as exc:
            raise ChannelClosed(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
        self.pid = self._proc.pid
        self._stdout_thread = threading.Thread(target=self._read_stdout, daemon=True,
                                               name=f"channel-out-{self.pid}")
        self._stderr_thread = threading.Thread(target=self._read_stderr, daemon=True,
                                               name=f"channel-err-{self.pid}")
        self._stdout_thread.start()
        self._stderr_thread.start()

    # -- readers ----------------------------------------------------------------
    def _read_stdout(self) -> None:
        stream = self._proc.stdout
        assert stream is not None
        try:
            for line in read_lines(stream, MAX_REPLY_LINE):
                if isinstance(line, ProtocolError):
                    self._queue.put(line)
                    continue
                self.bytes_received += len(line)
                try:
                    msg = decode_reply_line(line)
                except ProtocolError as exc:
                    self._queue.put(exc)
                    continue
                if msg is None:
                    if self._on_noise is not None and line.strip():
                        self._on_noise(line.decode("utf-8", "replace").rstrip("\r\n"))
                    continue
                self._queue.put(msg)
        except (OSError, ValueError):
            pass  # the pipe was closed under us by close()
        finally:
            self._queue.put(_Eof())

    def _read_stderr(self) -> None:
        stream = self._proc.stderr
        assert stream is not None
        try:
            for raw in iter(lambda: stream.readline(1 << 16), b""):
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                self._tail.append(text)
                if self._on_stderr is not None:
                    self._on_stderr(text)
        except (OSError, ValueError):
            pass

    # -- API --------------------------------------------------------------------
    @property
    def stderr_tail(self) -> list[str]:
        """The last lines the process wrote on stderr (for error messages)."""
        return list(self._tail)

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    def _closed_error(self) -> ChannelClosed:
        # Let the stderr reader catch up: the last line usually says why.
        self._stderr_thread.join(timeout=1.0)
        last = next((t for t in reversed(self._tail) if t.strip()), "")
        text = f"{self.name} closed connection"
        return ChannelClosed(f"{text}: {last.strip()}" if last else text)

    def send(self, obj: dict[str, Any]) -> None:
        """Write one command line; ChannelClosed if the process is gone."""
        self.send_raw(encode_command(obj))

    def send_raw(self, data: bytes) -> None:
        """Write bytes as they are (tests use it to send garbage)."""
        with self._send_lock:
            stdin = self._proc.stdin
            if self._closed or stdin is None or stdin.closed:
                raise ChannelClosed(f"{self.name}: channel is closed")
            try:
                stdin.write(data)
                stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                raise self._closed_error() from None
            self.bytes_sent += len(data)

    def recv(self, timeout: float) -> dict[str, Any]:
        """The next protocol message; skips noise lines."""
        if self._eof:
            raise self._closed_error()
        try:
            item = self._queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            raise ChannelTimeout(f"{self.name}: no message for {timeout:g} s") from None
        if isinstance(item, _Eof):
            self._eof = True
            raise self._closed_error()
        if isinstance(item, ProtocolError):
            raise ProtocolError(f"bad message from {self.name}: {item}")
        return item

    def close(self, grace: float = 2.0) -> int | None:
        """Close stdin, give the process ``grace`` s, then TERM and KILL its group.

        Returns the exit status. Safe to call more than once and from any thread.
        """
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._shutdown(grace)
        return self._proc.poll()

    def _shutdown(self, grace: float) -> None:
        with self._send_lock:
            try:
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGTERM)
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (the leader or anything it left behind).
        self._signal_group(signal.SIGKILL)
        try:
            self._proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self._stdout_thread.join(timeout=grace)
        self._stderr_thread.join(timeout=grace)
        # A reader still blocked (a grandchild outside the group holds the pipe)
        # owns its stream's lock; closing it would hang, so leave it to the GC.
        for stream, thread in ((self._proc.stdout, self._stdout_thread),
                               (self._proc.stderr, self._stderr_thread)):
            if stream is not None and not thread.is_alive():
                try:
                    stream.close()
                except OSError:
                    pass

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
