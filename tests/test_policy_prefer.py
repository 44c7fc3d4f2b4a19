"""A preference in what an executor takes: the local slots' worktree affinity.

Why: a kept build directory (build.keep) is only built on from the slot
worktree that made it. The local slots pass the pool a predicate ("this
board's kept worktree is free now"); the policy, which knows nothing of
worktrees, takes the first preferred board among the first few it would give
the executor, keeping its own order among them, and what it would have
given anyway when none is preferred.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from buildfleet.build import keep
from buildfleet.build.workspace import Slot
from buildfleet.fleet.dispatch.costaware import CostAwarePolicy
from buildfleet.fleet.dispatch.costs import CostModel
from buildfleet.fleet.dispatch.policy import PREFER_WINDOW, FifoPolicy
from buildfleet.fleet.dispatch.pool import JobPool
from buildfleet.model import Board, BuildJob, Commit

COSTS = {"x": 50.0, "y": 40.0, "z": 30.0, "w": 20.0, "v": 10.0, "u": 5.0}


def job(target: str) -> BuildJob:
    return BuildJob(Board(target, "arm"), (Commit(0, "a" * 40, "s"),))


def anything(_board: Board) -> bool:
    return True


def policy(cls: type[FifoPolicy]) -> FifoPolicy:
    """Either policy, serving x, y, z, w, v, u in that order without a preference."""
    p = cls() if cls is FifoPolicy else CostAwarePolicy(CostModel(board_seconds=dict(COSTS)))
    p.add_jobs([job(t) for t in COSTS])
    return p


def taken(p: FifoPolicy, name: str, prefer: object = None) -> str | None:
    got = p.take(name, 0.0, prefer)  # type: ignore[arg-type]
    return got.board.target if got is not None else None


@pytest.mark.parametrize("cls", [FifoPolicy, CostAwarePolicy])
def test_the_preferred_boards_first_in_the_policys_order_then_the_rest(
        cls: type[FifoPolicy]) -> None:
    p = policy(cls)
    p.add_executor("local", 2, anything)
    preferred = {"w", "z"}
    order = [taken(p, "local", lambda t: t in preferred) for _ in COSTS]
    # z before w as the policy orders them; none preferred left: its own order.
    assert order == ["z", "w", "x", "y", "v", "u"]


@pytest.mark.parametrize("cls", [FifoPolicy, CostAwarePolicy])
def test_without_a_preferred_board_the_policys_choice(cls: type[FifoPolicy]) -> None:
    p = policy(cls)
    p.add_executor("local", 2, anything)
    assert taken(p, "local", lambda t: False) == "x"
    assert taken(p, "local") == "y"


@pytest.mark.parametrize("cls", [FifoPolicy, CostAwarePolicy])
def test_the_preference_looks_only_at_the_first_few_boards(cls: type[FifoPolicy]) -> None:
    p = policy(cls)
    p.add_executor("local", 1, anything)
    asked: list[str] = []

    def prefer(target: str) -> bool:
        asked.append(target)
        return target == "v"  # the fifth: beyond a one-slot executor's window

    assert PREFER_WINDOW == 4
    assert taken(p, "local", prefer) == "x"
    assert asked == ["x", "y", "z", "w"]


def test_cost_aware_prefers_among_the_boards_its_plan_gives_the_asker() -> None:
    """Not the fastest executor: the plan books x on the faster one, gives the asker
    y, z, w …; the preference picks among those, never x."""
    p = policy(CostAwarePolicy)
    p.add_executor("fast", 1, anything, speed=2.0)
    p.add_executor("local", 2, anything, speed=1.0)
    assert taken(p, "local", lambda t: t in {"x", "w"}) == "w"
    assert taken(p, "local", lambda t: False) == "y"


def test_the_pool_passes_the_preference_and_books_the_job_under_its_lock() -> None:
    p = policy(FifoPolicy)
    pool = JobPool(p, [])
    pool.register("local", 2, anything)
    booked: list[str] = []
    got = pool.take("local", prefer=lambda t: t == "z", taken=booked.append)
    assert got is not None and got.board.target == "z" and booked == ["z"]


def _kept(root: Path, target: str, tree: Path) -> None:
    (root / target).mkdir(parents=True)
    (root / target / keep.KEEP_STATE).write_text(json.dumps(
        {"commit": "0" * 40, "fingerprint": "f", "ok": True, "bytes": 1,
         "worktree": str(tree)}))


def test_worktrees_prefer_a_free_kept_worktree_and_hold_it_once_claimed(
        tmp_path: Path) -> None:
    root = tmp_path / ".bm-work"
    slots = [Slot(i, root / f"0{i}", root / f"0{i}", checkout=True) for i in range(2)]
    _kept(root, "a", slots[0].source_dir)
    _kept(root, "b", slots[0].source_dir)
    _kept(root, "c", slots[1].source_dir)
    trees = keep.Worktrees()
    prefers = trees.prefers(root)
    assert [prefers(t) for t in "abcn"] == [True, True, True, False]  # n: nothing kept
    trees.claim(slots[1], root, "a")  # the pool gave a's job to slot 1
    assert [prefers(t) for t in "abc"] == [False, False, True]
    # A job that starts meanwhile in slot 0 does not get the claimed worktree,
    # even before slot 1 ever took one ...
    other = trees.take(slots[0], None, "n")
    assert other.source_dir == slots[1].source_dir
    trees.give_back(other)
    # ... a's job does, whichever slot runs it.
    mine = trees.take(slots[1], slots[0].source_dir, "a")
    assert mine.source_dir == slots[0].source_dir
    assert [prefers(t) for t in "abc"] == [False, False, True]
    trees.give_back(mine)
    assert [prefers(t) for t in "abc"] == [True, True, True]
    trees.claim(slots[0], root, "c")
    trees.unclaim("c")  # its job ended before it took a worktree
    assert prefers("c")
