"""buildman's summary mode (-s, -z): what each commit changed, as text.

For every step-th commit it prints the commit line, then only what moved
since the commit shown before it: boards newly broken, warning or fixed (per
arch), error and warning lines that appeared or went away, size, config and
environment changes. The text is buildman's, so people and scripts used to
buildman read it unchanged; colour only on a terminal.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import TextIO

from buildfleet import gitutil
from buildfleet.model import Board, Commit
from buildfleet.results.collect import (
    BoardStatus,
    ChangedFiles,
    CommitResults,
    ErrLine,
    FlakeRecord,
    ReadOptions,
    baseline,
    classify,
    find_flakes,
    flake_record,
    from_results,
    line_delta,
    load_commit,
    not_built,
)
from buildfleet.results.colour import Col, Painter, stream_is_tty
from buildfleet.results.errlines import LineIndex, is_blob_missing_line
from buildfleet.results.outcome import StoredResult
from buildfleet.results.paths import Bases
from buildfleet.results.reader import BASE_CONFIG_FILES, EXTRA_CONFIG_FILES
from buildfleet.results.summary_config import config_lines, environment_lines
from buildfleet.results.summary_sizes import size_lines


@dataclass(frozen=True)
class SummaryOptions:
    """The display flags of the summary (-e -l -S -d -B -K -U -u --step ... -I).

    Filled from the command line by ``cmdline.options`` (field = flag name;
    -B already implies -d and -S there).
    """

    show_errors: bool = False
    list_error_boards: bool = False
    show_sizes: bool = False
    detail: bool = False
    bloat: bool = False
    show_config: bool = False
    show_environment: bool = False
    show_unknown: bool = False
    step: int = 1
    show_not_built: bool = False
    filter_dtb_warnings: bool = False
    filter_migration_warnings: bool = False
    preserve_config_y: bool = False
    ide: bool = False

    def effective_step(self, n_commits: int) -> int:
        """``--step 0`` means the first and last commit only."""
        if self.step > 0:
            return self.step
        return max(1, n_commits - 1)

    def config_files(self) -> tuple[str, ...]:
        if self.preserve_config_y:
            return BASE_CONFIG_FILES + EXTRA_CONFIG_FILES
        return BASE_CONFIG_FILES

    def read_options(self) -> ReadOptions:
        return ReadOptions(
            filter_dtb=self.filter_dtb_warnings,
            filter_migration=self.filter_migration_warnings,
            squash_config_y=not self.preserve_config_y,
            func_sizes=self.bloat,
            config=self.show_config,
            environment=self.show_environment,
        )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary_header(commits: list[Commit], boards: list[Board], threads: int, jobs: int,
                   step: int = 1, no_local: bool = False, building: bool = False) -> str:
    """``Summary of N commits for M boards (T threads, J jobs per thread)``."""
    branch = [c for c in commits if not c.is_current_source]
    if branch:
        step = step if step > 0 else max(1, len(branch) - 1)
        what = _plural((len(branch) + step - 1) // step, "commit")
    else:
        what = "current source"
    msg = f"{'Building' if building else 'Summary of'} {what} for {len(boards)} boards"
    if not no_local:
        msg += f" ({_plural(threads, 'thread')}, {_plural(jobs, 'job')} per thread)"
    return msg


@dataclass
class _Delta:
    """Everything one commit changed relative to the commit shown before it."""

    status: BoardStatus
    fixed_err: list[ErrLine]
    new_err: list[ErrLine]
    fixed_warn: list[ErrLine]
    new_warn: list[ErrLine]


class _SummaryWriter:
    """Prints commit after commit, remembering what was shown last."""

    def __init__(self, boards: list[Board], opts: SummaryOptions, out: TextIO,
                 paint: Painter, err: TextIO) -> None:
        self.boards = boards
        self.arch_of = {b.target: b.arch for b in boards}
        self.opts = opts
        self.out = out
        self.err = err
        self.paint = paint
        self.error_lines = 0

    def line(self, text: str = "", colour: Col | None = None) -> None:
        self.out.write(self.paint(colour, text) + "\n")

    def commit(self, cur: CommitResults, base: CommitResults, first: bool) -> None:
        commit = cur.commit
        if not commit.is_current_source:
            self.line(f"{commit.sequence + 1:02d}: {commit.subject}", Col.BLUE)
        opts = self.opts
        empty: LineIndex[str] = LineIndex()
        fixed_err, new_err = line_delta(base.errors if opts.show_errors else empty,
                                        cur.errors if opts.show_errors else empty, "")
        fixed_warn, new_warn = line_delta(base.warnings if opts.show_errors else empty,
                                          cur.warnings if opts.show_errors else empty, "w")
        delta = _Delta(classify(self.boards, cur, base), fixed_err, new_err, fixed_warn,
                       new_warn)
        if opts.ide:
            for board in self.boards:
                res = cur.results.get(board.target)
                for err_line in res.err_lines if res is not None else []:
                    self.err.write(err_line + "\n")
        else:
            self.error_lines += self._arch_results(delta)
        if opts.show_sizes:
            for text in size_lines(self.paint, self.boards, cur, base, opts.detail, opts.bloat):
                self.line(text)
        if opts.show_environment and not first:
            for text in environment_lines(self.paint, self.boards, cur, base):
                self.line(text)
        if opts.show_config and not first:
            for text in config_lines(self.paint, self.boards, cur, base, opts.config_files()):
                self.line(text)
        if opts.show_not_built:
            missing = not_built(self.boards, cur)
            if missing:
                self.line(f"Boards not built ({len(missing)}): {', '.join(missing)}")

    def _arch_results(self, delta: _Delta) -> int:
        status = delta.status
        if not (status.any() or delta.fixed_err or delta.new_err or delta.fixed_warn
                or delta.new_warn):
            return 0
        groups: list[tuple[list[str], str, Col]] = [
            (status.fixed, "", Col.GREEN),
            (status.warn, "w+", Col.YELLOW),
            (status.broken, "+", Col.RED),
            (status.new, "*", Col.BLUE),
        ]
        if self.opts.show_unknown:
            groups.append((status.unknown, "?", Col.MAGENTA))
        per_arch: dict[str, str] = {}
        for targets, char, colour in groups:
            started: set[str] = set()
            for target in targets:
                arch = self.arch_of.get(target, "unknown")
                text = self.paint(colour, " " + target)
                if arch not in started:
                    text = f" {self.paint(colour, char)}  {text}"
                    started.add(arch)
                per_arch[arch] = per_arch.get(arch, "") + text
        count = 0
        for arch, text in per_arch.items():
            self.line(f"{arch:>10s}: {text}")
            count += 1
        new_err, blob_err = _split_blob(delta.new_err)
        new_warn, blob_warn = _split_blob(delta.new_warn)
        count += self._err_lines(delta.fixed_err, Col.GREEN)
        count += self._err_lines(new_err, Col.RED)
        count += self._err_lines(delta.fixed_warn, Col.CYAN)
        count += self._err_lines(new_warn, Col.YELLOW)
        if blob_err or blob_warn:
            self.line("Missing external blobs (expected in a blobless build):", Col.MAGENTA)
            count += self._err_lines(blob_err + blob_warn, Col.MAGENTA)
        return count

    def _err_lines(self, lines: list[ErrLine], colour: Col) -> int:
        if not lines:
            return 0
        for err in lines:
            if self.opts.list_error_boards and err.boards:
                text = (self.paint(colour, err.char + "(")
                        + self.paint(Col.MAGENTA, " ".join(err.boards), bright=False)
                        + self.paint(colour, f") {err.text}"))
            else:
                text = self.paint(colour, err.char + err.text)
            self.line(text)
        return 1


def _split_blob(lines: list[ErrLine]) -> tuple[list[ErrLine], list[ErrLine]]:
    real = [e for e in lines if not is_blob_missing_line(e.text)]
    blob = [e for e in lines if is_blob_missing_line(e.text)]
    return real, blob


def selected_commits(commits: list[Commit], opts: SummaryOptions) -> list[Commit]:
    """The commits the summary shows: every step-th one (current source: just that)."""
    if not commits:
        return [Commit(0, None, "")]
    return commits[::opts.effective_step(len(commits))]


def show_summary(base: Bases, commits: list[Commit], boards: list[Board], opts: SummaryOptions,
                 out: TextIO, color: bool, err: TextIO | None = None,
                 changed: ChangedFiles | None = None) -> None:
    """Print the summary of the results under ``base`` (the branch or ``current`` dir).

    ``commits`` empty or a single current-source commit means a current-source
    build. ``err`` receives the raw error lines in IDE mode (-I); stderr by default.
    ``changed`` tells which files changed between two commits (see
    :func:`~buildfleet.results.collect.find_flakes`); without it every recovery
    counts as a likely flake.
    """
    writer = _SummaryWriter(boards, opts, out, Painter(color), err or sys.stderr)
    shown = selected_commits(commits, opts)
    previous = baseline(shown[0], boards)
    history: list[FlakeRecord] = []
    for index, commit in enumerate(shown):
        cur = load_commit(base, commit, boards, opts.read_options())
        history.append(flake_record(cur))
        writer.commit(cur, previous, first=index == 0)
        previous = cur
    if not writer.error_lines:
        writer.line("(no errors to report)", Col.GREEN)
    flakes = find_flakes(boards, shown, history, changed)
    if flakes:
        writer.line("Likely flakes (failed then recovered, re-run to confirm):", Col.MAGENTA)
        writer.line("  " + " ".join(flakes), Col.MAGENTA)


def format_board_result(result: StoredResult | None, board: Board, commit: Commit,
                        opts: SummaryOptions, color: bool, remote: str | None = None) -> str:
    """What -v prints after one board's result: its changes against an all-OK start.

    An OK board at the current source gives ''. ``remote`` names the machine
    that built it; a failure or warning from another machine is headed ``[name]``.
    """
    buf = StringIO()
    paint = Painter(color)
    if remote and result is not None and (result.return_code or result.err_lines):
        buf.write(f"[{remote}]\n")
    cur = from_results(commit, {board.target: result})
    writer = _SummaryWriter([board], opts, buf, paint, buf)
    writer.commit(cur, baseline(commit, [board]), first=True)
    return buf.getvalue()


def git_changed_files(src_dir: Path) -> ChangedFiles:
    """Files changed between two commits of the tree at ``src_dir`` (None if git cannot say)."""
    def changed(old: Commit, new: Commit) -> list[str] | None:
        if old.hash is None or new.hash is None:
            return None
        try:
            return gitutil.changed_files(src_dir, old.hash, new.hash)
        except gitutil.GitError:
            return None
    return changed


def run_summary(opts: SummaryOptions, base: Bases, commits: list[Commit], boards: list[Board],
                threads: int, jobs: int, *, no_local: bool = False, out: TextIO = sys.stdout,
                header: bool = True, src_dir: Path | None = None) -> int:
    """The -s flow (and -z after a build, with ``header=False``). Returns 0.

    Prints the ``Summary of ...`` line (``threads`` slots, ``jobs`` make -j
    each: the plan's) unless -I or ``no_local``, then the summary. Colour
    only when ``out`` is a terminal. ``src_dir``, the git tree, lets the
    flake check tell a fixed board from a flaky one.
    """
    if header and not opts.ide and not no_local:
        out.write(summary_header(commits, boards, threads, jobs, opts.step) + "\n")
    show_summary(base, commits, boards, opts, out, stream_is_tty(out),
                 changed=git_changed_files(src_dir) if src_dir is not None else None)
    return 0
