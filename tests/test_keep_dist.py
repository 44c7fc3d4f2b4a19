"""Workers keep each board's build directory too (build.keep), by default, as local slots do.

Why: the boss sends its flags, ``keep_build_dirs_mb`` included, to every
worker, so a worker keeps the boards it built in its work directory
(``.bm-work/<target>``, the work directory being the same for every run of
a tree from this boss), renamed into the slot worktree as ``build`` while the
board builds. A re-check after a rebase on that machine then builds on it;
its results must equal a clean local build's, but for the configure line
``out-cmd`` lacks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bfrun import branch_revs, rebase_on_a_new_upstream_commit, require_cross
from buildfleet.build import keep
from buildfleet.demo import make_demo_tree
from sshd_harness import SshdHarness
from test_dist import (  # noqa: F401  (no_leftover_workers: autouse fixture)
    SAME_BYTES,
    buildfleet,
    host_of,
    no_leftover_workers,
    write_settings,
)

pytestmark = pytest.mark.sshd

# Its defconfig is one the demo branch leaves alone, so a re-check needs no configure.
BOARD = "acme_arm1"


def _work_dir(out: Path, machine: str) -> Path:
    """The worker's work directory, as the boss's log of that machine names it
    (``setup_done: GIT_DIR``)."""
    log = (out / "demo" / f"worker-{machine}.log").read_text()
    found = re.findall(r"setup_done: (\S+)/\.git$", log, re.M)
    assert len(found) == 1, log
    return Path(found[0])


def test_a_worker_keeps_build_dirs_by_default_and_a_recheck_builds_on_them(
        sshd_harness: SshdHarness, tmp_path: Path) -> None:
    require_cross()
    machine = sshd_harness.reachable[0]
    tree = make_demo_tree(tmp_path / "src", boards=2, commits=1)
    settings = write_settings(tmp_path / "buildman.cfg", [machine], kept=True)
    out = tmp_path / "out"
    args = ["-G", str(settings), "--dist", "--no-local", "--use-machines", machine.name,
            "-b", "demo", "-r", "-o", str(out), BOARD]
    first = buildfleet(args, tree.path)
    assert first.rc == 0, first
    work = _work_dir(out, machine.name) / ".bm-work"
    state = keep.read_state(work / BOARD)
    assert state is not None and state["ok"] is True, state
    assert not [p for p in work.iterdir() if (p / "build").exists()]  # moved back
    # A new upstream commit, the branch rebased on it, and the re-check.
    rebase_on_a_new_upstream_commit(tree.path)
    second = buildfleet(args, tree.path)
    assert second.rc == 0, second
    assert _work_dir(out, machine.name) / ".bm-work" == work
    local = tmp_path / "local"
    off = tmp_path / "off.cfg"
    off.write_text("[global]\nkeep_build_dirs_mb = 0\n")
    clean = buildfleet(["-G", str(off), "-b", "demo", "-r", "-o", str(local), BOARD],
                       tree.path)
    assert clean.rc == 0, clean
    revs = branch_revs(tree.path, "demo")
    for rev in revs:
        a, b = (o / "demo" / rev.dir_name / BOARD for o in (out, local))
        assert host_of(a) == machine.name
        for name in SAME_BYTES:
            assert (a / name).is_file() == (b / name).is_file(), name
            if not (a / name).is_file():
                continue
            got, want = (a / name).read_bytes(), (b / name).read_bytes()
            if name == "out-cmd" and rev is revs[0]:
                # Built on the kept directory: no configure at the new upstream commit.
                assert want.splitlines()[0].endswith(f" {BOARD}_defconfig".encode()), want
                want = b"".join(want.splitlines(keepends=True)[1:])
            assert got == want, f"{rev.dir_name}/{name}"
    state = keep.read_state(work / BOARD)
    assert state is not None and state["ok"] is True, state
