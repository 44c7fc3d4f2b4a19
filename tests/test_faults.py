"""Fault injection over the real-sshd harness: nothing lost, nothing written twice, nothing left.

Each case starts a real distributed run (two loopback machines plus local
slots), breaks one machine at the moment it has delivered its first result,
and then checks the three promises of issue 8: the output tree equals a clean
local build (done, err and sizes of every board x commit, exactly one result
each), the run says what happened, and no process of the machine users is
left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bfrun import bf_env
from buildfleet.build.makerun import KCONFIG_LOOP_TEXT
from buildfleet.fleet.protocol import HEARTBEAT_INTERVAL
from faultkit import (
    Tree,
    assert_same_tree,
    demo_and_reference,
    empty_objects,
    hosts_in,
    kill,
    read_tree,
    sigcont_all,
    sshd_session_pids,
    start_dist,
    user_processes,
    wait_no_processes,
    worker_pids,
)
from sshd_harness import SshdHarness

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

BOARDS = 10
# Above two heartbeat intervals: a worker building a board on a loaded machine sends
# nothing but heartbeats, so a bound below the interval would give up live workers.
LIVENESS = f"{HEARTBEAT_INTERVAL * 2 + 2:g}"
ENV = {"BUILDFLEET_LIVENESS_SECONDS": LIVENESS}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Tree]:
    """A demo tree and the output tree of a clean local build of its branch."""
    return demo_and_reference(tmp_path_factory.mktemp("faults"), BOARDS)



def _users(h: SshdHarness) -> list[str]:
    return [m.user for m in h.reachable if m.user]


def _alpha(h: SshdHarness) -> tuple[str, str]:
    m = h.reachable[0]
    assert m.user is not None
    return m.name, m.user


def _run_with_fault(demo: tuple[Path, Tree], h: SshdHarness, out: Path, fault: str,
                    *extra: str) -> tuple[int, str, str]:
    """Run over both machines; when the first one has a result, apply ``fault`` to it."""
    tree, _ = demo
    name, user = _alpha(h)
    run = start_dist(tree, out, h.settings_file, "--use-machines",
                     ",".join(m.name for m in h.reachable), *extra, env=ENV)
    assert run.wait_for_host(name), "the machine never delivered a result"
    if fault == "sigkill":
        pids = worker_pids(user)
        assert pids, "no worker process found"
        kill(pids, signal.SIGKILL)
    elif fault == "sigstop":
        pids = worker_pids(user)
        assert pids, "no worker process found"
        kill(pids, signal.SIGSTOP)
    elif fault == "cut":
        pids = sshd_session_pids(user)
        assert pids, "no sshd session process found"
        kill(pids, signal.SIGKILL)
    rc, stdout, stderr = run.wait()
    return rc, stdout, stderr


@pytest.mark.parametrize("fault", ["sigkill", "cut", "sigstop"])
def test_lost_worker_costs_nothing(demo: tuple[Path, Tree], fleet: SshdHarness,
                                   tmp_path: Path, fault: str) -> None:
    out = tmp_path / "out"
    rc, stdout, stderr = _run_with_fault(demo, fleet, out, fault)
    name, _ = _alpha(fleet)
    assert rc == 100, stdout + stderr  # the demo branch has real build errors
    assert f"Worker failed on {name}" in stdout, stdout
    if fault == "sigstop":
        assert f"no message for {LIVENESS} s" in stdout or "no message" in stdout, stdout
    assert_same_tree(read_tree(out / "demo"), demo[1])
    assert "Not built" not in stdout


def test_kconfig_loop_is_stopped_on_the_workers(demo: tuple[Path, Tree], fleet: SshdHarness,
                                                tmp_path: Path) -> None:
    """The demo's kconfig-loop branch asks forever at configure: every worker stops
    that make at once and sends buildman's hint as the board's error."""
    tree, _ = demo
    out = tmp_path / "out"
    run = start_dist(tree, out, fleet.settings_file, "--no-local", "--use-machines",
                     ",".join(m.name for m in fleet.reachable), env=ENV, branch="kconfig-loop")
    rc, stdout, stderr = run.wait(timeout=120)
    assert rc == 100, stdout + stderr
    looping = sorted((out / "kconfig-loop").glob("02_*/*/err"))
    assert len(looping) == BOARDS, stdout
    for err in looping:
        assert err.read_text() == KCONFIG_LOOP_TEXT + "\n", err
        assert (err.parent / "done").read_text().strip() == "2"
        assert (err.parent / "host").read_text().strip() != "local"
    assert sum(hosts_in(out / "kconfig-loop").values()) == 2 * BOARDS


def _held_compiles(directory: Path, since: float = 0.0) -> Path:
    """Wait for an object GNU as has created under ``directory`` (at ``since``, a
    time.time(), or later) and cc1 holds unwritten."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for obj in empty_objects(directory):
            try:
                if obj.stat().st_mtime >= since:
                    return obj
            except FileNotFoundError:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no compile started under {directory}")


