"""The size part of the summary: -S per arch, -d per board, -B per function.

Kept apart from the status/error printer because it has its own arithmetic
(averages, bloat-o-meter style function deltas) and its own column layout,
which must match buildman's character for character.
"""

from __future__ import annotations

from buildfleet.model import Board
from buildfleet.results.collect import CommitResults, size_changes
from buildfleet.results.colour import Col, Painter


def _sign_colour(value: float) -> Col:
    return Col.RED if value > 0 else Col.GREEN


def _colour_num(paint: Painter, num: int) -> str:
    if num == 0:
        return "0"
    return paint(_sign_colour(num), str(num))


def func_size_lines(paint: Painter, elf: str, old: dict[str, int],
                    new: dict[str, int]) -> list[str]:
    """Function-level deltas of one ELF: a totals line, a header, one row per change."""
    add = remove = grow = shrink = up = down = 0
    delta: list[tuple[int, str]] = []
    for name, size in old.items():
        if name not in new:
            remove += 1
            down += size
            delta.append((-size, name))
    for name, size in new.items():
        if name not in old:
            add += 1
            up += size
            delta.append((size, name))
        else:
            diff = size - old[name]
            if diff > 0:
                grow += 1
                up += diff
            elif diff < 0:
                shrink += 1
                down -= diff
            delta.append((diff, name))
    figures = [add, -remove, grow, -shrink, up, -down, up - down]
    if not any(figures):
        return []
    f = [_colour_num(paint, x) for x in figures]
    indent = " " * 15
    lines = [
        f"{indent}{paint(Col.YELLOW, elf)}: add: {f[0]}/{f[1]}, grow: {f[2]}/{f[3]} "
        f"bytes: {f[4]}/{f[5]} ({f[6]})",
        f"{indent}  {'function':<38s} {'old':>7s} {'new':>7s} {'delta':>7s}",
    ]
    for diff, name in sorted(delta, reverse=True):
        if diff:
            row = (f"{indent}  {name:<38s} {str(old.get(name, '-')):>7} "
                   f"{str(new.get(name, '-')):>7} {diff:+7d}")
            lines.append(paint(_sign_colour(diff), row))
    return lines


def size_lines(paint: Painter, boards: list[Board], cur: CommitResults, base: CommitResults,
               detail: bool, bloat: bool) -> list[str]:
    """The -S lines for one commit against ``base`` (with -d/-B detail under each arch)."""
    lines: list[str] = []
    for arch in size_changes(boards, cur, base).values():
        averages = arch.averages()
        if not averages:
            continue
        head = f"{arch.arch:>10s}: (for {arch.boards_with_sizes}/{arch.boards_total} boards)"
        lines.append(head + "".join(paint(_sign_colour(avg), f" {name} {avg:+1.1f}")
                                    for name, avg in averages.items()))
        if not detail:
            continue
        for change in sorted(arch.board_changes, key=lambda c: c.total, reverse=True):
            if not change.changes:
                continue
            lines.append(f"{'':10s}  {change.target:<15s}:" + "".join(
                paint(_sign_colour(diff), f" {name} {diff:+d}")
                for name, diff in sorted(change.changes.items())))
            if bloat:
                lines.extend(_bloat_lines(paint, change.target, cur, base))
    return lines


def _bloat_lines(paint: Painter, target: str, cur: CommitResults,
                 base: CommitResults) -> list[str]:
    res, before = cur.results.get(target), base.results.get(target)
    if res is None or before is None:
        return []
    lines: list[str] = []
    for elf, funcs in res.func_sizes.items():
        old = before.func_sizes.get(elf)
        if old is not None:  # nothing to compare with (buildman would crash here)
            lines.extend(func_size_lines(paint, elf, old, funcs))
    return lines
