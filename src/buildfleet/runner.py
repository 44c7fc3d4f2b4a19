"""Run a plan: one pool, the local slots and any remote workers, one sink.

The local machine and each worker are executors pulling from the same pool;
this module starts them, waits for them (interruptibly), and closes the run
with buildman's ``Completed`` line and exit code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from buildfleet.build.builder import Builder
from buildfleet.build.jobserver import Jobserver
from buildfleet.build.makecmd import make_jobs
from buildfleet.build.workspace import prepare_slots
from buildfleet.fleet import status as phase
from buildfleet.fleet.context import Executor, MachineExecutor, RemoteStarter, RunContext
from buildfleet.fleet.dispatch.costaware import CostAwarePolicy
from buildfleet.fleet.dispatch.costfile import CostData, update_cache
from buildfleet.fleet.dispatch.costsources import run_costs, tree_id
from buildfleet.fleet.dispatch.pool import JobPool
from buildfleet.fleet.dispatch.sink import ResultSink
from buildfleet.fleet.dispatch.stats import DispatchStats
from buildfleet.fleet.local import LocalExecutor
from buildfleet.fleet.runlog import RunLog
from buildfleet.fleet.status import FleetStatus, fleet_snapshot
from buildfleet.model import (
    COPIED_FROM,
    LOCAL,
    Board,
    BuildJob,
    BuildResult,
    toolchain_error_result,
)
from buildfleet.options import RunOptions
from buildfleet.plan import RunPlan, cpu_count, slot_root
from buildfleet.results import fleet_view
from buildfleet.results.history import scan_base
from buildfleet.results.manifest import MANIFEST_NAME, RunManifest, local_host
from buildfleet.results.progress import Progress, RunCounts, completed_line
from buildfleet.results.reader import read_result
from buildfleet.results.summary import SummaryOptions, format_board_result
from buildfleet.results.writer import ResultWriter
from buildfleet.toolchains import Toolchains

BOSS_LOG = ".buildman.log"
JOIN_POLL = 0.2
# Paths that make and the shells it starts take as one word.
MAKE_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./+,=@%:-]+$")
STOP_GRACE = 5.0




def local_make_jobs(plan: RunPlan, nslots: int) -> Callable[[int], int]:
    """make -j for a local board: fixed with -j, else rising as slots go idle."""
    cpus = cpu_count()

    def jobs(active: int) -> int:
        if plan.jobs_fixed:
            return plan.jobs
        return max(plan.jobs, make_jobs(cpus, nslots, active))

    return jobs


def local_jobserver(plan: RunPlan, nslots: int) -> Jobserver | None:
    """This machine's make jobserver: one token per CPU thread (or per slot, if
    more slots were asked for). None with ``-j`` (make gets that -j, as in
    buildman) or ``--no-jobserver``."""
    if plan.jobs_fixed or not plan.flags.jobserver:
        return None
    return Jobserver(max(cpu_count(), nslots))


def verbose_printer(plan: RunPlan, opts: SummaryOptions, log: Callable[[str], None],
                    color: bool) -> Callable[[BuildResult], None]:
    """``-v``: after each written result, the summary's text for that board (as buildman).

    Current-source builds always show their error lines, as buildman does.
    """
    if plan.current_source:
        opts = dataclasses.replace(opts, show_errors=True)
    commits = {c.sequence: c for c in plan.commits}
    boards = {b.target: b for b in plan.boards}

    def show(result: BuildResult) -> None:
        copied = result.files.get(COPIED_FROM)
        if copied is not None:
            log(f"{result.target}: commit {result.sequence + 1} skipped: unchanged since "
                f"{copied.decode('ascii', 'replace').strip()[:12]}, result copied")
        if result.return_code == 0 and not result.stderr:
            return  # clean results would only repeat their commit's header
        commit = commits[result.sequence]
        stored = read_result(plan.result_dir(commit, result.target),
                             func_sizes=False, config=False, environment=False)
        text = format_board_result(stored, boards[result.target], commit, opts, color,
                                   remote=result.host or None)
        if text:
            log(text.rstrip("\n"))
    return show


def run_plan(plan: RunPlan, opts: RunOptions, summary: SummaryOptions, toolchains: Toolchains,
             start_remote: RemoteStarter | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    counts = RunCounts()
    for prev in plan.previous:
        counts.add(prev.return_code, prev.has_stderr, previous=True)
    counts.total = counts.previously + plan.results_to_build
    show_progress = not opts.ide
    progress = Progress(counts, out, enabled=show_progress)
    costs = run_costs(plan.src_dir, plan.boards, plan.base.parent, plan.costs_file,
                      lambda text: print(f"Warning: {text}", file=sys.stderr))
    policy = CostAwarePolicy(costs, hedging=not opts.no_hedge)
    pool = JobPool(policy, list(plan.todo))
    writer = ResultWriter(plan.base, plan.commits,
                          in_place=plan.base if plan.work_in_output else None)
    verbose = opts.verbose or plan.current_source
    on_written = (verbose_printer(plan, summary, progress.message, progress.tty)
                  if verbose else None)
    sink = ResultSink(pool, writer, counts, progress, on_written=on_written)
    stop = threading.Event()
    boss_log = RunLog(plan.base / BOSS_LOG)

    def log(text: str) -> None:
        boss_log.write("--", text)
        progress.message(text)

    boss_log.write(">>", f"run: {len(plan.todo)} boards, {plan.results_to_build} results to build")
    manifest = start_manifest(plan, opts, toolchains, log)
    ctx = RunContext(plan, pool, sink, stop, log, opts, costs=costs, manifest=manifest)
    executors: list[Executor] = []
    start = pool.clock()
    policy.stats.begin(start)
    try:
        local = not opts.no_local and bool(plan.todo)
        if local:
            ctx.status.set(LOCAL, phase.STARTING)
        if start_remote is not None and not opts.verbose:
            _show_fleet(ctx, progress, counts)
        if start_remote is not None:
            executors += start_remote(ctx)
        if local:
            executors.append(_start_local(ctx, toolchains, progress.message,
                                          alone=start_remote is None))
            ctx.status.set(LOCAL, phase.BUILDING)
        if len(executors) > 1 and not opts.verbose:
            _show_fleet(ctx, progress, counts)
        progress.update()
        for ex in executors:
            ex.start()
        _wait(executors, ctx.status)
    except KeyboardInterrupt:
        progress.stop()  # a clean screen first: what follows is plain lines
        stop.set()
        pool.close()
        _run_closers(ctx)
        deadline = time.monotonic() + STOP_GRACE
        for ex in executors:
            ex.join(max(0.0, deadline - time.monotonic()))
        sink.close()
        progress.stop()
        boss_log.write("!!", "interrupted")
        boss_log.close()
        _finish_manifest(manifest, "interrupted", 130, log)
        print("\nInterrupted: stopped every build; results so far are kept.", file=sys.stderr)
        return 130
    except Exception:
        _finish_manifest(manifest, "failed", None, log)
        raise
    finally:
        _run_closers(ctx)
        sink.close()
        progress.stop()
    policy.stats.end(pool.clock())
    elapsed = policy.stats.wall  # one clock for every duration printed
    if plan.todo and (problem := update_cache(tree_id(plan.src_dir),
                                              CostData.from_samples(scan_base(plan.base)))):
        print(f"Warning: {problem}", file=sys.stderr)
    boss_log.write(">>", f"end: {counts.done} results, {elapsed:.1f}s")
    boss_log.close()
    code = _close_run(plan, opts, ctx, policy, counts, executors, elapsed, out)
    _finish_manifest(manifest, "completed", code, log)
    return code


def _show_fleet(ctx: RunContext, progress: Progress, counts: RunCounts) -> None:
    """Switch a terminal's progress to the fleet view (one line per machine)."""
    pool, status = ctx.pool, ctx.status
    progress.show_fleet(lambda: fleet_view.render(fleet_snapshot(status, pool, counts)))


