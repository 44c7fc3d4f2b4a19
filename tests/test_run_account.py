"""The closing figures of a run, built from a scripted sequence of events.

Why: every figure printed about a run (duration, results and boards per
machine, slots, busy and idle time, efficiency, tail, hedges, re-dispatches,
copies compared) must come from one account of it and agree with the others,
also when a worker is lost and restarted, a board is built again elsewhere
and the tail is hedged. The events go through the real pool and policy on a
scripted clock; the lines are rendered by the runner's own functions.
"""

from __future__ import annotations

import re

from buildfleet.fleet.dispatch.costaware import CostAwarePolicy
from buildfleet.fleet.dispatch.costs import CostModel
from buildfleet.fleet.dispatch.pool import JobPool
from buildfleet.model import Board, BuildJob, Commit
from buildfleet.results.progress import RunCounts, completed_line
from buildfleet.results.reproducibility import ReproCheck
from buildfleet.runner import machines_block

HASHES = b"0" * 64 + b"  u-boot\n"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Machine:
    """What only a remote executor knows for its closing line (bytes, lost workers)."""

    name = "Alpha"

    def closing_extra(self) -> str:
        return "sent 1.0KB, received 2.0KB, workers lost 1"

    def closing_line(self) -> str:
        raise AssertionError("Alpha joined the pool")


def test_closing_figures_of_a_scripted_run() -> None:
    clock = Clock()
    jobs = [BuildJob(Board(f"b{i}", "arm"), (Commit(0, f"{i:040x}"),)) for i in range(1, 7)]
    policy = CostAwarePolicy(CostModel())
    pool = JobPool(policy, jobs, clock=clock)
    counts = RunCounts(total=6)
    repro = ReproCheck()
    cancelled: list[str] = []
    policy.stats.begin(clock())

    def at(t: float) -> None:
        assert t >= clock.now
        clock.now = t

    def take(name: str) -> str | None:
        job = pool.try_take(name)
        return job.board.target if job else None

    def result(name: str, target: str) -> None:  # the sink writes it, then the board is done
        assert pool.owns(name, target)
        counts.add(0, False, name)
        assert pool.finished(name, target)

    pool.register("local", 2, lambda b: True, cancel=cancelled.append)
    assert (take("local"), take("local")) == ("b1", "b2")
    at(1)
    pool.register("Alpha", 1, lambda b: True)
    assert take("Alpha") == "b3"
    at(3)
    result("Alpha", "b3")
    assert take("Alpha") == "b4"
    at(4)
    result("local", "b1")
    assert take("local") == "b5"
    at(5)  # Alpha's worker is lost with b4 in flight: back to the pool
    pool.failed("Alpha", "b4", "lost with Alpha: EOF")
    pool.machine_failed("Alpha")
    assert pool.remove_executor("Alpha") == []
    at(6)
    result("local", "b2")
    assert take("local") == "b4"  # the re-dispatch
    at(7)  # a fresh worker on Alpha joins again
    pool.register("Alpha", 1, lambda b: True, cancel=cancelled.append)
    assert take("Alpha") == "b6"
    at(11)
    result("local", "b4")  # the pool is empty from here on
    at(30)
    result("local", "b5")
    assert take("local") == "b6"  # Alpha's b6 is long overdue: a hedged second copy
    at(32)
    result("local", "b6")  # the hedge wins; Alpha's copy is cancelled ...
    assert cancelled == ["b6"]
    at(33)  # ... and its late result is compared, never written
    assert not pool.owns("Alpha", "b6")
    repro.compare("b6", 0, HASHES, "local", HASHES, "Alpha", hedged=pool.was_hedged("b6"))
    at(34)
    pool.remove_executor("Alpha")
    pool.remove_executor("local")
    at(35)
    policy.stats.end(clock())

    stats = policy.stats
    lines = [completed_line(counts, counts.done - counts.previously, stats.wall),
             *machines_block(stats, counts, [Machine()]), stats.summary_line(),
             *repro.report_lines()]
    # By hand: copies local b1 0-4, b2 0-6, b4 6-11, b5 4-30, b6 30-32 (all won: 43 s);
    # Alpha b3 1-3 (won), b4 3-5 (lost with the worker), b6 7-32 (lost the hedge): 29 s,
    # 27 wasted. Offered: local 2 slots x 34 s = 68; Alpha 1 x (5-1) + 1 x (34-7) = 31.
    # Useful 45 of 99 slot-s; the pool last ran dry at 11 (b4 had come back at 5).
    assert lines == [
        "Completed: 6 total built, duration 0:00:35, rate 0.17",
        "Machines:",
        "  local: 5 boards, 5 results, 2 slots, busy 43.0 slot-s, idle 25.0 slot-s",
        "  Alpha: 1 boards, 1 results, 1 slots, busy 29.0 slot-s, idle 2.0 slot-s, "
        "sent 1.0KB, received 2.0KB, workers lost 1",
        "Dispatch: wall 35.0s, scheduling efficiency 45.5%, tail 24.0s, hedged 1, "
        "re-dispatched 1, wasted 27.0 slot-s",
        "Reproducibility: 1 results built twice compared (1 of hedged boards, 0 of boards "
        "built again), 0 mismatches",
    ]
    # The figures agree with each other: boards and results add up, nothing above 100 %.
    boards = [int(n) for n in re.findall(r"(\d+) boards", "\n".join(lines[2:4]))]
    results = [int(n) for n in re.findall(r"(\d+) results", "\n".join(lines[2:4]))]
    assert sum(boards) == len(jobs) == sum(results) == counts.done
    assert stats.efficiency <= 1.0
    assert stats.useful <= sum(e.busy for e in stats.executors.values()) <= stats.capacity
    assert repro.hedged <= stats.hedges