def _worker_side(user: str) -> list[str]:
    """The user's processes other than sshd's (the boss's SSH connections stay up)."""
    return [p.cmdline for p in user_processes([user])
            if not (p.argv and p.argv[0].startswith("sshd"))]


def test_a_lost_workers_makes_are_stopped_without_a_new_worker(
        demo: tuple[Path, Tree], fleet: SshdHarness, tmp_path: Path) -> None:
    """A SIGKILLed worker cannot stop its makes; the boss must, even when the machine
    gets no new worker. The makes here would never end by themselves: their
    compiles wait on a FIFO (-pipe and -include), so as holds an empty object."""
    tree, _ = demo
    name, user = _alpha(fleet)
    m = fleet.reachable[0]
    work = m.home / ".buildfleet-worker"
    hang = m.home / "hang.h"
    hang.unlink(missing_ok=True)
    os.mkfifo(hang, 0o666)
    shutil.chown(hang, user, user)
    settings = tmp_path / "held.cfg"
    settings.write_text(fleet.settings_file.read_text()
                        + f'\n[make-flags]\nsandbox = "KCFLAGS=-pipe -include {hang}"\n')
    started = time.time() - 1  # mtimes may be rounded down
    # --no-ccache: the FIFO holds cc1 (and as's empty object) only when gcc runs the
    # compile itself; ccache would first preprocess, and block in cpp instead.
    run = start_dist(tree, tmp_path / "out", settings, "--no-local", "--use-machines", name,
                     "--boards", "sandbox", "--no-ccache", env=ENV)
    lock = work / ".lock"
    try:
        # The boss's own work directory on the machine (one per boss: b-<key>).
        held = _held_compiles(work, started)
        lock = work / held.relative_to(work).parts[0] / ".lock"
        # No new worker can take the directory over (and stop the makes) from now on.
        lock.unlink()
        lock.mkdir()
        pids = worker_pids(user)
        assert pids, "no worker process found"
        kill(pids, signal.SIGKILL)
        killed = time.monotonic()
        left = _worker_side(user)
        while left and time.monotonic() - killed < 30:
            time.sleep(0.2)
            left = _worker_side(user)
        assert not left, f"left on {name} 30 s after its worker was killed: {left}"
        rc, stdout, stderr = run.wait()
        assert rc == 100, stdout + stderr
        assert re.search(r"Not built.*: sandbox", stdout), stdout
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.communicate()
        try:  # let anything still held go (only if the test failed)
            os.close(os.open(hang, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        hang.unlink(missing_ok=True)
        if lock.is_dir():
            lock.rmdir()


def _release(fifo: Path, owner: str) -> None:
    """Let every compile held on ``fifo`` go on, and later ones not wait: each reads
    an empty header (as an ordinary empty file at the same path gives them)."""
    fd = os.open(fifo, os.O_RDWR)  # never blocks; every open() waiting on it returns
    try:
        fifo.unlink()
        fifo.write_text("")
        shutil.chown(fifo, owner, owner)
    finally:
        os.close(fd)  # no writer left: what was held reads EOF


def test_disk_full_is_an_infrastructure_failure(demo: tuple[Path, Tree], fleet: SshdHarness,
                                                tmp_path: Path) -> None:
    """The machine's work directory fills up mid-run: its boards are built elsewhere,
    and no 'No space left on device' reaches the output tree as a build failure.

    The machine's compiles wait on a FIFO (-pipe and -include, only in its user's
    home) until its disk is full, so it still has objects to write when it is:
    filled after its first result instead, it could have nothing left to build."""
    tree, want = demo
    name, user = _alpha(fleet)
    m = fleet.reachable[0]
    work = m.home / ".buildfleet-worker"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    shutil.chown(work, user, user)
    hang = m.home / "hang.h"
    hang.unlink(missing_ok=True)
    os.mkfifo(hang, 0o666)
    shutil.chown(hang, user, user)
    held = "KCFLAGS=-pipe $(addprefix -include ,$(wildcard $(HOME)/hang.h))"
    settings = tmp_path / "held.cfg"
    settings.write_text(fleet.settings_file.read_text() + "\n[make-flags]\n"
                        + "".join(f'{board} = "{held}"\n' for board in {b for _, b in want}))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(work)], check=True)
    try:
        shutil.chown(work, user, user)
        out = tmp_path / "out"
        # No hedging: a copy elsewhere must not win the held boards before the disk fills.
        # --no-ccache: the FIFO holds compiles only when gcc runs them itself (as above).
        run = start_dist(tree, out, settings, "--no-hedge", "--no-ccache", "--use-machines",
                         ",".join(x.name for x in fleet.reachable), env=ENV)
        _held_compiles(work)
        # Unbuffered, so the ENOSPC comes from write() and closing has nothing
        # left to flush (a buffered file raised it again on close).
        with open(work / "fill", "wb", buffering=0) as f:  # noqa: PTH123 - fill until ENOSPC
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
            except OSError:
                pass
        _release(hang, user)
        rc, stdout, stderr = run.wait()
        assert rc == 100, stdout + stderr
        assert re.search(rf"^{name}: \S+ failed for an infrastructure reason \(out of disk "
                         r"space", stdout, re.M), stdout
        assert "Not built" not in stdout, stdout
        got = read_tree(out / "demo")
        assert_same_tree(got, want)
        assert not [e for e in (out / "demo").glob("*/*/err") if "No space" in e.read_text()]
    finally:
        if hang.exists() and stat.S_ISFIFO(hang.stat().st_mode):
            _release(hang, user)  # the test failed before the disk was full
        sigcont_all(_users(fleet))
        wait_no_processes([user], timeout=20)
        subprocess.run(["umount", str(work)], check=False, capture_output=True)
        if subprocess.run(["mountpoint", "-q", str(work)], check=False).returncode == 0:
            subprocess.run(["umount", "-l", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)  # the next run starts afresh
        hang.unlink(missing_ok=True)


def _local_results(branch_dir: Path) -> int:
    """Results written from the local slots (they have no ``host`` file)."""
    return sum(1 for done in branch_dir.glob("*/*/done")
               if not (done.parent / "host").exists())


def test_local_disk_full_is_an_infrastructure_failure(demo: tuple[Path, Tree],
                                                      fleet: SshdHarness,
                                                      tmp_path: Path) -> None:
    """The local slots' disk fills up mid-run: the local boards are built on a machine,
    and no 'No space left on device' is written as a build failure (the local slots run
    the same slot runner, with the same failure classifier, as a worker). The local
    machine fails twice and gets no more boards: only a board already in flight on its
    other slot may still fail there."""
    tree, want = demo
    out = tmp_path / "out"
    work = out / "demo" / ".bm-work"  # the local slots' worktrees and O= directories
    work.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(work)], check=True)
    try:
        run = start_dist(tree, out, fleet.settings_file, "-T", "2", "--use-machines",
                         ",".join(x.name for x in fleet.reachable), env=ENV)
        deadline = time.monotonic() + 120
        while not _local_results(out / "demo") and run.proc.poll() is None:
            assert time.monotonic() < deadline, "no local result within 120 s"
            time.sleep(0.05)
        with open(work / "fill", "wb", buffering=0) as f:  # noqa: PTH123 - fill until ENOSPC
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
            except OSError:
                pass
        rc, stdout, stderr = run.wait()
        assert rc == 100, stdout + stderr  # the demo branch has real build errors
        lines = stdout.splitlines()
        failed = [i for i, ln in enumerate(lines)
                  if re.match(r"local: \S+ failed for an infrastructure reason \(", ln)]
        assert any("(out of disk space" in lines[i] for i in failed), stdout
        quarantined = lines.index("Quarantined local for the rest of the run after 2 failures")
        assert len(failed) in (2, 3), stdout  # 2 slots: one more may have been in flight
        assert len([i for i in failed if i > quarantined]) <= 1, stdout
        assert "Not built" not in stdout, stdout
        assert_same_tree(read_tree(out / "demo"), want)
        assert not [e for e in (out / "demo").glob("*/*/err") if "No space" in e.read_text()]
    finally:
        subprocess.run(["umount", str(work)], check=False, capture_output=True)
        if subprocess.run(["mountpoint", "-q", str(work)], check=False).returncode == 0:
            subprocess.run(["umount", "-l", str(work)], check=False)


