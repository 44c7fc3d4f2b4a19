"""``buildfleet --worker`` driven through a Channel, as the boss drives it.

Everything is real: the worker subprocess, ``git push`` into its work
directory, make and gcc. The demo tree's session is checked against a local
build of the same boards by the Builder itself; a slow tree (make running a
compiler loop and a sleep) checks that every process dies with the worker.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buildfleet.fleet.protocol import HEARTBEAT_INTERVAL
from buildfleet.fleet.remote.channel import Channel, ChannelClosed
from buildfleet.model import Board, BuildFlags, BuildJob, BuildResult
from ci_skip import require

WORKER = [sys.executable, "-m", "buildfleet", "--worker"]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True, timeout=60).stdout


def start_worker(home: Path, *extra: str, errs: list[str] | None = None) -> Channel:
    env = {**os.environ, "HOME": str(home)}
    ch = Channel([*WORKER, *extra], env=env, cwd=home, name="worker",
                 on_stderr=errs.append if errs is not None else None)
    ready = ch.recv(30)
    assert ready["resp"] == "ready", ready
    return ch


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


def recv_until(ch: Channel, want: str, timeout: float = 60,
               seen: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        msg = ch.recv(max(0.1, deadline - time.monotonic()))
        if seen is not None:
            seen.append(msg)
        assert msg["resp"] != "error", msg
        if msg["resp"] == want:
            return msg


def setup_and_push(ch: Channel, repo: Path, ref: str, work: Path) -> dict[str, Any]:
    ch.send({"cmd": "setup", "work_dir": str(work)})
    done = ch.recv(30)
    assert done == {"resp": "setup_done", "work_dir": str(work), "git_dir": str(work / ".git"),
                    "pid": ch.pid}
    git("push", "-q", "--force", f"{work}/.git", f"{ref}:refs/heads/work", cwd=repo)
    return done


# -- process table ----------------------------------------------------------------------
def table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, pgid, comm) of live processes."""
    out: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] in "ZX":
            continue
        out[int(entry.name)] = (int(fields[1]), int(fields[2]), comm)
    return out


def descendants(root: int) -> dict[int, tuple[int, int, str]]:
    tab = table()
    found: dict[int, tuple[int, int, str]] = {}
    todo = [root]
    while todo:
        parent = todo.pop()
        for pid, row in tab.items():
            if row[0] == parent and pid not in found:
                found[pid] = row
                todo.append(pid)
    return found


def survivors(pids: set[int], groups: set[int]) -> list[str]:
    return [f"{pid} {comm}" for pid, (_pp, pg, comm) in table().items()
            if pid in pids or pg in groups]


# -- locks ------------------------------------------------------------------------------
def test_live_lock_is_refused_and_released_on_quit(home: Path, tmp_path: Path) -> None:
    work = tmp_path / "wd"
    first = start_worker(home)
    second = start_worker(home)
    try:
        first.send({"cmd": "setup", "work_dir": str(work)})
        assert first.recv(30)["resp"] == "setup_done"
        assert (work / ".lock").read_text() == f"{first.pid} {socket.gethostname()}\n"
        assert git("config", "receive.denyCurrentBranch", cwd=work).strip() == "updateInstead"
        second.send({"cmd": "setup", "work_dir": str(work)})
        assert second.recv(30) == {"resp": "error", "msg": f"work directory {work} is in use "
                                                           f"by pid {first.pid}",
                                   "reason": "in_use"}
        first.send({"cmd": "setup", "work_dir": str(work)})  # again: same answer
        assert first.recv(30)["resp"] == "setup_done"
        first.send({"cmd": "quit"})
        assert first.recv(30) == {"resp": "quit_ack"}
        assert first.close() == 0
        assert not (work / ".lock").exists()
        second.send({"cmd": "setup", "work_dir": str(work)})
        assert second.recv(30)["resp"] == "setup_done"
    finally:
        first.close()
        second.close()


