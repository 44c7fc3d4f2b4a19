"""SSH through the system OpenSSH client: options, quoting, multiplexing, git push, shipping."""

from __future__ import annotations

import os
import shlex
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from buildfleet import PROTOCOL_VERSION, __version__
from buildfleet.fleet.machines import ssh as sshmod
from buildfleet.fleet.machines.ship import (
    ShipError,
    build_zipapp,
    check_ready,
    ensure_shipped,
    worker_command,
)
from buildfleet.fleet.machines.ssh import (
    SshSession,
    git_push_env,
    remote_path,
    run_ssh,
    ssh_argv,
    ssh_base,
    ssh_program,
)
from buildfleet.settings import MachineConfig
from sshd_harness import SshdHarness


def _machine(h: SshdHarness, index: int) -> MachineConfig:
    m = h.machines[index]
    return MachineConfig(name=m.name, host=m.alias)


# --- without sshd -------------------------------------------------------------------------

def test_remote_path_keeps_tilde_and_quotes_the_rest() -> None:
    assert remote_path("~") == '"$HOME"'
    assert remote_path("~/a b/c") == "\"$HOME\"/'a b/c'"
    assert remote_path("/x/it's") == shlex.quote("/x/it's")
    out = subprocess.run(["sh", "-c", f"echo {remote_path('~/a b;rm -rf x')}"],
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "HOME": "/home/h"}).stdout
    assert out == "/home/h/a b;rm -rf x\n"


def test_ssh_command_env_replaces_ssh() -> None:
    assert ssh_program({}) == ["ssh"]
    assert ssh_program({"BUILDFLEET_SSH_COMMAND": "ssh -F '/tmp/my cfg'"}) == [
        "ssh", "-F", "/tmp/my cfg"]


def test_argv_has_batch_timeouts_keepalive_and_multiplexing(tmp_path: Path) -> None:
    session = SshSession(control_dir=str(tmp_path), program=["ssh", "-F", "cfg"])
    mach = MachineConfig(name="M", host="u@h")
    argv = ssh_argv(mach, session, "echo 'x y'")
    assert argv[:3] == ["ssh", "-F", "cfg"]
    assert argv[-3:] == ["u@h", "--", "echo 'x y'"]
    opts = " ".join(ssh_base(mach, session))
    for opt in ("BatchMode=yes", "ConnectTimeout=10", "ServerAliveInterval=10",
                "ServerAliveCountMax=3", "StrictHostKeyChecking=accept-new",
                "ControlMaster=auto", f"ControlPath={tmp_path}/%C", "ControlPersist=60"):
        assert f"-o {opt}" in opts
    env = git_push_env(mach, session, {"PATH": "/bin"})
    assert shlex.split(env["GIT_SSH_COMMAND"]) == ssh_base(mach, session)


def test_session_control_dir_is_private_and_short() -> None:
    session = SshSession.create()
    try:
        st = os.stat(session.control_dir)
        assert st.st_mode & 0o777 == 0o700
        # %C expands to 40 hex digits; unix socket paths must stay under ~100 chars.
        assert len(session.control_dir) + 1 + 40 < 100
    finally:
        session.close()
    assert not os.path.exists(session.control_dir)


