"""Local builds across runs: reruns, amended commits, -f/-F, worktrees, current source, Ctrl-C.

Every test has its own demo tree because it changes it (or its output tree)
and checks what the next real ``buildfleet`` run does with what the last left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bfrun import (
    ALWAYS,
    BUILT,
    Rev,
    bf_env,
    branch_revs,
    done_code,
    git,
    require_cross,
    result_dir,
    run_bf,
    settings_file,
)
from buildfleet.demo import DemoTree, make_demo_tree

BOARDS = "sandbox,acme_arm1,initech_rv2"
INTERRUPT_LIMIT = 5.0


@pytest.fixture()
def demo(tmp_path: Path) -> DemoTree:
    require_cross()
    return make_demo_tree(tmp_path / "tree")


@pytest.fixture()
def settings(tmp_path: Path) -> Path:
    return settings_file(tmp_path)


def _stamps(base: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every file in every result directory under ``base``."""
    out = {}
    for path in sorted(base.glob("[0-9][0-9]_g*/*/*")):
        st = path.stat()
        out[str(path.relative_to(base))] = (st.st_ino, st.st_mtime_ns)
    return out


def _rebuilt(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> set[str]:
    """Result directories ('NN_g.../target') whose ``done`` file was written again."""
    return {key.rsplit("/", 1)[0] for key in after
            if key.endswith("/done") and before.get(key) != after[key]}


def _key(rev: Rev, target: str) -> str:
    return f"{rev.dir_name}/{target}"


def _worktree_gitdir(slot: Path) -> Path:
    return Path((slot / ".git").read_text().removeprefix("gitdir:").strip())


def test_rerun_amend_force_and_failures(demo: DemoTree, settings: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    base = out / "demo"
    args = ["-b", "demo", "--boards", BOARDS, "-o", str(out), "-T2", "-G", str(settings)]
    first = run_bf(args, demo.path)
    assert first.returncode == 100, first
    revs = branch_revs(demo.path, "demo")
    targets = BOARDS.split(",")
    stamps = _stamps(base)
    assert len(_rebuilt({}, stamps)) == len(revs) * len(targets)
    slots = sorted(p for p in (base / ".bm-work").iterdir() if (p / ".git").is_file())
    assert [p.name for p in slots] == ["00", "01"]
    slot_git = {p: (p / ".git").stat().st_ino for p in slots}

    # 1. nothing left to build
    again = run_bf(args, demo.path)
    assert again.returncode == 100, again  # the old results still count
    assert "Nothing to build" in again.stdout, again
    assert _stamps(base) == stamps
    # the slots' worktrees were reused, not made again
    assert {p: (p / ".git").stat().st_ino for p in slots} == slot_git
    listed = git(demo.path, "worktree", "list", "--porcelain")
    for slot in slots:
        assert f"worktree {slot}\n" in listed

    # 2. -F rebuilds only what failed or warned; a stale index.lock is no obstacle
    lock = _worktree_gitdir(slots[0]) / "index.lock"
    lock.write_text("")
    retry = run_bf([*args, "-F"], demo.path)
    assert retry.returncode == 100, retry
    assert not lock.exists()
    assert demo.warning_upto is not None and demo.broken_upto is not None
    bad = {_key(r, "acme_arm1") for r in revs[demo.warning_upto + 1:]}
    bad.add(_key(revs[demo.broken_upto + 1], demo.broken_target))
    after_retry = _stamps(base)
    assert _rebuilt(stamps, after_retry) == bad
    for key in bad:  # rebuilt from a configured start, they warn (or fail) again
        assert (base / key / "err").read_text().strip()

    # 3. amend the last commit: only it is built, the old directory goes
    (demo.path / "README").write_text("amended\n")
    git(demo.path, "commit", "-q", "-a", "--amend", "--no-edit")
    new_revs = branch_revs(demo.path, "demo")
    assert new_revs[:-1] == revs[:-1] and new_revs[-1].hash != revs[-1].hash
    amended = run_bf(args, demo.path)
    assert amended.returncode == 100, amended
    assert "Removing 1 old build directories" in amended.stdout + amended.stderr, amended
    assert not (base / revs[-1].dir_name).exists()
    after_amend = _stamps(base)
    assert _rebuilt(after_retry, after_amend) == {_key(new_revs[-1], t) for t in targets}
    for key, stamp in after_retry.items():
        if not key.startswith(revs[-1].dir_name):
            assert after_amend[key] == stamp, key
    assert re.search(rf"Completed: {len(revs) * len(targets)} total built "
                     rf"\({(len(revs) - 1) * len(targets)} previously", amended.stdout), amended

    # 4. -f builds everything again
    forced = run_bf([*args, "-f"], demo.path)
    assert forced.returncode == 100, forced
    assert _rebuilt(after_amend, _stamps(base)) == {
        _key(r, t) for r in new_revs for t in targets}


def _tree_files(root: Path) -> dict[str, int]:
    files = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if ".git" in dirnames:
            dirnames.remove(".git")
        for name in filenames:
            path = Path(dirpath) / name
            files[str(path.relative_to(root))] = path.stat().st_mtime_ns
    return files


def test_current_source_builds_uncommitted_edit(demo: DemoTree, settings: Path,
                                                tmp_path: Path) -> None:
    serial = demo.path / "drivers" / "serial.c"
    serial.write_text(serial.read_text() + "\nint bf_probe(void)\n{\n\tint bfedit = 1;\n"
                      "\n\treturn 0;\n}\n")
    status = git(demo.path, "status", "--porcelain")
    head = git(demo.path, "rev-parse", "HEAD")
    files = _tree_files(demo.path)
    out = tmp_path / "out"
    run = run_bf(["sandbox", "-o", str(out), "-G", str(settings)], demo.path)
    assert run.returncode == 101, run
    path = out / "current" / "sandbox"
    err = (path / "err").read_text()
    assert "drivers/serial.c" in err and "unused variable 'bfedit'" in err
    assert done_code(path) == 0
    assert set(ALWAYS) | set(BUILT) <= {p.name for p in path.iterdir()}
    cmds = (path / "out-cmd").read_text().splitlines()
    # buildman's layout: the work area and boards.cfg of a current-source build are
    # in the output directory itself, only the results under current/
    assert cmds[0].startswith(f"make O={out}/.bm-work/") and cmds[0].endswith(
        "sandbox_defconfig")
    assert (out / "boards.cfg").is_file() and not (out / "current" / "boards.cfg").exists()
    # the user's checkout is untouched: same status, HEAD and files
    assert git(demo.path, "status", "--porcelain") == status
    assert git(demo.path, "rev-parse", "HEAD") == head
    assert _tree_files(demo.path) == files
    # current source is always built again, and -W ignores the warning
    again = run_bf(["sandbox", "-o", str(out), "-G", str(settings), "-W"], demo.path)
    assert again.returncode == 0, again
    assert "unused variable 'bfedit'" in (path / "err").read_text()


# ---- Ctrl-C -------------------------------------------------------------------

def _procs_using(marker: str) -> list[str]:
    """Live processes whose command line or working directory mentions ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                "utf-8", "replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if marker in cmdline or cwd.startswith(marker):
            found.append(f"{entry.name}: {cmdline.strip()} (cwd {cwd})")
    return found


def test_ctrl_c_stops_every_make_and_keeps_the_tree_consistent(tmp_path: Path) -> None:
    require_cross()
    tree = make_demo_tree(tmp_path / "tree", boards=12)
    settings = settings_file(tmp_path)
    out = tmp_path / "out"
    base = out / "demo"
    args = ["-b", "demo", "--step", "0", "-o", str(out), "-T2", "-G", str(settings)]
    proc = subprocess.Popen([sys.executable, "-m", "buildfleet", *args], cwd=tree.path,
                            env=bf_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not list(base.glob("[0-9][0-9]_g*/*/done")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no result within 60 s"
            time.sleep(0.02)
        time.sleep(0.1)  # into the middle of the next makes
        assert proc.poll() is None, "finished before it could be interrupted"
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=INTERRUPT_LIMIT + 5)
        took = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert took < INTERRUPT_LIMIT, f"exit took {took:.1f}s"
    assert proc.returncode == 130, (proc.returncode, stdout, stderr)
    assert "Traceback" not in stderr, stderr
    left = _procs_using(str(tmp_path))
    for _ in range(10):  # killed processes may take a moment to be reaped
        if not left:
            break
        time.sleep(0.1)
        left = _procs_using(str(tmp_path))
    assert not left, left

    revs = branch_revs(tree.path, "demo")
    picked = [revs[0], revs[-1]]
    done_before = []
    for rev in picked:
        for board in tree.boards:
            path = result_dir(base, rev, board.target)
            if not (path / "done").exists():
                continue
            done_before.append(path)
            names = {p.name for p in path.iterdir()}
            need = set(ALWAYS) | (set(BUILT) if done_code(path) == 0 else set())
            assert need <= names, f"{path} is marked done but lacks {sorted(need - names)}"
    total = len(picked) * len(tree.boards)
    assert 0 < len(done_before) < total, "the run should have stopped part-way"
    leftovers = [p for p in base.glob("[0-9][0-9]_g*/.*")]
    assert not leftovers, f"half-written results left behind: {leftovers}"

    rerun = run_bf(args, tree.path)
    assert rerun.returncode in (100, 101), rerun
    assert re.search(rf"Completed: {total} total built \({len(done_before)} previously",
                     rerun.stdout), rerun
    for rev in picked:
        for board in tree.boards:
            path = result_dir(base, rev, board.target)
            assert (path / "done").is_file(), path
            if done_code(path) == 0:
                assert set(BUILT) <= {p.name for p in path.iterdir()}, path