def start_manifest(plan: RunPlan, opts: RunOptions, toolchains: Toolchains,
                   log: Callable[[str], None]) -> RunManifest:
    """Write ``.buildfleet-run.json`` before anything builds (machines are added as they join)."""
    manifest = RunManifest(plan.base / MANIFEST_NAME, list(sys.argv[1:]), str(plan.src_dir),
                           plan.branch, [c.hash for c in plan.commits], len(plan.boards),
                           plan.results_to_build, plan.flags.to_dict())
    if not opts.no_local:
        manifest.add_machine(LOCAL, toolchains.to_map(), local_host(), plan.threads)
    if problem := manifest.save():
        log(f"Warning: {problem}")
    return manifest


def _finish_manifest(manifest: RunManifest, status: str, code: int | None,
                     log: Callable[[str], None]) -> None:
    manifest.finish(status, code)
    if problem := manifest.save():
        log(f"Warning: {problem}")


def _close_run(plan: RunPlan, opts: RunOptions, ctx: RunContext,
               policy: CostAwarePolicy, counts: RunCounts, executors: list[Executor],
               elapsed: float, out: TextIO) -> int:
    """Print the closing lines of a run (buildman's and the fleet's) and pick the exit code."""
    sink, pool = ctx.sink, ctx.pool
    exceptions = sum(ex.exceptions for ex in executors)
    newly = counts.done - counts.previously
    if not plan.todo:
        print("Nothing to build: every result is already in the output tree "
              "(use -f to build again).", file=out)
    print(completed_line(counts, newly, elapsed), file=out)
    missing = pool.unbuildable()
    # A board that failed for an infrastructure reason where it could be built says so.
    abandoned = {**pool.abandoned(), **{j.board.target: why for j in missing
                                        if (why := pool.failure_of(j.board.target))}}
    missing = [j for j in missing if j.board.target not in abandoned]
    not_built = len(missing) + len(abandoned)
    # Machines that left the run (busy, unusable, failed) may have had the toolchain:
    # then the boards are not a toolchain problem, and no toolchain error is written.
    gone = [f"{ex.name}: {why}" for ex in ctx.remote_executors if (why := ex.gone_reason())]
    if pool.quarantined(LOCAL):
        gone.insert(0, f"{LOCAL}: quarantined after {pool.failures(LOCAL)} failures")
    if missing:
        names = ", ".join(sorted(j.board.target for j in missing))
        if gone:
            print(f"Not built (no machine left for them; {'; '.join(gone)}): {names}",
                  file=out)
        else:
            print(f"Not built (no executor with a toolchain for them): {names}", file=out)
            _record_missing_toolchains(ctx, missing)
    for target, reason in sorted(abandoned.items()):
        print(f"Not built: {target}: {reason}", file=out)
    for line in machines_block(policy.stats, counts, ctx.remote_executors,
                               verbose=bool(opts.verbose) and bool(plan.todo)):
        print(line, file=out)
    if plan.todo:
        print(policy.stats.summary_line(), file=out)
    if sink.discarded:
        print(f"Discarded {sink.discarded} late or duplicate results", file=out)
    for line in sink.repro.report_lines(plan.flags.reproducible_builds):
        print(line, file=out)
    if plan.todo and (problem := sink.repro.save(plan.base)):
        print(f"Warning: {problem}", file=out)
    if exceptions:
        print(f"Failed: {exceptions} thread exceptions", file=out)
        exit_code = 102
    else:
        exit_code = counts.exit_code(opts.ignore_warnings)
        if not_built:
            exit_code = 100  # a board not built is a failure, not just a warning
    return exit_code