def test_stale_locks_are_replaced_foreign_ones_refused(home: Path, tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    host = socket.gethostname()
    ch = start_worker(home)
    try:
        # a dead pid, then a live process that is no worker: both stale
        for holder in (gone.pid, os.getpid()):
            work = tmp_path / f"wd{holder}"
            work.mkdir()
            (work / ".lock").write_text(f"{holder} {host}\n")
            ch.send({"cmd": "setup", "work_dir": str(work)})
            assert ch.recv(30)["resp"] == "setup_done"
            assert (work / ".lock").read_text() == f"{ch.pid} {host}\n"
        other = tmp_path / "foreign"
        other.mkdir()
        (other / ".lock").write_text("4242 elsewhere.example\n")
        ch.send({"cmd": "setup", "work_dir": str(other)})
        reply = ch.recv(30)
        assert reply["resp"] == "error"
        assert reply["msg"].startswith(f"work directory {other} is locked by pid 4242 on "
                                       "elsewhere.example")
        # the refused setup left the first directory set up and locked
        assert (work / ".lock").read_text() == f"{ch.pid} {host}\n"
    finally:
        ch.close()


def test_setup_stops_what_a_dead_worker_left_running_in_its_work_dir(
        home: Path, tmp_path: Path) -> None:
    """A SIGKILLed worker's makes build on in their own sessions; the next worker
    on that work directory must stop them before it reuses the slot directories."""
    work = tmp_path / "wd"
    slot = work / ".bm-work" / "00" / "build"
    slot.mkdir(parents=True)
    gone = subprocess.Popen(["true"])
    gone.wait()
    (work / ".lock").write_text(f"{gone.pid} {socket.gethostname()}\n")
    # An orphaned "make" in a slot (own session, with a child), and a bystander outside.
    orphan = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], cwd=slot,
                              start_new_session=True)
    bystander = subprocess.Popen(["sleep", "60"], cwd=tmp_path, start_new_session=True)
    try:
        time.sleep(0.2)
        child = [p.name for p in Path("/proc").iterdir() if p.name.isdigit()
                 and _ppid(int(p.name)) == orphan.pid]
        assert child, "the orphan's child did not start"
        ch = start_worker(home)
        try:
            ch.send({"cmd": "setup", "work_dir": str(work)})
            assert ch.recv(30)["resp"] == "setup_done"
        finally:
            ch.close()
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert not Path(f"/proc/{child[0]}").exists() or _ppid(int(child[0])) is None
        assert bystander.poll() is None  # outside the work directory: left alone
    finally:
        for proc in (orphan, bystander):  # each leads its own session and group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def _ppid(pid: int) -> int | None:
    """Parent of a live (non-zombie) process, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return None if fields[0] in "ZX" else int(fields[1])


def test_work_dir_option_and_tilde(home: Path) -> None:
    ch = start_worker(home, "--work-dir", "~/dev/.bm-worker")
    try:
        lock = home / "dev" / ".bm-worker" / ".lock"
        assert lock.read_text().split()[0] == str(ch.pid)
        ch.send({"cmd": "setup", "work_dir": "~/dev/.bm-worker"})
        assert ch.recv(30) == {"resp": "setup_done", "work_dir": str(home / "dev/.bm-worker"),
                               "git_dir": str(home / "dev/.bm-worker/.git"), "pid": ch.pid}
        busy = Channel([*WORKER, "--work-dir", "~/dev/.bm-worker"], cwd=home,
                       env={**os.environ, "HOME": str(home)})
        try:
            first = busy.recv(30)
            assert first["resp"] == "error" and f"in use by pid {ch.pid}" in first["msg"]
            with pytest.raises(ChannelClosed):
                busy.recv(30)
            assert busy.close() == 1
        finally:
            busy.close()
    finally:
        ch.close()
    assert not lock.exists()


# -- a slow tree: kill paths ----------------------------------------------------------------
SLOW_MAKEFILE = (
    "O ?= .\n"
    ".DEFAULT_GOAL := all\n"
    "%_defconfig:\n"
    "\tmkdir -p $(O) && echo CONFIG_SLOW=y > $(O)/.config\n"
    "all:\n"
    "\tsh -c 'while :; do $(CROSS_COMPILE)gcc -O2 -c -o $(O)/slow.o slow.c; done' & "
    "sleep 300; wait\n"
)


@pytest.fixture
def slow_repo(tmp_path: Path) -> tuple[Path, str]:
    require(subprocess.run(["which", "gcc"], capture_output=True).returncode == 0,
            "gcc is not installed")
    repo = tmp_path / "slow"
    repo.mkdir()
    (repo / "Makefile").write_text(SLOW_MAKEFILE)
    (repo / "slow.c").write_text("int slow(int x) { return x * 3; }\n")
    (repo / "configs").mkdir()
    (repo / "configs" / "slow_defconfig").write_text("CONFIG_SLOW=y\n")
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", ".", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "slow", cwd=repo)
    return repo, git("rev-parse", "HEAD", cwd=repo).strip()


def start_slow_build(home: Path, tmp_path: Path, slow_repo: tuple[Path, str],
                     boards: tuple[str, ...] = ("slow",)) -> tuple[Channel, list[str]]:
    repo, head = slow_repo
    errs: list[str] = []
    ch = start_worker(home, "-D", errs=errs)
    setup_and_push(ch, repo, "main", tmp_path / "wd")
    # No ccache: the slow tree compiles one file again and again, so through ccache
    # every compile after the first would be a hit and no compiler would run.
    ch.send({"cmd": "configure", "settings": {"ccache": False}})
    assert "sandbox" in recv_until(ch, "configure_done")["toolchains"]
    ch.send({"cmd": "build_prepare", "commits": [head], "max_boards": 2})
    recv_until(ch, "build_prepare_done")
    for board in boards:
        ch.send({"cmd": "build_board", "board": board, "arch": "sandbox"})
    return ch, errs


def wait_for_compilers(pid: int, timeout: float = 30) -> dict[int, tuple[int, int, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        below = descendants(pid)
        comms = {row[2] for row in below.values()}
        if "make" in comms and "sleep" in comms:
            return below
        time.sleep(0.1)
    raise AssertionError(f"no make/sleep below the worker: {descendants(pid)}")


def test_stdin_eof_mid_build_leaves_no_process(home: Path, tmp_path: Path,
                                               slow_repo: tuple[Path, str]) -> None:
    ch, errs = start_slow_build(home, tmp_path, slow_repo)
    try:
        beat = ch.recv(30)
        assert beat["resp"] == "heartbeat" and beat["board"] == "slow", beat
        assert beat["thread"] in (0, 1)
        below = wait_for_compilers(ch.pid)
        # a compiler shows up too, now and then
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
                row[2] in ("gcc", "cc1") for row in below.values()):
            below.update(descendants(ch.pid))
        assert any(row[2] in ("gcc", "cc1") for row in below.values()), below
        pids = set(below)
        groups = {row[1] for row in below.values()}
        t0 = time.monotonic()
        status = ch.close(grace=10)  # closes stdin first; the worker must go by itself
        assert status == 0, (status, errs)
        assert time.monotonic() - t0 < 10
        assert survivors(pids, groups) == []
        assert "W: stdin closed, killing group" in errs
        assert not (tmp_path / "wd" / ".lock").exists()
    finally:
        ch.close()


def test_sigterm_mid_build_and_periodic_heartbeats(home: Path, tmp_path: Path,
                                                   slow_repo: tuple[Path, str]) -> None:
    ch, errs = start_slow_build(home, tmp_path, slow_repo)
    try:
        # The start beat, then the periodic ones: the worker's beat clock does not
        # start with the board, so only two periodic beats are an interval apart.
        beats = [ch.recv(30), ch.recv(HEARTBEAT_INTERVAL + 5)]
        t0 = time.monotonic()
        beats.append(ch.recv(HEARTBEAT_INTERVAL + 5))
        assert time.monotonic() - t0 >= HEARTBEAT_INTERVAL - 1
        assert beats[0] == beats[1] == beats[2] == {"resp": "heartbeat", "board": "slow",
                                                    "thread": beats[0]["thread"]}
        below = wait_for_compilers(ch.pid)
        pids = set(below)
        groups = {row[1] for row in below.values()}
        os.kill(ch.pid, signal.SIGTERM)
        with pytest.raises(ChannelClosed):
            ch.recv(15)
        deadline = time.monotonic() + 10
        while ch.returncode is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ch.returncode == 1, errs
        assert survivors(pids, groups) == []
        assert not (tmp_path / "wd" / ".lock").exists()
    finally:
        ch.close()


def test_cancel_board_stops_its_make_and_quit_kills_the_rest(
        home: Path, tmp_path: Path, slow_repo: tuple[Path, str]) -> None:
    # "slow" and "slow2" run side by side; cancel one, keep the other; quit.
    repo, _head = slow_repo
    (repo / "configs" / "slow2_defconfig").write_text("CONFIG_SLOW=y\n")
    git("add", ".", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "two", cwd=repo)
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    ch, errs = start_slow_build(home, tmp_path, (repo, head), boards=("slow", "slow2", "slow3"))
    try:
        started: dict[str, int] = {}
        while len(started) < 2:
            msg = ch.recv(30)
            assert msg["resp"] == "heartbeat", msg
            started[msg["board"]] = msg["thread"]
        assert set(started) == {"slow", "slow2"}
        assert set(started.values()) == {0, 1}
        wait_for_compilers(ch.pid)
        time.sleep(0.5)
        before = descendants(ch.pid)
        ch.send({"cmd": "cancel_board", "board": "slow3"})
        assert recv_until(ch, "board_cancelled") == {"resp": "board_cancelled",
                                                     "board": "slow3", "state": "queued"}
        ch.send({"cmd": "cancel_board", "board": "slow"})
        assert recv_until(ch, "board_cancelled") == {"resp": "board_cancelled",
                                                     "board": "slow", "state": "building"}
        # The cancelled board's processes go; the other board keeps building.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = [row for row in descendants(ch.pid).values() if row[2] == "make"]
            if len(left) == 1:
                break
            time.sleep(0.1)
        assert len(left) == 1, left
        assert "W: cancel slow (building)" in errs
        ch.send({"cmd": "quit"})
        replies = []
        while True:  # heartbeats of slow2 may come first; never a result of slow
            msg = ch.recv(30)
            replies.append(msg)
            if msg["resp"] == "quit_ack":
                break
            assert msg == {"resp": "heartbeat", "board": "slow2", "thread": started["slow2"]}
        assert ch.close(grace=10) == 0
        assert survivors(set(before), {row[1] for row in before.values()}) == []
    finally:
        ch.close()


# -- the demo tree: a whole session against a local build ----------------------------------
@pytest.fixture(scope="module")
def demo_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    try:
        from buildfleet.demo import make_demo_tree
    except ImportError as exc:
        require(False, f"buildfleet.demo is not available yet: {exc}")
        raise
    yield make_demo_tree(tmp_path_factory.mktemp("demo") / "u-boot")


def compiler_lines(stderr: str) -> list[str]:
    """stderr without make's own lines; sorted, as a parallel make fixes no order."""
    return sorted(ln for ln in stderr.splitlines() if not ln.startswith("make"))


