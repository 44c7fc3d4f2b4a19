"""Bug reports of buildman's users, tried on buildfleet (issue 13, points 5, 8, 9 and 10).

Each runs the real ``buildfleet`` on a demo tree and checks what a buildman
user would see: the exit code, the files of the output tree and the summary.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from bfrun import Run, bf_env, branch_revs, git, require_cross, result_dir, run_bf, settings_file
from buildfleet.demo import DemoTree, make_demo_tree
from buildfleet.model import Board, Commit
from buildfleet.results.collect import FailureFacts, error_files, find_flakes

# Boards whose boards.cfg order (umbrella_arm3 is an orphan: status '-', first)
# differs from their order by name.
BOARDS = ["umbrella_arm3", "globex_a64", "acme_arm1", "initech_rv2"]
FLAKE_HEAD = "Likely flakes (failed then recovered, re-run to confirm):"


@dataclass
class Built:
    tree: DemoTree
    run: Run
    out: Path
    settings: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    require_cross()
    root = tmp_path_factory.mktemp("compat")
    tree = make_demo_tree(root / "tree")
    settings = settings_file(root)
    run = run_bf(["-b", "demo", "--boards", ",".join(BOARDS), "-o", str(root / "out"), "-T2",
                  "-G", str(settings)], cwd=tree.path)
    return Built(tree, run, root / "out", settings)


def summary(b: Built, *flags: str, out: Path | None = None) -> Run:
    return run_bf(["-b", "demo", "--boards", ",".join(BOARDS), "-o", str(out or b.out),
                   "-G", str(b.settings), "-s", *flags], cwd=b.tree.path)


def test_board_lists_follow_boards_cfg(built: Built) -> None:
    """Point 9: arch lines and ``-l`` lists in boards.cfg order, not by name."""
    assert built.run.returncode == 100, built.run
    run = summary(built, "-e", "-l")
    assert run.returncode == 0, run
    warn = [ln for ln in run.stdout.splitlines() if ln.startswith("w+(") and "feature_x" in ln]
    assert warn and all(ln.startswith("w+(umbrella_arm3 globex_a64 acme_arm1) ")
                        for ln in warn), run.stdout
    assert "       arm:  w+   umbrella_arm3 acme_arm1" in run.stdout.splitlines(), run.stdout


def test_a_fix_is_not_a_flake(built: Built, tmp_path: Path) -> None:
    """Point 10: initech_rv2 is broken by one commit and fixed by the next, which
    touched the failing file: a fix. A recovery no commit explains is a flake."""
    tree = built.tree
    run = summary(built, "-e")
    assert run.returncode == 0 and FLAKE_HEAD not in run.stdout, run
    assert tree.error_text in run.stdout  # the break is shown, as before

    # acme_arm1 "fails" at the break commit in a file no later commit touches
    out = tmp_path / "out"
    shutil.copytree(built.out, out)
    revs = branch_revs(tree.path, "demo")
    assert tree.broken_upto is not None
    bad = result_dir(out / "demo", revs[tree.broken_upto + 1], "acme_arm1")
    (bad / "done").write_text("2")
    (bad / "err").write_text("drivers/serial.c:3:1: error: expected ';' before '}' token\n")
    flaky = summary(built, out=out)
    lines = flaky.stdout.splitlines()
    assert lines[-2:] == [FLAKE_HEAD, "  acme_arm1"], flaky.stdout


def test_find_flakes_steps() -> None:
    """The rule itself: a recovery is a fix only if the changes touched a failing file."""
    commits = [Commit(i, f"{i:040x}", f"c{i}") for i in range(4)]
    boards = [Board("a", "arm"), Board("b", "arm"), Board("c", "arm")]
    ok = FailureFacts(built=True, broken=False)
    bad = FailureFacts(built=True, broken=True, files=frozenset({"board/x.c"}))
    unknown = FailureFacts(built=False, broken=False)
    history = [
        {"a": ok, "b": ok, "c": ok},
        {"a": bad, "b": bad, "c": bad},
        {"a": ok, "b": unknown, "c": bad},
        {"a": ok, "b": ok, "c": ok},
    ]
    touched = {(1, 2): ["board/x.c"], (1, 3): ["other.c"], (2, 3): ["other.c"]}

    def changed(old: Commit, new: Commit) -> list[str] | None:
        return touched.get((old.sequence, new.sequence))

    # a: fixed by the commit that touched board/x.c; b: recovered over commits that
    # did not touch it; c: the same. Without git, every recovery is a flake.
    assert find_flakes(boards, commits, history, changed) == ["b", "c"]
    assert find_flakes(boards, commits, history) == ["a", "b", "c"]
    assert find_flakes(boards, commits[:2], history[:2], changed) == []


def test_error_files_are_named_as_the_commits_name_them() -> None:
    """kbuild's ``../common/board_f.c`` (O= a direct child of the tree) is the
    tree's ``common/board_f.c``, the name a commit's change list gives; a name
    already relative to the tree stays as it is."""
    lines = ["../common/board_f.c:12:3: error: expected ';' before '}' token",
             "In file included from ../include/demo.h:4,",
             "drivers/serial.c:3:1: error: expected ';' before '}' token"]
    assert error_files(lines) == {"common/board_f.c", "include/demo.h", "drivers/serial.c"}


def _path_without(tmp_path: Path, prefix: str) -> str:
    """A PATH holding everything in /usr/bin except the tools starting with ``prefix``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for entry in os.scandir("/usr/bin"):
        if not entry.name.startswith(prefix):
            (bin_dir / entry.name).symlink_to(entry.path)
    venv_bin = Path(os.environ["PATH"].split(os.pathsep)[0])  # conftest put ours first
    return os.pathsep.join([str(venv_bin), str(bin_dir)])


