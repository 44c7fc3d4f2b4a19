"""``buildfleet``: turn argv into one of the flows and an exit code.

Each flow lives in its own module and is imported only when chosen, so a
worker or ``-H`` starts fast and a problem in one room cannot break another.
Every ``BuildfleetError`` (user or infrastructure, see ``errors``) ends here as
one line on stderr and exit 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from buildfleet.cmdline import options, parse_args
from buildfleet.errors import BuildfleetError, UserError
from buildfleet.options import (
    MachineOptions,
    PlanOptions,
    ReportOptions,
    RunOptions,
    WorkerOptions,
)

if TYPE_CHECKING:
    from buildfleet.plan import RunPlan
    from buildfleet.settings import Settings
    from buildfleet.toolchains import Toolchains

EXIT_USAGE = 1


class UsageError(UserError):
    """Options that cannot work together."""


def _sigterm_to_interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM and SIGHUP (a closed terminal, a dropped SSH session to the boss's
    machine) stop a run as Ctrl-C does: workers told to quit, makes killed."""
    raise KeyboardInterrupt()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.full_help:
        from buildfleet.manual import show_manual
        return show_manual()
    if args.worker:
        from buildfleet.fleet.worker.loop import run_worker
        return run_worker(options(args, WorkerOptions))
    try:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _sigterm_to_interrupt)
    except ValueError:
        pass  # not the main thread (tests calling main() directly)
    try:
        return _run(args)
    except BuildfleetError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"buildfleet: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nInterrupted", file=sys.stderr)
        return 130


def _check_usage(args: argparse.Namespace) -> None:
    if args.no_local and not args.dist:
        raise UsageError("--no-local requires --dist")
    if args.config_only and args.target:
        raise UsageError("--config-only cannot be used with --target")
    if args.work_in_output:
        if args.output_dir is None and not args.in_tree:
            raise UsageError("-w requires that you specify -o")
        if args.dist:
            raise UsageError("-w builds in a local directory: it cannot be used with --dist")
    if args.process_limit < 0:
        raise UsageError("--process-limit must be 0 (no limit) or more")


def _setup_demo(args: argparse.Namespace) -> None:
    """``--demo``: make the demo tree and build its ``demo`` branch from inside it."""
    from buildfleet.demo import make_demo_tree

    if args.demo:
        root = Path(args.demo).resolve()
    else:
        root = Path(tempfile.mkdtemp(prefix="buildfleet-demo-"))
    tree = root / "tree"
    if not (tree / ".git").is_dir():
        print(f"Creating the demo tree in {tree}", flush=True)
        make_demo_tree(tree)
    os.chdir(tree)
    args.git = "."
    if not args.branch:
        args.branch = "demo"
    if not args.summary:
        args.build_summary = True
    # The demo is a showcase: let its summary tell the whole story.
    args.show_errors = True
    args.show_sizes = True
    print(f"Results go to {root / args.branch}", flush=True)


def _run(args: argparse.Namespace) -> int:
    from buildfleet.settings import load_settings

    _check_usage(args)
    if args.demo is not None:
        _setup_demo(args)
    settings = load_settings(Path(args.config_file) if args.config_file else None)
    for warning in settings.warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    if args.fetch_arch:
        from buildfleet.toolchain_fetch import fetch_arch
        return fetch_arch(args.fetch_arch, settings)
    if args.kill_workers:
        from buildfleet.fleet.machines.report import run_kill_workers
        return run_kill_workers(options(args, MachineOptions), settings)
    from buildfleet.toolchains import run_list_toolchains, scan_toolchains
    if args.list_tool_chains:
        return run_list_toolchains(args.verbose, settings)
    if args.mach:
        from buildfleet.fleet.machines.report import run_mach
        return run_mach(options(args, MachineOptions), settings,
                        scan_toolchains(settings).archs())
    return _run_build_or_summary(args, settings)


def _source_dir(args: argparse.Namespace) -> Path:
    from buildfleet import gitutil

    src = Path(args.git).resolve()
    if not src.is_dir():
        raise UsageError(f"source directory {src} does not exist")
    try:
        return gitutil.toplevel(src)
    except gitutil.GitError:
        if args.branch:
            raise UsageError(f"{src} is not a git repository") from None
        return src


