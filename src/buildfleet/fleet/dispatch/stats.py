"""What a run's dispatch achieved: busy and idle time per executor, efficiency, tail.

Filled by the policy as jobs start and end (on the caller's clock), printed
by the runner after a run and by the dispatch simulator.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ExecutorStats:
    """Slot-seconds one executor spent, for its busy/idle report."""

    name: str
    slots: int
    added_at: float | None = None
    removed_at: float | None = None
    busy: float = 0.0
    """Slot-seconds of every copy it ran (won, lost or failed)."""
    wasted: float = 0.0
    """Slot-seconds of copies whose result did not count (hedge losers, failures)."""
    boards: int = 0
    """Boards whose winning result came from this executor."""
    hedges: int = 0

    def capacity(self, start: float, end: float) -> float:
        """Slot-seconds it offered between ``start`` and ``end``."""
        lo = start if self.added_at is None else max(start, self.added_at)
        hi = end if self.removed_at is None else min(end, self.removed_at)
        return self.slots * max(0.0, hi - lo)


@dataclass
class DispatchStats:
    """What the boss prints after the run: efficiency, tail, per-machine time.

    ``efficiency`` = useful build time / (sum of slots × wall time);
    ``tail`` = time from the first slot left idle with an empty pool to the end.
    """

    started_at: float | None = None
    ended_at: float | None = None
    pool_empty_at: float | None = None
    first_idle_at: float | None = None
    useful: float = 0.0
    executors: dict[str, ExecutorStats] = field(default_factory=dict)

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

    def busy_time(self, name: str) -> float:
        e = self.executors.get(name)
        return e.busy if e else 0.0

    def idle_time(self, name: str) -> float:
        e = self.executors.get(name)
        if e is None or self.started_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, e.capacity(self.started_at, self.ended_at) - e.busy)

    def summary_line(self) -> str:
        hedges = sum(e.hedges for e in self.executors.values())
        wasted = sum(e.wasted for e in self.executors.values())
        return (f"Dispatch: wall {self.wall:.1f}s, scheduling efficiency "
                f"{100 * self.efficiency:.1f}%, tail {self.tail:.1f}s, "
                f"hedged {hedges}, wasted {wasted:.1f} slot-s")

    def machine_lines(self) -> list[str]:
        return [f"  {e.name}: {e.slots} slots, {e.boards} boards, busy {e.busy:.1f} slot-s, "
                f"idle {self.idle_time(e.name):.1f} slot-s"
                for e in sorted(self.executors.values(), key=lambda x: x.name)]
