"""The one slot runner: N threads, each driving the builder in its own slot.

The local executor feeds it from the shared pool, a worker from its inbox;
everything else is the same on both sides: one board per slot at a time, a
stop event per board (so a cancelled hedge copy or a stopped run kills its
make), make ``-j`` from the number of boards in flight, one answer to "whose
fault is this failure" (``build.failure``), thread exceptions counted. That
a local full disk and a remote one fail the same way is the point.

Stdlib and ``buildfleet`` only: workers run this on a bare ``python3``.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Protocol

from buildfleet.build.builder import Builder, BuildInterrupted
from buildfleet.build.cancels import BoardStops
from buildfleet.build.failure import (
    exception_reason,
    infra_line,
    infra_reason,
    is_infra_exception,
)
from buildfleet.build.workspace import Slot
from buildfleet.model import BuildJob, BuildResult

# The return code of a result that stands for an infrastructure failure.
INFRA_RC = 1


class JobFeed(Protocol):
    """Where a slot runner's boards come from and where their outcomes go.

    Called from slot threads; an implementation guards its own state.
    """

    def take(self, slot: Slot) -> BuildJob | None:
        """The next board for ``slot`` (blocking); None when the slot should end."""

    def deliver(self, job: BuildJob, result: BuildResult) -> None:
        """One commit's result of ``job``: a real verdict on the code, to keep."""

    def done(self, job: BuildJob) -> None:
        """Every commit of ``job`` was delivered."""

    def lost(self, job: BuildJob, failure: BuildResult, machine_fault: bool) -> None:
        """Nothing more of ``job`` is delivered here; another executor may build it.

        ``failure.infra_error`` says why; ``machine_fault`` is False when the
        run stopped under it or a bug in buildfleet broke it, True when the
        machine is to blame (disk, git, make killed). ``failure`` stands for
        the first commit not delivered (a classified result keeps its text)."""

    def ended(self, job: BuildJob) -> None:
        """The slot is done with ``job``, whatever happened (always called last)."""


class _InfraResult(Exception):
    """A result classified as the machine's fault: ends the board's build here."""

    def __init__(self, result: BuildResult) -> None:
        super().__init__(result.infra_error)
        self.result = result


class SlotRunner:
    """Runs boards from a ``JobFeed`` in ``slots``, one thread per slot.

    ``make_jobs(active)`` gives make's ``-j`` when ``active`` boards are in
    flight (including the one asking). ``log`` takes one line (or a
    traceback if ``tracebacks``); ``name`` (the executor's) starts the line
    that reports an infrastructure failure.

    For each board the feed gets, in order: ``deliver`` per good result,
    then ``done`` (all delivered) or ``lost`` (a machine failure, a crash or
    the run's stop: nothing more comes, ``machine_fault`` says whom to
    blame; a board cancelled because another copy won gets neither), then
    always ``ended``. ``cancel(target)`` stops one board, ``stop()`` all;
    ``join(timeout)`` waits at most ``timeout`` s. Nothing raises out of a
    slot thread: crashes are counted in ``exceptions``.
    """

    def __init__(self, name: str, builder: Builder, slots: list[Slot], feed: JobFeed,
                 make_jobs: Callable[[int], int], log: Callable[[str], None],
                 tracebacks: bool = False) -> None:
        self.name = name
        self.builder = builder
        self.slots = slots
        self.feed = feed
        self.make_jobs = make_jobs
        self.log = log
        self.tracebacks = tracebacks
        self.exceptions = 0
        self._lock = threading.Lock()
        self._stops = BoardStops()
        self._ended: list[threading.Event] = []  # one per slot thread, set as it ends

    def start(self) -> None:
        for slot in self.slots:
            ended = threading.Event()
            t = threading.Thread(target=self._run_slot, args=(slot, ended), daemon=True,
                                 name=f"slot-{slot.index:02d}")
            t.start()
            self._ended.append(ended)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for every slot thread, ``timeout`` s in all; True if all ended.

        Waits on events the threads set as they end, not on ``Thread.join``:
        on CPython 3.11 a KeyboardInterrupt that lands inside ``Thread.join``
        can leave a live thread marked as stopped, so every later join returned
        at once and Ctrl-C ended the run while a slot's make went on running.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for ended in self._ended:
            ended.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return all(ended.is_set() for ended in self._ended)

    def active(self) -> int:
        """Boards being built right now."""
        return self._stops.active()

    def cancel(self, target: str) -> bool:
        """Stop building ``target`` (its make is killed); False if it was not building."""
        return self._stops.cancel(target)

    def stop(self) -> None:
        """Stop every board; slots end once their feed stops giving boards."""
        self._stops.stop_all()

    def _run_slot(self, slot: Slot, ended: threading.Event) -> None:
        try:
            while True:
                if self._stops.stopping:
                    return
                job = self.feed.take(slot)
                if job is None:
                    return
                try:
                    self._run_board(job, slot)
                finally:
                    self.feed.ended(job)
        finally:
            ended.set()

    def _run_board(self, job: BuildJob, slot: Slot) -> None:
        target = job.board.target
        board_stop = self._stops.begin(target)
        delivered: set[int] = set()

        def sink(result: BuildResult) -> None:
            if result.infra_error is None:
                result.infra_error = infra_reason(result, slot.out_root)
            if result.infra_error:
                raise _InfraResult(result)
            self.feed.deliver(job, result)
            delivered.add(result.sequence)

        try:
            self.builder.build(job, slot, lambda: self.make_jobs(self.active()), sink,
                               board_stop)
            self.feed.done(job)
        except BuildInterrupted:
            if self._stops.stopping:  # (else cancelled: another executor's copy won)
                self.feed.lost(job, self._failure(job, delivered, "interrupted"), False)
        except _InfraResult as exc:
            self.log(infra_line(self.name, target, exc.result.infra_error or ""))
            self.feed.lost(job, exc.result, True)
        except Exception as exc:  # noqa: BLE001 - a slot must survive any board
            if is_infra_exception(exc):
                self.log(infra_line(self.name, target, exception_reason(exc)))
            else:
                with self._lock:
                    self.exceptions += 1
                self.log(f"Thread exception (board {target}): {exc}")
            if self.tracebacks:
                self.log(traceback.format_exc().rstrip("\n"))
            self.feed.lost(job, self._failure(job, delivered, exception_reason(exc)),
                           is_infra_exception(exc))
        finally:
            self._stops.end(target)

    def _failure(self, job: BuildJob, delivered: set[int], reason: str) -> BuildResult:
        """The result that stands for ``job``'s first undelivered commit failing for ``reason``."""
        seq = next((c.sequence for c in job.commits if c.sequence not in delivered),
                   job.commits[-1].sequence)
        return BuildResult(job.board.target, seq, INFRA_RC, stderr=f"{reason}\n",
                           host=self.builder.host, infra_error=reason)