def _stable_files(result: BuildResult) -> dict[str, bytes]:
    """The files that do not depend on the build directory's path (which differs by design).

    ``out-env``/``out-cmd`` name it; objdump's file offsets move with the length
    of the debug info's directory strings. ``images.sha256`` hashes the image,
    which embeds the build date when built without -r.
    """
    return {k: v for k, v in result.files.items()
            if k not in ("out-env", "out-cmd", "images.sha256") and not k.endswith(".objdump")}


def local_build(repo: Path, work: Path,
                jobs: list[BuildJob]) -> dict[tuple[str, str | None], BuildResult]:
    from buildfleet.build.builder import Builder, prepare_slots
    from buildfleet.settings import Settings
    from buildfleet.toolchains import scan_toolchains

    tcs = scan_toolchains(Settings(path=work / "none"))
    slot = prepare_slots(repo / ".git", repo, work, 1)[0]
    out: dict[tuple[str, str | None], BuildResult] = {}
    builder = Builder(BuildFlags(), tcs)
    for job in jobs:
        hashes = {c.sequence: c.hash for c in job.commits}

        def keep(r: BuildResult, hashes: dict[int, str | None] = hashes) -> None:
            out[(r.target, hashes[r.sequence])] = r

        builder.build(job, slot, lambda: 2, keep, threading.Event())
    return out


