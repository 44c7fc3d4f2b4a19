"""Typed options: what each room needs from the command line, and nothing else.

Why: the ``argparse.Namespace`` used to reach the plan, the runner, the
summary, the reports, the boss, ``--mach`` and the worker, often through
``getattr(args, name, False)``, so a renamed flag silently turned a feature
off. Only ``cmdline``/``cli`` see argparse now: ``cmdline.options`` fills
these classes field by field from the parsed flags (a field with no flag of
its name fails there, at once, and ``tests/test_cli.py`` fills every class).

Field names are the flags' ``dest`` names (buildman's long options); the
types are what ``cmdline`` parses them into. Nothing here reads the
environment or the settings file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def threads_and_jobs(threads: int | None, jobs: int | None, n_boards: int,
                     cpus: int) -> tuple[int, int]:
    """buildman's defaults, computed once: (slots, make -j per slot).

    ``threads`` (-T) and ``jobs`` (-j) win when given (-j 0 is not given);
    otherwise a slot per CPU (at most one per board) and make -j to fill the
    CPUs. Both are >= 1.
    """
    n_boards = max(1, n_boards)
    slots = threads if threads is not None else min(cpus, n_boards)
    per_slot = jobs if jobs else math.ceil(cpus / n_boards)
    return max(1, slots), max(1, per_slot)


@dataclass(frozen=True)
class PlanOptions:
    """What ``plan.make_plan`` turns into a ``RunPlan``: selection, commits, build flags.

    ``boards``/``exclude``/``adjust_cfg`` are the repeated options' strings
    (comma lists inside); ``fragments`` one comma list; ``build_timeout``
    seconds (None: the settings' or the default); ``costs`` and ``shard``
    as typed (a file name, ``K/N``).
    """

    terms: list[str]
    boards: list[str]
    exclude: list[str]
    extend: bool
    branch: str | None
    count: int
    step: int
    threads: int | None
    jobs: int | None
    force_build: bool
    force_build_failures: bool
    force_reconfig: bool
    quick: bool
    mrproper: bool
    fallback_mrproper: bool
    config_only: bool
    build_timeout: float | None
    target: str | None
    keep_outputs: bool
    work_in_output: bool
    in_tree: bool
    per_board_out_dir: bool
    no_subdirs: bool
    warnings_as_errors: bool
    no_lto: bool
    allow_missing: bool | None
    no_allow_missing: bool
    reproducible_builds: bool
    verbose_build: bool
    adjust_cfg: list[str]
    fragments: str | None
    dtc_skip: bool
    override_toolchain: str | None
    full_path: bool
    no_jobserver: bool
    no_skip: bool
    no_ccache: bool
    shard: str | None
    costs: str | None
    verbose: bool


@dataclass(frozen=True)
class RunOptions:
    """How ``runner.run_plan`` and the boss run a plan (not what it builds)."""

    debug: bool
    ide: bool
    verbose: bool
    ignore_warnings: bool
    no_hedge: bool
    no_kconfig_check: bool
    no_local: bool
    use_machines: str | None
    machines_buildman_path: str | None


@dataclass(frozen=True)
class ReportOptions:
    """``--report FILE.json``, ``--junit FILE.xml``, ``--html DIR`` (None: not asked)."""

    report: str | None
    junit: str | None
    html: str | None
    branch: str | None


@dataclass(frozen=True)
class MachineOptions:
    """``--mach`` and ``--kill-workers``: which machines, and whether to fetch toolchains."""

    use_machines: str | None
    machines_fetch_arch: bool


@dataclass(frozen=True)
class WorkerOptions:
    """``--worker``: ``-D`` and the work directory to take at start (None: wait for setup)."""

    debug: bool
    work_dir: str | None
