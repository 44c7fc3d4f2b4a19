"""What a run hands its executors: the plan, the pool, the sink, the stop event, the log.

Why here and not in ``runner``: the executors live in ``fleet/`` and must
know these types, while ``runner`` sits above ``fleet/`` and only assembles
them; arrows point down.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from buildfleet.fleet.dispatch.costs import CostModel
from buildfleet.fleet.dispatch.pool import JobPool
from buildfleet.fleet.dispatch.sink import ResultSink
from buildfleet.fleet.status import FleetStatus
from buildfleet.options import RunOptions
from buildfleet.plan import RunPlan
from buildfleet.results.manifest import RunManifest


class Executor(Protocol):
    """Something with slots that pulls board jobs from the pool (local or remote).

    ``start`` returns at once; ``join(timeout)`` waits at most ``timeout``
    seconds and is True once the executor has stopped for good.
    """

    name: str

    @property
    def exceptions(self) -> int:
        """Thread exceptions (bugs, not failed builds) so far."""

    def start(self) -> None: ...

    def join(self, timeout: float | None = None) -> bool: ...


class MachineExecutor(Executor, Protocol):
    """A remote machine's executor: also says how its run went, for the closing block."""

    def closing_extra(self) -> str:
        """What only it knows, for its ``Machines:`` line (bytes, workers lost, failure)."""

    def closing_line(self) -> str:
        """The whole line of a machine that never joined the pool, and why."""

    def gone_reason(self) -> str:
        """Why the machine is out of the run at its end ("" if it is not)."""


@dataclass
class RunContext:
    """What executors need from the run: shared by local and remote ones.

    ``log`` prints one line for the user (and keeps it in the boss log);
    ``closers`` run once when the run ends or is interrupted (workers told
    to quit, connections closed); ``costs`` is the history the policy uses;
    ``manifest`` the run's record (machines are added as they join);
    ``status`` what each machine is doing, for the live view.
    """

    plan: RunPlan
    pool: JobPool
    sink: ResultSink
    stop: threading.Event
    log: Callable[[str], None]
    opts: RunOptions
    closers: list[Callable[[], None]] = field(default_factory=list)
    remote_executors: list[MachineExecutor] = field(default_factory=list)
    costs: CostModel | None = None
    manifest: RunManifest | None = None
    status: FleetStatus = field(default_factory=FleetStatus)


RemoteStarter = Callable[[RunContext], Sequence[Executor]]
