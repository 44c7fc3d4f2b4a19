"""A warning persists after a failed commit, whatever path form the compiler printed.

Seen on a real U-Boot tree: kbuild compiles in ``O=`` and gcc names the file
``../common/board_r.c``; the object of the warned file was kept, the next
incremental commit did not recompile it, and a warning whose cause was still
there vanished from the result. The compiles here are real gcc runs in the
three forms make hands a source over: in-tree, ``O=``-relative, absolute.

The branch tests build that case with buildfleet on the demo tree, whose
Makefile compiles the kbuild way (in ``O=``, ``../drivers/serial.c`` when
``O=`` is a direct child of the source tree, an absolute name otherwise).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bfrun import Rev, branch_revs, configured, done_code, result_dir, run_bf, settings_file
from buildfleet.build.warned import forget_objects
from buildfleet.demo import BranchCommit, DemoTree, demo_file, edit_branch, make_demo_tree
from ci_skip import require

WARNS = "int f(void)\n{\n\tint unused_flag;\n\treturn 0;\n}\n"


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    (src / "common").mkdir(parents=True)
    (src / "common" / "board_r.c").write_text(WARNS)
    out = src / "build"
    for phase in ("", "spl/"):
        (out / phase / "common").mkdir(parents=True)
    return src, out


@pytest.mark.parametrize("form", ["kbuild-relative", "absolute", "in-tree"])
def test_the_warned_files_objects_are_removed(tmp_path: Path, form: str) -> None:
    src, out = _tree(tmp_path)
    obj = out / "common" / "board_r.o"
    spl_obj = out / "spl" / "common" / "board_r.o"
    named, cwd = {
        "kbuild-relative": ("../common/board_r.c", out),
        "absolute": (str(src / "common" / "board_r.c"), out),
        "in-tree": ("common/board_r.c", src),
    }[form]
    for target in (obj, spl_obj):
        run = subprocess.run(["gcc", "-Wall", "-c", named, "-o", str(target)], cwd=cwd,
                             capture_output=True, text=True, check=True)
    assert "warning: unused variable" in run.stderr
    assert obj.exists() and spl_obj.exists()
    forget_objects(out, src, run.stderr)
    assert not obj.exists() and not spl_obj.exists()


def test_a_file_outside_the_tree_is_left_alone(tmp_path: Path) -> None:
    src, out = _tree(tmp_path)
    elsewhere = tmp_path / "elsewhere.o"
    elsewhere.write_bytes(b"x")
    forget_objects(out, src, "../../elsewhere.c:3:6: warning: unused variable 'x'\n")
    assert elsewhere.exists()


# The real-tree case, on the sandbox board: commit N adds a warning in
# drivers/demo_table.c; N+1 breaks drivers/serial.c, which the board's object
# list names before it (as common/Makefile lists board_f.o before board_r.o);
# N+2 fixes it; N+3 touches serial.c again (a comment: built, not skipped).
BRANCH = "warn-break-fix"
WARNED = "drivers/demo_table.c"
BROKEN = "drivers/serial.c"
BOARD = "sandbox"


@pytest.fixture(scope="module")
def warn_break_fix(tmp_path_factory: pytest.TempPathFactory) -> DemoTree:
    require(all(shutil.which(tool) for tool in ("make", "gcc")), "make and gcc are needed")
    tree = make_demo_tree(tmp_path_factory.mktemp("wbf") / "tree", boards=1, commits=1)
    table, serial = demo_file(tree, WARNED), demo_file(tree, BROKEN)
    warned = table.replace("\tunsigned int i;\n", "\tunsigned int i;\n\tint unused_slot;\n", 1)
    broken = serial.replace("*s++;", "*s++", 1)
    assert warned != table and broken != serial
    edit_branch(tree, BRANCH, [
        BranchCommit("drivers: demo: a slot for the turbo cache", {WARNED: warned}),
        BranchCommit("drivers: serial: write faster", {BROKEN: broken}),
        BranchCommit("drivers: serial: fix the build", {BROKEN: serial}),
        BranchCommit("drivers: serial: say why", {BROKEN: serial + "/* polled */\n"}),
    ])
    return tree


def _diagnostics(err: Path, source: str, kind: str) -> list[str]:
    """The ``path:line:col: kind:`` lines of ``err`` about ``source``, path as written."""
    text = err.read_text() if err.exists() else ""
    return re.findall(rf"^(\S*{re.escape(source)}):\d+:\d+: {kind}:", text, re.M)


@pytest.mark.parametrize(("layout", "keep_going"), [
    ("O=build", False),    # buildman's O= in each worktree: kbuild's ../drivers/...
    ("O=build", True),
    ("-P", True),          # O= per board, beside the worktree: absolute names, whose
                           # source prefix the result drops (as buildman)
    ("--in-tree", True),   # no O=: names relative to the source tree
])
def test_a_warning_persists_over_a_failed_commit(warn_break_fix: DemoTree, tmp_path: Path,
                                                 layout: str, keep_going: bool) -> None:
    """The warning of commit N is in every result while its cause remains: at
    N+1 if make got to the file (``-k`` makes it, as a parallel make often does
    on a real tree), at N+2, an incremental build after the failure, and at
    N+3. Fails when forget_objects ignores kbuild's ``../`` names: the object
    last compiled with the warning is kept, and the next incremental build
    (N+2 with ``-k``, N+3 without) reports the warning as fixed."""
    tree = warn_break_fix
    settings = settings_file(tmp_path, "[toolchain]\n" + (
        f"[make-flags]\n{BOARD} = -k\n" if keep_going else ""))
    out = tmp_path / "out"
    flags = [] if layout == "O=build" else [layout]
    run = run_bf(["-b", BRANCH, "--boards", BOARD, "-o", str(out), "-T1", "-j1",
                  "-G", str(settings), *flags], cwd=tree.path)
    assert run.returncode == 100, run
    revs: list[Rev] = branch_revs(tree.path, BRANCH)
    assert len(revs) == 5
    res = [result_dir(out / BRANCH, rev, BOARD) for rev in revs]
    named = {"O=build": "../", "-P": "", "--in-tree": ""}[layout]
    warning = [f"{named}{WARNED}"]

    assert done_code(res[0]) == 0 and not (res[0] / "err").exists()
    assert done_code(res[1]) == 0
    assert _diagnostics(res[1] / "err", WARNED, "warning") == warning
    # N+1: broken. Serial make meets serial.c first and stops there; with -k it
    # goes on and compiles the warned file too.
    assert done_code(res[2]) == 2
    assert _diagnostics(res[2] / "err", BROKEN, "error") == [f"{named}{BROKEN}"]
    assert _diagnostics(res[2] / "err", WARNED, "warning") == (warning if keep_going else [])
    # N+2: fixed, built incrementally (the failure kept the configuration); the
    # warning's cause is still there. N+3 the same.
    assert done_code(res[3]) == 0 and not configured(res[3], BOARD)
    assert _diagnostics(res[3] / "err", WARNED, "warning") == warning
    assert _diagnostics(res[3] / "err", BROKEN, "error") == []
    assert done_code(res[4]) == 0 and not configured(res[4], BOARD)
    assert _diagnostics(res[4] / "err", WARNED, "warning") == warning