def test_a_board_without_toolchain_fails_alone(tmp_path: Path) -> None:
    """Point 5: no riscv64 compiler: initech_rv1 fails with buildman's err, the rest builds."""
    require_cross()
    tree = make_demo_tree(tmp_path / "tree", commits=1)
    env = bf_env({"PATH": _path_without(tmp_path, "riscv64-")})
    args = ["-b", "demo", "acme_arm1", "initech_rv1", "-o", str(tmp_path / "out"),
            "-G", str(settings_file(tmp_path))]
    dry = run_bf([*args, "-n"], cwd=tree.path, env=env)
    assert dry.returncode == 0 and "Total boards to build for each commit: 2" in dry.stdout, dry
    run = run_bf(args, cwd=tree.path, env=env)
    assert run.returncode == 100 and "Traceback" not in run.stderr, run
    for rev in branch_revs(tree.path, "demo"):
        rv1 = result_dir(tmp_path / "out" / "demo", rev, "initech_rv1")
        assert (rv1 / "done").read_bytes() == b"2\n"
        assert (rv1 / "err").read_bytes() == (
            b"Tool chain error for riscv64: No tool chain found for arch 'riscv64'")
        assert not (rv1 / "toolchain").exists()
        arm = result_dir(tmp_path / "out" / "demo", rev, "acme_arm1")
        assert (arm / "done").read_text() == "0" and (arm / "sizes").is_file()


def test_a_commit_message_that_is_not_utf8(tmp_path: Path) -> None:
    """Point 8: latin-1 bytes in a subject are read with replacement, never a traceback."""
    require_cross()
    tree = make_demo_tree(tmp_path / "tree", boards=1, commits=1)
    (tree.path / "README").write_text("changed\n")
    git(tree.path, "commit", "-q", "-a", "-m", "placeholder")
    # git commit would convert the message to UTF-8: write the raw object
    head = subprocess.run(["git", "cat-file", "commit", "HEAD"], cwd=tree.path, check=True,
                          capture_output=True).stdout
    headers = head.split(b"\n\n", 1)[0]
    raw = headers + b"\n\ncommon: caf\xe9 cr\xe8me for the na\xefve\n\nBody \xff.\n"
    new = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"],
                         cwd=tree.path, input=raw, check=True, capture_output=True)
    git(tree.path, "update-ref", "refs/heads/demo", new.stdout.decode().strip())
    out = tmp_path / "out"
    args = ["-b", "demo", "-o", str(out), "-G", str(settings_file(tmp_path))]
    for extra in (["-n"], [], ["-s"]):
        run = run_bf([*args, *extra], cwd=tree.path)
        assert run.returncode == 0 and "Traceback" not in run.stderr, run
    assert "common: caf\ufffd cr\ufffdme for the na\ufffdve" in run.stdout, run.stdout
    dirs = [p.name for p in (out / "demo").iterdir() if re.match(r"\d\d_g", p.name)]
    assert len(dirs) == 3 and any(d.endswith("_common--caf\ufffd-cr\ufffdme-f") for d in dirs)