def test_demo_session_matches_a_local_build(home: Path, tmp_path: Path, demo_tree: Any) -> None:
    from buildfleet.gitutil import branch_commits

    tree = demo_tree
    for arch in ("arm", "riscv64"):
        gcc = f"{tree.board('acme_arm1' if arch == 'arm' else 'initech_rv2').cross_compile}gcc"
        require(shutil.which(gcc) is not None, f"{gcc} is not installed")
    # The branch's commits with the upstream commit first, as -b builds them.
    commits = branch_commits(tree.path, tree.branch)
    assert [c.hash for c in commits[1:]] == tree.hashes
    every = list(range(len(commits)))
    wanted = {"sandbox": [0, 3], "acme_arm1": every, tree.broken_target: every}
    jobs = []
    for target, indices in wanted.items():
        brd = tree.board(target)
        jobs.append(BuildJob(Board(target=target, arch=brd.arch),
                             tuple(commits[i] for i in indices)))

    errs: list[str] = []
    ch = start_worker(home, "-D", errs=errs)
    seen: list[dict[str, Any]] = []
    try:
        setup_and_push(ch, tree.path, tree.branch, tmp_path / "wd")
        ch.send({"cmd": "configure", "settings": BuildFlags().to_dict()})
        configured = recv_until(ch, "configure_done")
        assert {"sandbox", "arm", "riscv64"} <= set(configured["toolchains"])
        ch.send({"cmd": "build_prepare", "commits": [c.hash for c in commits],
                 "max_boards": 2})
        prep = [ch.recv(60) for _ in range(4)]
        assert prep == [{"resp": "build_started", "num_threads": 2},
                        {"resp": "worktree_created", "thread": 0},
                        {"resp": "worktree_created", "thread": 1},
                        {"resp": "build_prepare_done"}]
        for job in jobs:
            brd = tree.board(job.board.target)
            msg: dict[str, Any] = {"cmd": "build_board", "board": brd.target, "arch": brd.arch,
                                   "vendor": brd.vendor, "cpu": brd.cpu}
            if brd.target == "sandbox":
                msg["commits"] = wanted["sandbox"]
            ch.send(msg)
        ch.send({"cmd": "build_done"})
        done = recv_until(ch, "build_done", timeout=300, seen=seen)
        assert done == {"resp": "build_done", "exceptions": 0}
        ch.send({"cmd": "quit"})
        assert ch.recv(30) == {"resp": "quit_ack"}
        assert ch.close() == 0
    finally:
        ch.close()

    # One heartbeat at each board's start, before any of its results.
    remote: dict[tuple[str, str | None], BuildResult] = {}
    started: set[str] = set()
    for msg in seen:
        if msg["resp"] == "heartbeat":
            started.add(msg["board"])
        elif msg["resp"] == "build_result":
            assert msg["board"] in started, msg["board"]
            result = BuildResult.from_wire(msg, host="w")
            key = (result.target, commits[result.sequence].hash)
            assert key not in remote
            remote[key] = result
    assert set(remote) == {(t, commits[i].hash) for t, idx in wanted.items() for i in idx}

    # What the demo history promises.
    broken, at = tree.broken_target, tree.hashes
    assert remote[(broken, at[tree.broken_upto])].return_code != 0
    assert tree.error_text in remote[(broken, at[tree.broken_upto])].stderr
    assert remote[(broken, at[tree.fixed_upto])].return_code == 0
    assert tree.warning_text in remote[("acme_arm1", at[tree.warning_upto])].stderr
    assert tree.warning_text not in remote[("acme_arm1", commits[0].hash)].stderr
    assert remote[("acme_arm1", at[tree.warning_upto])].return_code == 0
    for key, result in remote.items():
        if result.return_code == 0:
            assert result.files["sizes"].strip(), key
            sizes = result.files["sizes"].decode()
            images = {line.split()[5] for line in sizes.splitlines()}
            assert "u-boot" in images and images <= {"u-boot", "spl/u-boot-spl"}, sizes
            assert str(tmp_path) not in sizes, (key, sizes)
    assert "acme_arm1" in tree.growth_targets
    assert (remote[("acme_arm1", commits[0].hash)].files["sizes"]
            != remote[("acme_arm1", at[tree.growth_upto])].files["sizes"])
    assert "W: start sandbox" in errs
    assert any(e.startswith(f"W: done {broken} rc=") and e.endswith(" s") for e in errs), errs

    # The same jobs through the Builder directly give the same results.
    local = local_build(tree.path, tmp_path / "local", jobs)
    assert set(local) == set(remote)
    for key, result in remote.items():
        mine = local[key]
        assert (result.return_code, compiler_lines(result.stderr), result.stdout) == (
            mine.return_code, compiler_lines(mine.stderr), mine.stdout), key
        assert _stable_files(result) == _stable_files(mine), key


