"""Counting results and showing progress while a run builds.

buildman's counters (ok / warned / failed / total / remaining / ETA / current
board) drawn in place with rich on a terminal, and as an occasional plain line
otherwise, so CI logs show progress without a line per result.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from buildfleet.model import LOCAL

PLAIN_INTERVAL = 10.0
# Redraws per second: enough to look live, few enough that a terminal (or an
# SSH session to it) never lags and the boss spends nothing noticeable.
LIVE_REFRESH_HZ = 4.0


@dataclass
class RunCounts:
    ok: int = 0
    warned: int = 0
    failed: int = 0
    previously: int = 0
    total: int = 0
    skipped: int = 0  # of this run's results: copied, not built (build.skip)
    per_host: Counter[str] = field(default_factory=Counter)

    @property
    def done(self) -> int:
        return self.ok + self.warned + self.failed

    def add(self, return_code: int, has_stderr: bool, host: str = "",
            previous: bool = False) -> None:
        if return_code != 0:
            self.failed += 1
        elif has_stderr:
            self.warned += 1
        else:
            self.ok += 1
        if previous:
            self.previously += 1
        else:
            self.per_host[host or LOCAL] += 1

    def host_results(self) -> dict[str, int]:
        """Results built in this run per machine (``local`` for the local slots)."""
        return dict(self.per_host)

    def exit_code(self, ignore_warnings: bool = False) -> int:
        if self.failed:
            return 100
        if self.warned and not ignore_warnings:
            return 101
        return 0


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _Display:
    """What the live area shows: buildman's line, or the fleet view once it is on.

    rich calls ``__rich__`` at each of its timed refreshes, so the fleet view
    is built from a fresh snapshot a few times a second, whatever the rate of
    results.
    """

    def __init__(self) -> None:
        self.text = Text("")
        self.fleet: Callable[[], RenderableType] | None = None

    def __rich__(self) -> RenderableType:
        fleet = self.fleet
        if fleet is None:
            return self.text
        try:
            return fleet()
        except Exception:  # noqa: BLE001 - a display must never stop a run: show the line
            return self.text


class Progress:
    """Thread-safe progress display; ``update`` after every result."""

    def __init__(self, counts: RunCounts, out: TextIO | None = None, enabled: bool = True) -> None:
        self.counts = counts
        self.out = out or sys.stdout
        self.enabled = enabled
        self.tty = enabled and self.out.isatty()
        self._lock = threading.Lock()
        self._times: deque[float] = deque(maxlen=60)
        self._last_plain = 0.0
        self._live: Live | None = None
        self._display = _Display()
        self._line = ""
        if self.tty:
            # Redrawn by rich's own thread a few times a second: results can
            # arrive thousands a second, far faster than a terminal can show.
            self._live = Live(self._display, console=Console(file=self.out), auto_refresh=True,
                              refresh_per_second=LIVE_REFRESH_HZ, transient=True)
            self._live.start()

    def show_fleet(self, view: Callable[[], RenderableType]) -> bool:
        """Draw ``view()`` (one line per machine and the run's line) instead of the one line.

        Only on a terminal; False (nothing changes) otherwise, so logs and
        pipes keep buildman's plain line.
        """
        with self._lock:
            if self._live is None:
                return False
            self._display.fleet = view
            return True

    def _eta(self, remaining: int) -> str:
        if len(self._times) < 2 or remaining <= 0:
            return ""
        span = self._times[-1] - self._times[0]
        rate = (len(self._times) - 1) / span if span > 0 else 0
        return format_duration(remaining / rate) if rate > 0 else ""

    def line(self, board: str = "", host: str = "") -> str:
        c = self.counts
        remaining = c.total - c.done
        rem = f" -{remaining:<5}  " if remaining > 0 else " " * 8
        eta = self._eta(remaining)
        where = f" [{host or LOCAL}]" if board else ""
        return (f"{c.ok:5} {c.warned:5} {c.failed:5} /{c.total:<5} {rem}"
                f"{eta + '  : ' if eta else ''}{board or '(starting)'}{where}")

    def machines_line(self) -> str:
        """Results per machine so far, once more than the local slots are at work."""
        per_host = self.counts.per_host
        if not per_host or set(per_host) == {LOCAL}:
            return ""
        return "  " + "  ".join(f"{name}: {n}" for name, n in sorted(per_host.items()))

    def update(self, board: str = "", host: str = "") -> None:
        if not self.enabled:
            return
        with self._lock:
            now = time.monotonic()
            self._times.append(now)
            self._line = self.line(board, host)
            if self._live is not None:
                if self._display.fleet is not None:
                    return  # the fleet view pulls its own snapshot at each refresh
                c = self.counts
                text = Text()
                text.append(f"{c.ok:5} ", style="green")
                text.append(f"{c.warned:5} ", style="yellow")
                text.append(f"{c.failed:5} ", style="red")
                text.append(self._line[18:])
                machines = self.machines_line()
                if machines:
                    text.append("\n" + machines, style="cyan")
                self._display.text = text
            elif now - self._last_plain >= PLAIN_INTERVAL:
                self._last_plain = now
                machines = self.machines_line()
                print(self._line + (f" |{machines}" if machines else ""), file=self.out,
                      flush=True)

    def message(self, text: str) -> None:
        """Print a line above the progress display."""
        with self._lock:
            if self._live is not None:
                self._live.console.print(Text.from_ansi(text), highlight=False)
            else:
                print(text, file=self.out, flush=True)

    def stop(self) -> None:
        with self._lock:
            if self._live is not None:
                self._live.stop()
                self._live = None


def completed_line(counts: RunCounts, newly: int, elapsed: float) -> str:
    """buildman's closing ``Completed: ...`` line."""
    total = counts.done
    line = f"Completed: {total} total built"
    parts = []
    if counts.previously:
        parts.append(f"{counts.previously} previously")
    if counts.previously != total:
        parts.append(f"{newly} newly")
    if counts.previously:
        line += f" ({', '.join(parts)})"
    if elapsed > 1:
        rate = newly / elapsed if elapsed else 0
        line += f", duration {format_duration(elapsed)}, rate {rate:.2f}"
    if counts.skipped:
        line += f", {counts.skipped} skipped (unchanged: result copied)"
    return line