def test_local_only_disk_full_quarantines_local_and_blames_no_toolchain(
        demo: tuple[Path, Tree], tmp_path: Path) -> None:
    """A run without machines whose disk fills up: after two failures this machine is
    quarantined too, and the boards it could not build are 'Not built' with the reason,
    never written, and never given the no-toolchain result (the arch has a toolchain)."""
    tree, want = demo
    out = tmp_path / "out"
    work = out / "demo" / ".bm-work"
    work.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(work)], check=True)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "buildfleet", "-b", "demo", "-T", "2", "-o", str(out)],
            cwd=tree, env=bf_env({"XDG_CACHE_HOME": str(tmp_path / "cost-cache")}),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not _local_results(out / "demo") and proc.poll() is None:
                assert time.monotonic() < deadline, "no result within 120 s"
                time.sleep(0.05)
            with open(work / "fill", "wb", buffering=0) as f:  # noqa: PTH123 - until ENOSPC
                try:
                    while True:
                        f.write(b"\0" * (1 << 20))
                except OSError:
                    pass
            stdout, stderr = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 100, stdout + stderr
        assert "Quarantined local for the rest of the run after 2 failures" in stdout, stdout
        assert re.search(r"^Not built: \S+: .*out of disk space", stdout, re.M), stdout
        assert "no executor with a toolchain" not in stdout, stdout
        got = read_tree(out / "demo")
        assert got and len(got) < len(want), stdout
        assert {k: want[k] for k in got} == got  # what was written is right
        errs = [e.read_text() for e in (out / "demo").glob("*/*/err")]
        assert not [e for e in errs if "No space" in e or "No tool chain" in e]
    finally:
        subprocess.run(["umount", str(work)], check=False, capture_output=True)
        if subprocess.run(["mountpoint", "-q", str(work)], check=False).returncode == 0:
            subprocess.run(["umount", "-l", str(work)], check=False)


