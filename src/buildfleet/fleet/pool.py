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

from buildfleet.fleet.policy import FifoPolicy
from buildfleet.model import Board, BuildJob


class JobPool:
    def __init__(self, policy: FifoPolicy, jobs: list[BuildJob],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.clock = clock
        self._cond = threading.Condition()
        self._closed = False
        policy.add_jobs(jobs)

    def register(self, name: str, slots: int, can_build: Callable[[Board], bool],
                 **extra: float) -> None:
        with self._cond:
            self.policy.add_executor(name, slots, can_build, **extra)
            self._cond.notify_all()

    def take(self, name: str, timeout: float | None = None) -> BuildJob | None:
        """The next job for ``name``; None when it will get no more (or on close)."""
        deadline = None if timeout is None else self.clock() + timeout
        with self._cond:
            while not self._closed:
                job = self.policy.take(name, self.clock())
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
            return self.policy.take(name, self.clock())

    def finished(self, name: str, target: str) -> bool:
        """``name`` delivered all of ``target``; False if its copy no longer counts."""
        with self._cond:
            ok = self.policy.finished(name, target, self.clock())
            self._cond.notify_all()
            return ok

    def owns(self, name: str, target: str) -> bool:
        with self._cond:
            js = self.policy.jobs.get(target)
            return (js is not None and name in js.owners
                    and target not in self.policy.finished_targets)

    def failed(self, name: str, target: str, reason: str) -> None:
        with self._cond:
            self.policy.failed(name, target, reason)
            self._cond.notify_all()

    def remove_executor(self, name: str, failed: bool = False) -> list[BuildJob]:
        """Drop an executor; its in-flight jobs return to the pool."""
        with self._cond:
            if failed:
                self.policy.executor_failed(name)
            back = self.policy.remove_executor(name)
            self._cond.notify_all()
            return back

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

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
