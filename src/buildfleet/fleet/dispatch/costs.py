"""How long each board takes, and how fast each machine is, learned from earlier runs.

The dispatcher serves the pool longest-expected-first and places a board on the
executor expected to finish it earliest; both need numbers. Every result in the
output tree already records its ``duration`` (seconds, decimal) and, for remote
builds, the ``host`` that built it, so the history is free: ``results.history``
reads it once at start-up and this module fits

    duration(board, host) ≈ cost(board) / speed(host)

in log space, with the fastest known host normalised to speed 1.0. A board
never seen falls back to the median of its arch, then of all boards, then 1.0.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from buildfleet.fleet.dispatch.priors import BoardTraits, prior_seconds
from buildfleet.model import Board, BuildJob
from buildfleet.results.history import Sample, scan_history

DEFAULT_COST = 1.0
"""Seconds per board-commit assumed when there is no history at all."""

PARENT_WEIGHT = 0.25
"""How many boards' worth a parent group's median counts in a SoC's or CPU's."""

_FIT_ROUNDS = 200
_FIT_TOLERANCE = 1e-9




@dataclass
class CostModel:
    """Expected seconds per board-commit on a speed-1.0 host, and host speeds.

    ``board_seconds`` maps a target to its cost on the fastest known host;
    ``board_arch`` the arch of targets with history (for the arch fallback);
    ``host_speed`` maps a host name (``LOCAL`` for local results) to its
    relative speed (1.0 = fastest known; 0.5 = takes twice as long).

    A board without history is estimated from boards like it: its prior
    (``traits`` set: :mod:`buildfleet.fleet.dispatch.priors`, else 1.0 for every
    board) times the median ratio measured/prior of the boards with history
    in its narrowest group, tried in the order SoC, CPU, arch, all boards.
    The SoC and CPU medians lean towards their parent group's by a quarter
    of one board's weight, so one odd board does not quite decide for its SoC. ``boards``
    (the board database) gives each target's arch, CPU and SoC.
    """

    board_seconds: dict[str, float] = field(default_factory=dict)
    board_arch: dict[str, str] = field(default_factory=dict)
    host_speed: dict[str, float] = field(default_factory=dict)
    boards: dict[str, Board] = field(default_factory=dict)
    traits: dict[str, BoardTraits] | None = None
    running: dict[str, float] = field(default_factory=dict)
    """Boards still building that overran their estimate, with what they are now
    expected to take per commit (counted like history until they finish)."""
    expected: dict[str, float] = field(default_factory=dict)
    """What each of those boards was expected to take when first seen building."""

    def __post_init__(self) -> None:
        self._scales: dict[tuple[str, ...], tuple[int, float]] | None = None
        self._stale = False

    # -- queries --------------------------------------------------------------
    @property
    def empty(self) -> bool:
        return not self.board_seconds

    @property
    def has_priors(self) -> bool:
        return self.traits is not None

    def prior(self, board: Board) -> float:
        """What the board database alone expects of ``board`` (1.0 without priors)."""
        if self.traits is None:
            return DEFAULT_COST
        return prior_seconds(board, self.traits.get(board.target))

    def estimate(self, board: Board) -> float:
        """Seconds one commit of ``board`` takes on a speed-1.0 host."""
        known = self.board_seconds.get(board.target)
        if known is not None:
            return known
        return self.prior(board) * self._scale(board)

    def observe(self, board: Board, seconds: float) -> None:
        """Learn that one commit of ``board`` took ``seconds`` on a speed-1.0 host.

        The refit during a run: boards of the same SoC, CPU or arch that have
        no history of their own are estimated anew from it.
        """
        if seconds > 0 and math.isfinite(seconds):
            self.board_seconds[board.target] = seconds
            self.boards.setdefault(board.target, board)
            self.running.pop(board.target, None)
            self.expected.pop(board.target, None)
            self._stale = True

    def refit(self) -> None:
        """Take every :meth:`observe` since the last refit into the group estimates.

        Until then a new measurement only answers for its own board: refitting
        is a pass over all measured boards, done in batches by the caller.
        """
        if self._stale:
            self._scales = None
            self._stale = False

    def observe_running(self, building: Iterable[tuple[Board, float]]) -> int:
        """Boards still building, each after so many seconds per commit (speed 1.0).

        A board counts as evidence only once it outruns what was expected of
        it: a board of an unknown, heavy SoC tells its siblings long before
        it finishes. All are judged against the estimates before the call.
        Returns how many boards changed the estimates.
        """
        updates: dict[str, tuple[Board, float]] = {}
        for board, seconds in building:
            target = board.target
            if target in self.board_seconds or not math.isfinite(seconds):
                continue
            expected = self.expected.setdefault(target, self.prior(board) * self._scale(board))
            if seconds <= expected:
                continue
            # A board that took r times what was expected of it and is still
            # building is expected to take r times more again (a heavy tail:
            # the longer it has run, the longer it will run).
            guess = seconds * (seconds / expected)
            if guess > self.running.get(target, 0.0):
                updates[target] = (board, guess)
        for target, (board, seconds) in updates.items():
            self.running[target] = seconds
            self.boards.setdefault(target, board)
        if updates:
            self._scales = None
        return len(updates)

    def group_of(self, board: Board) -> tuple[str, ...]:
        """The narrowest group of ``board`` (its SoC, else CPU, else arch)."""
        return _group_keys(board)[-1]

    def charted(self, board: Board) -> bool:
        """True if ``board`` or a board of its narrowest group (SoC, CPU, arch) has history."""
        if board.target in self.board_seconds:
            return True
        if self._scales is None:
            self._scales = self._fit_scales()
        return _group_keys(board)[-1] in self._scales

    def _info(self, target: str) -> Board | None:
        board = self.boards.get(target)
        if board is None and target in self.board_arch:
            board = Board(target, self.board_arch[target])
        return board

    def _scale(self, board: Board) -> float:
        """Measured/prior of the boards like ``board`` (1.0 when nothing is measured)."""
        if self._scales is None:
            self._scales = self._fit_scales()
        best = self._scales.get((), (0, 1.0))[1]
        for key in _group_keys(board):
            found = self._scales.get(key)
            if found is None:
                break
            n, median = found
            # SoC and CPU groups lean towards their parent by a quarter board.
            best = median if len(key) == 2 else (n * median + PARENT_WEIGHT * best) / (
                n + PARENT_WEIGHT)
        return best

    def _fit_scales(self) -> dict[tuple[str, ...], tuple[int, float]]:
        ratios: dict[tuple[str, ...], list[float]] = defaultdict(list)
        measured = {**self.running, **self.board_seconds}
        for target in sorted(measured):
            secs = measured[target]
            info = self._info(target)
            if info is None:
                ratios[()].append(secs / self.prior(Board(target, "")))
                continue
            ratio = secs / self.prior(info)
            ratios[()].append(ratio)
            for key in _group_keys(info):
                ratios[key].append(ratio)
        return {k: (len(v), statistics.median(v)) for k, v in ratios.items()}

    def job_cost(self, job: BuildJob) -> float:
        """Seconds the whole job (all its commits) takes on a speed-1.0 host."""
        return self.estimate(job.board) * max(1, len(job.commits))

    def speed(self, host: str, default: float = 1.0) -> float:
        """Relative speed of ``host``; ``default`` when it never built anything."""
        return self.host_speed.get(host, default)

    # -- building -------------------------------------------------------------
    @classmethod
    def from_samples(cls, samples: Iterable[Sample],
                     arch_of: Mapping[str, str] | None = None, *,
                     boards: Iterable[Board] = (),
                     traits: Mapping[str, BoardTraits] | None = None) -> CostModel:
        """Fit board costs and host speeds to recorded durations.

        Alternating least squares on ``log d = log cost(board) - log speed(host)``;
        boards built on several hosts tie the hosts' speeds together.
        ``boards`` (the board database) and ``traits`` (their defconfigs'
        traits, which switch the priors on) serve boards without history.
        """
        database = {b.target: b for b in boards}
        prior_traits = dict(traits) if traits is not None else None
        per_board: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for s in samples:
            if s.seconds > 0 and math.isfinite(s.seconds):
                per_board[s.target][s.host].append(math.log(s.seconds))
        if not per_board:
            return cls(board_arch=dict(arch_of or {}), boards=database, traits=prior_traits)
        # One log-duration per (board, host): the median over its commits.
        obs: dict[str, dict[str, float]] = {
            b: {h: statistics.median(v) for h, v in hosts.items()}
            for b, hosts in per_board.items()
        }
        by_host: dict[str, list[tuple[str, float]]] = defaultdict(list)
        for b, per in obs.items():
            for h, v in per.items():
                by_host[h].append((b, v))
        hosts = sorted(by_host)
        groups = _linked_hosts(obs)
        log_speed = dict.fromkeys(hosts, 0.0)
        log_cost: dict[str, float] = {}
        for _ in range(_FIT_ROUNDS):
            before = dict(log_speed)
            for b, per in obs.items():
                log_cost[b] = sum(v + log_speed[h] for h, v in per.items()) / len(per)
            for h, seen in by_host.items():
                log_speed[h] = sum(log_cost[b] - v for b, v in seen) / len(seen)
            # Hosts that never built a common board cannot be compared: the
            # fastest of each linked group is 1.0.
            for group in groups:
                top = max(log_speed[h] for h in group)
                for h in group:
                    log_speed[h] -= top
            if max(abs(log_speed[h] - before[h]) for h in hosts) < _FIT_TOLERANCE:
                break
        for b, per in obs.items():
            log_cost[b] = sum(v + log_speed[h] for h, v in per.items()) / len(per)
        arch = {t: a for t, a in (arch_of or {}).items() if t in obs}
        return cls(board_seconds={b: math.exp(v) for b, v in log_cost.items()},
                   board_arch=arch,
                   host_speed={h: math.exp(v) for h, v in log_speed.items()},
                   boards=database, traits=prior_traits)


def _group_keys(board: Board) -> list[tuple[str, ...]]:
    """The groups ``board`` belongs to, widest first: arch, CPU, SoC."""
    keys: list[tuple[str, ...]] = [("arch", board.arch)]
    if board.cpu:
        keys.append(("cpu", board.arch, board.cpu))
    if board.soc:
        keys.append(("soc", board.arch, board.cpu, board.soc))
    return keys


def _linked_hosts(obs: Mapping[str, Mapping[str, float]]) -> list[list[str]]:
    """Groups of hosts tied together by boards built on more than one of them."""
    parent: dict[str, str] = {}

    def root(h: str) -> str:
        while parent.setdefault(h, h) != h:
            parent[h] = parent[parent[h]]
            h = parent[h]
        return h

    for per in obs.values():
        first, *rest = per
        for h in rest:
            parent[root(h)] = root(first)
        root(first)
    groups: dict[str, list[str]] = defaultdict(list)
    for h in sorted(parent):
        groups[root(h)].append(h)
    return list(groups.values())


def load_history(output_root: Path, boards: Iterable[Board] = ()) -> CostModel:
    """The cost model of every earlier result under ``output_root``.

    ``boards`` (the board database) supplies each target's arch for the
    per-arch fallback; history of targets not in it still counts for the
    all-boards median and for host speeds.
    """
    arch_of = {b.target: b.arch for b in boards}
    return CostModel.from_samples(scan_history(output_root), arch_of)
