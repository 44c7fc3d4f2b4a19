"""Which boards the user means: buildman's selection terms over the board database.

Selection follows buildman's terms (regex match-at-start against a board's
properties, ``&`` within a term, terms ORed, ``-x`` to exclude), but unlike
buildman it honours ``--boards`` together with terms and always reports names
and terms that matched nothing. The boards come from ``boards`` (the
database); nothing here reads the tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from buildfleet.boards import BoardsError
from buildfleet.model import Board


@dataclass
class Selection:
    """The boards chosen, why, and what the user asked for that matched nothing."""

    boards: list[Board]
    why_selected: dict[str, list[str]]
    not_found: list[str]
    unmatched_terms: list[str]


def _compile_term(text: str) -> list[re.Pattern[str]]:
    out = []
    for expr in text.split("&"):
        expr = expr.strip()
        if not expr:
            continue
        try:
            out.append(re.compile(expr))
        except re.error as exc:
            raise BoardsError(f"invalid board selection regex '{expr}': {exc}") from exc
    return out


def _parse_terms(args: Iterable[str]) -> list[tuple[str, list[re.Pattern[str]]]]:
    """Split arguments on whitespace, then on '&'; 'a & b', 'a&b', 'a &b' are one term.

    Words are joined across arguments, so ``buildfleet arm '&' armv7`` works too.
    """
    terms: list[tuple[str, list[re.Pattern[str]]]] = []
    merged: list[str] = []
    for word in (word for arg in args for word in arg.split()):
        if merged and (word.startswith("&") or merged[-1].endswith("&")):
            merged[-1] += word
        else:
            merged.append(word)
    for word in merged:
        patterns = _compile_term(word)
        if patterns:
            terms.append(("&".join(p.pattern for p in patterns), patterns))
    return terms


def _matches(board: Board, patterns: list[re.Pattern[str]]) -> bool:
    props = board.properties()
    return all(any(pat.match(prop) for prop in props if prop) for pat in patterns)


def select_boards(boards: list[Board], terms: list[str], exclude: list[str] | None = None,
                  board_list: list[str] | None = None) -> Selection:
    """Choose boards by terms (ORed), exact targets (``--boards``), minus ``-x``."""
    parsed = _parse_terms(terms)
    excl = [pats for arg in exclude or [] for item in arg.split(",")
            if (pats := _compile_term(item))]
    wanted = [name for arg in board_list or [] for name in re.split(r"[,\s]+", arg) if name]
    by_target = {b.target: b for b in boards}
    why: dict[str, list[str]] = {text: [] for text, _ in parsed}
    chosen: dict[str, Board] = {}
    if not parsed and not wanted:
        why["all"] = []
        chosen = dict(by_target)
    for text, patterns in parsed:
        for board in boards:
            if _matches(board, patterns):
                why[text].append(board.target)
                chosen[board.target] = board
    not_found = [name for name in wanted if name not in by_target]
    for name in wanted:
        if name in by_target:
            chosen[name] = by_target[name]
            why.setdefault("boards", []).append(name)
    removed = {t for t, b in chosen.items() if any(_matches(b, p) for p in excl)}
    # The board list's own order (boards.cfg's), as buildman keeps it.
    position = {b.target: i for i, b in enumerate(boards)}
    result = sorted((b for t, b in chosen.items() if t not in removed),
                    key=lambda b: position[b.target])
    for key in why:
        why[key] = sorted((t for t in set(why[key]) if t not in removed),
                          key=lambda t: position[t])
    if "all" in why:
        why["all"] = [b.target for b in result]
    unmatched = [text for text, _ in parsed if not why[text]]
    return Selection(boards=result, why_selected=why, not_found=not_found,
                     unmatched_terms=unmatched)


def shared_arch(boards: Iterable[Board]) -> str:
    """``--print-arch``: the boards.cfg arch the boards share (no compiler needed).

    Raises BoardsError when they have more than one, with buildman's message.
    """
    archs = {board.arch for board in boards}
    if len(archs) != 1:
        raise BoardsError("Supplied boards must share one arch")
    return archs.pop()


def dry_run_term_lines(sel: Selection, verbose: bool) -> list[str]:
    """buildman's ``-n`` lines: ``<term> : <N> boards`` and the total."""
    lines = []
    for term, targets in sel.why_selected.items():
        if term == "all" and len(sel.why_selected) > 1:
            continue
        lines.append(f"{term} : {len(targets)} boards")
        if verbose and targets:
            lines.append("   " + " ".join(targets))
    lines.append(f"Total boards to build for each commit: {len(sel.boards)}")
    return lines

