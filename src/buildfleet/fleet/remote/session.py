"""A remote machine as an executor: the boss's side of one worker.

Each machine runs its own start-up (ship, start, setup, push, configure,
prepare) in its own thread and joins the shared pool as soon as it is ready,
so a fast machine builds while a slow one is still receiving the tree. From
then on it pulls boards on demand, up to ``max_boards`` in flight, and hands
every result to the same sink as the local slots. Any failure — silence past
the liveness bound, EOF, an ``error`` reply, garbage — ends this worker only:
its boards go back to the pool, and its late results are refused by the sink.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from buildfleet.build.cancels import BoardStops
from buildfleet.build.failure import infra_line
from buildfleet.errors import InfraError
from buildfleet.fleet.dispatch.pool import JobPool
from buildfleet.fleet.dispatch.sink import ResultSink
from buildfleet.fleet.messages import (
    BuildBoard,
    BuildDone,
    BuildDoneReply,
    CancelBoard,
    Command,
    ErrorReply,
)
from buildfleet.fleet.protocol import FEATURES, ProtocolError, R, reply_from_wire, seed_result
from buildfleet.fleet.remote.channel import Channel, ChannelError, ChannelTimeout
from buildfleet.fleet.runlog import RunLog
from buildfleet.model import BuildResult
from buildfleet.results.writer import UnsafeResult

FULL_FEATURES = frozenset(FEATURES)
LIVENESS_SECONDS = 30.0
LIVENESS_ENV = "BUILDFLEET_LIVENESS_SECONDS"
PREPARE_SECONDS = 300.0
DONE_SECONDS = 120.0
QUIT_SECONDS = 10.0


class WorkerLost(InfraError):
    """This worker can no longer be trusted with boards (one-line reason)."""


class MachineBusy(InfraError):
    """The machine is in use by other runs (its threads, or our work directories):
    not a fault of the machine, so it is waited for, never quarantined."""


class MachineUnusable(InfraError):
    """The machine cannot do this run (a missing toolchain wrapper, a worker that
    cannot be driven): said once, not retried, never counted as a failure."""


def refusal(msg: dict[str, Any]) -> Exception:
    """The exception for an ``error`` reply, by its ``reason``."""
    try:
        error = reply_from_wire(msg, ErrorReply)
    except ProtocolError as exc:
        return WorkerLost(str(exc))
    if error.reason in ("busy", "in_use"):
        return MachineBusy(error.msg)
    if error.reason == "unusable":
        return MachineUnusable(error.msg)
    return WorkerLost(f"worker error: {error.msg}")


def liveness_seconds(environ: dict[str, str] | None = None) -> float:
    """The silence after which a worker is given up: ``$BUILDFLEET_LIVENESS_SECONDS`` or 30.

    Tests shorten it so a hung worker costs seconds, not half a minute; a
    value that is not a positive number falls back to the default.
    """
    env = os.environ if environ is None else environ
    try:
        value = float(env.get(LIVENESS_ENV, ""))
    except ValueError:
        return LIVENESS_SECONDS
    return value if 0 < value < 86400 else LIVENESS_SECONDS


@dataclass
class RemoteStats:
    boards: int = 0
    results: int = 0
    busy: float = 0.0
    started: float = field(default_factory=time.monotonic)


class RemoteSession:
    """The protocol conversation with one started worker (after ``ready``)."""

    def __init__(self, name: str, channel: Channel, liveness: float | None = None) -> None:
        self.name = name
        self.channel = channel
        self.liveness = liveness if liveness is not None else liveness_seconds()

    def send(self, cmd: Command) -> None:
        self.channel.send(cmd.to_wire())

    def request(self, cmd: Command, want: type[R], timeout: float,
                accept: tuple[str, ...] = ()) -> R:
        """Send ``cmd`` and wait for the ``want`` reply, skipping ``accept`` ones.

        WorkerLost if none comes within ``timeout`` s, any other reply comes
        instead, or the reply's fields are not ``want``'s; an ``error`` reply
        raises what ``refusal`` makes of it (MachineBusy, MachineUnusable).
        """
        self.send(cmd)
        msg = self.wait_for(want.NAME, timeout, accept)
        try:
            return reply_from_wire(msg, want)
        except ProtocolError as exc:
            raise WorkerLost(str(exc)) from None

    def receive(self, timeout: float) -> dict[str, Any]:
        """The next message, within ``timeout`` and the liveness bound; WorkerLost if none."""
        try:
            return self.channel.recv(min(timeout, self.liveness))
        except (ChannelError, ProtocolError) as exc:
            raise WorkerLost(str(exc)) from None

    def wait_for(self, want: str, timeout: float, accept: tuple[str, ...] = ()) -> dict[str, Any]:
        """The ``want`` reply within ``timeout``: the step's own bound, not the liveness
        one, which is for builds (heartbeats flow only while a board builds; a
        worker starting its python or creating worktrees on a loaded machine is
        slow, not lost)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerLost(f"no '{want}' within {timeout:g} s")
            try:
                msg = self.channel.recv(left)
            except ChannelTimeout:
                raise WorkerLost(f"no '{want}' within {timeout:g} s") from None
            except (ChannelError, ProtocolError) as exc:
                raise WorkerLost(str(exc)) from None
            resp = msg.get("resp")
            if resp == want:
                return msg
            if resp == "error":
                raise refusal(msg)
            if resp in accept or resp == "heartbeat":
                continue
            raise WorkerLost(f"unexpected '{resp}' while waiting for '{want}'")


