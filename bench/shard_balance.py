"""How even ``--shard K/N`` cuts a world build for N parallel CI jobs.

1,500 boards of ``synthetic_world`` (heavy-tailed costs, boards of one
SoC/arch alike; its docstring says how they are drawn), N = 29 as in U-Boot's
Azure pipeline. For each way of splitting, the most expensive shard / the
mean shard, in true cost (a CI pipeline waits for its slowest job):

- ``--shard`` with history: the costs an earlier run measured (true +-10 %),
  as ``--costs FILE`` carries them to the runners;
- ``--shard`` with priors only: what the board database says, no history;
- hand-kept lists: boards in arch, SoC and name order cut into 29 lists of
  equal board counts (how lists like ``am33xx_kirkwood``, ``sun8i`` are
  written by hand, counting boards, at their most even);
- by arch name alone: one list per arch, N jobs taking them round-robin.

Ratios come last, the one with history on the last line. Goal: <= 1.05.

Usage: python3 bench/shard_balance.py [--boards N] [--shards N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from buildfleet.fleet.dispatch.costs import CostModel, Sample
from buildfleet.model import Board
from buildfleet.shard import split_boards
from synthetic_world import World, make_world


def ratio(shards: list[list[Board]], work: dict[str, float]) -> tuple[float, float, float]:
    """(max shard / mean shard, max shard seconds, mean shard seconds) in true cost."""
    loads = [sum(work[b.target] for b in s) for s in shards]
    mean = sum(loads) / len(loads)
    return max(loads) / mean, max(loads), mean


def by_cost(world: World, model: CostModel, n: int) -> list[list[Board]]:
    return [list(s) for s in split_boards(world.boards, model.estimate, n).shards]


def hand_lists(world: World, n: int) -> list[list[Board]]:
    """Boards in (arch, SoC, name) order, cut into ``n`` runs of equal board counts.

    The most generous model of hand-kept lists: equal board counts, big SoCs
    split by board name, as U-Boot's lists split ``arm`` by SoC and vendor.
    """
    ordered = sorted(world.boards, key=lambda b: (b.arch, b.soc, b.target))
    return [ordered[len(ordered) * i // n:len(ordered) * (i + 1) // n] for i in range(n)]


def by_arch(world: World, n: int) -> list[list[Board]]:
    lists: list[list[Board]] = [[] for _ in range(n)]
    for i, arch in enumerate(sorted({b.arch for b in world.boards})):
        lists[i % n].extend(b for b in world.boards if b.arch == arch)
    return lists


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=1500)
    parser.add_argument("--shards", type=int, default=29)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    t0 = time.perf_counter()
    world = make_world(args.boards, args.seed)
    rng = random.Random(args.seed + 1)
    history = CostModel.from_samples(
        [Sample(b.target, "", world.work[b.target] * rng.uniform(0.9, 1.1))
         for b in world.boards], boards=world.boards, traits=world.traits)
    priors = CostModel.from_samples([], boards=world.boards, traits=world.traits)
    work = world.work
    print(f"{len(world.boards)} boards, {args.shards} shards; median board "
          f"{sorted(work.values())[len(work) // 2]:.0f} s, longest {max(work.values()):.0f} s, "
          f"all {sum(work.values()) / 3600:.1f} h")
    splits = {
        "by arch name": by_arch(world, args.shards),
        "hand-kept lists (equal counts)": hand_lists(world, args.shards),
        "--shard, priors only": by_cost(world, priors, args.shards),
        "--shard, with history": by_cost(world, history, args.shards),
    }
    results = {label: ratio(shards, work) for label, shards in splits.items()}
    for label, (_r, top, mean) in results.items():
        print(f"{label:30s} slowest job {top / 60:6.1f} min, mean job {mean / 60:6.1f} min")
    print(f"[{time.perf_counter() - t0:.1f}s cpu]")
    for label, (r, _top, _mean) in results.items():
        print(f"ratio max/mean {label:30s} {r:.3f}")
    return 0 if results["--shard, with history"][0] <= 1.05 else 1


if __name__ == "__main__":
    sys.exit(main())
