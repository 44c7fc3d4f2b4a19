"""From options to a plan: which boards, which commits, what is still to build.

Everything a run decides before it builds lives here, so the dry run prints
exactly what the real run would do, and the boss knows what is done before it
hands any job to a slot or a worker (workers never see the output tree).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from buildfleet import boards as boards_mod
from buildfleet import gitutil
from buildfleet.build.adjust import ADJUST_RECORD, FRAGMENT_RE, AdjustError, parse_adjust_args
from buildfleet.errors import UserError
from buildfleet.model import DEFAULT_BUILD_TIMEOUT, Board, BuildFlags, BuildJob, Commit
from buildfleet.options import PlanOptions, threads_and_jobs
from buildfleet.results.paths import (
    base_dir,
    branch_dir_name,
    build_dir,
    commit_dir_name,
    is_commit_dir,
    work_dir,
)
from buildfleet.results.reader import is_done, read_done
from buildfleet.selection import Selection, dry_run_term_lines, select_boards
from buildfleet.settings import Settings
from buildfleet.shard import ShardSpec, Split, split_boards


class PlanError(UserError):
    """The options cannot make a run (one line for the user)."""


@dataclass
class Previous:
    target: str
    sequence: int
    return_code: int
    has_stderr: bool


@dataclass
class RunPlan:
    """Everything a run decided before building: what to build, where, how.

    ``src_dir`` the source tree, ``git_dir`` its git directory (None for a
    current-source build); ``all_commits`` the branch's commits and
    ``commits`` those built (after ``--step``), each with its ``sequence``;
    ``base`` the output tree's ``<output>/<branch>`` (``bases``: every tree
    read as one with ``-s``); ``threads`` local slots and ``jobs`` make -j
    per slot (``jobs_fixed``: given with -j); ``flags`` the build flags every
    slot and worker uses. ``todo`` holds one job per board with exactly the
    commits still to build; ``previous`` the results already in the tree
    (counted, never rebuilt). ``make_plan`` raises PlanError (one line) for
    options that cannot make a run.
    """

    src_dir: Path
    git_dir: Path | None
    branch: str | None
    all_commits: list[Commit]
    commits: list[Commit]
    selection: Selection
    base: Path
    threads: int
    jobs: int
    jobs_fixed: bool
    flags: BuildFlags
    todo: list[BuildJob] = field(default_factory=list)
    previous: list[Previous] = field(default_factory=list)
    work_in_output: bool = False   # -w: the one result lives in ``base`` itself, O= too
    readjusted: int = 0            # results rebuilt because -a/--fragments changed
    # buildman's "build directory": where boards.cfg and .bm-work live. The
    # branch directory for a branch, the output directory itself for the
    # current source (whose results still go under current/).
    home: Path | None = None

    def result_dir(self, commit: Commit, target: str) -> Path:
        """Where a board's result at ``commit`` lives."""
        return self.base if self.work_in_output else build_dir(self.base, commit, target)

    @property
    def build_home(self) -> Path:
        return self.home if self.home is not None else self.base
    bases: list[Path] = field(default_factory=list)
    """Every output tree read as one (several ``-o`` with ``-s``); ``base`` first."""
    shard: ShardSpec | None = None
    split: Split | None = None
    costs_file: Path | None = None

    @property
    def boards(self) -> list[Board]:
        return self.selection.boards

    @property
    def current_source(self) -> bool:
        return self.branch is None

    @property
    def results_to_build(self) -> int:
        return sum(len(job.commits) for job in self.todo)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)


def resolve_allow_missing(opts: PlanOptions, settings: Settings, nboards: int) -> bool:
    if opts.no_allow_missing:
        return False
    if opts.allow_missing:
        return True
    policy = settings.allow_missing
    return ("always" in policy or ("multiple" in policy and nboards > 1)
            or ("branch" in policy and bool(opts.branch)))


def split_list(items: list[str] | str | None) -> tuple[str, ...]:
    """Comma lists (one string, or a repeated option's strings) as one tuple."""
    if not items:
        return ()
    if isinstance(items, str):
        items = [items]
    return tuple(part.strip() for item in items for part in item.split(",") if part.strip())


