"""A make that did not finish leaves nothing the next build trusts; nothing runs forever.

Issue 20's wrong result, forced instead of waited for: GNU as creates its
object file before it assembles, so a compile killed while it runs leaves an
empty object newer than its source. With ``-pipe`` as starts together with
cc1, and a FIFO given to ``-include`` holds cc1 (and so as) for as long as the
test wants: the moment the empty object exists is the moment to end the make.
The same board built again in the same slot (its O= directory is kept for the
same board) must then build as a clean build does, not link the empty object.
Real make, gcc, as and ld throughout; the FIFO is the only stage prop.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bfrun import bf_env, branch_revs, done_code, require_cross, result_dir, settings_file
from buildfleet.build.builder import Builder, BuildInterrupted
from buildfleet.build.failure import infra_reason
from buildfleet.build.makerun import KCONFIG_LOOP_TEXT, KconfigLoop, run_make
from buildfleet.build.workspace import UNFINISHED_MARKER, Slot, prepare_slots
from buildfleet.demo import DemoTree, make_demo_tree
from buildfleet.model import DEFAULT_KEEP_MB, Board, BuildFlags, BuildJob, BuildResult, Commit
from buildfleet.settings import Settings
from buildfleet.toolchains import scan_toolchains
from faultkit import empty_objects

BOARD = Board("sandbox", "sandbox")
WAIT = 60.0


@pytest.fixture(params=[DEFAULT_KEEP_MB, 0], ids=["kept", "not-kept"])
def keep_mb(request: pytest.FixtureRequest) -> int:
    """``keep_build_dirs_mb``: the default (each board's directory kept), and off."""
    return int(request.param)


def _board_dir(slot: Slot, keep_mb: int) -> Path:
    """Where the board's build directory is once its job ended, however it ended:
    kept, it is moved back beside the worktrees (build.keep) from the worktree's
    ``build`` it was built in; else it stays the slot's O=."""
    return slot.out_root.parent / BOARD.target if keep_mb else slot.out_dir(BOARD.target, False)


@pytest.fixture()
def demo(tmp_path: Path) -> DemoTree:
    require_cross()
    return make_demo_tree(tmp_path / "tree", boards=2, commits=1)


def _wait_for_empty_object(out_dir: Path) -> Path:
    """The object GNU as created and has not written yet (cc1 waits on the FIFO)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for obj in empty_objects(out_dir):
            return obj
        time.sleep(0.02)
    raise AssertionError(f"no object was started under {out_dir} in {WAIT:g} s")


@pytest.fixture
def hang(tmp_path: Path) -> Iterator[Path]:
    """A FIFO that a compile ``-include``s: it blocks in cc1 until released.

    Released at teardown whatever the test did, so a failing test leaves no
    compile waiting on it for ever (every opener blocked on it gets EOF).
    """
    fifo = tmp_path / "hang.h"
    os.mkfifo(fifo)
    yield fifo
    for _ in range(50):
        try:
            if not stat.S_ISFIFO(os.stat(fifo).st_mode):
                break  # _unblock made it an ordinary file
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # no reader waits (ENXIO)
            break
        os.close(fd)
        time.sleep(0.02)


def _unblock(fifo: Path) -> None:
    """From now on the -include file is an ordinary empty header (same flags, same path)."""
    fifo.unlink()
    fifo.write_text("")


def test_a_stopped_make_leaves_nothing_the_next_build_of_the_board_trusts(
        demo: DemoTree, tmp_path: Path, hang: Path, keep_mb: int) -> None:
    """Stop (cancel, Ctrl-C, a worker giving a board up) mid-compile, then the same
    board in the same slot: it must build as cleanly as the first time."""
    flags = BuildFlags(make_flags={BOARD.target: [f"KCFLAGS=-pipe -include {hang}"]},
                       keep_build_dirs_mb=keep_mb)
    builder = Builder(flags, scan_toolchains(Settings(path=tmp_path / "none")))
    slot = prepare_slots(demo.path / ".git", demo.path, tmp_path / "work", 1)[0]
    upstream = subprocess.run(["git", "rev-parse", "main"], cwd=demo.path, check=True,
                              capture_output=True, text=True).stdout.strip()
    job = BuildJob(BOARD, (Commit(0, upstream),))
    results: list[BuildResult] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def first() -> None:
        try:
            builder.build(job, slot, lambda: 1, results.append, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        # The job builds in a clean build's O=, kept directory or not.
        _wait_for_empty_object(slot.out_dir(BOARD.target, False))
    finally:
        stop.set()
        thread.join(WAIT)
    out_dir = _board_dir(slot, keep_mb)
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], BuildInterrupted), errors
    assert not results, "a stopped build must not produce a result"
    assert (out_dir / UNFINISHED_MARKER).exists()
    # What the stopped make left must be gone before the next make runs. The
    # demo's configure rewrites autoconf.h, so its objects would all be rebuilt
    # anyway; kbuild's are not (fixdep makes them depend on the include/config/
    # stubs of the symbols they use, and syncconfig touches only changed ones),
    # so the outcome below cannot show a directory built in without a wipe.
    stale = out_dir / "stale.o"
    stale.write_text("")

    _unblock(hang)
    builder.build(job, slot, lambda: 1, results.append, threading.Event())
    assert not stale.exists(), "the unfinished directory was built in without a wipe"
    clean = prepare_slots(demo.path / ".git", demo.path, tmp_path / "clean", 1)[0]
    builder.build(job, clean, lambda: 1, results.append, threading.Event())
    again, want = results
    # An empty main.o links without an error (ld takes it for an empty script):
    # rc 0, a warning and a smaller image, unless the directory was wiped.
    assert (again.return_code, again.stderr) == (want.return_code, want.stderr) == (0, "")
    assert again.files["sizes"] == want.files["sizes"]
    assert not (out_dir / UNFINISHED_MARKER).exists()
    if keep_mb:
        assert not (slot.out_dir(BOARD.target, False)).exists()  # moved back every time


def test_ctrl_c_mid_compile_then_a_rerun_writes_the_right_result(
        demo: DemoTree, tmp_path: Path, hang: Path) -> None:
    """The same through the command line: Ctrl-C while a compile runs, then a rerun
    into the same output directory (whose slots keep their O= directories)."""
    out = tmp_path / "out"
    # --no-ccache: the FIFO holds cc1 (and as's empty object) only when gcc runs the
    # compile itself; ccache would first preprocess, and block in cpp instead.
    args = [sys.executable, "-m", "buildfleet", "-b", "demo", "--boards", BOARD.target,
            "-T1", "--no-ccache", "-o", str(out), "-G", str(settings_file(tmp_path))]
    env = bf_env({"KCFLAGS": f"-pipe -include {hang}"})
    proc = subprocess.Popen(args, cwd=demo.path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_empty_object(out)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    # Every make of the run ended with it (the compile blocked on the FIFO too).
    left = _processes_in(out)
    assert not left, f"left running after Ctrl-C: {left}"
    # The board's kept directory (on by default) went back beside the worktrees,
    # marked unfinished, so the rerun wipes it (build.keep).
    work = out / "demo" / ".bm-work"
    assert not (work / "00" / "build").exists()
    assert (work / BOARD.target / UNFINISHED_MARKER).exists()
    _unblock(hang)
    rerun = subprocess.run(args, cwd=demo.path, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=WAIT * 2)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for rev in branch_revs(demo.path, "demo"):
        res = result_dir(out / "demo", rev, BOARD.target)
        assert done_code(res) == 0, (res / "err").read_text()
        assert (res / "sizes").is_file()


def test_a_stop_is_seen_even_when_make_ends_between_two_checks(tmp_path: Path) -> None:
    """A make killed by another path (a reaper) and gone before the next poll is
    still a stopped build, never an ordinary failed one."""
    stop = threading.Event()
    stop.set()
    with pytest.raises(BuildInterrupted):
        run_make(["sh", "-c", "kill -KILL $$"], tmp_path, dict(os.environ), stop)


def test_a_make_killed_by_someone_else_is_not_a_build_failure(
        demo: DemoTree, tmp_path: Path, hang: Path, keep_mb: int) -> None:
    """make SIGKILLed from outside (as the OOM killer does) mid-compile: an
    infrastructure failure, and the directory it was building in is not trusted."""
    flags = BuildFlags(make_flags={BOARD.target: [f"KCFLAGS=-pipe -include {hang}"]},
                       keep_build_dirs_mb=keep_mb)
    builder = Builder(flags, scan_toolchains(Settings(path=tmp_path / "none")))
    slot = prepare_slots(demo.path / ".git", demo.path, tmp_path / "work", 1)[0]
    results: list[BuildResult] = []
    thread = threading.Thread(target=builder.build, args=(
        BuildJob(BOARD, (Commit(0, demo.hashes[0]),)), slot, lambda: 1, results.append,
        threading.Event()))
    thread.start()
    try:
        _wait_for_empty_object(slot.out_dir(BOARD.target, False))
        # The make the builder started; kbuild's second make (make -C O=) runs below it.
        makes = [pid for pid, argv in _my_descendants()
                 if argv[:1] == ["make"] and "-C" not in argv]
        assert len(makes) == 1, makes
        os.kill(makes[0], signal.SIGKILL)  # make alone; its compilers are left to us
    finally:
        thread.join(WAIT)
    assert not thread.is_alive()
    assert len(results) == 1
    assert infra_reason(results[0], None) == "make killed by signal 9"
    assert (_board_dir(slot, keep_mb) / UNFINISHED_MARKER).exists()
    assert not _processes_in(slot.source_dir)


def _my_descendants() -> list[tuple[int, list[str]]]:
    """(pid, argv) of every process below this one."""
    parent: dict[int, int] = {}
    argvs: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        pid = int(entry.name)
        parent[pid] = int(stat[stat.rfind(")") + 2:].split()[1])
        argvs[pid] = [a.decode(errors="replace") for a in argv if a]
    mine = []
    for pid in parent:
        up = parent.get(pid, 0)
        while up > 1 and up != os.getpid():
            up = parent.get(up, 0)
        if up == os.getpid():
            mine.append((pid, argvs[pid]))
    return mine


def test_kconfig_loop_guard_needs_a_restart_and_a_second_question() -> None:
    assert not KconfigLoop().feed(b"Some option (FOO) [] (NEW) Some option (FOO) [] (NEW)")
    guard = KconfigLoop()
    assert not guard.feed(b"*\n* Restart con")
    assert not guard.feed(b"fig...\n*\nA (FOO) [] (NEW) \nB (BAR) [] (N")
    assert guard.feed(b"EW) \nA (FOO) [] (N") is False
    assert guard.feed(b"EW) ")
    assert "int/hex" in KCONFIG_LOOP_TEXT


def test_a_build_past_its_time_limit_is_stopped_with_its_process_group(
        demo: DemoTree, tmp_path: Path, hang: Path, keep_mb: int) -> None:
    """build_timeout: make and everything it started are killed and the result says why."""
    flags = BuildFlags(make_flags={BOARD.target: [f"KCFLAGS=-pipe -include {hang}"]},
                       build_timeout=3, keep_build_dirs_mb=keep_mb)
    builder = Builder(flags, scan_toolchains(Settings(path=tmp_path / "none")))
    slot = prepare_slots(demo.path / ".git", demo.path, tmp_path / "work", 1)[0]
    results: list[BuildResult] = []
    started = time.monotonic()
    builder.build(BuildJob(BOARD, (Commit(0, demo.hashes[0]),)), slot, lambda: 1,
                  results.append, threading.Event())
    took = time.monotonic() - started
    assert len(results) == 1
    assert results[0].return_code != 0
    assert "build stopped after 3 s (build_timeout)" in results[0].stderr
    assert took < 3 + WAIT / 2
    left = _processes_in(slot.source_dir)
    assert not left, f"left running: {left}"
    assert (_board_dir(slot, keep_mb) / UNFINISHED_MARKER).exists()


def _processes_in(directory: Path) -> list[str]:
    """Processes whose working directory is ``directory`` (make runs there)."""
    root = os.path.realpath(directory)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "cwd").startswith(root):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found



def test_a_kconfig_loop_ends_at_once_with_buildmans_hint(demo: DemoTree, tmp_path: Path) -> None:
    """conf asking the same question after 'Restart config' (stdin is /dev/null, so
    forever): make is stopped and the result says what is probably wrong."""
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "buildfleet", "-b", demo.loop_branch, "-o",
                          str(out), "-G", str(settings_file(tmp_path))], cwd=demo.path,
                         env=bf_env(), stdin=subprocess.DEVNULL, capture_output=True,
                         text=True, timeout=WAIT * 2)
    assert run.returncode == 100, run.stdout + run.stderr
    first, looping = branch_revs(demo.path, demo.loop_branch)
    for board in demo.targets:
        assert done_code(result_dir(out / demo.loop_branch, first, board)) == 0
        res = result_dir(out / demo.loop_branch, looping, board)
        assert done_code(res) == 2
        assert (res / "err").read_text() == KCONFIG_LOOP_TEXT + "\n"
        assert not _processes_in(tmp_path)


def test_a_refused_result_leaves_its_build_directory_untrusted(demo: DemoTree, tmp_path: Path,
                                                               keep_mb: int) -> None:
    """A result the slot refuses (the machine's failure: a full disk may have cut
    objects short) takes its build directory's trust with it: the next build of the
    board there starts from nothing."""
    builder = Builder(BuildFlags(keep_build_dirs_mb=keep_mb),
                      scan_toolchains(Settings(path=tmp_path / "none")))
    slot = prepare_slots(demo.path / ".git", demo.path, tmp_path / "work", 1)[0]
    job = BuildJob(BOARD, (Commit(0, demo.hashes[0]),))

    def refuse(result: BuildResult) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        builder.build(job, slot, lambda: 1, refuse, threading.Event())
    out_dir = _board_dir(slot, keep_mb)
    assert (out_dir / UNFINISHED_MARKER).exists()
    stale = out_dir / "stale.o"
    stale.write_text("")
    results: list[BuildResult] = []
    builder.build(job, slot, lambda: 1, results.append, threading.Event())
    assert results[0].return_code == 0
    assert not stale.exists(), "the untrusted directory was built in without a wipe"
    assert not (out_dir / UNFINISHED_MARKER).exists()
