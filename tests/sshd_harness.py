"""A real OpenSSH server on 127.0.0.1 with throw-away local users as "machines".

Why: the distributed path must be tested through the same OpenSSH client and
server a real fleet uses (keys, BatchMode, multiplexing, remote shells, a
machine's own bare ``python3``), not through a fake channel. Each machine is a
separate login, so it has its own home and therefore its own work directory,
and it has never seen buildfleet.

Everything is created under one temporary directory and one random user-name
prefix, and :meth:`SshdHarness.stop` removes all of it: sshd (by the PID it
started), every process of the users it created, the users themselves and the
files. :meth:`SshdHarness.leftovers` lists anything that survived.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH_COMMAND_ENV = "BUILDFLEET_SSH_COMMAND"


@dataclass(frozen=True)
class TestMachine:
    """One loopback machine: its settings name, ssh alias and login user."""

    name: str
    alias: str
    user: str | None  # None for the machine that is unreachable on purpose

    @property
    def home(self) -> Path:
        assert self.user is not None
        return Path(pwd.getpwnam(self.user).pw_dir)


def harness_unavailable_reason() -> str | None:
    """Why the harness cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "the sshd harness needs root (to create machine users)"
    if not os.access(SSHD, os.X_OK):
        return f"the sshd harness needs {SSHD} (openssh-server)"
    for tool in ("ssh", "ssh-keygen", "useradd", "usermod", "userdel"):
        if shutil.which(tool) is None:
            return f"the sshd harness needs {tool}"
    if not os.access("/usr/bin/python3", os.X_OK):
        return "the sshd harness needs /usr/bin/python3 for the machine users"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True,
                          timeout=60, **kw)  # type: ignore[call-overload]


