"""Which board an executor builds next: the dispatch policy as pure state.

The policy has no threads, no I/O and no clock of its own: the caller passes
``now``. That lets the real boss (through ``pool.JobPool``) and the simulated
clock of ``bench/dispatch_sim.py`` drive the very same code.

Two policies share one interface:

- :class:`FifoPolicy`, plain demand-driven dispatch in selection order (what
  buildman's boss does), kept as the baseline;
- ``costaware.CostAwarePolicy``, which serves the pool longest-expected-first,
  places each board on the executor expected to finish it earliest, and
  hedges the tail by starting a second copy of a straggler on an idle
  executor.

How a driver uses either (the pool does exactly this):

1. ``add_executor`` per executor, ``add_jobs`` once;
2. whenever an executor has a free slot: ``take(name, now)``; when that gives
   None, ``hedge(name, now)`` (always None for the baseline). ``take`` may get
   a preference, a predicate on targets (see :meth:`FifoPolicy._pick`): the
   local slots prefer boards whose kept directory's worktree is free;
3. when an executor delivered every result of a board: ``finished(name,
   target, now)``; if it returned True, cancel the copies named by
   ``losers(target)``; if it returned False, discard that executor's results;
4. a None from ``take`` is not final while ``has_work_for`` is True: ask again
   after any ``finished``/``failed``/``remove_executor`` (the cost-aware policy
   may hold a big board back for a faster executor that frees up soon);
5. ``machine_failed(name)`` for each failure of a machine (a lost worker, a
   board it failed for an infrastructure reason): the policy is the one owner
   of machine health, keyed by name, so it outlives ``remove_executor`` and a
   restarted worker; a quarantined machine gets no more boards;
6. ``stats`` holds per-executor busy and idle time, the scheduling efficiency
   and the tail, for the post-run line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from buildfleet.fleet.dispatch.stats import DispatchStats, ExecutorStats
from buildfleet.model import Board, BuildJob

PREFER_WINDOW = 4
"""A preference looks at this many × the executor's slots of the boards it could take."""

Prefer = Callable[[str], bool]


@dataclass
class ExecutorState:
    """What the policy knows of one executor (local slots or a worker)."""

    name: str
    slots: int
    can_build: Callable[[Board], bool]
    in_flight: set[str] = field(default_factory=set)
    speed: float = 1.0
    hedgeable: bool = True
    """False for a worker that cannot cancel a board (no ``cancel_board``): it gets no
    second copies, and its boards get none either (its copy could not be stopped)."""


@dataclass
class JobState:
    job: BuildJob
    owners: set[str] = field(default_factory=set)
    tried_on: list[str] = field(default_factory=list)
    infra_failures: int = 0
    last_failure: str = ""
    """Why its last copy failed for an infrastructure reason ("" if none did)."""
    started_at: float | None = None
    back_in_pool: bool = False
    """It went back to the pool; its next assignment is a re-dispatch."""


