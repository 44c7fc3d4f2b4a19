"""What a board should cost before it was ever built: priors from the board database.

A first world build has no history, yet longest-first dispatch and
cost-balanced shards need an order of magnitude per board. What the tree
itself says about a board is enough for an order:

- its arch (sandbox and x86 build far more code than a typical ARM board);
- which extra phases it builds: SPL, TPL and VPL each compile a second,
  smaller U-Boot (``CONFIG_SPL=y`` ... in its defconfig);
- the length of its defconfig: every line switches a feature on or off
  relative to the arch's defaults, and most of them add code.

The weights below are rough, in seconds of one ``make`` on a speed-1.0
machine; only their order matters on a cold start, because the cost model
rescales them from the first finished boards of the same SoC, CPU or arch
(:class:`buildfleet.fleet.dispatch.costs.CostModel`). They use only + * / so that
every CI runner computes the very same numbers (shards depend on it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from buildfleet.model import Board

BASE_SECONDS = 60.0
"""A plain ARM board with a 40-line defconfig and no SPL."""

ARCH_WEIGHT = {
    "sandbox": 2.5, "x86": 1.8, "aarch64": 1.3, "arm": 1.0, "riscv": 1.0,
    "powerpc": 0.9, "mips": 0.8, "arc": 0.7, "microblaze": 0.7, "xtensa": 0.7,
    "m68k": 0.6, "nios2": 0.6, "sh": 0.6,
}
"""Relative weight of an arch's common code (unknown archs: 1.0)."""

PHASE_WEIGHT = {"CONFIG_SPL": 0.4, "CONFIG_TPL": 0.2, "CONFIG_VPL": 0.2}
"""Extra share of a board's cost for each extra phase it builds."""

TYPICAL_LINES = 40
"""Defconfig lines of an average board (a board without a defconfig gets this)."""

MAX_DEFCONFIG_BYTES = 1 << 20
MAX_INCLUDE_DEPTH = 4
_PHASE_RE = re.compile(r"^[ \t]*(?:(CONFIG_[STV]PL)=y|#[ \t]*(CONFIG_[STV]PL) is not set)[ \t]*$",
                       re.M)
_INCLUDE_RE = re.compile(r'^\s*#\s*include\s+["<]([^">]+)[">]')


@dataclass(frozen=True)
class BoardTraits:
    """What a board's defconfig says about its size: phases and its length in lines."""

    phases: frozenset[str] = frozenset()
    defconfig_lines: int = TYPICAL_LINES


def traits_of_text(text: str) -> BoardTraits:
    """Traits of one defconfig's text, includes already expanded.

    Comments and blank lines do not count as lines; a later ``# CONFIG_SPL
    is not set`` (after an included defconfig) takes SPL away again.
    """
    lines = sum(1 for raw in text.splitlines() if (line := raw.strip()) and line[0] != "#")
    phases: set[str] = set()
    for m in _PHASE_RE.finditer(text):
        if m.group(1):
            phases.add(m.group(1))
        else:
            phases.discard(m.group(2))
    return BoardTraits(frozenset(phases), lines)


def _read_defconfig(configs: Path, name: str, depth: int = 0) -> str | None:
    """A defconfig's text with ``#include "x"`` / ``#include <x>`` lines replaced by x's text."""
    try:
        with open(configs / name, encoding="utf-8", errors="replace") as f:
            text = f.read(MAX_DEFCONFIG_BYTES)
    except OSError:
        return None
    if "#include" not in text or depth >= MAX_INCLUDE_DEPTH:
        return text
    out = []
    for line in text.splitlines():
        m = _INCLUDE_RE.match(line)
        if m:
            included = _read_defconfig(configs, m.group(1), depth + 1)
            out.append(included if included is not None else "")
        else:
            out.append(line)
    return "\n".join(out)


def read_traits(src_dir: Path, targets: Iterable[str]) -> dict[str, BoardTraits]:
    """Traits of every target whose ``configs/<target>_defconfig`` can be read.

    One open per board (a world tree: ~1,500 files, tens of milliseconds),
    plus one per included defconfig; a missing or unreadable defconfig
    leaves the target out (it gets typical traits).
    """
    out: dict[str, BoardTraits] = {}
    configs = src_dir / "configs"
    for target in targets:
        text = _read_defconfig(configs, f"{target}_defconfig")
        if text is not None:
            out[target] = traits_of_text(text)
    return out


def prior_seconds(board: Board, traits: BoardTraits | None) -> float:
    """The expected seconds of one commit of ``board`` from what the tree says of it."""
    t = traits or BoardTraits()
    weight = ARCH_WEIGHT.get(board.arch, 1.0)
    phases = 1.0
    for name in sorted(t.phases):
        phases += PHASE_WEIGHT.get(name, 0.0)
    # Longer defconfigs enable more code: a 40-line board 1.0, a 10-line one
    # 0.7, a 200-line one 2.6, and no board more than 3.0.
    size = 0.6 + t.defconfig_lines / 100.0
    size = min(3.0, size)
    return BASE_SECONDS * weight * phases * size
