"""The worker's side of the slot runner: boards from its queue, results onto the wire.

Why apart from ``loop``: the loop reads commands and keeps the worker's
state; this is only the ``JobFeed`` its slot runner pulls from (the local
executor's is ``fleet.local``'s pool feed), with the per-board record of what
was sent, so a cancelled board sends nothing more and a finished one no
heartbeat.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from buildfleet.build.builder import Slot
from buildfleet.fleet.messages import Heartbeat
from buildfleet.fleet.worker.streams import Output
from buildfleet.model import BuildJob, BuildResult


@dataclass
class Running:
    """A board a slot is building."""

    job: BuildJob
    thread: int
    sent: set[int] = field(default_factory=set)
    worst_rc: int = 0
    start: float = field(default_factory=time.monotonic)
    last_beat: float = field(default_factory=time.monotonic)


class WorkerState(Protocol):
    """What the feed shares with the worker (``loop.Worker``), all under ``lock``."""

    lock: threading.Condition
    pending: deque[BuildJob]
    running: dict[str, Running]
    busy: int
    closing: bool
    generation: int
    out: Output

    def dlog(self, msg: str) -> None: ...


class InboxFeed:
    """The slot runner's boards from the worker's queue, its results onto the wire.

    One per ``build_prepare`` (``gen``): slots of an older one end.
    """

    def __init__(self, worker: WorkerState, gen: int) -> None:
        self.w = worker
        self.gen = gen
        self._runs: dict[str, Running] = {}  # under the worker's lock, until ``ended``

    def take(self, slot: Slot) -> BuildJob | None:
        w = self.w
        with w.lock:
            while not w.pending and not w.closing and self.gen == w.generation:
                w.lock.wait()
            if w.closing or self.gen != w.generation:
                return None
            job = w.pending.popleft()
            run = Running(job, slot.index)
            w.running[job.board.target] = self._runs[job.board.target] = run
            w.busy += 1
            w.out.send(Heartbeat(job.board.target, slot.index).to_wire())
        w.dlog(f"start {job.board.target}")
        return job

    def deliver(self, job: BuildJob, result: BuildResult) -> None:
        w = self.w
        with w.lock:
            run = w.running.get(job.board.target)
            if run is None or run.job is not job or w.closing:
                return  # cancelled (or shutting down): nothing more of it is sent
            run.sent.add(result.sequence)
            run.worst_rc = max(run.worst_rc, result.return_code)
            if len(run.sent) >= len(job.commits):
                # The board is finished: no heartbeat may follow its last result.
                del w.running[job.board.target]
            w.out.send({"resp": "build_result", **result.to_wire()})

    def done(self, job: BuildJob) -> None:
        pass

    def lost(self, job: BuildJob, failure: BuildResult, machine_fault: bool) -> None:
        # The boss gives the board to another executor on this one result and
        # keeps the machine's health (the result's ``infra_error`` says why).
        self.deliver(job, failure)
        with self.w.lock:
            run = self.w.running.get(job.board.target)
            if run is not None and run.job is job:
                del self.w.running[job.board.target]

    def ended(self, job: BuildJob) -> None:
        w = self.w
        with w.lock:
            w.busy -= 1
            if (current := w.running.get(job.board.target)) is not None and current.job is job:
                del w.running[job.board.target]
            run = self._runs.pop(job.board.target)
            w.lock.notify_all()
        w.dlog(f"done {job.board.target} rc={run.worst_rc} in "
               f"{time.monotonic() - run.start:.1f} s")
