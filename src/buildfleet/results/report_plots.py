"""Inline SVG size plots for the HTML report: one per arch, drawn in Python.

A world build has ~1,500 boards in ~25 archs: one plot per board would be
1,500 pictures nobody reads and a page that takes seconds to draw. Each arch
gets one plot of how its boards' ``u-boot`` size moved over the commits,
relative to each board's first known size: the mean change as a line and the
range (smallest to largest change) as a band. A single board's own curve is
drawn on demand by the page's script, from the sizes it carries as data.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

WIDTH = 300
HEIGHT = 110
PAD = 10


@dataclass(frozen=True)
class ArchSeries:
    """Per commit index: (mean, smallest, largest) change in bytes, or None (no sizes)."""

    arch: str
    boards: int
    boards_with_sizes: int
    points: list[tuple[float, int, int] | None]


def arch_series(arch: str, series: list[list[int | None]]) -> ArchSeries:
    """Changes of ``u-boot``'s size per commit for an arch's boards.

    ``series`` holds, per board, its size (bytes) at each commit index (None:
    no size there). A board's change at a commit is its size there minus its
    size at the first commit where it had one.
    """
    n = max((len(s) for s in series), default=0)
    deltas: list[list[int]] = [[] for _ in range(n)]
    with_sizes = 0
    for sizes in series:
        first = next((v for v in sizes if v is not None), None)
        if first is None:
            continue
        with_sizes += 1
        for i, value in enumerate(sizes):
            if value is not None:
                deltas[i].append(value - first)
    points: list[tuple[float, int, int] | None] = [
        (sum(d) / len(d), min(d), max(d)) if d else None for d in deltas]
    return ArchSeries(arch, len(series), with_sizes, points)


def _fmt(value: float) -> str:
    return f"{value:+,.0f}" if value else "0"


def arch_plot(data: ArchSeries, labels: list[str]) -> str:
    """The SVG of one arch: mean change (line), range (band), zero line; 'no size data'."""
    known = [(i, p) for i, p in enumerate(data.points) if p is not None]
    if not known:
        return '<p class="muted">no size data</p>'
    lo = min(0, *(p[1] for _, p in known))
    hi = max(0, *(p[2] for _, p in known))
    span = (hi - lo) or 1
    n = max(1, len(data.points) - 1)

    def x(i: int) -> float:
        return round(PAD + 30 + (WIDTH - 2 * PAD - 30) * (i / n), 1)

    def y(v: float) -> float:
        return round(HEIGHT - PAD - 12 - (HEIGHT - 2 * PAD - 14) * ((v - lo) / span), 1)

    top = " ".join(f"{x(i)},{y(p[2])}" for i, p in known)
    bottom = " ".join(f"{x(i)},{y(p[1])}" for i, p in reversed(known))
    line = " ".join(f"{x(i)},{y(p[0])}" for i, p in known)
    dots = "".join(
        f'<circle cx="{x(i)}" cy="{y(p[0])}" r="2.5"><title>{html.escape(labels[i])}: mean '
        f'{_fmt(p[0])} B, range {_fmt(p[1])} .. {_fmt(p[2])} B</title></circle>'
        for i, p in known)
    ticks = "".join(f'<text x="{x(i)}" y="{HEIGHT - 2}" text-anchor="middle">'
                    f'{html.escape(labels[i])}</text>' for i in range(len(data.points))
                    if len(data.points) <= 12 or i % max(1, len(data.points) // 10) == 0)
    return (f'<svg class="sizeplot" width="{WIDTH}" height="{HEIGHT}" '
            f'viewBox="0 0 {WIDTH} {HEIGHT}" xmlns="http://www.w3.org/2000/svg" role="img">'
            f'<line class="zero" x1="{x(0)}" x2="{x(n)}" y1="{y(0)}" y2="{y(0)}"/>'
            f'<polygon class="band" points="{top} {bottom}"/>'
            f'<polyline class="mean" points="{line}"/>{dots}'
            f'<text x="2" y="{y(hi) + 3}">{_fmt(hi)}</text>'
            f'<text x="2" y="{y(lo) + 3}">{_fmt(lo)}</text>{ticks}</svg>')