def build_flags(opts: PlanOptions, settings: Settings, selected: list[Board]) -> BuildFlags:
    try:
        adjustments = tuple(a.text for a in parse_adjust_args(opts.adjust_cfg))
    except AdjustError as exc:
        raise PlanError(str(exc)) from None
    fragments = split_list(opts.fragments)
    for frag in fragments:
        if not FRAGMENT_RE.match(frag):
            raise PlanError(f"--fragments: {frag!r} is not a fragment name like "
                            "'acpi.config' (make looks it up by name)")
    make_flags = {}
    for board in selected:
        extra = settings.make_flags_for(board.target)
        if extra:
            make_flags[board.target] = extra
    return BuildFlags(
        verbose_build=opts.verbose_build,
        allow_missing=resolve_allow_missing(opts, settings, len(selected)),
        no_lto=opts.no_lto,
        reproducible_builds=opts.reproducible_builds,
        warnings_as_errors=opts.warnings_as_errors,
        mrproper=opts.mrproper,
        fallback_mrproper=opts.fallback_mrproper,
        config_only=opts.config_only,
        force_build=opts.force_build,
        force_reconfig=opts.force_reconfig,
        quick=opts.quick,
        keep_outputs=opts.keep_outputs,
        per_board_out_dir=opts.per_board_out_dir,
        in_tree=opts.in_tree,
        full_path=opts.full_path,
        override_toolchain=opts.override_toolchain,
        make_target=opts.target,
        make_flags=make_flags,
        adjust_cfg=adjustments,
        fragments=fragments,
        dtc_skip=opts.dtc_skip,
        build_timeout=next(t for t in (opts.build_timeout,
                                       settings.build_timeout, DEFAULT_BUILD_TIMEOUT)
                           if t is not None),
        jobserver=not opts.no_jobserver,
        skip_unchanged=settings.skip_unchanged and not opts.no_skip,
        keep_build_dirs_mb=settings.keep_build_dirs_mb,
        ccache=settings.ccache and not opts.no_ccache,
        current_source=opts.branch is None,
    )


def select(opts: PlanOptions, all_boards: list[Board]) -> Selection:
    board_list = [b for item in opts.boards for b in item.split(",") if b]
    exclude = [x for item in opts.exclude for x in item.split(",") if x]
    selection = select_boards(all_boards, list(opts.terms), exclude, board_list)
    # A typo in a term must not silently shrink the run: refuse it.
    if selection.unmatched_terms:
        raise PlanError("no board matches term " + ", ".join(
            f"'{t}'" for t in selection.unmatched_terms))
    if selection.not_found:
        raise PlanError(f"Boards not found: {', '.join(selection.not_found)}")
    if not selection.boards:
        raise PlanError("No matching boards found")
    return selection


def load_boards(opts: PlanOptions, src_dir: Path, base: Path) -> list[Board]:
    """boards.cfg's boards, plus (``-X``) the extended boards of configs/*.buildman."""
    cfg = base / "boards.cfg"
    boards = boards_mod.ensure_boards_cfg(src_dir, cfg, jobs=opts.threads or None,
                                          verbose=opts.verbose)
    if opts.extend:
        from buildfleet.extended import extended_boards

        boards = boards + extended_boards(src_dir, boards, base, jobs=opts.threads or None,
                                          warn=boards_mod._to_stderr)
    return boards


def commits_for(opts: PlanOptions, src_dir: Path) -> tuple[list[Commit], list[Commit]]:
    if not opts.branch:
        current = [Commit(0, None, "current source")]
        return current, current
    try:
        all_commits = gitutil.branch_commits(src_dir, opts.branch, opts.count)
    except gitutil.GitError as exc:
        raise PlanError(str(exc)) from exc
    if not all_commits:
        raise PlanError(f"No commits found to process in branch '{opts.branch}'")
    if opts.step < 0:
        raise PlanError("--step must be 0 or more")
    return all_commits, gitutil.step_commits(all_commits, opts.step)


def remove_old_commit_dirs(base: Path, commits: list[Commit],
                           log: Callable[[str], object] = print) -> int:
    """Drop result directories of commits no longer on the branch (as buildman)."""
    keep = {commit_dir_name(c) for c in commits}
    stale = [p for p in base.iterdir() if p.is_dir() and is_commit_dir(p.name)
             and p.name not in keep] if base.is_dir() else []
    if stale:
        log(f"Removing {len(stale)} old build directories...")
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return len(stale)


def recorded_adjustments(path: Path) -> str:
    """The ``adjust-cfg`` record of a result ('' if none: built without -a/--fragments)."""
    try:
        return (path / ADJUST_RECORD).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def needs_build(path: Path, flags: BuildFlags, force_failures: bool,
                current_source: bool) -> tuple[bool, int | None]:
    """(build it?, the previous return code if it stays). See :func:`readjusted`."""
    if current_source or flags.force_build:
        return True, None
    rc = read_done(path)
    if not is_done(rc):
        return True, None
    if force_failures and (rc != 0 or (path / "err").is_file()):
        return True, rc
    if readjusted(path, flags):
        return True, None
    return False, rc


def readjusted(path: Path, flags: BuildFlags) -> bool:
    """Was the result at ``path`` built with other -a/--fragments than this run's?

    The output directory's name does not say (buildman's: relaunching with
    another -a silently keeps the old results), so each result records them.
    """
    return recorded_adjustments(path) != flags.adjust_record()


def shard_selection(selection: Selection, src_dir: Path, spec: ShardSpec,
                    costs_file: Path | None) -> tuple[Selection, Split]:
    """Keep shard ``spec`` of ``selection``, split by priors and the ``--costs`` file."""
    from buildfleet.fleet.dispatch.costsources import shard_costs

    model = shard_costs(src_dir, selection.boards, costs_file)
    split = split_boards(selection.boards, model.estimate, spec.count)
    mine = split.shard(spec)
    keep = {b.target for b in mine}
    why = {term: [t for t in targets if t in keep]
           for term, targets in selection.why_selected.items()}
    return Selection(list(mine), why, selection.not_found,
                                selection.unmatched_terms), split


