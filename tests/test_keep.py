"""Kept build directories (build.keep): a re-check after a rebase builds incrementally.

Why: the first commit of a run used to start every board from a clean
directory, so a rebased branch cost a full build of every board again. With
``[global] keep_build_dirs_mb`` (on by default) each board's O= is kept; the
test rebases the demo branch onto a new upstream commit, builds it again,
checks that no board was configured at the new upstream commit (it was built
on the kept directory), and compares every result of that run, file for file,
with a clean build (kept directories off) made at the same output path
(``-r``: no build date).

While a board builds, its kept directory is the slot worktree's ``build``
(a clean build's ``O=build``): kbuild spells source paths ``../common/x.c``
only when O= is a direct child of the source tree, so a kept directory used
in place beside the worktrees (``O=../<target>``) gave absolute paths in
``err`` and another ``out-cmd``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from bfrun import (
    bf_env,
    branch_revs,
    done_code,
    git,
    make_lines,
    rebase_on_a_new_upstream_commit,
    require_cross,
    result_dir,
    run_bf,
    settings_file,
)
from buildfleet.build import keep
from buildfleet.build.workspace import BOARD_MARKER, UNFINISHED_MARKER
from buildfleet.demo import make_demo_tree
from buildfleet.model import BuildFlags
from buildfleet.settings import DEFAULT_FILE_TEXT, parse_settings

BOARDS = ["sandbox", "acme_arm1", "initech_rv2"]
WARNS = "acme_arm1"  # warns from the demo's warning commit on


def _files(build: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in build.iterdir()
            if p.is_file() and p.name != "duration"}


def _worktree_builds(out: Path) -> list[Path]:
    """``build`` directories in slot worktrees (a job's O=, left only by a killed run
    when directories are kept)."""
    return sorted(p / "build" for p in (out / ".bm-work").iterdir()
                  if (p / ".git").is_file() and (p / "build").exists())


def test_rebase_with_kept_dirs_equals_clean_build(tmp_path: Path) -> None:
    require_cross()
    tree = make_demo_tree(tmp_path / "src", boards=8, commits=4)
    settings = tmp_path / "buildman.ini"
    settings.write_text("[global]\nkeep_build_dirs_mb = 200\n")
    out = tmp_path / "out"
    args = ["-b", "demo", "--boards", ",".join(BOARDS), "-r", "-o", str(out)]
    first = run_bf([*args, "-G", str(settings)], tree.path, bf_env())
    assert first.returncode == 100, first  # the demo breaks initech_rv2 once
    rebase_on_a_new_upstream_commit(tree.path)
    second = run_bf([*args, "-G", str(settings)], tree.path, bf_env())
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
    assert not _worktree_builds(out / "demo")  # every kept directory moved back
    kept = tmp_path / "kept"
    shutil.move(out, kept)
    off = settings_file(tmp_path, "[global]\nkeep_build_dirs_mb = 0\n")
    clean = run_bf([*args, "-G", str(off)], tree.path, bf_env())
    assert clean.returncode == 100, clean
    warned = 0
    for rev in revs:
        for target in BOARDS:
            a = _files(result_dir(kept / "demo", rev, target))
            b = _files(result_dir(out / "demo", rev, target))
            if target == WARNS and a.get("err"):
                # kbuild's own spelling, as a clean build has it: no absolute path.
                warned += 1
                assert a["err"] == b["err"], rev.dir_name
                assert str(tmp_path).encode() not in a["err"] and b".bm-work" not in a["err"]
                assert not any(ln.startswith(b"/") for ln in a["err"].splitlines())
            # Only the configure a kept directory did not need is missing.
            for x in (a, b):
                x["out-cmd"] = b"".join(ln for ln in x["out-cmd"].splitlines(keepends=True)
                                        if not ln.rstrip().endswith(b"_defconfig"))
            assert sorted(a) == sorted(b), (rev, target)
            differ = sorted(n for n in a if a[n] != b[n])
            if differ == ["err"] and target != WARNS:
                # make names the failed recipe's line one line early when it
                # reaps a failure while starting other jobs: compiler lines only.
                a["err"], b["err"] = (b"\n".join(sorted(
                    ln for ln in x["err"].splitlines() if not ln.startswith(b"make")))
                    for x in (a, b))
                differ = [n for n in a if a[n] != b[n]]
            assert not differ, f"{rev.dir_name}/{target}: {differ} differ from a clean build"
    assert warned >= 2, "the demo's warning was not seen"


def test_a_build_dir_left_in_a_worktree_by_a_killed_run_is_wiped(tmp_path: Path) -> None:
    """A run killed mid-job leaves the board's directory as the worktree's ``build``
    (and none beside the worktrees). It is never built on: here it claims to be a
    good build of the board, but a killed compile left an empty object newer than
    its source, which an incremental make links silently (a smaller image)."""
    require_cross()
    tree = make_demo_tree(tmp_path / "src", boards=2, commits=1)
    settings = settings_file(tmp_path)
    out = tmp_path / "out"
    args = ["-b", "demo", "--boards", "sandbox", "-T1", "-r", "-o", str(out), "-G",
            str(settings)]
    first = run_bf(args, tree.path, bf_env())
    assert first.returncode == 0, first
    work = out / "demo" / ".bm-work"
    left = work / "00" / "build"
    os.rename(work / "sandbox", left)  # as a run killed between its makes leaves it
    assert (left / BOARD_MARKER).read_text() == "sandbox\n"
    assert not (left / UNFINISHED_MARKER).exists() and (left / keep.KEEP_STATE).is_file()
    (left / "common" / "main.o").write_bytes(b"")
    # A new commit on the branch that leaves common/main.c alone.
    with (tree.path / "drivers" / "serial.c").open("a") as f:
        f.write("/* a new commit */\n")
    git(tree.path, "commit", "-qam", "serial: another comment")
    second = run_bf(args, tree.path, bf_env())
    assert second.returncode == 0, second
    assert not left.exists() and (work / "sandbox" / keep.KEEP_STATE).is_file()
    new = branch_revs(tree.path, "demo")[-1]
    got = _files(result_dir(out / "demo", new, "sandbox"))
    shutil.move(out, tmp_path / "got")
    off = tmp_path / "off.ini"
    off.write_text("[global]\nkeep_build_dirs_mb = 0\n")
    clean = run_bf([*args[:-1], str(off)], tree.path, bf_env())
    assert clean.returncode == 0, clean
    want = _files(result_dir(out / "demo", new, "sandbox"))
    # Built from a wiped directory, so configured first; the clean run's build of
    # that commit followed its parent's in the same directory without one.
    assert got["out-cmd"].splitlines()[0].endswith(b" sandbox_defconfig")
    got["out-cmd"] = b"".join(got["out-cmd"].splitlines(keepends=True)[1:])
    assert sorted(got) == sorted(want)
    assert [n for n in want if got[n] != want[n]] == []


def test_kept_dirs_are_on_by_default_and_zero_turns_them_off(tmp_path: Path) -> None:
    require_cross()
    assert BuildFlags().keep_build_dirs_mb == keep.DEFAULT_KEEP_MB == 8192
    assert parse_settings("", tmp_path / "x").keep_build_dirs_mb == keep.DEFAULT_KEEP_MB
    assert "# keep_build_dirs_mb = 8192\n" in DEFAULT_FILE_TEXT
    tree = make_demo_tree(tmp_path / "src", boards=2, commits=1)
    for mb, text in ((None, ""), (0, "[global]\nkeep_build_dirs_mb = 0\n")):
        out = tmp_path / f"out-{mb}"
        run = run_bf(["-b", "demo", "--boards", "sandbox", "-T1", "-o", str(out), "-G",
                      str(settings_file(tmp_path, text))], tree.path, bf_env())
        assert run.returncode == 0, run
        work = out / "demo" / ".bm-work"
        for rev in branch_revs(tree.path, "demo"):
            path = result_dir(out / "demo", rev, "sandbox")
            assert done_code(path) == 0
            assert make_lines(path)[-1].startswith("make O=build ")  # a clean build's O=
        state = keep.read_state(work / "sandbox")
        if mb is None:  # on: the board's directory, with its state, beside the worktrees
            assert state is not None and state["ok"] is True, state
            assert not (work / "00" / "build").exists()
        else:  # off: nothing kept, the slot's own O= in its worktree
            assert state is None and not (work / "sandbox").exists()
            assert (work / "00" / "build" / BOARD_MARKER).read_text() == "sandbox\n"


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


def test_only_a_boards_own_make_flags_are_in_its_fingerprint() -> None:
    """``[make-flags]`` of another board in the run must not wipe this board's
    kept directory (building A alone, then A with P, whose make has flags)."""
    alone = BuildFlags().to_dict()
    with_other = BuildFlags(make_flags={"P": ["FOO=1"]}).to_dict()
    assert keep.fingerprint(alone, "tc", "A") == keep.fingerprint(with_other, "tc", "A")
    assert keep.fingerprint(alone, "tc", "P") != keep.fingerprint(with_other, "tc", "P")
