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

from buildfleet.fleet.dispatch.policy import FifoPolicy, Prefer
from buildfleet.model import Board, BuildJob

CancelHook = Callable[[str], None]


class JobPool:
    """The one pool of board jobs every executor pulls from, around a pure policy.

    Thread-safe. Executors are named by machine (``model.LOCAL`` for this
    one). ``take(name)`` blocks until the policy gives executor ``name`` a
    ``BuildJob`` (a board and the commits still to build), or returns None
    once it will get no more (every job finished or abandoned, the rest only
    others can build, the machine is quarantined, or the pool is closed). An
    executor reports each job with ``finished`` (every result delivered;
    False if its copy no longer counts) or ``failed`` (back to the pool; too
    many failures abandon it), and each failure of its machine with
    ``machine_failed`` (True when that one quarantines it). ``clock`` gives
    seconds (monotonic). Nothing here raises for an unknown executor or board:
    it is simply not served.
    """

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

    def _next(self, name: str, prefer: Prefer | None = None) -> BuildJob | None:
        now = self.clock()
        job = self.policy.take(name, now, prefer)
        return job if job is not None else self.policy.hedge(name, now)

    def take(self, name: str, timeout: float | None = None, prefer: Prefer | None = None,
             taken: Callable[[str], None] | None = None) -> BuildJob | None:
        """The next job for ``name``; None when it will get no more (or on close).

        ``prefer`` goes to the policy (boards it would rather have, see
        ``policy.FifoPolicy._pick``); ``taken(target)`` runs under the pool's
        lock before the job is returned, so what the caller books for it (a
        kept directory's worktree) is seen by the next ``take``'s ``prefer``.
        """
        deadline = None if timeout is None else self.clock() + timeout
        with self._cond:
            while not self._closed:
                job = self._next(name, prefer)
                if job is not None:
                    if taken is not None:
                        taken(job.board.target)
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

    def finished(self, name: str, target: str, failed: bool = False) -> bool:
        """``name`` delivered all of ``target`` (``failed``: some commit's make failed);
        False if its copy no longer counts."""
        with self._cond:
            ok = self.policy.finished(name, target, self.clock(), failed=failed)
            losers = self.policy.losers(target) if ok else []
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

    def machine_failed(self, name: str) -> bool:
        """One failure of machine ``name``; True if it quarantines the machine.

        A quarantined machine gets no more boards for the rest of the run,
        even from a worker started on it again (see ``policy.machine_failed``).
        """
        with self._cond:
            newly = self.policy.machine_failed(name)
            self._cond.notify_all()
            return newly

    def quarantined(self, name: str) -> bool:
        with self._cond:
            return self.policy.quarantined(name)

    def failures(self, name: str) -> int:
        with self._cond:
            return self.policy.machine_failures.get(name, 0)

    def remove_executor(self, name: str) -> list[BuildJob]:
        """Drop an executor; its in-flight jobs return to the pool."""
        with self._cond:
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

    def failure_of(self, target: str) -> str:
        """Why ``target``'s last copy failed for an infrastructure reason ("" if none did)."""
        with self._cond:
            js = self.policy.jobs.get(target)
            return js.last_failure if js is not None else ""

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
            return self.policy.expected_remaining(now)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def quarantine_line(name: str, failures: int) -> str:
    """The one line that says machine ``name`` gets no more boards."""
    return f"Quarantined {name} for the rest of the run after {failures} failures"
