"""The machine-readable report of a run: one versioned JSON document.

CI jobs and dashboards should not scrape the text summary. This document
holds every board x commit (status, return code, error and warning lines,
sizes, duration, the machine and toolchain that built it) plus per-commit
aggregates; its shape is fixed by ``report.schema.json`` shipped beside this
module. The JUnit and HTML reports are rendered from the same document, so
the three never disagree.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from buildfleet import __version__
from buildfleet.errors import UserError
from buildfleet.model import Board, Commit
from buildfleet.results.collect import (
    CommitResults,
    ReadOptions,
    baseline,
    line_delta,
    load_commit,
    size_changes,
)
from buildfleet.results.errlines import split_errors_warnings
from buildfleet.results.outcome import Outcome, StoredResult
from buildfleet.results.paths import Bases, base_list, commit_dir_name, is_safe_name, locate
from buildfleet.results.reproducer import SCRIPT_NAME, Reproducer
from buildfleet.results.reproducibility import load_reproducibility, merge_reproducibility

SCHEMA_NAME = "buildfleet-report"
SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("report.schema.json")

_READ = ReadOptions(func_sizes=False, config=False, environment=False)


class ReportError(UserError):
    """A report could not be written (the message says where and why)."""


def status_of(result: StoredResult | None) -> str:
    """ok, warning, error or not-built (no result, or no toolchain for it)."""
    if result is None or result.toolchain_missing:
        return "not-built"
    return {Outcome.OK: "ok", Outcome.WARNING: "warning"}.get(result.outcome, "error")


def reproducer_entry(base: Bases, board: Board, commit: Commit,
                     result: StoredResult | None) -> dict[str, Any] | None:
    """The ``reproducer`` object of a result (from its out-cmd, out-env, toolchain), or None.

    ``script`` is the ``reproduce`` file's path relative to ``base`` (null
    for a tree written before reproducers, or by buildman: the commands are
    still given when ``out-cmd`` is there).
    """
    if result is None or not is_safe_name(board.target):
        return None
    path = locate(base, commit, board.target)
    owner = next((b for b in base_list(base) if path.is_relative_to(b)), path)
    files: dict[str, bytes] = {}
    for name in ("out-cmd", "out-env", "toolchain"):
        try:
            files[name] = (path / name).read_bytes()
        except OSError:
            pass
    repro = Reproducer.from_files(board.target, commit.hash, files, result.return_code)
    if repro is None:
        return None
    script = path / SCRIPT_NAME
    return repro.to_json(str(script.relative_to(owner)) if script.is_file() else None)


def _result_entry(base: Bases, board: Board, commit: Commit,
                  result: StoredResult | None) -> dict[str, Any]:
    errors, warnings = split_errors_warnings(result.err_lines) if result else ([], [])
    return {
        "target": board.target,
        "arch": board.arch,
        "commit": commit.sequence,
        "status": status_of(result),
        "return_code": result.return_code if result else None,
        "errors": errors,
        "warnings": warnings,
        "sizes": result.sizes if result else {},
        "duration": result.duration if result else None,
        "machine": result.host if result else None,
        "copied_from": result.copied_from if result else None,
        "toolchain": (result.toolchain or None) if result else None,
        "reproducer": reproducer_entry(base, board, commit, result),
    }


def _moves(boards: list[Board], cur: CommitResults,
           prev: CommitResults) -> list[tuple[str, str, str]]:
    """(target, status before, status now) for every board."""
    return [(b.target, status_of(prev.results.get(b.target)), status_of(cur.results.get(b.target)))
            for b in boards]


def _aggregate(boards: list[Board], cur: CommitResults, prev: CommitResults) -> dict[str, Any]:
    moves = _moves(boards, cur, prev)
    statuses = [now for _, _, now in moves]
    fixed_err, new_err = line_delta(prev.errors, cur.errors, "")
    fixed_warn, new_warn = line_delta(prev.warnings, cur.warnings, "w")

    def lines(items: list[Any]) -> list[dict[str, Any]]:
        return [{"text": e.text, "boards": list(e.boards)} for e in items]

    sizes = {}
    for arch in size_changes(boards, cur, prev).values():
        sizes[arch.arch] = {
            "boards": arch.boards_total,
            "boards_with_sizes": arch.boards_with_sizes,
            "average": arch.averages(),
            "per_board": {c.target: c.changes for c in arch.board_changes if c.changes},
        }
    return {
        "counts": {s: statuses.count(s) for s in ("ok", "warning", "error", "not-built")},
        "new_failures": [t for t, was, now in moves if now == "error" and was != "error"],
        "fixed_failures": [t for t, was, now in moves
                           if was == "error" and now in ("ok", "warning")],
        "new_warnings": [t for t, was, now in moves if now == "warning" and was != "warning"],
        "fixed_warnings": [t for t, was, now in moves if was == "warning" and now == "ok"],
        "error_lines": {"new": lines(new_err), "fixed": lines(fixed_err)},
        "warning_lines": {"new": lines(new_warn), "fixed": lines(fixed_warn)},
        "size_deltas": sizes,
    }


def build_report(base: Bases, commits: list[Commit], boards: list[Board],
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report document (a plain dict, valid against the shipped schema)."""
    commit_list = commits or [Commit(0, None, "")]
    commit_entries: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    prev = baseline(commit_list[0], boards)
    for commit in commit_list:
        cur = load_commit(base, commit, boards, _READ)
        commit_entries.append({
            "sequence": commit.sequence,
            "hash": commit.hash,
            "subject": commit.subject,
            "directory": commit_dir_name(commit),
            "aggregate": _aggregate(boards, cur, prev),
        })
        results.extend(_result_entry(base, b, commit, cur.results.get(b.target))
                       for b in boards)
        prev = cur
    statuses = [r["status"] for r in results]
    trees = base_list(base)
    repro = merge_reproducibility(  # hedged copies compared by the runs that built the trees
        [r for r in (load_reproducibility(b) for b in trees) if r is not None])
    return {
        "schema": SCHEMA_NAME,
        "version": SCHEMA_VERSION,
        "run": {
            "tool": "buildfleet",
            "tool_version": __version__,
            "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "output_dir": str(trees[0]),
            **({"output_dirs": [str(b) for b in trees]} if len(trees) > 1 else {}),
            "current_source": all(c.is_current_source for c in commit_list),
            "counts": {s: statuses.count(s) for s in ("ok", "warning", "error", "not-built")},
            **({"reproducibility": repro} if repro is not None else {}),
            **(extra or {}),
        },
        "boards": [{"target": b.target, "arch": b.arch, "cpu": b.cpu, "soc": b.soc,
                    "vendor": b.vendor, "board": b.board_name} for b in boards],
        "commits": commit_entries,
        "results": results,
    }


def load_schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return data


def write_text(path: Path, text: str) -> None:
    """Write a report file, turning OS errors into one clear ReportError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise ReportError(f"cannot write report {path}: {exc.strerror or exc}") from exc


def write_json_report(path: Path, base: Bases, commits: list[Commit], boards: list[Board],
                      extra: dict[str, Any] | None = None) -> None:
    """Write the JSON report of the results under ``base`` to ``path``."""
    doc = build_report(base, commits, boards, extra)
    write_text(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")