def _record_missing_toolchains(ctx: RunContext, jobs: list[BuildJob]) -> None:
    """Give boards no executor could build buildman's no-toolchain result, so the
    output tree says why they failed (a later run builds them again)."""
    writer = ctx.sink.writer
    for job in jobs:
        for commit in job.commits:
            try:
                writer.write(toolchain_error_result(job.board.target, job.board.arch,
                                                    commit.sequence))
            except OSError as exc:
                ctx.log(f"Cannot write result of {job.board.target}: {exc}")


def machines_block(stats: DispatchStats, counts: RunCounts, remote: Sequence[MachineExecutor],
                   verbose: bool = False) -> list[str]:
    """The ``Machines:`` lines: one per executor, every figure from the run's account.

    Boards, slots and busy/idle time come from the dispatch account, results
    from the sink's count of written results; a remote executor adds its
    bytes and failures, and one that never joined the pool says why.
    """
    if not remote and not verbose:
        return []
    lines = ["Machines:"]
    if LOCAL in stats.executors:
        lines.append(stats.machine_line(LOCAL, counts.per_host.get(LOCAL, 0)))
    for ex in remote:
        if ex.name in stats.executors:
            lines.append(stats.machine_line(ex.name, counts.per_host.get(ex.name, 0),
                                            ex.closing_extra()))
        else:
            lines.append(ex.closing_line())
    return lines


