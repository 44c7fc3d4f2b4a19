"""A simulated fleet that drives a real dispatch policy under a fake clock.

Why: the policy decides the tail of a world build, and tails are measured in
hours on real machines. Driving the very same policy object with an
event-driven clock (a heap of build-end events; no threads, no sleeping)
lets the benchmark and the tests compare policies on 1,500 boards in
seconds, and check that no board is lost or built to completion twice.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from buildfleet.fleet.dispatch.costaware import CostAwarePolicy
from buildfleet.fleet.dispatch.policy import FifoPolicy
from buildfleet.fleet.dispatch.stats import DispatchStats
from buildfleet.model import Board, BuildJob


@dataclass(frozen=True)
class SimMachine:
    """An executor: ``slots`` boards at once, ``speed`` (1.0 = fastest), arch set."""

    name: str
    slots: int
    speed: float = 1.0
    archs: frozenset[str] | None = None
    """Archs it has a toolchain for; None = all."""

    def can_build(self, board: Board) -> bool:
        return self.archs is None or board.arch in self.archs


@dataclass
class SimResult:
    makespan: float
    lower_bound: float
    winners: dict[str, str] = field(default_factory=dict)
    """Target → machine whose copy counted."""
    finished_calls: dict[str, int] = field(default_factory=dict)
    """Target → how many finished() calls returned True (must be 1)."""
    abandoned: set[str] = field(default_factory=set)
    hedges: int = 0
    discarded: int = 0
    """Copies that finished but whose finished() returned False."""
    stats: DispatchStats = field(default_factory=DispatchStats)

    @property
    def ratio(self) -> float:
        return self.makespan / self.lower_bound if self.lower_bound > 0 else float("inf")


def lower_bound(work: Mapping[str, float], machines: Sequence[SimMachine]) -> float:
    """``max(total work / speed-weighted slots, longest board / fastest speed)``."""
    if not work:
        return 0.0
    capacity = sum(m.slots * m.speed for m in machines)
    fastest = max(m.speed for m in machines)
    return max(sum(work.values()) / capacity, max(work.values()) / fastest)


def simulate(policy: FifoPolicy, machines: Sequence[SimMachine], jobs: list[BuildJob],
             work: Mapping[str, float], *, tell_speeds: bool = False,
             hedge: bool = True, cancel_losers: bool = True,
             fail_rate: float = 0.0, seed: int = 0) -> SimResult:
    """Run ``jobs`` on ``machines`` under ``policy`` and return what happened.

    ``work[target]`` is a board's true seconds on a speed-1.0 machine; a copy
    on machine m takes ``work / m.speed``. ``tell_speeds`` passes the true
    speeds to ``add_executor`` (else the policy relies on its cost model).
    ``fail_rate`` makes that share of copies end in an infrastructure
    failure half-way (seeded), to exercise requeueing.
    """
    rng = random.Random(seed)
    by_name = {m.name: m for m in machines}
    for m in machines:
        policy.add_executor(m.name, m.slots, m.can_build,
                            speed=m.speed if tell_speeds else None, now=0.0)
    policy.add_jobs(jobs)
    free = {m.name: m.slots for m in machines}
    events: list[tuple[float, int, str, str, bool]] = []
    cancelled: set[tuple[str, str, int]] = set()
    copy_id: dict[tuple[str, str], int] = {}
    seq = 0
    result = SimResult(0.0, lower_bound(work, machines))
    can_hedge = hedge and isinstance(policy, CostAwarePolicy)

    def start(name: str, job: BuildJob, now: float) -> None:
        nonlocal seq
        target = job.board.target
        fails = fail_rate > 0 and rng.random() < fail_rate
        length = work[target] / by_name[name].speed * (0.5 if fails else 1.0)
        seq += 1
        copy_id[(name, target)] = seq
        free[name] -= 1
        heapq.heappush(events, (now + length, seq, name, target, fails))

    def dispatch(now: float) -> None:
        progress = True
        while progress:
            progress = False
            for m in machines:
                if free[m.name] <= 0 or not policy.usable(m.name):
                    continue
                job = policy.take(m.name, now)
                if job is None and can_hedge:
                    assert isinstance(policy, CostAwarePolicy)
                    job = policy.hedge(m.name, now)
                    if job is not None:
                        result.hedges += 1
                if job is not None:
                    start(m.name, job, now)
                    progress = True

    now = 0.0
    dispatch(now)
    while events:
        now, ident, name, target, fails = heapq.heappop(events)
        if (name, target, ident) in cancelled:
            continue  # its slot was freed when it was cancelled
        free[name] += 1
        if fails:
            policy.failed(name, target, "simulated failure", now=now)
        elif policy.finished(name, target, now):
            result.finished_calls[target] = result.finished_calls.get(target, 0) + 1
            result.winners[target] = name
            result.makespan = max(result.makespan, now)
            if isinstance(policy, CostAwarePolicy):
                for loser in policy.losers(target):
                    if cancel_losers:
                        cancelled.add((loser, target, copy_id[(loser, target)]))
                        free[loser] += 1
        else:
            result.discarded += 1
        dispatch(now)
    result.abandoned = set(policy.abandoned)
    result.stats = policy.stats
    return result