class RemoteDispatcher:
    """Feeds one prepared worker boards from the pool and hands its results to the sink.

    ``sequences[i]`` is the commit sequence of the worker's prepared commit
    ``i``; at most ``max_boards`` boards are in flight. A board the worker
    gives up for an infrastructure reason (``infra_error``) goes back to the
    pool and counts against the machine's health there; it is never written.
    A result of a cancelled copy (a lost hedge) is only compared with the
    written one (the sink's reproducibility check). ``log`` takes lines for
    the user, ``runlog`` (optional) the machine's own log. ``take_timeout``
    bounds one wait for a board in seconds (None: until the pool has none
    for us). ``features``: what the worker announced in ``ready``; a
    seed-protocol worker (none) builds every prepared commit of a board
    whatever ``commits`` asked, so its results for commits nobody asked for
    are dropped, not a fault.

    Raises WorkerLost (from ``run``/``build_done``) once the worker can no
    longer be trusted; the caller gives the machine up.
    """

    def __init__(self, name: str, session: RemoteSession, pool: JobPool, sink: ResultSink,
                 sequences: list[int], max_boards: int, stop: threading.Event,
                 log: Callable[[str], None], runlog: RunLog | None = None,
                 take_timeout: float | None = None,
                 features: frozenset[str] = FULL_FEATURES) -> None:
        self.name = name
        self.session = session
        self.pool = pool
        self.sink = sink
        self.max_boards = max(1, max_boards)
        self.index_of = {seq: i for i, seq in enumerate(sequences)}
        self.sequences = sequences
        self.stop = stop
        self.log = log
        self.runlog = runlog
        self.take_timeout = take_timeout
        self.in_flight: dict[str, set[int]] = {}
        self.failed_targets: set[str] = set()  # in flight with a failed make (a lower-bound time)
        self.features = features
        self._given: set[str] = set()
        self._dropped: set[str] = set()
        self.stats = RemoteStats()
        self._busy_since: float | None = None
        self._cancelled = BoardStops()  # marks only: the worker stops the make

    def cancel(self, target: str) -> None:
        """Another executor won ``target``: ask the worker to drop its copy."""
        self._cancelled.cancel(target, remember=True)
        try:
            self.session.send(CancelBoard(target))
        except ChannelError:
            pass

    def _drop_cancelled(self) -> None:
        for target in self._cancelled.cancelled_targets():
            self.in_flight.pop(target, None)
            self.failed_targets.discard(target)

    def run(self) -> None:
        """Dispatch until the pool has nothing more for this worker."""
        while not self.stop.is_set():
            self._refill()
            if not self.in_flight:
                return
            self._handle(self.session.receive(self.session.liveness))

    def _refill(self) -> None:
        self._drop_cancelled()
        while len(self.in_flight) < self.max_boards and not self.stop.is_set():
            if self.in_flight:
                job = self.pool.try_take(self.name)
            else:
                job = self.pool.take(self.name, timeout=self.take_timeout)
            if job is None:
                return
            board = job.board
            indices = [self.index_of[c.sequence] for c in job.commits]
            self.session.send(BuildBoard.of(board, indices))
            self.in_flight[board.target] = {c.sequence for c in job.commits}
            self._given.add(board.target)
            if self._busy_since is None:
                self._busy_since = time.monotonic()

    def _handle(self, msg: dict[str, Any]) -> None:
        resp = msg.get("resp")
        if resp in ("heartbeat", "board_cancelled"):
            return
        if resp == "error":
            raise WorkerLost(f"worker error: {msg.get('msg', '')}")
        if resp != "build_result":
            raise WorkerLost(f"unexpected '{resp}' during the build")
        if "files" not in self.features:
            msg = seed_result(msg)
        try:
            result = BuildResult.from_wire(msg, host=self.name)
        except ValueError as exc:
            raise WorkerLost(f"bad build_result: {exc}") from None
        index = result.sequence
        if not 0 <= index < len(self.sequences):
            raise WorkerLost(f"build_result for unknown commit index {index}")
        result.sequence = self.sequences[index]
        if self._cancelled.cancelled(result.target):
            if not result.infra_error:
                self.sink.check(result)
            return  # a copy that lost the race: its results no longer count
        if result.target in self._dropped:
            return  # given up after an infrastructure failure: the rest is moot
        waiting = self.in_flight.get(result.target)
        if ((waiting is None or result.sequence not in waiting)
                and "commits" not in self.features and result.target in self._given):
            return  # a seed worker builds all commits of a board: this one was not asked
        if waiting is None or result.sequence not in waiting:
            raise WorkerLost(f"build_result for {result.target!r} that was not asked for")
        if result.infra_error:
            self._drop(result.target, result.infra_error)
            return
        if self.runlog is not None:
            self.runlog.write("<<", f"result {result.target} {result.sequence} "
                                    f"rc={result.return_code}")
        try:
            self.sink.accept(self.name, result)
        except UnsafeResult as exc:
            raise WorkerLost(str(exc)) from None
        waiting.discard(result.sequence)
        self.stats.results += 1
        if result.return_code:
            self.failed_targets.add(result.target)
        if not waiting:
            del self.in_flight[result.target]
            self.stats.boards += 1
            failed = result.target in self.failed_targets
            self.failed_targets.discard(result.target)
            self.pool.finished(self.name, result.target, failed=failed)
            if not self.in_flight and self._busy_since is not None:
                self.stats.busy += time.monotonic() - self._busy_since
                self._busy_since = None

    def _drop(self, target: str, reason: str) -> None:
        """An infrastructure failure (disk full, git, ...): not a build result.

        The board leaves this worker (which is asked to stop it) and goes back
        to the pool; it is never written. One failure of the machine: the one
        that quarantines it ends this worker (WorkerLost).
        """
        self.in_flight.pop(target, None)
        self.failed_targets.discard(target)
        self._dropped.add(target)
        try:
            self.session.send(CancelBoard(target))
        except ChannelError:
            pass
        if self.runlog is not None:
            self.runlog.write("!!", f"infrastructure failure on {target}: {reason}")
        self.log(infra_line(self.name, target, reason))
        self.pool.failed(self.name, target, f"{self.name}: {reason.strip()}")
        if self.pool.machine_failed(self.name):
            raise WorkerLost(f"{self.pool.failures(self.name)} failures, last: "
                             f"{reason.strip()}")

    def build_done(self, timeout: float) -> BuildDoneReply:
        """Send ``build_done`` and wait for its reply.

        Results of cancelled (lost hedge) or dropped copies may still be in
        the pipe: they are handled as during the build (the sink compares the
        former), not taken for protocol errors.
        """
        self.session.send(BuildDone())
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerLost(f"no 'build_done' within {timeout:g} s")
            msg = self.session.receive(left)
            if msg.get("resp") == BuildDoneReply.NAME:
                try:
                    return reply_from_wire(msg, BuildDoneReply)
                except ProtocolError as exc:
                    raise WorkerLost(str(exc)) from None
            self._handle(msg)

    def close_busy(self) -> None:
        if self._busy_since is not None:
            self.stats.busy += time.monotonic() - self._busy_since
            self._busy_since = None
