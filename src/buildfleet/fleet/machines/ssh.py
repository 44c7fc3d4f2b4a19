"""Every SSH call buildfleet makes, through the system OpenSSH client.

Why one module: the options that make a fleet robust (BatchMode so nothing
ever prompts, connect timeouts, keep-alives, and one multiplexed master
connection per machine so a run never bursts past sshd's ``MaxStartups``)
must be the same for one-shot commands, long-lived workers and ``git push``.
``BUILDFLEET_SSH_COMMAND`` replaces the ``ssh`` command everywhere, the way
``GIT_SSH_COMMAND`` does for git; the tests use it to point at their own
config file.

The per-run state (the private directory holding the ControlMaster sockets,
and which masters were opened) lives in an explicit :class:`SshSession`.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Protocol

SSH_COMMAND_ENV = "BUILDFLEET_SSH_COMMAND"
CONNECT_TIMEOUT_S = 10
CONTROL_PERSIST_S = 60

_COMMON_OPTIONS = (
    "-o", "BatchMode=yes",
    "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
    "-o", "ServerAliveInterval=10",
    "-o", "ServerAliveCountMax=3",
    "-o", "StrictHostKeyChecking=accept-new",
)


class MachineLike(Protocol):
    """What SSH needs to know of a machine: its name and ``[user@]host``."""

    @property
    def name(self) -> str: ...

    @property
    def host(self) -> str: ...


def ssh_program(env: dict[str, str] | None = None) -> list[str]:
    """The ssh command: ``$BUILDFLEET_SSH_COMMAND`` split like a shell, or ``ssh``."""
    environ = os.environ if env is None else env
    custom = environ.get(SSH_COMMAND_ENV, "").strip()
    if custom:
        return shlex.split(custom)
    return ["ssh"]


def remote_path(path: str) -> str:
    """Quote ``path`` as one shell word for the remote shell, keeping a leading ``~``.

    ``shlex.quote('~/x')`` would stop the remote shell from expanding the
    tilde, so ``~`` becomes ``"$HOME"`` and the rest is quoted.
    """
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        rest = path[2:]
        return '"$HOME"/' + shlex.quote(rest) if rest else '"$HOME"/'
    return shlex.quote(path)


def _short_runtime_dir() -> str:
    """A base directory for control sockets whose paths stay well under ~100 chars."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isdir(runtime) and len(runtime) < 40:
        return runtime
    return "/tmp"


@dataclass
class SshSession:
    """The SSH state of one run: the control-socket directory and the masters opened.

    Create one per run with :meth:`create`, pass it to every call, and call
    :meth:`close` (or :func:`close_masters`) at the end.
    """

    control_dir: str
    program: list[str]
    multiplex: bool = True
    _hosts: set[str] = field(default_factory=set)
    _masters: set[str] = field(default_factory=set)
    _host_locks: dict[str, threading.Lock] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, *, multiplex: bool = True, env: dict[str, str] | None = None) -> SshSession:
        control_dir = tempfile.mkdtemp(prefix="bf-", dir=_short_runtime_dir())
        os.chmod(control_dir, 0o700)
        return cls(control_dir=control_dir, program=ssh_program(env), multiplex=multiplex)

    def options(self) -> list[str]:
        """Every option buildfleet passes to ssh (without the host)."""
        opts = list(_COMMON_OPTIONS)
        if self.multiplex:
            opts += [
                "-o", "ControlMaster=auto",
                "-o", f"ControlPath={self.control_dir}/%C",
                "-o", f"ControlPersist={CONTROL_PERSIST_S}",
            ]
        return opts

    def base(self, machine: MachineLike) -> list[str]:
        """The ssh command line up to (not including) the host."""
        with self._lock:
            self._hosts.add(machine.host)
        return [*self.program, *self.options()]

    def _host_lock(self, host: str) -> threading.Lock:
        with self._lock:
            return self._host_locks.setdefault(host, threading.Lock())

    def has_master(self, host: str) -> bool:
        with self._lock:
            return host in self._masters

    def _mark_master(self, host: str) -> None:
        with self._lock:
            self._masters.add(host)

    def run(self, machine: MachineLike, remote_cmd: str, *, input: bytes | None = None,
            timeout: float) -> SshResult:
        """Run one command; the first one per host runs alone, to set up its master.

        With ``ControlMaster=auto`` every client that finds no socket becomes a
        master, so parallel first calls would each open a connection. Holding
        a per-host lock until the first call has connected keeps it to one.
        """
        if not self.multiplex or self.has_master(machine.host):
            return _run_argv(machine, ssh_argv(machine, self, remote_cmd), input, timeout)
        with self._host_lock(machine.host):
            result = _run_argv(machine, ssh_argv(machine, self, remote_cmd), input, timeout)
            if result.rc != 255 and result.rc >= 0:
                self._mark_master(machine.host)
            return result

    def warm_up(self, machine: MachineLike) -> None:
        """Open the host's master connection now (before a long-lived process uses it)."""
        if self.multiplex and not self.has_master(machine.host):
            self.run(machine, "true", timeout=CONNECT_TIMEOUT_S + 5)

    def close(self) -> None:
        """Stop the ControlMaster of every host used and remove the socket directory."""
        with self._lock:
            hosts = sorted(self._hosts)
            self._hosts.clear()
        if self.multiplex:
            for host in hosts:
                try:
                    subprocess.run(
                        [*self.program, *self.options(), "-O", "exit", host],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, timeout=10, check=False)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        shutil.rmtree(self.control_dir, ignore_errors=True)

    def __enter__(self) -> SshSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class SshResult:
    """The outcome of one SSH command. ``error`` is a one-line summary when ``rc != 0``."""

    rc: int
    stdout: bytes
    stderr: bytes
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")


