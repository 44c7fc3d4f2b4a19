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
sharer and A, which both want 00. With it, the slot not given the sharer
takes lone, and A gets a slot only when another board is finished. Lone's
compiles wait on a FIFO (``-pipe -include`` in KCFLAGS, both runs, from the
environment: the kept directories stay valid; ``--no-ccache`` so gcc opens it;
``--no-jobserver`` so held compiles hold no other make's job tokens) until
A's result for run 2's first commit exists, so the slot that frees first is
always the sharer's (00), whatever the machine's speed: no race of build
lengths decides whether A finds 00 free.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

from bfrun import (
    bf_env,
    branch_revs,
    done_code,
    make_lines,
    rebase_on_a_new_upstream_commit,
    require_cross,
    result_dir,
    run_bf,
    settings_file,
)
from buildfleet.build import keep
from buildfleet.demo import make_demo_tree

P, Q, A = "sandbox", "initech_rv1", "acme_arm1"
GATE_TIMEOUT = 90.0  # for A's first result while lone is held (under bfrun.RUN_TIMEOUT)


def _release(fifo: Path) -> None:
    """Let every compile held on ``fifo`` go on, and later ones not wait: each reads
    an empty header (as an ordinary empty file at the same path gives them)."""
    if not fifo.is_fifo():
        return
    fd = os.open(fifo, os.O_RDWR)  # never blocks; every open() waiting on it returns
    try:
        fifo.unlink()
        fifo.write_text("")
    finally:
        os.close(fd)  # no writer left: what was held reads EOF


def _gate(fifo: Path, ready: Path, stop: threading.Event, opened: list[bool]) -> None:
    """Release ``fifo`` once ``ready`` exists; also (reporting False) when the run
    ends or the deadline passes, so nothing is left held."""
    deadline = time.monotonic() + GATE_TIMEOUT
    while not ready.exists() and not stop.is_set() and time.monotonic() < deadline:
        time.sleep(0.05)
    opened.append(ready.exists())
    _release(fifo)


def test_a_rebased_branch_builds_every_board_on_its_kept_directory(tmp_path: Path) -> None:
    require_cross()
    tree = make_demo_tree(tmp_path / "src", boards=8, commits=1)
    env = bf_env({"XDG_CACHE_HOME": str(tmp_path / "cache")})
    out = tmp_path / "out"
    # Every compile includes hold/<board dir>/hold.h: empty in run 1, lone's a FIFO
    # in run 2. Through KCFLAGS in the environment, which is not among what a kept
    # directory was built with ([make-flags] are, for the boards a run selects).
    hold = tmp_path / "hold"
    dirs = {b.target: b.board_dir for b in tree.boards}
    for target in (P, Q, A):
        (hold / dirs[target]).mkdir(parents=True)
        (hold / dirs[target] / "hold.h").write_text("")
    env["KCFLAGS"] = f"-pipe -include {hold}/$(BOARDDIR)/hold.h"
    settings = settings_file(tmp_path)
    # --no-ccache: the FIFO holds cc1 only when gcc runs the compile itself.
    # --no-jobserver: held compiles would keep the machine's shared job tokens, and
    # the sharer's make could not run; each make gets its own -j instead.
    base = ["-b", "demo", "-r", "-o", str(out), "-G", str(settings), "--no-ccache",
            "--no-jobserver"]
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

    # Upstream moves on (every board compiles serial.c); demo is rebased.
    rebase_on_a_new_upstream_commit(tree.path)
    first = branch_revs(tree.path, "demo")[0]  # the new upstream commit

    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({
        "format": "buildfleet-costs", "version": 1, "unit": "seconds",
        "boards": {sharer: {"local": 300.0}, A: {"local": 200.0}, lone: {"local": 100.0}}}))
    # Lone's compiles wait until A's result for the first commit exists: the slot
    # that frees for A is the sharer's.
    fifo = hold / dirs[lone] / "hold.h"
    fifo.unlink()
    os.mkfifo(fifo)
    stop, opened = threading.Event(), list[bool]()
    gate = threading.Thread(target=_gate, daemon=True,
                            args=(fifo, result_dir(out / "demo", first, A) / "done",
                                  stop, opened))
    gate.start()
    try:
        run = run_bf([*base, "--boards", f"{P},{Q},{A}", "-T", "2", "--costs", str(costs)],
                     tree.path, env)
    finally:
        stop.set()
        gate.join()
        _release(fifo)
    assert run.returncode == 0, run
    assert opened == [True], f"{lone} was let go before {A}'s first result: {run}"
    configured = [t for t in (P, Q, A)
                  if any(c.endswith("_defconfig")
                         for c in make_lines(result_dir(out / "demo", first, t)))]
    assert configured == [], f"built from clean, not on the kept directory: {configured}"
    for target in (P, Q, A):
        assert keep.worktree_of(work / target) == trees[target], target
