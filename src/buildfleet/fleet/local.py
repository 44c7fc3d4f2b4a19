"""The local machine as an executor: the slot runner fed from the shared pool.

A slot asks the pool for a board whose kept directory's worktree is free
(``build.keep.Worktrees.prefers``), else for what the policy gives: a board
built in another slot's worktree would have its directory wiped. A worker's
slots build what the boss assigned them, in its order.

A board that fails for the machine (full disk, git, make killed) or whose
slot crashes goes back to the pool for another executor (a crash also counts
as a thread exception, exit 102); it is never written and never lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from buildfleet.build.builder import Builder, Slot
from buildfleet.build.slot_runner import SlotRunner
from buildfleet.fleet.dispatch.pool import JobPool, quarantine_line
from buildfleet.fleet.dispatch.sink import ResultSink
from buildfleet.model import LOCAL, BuildJob, BuildResult


class _PoolFeed:
    """The slot runner's boards from the pool, its results into the sink."""

    def __init__(self, pool: JobPool, sink: ResultSink, log: Callable[[str], None],
                 builder: Builder) -> None:
        self.pool = pool
        self.sink = sink
        self.trees = builder.trees
        self.kept_root = builder.kept_root
        self.log = log
        self.failed: set[str] = set()  # targets with a failed make in the job being built

    def take(self, slot: Slot) -> BuildJob | None:
        root = self.kept_root(slot)
        if root is None:
            return self.pool.take(LOCAL)
        return self.pool.take(LOCAL, prefer=self.trees.prefers(root),
                              taken=lambda target: self.trees.claim(slot, root, target))

    def deliver(self, job: BuildJob, result: BuildResult) -> None:
        self.sink.accept(LOCAL, result)
        if result.return_code:
            self.failed.add(job.board.target)

    def done(self, job: BuildJob) -> None:
        target = job.board.target
        self.pool.finished(LOCAL, target, failed=target in self.failed)
        self.failed.discard(target)

    def lost(self, job: BuildJob, failure: BuildResult, machine_fault: bool) -> None:
        self.pool.failed(LOCAL, job.board.target, failure.infra_error or "failed")
        if machine_fault and self.pool.machine_failed(LOCAL):
            self.log(quarantine_line(LOCAL, self.pool.failures(LOCAL)))

    def ended(self, job: BuildJob) -> None:
        self.trees.unclaim(job.board.target)


class LocalExecutor:
    """This machine's slots as one executor of the pool, named ``LOCAL``.

    ``slots`` are the prepared worktrees (one board each at a time);
    ``make_jobs(active)`` gives make's -j with ``active`` boards in flight.
    ``start`` returns at once; ``join(timeout)`` (seconds) is True once every
    slot has ended; setting ``stop`` stops every board (its make killed).
    ``exceptions`` counts slot crashes (bugs, exit 102); a board that fails
    for the machine goes back to the pool and counts against ``local``'s
    health. Raises nothing: every failure ends as a result or in the pool.
    """

    name = LOCAL

    def __init__(self, pool: JobPool, builder: Builder, slots: list[Slot], sink: ResultSink,
                 make_jobs: Callable[[int], int], stop: threading.Event,
                 log: Callable[[str], None], debug: bool = False) -> None:
        self.stop = stop
        feed = _PoolFeed(pool, sink, log, builder)
        self.runner = SlotRunner(LOCAL, builder, slots, feed, make_jobs, log, tracebacks=debug)

    @property
    def exceptions(self) -> int:
        return self.runner.exceptions

    def active(self) -> int:
        return self.runner.active()

    def cancel(self, target: str) -> None:
        """Another executor finished ``target`` first: stop our copy."""
        self.runner.cancel(target)

    def _watch_stop(self) -> None:
        self.stop.wait()
        self.runner.stop()

    def start(self) -> None:
        threading.Thread(target=self._watch_stop, daemon=True, name="local-stop").start()
        self.runner.start()

    def join(self, timeout: float | None = None) -> bool:
        return self.runner.join(timeout)