def last_line(data: bytes | str) -> str:
    """The last non-empty line of some output, stripped."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return ""


def ssh_error_message(host: str, rc: int, stderr: bytes | str) -> str:
    """``SSH to <host>: <last stderr line>`` or ``... failed with code N``."""
    line = last_line(stderr)
    if line:
        return f"SSH to {host}: {line}"
    return f"SSH to {host}: failed with code {rc}"


def ssh_base(machine: MachineLike, session: SshSession) -> list[str]:
    """The ssh command line with buildfleet's options, up to the host."""
    return session.base(machine)


def ssh_argv(machine: MachineLike, session: SshSession, remote_cmd: str) -> list[str]:
    """The argv that runs ``remote_cmd`` (a shell command line) on ``machine``.

    For long-lived processes such as a worker: hand it to a Channel. Call
    ``session.warm_up(machine)`` first when several may start at once.
    """
    return [*session.base(machine), machine.host, "--", remote_cmd]


def run_ssh(machine: MachineLike, session: SshSession, remote_cmd: str, *,
            input: bytes | None = None, timeout: float) -> SshResult:
    """Run one shell command on ``machine`` and wait for it (at most ``timeout`` s)."""
    return session.run(machine, remote_cmd, input=input, timeout=timeout)


def _run_argv(machine: MachineLike, argv: list[str], input: bytes | None,
              timeout: float) -> SshResult:
    try:
        proc = subprocess.run(argv, input=input if input is not None else b"",
                              capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        return SshResult(-1, exc.stdout or b"", exc.stderr or b"",
                         f"SSH to {machine.host}: timed out after {timeout:g}s")
    except OSError as exc:
        return SshResult(-1, b"", b"", f"SSH to {machine.host}: cannot run ssh: {exc}")
    error = "" if proc.returncode == 0 else ssh_error_message(machine.host, proc.returncode,
                                                                proc.stderr)
    return SshResult(proc.returncode, proc.stdout, proc.stderr, error)


def git_push_env(machine: MachineLike, session: SshSession,
                 base_env: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which ``git push <host>:<path>`` uses buildfleet's ssh options."""
    env = dict(os.environ if base_env is None else base_env)
    env["GIT_SSH_COMMAND"] = shlex.join(session.base(machine))
    env["GIT_SSH_VARIANT"] = "ssh"
    return env


def close_masters(session: SshSession) -> None:
    """Stop every ControlMaster the run opened (``ssh -O exit``)."""
    session.close()
