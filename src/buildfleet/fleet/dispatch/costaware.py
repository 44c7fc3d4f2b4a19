"""The cost-aware dispatch policy: longest-expected-first, earliest-finish, tail hedging.

Why apart from ``policy``: the baseline there holds the run's jobs,
executors and machine health (the state every policy shares); this module
is only the placement and hedging that the cost model makes possible. Pure
state, like the baseline: the caller passes ``now`` (seconds, monotonic).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Iterator

from buildfleet.fleet.dispatch.costs import CostModel
from buildfleet.fleet.dispatch.eta import expected_remaining
from buildfleet.fleet.dispatch.policy import FifoPolicy, JobState, Prefer
from buildfleet.fleet.dispatch.refit import RunLearner
from buildfleet.model import Board, BuildJob

RISK_SPEED = 0.75
"""Machines slower than this share of the fastest take no unmeasured board."""

class CostAwarePolicy(FifoPolicy):
    """Longest-expected-first, earliest-finish placement, tail hedging.

    ``costs`` estimates each board's seconds on a speed-1.0 machine and each
    machine's speed (an ``add_executor(speed=...)`` overrides the latter).

    Placement: when ``name`` asks, the policy plans the pending pool in
    longest-first order onto every usable executor's slots (free slots now,
    busy ones when their current board is expected to end), each board to the
    executor that would finish it earliest. ``name`` gets the first board the
    plan gives it; a board another executor would finish more than
    ``margin`` × its duration earlier is left for that one. The executor the
    plan prefers for a board is never refused it, so every board is handed
    out as soon as its best executor asks: nothing starves, and a None only
    lasts until the next ``finished``/``failed``.

    Hedging (``hedging=True``): :meth:`hedge` gives an idle executor a second
    copy of the straggler expected to end last, when the pool is empty for
    it. The first copy to finish wins (``finished`` returns True) and
    :meth:`losers` names the executors whose copies must be cancelled; a
    later ``finished`` for the same board returns False.
    """

    def __init__(self, costs: CostModel | None = None, *, hedging: bool = True,
                 margin: float = 0.05) -> None:
        super().__init__()
        self.costs = costs if costs is not None else CostModel()
        self.hedging = hedging
        self.margin = margin
        self._cost: dict[str, float] = {}
        self._seq: dict[str, int] = {}
        self._hedged: set[str] = set()
        self._losers: dict[str, list[str]] = {}
        self._can: dict[tuple[str, str], bool] = {}
        self._scouts: set[str] = set()
        self._top_speed = 1.0
        self.learner = RunLearner(self.costs)

    # -- set-up ---------------------------------------------------------------
    def add_executor(self, name: str, slots: int, can_build: Callable[[Board], bool],
                     *, speed: float | None = None, now: float | None = None,
                     hedgeable: bool = True) -> None:
        """As FifoPolicy; ``speed`` None takes the machine's speed from the history."""
        if speed is None or speed <= 0:
            speed = self.costs.speed(name)
        # Learn the machines' speeds only when none is known at all.
        self.learner.learn_speeds = (speed == 1.0 and not self.costs.host_speed and all(
            s.speed == 1.0 for s in self.executors.values()))
        super().add_executor(name, slots, can_build, speed=speed, now=now,
                             hedgeable=hedgeable)
        for key in [k for k in self._can if k[0] == name]:
            del self._can[key]

    def add_jobs(self, jobs: list[BuildJob]) -> None:
        """Queue ``jobs`` longest-expected-first, scouts of uncharted groups before all.

        A scout is the longest-expected board of a SoC (else CPU, else arch)
        that no history covers: starting one of each early costs nothing
        (early starts never lengthen a run) and is how the run learns soonest
        which unknown SoCs are the heavy ones (see :mod:`buildfleet.fleet.dispatch.refit`).
        """
        for job in jobs:
            target = job.board.target
            self._cost[target] = self.costs.job_cost(job)
            self._seq[target] = len(self._seq)
            self.jobs[target] = JobState(job)
        self.pending = sorted(set(self.pending) | {j.board.target for j in jobs}, key=self._key)
        self._scouts |= self.learner.scouts(
            self.pending, {t: self.jobs[t].job.board for t in self.pending})
        if self._scouts:
            self.pending.sort(key=self._key)

    # -- queries --------------------------------------------------------------
    def buildable_by(self, name: str, target: str) -> bool:
        js = self.jobs[target]
        if js.infra_failures and name in js.tried_on:
            return False
        key = (name, target)
        can = self._can.get(key)
        if can is None:
            can = self._can[key] = self.executors[name].can_build(js.job.board)
        return can

    def was_hedged(self, target: str) -> bool:
        return target in self._hedged

    def expected_remaining(self, now: float) -> float | None:
        """Seconds until every board is expected done (``eta.expected_remaining``)."""
        return expected_remaining(self, now)

    def losers(self, target: str) -> list[str]:
        """Executors whose copies of ``target`` lost to the one that finished first.

        Call once, right after ``finished`` returned True, and cancel each
        (``cancel_board``). Their slots are already free in the policy; any
        result they still send gets False from ``finished`` and is discarded.
        """
        return self._losers.pop(target, [])

    # -- transitions ----------------------------------------------------------
    def take(self, name: str, now: float, prefer: Prefer | None = None) -> BuildJob | None:
        """As FifoPolicy; ``prefer`` chooses among the boards the plan gives ``name``."""
        self._tick(now)
        if not self.usable(name) or not self.pending:
            return None
        self._refit(now)
        if self._fastest(name):
            # The plan below would give it the first board it can build: its
            # first slot is free now, nobody else's is earlier, nobody is faster.
            mine: Iterator[str] = (t for t in self.pending if self.buildable_by(name, t))
        else:
            mine = self._planned_for(name, now)
        target = self._pick(name, mine, prefer)
        if target is None:
            return None
        self.pending.remove(target)
        return self._assign(name, target, now)

    def _planned_for(self, name: str, now: float) -> Iterator[str]:
        """The pending boards the plan gives ``name`` now, longest first.

        Each board another executor would finish earlier is booked on it and
        the plan goes on; a board given to ``name`` is not booked, so each one
        yielded is what ``name`` would take if it passed over the earlier ones.
        """
        plan = self._slot_plan(now, asker=name)
        speeds = {n: s.speed for n, s in self.executors.items()}
        self._top_speed = max(s.speed for n, s in self.executors.items()
                              if not self.quarantined(n))
        for target in self.pending:
            if self._too_risky(name, target):
                continue
            cost = self._cost[target]
            best: str | None = None
            best_end = 0.0
            mine: float | None = None
            for other, slots in plan.items():
                if not self.buildable_by(other, target):
                    continue
                end = slots[0] + cost / speeds[other]
                if other == name:
                    mine = end
                if best is None or end < best_end:
                    best, best_end = other, end
            if best is None:
                continue  # nobody usable can build it now
            if mine is not None and (best == name
                                     or mine - self.margin * cost / speeds[name] <= best_end):
                yield target
                continue
            # Book it on its best executor's earliest slot and plan on.
            heapq.heapreplace(plan[best], best_end)

    def hedge(self, name: str, now: float) -> BuildJob | None:
        """A second copy of the straggler expected to end last, or None.

        Only when hedging is on, ``name`` is usable, no pending board is
        buildable by it, and its copy is expected to end before the running
        one. Never a board already hedged or one ``name`` already owns.
        """
        self._tick(now)
        if not self.hedging or not self.usable(name) or not self.executors[name].hedgeable:
            return None
        if any(self.buildable_by(name, t) for t in self.pending):
            return None
        speed = self.executors[name].speed
        pick: str | None = None
        pick_end = 0.0
        for owner, state in self.executors.items():
            if owner == name or not state.hedgeable:
                continue
            for target in state.in_flight:
                js = self.jobs[target]
                if (target in self._hedged or name in js.owners or len(js.owners) != 1
                        or not self.buildable_by(name, target)):
                    continue
                owner_end = self._expected_end(owner, target, now)
                mine = now + self._cost[target] / speed
                if mine >= owner_end or (pick is not None and owner_end <= pick_end):
                    continue
                pick, pick_end = target, owner_end
        if pick is None:
            return None
        self._hedged.add(pick)
        js = self.jobs[pick]
        js.owners.add(name)
        self.executors[name].in_flight.add(pick)
        self._started[(name, pick)] = now
        self.stats.executors[name].hedges += 1
        return js.job

    def finished(self, name: str, target: str, now: float, failed: bool = False) -> bool:
        """As FifoPolicy; on True, :meth:`losers` names the copies to cancel.

        The winner's time also refits the cost model: boards still pending
        that have no history of their own are estimated anew from the boards
        of their SoC, CPU or arch that finished (see :meth:`_refit`).
        """
        js = self.jobs.get(target)
        others = sorted(o for o in js.owners if o != name) if js is not None else []
        start = self._started.get((name, target))
        state = self.executors.get(name)
        won = super().finished(name, target, now, failed=failed)
        if won and others:
            self._losers[target] = others
        if won and js is not None and start is not None and state is not None:
            self.learner.finished(name, js.job.board, len(js.job.commits), now - start,
                                  state.speed, failed=failed)
        return won

    def cost_of(self, target: str) -> float:
        """The expected seconds of ``target`` on a speed-1.0 executor."""
        return self._cost.get(target, 1.0)

    def slot_plan(self, now: float) -> dict[str, list[float]]:
        """Per usable executor, a heap of the times its slots become free."""
        return self._slot_plan(now, asker="")

    # -- internals ------------------------------------------------------------
    def _refit(self, now: float) -> None:
        """Estimate the pending boards (and, on a cold fleet, the machines) anew."""
        if not self.learner.due():
            return
        building = []
        for (name, target), start in self._started.items():
            state = self.executors.get(name)
            if state is not None and now > start:
                job = self.jobs[target].job
                building.append((job.board, (now - start) * state.speed
                                 / max(1, len(job.commits))))
        for name, speed in self.learner.refit(building).items():
            if name in self.executors:
                self.executors[name].speed = speed
        for target in self.pending:
            self._cost[target] = self.costs.job_cost(self.jobs[target].job)
        self.pending.sort(key=self._key)

    def _too_risky(self, name: str, target: str) -> bool:
        """True if ``name`` is slow and ``target``'s cost is a guess a faster one can take.

        A board of a SoC nobody has measured yet may be ten times what its
        prior says; on a machine at half speed that is twenty times, and it
        becomes the tail of the run. So a machine slower than ``RISK_SPEED``
        of the fastest usable one that can build it waits for the first
        measurement of the board's group (finished, or overrunning).
        """
        speed = self.executors[name].speed
        if speed >= RISK_SPEED * self._top_speed or self.costs.charted(self.jobs[target].job.board):
            return False
        return any(other != name and not self.quarantined(other)
                   and state.speed * RISK_SPEED > speed and self.buildable_by(other, target)
                   for other, state in self.executors.items())

    def _key(self, target: str) -> tuple[bool, float, int]:
        return (target not in self._scouts, -self._cost.get(target, 1.0),
                self._seq.get(target, 0))

    def _requeue(self, target: str) -> None:
        bisect.insort(self.pending, target, key=self._key)

    def _expected_end(self, name: str, target: str, now: float) -> float:
        """When ``name``'s copy of ``target`` should end; overdue copies get half their age."""
        start = self._started.get((name, target), now)
        end = start + self._cost[target] / self.executors[name].speed
        if end > now:
            return end
        return now + 0.5 * (now - start) + 1e-6

    def _fastest(self, name: str) -> bool:
        """True if no usable executor is faster than ``name`` (O(executors), no plan).

        Then :meth:`take` need not plan: every slot time in the plan is ``now``
        or later and the asker's first slot is ``now``, so the asker finishes
        any board no later than anyone else would and takes the first one it
        can build, exactly as the full plan decides.
        """
        if self.margin < 0:
            return False
        speed = self.executors[name].speed
        return all(s.speed <= speed for n, s in self.executors.items()
                   if not self.quarantined(n))

    def _slot_plan(self, now: float, asker: str) -> dict[str, list[float]]:
        """Per usable executor, a heap of the times its slots become free."""
        plan: dict[str, list[float]] = {}
        for name, state in self.executors.items():
            if self.quarantined(name):
                continue
            ends = sorted(self._expected_end(name, t, now) for t in state.in_flight)
            free = state.slots - len(ends)
            if name == asker:
                free = max(1, free)
            times = [now] * max(0, free) + ends
            plan[name] = times[:state.slots] if len(times) > state.slots else times
        return plan
