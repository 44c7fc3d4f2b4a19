"""The live view of a fleet run: one line per machine and one for the whole run.

Drawn in place by rich on a terminal (see :class:`progress.Progress`), from a
:class:`~buildfleet.fleet.status.FleetSnapshot` pulled at each refresh::

      local    building    2/2     41 results  38%  acme_arm1 sandbox
      m1       pushing               0 results   0%
      m2       building    4/4     66 results  62%  globex_a64 initech_rv2 acme_arm2 umb...
      m3       lost           0 results  EOF on the connection
    107/240 done: 100 ok, 5 warned, 2 failed   ETA 0:03:12

Each line is cut to the terminal's width (never wrapped, so redrawing in
place stays exact); board names come last, so a narrow terminal loses them
first.
"""

from __future__ import annotations

from rich.text import Text

from buildfleet.fleet.status import (
    BUILDING,
    DONE,
    IDLE,
    LOST,
    QUARANTINED,
    UNAVAILABLE,
    FleetSnapshot,
)
from buildfleet.results.progress import format_duration

STATE_STYLE = {BUILDING: "green", IDLE: "dim", DONE: "dim", LOST: "red", QUARANTINED: "red",
               UNAVAILABLE: "red"}
STATE_WIDTH = 12


def run_line(snap: FleetSnapshot) -> Text:
    """The whole run: done/total, outcomes, ETA from the cost model."""
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(f"{snap.done}/{snap.total} done: ", style="bold")
    line.append(f"{snap.ok} ok", style="green")
    line.append(", ")
    line.append(f"{snap.warned} warned", style="yellow")
    line.append(", ")
    line.append(f"{snap.failed} failed", style="red")
    eta = "--:--" if snap.eta is None else format_duration(snap.eta)
    line.append(f"   ETA {eta}", style="bold")
    return line


def machine_lines(snap: FleetSnapshot) -> list[Text]:
    width = max((len(m.name) for m in snap.machines), default=5)
    lines = []
    for m in snap.machines:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"  {m.name:<{width}}  ", style="bold")
        line.append(f"{m.state:<{STATE_WIDTH}}", style=STATE_STYLE.get(m.state, "yellow"))
        if m.state in (LOST, QUARANTINED, UNAVAILABLE) and m.detail:
            line.append(f"{m.results:4} results  {m.detail}")
        else:
            slots = f"{len(m.in_flight)}/{m.slots}" if m.slots else ""
            line.append(f"{slots:<6}{m.results:4} results {m.share * 100:3.0f}%  ")
            line.append(" ".join(m.in_flight), style="cyan")
        lines.append(line)
    return lines


def render(snap: FleetSnapshot) -> Text:
    """Every machine's line, then the run's line, as one block."""
    return Text("\n", no_wrap=True).join([*machine_lines(snap), run_line(snap)])
