"""When will the run end? The cost model's answer, for the live view's ETA.

The policy already plans each board onto the slot that frees first (see
``CostAwarePolicy.take``); the same plan, carried over every pending board,
ends at the run's expected end. Kept out of the policy itself, which only
decides and never predicts for display.
"""

from __future__ import annotations

import heapq
from typing import Protocol

from buildfleet.fleet.dispatch.costs import CostModel
from buildfleet.fleet.dispatch.policy import ExecutorState
from buildfleet.fleet.dispatch.stats import DispatchStats


class Plannable(Protocol):
    """What the ETA reads of a policy (``CostAwarePolicy`` has it all)."""

    pending: list[str]
    executors: dict[str, ExecutorState]
    finished_targets: set[str]
    stats: DispatchStats
    costs: CostModel

    def cost_of(self, target: str) -> float: ...

    def slot_plan(self, now: float) -> dict[str, list[float]]: ...

    def buildable_by(self, name: str, target: str) -> bool: ...


def expected_remaining(policy: Plannable, now: float) -> float | None:
    """Seconds until the last board is expected to end, or None when it cannot tell.

    The pending boards, longest first, are placed on the slot each usable
    executor frees first (its running boards end when expected), as ``take``
    places them; the answer is the latest end. The costs are scaled by how
    long the boards finished so far took against their estimates, so a cold
    model (no history: every board costs the default) still gives a fair
    figure once a few boards are done. None while a cold model has nothing
    finished to learn from. Call with the pool's lock held.
    """
    if not policy.pending and not any(s.in_flight for s in policy.executors.values()):
        return 0.0
    cost = policy.cost_of
    estimated = sum(cost(t) for t in policy.finished_targets)
    if estimated > 0 and policy.stats.useful > 0:
        scale = policy.stats.useful / estimated
    elif policy.costs.empty:
        return None
    else:
        scale = 1.0
    plan = {n: heap for n, heap in policy.slot_plan(now).items() if heap}
    if not plan:
        return None
    horizon = max(max(heap) for heap in plan.values())
    for target in policy.pending:
        best: str | None = None
        best_end = 0.0
        for name, heap in plan.items():
            if not policy.buildable_by(name, target):
                continue
            end = heap[0] + cost(target) / policy.executors[name].speed
            if best is None or end < best_end:
                best, best_end = name, end
        if best is not None:
            heapq.heapreplace(plan[best], best_end)
            horizon = max(horizon, best_end)
    return max(0.0, (horizon - now) * scale)
