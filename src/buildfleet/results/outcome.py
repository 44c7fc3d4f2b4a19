"""What one board's build at one commit left behind, as read back from the tree.

The summary, the JSON/JUnit/HTML reports and the verbose per-result printer
all reason about the same few facts (return code, error lines, sizes, configs,
environment), so they share this one record instead of re-reading files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Outcome(IntEnum):
    """Outcome of a build, ordered so that a larger value is worse.

    UNKNOWN (never built) sorts last, as in buildman: a board that moves from
    UNKNOWN to OK counts as fixed.
    """

    OK = 0
    WARNING = 1
    ERROR = 2
    UNKNOWN = 3


# Image name -> part name (all, text, data, bss, rodata) -> bytes
ImageSizes = dict[str, dict[str, int]]


@dataclass
class StoredResult:
    """One build directory, read back.

    ``err_lines`` are the lines of ``err`` after the -y/-Y filters, without
    newlines (blank lines kept, as buildman keeps them). ``func_sizes`` maps an ELF name as
    buildman names its ``.sizes`` file (``u-boot``, ``spl-u-boot-spl``) to
    symbol sizes. ``config`` maps a config file name (``u-boot.cfg``...) to
    its options; only files that exist are present.
    """

    return_code: int
    err_lines: list[str] = field(default_factory=list)
    sizes: ImageSizes = field(default_factory=dict)
    func_sizes: dict[str, dict[str, int]] = field(default_factory=dict)
    config: dict[str, dict[str, str]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    duration: float | None = None
    host: str | None = None
    toolchain: dict[str, str] = field(default_factory=dict)
    copied_from: str | None = None  # a skipped result: the commit it copies (COPIED_FROM)

    @property
    def outcome(self) -> Outcome:
        """ERROR on a non-zero return code, else WARNING if anything reached stderr."""
        if self.return_code:
            return Outcome.ERROR
        if self.err_lines:
            return Outcome.WARNING
        return Outcome.OK

    @property
    def toolchain_missing(self) -> bool:
        """True when the board was never compiled because no toolchain was found."""
        return self.return_code != 0 and any("Tool chain error" in line
                                             for line in self.err_lines)


def outcome_of(result: StoredResult | None) -> Outcome:
    return Outcome.UNKNOWN if result is None else result.outcome
