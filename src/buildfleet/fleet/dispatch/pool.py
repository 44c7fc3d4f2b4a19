"""The shared pool of board jobs that every executor pulls from.

A thread-safe shell around a pure dispatch policy: executors block in
``take`` until the policy hands them a job, or until nothing is left that
they could ever get (every job finished, or the rest only others can build).
A job an executor loses goes back into the same pool for anyone else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from buildfleet.fleet.dispatch.eta import expected_remaining
from buildfleet.fleet.dispatch.policy import CostAwarePolicy, FifoPolicy
from buildfleet.model import Board, BuildJob

CancelHook = Callable[[str], None]


class JobPool:
    def __init__(self, policy: FifoPolicy, jobs: list[BuildJob],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._cond = threading.Condition()
        self._closed = False
        self._cancel_hooks: dict[str, CancelHook] = {}
        policy.add_jobs(jobs)

    def register(self, name: str, slots: int, can_build: Callable[[Board], bool],
                 cancel: CancelHook | None = None, speed: float | None = None,
                 hedgeable: bool = True) -> None:
        """Add an executor; ``cancel(target)`` stops its copy of a board another won.

        ``hedgeable`` False: an executor that cannot cancel a board takes part
        in no second copies (see the policy's ``ExecutorState``)."""
        with self._cond:
            self.policy.add_executor(name, slots, can_build, speed=speed, now=self.clock(),
                                     hedgeable=hedgeable)
            if cancel is not None:
                self._cancel_hooks[name] = cancel
            self._cond.notify_all()

    def _next(self, name: str) -> BuildJob | None:
        now = self.clock()
        job = self.policy.take(name, now)
        if job is None and isinstance(self.policy, CostAwarePolicy):
            job = self.policy.hedge(name, now)
        return job

    def take(self, name: str, timeout: float | None = None) -> BuildJob | None:
        """The next job for ``name``; None when it will get no more (or on close)."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._cond:
            while not self._closed:
                job = self._next(name)
                if job is not None:
                    return job
                if not self.policy.has_work_for(name):
                    return None
                wait = 0.5 if deadline is None else min(0.5, deadline - self.clock())
                if wait <= 0:
                    return None
                self._cond.wait(wait)
            return None

    def try_take(self, name: str) -> BuildJob | None:
        with self._cond:
            if self._closed:
                return None
            return self._next(name)

    def finished(self, name: str, target: str) -> bool:
        """``name`` delivered all of ``target``; False if its copy no longer counts."""
        with self._cond:
            ok = self.policy.finished(name, target, self.clock())
            losers = self.policy.losers(target) if ok and isinstance(
                self.policy, CostAwarePolicy) else []
            hooks = [self._cancel_hooks.get(loser) for loser in losers]
            self._cond.notify_all()
        for hook in hooks:
            if hook is not None:
                hook(target)
        return ok

    def owns(self, name: str, target: str) -> bool:
        with self._cond:
            js = self.policy.jobs.get(target)
            return (js is not None and name in js.owners
                    and target not in self.policy.finished_targets)

    def failed(self, name: str, target: str, reason: str) -> None:
        with self._cond:
            self.policy.failed(name, target, reason, now=self.clock())
            self._cond.notify_all()

    def remove_executor(self, name: str, failed: bool = False) -> list[BuildJob]:
        """Drop an executor; its in-flight jobs return to the pool."""
        with self._cond:
            if failed:
                self.policy.executor_failed(name)
            back = self.policy.remove_executor(name, now=self.clock())
            self._cancel_hooks.pop(name, None)
            self._cond.notify_all()
            return back

    def was_hedged(self, target: str) -> bool:
        with self._cond:
            return self.policy.was_hedged(target)

    def has_work_for(self, name: str) -> bool:
        with self._cond:
            return self.policy.has_work_for(name)

    def unbuildable(self) -> list[BuildJob]:
        with self._cond:
            return self.policy.unbuildable()

    def abandoned(self) -> dict[str, str]:
        with self._cond:
            return dict(self.policy.abandoned)

    def all_done(self) -> bool:
        with self._cond:
            return self.policy.all_done()

    def view(self, now: float) -> tuple[dict[str, tuple[str, ...]], dict[str, int]]:
        """Boards in flight per executor (sorted) and its slots, for the live view."""
        with self._cond:
            executors = self.policy.executors
            return ({n: tuple(sorted(e.in_flight)) for n, e in executors.items()},
                    {n: e.slots for n, e in executors.items()})

    def eta(self, now: float) -> float | None:
        """Seconds until every board is expected done (the cost model's plan), or None."""
        with self._cond:
            if isinstance(self.policy, CostAwarePolicy):
                return expected_remaining(self.policy, now)
            return None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
