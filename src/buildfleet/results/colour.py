"""ANSI colours for summary text, on a terminal only.

buildman colours its summary with bright ANSI codes when stdout is a tty and
prints plain text otherwise; scripts that diff summaries rely on the plain
form, so colour is an explicit on/off switch passed down, never guessed deep
inside the printers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import IntEnum
from typing import TextIO


class Col(IntEnum):
    BLACK = 0
    RED = 1
    GREEN = 2
    YELLOW = 3
    BLUE = 4
    MAGENTA = 5
    CYAN = 6
    WHITE = 7


RESET = "\033[0m"


@dataclass(frozen=True)
class Painter:
    """Wraps text in ANSI codes when ``enabled``; otherwise returns it unchanged."""

    enabled: bool

    def __call__(self, colour: Col | None, text: str, bright: bool = True) -> str:
        if not self.enabled or colour is None:
            return text
        start = "\033[1;%dm" if bright else "\033[22;%dm"
        return start % (30 + int(colour)) + text + RESET


def stream_is_tty(stream: TextIO) -> bool:
    """True if ``stream`` is a terminal (so colour is wanted)."""
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
