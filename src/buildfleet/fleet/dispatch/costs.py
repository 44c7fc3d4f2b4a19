"""How long each board takes, and how fast each machine is, learned from earlier runs.

The dispatcher serves the pool longest-expected-first and places a board on the
executor expected to finish it earliest; both need numbers. Every result in the
output tree already records its ``duration`` (seconds, decimal) and, for remote
builds, the ``host`` that built it, so the history is free: this module reads
it once at start-up (one ``os.scandir`` per directory, one open per file, no
stat storms: a world tree is 1,500 boards × N commits) and fits

    duration(board, host) ≈ cost(board) / speed(host)

in log space, with the fastest known host normalised to speed 1.0. A board
never seen falls back to the median of its arch, then of all boards, then 1.0.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from buildfleet.errors import InfraError
from buildfleet.model import Board, BuildJob
from buildfleet.results.paths import is_commit_dir

DEFAULT_COST = 1.0
"""Seconds per board-commit assumed when there is no history at all."""

LOCAL_HOST = ""
"""Host key of results without a ``host`` file (built by the boss itself)."""

_FIT_ROUNDS = 200
_FIT_TOLERANCE = 1e-9


class CostCacheError(InfraError, ValueError):
    """A cost cache file that cannot be read as one."""


@dataclass(frozen=True)
class Sample:
    """One recorded build: a board at one commit took ``seconds`` on ``host``."""

    target: str
    host: str
    seconds: float


@dataclass
class CostModel:
    """Expected seconds per board-commit on a speed-1.0 host, and host speeds.

    ``board_seconds`` maps a target to its cost on the fastest known host;
    ``board_arch`` the arch of targets with history (for the arch fallback);
    ``host_speed`` maps a host name (``""`` for local results) to its
    relative speed (1.0 = fastest known; 0.5 = takes twice as long).
    """

    board_seconds: dict[str, float] = field(default_factory=dict)
    board_arch: dict[str, str] = field(default_factory=dict)
    host_speed: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._arch_median: dict[str, float] = {}
        by_arch: dict[str, list[float]] = defaultdict(list)
        for target, secs in self.board_seconds.items():
            arch = self.board_arch.get(target)
            if arch:
                by_arch[arch].append(secs)
        for arch, values in by_arch.items():
            self._arch_median[arch] = statistics.median(values)
        self._all_median = (statistics.median(self.board_seconds.values())
                            if self.board_seconds else DEFAULT_COST)

    # -- queries --------------------------------------------------------------
    @property
    def empty(self) -> bool:
        return not self.board_seconds

    def estimate(self, board: Board) -> float:
        """Seconds one commit of ``board`` takes on a speed-1.0 host."""
        known = self.board_seconds.get(board.target)
        if known is not None:
            return known
        by_arch = self._arch_median.get(board.arch)
        if by_arch is not None:
            return by_arch
        return self._all_median

    def job_cost(self, job: BuildJob) -> float:
        """Seconds the whole job (all its commits) takes on a speed-1.0 host."""
        return self.estimate(job.board) * max(1, len(job.commits))

    def speed(self, host: str, default: float = 1.0) -> float:
        """Relative speed of ``host``; ``default`` when it never built anything."""
        return self.host_speed.get(host, default)

    # -- building -------------------------------------------------------------
    @classmethod
    def from_samples(cls, samples: Iterable[Sample],
                     arch_of: Mapping[str, str] | None = None) -> CostModel:
        """Fit board costs and host speeds to recorded durations.

        Alternating least squares on ``log d = log cost(board) - log speed(host)``;
        boards built on several hosts tie the hosts' speeds together.
        """
        per_board: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for s in samples:
            if s.seconds > 0 and math.isfinite(s.seconds):
                per_board[s.target][s.host].append(math.log(s.seconds))
        if not per_board:
            return cls(board_arch=dict(arch_of or {}))
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
                   host_speed={h: math.exp(v) for h, v in log_speed.items()})

    # -- cache ----------------------------------------------------------------
    def to_dict(self) -> dict[str, object]:
        return {"version": 1,
                "board_seconds": {k: round(v, 3) for k, v in sorted(self.board_seconds.items())},
                "board_arch": dict(sorted(self.board_arch.items())),
                "host_speed": {k: round(v, 4) for k, v in sorted(self.host_speed.items())}}

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), separators=(",", ":")) + "\n")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> CostModel:
        """Read a cache written by :meth:`save`; raises CostCacheError if it is not one."""
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CostCacheError(f"cannot read cost cache {path}: {exc}") from exc
        try:
            if not isinstance(data, dict) or data.get("version") != 1:
                raise TypeError("unknown version")
            return cls(board_seconds={str(k): float(v) for k, v in data["board_seconds"].items()},
                       board_arch={str(k): str(v) for k, v in data["board_arch"].items()},
                       host_speed={str(k): float(v) for k, v in data["host_speed"].items()})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CostCacheError(f"cost cache {path} is malformed: {exc}") from exc


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


# -- reading the output tree ---------------------------------------------------
def _read_small(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(256)
    except OSError:
        return None


def _scan_targets(commit_path: str, out: list[Sample]) -> None:
    """Collect the samples of every board directory directly under ``commit_path``."""
    try:
        entries = list(os.scandir(commit_path))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        text = _read_small(os.path.join(entry.path, "duration"))
        if text is None:
            continue
        try:
            seconds = float(text.strip())
        except ValueError:
            continue
        host_text = _read_small(os.path.join(entry.path, "host"))
        host = host_text.strip() if host_text else LOCAL_HOST
        out.append(Sample(entry.name, host, seconds))


def scan_history(output_root: Path) -> list[Sample]:
    """Every (target, host, duration) recorded under ``output_root``.

    Understands ``<root>/<branch>/<NN>_g<hash>_<subj>/<target>/``,
    ``<root>/current/<target>/`` and the ``-N`` layout
    ``<root>/<NN>_g.../<target>/``. Directories without a ``duration`` file
    (buildman's own results) are skipped.
    """
    samples: list[Sample] = []
    try:
        top = list(os.scandir(output_root))
    except OSError:
        return samples
    for entry in top:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        if is_commit_dir(entry.name):
            _scan_targets(entry.path, samples)
            continue
        try:
            children = list(os.scandir(entry.path))
        except OSError:
            continue
        has_commit_dirs = False
        for child in children:
            if child.is_dir(follow_symlinks=False) and is_commit_dir(child.name):
                has_commit_dirs = True
                _scan_targets(child.path, samples)
        if not has_commit_dirs:
            # A current-source base (<root>/current/<target>/) holds boards directly.
            _scan_targets(entry.path, samples)
    return samples


def load_history(output_root: Path, boards: Iterable[Board] = ()) -> CostModel:
    """The cost model of every earlier result under ``output_root``.

    ``boards`` (the board database) supplies each target's arch for the
    per-arch fallback; history of targets not in it still counts for the
    all-boards median and for host speeds.
    """
    arch_of = {b.target: b.arch for b in boards}
    return CostModel.from_samples(scan_history(output_root), arch_of)
