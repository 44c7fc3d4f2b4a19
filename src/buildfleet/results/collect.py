"""One commit's results for the selected boards, and how they differ from another's.

The text summary, the JSON report and the HTML page all ask the same
questions of the tree (which boards broke or got fixed at this commit, which
messages appeared, how much did each arch grow), so the answers are computed
here once, as plain data, and each front end only formats them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from buildfleet.model import Board, Commit
from buildfleet.results.errlines import LineIndex, is_blob_missing_line, split_errors_warnings
from buildfleet.results.outcome import ImageSizes, Outcome, StoredResult, outcome_of
from buildfleet.results.paths import Bases, is_safe_name, locate
from buildfleet.results.reader import read_result


@dataclass(frozen=True)
class ReadOptions:
    """Which files to read and how to filter stderr (-y, -Y, --preserve-config-y)."""

    filter_dtb: bool = False
    filter_migration: bool = False
    squash_config_y: bool = True
    func_sizes: bool = True
    config: bool = True
    environment: bool = True


@dataclass
class CommitResults:
    """Every selected board's result at one commit (None = never built)."""

    commit: Commit
    results: dict[str, StoredResult | None]
    errors: LineIndex[str] = field(default_factory=LineIndex)
    warnings: LineIndex[str] = field(default_factory=LineIndex)

    def outcome(self, target: str) -> Outcome:
        return outcome_of(self.results.get(target))


def from_results(commit: Commit, results: dict[str, StoredResult | None]) -> CommitResults:
    """Index the error and warning lines of already-read results (board order kept)."""
    out = CommitResults(commit, results)
    for target, res in results.items():
        if res is None:
            continue
        errors, warnings = split_errors_warnings(res.err_lines)
        for line in errors:
            out.errors.add(line, target)
        for line in warnings:
            out.warnings.add(line, target)
    return out


def load_commit(base: Bases, commit: Commit, boards: list[Board],
                opts: ReadOptions | None = None) -> CommitResults:
    """Read the build directory of each board at ``commit``."""
    opts = opts or ReadOptions()
    results: dict[str, StoredResult | None] = {}
    for board in boards:
        if not is_safe_name(board.target):
            results[board.target] = None
            continue
        results[board.target] = read_result(
            locate(base, commit, board.target),
            filter_dtb=opts.filter_dtb, filter_migration=opts.filter_migration,
            squash_config_y=opts.squash_config_y, func_sizes=opts.func_sizes,
            config=opts.config, environment=opts.environment)
    return from_results(commit, results)


def baseline(commit: Commit, boards: list[Board]) -> CommitResults:
    """The all-OK, empty state the first commit is compared with."""
    return CommitResults(commit, {b.target: StoredResult(return_code=0) for b in boards})


@dataclass
class BoardStatus:
    """Boards whose outcome moved since the base commit, by kind of move."""

    fixed: list[str] = field(default_factory=list)
    warn: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    new: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)

    def any(self) -> bool:
        return bool(self.fixed or self.warn or self.broken or self.new or self.unknown)


def classify(boards: list[Board], cur: CommitResults, base: CommitResults) -> BoardStatus:
    status = BoardStatus()
    for board in boards:
        target = board.target
        if target not in base.results:
            status.new.append(target)
            continue
        now, before = cur.outcome(target), base.outcome(target)
        if now == Outcome.UNKNOWN:
            status.unknown.append(target)
        elif now != before:
            if now == Outcome.WARNING:
                status.warn.append(target)
            elif now < before:
                status.fixed.append(target)
            else:
                status.broken.append(target)
    return status


@dataclass(frozen=True)
class ErrLine:
    """A message that appeared or went away, with the boards that print(ed) it."""

    char: str   # '+', '-', 'w+', 'w-'
    boards: tuple[str, ...]
    text: str


def line_delta(base: LineIndex[str], cur: LineIndex[str],
               kind: str) -> tuple[list[ErrLine], list[ErrLine]]:
    """(gone, new) lines between two commits; ``kind`` is '' for errors, 'w' for warnings."""
    new = [ErrLine(kind + "+", tuple(cur.owners[line]), line)
           for line in cur.lines if line not in base]
    gone = [ErrLine(kind + "-", tuple(base.owners[line]), line)
            for line in base.lines if line not in cur]
    return gone, new


def image_size_changes(sizes: ImageSizes, base_sizes: ImageSizes) -> dict[str, int]:
    """Non-zero part deltas; ``u-boot`` parts plain, other images as ``image:part``."""
    changes: dict[str, int] = {}
    for image, parts in sizes.items():
        if image not in base_sizes:
            continue
        for part in sorted(parts):
            diff = parts[part] - base_sizes[image].get(part, 0)
            if diff:
                changes[part if image == "u-boot" else f"{image}:{part}"] = diff
    return changes


@dataclass
class BoardSizeChange:
    target: str
    changes: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.changes.values())