def test_zipapp_is_deterministic_and_runs_locally(tmp_path: Path) -> None:
    a = build_zipapp(tmp_path / "c1")
    b = build_zipapp(tmp_path / "c2")
    assert a.name == b.name and a.path.read_bytes() == b.path.read_bytes()
    assert a.name.startswith("buildfleet-") and a.name.endswith(".pyz")
    with zipfile.ZipFile(a.path) as zf:
        names = zf.namelist()
        assert names == sorted(names)
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    for needed in ("__main__.py", "buildfleet/cli.py", "buildfleet/fleet/machines/probe_script.py",
                   "kconfiglib.py", "elftools/elf/elffile.py", "rich/console.py"):
        assert needed in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    # Runs on a python3 that has none of root's packages (-S -I: no site, no user paths).
    out = subprocess.run(["/usr/bin/python3", "-S", "-I", str(a.path), "--version"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"buildfleet {__version__}"


def test_worker_command_quotes_paths() -> None:
    assert worker_command("/h/.tool/b.pyz", "~/w d", False) == (
        "python3 /h/.tool/b.pyz --worker --work-dir \"$HOME\"/'w d'")
    # An installed worker (buildman's own) is started as the seed says: PATH --worker,
    # nothing else; the work directory goes in setup.
    assert worker_command("/p.pyz", "/w", True, buildman_path="/opt/my tools/bf") == (
        "'/opt/my tools/bf' --worker")
    assert worker_command("/h/b.pyz", None, True) == "python3 /h/b.pyz --worker -D"


def test_check_ready_refuses_other_protocol_or_version() -> None:
    good = {"resp": "ready", "nthreads": 2, "slots": 2, "version": __version__,
            "protocol": PROTOCOL_VERSION}
    check_ready(good, __version__)
    with pytest.raises(ShipError, match="protocol 99"):
        check_ready({**good, "protocol": 99}, __version__)
    with pytest.raises(ShipError, match="runs buildfleet 0.0.1, this boss is"):
        check_ready({**good, "version": "0.0.1"}, __version__)
    check_ready({**good, "version": "0.0.1"}, None)  # installed tool: protocol only
    with pytest.raises(ShipError, match="did not send ready"):
        check_ready({"resp": "error", "msg": "x"}, __version__)


# --- through the real sshd ----------------------------------------------------------------

@pytest.mark.sshd
def test_run_ssh_passes_stdin_and_quoted_arguments(sshd_harness: SshdHarness,
                                                    ssh_session: SshSession) -> None:
    mach = _machine(sshd_harness, 0)
    weird = "a b'c;$(x)"
    res = run_ssh(mach, ssh_session, f"printf '%s|' {shlex.quote(weird)}; cat; id -un",
                  input=b"\x00\xffdata", timeout=30)
    assert res.ok, res.error
    assert res.stdout == f"{weird}|".encode() + b"\x00\xffdata" + \
        f"{sshd_harness.machines[0].user}\n".encode()
    res = run_ssh(mach, ssh_session, "echo oops >&2; exit 3", timeout=30)
    assert res.rc == 3 and res.error == f"SSH to {mach.host}: oops"


@pytest.mark.sshd
def test_unreachable_machine_gives_one_line_error(sshd_harness: SshdHarness,
                                                  ssh_session: SshSession) -> None:
    gone = _machine(sshd_harness, 2)
    res = run_ssh(gone, ssh_session, "true", timeout=30)
    assert res.rc == 255
    assert res.error.startswith("SSH to bf-gone: ssh: connect to host 127.0.0.1 port ")
    assert res.error.endswith("Connection refused")
    assert "\n" not in res.error


@pytest.mark.sshd
def test_one_master_per_machine_survives_a_burst(sshd_harness: SshdHarness) -> None:
    """40 parallel commands (more than sshd's MaxStartups 30) through one master."""
    mach = _machine(sshd_harness, 1)
    session = SshSession.create()
    try:
        with ThreadPoolExecutor(max_workers=40) as pool:
            results = list(pool.map(lambda i: run_ssh(mach, session, f"echo {i}", timeout=60),
                                    range(40)))
        assert [r.text for r in results] == [f"{i}\n" for i in range(40)]
        sockets = os.listdir(session.control_dir)
        assert len(sockets) == 1
        check = subprocess.run([*ssh_base(mach, session), "-O", "check", mach.host],
                               capture_output=True, text=True, timeout=10)
        assert check.returncode == 0 and "Master running" in check.stderr
        master_pid = int(check.stderr.split("pid=")[1].split(")")[0])
    finally:
        sshmod.close_masters(session)
    assert not os.path.exists(session.control_dir)
    for _ in range(50):
        if not os.path.exists(f"/proc/{master_pid}") or _is_zombie(master_pid):
            break
        subprocess.run(["sleep", "0.1"], check=True)
    assert not os.path.exists(f"/proc/{master_pid}") or _is_zombie(master_pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.sshd
def test_git_push_goes_through_the_same_ssh(sshd_harness: SshdHarness, ssh_session: SshSession,
                                            tmp_path: Path) -> None:
    mach = _machine(sshd_harness, 0)
    repo = tmp_path / "src"
    git = ["git", "-c", "user.name=T", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", str(repo)], check=True)
    (repo / "f.c").write_text("int x;\n")
    subprocess.run([*git, "-C", str(repo), "add", "f.c"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "one"], check=True)
    tip = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()
    res = run_ssh(mach, ssh_session, "rm -rf push-test && git init -q push-test && "
                  "cd push-test && pwd", timeout=30)
    assert res.ok, res.error
    remote_dir = res.text.strip()
    push = subprocess.run(["git", "-C", str(repo), "push", "-q", "--force",
                           f"{mach.host}:{remote_dir}/.git", "HEAD:refs/heads/work"],
                          env=git_push_env(mach, ssh_session), capture_output=True, text=True,
                          timeout=60)
    assert push.returncode == 0, push.stderr
    res = run_ssh(mach, ssh_session, "git -C push-test rev-parse work", timeout=30)
    assert res.text.strip() == tip


@pytest.mark.sshd
def test_shipped_zipapp_runs_on_a_machine_that_never_saw_buildfleet(
        sshd_harness: SshdHarness, ssh_session: SshSession, tmp_path: Path) -> None:
    mach = _machine(sshd_harness, 1)
    before = sshd_harness.ssh(sshd_harness.machines[1],
                              "python3 -c 'import buildfleet' 2>&1 || echo missing")
    assert "missing" in before
    app = build_zipapp(tmp_path / "cache")
    remote = ensure_shipped(mach, ssh_session, "~/.buildfleet-worker", zipapp=app)
    home = str(sshd_harness.machines[1].home)
    assert remote == f"{home}/.buildfleet-worker/.tool/{app.name}"
    stamp = run_ssh(mach, ssh_session, f"stat -c %i.%Y {shlex.quote(remote)}", timeout=30).text
    # A second run finds it there and does not send it again.
    assert ensure_shipped(mach, ssh_session, "~/.buildfleet-worker", zipapp=app) == remote
    assert run_ssh(mach, ssh_session, f"stat -c %i.%Y {shlex.quote(remote)}",
                   timeout=30).text == stamp
    assert run_ssh(mach, ssh_session, f"sha256sum {shlex.quote(remote)}",
                   timeout=30).text.split()[0] == app.sha256
    res = run_ssh(mach, ssh_session, f"python3 {shlex.quote(remote)} --version", timeout=60)
    assert res.ok, res.error
    assert res.text.strip() == f"buildfleet {__version__}"
    # A damaged copy (truncated by a full disk, say) is found out and replaced.
    run_ssh(mach, ssh_session, f"truncate -s 1000 {shlex.quote(remote)}", timeout=30)
    said: list[str] = []
    assert ensure_shipped(mach, ssh_session, "~/.buildfleet-worker", zipapp=app,
                          log=said.append) == remote
    assert len(said) == 1 and "1000 bytes" in said[0] and "shipping it again" in said[0]
    assert run_ssh(mach, ssh_session, f"sha256sum {shlex.quote(remote)}",
                   timeout=30).text.split()[0] == app.sha256


@pytest.mark.sshd
def test_worker_over_ssh_answers_ready_with_the_boss_version(
        sshd_harness: SshdHarness, ssh_session: SshSession, tmp_path: Path) -> None:
    channel_mod = pytest.importorskip("buildfleet.fleet.remote.channel")
    pytest.importorskip("buildfleet.fleet.worker.loop")
    mach = _machine(sshd_harness, 0)
    remote = ensure_shipped(mach, ssh_session, "~/.buildfleet-worker",
                            cache_dir=tmp_path / "cache")
    ssh_session.warm_up(mach)
    argv = ssh_argv(mach, ssh_session, worker_command(remote, "~/.buildfleet-worker", False))
    with channel_mod.Channel(argv, name=mach.name) as chan:
        msg = chan.recv(timeout=60)
        check_ready(msg, __version__)
        assert msg["version"] == __version__ and msg["protocol"] == PROTOCOL_VERSION
        assert msg["nthreads"] >= 1
        chan.send({"cmd": "quit"})
        assert chan.recv(timeout=30)["resp"] == "quit_ack"
    # The worker is gone from the machine once it has acknowledged quit.
    left = sshd_harness.ssh(sshd_harness.machines[0],
                            "for i in $(seq 50); do pgrep -u \"$(id -u)\" -f -- '[-]-worker' "
                            ">/dev/null || { echo none; exit; }; sleep 0.1; done; echo running")
    assert left.strip() == "none"
