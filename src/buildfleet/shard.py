"""``--shard K/N``: one of N cost-balanced, disjoint parts of a selection.

A CI system runs N jobs of one pipeline on N runners that share nothing but
the source tree and the files the pipeline hands them. Each job must work out
by itself which boards are its own, and the N answers must fit together:
every selected board in exactly one shard. So the split is a pure function of
(selected boards, expected costs, N), computed identically by every job:

- costs are turned into integer milliseconds first, so that loads are sums
  of integers and no runner's floating point or libm can tip a comparison;
- boards are placed longest-first, each on the currently lightest shard
  (ties: the lower shard number; equal costs: the target name), the greedy
  rule whose largest part is within 4/3 of the best possible and, with many
  boards per shard, within one board's cost of the mean;
- the cost data must be the same on every runner: the caller passes the
  board database's priors or a ``--costs`` file, never a runner's own
  history (a warm runner would split differently from a cold one).

Each sharded run leaves ``<base>/.buildfleet-shard.json`` naming its shard,
N and a digest of the split, so that a summary over the N output trees can
name the shards that are missing and notice trees split differently.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from buildfleet.errors import UserError
from buildfleet.model import Board

SHARD_FILE = ".buildfleet-shard.json"
SHARD_FORMAT = "buildfleet-shard"
SHARD_VERSION = 1
_SPEC_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
MAX_SHARDS = 10_000


class ShardError(UserError, ValueError):
    """A ``--shard`` value that is not ``K/N`` with 1 <= K <= N."""


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` (1-based, as users and CI matrices count) of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        """``"2/5"`` -> ShardSpec(2, 5); raises ShardError with a one-line reason."""
        m = _SPEC_RE.match(text)
        if not m:
            raise ShardError(f"--shard {text!r}: expected K/N, for example 2/5")
        index, count = int(m.group(1)), int(m.group(2))
        if not 1 <= count <= MAX_SHARDS:
            raise ShardError(f"--shard {text!r}: N must be between 1 and {MAX_SHARDS}")
        if not 1 <= index <= count:
            raise ShardError(f"--shard {text!r}: K must be between 1 and N ({count})")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def millis(seconds: float) -> int:
    """A cost as whole milliseconds, at least 1 (a board is never free)."""
    if not math.isfinite(seconds) or seconds <= 0:
        return 1
    return max(1, round(seconds * 1000.0))


@dataclass(frozen=True)
class Split:
    """Every shard's boards (in selection order) and expected milliseconds."""

    shards: tuple[tuple[Board, ...], ...]
    loads: tuple[int, ...]
    digest: str
    """sha256 over (N, every board's shard and cost): equal digests, equal split."""

    def shard(self, spec: ShardSpec) -> tuple[Board, ...]:
        return self.shards[spec.index - 1]

    def load(self, spec: ShardSpec) -> int:
        return self.loads[spec.index - 1]


def split_boards(boards: Sequence[Board], cost: Callable[[Board], float], count: int) -> Split:
    """Split ``boards`` into ``count`` disjoint shards that cover them all.

    ``cost`` gives a board's expected seconds (any unit: only ratios matter).
    Deterministic: the result depends only on the targets, their costs in
    integer milliseconds and ``count``, not on the order of ``boards``.
    Raises ShardError if a target appears twice.
    """
    if count < 1:
        raise ShardError("the number of shards must be at least 1")
    by_target: dict[str, Board] = {}
    for board in boards:
        if board.target in by_target:
            raise ShardError(f"board {board.target} is selected twice")
        by_target[board.target] = board
    weights = {t: millis(cost(b)) for t, b in by_target.items()}
    heap = [(0, i) for i in range(count)]
    owner: dict[str, int] = {}
    for target in sorted(by_target, key=lambda t: (-weights[t], t)):
        load, i = heapq.heappop(heap)
        owner[target] = i
        heapq.heappush(heap, (load + weights[target], i))
    loads = [0] * count
    for target, i in owner.items():
        loads[i] += weights[target]
    shards = tuple(tuple(b for b in boards if owner[b.target] == i) for i in range(count))
    h = hashlib.sha256(f"{SHARD_FORMAT} {count}\n".encode())
    for target in sorted(owner):
        h.update(f"{target} {owner[target]} {weights[target]}\n".encode())
    return Split(shards, tuple(loads), h.hexdigest())


# -- the marker a sharded run leaves in its output tree ----------------------------
@dataclass(frozen=True)
class ShardMark:
    """What ``.buildfleet-shard.json`` says about the tree it sits in."""

    base: Path
    spec: ShardSpec
    digest: str
    boards: int


def write_mark(base: Path, spec: ShardSpec, split: Split) -> None:
    """Record which shard ``base`` holds (written before building, atomically)."""
    base.mkdir(parents=True, exist_ok=True)
    doc = {"format": SHARD_FORMAT, "version": SHARD_VERSION, "shard": spec.index,
           "of": spec.count, "digest": split.digest, "boards": len(split.shard(spec))}
    tmp = base / (SHARD_FILE + ".tmp")
    tmp.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    tmp.replace(base / SHARD_FILE)


def read_mark(base: Path) -> ShardMark | None:
    """The marker of ``base``; None if there is none or it is not one (then: not sharded)."""
    try:
        doc = json.loads((base / SHARD_FILE).read_text(encoding="utf-8"))
        if doc.get("format") != SHARD_FORMAT or doc.get("version") != SHARD_VERSION:
            return None
        spec = ShardSpec(int(doc["shard"]), int(doc["of"]))
        if not 1 <= spec.index <= spec.count:
            return None
        return ShardMark(base, spec, str(doc["digest"]), int(doc["boards"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def shard_problems(bases: Iterable[Path]) -> list[str]:
    """One line per problem of a set of output trees read as one run.

    Names every shard of an N-way split that no tree holds, every shard held
    twice, and trees split with different cost data or selections (whose
    boards may then be missing or doubled). Trees without a marker (unsharded
    runs) raise nothing.
    """
    marks = [m for m in (read_mark(b) for b in bases) if m is not None]
    if not marks:
        return []
    problems: list[str] = []
    counts = sorted({m.spec.count for m in marks})
    if len(counts) > 1:
        problems.append("the output directories hold shards of different splits (N = "
                        + ", ".join(str(c) for c in counts) + ")")
    digests = {m.digest for m in marks}
    if len(digests) > 1:
        problems.append("the shards were split with different boards or cost data: "
                        "boards may be missing or built twice")
    for count in counts:
        held: dict[int, list[Path]] = {}
        for m in marks:
            if m.spec.count == count:
                held.setdefault(m.spec.index, []).append(m.base)
        missing = [k for k in range(1, count + 1) if k not in held]
        if missing:
            problems.append(f"missing shard{'s' if len(missing) > 1 else ''} "
                            + ", ".join(f"{k}/{count}" for k in missing)
                            + ": no output directory given holds "
                            + ("them" if len(missing) > 1 else "it")
                            + (" (their boards show as not built)" if len(missing) > 1
                               else " (its boards show as not built)"))
        for k, paths in sorted(held.items()):
            if len(paths) > 1:
                problems.append(f"shard {k}/{count} is in more than one output directory: "
                                + ", ".join(str(p) for p in paths)
                                + " (the first one given is used)")
    return problems