@dataclass
class ArchSizeChange:
    """Size movement of one arch: boards with sizes, all its boards, per-part averages."""

    arch: str
    boards_total: int = 0
    board_changes: list[BoardSizeChange] = field(default_factory=list)

    @property
    def boards_with_sizes(self) -> int:
        return len(self.board_changes)

    def averages(self) -> dict[str, float]:
        """Average delta per part over the boards that have sizes (non-zero only)."""
        totals: dict[str, int] = {}
        for change in self.board_changes:
            for name, diff in change.changes.items():
                totals[name] = totals.get(name, 0) + diff
        count = self.boards_with_sizes
        return {name: totals[name] / count for name in sorted(totals) if totals[name]}


def size_changes(boards: list[Board], cur: CommitResults,
                 base: CommitResults) -> dict[str, ArchSizeChange]:
    """Per-arch size changes, arches in the order their first board appears."""
    arches: dict[str, ArchSizeChange] = {}
    for board in boards:
        res = cur.results.get(board.target)
        before = base.results.get(board.target)
        arch = arches.setdefault(board.arch, ArchSizeChange(board.arch))
        arch.boards_total += 1
        if res is None or not res.sizes:
            continue
        base_sizes = before.sizes if before is not None else {}
        arch.board_changes.append(
            BoardSizeChange(board.target, image_size_changes(res.sizes, base_sizes)))
    return arches


def is_blob_failure(result: StoredResult | None) -> bool:
    """True if every reported line is about a missing binary blob (an expected failure)."""
    return (result is not None and bool(result.err_lines)
            and all(is_blob_missing_line(line) for line in result.err_lines))


@dataclass(frozen=True)
class FailureFacts:
    """What flake detection keeps of one board at one commit.

    ``broken`` is a real failure (an error that is not only about missing
    blobs); ``files`` are the source files its error lines name.
    """

    built: bool
    broken: bool
    files: frozenset[str] = frozenset()


# One commit: target -> its facts (small, so a long history keeps memory flat)
FlakeRecord = dict[str, FailureFacts]

# (older commit, newer commit) -> the files changed between them; None = unknown
ChangedFiles = Callable[[Commit, Commit], Collection[str] | None]

_ERROR_FILE_RE = re.compile(r"^(?:In file included from )?([^\s:]+\.[A-Za-z]+):\d+")


def error_files(err_lines: list[str]) -> frozenset[str]:
    """Source files named by the error lines of a build (``path:line:...``), relative
    to the source tree.

    kbuild compiles in ``O=`` and, when ``O=`` is a direct child of the source
    tree (buildman's ``O=build``), names a source ``../common/board_f.c``: that
    is ``common/board_f.c`` of the tree, the name a commit's change list gives.
    (An absolute name has lost its source-tree prefix before it is stored.)
    """
    errors, _ = split_errors_warnings(err_lines)
    return frozenset(m.group(1).removeprefix("../") for line in errors
                     if (m := _ERROR_FILE_RE.match(line)))


def flake_record(cur: CommitResults) -> FlakeRecord:
    record = {}
    for target, res in cur.results.items():
        broken = outcome_of(res) == Outcome.ERROR and not is_blob_failure(res)
        record[target] = FailureFacts(
            built=res is not None, broken=broken,
            files=error_files(res.err_lines) if broken and res is not None else frozenset())
    return record


def _repaired(changed: ChangedFiles | None, last_bad: Commit, good: Commit,
              files: frozenset[str]) -> bool:
    """Did the commits after ``last_bad`` up to ``good`` touch a file the errors named?"""
    if changed is None or not files:
        return False
    touched = changed(last_bad, good)
    return touched is not None and not files.isdisjoint(touched)


def find_flakes(boards: list[Board], commits: list[Commit], history: list[FlakeRecord],
                changed: ChangedFiles | None = None) -> list[str]:
    """Boards that broke and later built again with nothing to explain it, by name.

    A board that recovers is a *fix*, not a flake, when a commit between its last
    failing build and the recovery touched a file its errors named (known only
    when ``changed`` can tell, i.e. for branch builds in a git tree). A recovery
    nothing explains (same sources, or changes elsewhere) is a likely flake: a
    failure that went away on its own, worth a re-run. Failures only about
    missing blobs are expected and never counted. ``history[i]`` belongs to
    ``commits[i]``.
    """
    flaky = []
    for target in sorted(b.target for b in boards):
        last_bad: Commit | None = None
        files: frozenset[str] = frozenset()
        for commit, record in zip(commits, history, strict=True):
            facts = record.get(target)
            if facts is None or not facts.built:
                continue
            if facts.broken:
                last_bad, files = commit, files | facts.files
            elif last_bad is not None:
                if not _repaired(changed, last_bad, commit, files):
                    flaky.append(target)
                    break
                last_bad, files = None, frozenset()
    return flaky


def not_built(boards: list[Board], cur: CommitResults) -> list[str]:
    """Boards with no result, or whose build stopped for want of a toolchain."""
    out = []
    for board in boards:
        res = cur.results.get(board.target)
        if res is None or res.toolchain_missing:
            out.append(board.target)
    return out