def test_garbage_and_banner_on_stdout_are_ignored(demo: tuple[Path, Tree], fleet: SshdHarness,
                                                  tmp_path: Path) -> None:
    """A login banner in ~/.bashrc and a worker wrapper that prints junk before and
    while the protocol runs: the machine still builds, every result is right."""
    tree, want = demo
    name, user = _alpha(fleet)
    m = fleet.reachable[0]
    pyz = _shipped_pyz(fleet, tree, tmp_path)
    bashrc = m.home / ".bashrc"
    old = bashrc.read_text() if bashrc.exists() else None
    bashrc.write_text('echo "Welcome to $(hostname)! Unauthorised access prohibited"\n'
                      + (old or ""))
    wrapper = m.home / "bf worker;x"  # a path that needs quoting, too
    wrapper.write_text("#!/bin/sh\necho 'junk line'\nprintf '\\001\\002\\377 garbage\\n'\n"
                       "echo 'BM>no space, not a message'\n"
                       f"exec python3 {pyz} \"$@\"\n")
    wrapper.chmod(0o755)
    shutil.chown(wrapper, user, user)
    try:
        out = tmp_path / "out"
        run = start_dist(tree, out, fleet.settings_file, "--use-machines", name,
                         "--machines-buildman-path", str(wrapper), env=ENV)
        rc, stdout, stderr = run.wait()
        assert rc == 100, stdout + stderr
        assert "Worker failed" not in stdout, stdout
        assert hosts_in(out / "demo").get(name), stdout
        assert_same_tree(read_tree(out / "demo"), want)
    finally:
        if old is None:
            bashrc.unlink()
        else:
            bashrc.write_text(old)
        wrapper.unlink()