def test_build_prepare_refuses_commits_that_were_not_pushed(home: Path, tmp_path: Path,
                                                            slow_repo: tuple[Path, str]) -> None:
    repo, head = slow_repo
    ch = start_worker(home)
    try:
        setup_and_push(ch, repo, "main", tmp_path / "wd")
        for commits, text in [(["0" * 40], f"1 commit(s) not in {tmp_path}/wd/.git (push first)"),
                              ([head, None], "a worker builds pushed commits only"),
                              (["HEAD~1"], "commit names must be hexadecimal hashes")]:
            ch.send({"cmd": "build_prepare", "commits": commits})
            reply = ch.recv(30)
            assert reply["resp"] == "error" and text in reply["msg"], reply
        ch.send({"cmd": "build_prepare", "commits": [head], "max_boards": 1})
        assert recv_until(ch, "build_prepare_done") == {"resp": "build_prepare_done"}
        assert (tmp_path / "wd" / ".bm-work" / "00" / ".git").is_file()
    finally:
        ch.close()


def test_configure_refuses_flags_this_machine_cannot_honour(home: Path) -> None:
    """A bad -a or --fragments, or --dtc-skip without a dtc here: an error, never a build."""
    path = os.pathsep.join(d for d in os.environ["PATH"].split(os.pathsep)
                           if not (Path(d) / "dtc").exists())
    env = {**os.environ, "HOME": str(home), "PATH": path}
    ch = Channel(WORKER, env=env, cwd=home, name="worker")
    try:
        assert ch.recv(30)["resp"] == "ready"
        for settings, text in [({"adjust_cfg": ["FOO BAR"]}, "-a/--adjust-cfg"),
                               ({"fragments": ["-j9.config"]}, "bad --fragments"),
                               ({"fragments": ["../x.config"]}, "bad --fragments"),
                               ({"dtc_skip": True}, "Cannot find dtc on this machine")]:
            ch.send({"cmd": "configure", "settings": settings})
            reply = ch.recv(30)
            assert reply["resp"] == "error" and text in reply["msg"], reply
        ch.send({"cmd": "configure", "settings": {"adjust_cfg": ["CONFIG_X=1", "~Y"],
                                                  "fragments": ["acpi.config"]}})
        assert ch.recv(60)["resp"] == "configure_done"
    finally:
        ch.close()


