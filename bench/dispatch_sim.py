"""How close buildfleet's dispatch gets to the best possible world build.

Drives the real policies (``buildfleet.fleet.dispatch.policy``) with a simulated
clock: 1,500 boards of ``synthetic_world`` (heavy-tailed costs, boards of one
SoC/arch alike, two unknown heavy SoCs as the tail; its docstring says how
they are drawn) on a mixed fleet (1 x 64 + 2 x 32 + 1 x 8 slots and 16 local
slots, of different speeds, some archs only on some machines). Prints
makespan / lower bound, where the lower bound is
``max(total work / speed-weighted slots, longest board / fastest speed)``,
for first-come-first-served in list order, for the cost-aware policy cold
with no knowledge at all, cold with the board database's priors only (and
the refit from finished boards during the run), and warm (history = true
durations +-10 %), with hedging on and off. The ratios come last, the
cold one with priors on the last line.
Goals: warm <= 1.03, cold with priors <= 1.15.

Usage: python3 bench/dispatch_sim.py [--boards N] [--seed S]
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from buildfleet.fleet.dispatch.costaware import CostAwarePolicy
from buildfleet.fleet.dispatch.costs import CostModel, Sample
from buildfleet.fleet.dispatch.policy import FifoPolicy
from buildfleet.fleet.dispatch.simulate import SimMachine, SimResult, simulate
from buildfleet.model import BuildJob, Commit
from synthetic_world import World, make_world

FLEET = [
    SimMachine("big64", 64, 1.0),
    SimMachine("mid32a", 32, 1.0, frozenset({"arm", "aarch64", "riscv", "powerpc", "sandbox"})),
    SimMachine("mid32b", 32, 0.8, frozenset({"arm", "aarch64", "x86", "mips", "sandbox"})),
    SimMachine("small8", 8, 0.5, frozenset({"arm", "aarch64", "powerpc", "x86"})),
    SimMachine("local", 16, 0.9, frozenset({"arm", "aarch64", "mips", "sandbox", "riscv"})),
]


def jobs_of(world: World) -> list[BuildJob]:
    commit = (Commit(0, "0" * 40, "tip"),)
    return [BuildJob(b, commit) for b in world.boards]


def history(world: World, seed: int) -> CostModel:
    """An earlier run's durations (+-10 % noise), fitted as the real tree would be."""
    rng = random.Random(seed + 1)
    jobs, work = jobs_of(world), world.work
    samples = []
    for job in jobs:
        target = job.board.target
        able = [m for m in FLEET if m.can_build(job.board)]
        for m in rng.sample(able, k=min(len(able), 2 if rng.random() < 0.2 else 1)):
            noisy = work[target] / m.speed * rng.uniform(0.9, 1.1)
            samples.append(Sample(target, m.name, noisy))
    return CostModel.from_samples(samples, boards=world.boards, traits=world.traits)


def priors(world: World) -> CostModel:
    """What a first world build knows: the board database and its defconfigs."""
    return CostModel.from_samples([], boards=world.boards, traits=world.traits)


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
    world = make_world(args.boards, args.seed)
    jobs, work = jobs_of(world), world.work
    print(f"{len(jobs)} boards, median {sorted(work.values())[len(work) // 2]:.1f}s, "
          f"longest {max(work.values()):.1f}s, heavy SoCs {', '.join(world.heavy)}; fleet "
          + ", ".join(f"{m.name} {m.slots}x{m.speed}" for m in FLEET))
    print("fitted speeds: " + ", ".join(
        f"{h} {s:.2f}" for h, s in sorted(history(world, args.seed).host_speed.items())))
    runs = [
        ("fifo (list order)", lambda: FifoPolicy(), False),
        ("cold, nothing known", lambda: CostAwarePolicy(CostModel(), hedging=False), False),
        ("warm, no hedging", lambda: CostAwarePolicy(history(world, args.seed),
                                                     hedging=False), False),
        ("warm, hedging", lambda: CostAwarePolicy(history(world, args.seed)), True),
        ("cold, priors, no hedging", lambda: CostAwarePolicy(priors(world), hedging=False),
         False),
        ("cold, priors, hedging", lambda: CostAwarePolicy(priors(world)), True),
    ]
    results = {label: run(label, make(), jobs, work, hedge) for label, make, hedge in runs}
    lb = next(iter(results.values())).lower_bound
    print(f"lower bound {lb:.1f}s")
    for label, res in results.items():
        print(f"ratio {label:26s} {res.ratio:.3f}")
    met = (results["warm, hedging"].ratio <= 1.03
           and results["cold, priors, hedging"].ratio <= 1.15)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