def _shipped_pyz(h: SshdHarness, tree: Path, tmp_path: Path) -> str:
    """The zipapp a normal run ships to the first machine (ship it once if needed)."""
    m = h.reachable[0]
    found = sorted((m.home / ".buildfleet-worker" / ".tool").glob("*.pyz"),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        run = start_dist(tree, tmp_path / "ship", h.settings_file, "--use-machines", m.name,
                         "--no-local", env=ENV)
        run.wait()
        found = sorted((m.home / ".buildfleet-worker" / ".tool").glob("*.pyz"),
                       key=lambda p: p.stat().st_mtime)
    assert found
    return str(found[-1])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["SIGINT", "SIGHUP"])
def test_sigint_stops_everything_and_a_rerun_completes(demo: tuple[Path, Tree],
                                                       fleet: SshdHarness,
                                                       tmp_path: Path, sig: int) -> None:
    """Ctrl-C, and SIGHUP (a closed terminal or a dropped SSH session to the boss's
    machine), stop the run with nothing left running; a rerun completes the tree."""
    tree, want = demo
    name, _ = _alpha(fleet)
    out = tmp_path / "out"
    run = start_dist(tree, out, fleet.settings_file, "--use-machines",
                     ",".join(m.name for m in fleet.reachable), env=ENV)
    assert run.wait_for_host(name)
    sent = time.monotonic()
    run.proc.send_signal(sig)
    rc, stdout, stderr = run.wait(timeout=30)
    took = time.monotonic() - sent
    assert rc == 130, stdout + stderr
    assert took < 10, f"took {took:.1f} s to stop"
    left = wait_no_processes(_users(fleet), timeout=5)
    assert not left, f"left running after Ctrl-C: {left}"
    partial = read_tree(out / "demo")  # every result directory complete
    assert 0 < len(partial) < len(want)
    for key, outcome in partial.items():
        assert outcome == want[key]
    if sig != signal.SIGINT:
        return
    rerun = start_dist(tree, out, fleet.settings_file, "--use-machines",
                       ",".join(m.name for m in fleet.reachable), env=ENV)
    rc, stdout, stderr = rerun.wait()
    assert rc == 100, stdout + stderr
    assert_same_tree(read_tree(out / "demo"), want)


def test_unreachable_machine_at_start(demo: tuple[Path, Tree], fleet: SshdHarness,
                                      tmp_path: Path) -> None:
    tree, want = demo
    offline = [m for m in fleet.machines if m.user is None]
    assert offline, "the harness has no unreachable machine"
    out = tmp_path / "out"
    run = start_dist(tree, out, fleet.settings_file, env=ENV)
    rc, stdout, stderr = run.wait()
    assert rc == 100, stdout + stderr
    assert f"{offline[0].name}: unavailable:" in stdout, stdout
    assert_same_tree(read_tree(out / "demo"), want)
    assert hosts_in(out / "demo").get(fleet.reachable[0].name)
