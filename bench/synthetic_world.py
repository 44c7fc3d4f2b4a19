"""A synthetic U-Boot world for the benchmarks: boards, their defconfig traits, true costs.

``bench/dispatch_sim.py`` and ``bench/shard_balance.py`` need a world build's
worth of boards whose costs are heavy-tailed *and* structured the way a real
tree's are: boards of one SoC are alike, and what the board database says
(arch, SPL/TPL, defconfig length) predicts part of the cost, not all of it.
Durations are drawn, seeded, as

    seconds = 60 x arch x soc x phases x size x noise

- ``arch``: archs in U-Boot's proportions (arm 55 %, aarch64 20 %, ...); an
  arch's true weight is the prior's table weight (``ARCH_WEIGHT``) times
  lognormal(0, 0.25): the table is off by about a quarter, as a guess is;
- ``soc``: each arch has one SoC per ~25 of its boards, board counts uneven
  (a board picks SoC k with weight 1/k); each SoC's factor is lognormal(0,
  0.35), and two small SoCs are heavy (x3.5 to x4.5: think of SoCs whose boards
  link dozens of device trees or pack firmware blobs): their boards are the
  tail, about ten times the median, and nothing in the board database
  tells them apart;
- ``phases``: 45 % of boards build SPL (+50 %), a tenth of those TPL too
  (+25 %); the prior assumes +40 % and +20 %;
- ``size``: defconfig lines lognormal(median 40, sigma 0.35); the true factor
  is 0.5 + lines/80, the prior's 0.6 + lines/100;
- ``noise``: lognormal(0, 0.15) per board, so boards of one SoC agree
  within about 15 %.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from buildfleet.fleet.dispatch.priors import ARCH_WEIGHT, BoardTraits
from buildfleet.model import Board

ARCHS = [("arm", 0.55), ("aarch64", 0.2), ("riscv", 0.08), ("powerpc", 0.07),
         ("x86", 0.05), ("mips", 0.03), ("sandbox", 0.02)]
CPU = {"arm": "armv7", "aarch64": "armv8", "riscv": "generic", "powerpc": "mpc85xx",
       "x86": "i386", "mips": "mips32", "sandbox": "sandbox"}
BOARDS_PER_SOC = 25
HEAVY_SOCS = 2


@dataclass
class World:
    """Boards in list order, their defconfig traits and true seconds (speed 1.0)."""

    boards: list[Board]
    traits: dict[str, BoardTraits]
    work: dict[str, float]
    heavy: list[str]
    """The SoCs drawn heavy (for the benchmark's description line)."""


def make_world(n: int, seed: int) -> World:
    rng = random.Random(seed)
    names = [a for a, _ in ARCHS]
    weights = [w for _, w in ARCHS]
    arch_true = {a: ARCH_WEIGHT.get(a, 1.0) * rng.lognormvariate(0.0, 0.25) for a in names}
    socs: dict[str, list[str]] = {}
    soc_factor: dict[str, float] = {}
    for arch, share in ARCHS:
        count = max(1, round(n * share / BOARDS_PER_SOC))
        socs[arch] = [f"{arch}-soc{k}" for k in range(count)]
        for soc in socs[arch]:
            soc_factor[soc] = rng.lognormvariate(0.0, 0.35)
    # Heavy SoCs: small ones (rank 3 and beyond) of the big archs.
    candidates = [s for a in ("arm", "aarch64") for s in socs[a][3:]]
    heavy = rng.sample(candidates, k=min(HEAVY_SOCS, len(candidates)))
    for soc in heavy:
        soc_factor[soc] = rng.uniform(3.5, 4.5)
    boards: list[Board] = []
    traits: dict[str, BoardTraits] = {}
    work: dict[str, float] = {}
    for i in range(n):
        arch = rng.choices(names, weights)[0]
        choices = socs[arch]
        soc = rng.choices(choices, [1.0 / (k + 1) for k in range(len(choices))])[0]
        target = f"{soc}_board{i:04d}"
        phases: set[str] = set()
        factor = 1.0
        if rng.random() < 0.45:
            phases.add("CONFIG_SPL")
            factor *= 1.5
            if rng.random() < 0.1:
                phases.add("CONFIG_TPL")
                factor *= 1.25
        lines = max(3, round(40 * rng.lognormvariate(0.0, 0.35)))
        size = 0.5 + lines / 80
        work[target] = (60.0 * arch_true[arch] * soc_factor[soc] * factor * size
                        * rng.lognormvariate(0.0, 0.15))
        boards.append(Board(target, arch, cpu=CPU[arch], soc=soc, vendor=soc.split("-")[0]))
        traits[target] = BoardTraits(frozenset(phases), lines)
    return World(boards, traits, work, heavy)
