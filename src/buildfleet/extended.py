"""Extended boards (``-X``): board variants described by ``configs/*.buildman`` files.

A U-Boot tree can describe variants of existing boards (say, every QEMU
RISC-V board with ACPI on) without a defconfig each. buildman's file format::

    # comment
    name: acpi                       one record per name (no spaces)
    desc: RISC-V QEMU with ACPI      free text
    fragment: acpi                   repeatable: configs/acpi.config
    targets:                         then indented lines, each either
      qemu-riscv*                    a glob over configs/*_defconfig, or
      CONFIG_SYS_SOC="k3"            an option's value (y, n, a value, "string")

A record makes one board per base board ``B`` that matches: target
``<name>,<B>``, the rest of ``B``'s row copied, configured as buildman does
(``make B_defconfig acpi.config``: U-Boot merges every ``acpi.config`` in
``configs/`` and under ``board/``); then the lines of ``configs/acpi.config``
at the commit being built are checked to hold (``build/adjust.py``).
Globs select candidates (all boards when there are none); every option
condition must then hold. Option values come from kconfiglib and are cached
in the output directory, since loading every defconfig of a real tree takes
minutes.

Unlike buildman, a ``desc`` may contain ``:``, a name must be safe as a
directory name and unique, and a fragment that does not exist is an error
naming the file and line, before anything is built.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from buildfleet import boards as boards_mod
from buildfleet.build.adjust import same_value
from buildfleet.model import Board

VALUES_CACHE = ".buildfleet-kconfig-values.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")
_COND_RE = re.compile(r"^(?:CONFIG_)?([A-Za-z0-9_]+)$")
_FRAG_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass
class Extended:
    """One record of a ``.buildman`` file."""

    name: str
    where: str                       # "configs/x.buildman:3", for messages
    desc: str = ""
    fragments: list[str] = field(default_factory=list)
    globs: list[tuple[str, str]] = field(default_factory=list)          # (glob, where)
    conditions: list[tuple[str, str]] = field(default_factory=list)     # (symbol, value)


def _error(where: str, msg: str) -> boards_mod.BoardsError:
    return boards_mod.BoardsError(f"{where}: {msg}")


def parse_file(path: Path, rel: str) -> list[Extended]:
    """The records of one ``.buildman`` file; BoardsError names ``rel:line`` on bad input."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise boards_mod.BoardsError(f"{rel}: cannot read: {exc}") from exc
    records: list[Extended] = []
    cur: Extended | None = None
    in_targets = False
    for num, line in enumerate(text.splitlines(), 1):
        where = f"{rel}:{num}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t":
            if cur is None or not in_targets:
                raise _error(where, "Unexpected indent")
            item = line.strip()
            if "=" in item:
                sym, _, value = item.partition("=")
                match = _COND_RE.match(sym.strip())
                if not match or not value.strip() or "=" in value:
                    raise _error(where, f"Invalid CONFIG syntax {item!r} "
                                 "(want CONFIG_X=y, =n, =value or =\"string\")")
                cur.conditions.append((match.group(1), value.strip()))
            elif " " in item or "/" in item:
                raise _error(where, f"Invalid target regex {item!r} (a glob over configs/)")
            else:
                cur.globs.append((item, where))
            continue
        tag, colon, value = line.partition(":")
        tag, value = tag.strip(), value.strip()
        if not colon:
            raise _error(where, f"Invalid tag line {line.strip()!r} (want 'tag: value')")
        in_targets = False
        if tag == "name":
            if not _NAME_RE.match(value):
                raise _error(where, f"Invalid name {value!r} (letters, digits, '_.+-')")
            if any(r.name == value for r in records):
                raise _error(where, f"Duplicate name {value!r}")
            cur = Extended(value, where)
            records.append(cur)
            continue
        if cur is None:
            raise _error(where, f"'{tag}:' before any 'name:'")
        if tag == "desc":
            cur.desc = value
        elif tag == "fragment":
            if not _FRAG_RE.match(value):
                raise _error(where, f"Invalid fragment name {value!r}")
            cur.fragments.append(value)
        elif tag == "targets":
            if value:
                raise _error(where, "'targets:' takes no value: list targets on indented lines")
            in_targets = True
        else:
            raise _error(where, f"Unknown tag '{tag}'")
    return records