def test_workers_share_the_machine_threads(home: Path, tmp_path: Path,
                                           slow_repo: tuple[Path, str]) -> None:
    """Two workers (two bosses) with their own work directories and one shared dir:
    the first claims the machine's threads, the second is told 'busy' with the holder's
    pid (not an error of the machine) and gets them once the first has quit."""
    repo, head = slow_repo
    shared = tmp_path / "shared"
    first, second = start_worker(home), start_worker(home)
    try:
        for ch, name in ((first, "a"), (second, "b")):
            ch.send({"cmd": "setup", "work_dir": str(shared / name), "shared_dir": str(shared)})
            assert ch.recv(30)["resp"] == "setup_done"
            git("push", "-q", "--force", f"{shared / name}/.git", "main:refs/heads/work",
                cwd=repo)
        first.send({"cmd": "build_prepare", "commits": [head]})
        threads = recv_until(first, "build_started")["num_threads"]
        assert threads == len(os.sched_getaffinity(0))
        recv_until(first, "build_prepare_done")
        second.send({"cmd": "build_prepare", "commits": [head]})
        busy = second.recv(30)
        assert busy["resp"] == "error" and busy.get("reason") == "busy", busy
        assert busy["msg"] == (f"busy: all {threads} build threads of this machine are in use "
                               f"by other workers (pids {first.pid})")
        first.send({"cmd": "quit"})
        recv_until(first, "quit_ack")
        first.close()
        second.send({"cmd": "build_prepare", "commits": [head]})
        assert recv_until(second, "build_started")["num_threads"] == threads
        recv_until(second, "build_prepare_done")
    finally:
        first.close()
        second.close()


def test_one_answer_to_is_this_process_a_worker() -> None:
    """The lock check and --kill-workers (sent to machines) ask the same function."""
    from buildfleet.fleet.machines.kill import KILL_SCRIPT
    from buildfleet.fleet.worker.workdir import is_worker_argv

    assert is_worker_argv([b"python3", b"/home/u/.bm/.tool/buildfleet-0123.pyz", b"--worker"])
    assert is_worker_argv([b"/opt/buildfleet/bin/buildfleet", b"--worker", b"-D"])
    assert not is_worker_argv([b"python3", b"/home/u/.bm/.tool/buildfleet-0123.pyz", b"-n"])
    assert not is_worker_argv([b"celery", b"--worker"])  # someone else's worker
    assert "def is_worker_argv(" in KILL_SCRIPT and "if is_worker_argv(argv):" in KILL_SCRIPT
    namespace: dict[str, object] = {}
    exec(compile(KILL_SCRIPT.split("\nimport os", 1)[0], "kill", "exec"), namespace)  # noqa: S102
    assert namespace["is_worker_argv"] is not is_worker_argv  # the copy the machine runs...
    copy = namespace["is_worker_argv"]
    assert callable(copy) and copy([b"x/buildfleet.pyz", b"--worker"])  # ...agrees
