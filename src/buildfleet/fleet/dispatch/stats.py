"""The one account of a run's dispatch, and every figure printed about it.

Why one account: figures that come from different counters contradict each
other as soon as something goes wrong (a worker restarted, a board built
again elsewhere, a hung worker waited for): an efficiency above 100 %, a
machine with more boards than another line gives it, a "wall" time that is
not the run's duration. So the policy books every event here, on the
caller's clock (an executor joining or leaving, each copy of a board
starting and ending, a board going back to the pool), the runner books the
run's start and end, and the closing lines are rendered from this account
plus the results written per executor. Printed by the runner after a run
and by the dispatch simulator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class ExecutorStats:
    """Slot-seconds one executor offered and spent; it may join several times (restarts)."""

    name: str
    slots: int
    """Its slots in its latest stay in the pool."""
    added_at: float | None = None
    removed_at: float | None = None
    busy: float = 0.0
    """Slot-seconds of every copy it ran (won, lost or failed)."""
    wasted: float = 0.0
    """Slot-seconds of copies whose result did not count (hedge losers, failures)."""
    boards: int = 0
    """Boards whose winning result came from this executor."""
    hedges: int = 0
    """Second copies of boards it was given."""
    stays: list[tuple[float | None, float | None, int]] = field(default_factory=list)
    """(joined, left, slots) per stay in the pool; None: the run's start / end."""

    def __post_init__(self) -> None:
        if not self.stays:
            self.stays.append((self.added_at, self.removed_at, self.slots))

    def join(self, slots: int, now: float | None) -> None:
        """Back in the pool (a restarted worker) with ``slots`` slots."""
        self.slots = slots
        self.removed_at = None
        self.stays.append((now, None, slots))

    def leave(self, now: float | None) -> None:
        self.removed_at = now
        joined, _left, slots = self.stays[-1]
        self.stays[-1] = (joined, now, slots)

    def capacity(self, start: float, end: float) -> float:
        """Slot-seconds it offered between ``start`` and ``end``."""
        total = 0.0
        for joined, left, slots in self.stays:
            lo = start if joined is None else max(start, joined)
            hi = end if left is None else min(end, left)
            total += slots * max(0.0, hi - lo)
        return total


@dataclass
class DispatchStats:
    """The account: efficiency, tail, hedges, re-dispatches, per-executor time.

    ``efficiency`` = useful build time / slot-seconds offered (each
    executor's slots over its stays in the pool, within the run); it cannot
    exceed 1 because no executor runs more copies than its slots.
    ``tail`` = time from the first slot left idle with an empty pool to the end.
    ``wall`` = the run's duration when the runner booked its start and end
    (``begin``/``end``), else from the first copy to the last.
    """

    started_at: float | None = None
    ended_at: float | None = None
    pool_empty_at: float | None = None
    first_idle_at: float | None = None
    useful: float = 0.0
    requeued: int = 0
    """Boards given out again after going back to the pool (a lost worker, an
    infrastructure failure): re-dispatches."""
    executors: dict[str, ExecutorStats] = field(default_factory=dict)
    _run_bounds: bool = False

    def begin(self, now: float) -> None:
        """The run starts (before any executor joins): the account's clock starts."""
        self.started_at = now
        self._run_bounds = True

    def end(self, now: float) -> None:
        """The run is over: ``wall`` is its duration from here on."""
        self.ended_at = now

    def copy_ended(self, now: float) -> None:
        """A copy ended at ``now`` (the end of the account, unless the runner set it)."""
        if not self._run_bounds and (self.ended_at is None or now > self.ended_at):
            self.ended_at = now

    def copy_started(self, now: float) -> None:
        if self.started_at is None:
            self.started_at = now

    @property
    def wall(self) -> float:
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.started_at)

    @property
    def capacity(self) -> float:
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return sum(e.capacity(self.started_at, self.ended_at) for e in self.executors.values())

    @property
    def efficiency(self) -> float:
        cap = self.capacity
        return self.useful / cap if cap > 0 else 0.0

    @property
    def tail(self) -> float:
        if self.first_idle_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.first_idle_at)

    @property
    def hedges(self) -> int:
        return sum(e.hedges for e in self.executors.values())

    def busy_time(self, name: str) -> float:
        e = self.executors.get(name)
        return e.busy if e else 0.0

    def idle_time(self, name: str) -> float:
        e = self.executors.get(name)
        if e is None or self.started_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, e.capacity(self.started_at, self.ended_at) - e.busy)

    def summary_line(self) -> str:
        wasted = sum(e.wasted for e in self.executors.values())
        return (f"Dispatch: wall {self.wall:.1f}s, scheduling efficiency "
                f"{100 * self.efficiency:.1f}%, tail {self.tail:.1f}s, "
                f"hedged {self.hedges}, re-dispatched {self.requeued}, "
                f"wasted {wasted:.1f} slot-s")

    def machine_line(self, name: str, results: int, extra: str = "") -> str:
        """``  NAME: B boards, R results, S slots, busy X slot-s, idle Y slot-s[, extra]``.

        ``results`` are the results written from this executor (the sink's
        count); ``extra`` adds what only the executor knows (bytes sent, why
        it failed).
        """
        e = self.executors[name]
        line = (f"  {name}: {e.boards} boards, {results} results, {e.slots} slots, "
                f"busy {e.busy:.1f} slot-s, idle {self.idle_time(name):.1f} slot-s")
        return f"{line}, {extra}" if extra else line

    def machine_lines(self, results: Mapping[str, int] | None = None,
                      extra: Mapping[str, str] | None = None) -> list[str]:
        """One ``machine_line`` per executor, by name."""
        return [self.machine_line(name, (results or {}).get(name, 0), (extra or {}).get(name, ""))
                for name in sorted(self.executors)]
