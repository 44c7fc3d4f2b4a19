"""Worktree affinity: a re-check after a rebase builds every board on its kept directory.

Why: a kept directory (build.keep) is only built on from the slot worktree
that made it; a job whose worktree another job holds builds in another one
and its directory is wiped (a full build). Seen on a real tree: in the
re-check the first two boards taken both wanted worktree 00; one got 01 and
was built from clean, and the board after it then found 01 held. With the
fix a local slot takes, among the first few boards the policy would give
it, one whose kept worktree is free.

Arranged so the order is not left to chance: run 1 builds P and Q with
``-T 2`` (one in each worktree), then A alone with ``-T 1`` (in 00, beside
one of P and Q: the "sharer"; the other is the "lone" board). Run 2's order
comes from a ``--costs`` file (run 1's results are removed, so their history
does not override it): sharer, A, lone. Without the fix the two slots take
sharer and A, which both want 00. The rebase adds sources to the lone board
only, so its build outlasts the sharer's, and A finds 00 free when it is taken.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bfrun import (
    bf_env,
    branch_revs,
    done_code,
    git,
    make_lines,
    require_cross,
    result_dir,
    run_bf,
    settings_file,
)
from buildfleet.build import keep
from buildfleet.demo import make_demo_tree
from buildfleet.demo_sources import bulk_c

P, Q, A = "sandbox", "initech_rv1", "acme_arm1"


def test_a_rebased_branch_builds_every_board_on_its_kept_directory(tmp_path: Path) -> None:
    require_cross()
    tree = make_demo_tree(tmp_path / "src", boards=8, commits=1)
    env = bf_env({"XDG_CACHE_HOME": str(tmp_path / "cache")})
    out = tmp_path / "out"
    base = ["-b", "demo", "-r", "-o", str(out), "-G", str(settings_file(tmp_path))]
    for boards, threads in ((f"{P},{Q}", "2"), (A, "1")):
        run = run_bf([*base, "--boards", boards, "-T", threads], tree.path, env)
        assert run.returncode == 0, run
    work = out / "demo" / ".bm-work"
    trees = {t: keep.worktree_of(work / t) for t in (P, Q, A)}
    assert trees[A] == work / "00" and {trees[P], trees[Q]} == {work / "00", work / "01"}
    sharer, lone = (P, Q) if trees[P] == trees[A] else (Q, P)
    for rev in branch_revs(tree.path, "demo"):
        for target in (P, Q, A):
            assert done_code(result_dir(out / "demo", rev, target)) == 0
    for path in (out / "demo").iterdir():
        if path.is_dir() and path.name != ".bm-work":
            shutil.rmtree(path)  # run 1's history: the order comes from --costs alone

    # Upstream moves on (the lone board gets sources of its own); demo is rebased.
    git(tree.path, "checkout", "-q", "main")
    with (tree.path / "drivers" / "serial.c").open("a") as f:
        f.write("/* upstream moved on */\n")
    board_dir = next(b.board_dir for b in tree.boards if b.target == lone)
    (tree.path / board_dir / "bulk").mkdir()
    for i in range(24):
        (tree.path / board_dir / "bulk" / f"bulk_{i:03d}.c").write_text(bulk_c(i))
    git(tree.path, "add", "-A")
    git(tree.path, "commit", "-qm", "serial: a comment; more sources for one board")
    git(tree.path, "checkout", "-q", "demo")
    git(tree.path, "rebase", "-q", "main")

    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({
        "format": "buildfleet-costs", "version": 1, "unit": "seconds",
        "boards": {sharer: {"local": 300.0}, A: {"local": 200.0}, lone: {"local": 100.0}}}))
    run = run_bf([*base, "--boards", f"{P},{Q},{A}", "-T", "2", "--costs", str(costs)],
                 tree.path, env)
    assert run.returncode == 0, run
    first = branch_revs(tree.path, "demo")[0]  # the new upstream commit
    configured = [t for t in (P, Q, A)
                  if any(c.endswith("_defconfig")
                         for c in make_lines(result_dir(out / "demo", first, t)))]
    assert configured == [], f"built from clean, not on the kept directory: {configured}"
    for target in (P, Q, A):
        assert keep.worktree_of(work / target) == trees[target], target