def make_plan(opts: PlanOptions, settings: Settings, src_dir: Path,
              output_dir: Path, more_dirs: list[Path] | None = None) -> RunPlan:
    """The run ``opts`` ask for; ``more_dirs`` are output directories read with -s."""
    all_commits, commits = commits_for(opts, src_dir)
    if opts.work_in_output:
        # -w: the output directory is the build directory (no 'current' level).
        base = (output_dir / branch_dir_name(opts.branch) if opts.branch and not opts.no_subdirs
                else output_dir)
    else:
        base = base_dir(output_dir, opts.branch, opts.no_subdirs)
    home = base if opts.branch or opts.work_in_output else output_dir
    all_boards = load_boards(opts, src_dir, home)
    selection = select(opts, all_boards)
    costs_file = Path(opts.costs) if opts.costs else None
    spec = ShardSpec.parse(opts.shard) if opts.shard else None
    split = None
    if spec is not None:
        selection, split = shard_selection(selection, src_dir, spec, costs_file)
    nboards = len(selection.boards)
    if opts.work_in_output:
        if nboards != 1:
            raise PlanError("-w can only be used with a single board")
        if len(commits) != 1:
            raise PlanError("-w can only be used with a single commit")
    threads, jobs = threads_and_jobs(opts.threads, opts.jobs, nboards, cpu_count())
    flags = build_flags(opts, settings, selection.boards)
    git_dir = None if opts.branch is None else gitutil.git_dir(src_dir)
    plan = RunPlan(src_dir, git_dir, opts.branch, all_commits, commits, selection, base,
                   threads, jobs, bool(opts.jobs), flags,
                   work_in_output=opts.work_in_output, home=home, shard=spec, split=split,
                   costs_file=costs_file)
    plan.bases = [base] + [base_dir(d, opts.branch, opts.no_subdirs) for d in more_dirs or []]
    for board in selection.boards:
        todo = []
        for commit in commits:
            path = plan.result_dir(commit, board.target)
            build, rc = needs_build(path, flags, opts.force_build_failures, plan.current_source)
            if build:
                if (not plan.current_source and not flags.force_build
                        and read_done(path) is not None and readjusted(path, flags)):
                    plan.readjusted += 1
                todo.append(commit)
            elif rc is not None:
                plan.previous.append(Previous(board.target, commit.sequence, rc,
                                              (path / "err").is_file()))
        if todo:
            plan.todo.append(BuildJob(board, tuple(todo)))
    return plan


def missing_toolchains(boards: list[Board], archs: set[str]) -> dict[str, list[str]]:
    """Archs of ``boards`` not in ``archs`` (what the toolchains serve), with their boards."""
    missing: dict[str, list[str]] = {}
    for board in boards:
        if board.arch not in archs:
            missing.setdefault(board.arch, []).append(board.target)
    return missing


def dry_run_lines(plan: RunPlan, verbose: bool) -> list[str]:
    """What ``-n`` prints: buildman's description of the run."""
    what = ("current source" if plan.current_source
            else f"{len(plan.commits)} commit{'s' if len(plan.commits) != 1 else ''}")
    lines = [
        "Dry run, so not doing much. But I would do this:",
        "",
        f"Building {what} for {len(plan.boards)} boards ({plan.threads} thread"
        f"{'s' if plan.threads != 1 else ''}, {plan.jobs} job"
        f"{'s' if plan.jobs != 1 else ''} per thread)",
        f"Build directory: {plan.build_home}",
    ]
    if not plan.current_source:
        for commit in plan.commits:
            lines.append(f"    {(commit.hash or '')[:8]} {commit.subject}")
    lines += dry_run_term_lines(plan.selection, verbose)
    if plan.shard is not None and plan.split is not None:
        lines += shard_lines(plan, verbose)
    return lines


def shard_lines(plan: RunPlan, verbose: bool) -> list[str]:
    """What ``-n --shard K/N`` adds: the shard's size and expected cost; ``-v``: its boards."""
    from buildfleet.fleet.dispatch.costsources import shard_costs
    from buildfleet.shard import millis

    assert plan.shard is not None and plan.split is not None
    spec, split = plan.shard, plan.split
    total = sum(split.loads)
    source = (f"measured costs from {plan.costs_file}" if plan.costs_file
              else "priors from the board database")
    lines = [f"Shard {spec}: {len(plan.boards)} of {sum(len(s) for s in split.shards)} boards, "
             f"expected {split.load(spec) / 1000:.1f} s of build time per commit, of "
             f"{total / 1000:.1f} s in all shards (largest shard {max(split.loads) / 1000:.1f} s; "
             f"{source})"]
    if verbose:
        model = shard_costs(plan.src_dir, plan.boards, plan.costs_file)
        for board in sorted(plan.boards, key=lambda b: (-millis(model.estimate(b)), b.target)):
            lines.append(f"   {board.target:30s} {millis(model.estimate(board)) / 1000:9.1f} s")
    return lines


def slot_root(plan: RunPlan) -> Path:
    return work_dir(plan.build_home)