@dataclass
class SshdHarness:
    """sshd on 127.0.0.1 plus ``count`` machine users and one unreachable alias."""

    count: int = 3
    unreachable: bool = True
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bf-sshd-")))
    token: str = field(default_factory=lambda: "bfm-" + secrets.token_hex(3))
    machines: list[TestMachine] = field(default_factory=list)
    port: int = 0
    ssh_config: Path = Path()
    settings_file: Path = Path()
    _sshd: subprocess.Popen[bytes] | None = None
    _users: list[str] = field(default_factory=list)
    _old_env: str | None = None
    _env_set: bool = False

    # --- start -------------------------------------------------------------------------

    def start(self) -> SshdHarness:
        try:
            self._keys()
            for n in range(1, self.count + 1):
                self._add_user(f"{self.token}-{n}")
            self._start_sshd()
            self._write_ssh_config()
            self._write_settings()
            self._old_env = os.environ.get(SSH_COMMAND_ENV)
            os.environ[SSH_COMMAND_ENV] = self.ssh_command
            self._env_set = True
            self._wait_for_login()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def ssh_command(self) -> str:
        return f"ssh -F {self.ssh_config}"

    @property
    def reachable(self) -> list[TestMachine]:
        return [m for m in self.machines if m.user is not None]

    def _keys(self) -> None:
        self.tmp.chmod(0o755)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bf-host",
              "-f", str(self.tmp / "host_key")])
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bf-user",
              "-f", str(self.tmp / "user_key")])

    def _add_user(self, user: str) -> None:
        _run(["useradd", "-m", "-s", "/bin/bash", user])
        self._users.append(user)
        _run(["usermod", "-p", "*", user])
        entry = pwd.getpwnam(user)
        ssh_dir = Path(entry.pw_dir) / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        keys = ssh_dir / "authorized_keys"
        keys.write_text((self.tmp / "user_key.pub").read_text())
        keys.chmod(0o600)
        for path in (ssh_dir, keys):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _start_sshd(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.port = free_port()
        config = self.tmp / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.tmp / 'host_key'}",
            f"PidFile {self.tmp / 'sshd.pid'}",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin no",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "StrictModes yes",
            "MaxStartups 30",
            "MaxSessions 50",
            f"AllowUsers {' '.join(self._users)}",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "PrintMotd no",
            "LogLevel ERROR",
            "",
        ]))
        log = open(self.tmp / "sshd.log", "wb")  # noqa: SIM115 - owned by the process
        try:
            self._sshd = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],
                                          stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._sshd.poll() is not None:
                raise RuntimeError("sshd exited: " + (self.tmp / "sshd.log").read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on 127.0.0.1:{self.port}")

    def _write_ssh_config(self) -> None:
        names = ["Alpha", "beta", "Gamma", "delta", "Eps"]
        blocks = []
        for n, user in enumerate(self._users):
            alias = f"bf-m{n + 1}"
            self.machines.append(TestMachine(names[n % len(names)] + ("" if n < 5 else str(n)),
                                             alias, user))
            blocks.append(self._host_block(alias, self.port, user))
        if self.unreachable:
            # A port nothing listens on: the connection is refused at once.
            dead_port = free_port()
            self.machines.append(TestMachine("Offline", "bf-gone", None))
            blocks.append(self._host_block("bf-gone", dead_port, "nobody"))
        self.ssh_config = self.tmp / "ssh_config"
        self.ssh_config.write_text("\n".join(blocks))

    def _host_block(self, alias: str, port: int, user: str) -> str:
        return "\n".join([
            f"Host {alias}",
            "    HostName 127.0.0.1",
            f"    Port {port}",
            f"    User {user}",
            f"    IdentityFile {self.tmp / 'user_key'}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {self.tmp / 'known_hosts'}",
            "    GlobalKnownHostsFile /dev/null",
            "    StrictHostKeyChecking no",
            "    LogLevel ERROR",
            "",
        ])

    def _write_settings(self) -> None:
        lines = ["[machines]"]
        lines += [f"{m.name} = {m.alias}" for m in self.machines]
        for m in self.machines:
            lines += ["", f"[machine:{m.name}]", "busy_load = 100", "min_disk_mb = 10",
                      "min_mem_mb = 10"]
        self.settings_file = self.tmp / "buildman.cfg"
        self.settings_file.write_text("\n".join(lines) + "\n")

    def _wait_for_login(self) -> None:
        for m in self.reachable:
            proc = subprocess.run(["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes",
                                   m.alias, "--", "echo ok"],
                                  capture_output=True, text=True, timeout=30, check=False)
            if proc.stdout.strip() != "ok":
                raise RuntimeError(f"cannot log in to {m.alias}: {proc.stderr.strip()} "
                                   f"sshd: {(self.tmp / 'sshd.log').read_text()[-500:]}")

    def ssh(self, machine: TestMachine, command: str, timeout: float = 30) -> str:
        """Run a command on a machine with plain ssh (no buildfleet), return stdout."""
        proc = subprocess.run(["ssh", "-F", str(self.ssh_config), machine.alias, "--", command],
                              capture_output=True, text=True, timeout=timeout, check=True)
        return proc.stdout

    # --- stop --------------------------------------------------------------------------

    def stop(self) -> None:
        if self._env_set:
            if self._old_env is None:
                os.environ.pop(SSH_COMMAND_ENV, None)
            else:
                os.environ[SSH_COMMAND_ENV] = self._old_env
            self._env_set = False
        if self._sshd is not None:
            if self._sshd.poll() is None:
                self._sshd.terminate()
                try:
                    self._sshd.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._sshd.kill()
                    self._sshd.wait(timeout=5)
            self._sshd = None
        for user in self._users:
            subprocess.run(["pkill", "-KILL", "-u", user], capture_output=True, check=False)
        for user in list(self._users):
            for _ in range(50):
                proc = subprocess.run(["userdel", "-r", user], capture_output=True, text=True,
                                      check=False)
                if proc.returncode in (0, 6):  # 6: no such user
                    break
                subprocess.run(["pkill", "-KILL", "-u", user], capture_output=True,
                               check=False)
                time.sleep(0.1)
            self._users.remove(user)
        self._kill_connection_monitors()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _processes(self) -> list[tuple[int, str]]:
        """(pid, cmdline) of live processes that belong to this harness."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace").strip()
                status = (entry / "status").read_text()
            except OSError:
                continue
            if "State:\tZ" in status:
                continue
            if self.token in cmdline or str(self.tmp) in cmdline:
                found.append((int(entry.name), cmdline))
        return found

    def _kill_connection_monitors(self) -> None:
        """sshd's per-connection monitors (titled ``sshd: <user> [priv]``) end with
        their user's processes; wait for that, then kill any that linger."""
        deadline = time.monotonic() + 5
        while self._processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid, _ in self._processes():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def leftovers(self) -> list[str]:
        """Anything the harness made that still exists (should be empty after stop)."""
        left = [f"process {pid}: {cmd}" for pid, cmd in self._processes()]
        for n in range(1, self.count + 1):
            user = f"{self.token}-{n}"
            try:
                pwd.getpwnam(user)
                left.append(f"user {user}")
            except KeyError:
                pass
            if Path(f"/home/{user}").exists():
                left.append(f"home /home/{user}")
        if self.tmp.exists():
            left.append(f"directory {self.tmp}")
        return left
