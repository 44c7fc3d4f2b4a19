"""Sorting a build's stderr into error lines and warning lines.

A person reading a summary wants to know which *messages* appeared or went
away, not which boards printed them, so the lines are classified the way
buildman does (gcc ``warning:``, dtc ``Warning``, context lines such as
``In function`` attached to the message after them) and de-duplicated across
boards, remembering which boards printed each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

RE_FUNCTION = re.compile(r"(.*): In function.*")
RE_FILES = re.compile(r"In file included from.*")
RE_WARNING = re.compile(r"(.*):(\d*):(\d*): warning: .*")
RE_DTB_WARNING = re.compile(r"(.*): Warning .*")
RE_NOTE = re.compile(r"(.*):(\d*):(\d*): note: this is the location of the previous.*")
RE_MAKE_NOISE = re.compile(r"(make.*Waiting for unfinished)|(Segmentation fault)")
MIGRATION_START = "=" * 21 + " WARNING " + "=" * 22
RE_RULE = re.compile(r"^=+$")

# Substrings (lower case) of messages caused by a missing binary blob: expected
# in a blobless build, so the summary shows them apart from real breakage.
BLOB_MISSING_SIGNATURES = (
    "some images are invalid",
    "missing external blob",
    "faked external blob",
    "faked blob",
)

T = TypeVar("T")


def is_blob_missing_line(line: str) -> bool:
    low = line.lower()
    return any(sig in low for sig in BLOB_MISSING_SIGNATURES)


def drop_migration_blocks(lines: list[str]) -> list[str]:
    """Remove each ``===== WARNING =====`` banner up to its closing rule line."""
    out: list[str] = []
    inside = False
    seen_body = False
    for line in lines:
        if inside:
            if seen_body and RE_RULE.match(line):
                inside = False
            seen_body = True
            continue
        if line == MIGRATION_START:
            inside = True
            seen_body = False
            continue
        out.append(line)
    return out


def filter_err_lines(lines: Iterable[str], filter_dtb: bool = False,
                     filter_migration: bool = False) -> list[str]:
    """The stderr lines worth reporting: no make noise, -y/-Y applied.

    A blank line is a line of the message (a compiler such as rustc prints
    them inside its errors), as buildman counts it; only with -Y, whose
    filtering rewraps the text, does buildman drop empty lines, and so does
    this.
    """
    kept = [line.rstrip("\r\n") for line in lines]
    if filter_migration:
        kept = [line for line in drop_migration_blocks(kept) if line]
    out = []
    for line in kept:
        if RE_MAKE_NOISE.search(line):
            continue
        if filter_dtb and RE_DTB_WARNING.search(line):
            continue
        out.append(line)
    return out


@dataclass
class LineIndex(Generic[T]):
    """Distinct lines in first-seen order, each with the items (boards) that printed it."""

    lines: list[str] = field(default_factory=list)
    owners: dict[str, list[T]] = field(default_factory=dict)

    def add(self, line: str, owner: T) -> None:
        line = line.rstrip()
        if line in self.owners:
            if owner not in self.owners[line]:
                self.owners[line].append(owner)
        else:
            self.owners[line] = [owner]
            self.lines.append(line)

    def __contains__(self, line: object) -> bool:
        return line in self.owners


def split_errors_warnings(err_lines: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split one board's lines into (errors, warnings), context lines included."""
    errors: list[str] = []
    warnings: list[str] = []
    context: str | None = None
    last_was_warning = False
    for line in err_lines:
        if RE_FUNCTION.match(line) or RE_FILES.match(line):
            context = line
            continue
        is_warning = bool(RE_WARNING.match(line) or RE_DTB_WARNING.match(line))
        is_note = bool(RE_NOTE.match(line))
        target = warnings if is_warning or (last_was_warning and is_note) else errors
        if context is not None:
            target.append(context)
        target.append(line)
        last_was_warning = is_warning
        context = None
    return errors, warnings