def parse_all(src_dir: Path) -> list[Extended]:
    """Every record of ``configs/*.buildman`` (files in name order); fragments must exist."""
    records: list[Extended] = []
    for path in sorted((src_dir / "configs").glob("*.buildman")):
        rel = f"configs/{path.name}"
        for rec in parse_file(path, rel):
            if any(r.name == rec.name for r in records):
                raise _error(rec.where, f"Duplicate name {rec.name!r}")
            for frag in rec.fragments:
                if not (src_dir / "configs" / f"{frag}.config").is_file():
                    raise _error(rec.where, f"{rec.name}: no fragment configs/{frag}.config")
            records.append(rec)
    return records


def _matches(want: str, have: str) -> bool:
    """Does a condition's value hold for a kconfiglib ``str_value``?"""
    if want == "n":
        return have in ("n", "")
    return same_value(want, have)


class ValueCache:
    """Option values per defconfig, scanned on demand and kept in the output directory."""

    def __init__(self, src_dir: Path, path: Path, symbols: tuple[str, ...],
                 jobs: int | None) -> None:
        self.src_dir, self.path, self.symbols, self.jobs = src_dir, path, symbols, jobs
        self.values: dict[str, dict[str, str]] = {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            fresh = path.stat().st_mtime >= boards_mod._newest_input(src_dir)
            if fresh and data.get("symbols") == list(symbols):
                self.values = {str(t): dict(v) for t, v in data["values"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.values = {}

    def get(self, targets: list[str]) -> dict[str, dict[str, str]]:
        missing = [t for t in targets if t not in self.values]
        if missing:
            paths = [str(self.src_dir / "configs" / f"{t}{boards_mod.SUFFIX}") for t in missing]
            for scanned in boards_mod._scan_configs(self.src_dir, self.jobs, False, paths,
                                                    self.symbols):
                self.values[scanned.target] = {s: scanned.values.get(s, "")
                                               for s in self.symbols}
            self._save()
        return {t: self.values.get(t, {}) for t in targets}

    def _save(self) -> None:
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"symbols": list(self.symbols), "values": self.values}),
                           encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a cache: the next run scans again


def extended_boards(src_dir: Path, boards: list[Board], base: Path, jobs: int | None = None,
                    warn: Callable[[str], None] = print) -> list[Board]:
    """The extended boards of ``src_dir`` built on ``boards`` (in record, then target order)."""
    records = parse_all(src_dir)
    by_target = {b.target: b for b in boards}
    symbols = tuple(sorted({s for r in records for s, _ in r.conditions}))
    cache = ValueCache(src_dir, base / VALUES_CACHE, symbols, jobs)
    out: list[Board] = []
    for rec in records:
        if rec.globs:
            names: set[str] = set()
            for pattern, where in rec.globs:
                found = {t for t in by_target if fnmatch.fnmatchcase(
                    f"{t}{boards_mod.SUFFIX}", pattern)}
                found |= {t for t in by_target if fnmatch.fnmatchcase(t, pattern)}
                if not found:
                    warn(f"Warning: {where}: no defconfig matches '{pattern}'")
                names |= found
            candidates = sorted(names)
        else:
            candidates = sorted(by_target)
        if rec.conditions:
            values = cache.get(candidates)
            candidates = [t for t in candidates
                          if all(_matches(want, values[t].get(sym, ""))
                                 for sym, want in rec.conditions)]
        for target in candidates:
            brd = by_target[target]
            out.append(replace(brd, target=f"{rec.name},{target}", base_target=target,
                               fragments=tuple(rec.fragments)))
    return out