# -- the baseline --------------------------------------------------------------------
class FifoPolicy:
    """Demand-driven dispatch in selection order.

    Holds every job of the run from ``add_jobs`` to ``finished`` (or to
    ``abandon`` once it has failed on too many machines).
    """

    max_infra_retries = 2
    quarantine_after = 2

    def __init__(self) -> None:
        self.executors: dict[str, ExecutorState] = {}
        self.pending: list[str] = []
        self.jobs: dict[str, JobState] = {}
        self.finished_targets: set[str] = set()
        self.abandoned: dict[str, str] = {}
        self.machine_failures: dict[str, int] = {}
        self.stats = DispatchStats()
        self._started: dict[tuple[str, str], float] = {}
        self._clock: float | None = None

    # -- set-up ---------------------------------------------------------------
    def add_executor(self, name: str, slots: int, can_build: Callable[[Board], bool],
                     *, speed: float | None = None, now: float | None = None,
                     hedgeable: bool = True) -> None:
        """Register an executor with ``slots`` boards in flight at most.

        ``speed`` is its relative speed (1.0 = the fastest known machine);
        the baseline only records it. ``now`` starts its idle-time account
        (default: the start of the run). ``hedgeable`` False: see ExecutorState.
        """
        self.executors[name] = ExecutorState(name, max(1, slots), can_build,
                                             speed=speed if speed and speed > 0 else 1.0,
                                             hedgeable=hedgeable)
        known = self.stats.executors.get(name)
        if known is None:
            self.stats.executors[name] = ExecutorStats(name, max(1, slots), added_at=now)
        else:  # a restarted worker: a new stay, the same account
            known.join(max(1, slots), now)

    def remove_executor(self, name: str, *, now: float | None = None) -> list[BuildJob]:
        """Forget an executor; its in-flight jobs go back to the pool.

        Returns the jobs that went back (a hedged job that another executor
        still builds does not go back and is not returned).
        """
        now = self._tick(now)
        state = self.executors.pop(name, None)
        if state is None:
            return []
        es = self.stats.executors.get(name)
        if es is not None:
            es.leave(now)
        back = []
        for target in sorted(state.in_flight):
            js = self.jobs[target]
            self._account(name, target, now, won=False)
            self._release(name, target, requeue=True)
            if not js.owners and target in self.pending:
                back.append(js.job)
        return back

    def add_jobs(self, jobs: list[BuildJob]) -> None:
        for job in jobs:
            self.jobs[job.board.target] = JobState(job)
            self.pending.append(job.board.target)

    # -- queries --------------------------------------------------------------
    def usable(self, name: str) -> bool:
        return name in self.executors and not self.quarantined(name)

    def quarantined(self, name: str) -> bool:
        """Has machine ``name`` failed ``quarantine_after`` times in this run?"""
        return self.machine_failures.get(name, 0) >= self.quarantine_after

    def buildable_by(self, name: str, target: str) -> bool:
        state = self.executors[name]
        js = self.jobs[target]
        if js.tried_on.count(name) and js.infra_failures:
            return False
        return state.can_build(js.job.board)

    def has_work_for(self, name: str) -> bool:
        """True if ``name`` may still get a job: one is pending or may come back."""
        if not self.usable(name):
            return False
        for target, js in self.jobs.items():
            if target in self.finished_targets or target in self.abandoned:
                continue
            if name in js.owners:
                continue
            if self.buildable_by(name, target):
                return True
        return False

    def unbuildable(self) -> list[BuildJob]:
        """Pending jobs that no usable executor can build."""
        out = []
        for target in self.pending:
            if not any(self.usable(n) and self.buildable_by(n, target) for n in self.executors):
                out.append(self.jobs[target].job)
        return out

    def was_hedged(self, target: str) -> bool:
        """True if a second copy of ``target`` was started (tail hedging)."""
        return False

    def all_done(self) -> bool:
        return all(t in self.finished_targets or t in self.abandoned for t in self.jobs)

    def busy_time(self, name: str) -> float:
        """Slot-seconds ``name`` has spent building so far (finished copies)."""
        return self.stats.busy_time(name)

    def idle_time(self, name: str) -> float:
        """Slot-seconds ``name`` offered but did not use, over the run so far."""
        return self.stats.idle_time(name)

    # -- transitions ----------------------------------------------------------
    def take(self, name: str, now: float, prefer: Prefer | None = None) -> BuildJob | None:
        """Give ``name`` its next job, or None if nothing fits it right now
        (``prefer``: see :meth:`_pick`)."""
        self._tick(now)
        if not self.usable(name):
            return None
        target = self._pick(name, (t for t in self.pending if self.buildable_by(name, t)),
                            prefer)
        if target is None:
            return None
        self.pending.remove(target)
        return self._assign(name, target, now)

    def finished(self, name: str, target: str, now: float, failed: bool = False) -> bool:
        """``name`` delivered every result of ``target`` (``failed``: a make failed).

        True if this is the result that counts (the first copy to finish).
        False if ``name`` no longer owned it (a lost hedge, or a job taken
        away from it): the caller discards those results.
        """
        self._tick(now)
        js = self.jobs.get(target)
        if js is None or name not in js.owners or target in self.finished_targets:
            return False
        self.finished_targets.add(target)
        for owner in list(js.owners):
            self._account(owner, target, now, won=owner == name)
            self._release(owner, target, requeue=False)
        if not self.pending and self.stats.first_idle_at is None:
            self.stats.first_idle_at = now
        return True

    def failed(self, name: str, target: str, reason: str, *, now: float | None = None) -> None:
        """An infrastructure failure on ``name``: the job goes back, or is abandoned."""
        now = self._tick(now)
        js = self.jobs.get(target)
        if js is None or name not in js.owners:
            return
        js.infra_failures += 1
        js.last_failure = reason
        self._account(name, target, now, won=False)
        self._release(name, target, requeue=True)
        if js.infra_failures > self.max_infra_retries and not js.owners:
            if target in self.pending:
                self.pending.remove(target)
            self.abandoned[target] = reason

    def machine_failed(self, name: str) -> bool:
        """Count one failure of machine ``name``; True if this one quarantines it.

        Kept by name whether or not ``name`` is registered now, so a worker
        started again on the machine inherits its record.
        """
        before = self.quarantined(name)
        self.machine_failures[name] = self.machine_failures.get(name, 0) + 1
        return self.quarantined(name) and not before

    def hedge(self, name: str, now: float) -> BuildJob | None:
        """A second copy of a running board for idle ``name``; the baseline never hedges."""
        return None

    def losers(self, target: str) -> list[str]:
        """Executors whose copies of ``target`` lost (see CostAwarePolicy); none here."""
        return []

    def expected_remaining(self, now: float) -> float | None:
        """Seconds until every board is expected done; the baseline has no costs: None."""
        return None

    # -- internals ------------------------------------------------------------
    def _pick(self, name: str, candidates: Iterable[str], prefer: Prefer | None) -> str | None:
        """The first of ``candidates`` (the boards the policy would give ``name``, best
        first) that ``prefer`` accepts, among the first ``PREFER_WINDOW`` × its slots;
        else the first candidate, as without a preference.

        Why bounded: the predicate may read a file per board (a kept directory's
        state), and a pending list of 1,500 boards is not scanned on every take.
        The policy knows nothing of what is preferred, only the predicate's answer.
        """
        window = PREFER_WINDOW * self.executors[name].slots
        first: str | None = None
        for seen, target in enumerate(candidates):
            if prefer is None or prefer(target):
                return target
            if first is None:
                first = target
            if seen + 1 >= window:
                break
        return first

    def _tick(self, now: float | None) -> float | None:
        """Remember the latest time seen (for calls that do not pass one)."""
        if now is None:
            return self._clock
        if self._clock is None or now > self._clock:
            self._clock = now
        return now

    def _assign(self, name: str, target: str, now: float) -> BuildJob:
        js = self.jobs[target]
        js.owners.add(name)
        js.tried_on.append(name)
        js.started_at = now
        if js.back_in_pool:
            js.back_in_pool = False
            self.stats.requeued += 1
        self.executors[name].in_flight.add(target)
        self._started[(name, target)] = now
        self.stats.copy_started(now)
        if not self.pending and self.stats.pool_empty_at is None:
            self.stats.pool_empty_at = now
        return js.job

    def _account(self, name: str, target: str, now: float | None, won: bool) -> None:
        """Book the slot-time of ``name``'s copy of ``target`` as it ends."""
        start = self._started.pop((name, target), None)
        es = self.stats.executors.get(name)
        if start is None or es is None or now is None:
            return
        spent = max(0.0, now - start)
        es.busy += spent
        if won:
            es.boards += 1
            self.stats.useful += spent
        else:
            es.wasted += spent
        self.stats.copy_ended(now)

    def _requeue(self, target: str) -> None:
        self.pending.insert(0, target)

    def _release(self, name: str, target: str, requeue: bool) -> None:
        js = self.jobs[target]
        js.owners.discard(name)
        state = self.executors.get(name)
        if state is not None:
            state.in_flight.discard(target)
        if (requeue and not js.owners and target not in self.finished_targets
                and target not in self.pending):
            self._requeue(target)
            js.back_in_pool = True
            self.stats.pool_empty_at = None
            self.stats.first_idle_at = None