def _run_build_or_summary(args: argparse.Namespace, settings: Settings) -> int:
    from buildfleet.plan import dry_run_lines, make_plan, remove_old_commit_dirs
    from buildfleet.selection import shared_arch
    from buildfleet.toolchains import print_prefix, scan_toolchains

    src_dir = _source_dir(args)
    if not (src_dir / "Kconfig").is_file() and not (src_dir / "configs").is_dir():
        raise UsageError(f"{src_dir} does not look like a U-Boot tree (no Kconfig or configs/); "
                         "try 'buildfleet --demo'")
    dirs = [Path(d) for d in (args.output_dir or [])]
    if len(dirs) > 1 and not args.summary:
        raise UsageError("several -o directories can only be read together, with -s")
    if args.export_costs and not args.summary:
        raise UsageError("--export-costs writes what an output tree holds: use it with -s")
    output_dir = dirs[0] if dirs else Path("..")
    if args.work_in_output and not dirs:
        output_dir = src_dir  # -wi: build and leave the result in the tree itself
    if not output_dir.is_absolute():
        output_dir = (Path.cwd() / output_dir).resolve()
    more_dirs = [(Path.cwd() / d).resolve() for d in dirs[1:]]
    if args.maintainer_check or args.full_check or args.regen_board_list:
        return _board_checks(args, src_dir, output_dir)
    if args.work_dir is not None:
        raise UsageError("--work-dir is only for --worker")
    plan = make_plan(options(args, PlanOptions), settings, src_dir, output_dir, more_dirs)
    if args.summary:  # reads the tree: needs no compiler
        return _summary_flow(args, plan)
    if args.print_arch:  # from the board database: needs no compiler
        print(shared_arch(plan.boards))
        return 0
    toolchains = _with_wrapper(scan_toolchains(settings), settings, plan.flags.ccache)
    if args.print_prefix:
        print(print_prefix(plan.boards, toolchains))
        return 0
    # A board whose arch has no toolchain is not a reason to stop: it gets a
    # failed result saying so (as in buildman) and every other board is built.
    if args.dry_run:
        print("\n".join(dry_run_lines(plan, args.verbose)))
        return 0
    if args.dtc_skip and not args.no_local:
        from buildfleet.build.builder import find_dtc
        if find_dtc(dict(os.environ)) is None:
            raise UsageError("--dtc-skip: Cannot find dtc")
    if plan.branch is not None and not plan.work_in_output:
        remove_old_commit_dirs(plan.base, plan.all_commits)
    if plan.readjusted:
        print(f"Rebuilding {plan.readjusted} results built with other -a/--fragments")
    if args.process_limit:
        from buildfleet.process_limit import wait_for_turn
        try:
            turn = wait_for_turn(args.process_limit)
        except OSError as exc:
            raise UsageError(f"--process-limit: {exc}") from None
        plan_closers = [turn.release]
    else:
        plan_closers = []
    if plan.shard is not None and plan.split is not None:
        from buildfleet.shard import write_mark
        write_mark(plan.base, plan.shard, plan.split)
    start_remote = None
    if args.dist:
        from buildfleet.fleet.remote.starter import remote_starter
        start_remote = remote_starter(settings)
    from buildfleet.results.summary import SummaryOptions
    from buildfleet.runner import run_plan
    try:
        code = run_plan(plan, options(args, RunOptions), options(args, SummaryOptions),
                        toolchains, start_remote)
    finally:
        for release in plan_closers:
            release()
    _reports(args, plan)
    if args.build_summary:
        _summary(args, plan, header=False)
    return code


def _with_wrapper(toolchains: Toolchains, settings: Settings, ccache: bool) -> Toolchains:
    """The local slots' toolchains behind the run's wrapper: the user's
    ``[toolchain-wrapper]`` (in CROSS_COMPILE), else ccache masquerading as
    the compilers where this machine has a usable one."""
    from buildfleet.ccache import choose_wrapper

    choice = choose_wrapper(settings.toolchain_wrapper, ccache)
    if choice.note:
        print(f"Warning: {choice.note}", file=sys.stderr)
    if (choice.wrapper, choice.ccache) == (toolchains.wrapper, toolchains.ccache):
        return toolchains
    return toolchains.with_wrapper(choice.wrapper, choice.ccache,
                                   lambda msg: print(f"Warning: {msg}", file=sys.stderr))


def _board_checks(args: argparse.Namespace, src_dir: Path, output_dir: Path) -> int:
    """``-R``, ``--maintainer-check``, ``--full-check``: scan, report, exit 2 on warnings."""
    from buildfleet import boards as boards_mod
    from buildfleet.results.paths import base_dir

    if args.regen_board_list:
        warnings: list[str] = []
        found = boards_mod.scan_boards(src_dir, args.threads, warn=warnings.append)
        dest = args.regen_board_list
        home = base_dir(output_dir, args.branch, args.no_subdirs) if args.branch else output_dir
        path = home / "boards.cfg" if dest == "-" else Path(dest)
        boards_mod.write_boards_cfg(path, found)
        print(f"Wrote {len(found)} boards to {path}")
    else:
        warnings = boards_mod.maintainer_check(src_dir, args.full_check, args.threads)
    for warning in warnings:
        print(warning, file=sys.stderr)
    return 2 if warnings else 0


def _summary_flow(args: argparse.Namespace, plan: RunPlan) -> int:
    """``-s``: the summary, reports and cost export of one or several output trees.

    Exit 1 (after everything is written) when shards of a split are missing
    or doubled: a CI merge job must not pass on part of the boards.
    """
    from buildfleet.shard import shard_problems

    problems = shard_problems(plan.bases)
    if len(plan.bases) > 1:
        problems += [f"{base} does not exist (a shard's artifacts not unpacked?)"
                     for base in plan.bases if not base.is_dir()]
    code = _summary(args, plan)
    _reports(args, plan)
    if args.export_costs:
        from buildfleet.fleet.dispatch.costfile import CostData, write_costs
        from buildfleet.results.history import scan_base

        samples = [s for base in plan.bases for s in scan_base(base)]
        write_costs(Path(args.export_costs), CostData.from_samples(samples))
    for problem in problems:
        print(f"buildfleet: error: {problem}", file=sys.stderr)
    return EXIT_USAGE if problems else code


def _summary(args: argparse.Namespace, plan: RunPlan, header: bool = True) -> int:
    from buildfleet.results.summary import SummaryOptions, run_summary

    return run_summary(options(args, SummaryOptions), plan.bases, plan.all_commits, plan.boards,
                       plan.threads, plan.jobs, no_local=args.no_local, header=header,
                       src_dir=plan.src_dir)


def _reports(args: argparse.Namespace, plan: RunPlan) -> None:
    if not (args.report or args.junit or args.html):
        return
    from buildfleet.results.reports import write_reports

    write_reports(options(args, ReportOptions), plan.bases, plan.commits, plan.boards)


if __name__ == "__main__":
    sys.exit(main())