def _start_local(ctx: RunContext, toolchains: Toolchains,
                 log: Callable[[str], None], alone: bool = True) -> LocalExecutor:
    """This machine's slots, registered with the pool.

    ``alone`` (no remote machines): the slots take every board, and one whose
    arch has no toolchain gets buildman's failed result for it. With remote
    machines such a board waits for a machine that has the toolchain.
    """
    plan, opts = ctx.plan, ctx.opts
    nslots = min(plan.threads, len(plan.todo))
    slots = prepare_slots(plan.git_dir, plan.src_dir, local_slot_root(plan), nslots)
    if plan.work_in_output:
        for slot in slots:  # -w: make's O= is the output directory itself
            slot.fixed_out = plan.base
    jobserver = local_jobserver(plan, nslots)
    if jobserver is not None:
        ctx.closers.append(jobserver.close)
    builder = Builder(plan.flags, toolchains, kconfig_check=not opts.no_kconfig_check,
                      jobserver=jobserver)

    archs = toolchains.archs()

    def local_can_build(board: Board) -> bool:
        return alone or board.arch in archs

    local = LocalExecutor(ctx.pool, builder, slots, ctx.sink, local_make_jobs(plan, nslots),
                          ctx.stop, log, debug=opts.debug)
    costs = ctx.costs
    ctx.pool.register(LOCAL, nslots, local_can_build, cancel=local.cancel,
                      speed=costs.speed(LOCAL) if costs is not None and not costs.empty else None)
    return local


def local_slot_root(plan: RunPlan) -> Path:
    """Where local slots build: under the output tree, unless make could not cope.

    make splits ``O=`` and its own paths at spaces and hands them to the shell,
    so an output directory named ``my out;x`` would break every build. Such a
    tree gets its work area in the cache instead, under a stable name derived
    from the output path (so incremental builds still find it).
    """
    root = slot_root(plan)
    if MAKE_SAFE_PATH.match(str(root)):
        return root
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(str(plan.base.resolve()).encode()).hexdigest()[:16]
    return cache / "buildfleet" / "work" / digest / root.name


def _run_closers(ctx: RunContext) -> None:
    """Run every closer once (workers told to quit, SSH connections closed)."""
    while ctx.closers:
        closer = ctx.closers.pop(0)
        try:
            closer()
        except KeyboardInterrupt:
            ctx.stop.set()  # a second Ctrl-C: keep closing, the rest is bounded too


def _wait(executors: list[Executor], status: FleetStatus) -> None:
    """Wait for every executor; short joins so Ctrl-C is handled promptly.

    An executor still marked building when it ends (the local slots) is done.
    """
    pending = list(executors)
    while pending:
        still = []
        for ex in pending:
            if not ex.join(JOIN_POLL):
                still.append(ex)
            elif status.phases().get(ex.name, ("",))[0] == phase.BUILDING:
                status.set(ex.name, phase.DONE)
        pending = still
