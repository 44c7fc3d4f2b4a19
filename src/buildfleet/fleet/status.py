"""What every machine of a run is doing right now, for the live view.

Executors report their phase here as they go (a remote machine: probing,
starting, pushing, preparing, building, lost, quarantined, done; the local
slots: building, done); :func:`fleet_snapshot` joins that with what the pool
knows (boards in flight per executor, slots) and the run's counters into
one immutable :class:`FleetSnapshot`, which the display draws. Snapshots are
pulled by the display's own refresh (a few per second), never pushed per
result, so a world build's thousands of results a second cost the boss
nothing here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

# Phases an executor reports (``building`` is shown as ``idle`` with nothing in flight).
PROBING = "probing"
UNAVAILABLE = "unavailable"
STARTING = "starting"
PUSHING = "pushing"
PREPARING = "preparing"
BUILDING = "building"
IDLE = "idle"
LOST = "lost"
QUARANTINED = "quarantined"
DONE = "done"

ETA_EVERY = 1.0
"""Seconds between two ETA computations (the plan over the pool costs milliseconds)."""


@dataclass(frozen=True)
class MachineView:
    """One machine's line: phase, detail (a failure's reason), boards in flight, results."""

    name: str
    state: str
    detail: str
    slots: int
    in_flight: tuple[str, ...]
    results: int
    share: float  # fraction of the results built in this run, 0..1


@dataclass(frozen=True)
class FleetSnapshot:
    machines: tuple[MachineView, ...]
    ok: int
    warned: int
    failed: int
    done: int
    total: int
    eta: float | None  # seconds, from the cost model; None until it can tell


class PoolView(Protocol):
    def view(self, now: float) -> tuple[dict[str, tuple[str, ...]], dict[str, int]]: ...

    def eta(self, now: float) -> float | None: ...


class CountsView(Protocol):
    ok: int
    warned: int
    failed: int
    total: int

    @property
    def done(self) -> int: ...

    @property
    def previously(self) -> int: ...

    def host_results(self) -> dict[str, int]: ...


@dataclass
class FleetStatus:
    """Thread-safe phases of the run's machines, in the order they were first reported."""

    _phases: dict[str, tuple[str, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _eta: tuple[float, float | None] = (-1e9, None)

    def set(self, name: str, state: str, detail: str = "") -> None:
        with self._lock:
            self._phases[name] = (state, detail)

    def phases(self) -> dict[str, tuple[str, str]]:
        with self._lock:
            return dict(self._phases)

    def cached_eta(self, pool: PoolView, now: float) -> float | None:
        """The pool's ETA, recomputed at most every ETA_EVERY seconds."""
        with self._lock:
            at, value = self._eta
        if now - at < ETA_EVERY:
            return None if value is None else max(0.0, value - (now - at))
        value = pool.eta(now)
        with self._lock:
            self._eta = (now, value)
        return value


def fleet_snapshot(status: FleetStatus, pool: PoolView, counts: CountsView,
                   now: float | None = None) -> FleetSnapshot:
    """Join phases, the pool's in-flight boards and the counters into one snapshot."""
    now = time.monotonic() if now is None else now
    in_flight, slots = pool.view(now)
    per_host = counts.host_results()
    built = max(1, sum(per_host.values()))
    machines = []
    for name, (state, detail) in status.phases().items():
        boards = in_flight.get(name, ())
        shown = state
        if state == BUILDING and not boards:
            shown = IDLE
        results = per_host.get(name, 0)
        machines.append(MachineView(name, shown, detail, slots.get(name, 0), boards, results,
                                    results / built))
    eta = status.cached_eta(pool, now) if counts.done < counts.total else 0.0
    return FleetSnapshot(tuple(machines), counts.ok, counts.warned, counts.failed, counts.done,
                         counts.total, eta)
