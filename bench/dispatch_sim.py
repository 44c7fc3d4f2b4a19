"""How close buildfleet's dispatch gets to the best possible world build.

Drives the real policies (``buildfleet.fleet.dispatch.policy``) with a simulated
clock: 1,500 boards with heavy-tailed durations (seeded lognormal, plus a few
boards ten times the median) on a mixed fleet (1 × 64 + 2 × 32 + 1 × 8 slots
and 16 local slots, of different speeds, some archs only on some machines).
Prints makespan ÷ lower bound, where the lower bound is
``max(total work / speed-weighted slots, longest board / fastest speed)``,
for first-come-first-served in list order and for the cost-aware policy cold
(no history) and warm (history = true durations ±10 %), with hedging on and
off. The ratios come last. Goal: warm ≤ 1.03.

Usage: python3 bench/dispatch_sim.py [--boards N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from buildfleet.fleet.dispatch.costs import CostModel, Sample
from buildfleet.fleet.dispatch.policy import CostAwarePolicy, FifoPolicy
from buildfleet.fleet.dispatch.simulate import SimMachine, SimResult, simulate
from buildfleet.model import Board, BuildJob, Commit

ARCHS = [("arm", 0.55), ("aarch64", 0.2), ("riscv", 0.08), ("powerpc", 0.07),
         ("x86", 0.05), ("mips", 0.03), ("sandbox", 0.02)]

FLEET = [
    SimMachine("big64", 64, 1.0),
    SimMachine("mid32a", 32, 1.0, frozenset({"arm", "aarch64", "riscv", "powerpc", "sandbox"})),
    SimMachine("mid32b", 32, 0.8, frozenset({"arm", "aarch64", "x86", "mips", "sandbox"})),
    SimMachine("small8", 8, 0.5, frozenset({"arm", "aarch64", "powerpc", "x86"})),
    SimMachine("local", 16, 0.9, frozenset({"arm", "aarch64", "mips", "sandbox", "riscv"})),
]


def make_world(n: int, seed: int) -> tuple[list[BuildJob], dict[str, float]]:
    """``n`` boards in list order and their true seconds on a speed-1.0 machine."""
    rng = random.Random(seed)
    names = [a for a, _ in ARCHS]
    weights = [w for _, w in ARCHS]
    median = 60.0
    jobs: list[BuildJob] = []
    work: dict[str, float] = {}
    commit = (Commit(0, "0" * 40, "tip"),)
    for i in range(n):
        arch = rng.choices(names, weights)[0]
        target = f"{arch}_board{i:04d}"
        secs = median * rng.lognormvariate(0.0, 0.5)
        if rng.random() < 0.01:
            secs = median * rng.uniform(8.0, 11.0)  # a few monsters, ~10x the median
        work[target] = secs
        jobs.append(BuildJob(Board(target, arch), commit))
    return jobs, work


def history(jobs: list[BuildJob], work: dict[str, float], seed: int) -> CostModel:
    """An earlier run's durations (±10 % noise), fitted as the real tree would be."""
    rng = random.Random(seed + 1)
    samples = []
    for job in jobs:
        target = job.board.target
        able = [m for m in FLEET if m.can_build(job.board)]
        for m in rng.sample(able, k=min(len(able), 2 if rng.random() < 0.2 else 1)):
            noisy = work[target] / m.speed * rng.uniform(0.9, 1.1)
            samples.append(Sample(target, m.name, noisy))
    return CostModel.from_samples(samples, {j.board.target: j.board.arch for j in jobs})


def run(label: str, policy: FifoPolicy, jobs: list[BuildJob], work: dict[str, float],
        hedge: bool) -> SimResult:
    t0 = time.perf_counter()
    res = simulate(policy, FLEET, jobs, work, hedge=hedge)
    assert all(n == 1 for n in res.finished_calls.values()) and len(res.winners) == len(jobs)
    print(f"{label:28s} makespan {res.makespan:8.1f}s  {res.stats.summary_line()}"
          f"  [{time.perf_counter() - t0:.1f}s cpu]")
    return res


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    jobs, work = make_world(args.boards, args.seed)
    warm = history(jobs, work, args.seed)
    print(f"{len(jobs)} boards, median {sorted(work.values())[len(work) // 2]:.1f}s, "
          f"longest {max(work.values()):.1f}s; fleet "
          + ", ".join(f"{m.name} {m.slots}x{m.speed}" for m in FLEET))
    print("fitted speeds: " + ", ".join(f"{h} {s:.2f}" for h, s in sorted(warm.host_speed.items())))
    results = {
        "fifo (list order)": run("fifo (list order)", FifoPolicy(), jobs, work, False),
        "cold, no hedging": run("cold, no hedging", CostAwarePolicy(hedging=False),
                                jobs, work, False),
        "cold, hedging": run("cold, hedging", CostAwarePolicy(), jobs, work, True),
        "warm, no hedging": run("warm, no hedging", CostAwarePolicy(warm, hedging=False),
                                jobs, work, False),
        "warm, hedging": run("warm, hedging", CostAwarePolicy(warm), jobs, work, True),
    }
    lb = next(iter(results.values())).lower_bound
    print(f"lower bound {lb:.1f}s")
    for label, res in results.items():
        print(f"ratio {label:20s} {res.ratio:.3f}")
    return 0 if results["warm, hedging"].ratio <= 1.03 else 1


if __name__ == "__main__":
    sys.exit(main())
