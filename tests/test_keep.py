"""Kept build directories (build.keep): a re-check after a rebase builds incrementally.

Why: the first commit of a run used to start every board from a clean
directory, so a rebased branch cost a full build of every board again. With
``[global] keep_build_dirs_mb`` each board's O= is kept; the test rebases the
demo branch onto a new upstream commit, builds it again, checks that no board
was configured at the new upstream commit (it was built on the kept
directory), and compares every result of that run, file for file, with a
clean build made at the same output path (``-r``: no build date).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from bfrun import bf_env, branch_revs, git, make_lines, require_cross, result_dir, run_bf
from buildfleet.build import keep
from buildfleet.demo import make_demo_tree

BOARDS = ["sandbox", "acme_arm1", "initech_rv2"]


def _files(build: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in build.iterdir()
            if p.is_file() and p.name != "duration"}


def test_rebase_with_kept_dirs_equals_clean_build(tmp_path: Path) -> None:
    require_cross()
    tree = make_demo_tree(tmp_path / "src", boards=8, commits=4)
    settings = tmp_path / "buildman.ini"
    settings.write_text("[global]\nkeep_build_dirs_mb = 200\n")
    out = tmp_path / "out"
    args = ["-b", "demo", "--boards", ",".join(BOARDS), "-r", "-o", str(out), "-G",
            str(settings)]
    first = run_bf(args, tree.path, bf_env())
    assert first.returncode == 100, first  # the demo breaks initech_rv2 once
    # A new upstream commit that every board compiles, and the branch rebased on it.
    git(tree.path, "checkout", "-q", "main")
    with (tree.path / "drivers" / "serial.c").open("a") as f:
        f.write("/* upstream moved on */\n")
    git(tree.path, "commit", "-qam", "serial: a comment")
    git(tree.path, "checkout", "-q", "demo")
    git(tree.path, "rebase", "-q", "main")
    second = run_bf(args, tree.path, bf_env())
    assert second.returncode == 100, second
    revs = branch_revs(tree.path, "demo")
    resumed = 0
    for target in BOARDS:
        # Built on the kept directory (if its slot's worktree is the one it was
        # built from): no configure at the new upstream commit.
        cmds = make_lines(result_dir(out / "demo", revs[0], target))
        resumed += not any(c.endswith("_defconfig") for c in cmds)
        assert (out / "demo" / ".bm-work" / target / keep.KEEP_STATE).is_file()
    assert resumed >= 1, "no board was built on its kept directory"
    kept = tmp_path / "kept"
    shutil.move(out, kept)
    clean = run_bf(args, tree.path, bf_env())
    assert clean.returncode == 100, clean
    for rev in revs:
        for target in BOARDS:
            a = _files(result_dir(kept / "demo", rev, target))
            b = _files(result_dir(out / "demo", rev, target))
            # Only the configure a kept directory did not need is missing.
            for x in (a, b):
                x["out-cmd"] = b"".join(ln for ln in x["out-cmd"].splitlines(keepends=True)
                                        if not ln.rstrip().endswith(b"_defconfig"))
            assert sorted(a) == sorted(b), (rev, target)
            differ = sorted(n for n in a if a[n] != b[n])
            if differ == ["err"]:
                # make names the failed recipe's line one line early when it
                # reaps a failure while starting other jobs: compiler lines only.
                a["err"], b["err"] = (b"\n".join(sorted(
                    ln for ln in x["err"].splitlines() if not ln.startswith(b"make")))
                    for x in (a, b))
                differ = [n for n in a if a[n] != b[n]]
            assert not differ, f"{rev.dir_name}/{target}: {differ} differ from a clean build"


def _fake_kept(root: Path, target: str, size: int, age: float) -> None:
    d = root / target
    d.mkdir(parents=True)
    state = d / keep.KEEP_STATE
    state.write_text(json.dumps({"commit": "0" * 40, "fingerprint": "x", "ok": True,
                                 "bytes": size}))
    when = time.time() - age
    os.utime(state, (when, when))


def test_eviction_least_recently_built_first_and_never_a_locked_one(tmp_path: Path) -> None:
    for target, age in (("old", 300), ("older", 400), ("new", 10), ("busy", 500)):
        _fake_kept(tmp_path, target, 600 * 1024, age)
    held = keep.acquire(tmp_path, "busy")  # as another run building it would
    assert held is not None
    try:
        assert keep.acquire(tmp_path, "busy") is None
        removed = keep.evict(tmp_path, 1, keep=tmp_path / "new")
    finally:
        held.release()
    # 2.4 MB over a 1 MB budget: the oldest unlocked go first, until it fits.
    assert removed == ["older", "old"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["busy", "new"]
    assert keep.evict(tmp_path, 1) == ["busy"]  # unlocked now: 1.2 MB -> 0.6 MB
