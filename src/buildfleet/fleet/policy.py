"""Which board an executor builds next: the dispatch policy as pure state.

The policy has no threads, no I/O and no clock of its own: the caller passes
``now``. That lets the real boss (through ``pool.JobPool``) and the simulated
clock of ``bench/dispatch_sim.py`` drive the very same code.

This module holds the interface and the plain demand-driven policy (list
order, first come first served, as buildman's boss). Smarter policies keep the
same methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from buildfleet.model import Board, BuildJob


@dataclass
class ExecutorState:
    """What the policy knows of one executor (local slots or a worker)."""

    name: str
    slots: int
    can_build: Callable[[Board], bool]
    in_flight: set[str] = field(default_factory=set)
    failures: int = 0
    quarantined: bool = False


@dataclass
class JobState:
    job: BuildJob
    owners: set[str] = field(default_factory=set)
    tried_on: list[str] = field(default_factory=list)
    infra_failures: int = 0
    started_at: float | None = None


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

    # -- set-up ---------------------------------------------------------------
    def add_executor(self, name: str, slots: int, can_build: Callable[[Board], bool]) -> None:
        self.executors[name] = ExecutorState(name, max(1, slots), can_build)

    def remove_executor(self, name: str) -> list[BuildJob]:
        """Forget an executor; its in-flight jobs go back to the pool."""
        state = self.executors.pop(name, None)
        if state is None:
            return []
        back = []
        for target in sorted(state.in_flight):
            back.append(self.jobs[target].job)
            self._release(name, target, requeue=True)
        return back

    def add_jobs(self, jobs: list[BuildJob]) -> None:
        for job in jobs:
            self.jobs[job.board.target] = JobState(job)
            self.pending.append(job.board.target)

    # -- queries --------------------------------------------------------------
    def usable(self, name: str) -> bool:
        state = self.executors.get(name)
        return state is not None and not state.quarantined

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

    def all_done(self) -> bool:
        return all(t in self.finished_targets or t in self.abandoned for t in self.jobs)

    # -- transitions ----------------------------------------------------------
    def take(self, name: str, now: float) -> BuildJob | None:
        """Give ``name`` its next job, or None if nothing fits it right now."""
        if not self.usable(name):
            return None
        state = self.executors[name]
        for i, target in enumerate(self.pending):
            if self.buildable_by(name, target):
                del self.pending[i]
                js = self.jobs[target]
                js.owners.add(name)
                js.tried_on.append(name)
                js.started_at = now
                state.in_flight.add(target)
                return js.job
        return None

    def finished(self, name: str, target: str, now: float) -> bool:
        """``name`` delivered every result of ``target``. False if it no longer owned it."""
        js = self.jobs.get(target)
        if js is None or name not in js.owners or target in self.finished_targets:
            return False
        self.finished_targets.add(target)
        for owner in list(js.owners):
            self._release(owner, target, requeue=False)
        return True

    def failed(self, name: str, target: str, reason: str) -> None:
        """An infrastructure failure on ``name``: the job goes back, or is abandoned."""
        js = self.jobs.get(target)
        if js is None or name not in js.owners:
            return
        js.infra_failures += 1
        self._release(name, target, requeue=True)
        if js.infra_failures > self.max_infra_retries and not js.owners:
            if target in self.pending:
                self.pending.remove(target)
            self.abandoned[target] = reason

    def executor_failed(self, name: str) -> None:
        state = self.executors.get(name)
        if state is None:
            return
        state.failures += 1
        if state.failures >= self.quarantine_after:
            state.quarantined = True

    def _release(self, name: str, target: str, requeue: bool) -> None:
        js = self.jobs[target]
        js.owners.discard(name)
        state = self.executors.get(name)
        if state is not None:
            state.in_flight.discard(target)
        if (requeue and not js.owners and target not in self.finished_targets
                and target not in self.pending):
            self.pending.insert(0, target)
