"""The config (-K) and default-environment (-U) parts of the summary.

Both answer "which key=value pairs were added, removed or changed" and share
one line format (``+ name: K=V K=V ``), so they live together; boards with
identical config changes are grouped so a tree-wide change prints once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from buildfleet.model import Board
from buildfleet.results.collect import CommitResults
from buildfleet.results.colour import Col, Painter


@dataclass
class KeyDelta:
    plus: dict[str, str] = field(default_factory=dict)
    minus: dict[str, str] = field(default_factory=dict)
    change: dict[str, str] = field(default_factory=dict)

    def update(self, other: KeyDelta) -> None:
        self.plus.update(other.plus)
        self.minus.update(other.minus)
        self.change.update(other.change)


def key_delta(old: dict[str, str], new: dict[str, str]) -> KeyDelta:
    """What changed between two key=value maps (an emptied value is not a change)."""
    delta = KeyDelta()
    for key, value in new.items():
        if key not in old:
            delta.plus[key] = value
    for key, value in old.items():
        if key not in new:
            delta.minus[key] = value
        elif new[key] and new[key] != value:
            delta.change[key] = f"{value} -> {new[key]}"
    return delta


def _kv(values: dict[str, str]) -> str:
    return "".join(f"{key}={values[key]} " for key in sorted(values))


def delta_lines(name: str, delta: KeyDelta) -> list[str]:
    lines = []
    if delta.plus:
        lines.append(f"+ {name}: {_kv(delta.plus)}")
    if delta.minus:
        lines.append(f"- {name}: {_kv(delta.minus)}")
    if delta.change:
        lines.append(f"c {name}: {_kv(delta.change)}")
    return lines


_LINE_COLOURS = {"+": Col.GREEN, "-": Col.RED, "c": Col.YELLOW}


def painted(paint: Painter, lines: list[str]) -> list[str]:
    """Indent by three spaces, coloured by the leading +, - or c."""
    return [paint(_LINE_COLOURS.get(line[0]), "   " + line) for line in lines if line]


def environment_lines(paint: Painter, boards: list[Board], cur: CommitResults,
                      base: CommitResults) -> list[str]:
    lines: list[str] = []
    for board in boards:
        res, before = cur.results.get(board.target), base.results.get(board.target)
        new = res.environment if res is not None else {}
        old = before.environment if before is not None else {}
        lines.extend(delta_lines(board.target, key_delta(old, new)))
    return painted(paint, lines)


def config_lines(paint: Painter, boards: list[Board], cur: CommitResults,
                 base: CommitResults, config_files: tuple[str, ...]) -> list[str]:
    """Per-arch totals, then groups of boards that share exactly the same changes."""
    per_arch: dict[str, dict[str, KeyDelta]] = {}
    per_board: dict[str, list[str]] = {}
    for board in boards:
        arch = per_arch.setdefault(board.arch, {name: KeyDelta() for name in config_files})
        res, before = cur.results.get(board.target), base.results.get(board.target)
        new_cfg = res.config if res is not None else {}
        old_cfg = before.config if before is not None else {}
        board_all = KeyDelta()
        lines: list[str] = []
        for name in config_files:
            if not new_cfg.get(name):
                continue
            delta = key_delta(old_cfg.get(name, {}), new_cfg[name])
            arch[name].update(delta)
            board_all.update(delta)
            lines.extend(delta_lines(name, delta))
        lines.extend(delta_lines("all", board_all))
        per_board[board.target] = lines
    out: list[str] = []
    for arch_name, files in per_arch.items():
        arch_all = KeyDelta()
        lines = []
        for name in config_files:
            arch_all.update(files[name])
            lines.extend(delta_lines(name, files[name]))
        lines.extend(delta_lines("all", arch_all))
        if lines:
            out.append(f"{arch_name}:")
            out.extend(painted(paint, lines))
    groups: dict[tuple[str, ...], list[str]] = {}
    for target, lines in per_board.items():
        groups.setdefault(tuple(lines), []).append(target)
    for lines_key, targets in groups.items():
        if lines_key:
            out.append(f"{' '.join(sorted(targets))} :")
            out.extend(painted(paint, list(lines_key)))
    return out
