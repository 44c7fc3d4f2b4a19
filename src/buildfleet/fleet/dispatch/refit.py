"""What a run learns while it runs: board costs from finished boards, machine speeds.

A first world build starts from priors that are off by a factor for some SoCs
and knows nothing of its machines' speeds. Both are learned from the run
itself, cheaply enough for the boss's thread:

- every board that finishes goes into the cost model (``observe``), so its
  SoC, CPU and arch siblings still in the pool are estimated from it;
- a board still building that has overrun its estimate is evidence too
  (``observe_running``): a heavy SoC shows itself long before its first
  board finishes;
- with no machine speed known at all, machine speeds are fitted to the
  finished boards: ``log(seconds / prior) = log cost(SoC) - log speed(machine)``
  by alternating least squares (boards of one SoC tie the machines that
  built them together), the fastest machine 1.0.

The policy asks :meth:`RunLearner.due` before each hand-out; a refit is one
pass over the pool and the boards in flight, done when the finished boards
grew by an eighth since the last refit (after each of the first eight): a few
dozen passes in a world build, most of them early, when each board tells the
most.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from buildfleet.fleet.dispatch.costs import CostModel
from buildfleet.model import Board

MIN_SPEED_SAMPLES = 4
"""Finished boards a machine needs before its speed is learned from them."""

SPEED_ROUNDS = 30


@dataclass
class RunLearner:
    """The refit state of one run. ``learn_speeds``: no machine speed was known."""

    costs: CostModel
    learn_speeds: bool = False
    observed: int = 0
    refitted_at: int = 0
    speed_samples: list[tuple[tuple[str, ...], str, float]] = field(default_factory=list)
    """(board's narrowest group, machine, log(seconds per commit / prior)) per finished board."""

    def finished(self, name: str, board: Board, commits: int, seconds: float,
                 speed: float, failed: bool = False) -> None:
        """``name`` (believed ``speed``) built ``commits`` commits of ``board`` in ``seconds``.

        ``failed``: a make failed, so it stopped early: its time is a lower
        bound, learned only where it exceeds the estimate (a board that
        fails at once says nothing of what its SoC siblings cost), and never
        taken as a machine-speed sample.
        """
        if seconds <= 0 or not math.isfinite(seconds):
            return
        per_commit = seconds / max(1, commits)
        if failed and per_commit * speed <= self.costs.estimate(board):
            return
        self.costs.observe(board, per_commit * speed)
        self.observed += 1
        if self.learn_speeds and not failed:
            self.speed_samples.append((self.costs.group_of(board), name,
                                       math.log(per_commit / self.costs.prior(board))))

    def due(self) -> bool:
        return self.observed - self.refitted_at >= max(1, self.refitted_at // 8)

    def refit(self, building: Iterable[tuple[Board, float]]) -> dict[str, float]:
        """Take the boards in flight (board, speed-1.0 seconds per commit so far) into
        account; returns the machine speeds learned (empty unless learning them)."""
        self.refitted_at = self.observed
        self.costs.refit()
        self.costs.observe_running(building)
        if not self.learn_speeds:
            return {}
        return self._fit_speeds()

    def _fit_speeds(self) -> dict[str, float]:
        # Only groups built on two machines or more compare machines; a machine
        # needs a few boards in them before its speed means anything.
        hosts_of: dict[tuple[str, ...], set[str]] = defaultdict(set)
        for group, host, _v in self.speed_samples:
            hosts_of[group].add(host)
        shared = [s for s in self.speed_samples if len(hosts_of[s[0]]) > 1]
        per_host: dict[str, int] = defaultdict(int)
        for _group, host, _v in shared:
            per_host[host] += 1
        samples = [s for s in shared if per_host[s[1]] >= MIN_SPEED_SAMPLES]
        hosts = sorted({h for _g, h, _v in samples})
        if len(hosts) < 2:
            return {}
        log_speed = dict.fromkeys(hosts, 0.0)
        for _ in range(SPEED_ROUNDS):
            sums: dict[tuple[str, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
            for group, host, v in samples:
                acc = sums[group]
                acc[0] += v + log_speed[host]
                acc[1] += 1
            log_cost = {g: total / n for g, (total, n) in sums.items()}
            host_sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
            for group, host, v in samples:
                acc = host_sums[host]
                acc[0] += log_cost[group] - v
                acc[1] += 1
            log_speed = {h: total / n for h, (total, n) in host_sums.items()}
            top = max(log_speed.values())
            log_speed = {h: v - top for h, v in log_speed.items()}
        return {h: math.exp(v) for h, v in log_speed.items()}

    def scouts(self, pending: Iterable[str], board_of: dict[str, Board]) -> set[str]:
        """The first board (in ``pending`` order) of each group nothing has measured.

        Started first, they cost nothing (an early start never lengthens a
        run) and measure each unknown SoC as early as possible.
        """
        groups: set[tuple[str, ...]] = set()
        out: set[str] = set()
        for target in pending:
            board = board_of[target]
            if not self.costs.charted(board):
                group = self.costs.group_of(board)
                if group not in groups:
                    groups.add(group)
                    out.add(target)
        return out
