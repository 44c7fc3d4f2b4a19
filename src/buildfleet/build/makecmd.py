"""make's command line for a board, from the build flags, as buildman forms it."""

from __future__ import annotations

import os
from pathlib import Path

from buildfleet.model import BuildFlags

STALE_ELFS = ("u-boot", "spl/u-boot-spl", "tpl/u-boot-tpl")


def common_args(flags: BuildFlags, out_dir: Path | None, jobs: int, target: str,
                checkout: Path | None = None, jobserver: bool = False) -> list[str]:
    """Arguments every make call of a board gets, in buildman's order and spelling.

    ``checkout`` is the worktree make runs in for a branch build: there ``O=``
    is relative to it (``O=build``, ``O=../<target>`` with -P), as buildman
    writes it; a current-source build gets an absolute ``O=``. With a shared
    ``jobserver`` make gets no ``-j`` (it would start its own jobserver), only
    ``NPROC=jobs``, the jobs it may take at most.
    """
    args: list[str] = []
    if out_dir is not None:
        where = os.path.relpath(out_dir, checkout) if checkout is not None else str(out_dir)
        args.append(f"O={where}")
    args.append("V=1" if flags.verbose_build else "-s")
    if not jobserver:
        args += ["-j", str(jobs)]
    args.append(f"NPROC={jobs}")
    if flags.warnings_as_errors:
        args += ["KCFLAGS=-Werror", "HOSTCFLAGS=-Werror"]
    if flags.allow_missing:
        args.append("BINMAN_ALLOW_MISSING=1")
    if flags.no_lto:
        args.append("NO_LTO=1")
    if flags.reproducible_builds:
        args.append("SOURCE_DATE_EPOCH=0")
    args += flags.make_flags.get(target, [])
    if flags.override_toolchain:
        args += [f"HOSTCC={flags.override_toolchain}", f"CC={flags.override_toolchain}"]
    return args


def build_targets(flags: BuildFlags) -> list[str]:
    if flags.config_only:
        return ["cfg"]
    if flags.make_target:
        return [flags.make_target]
    return []


def make_jobs(threads: int, max_boards: int, in_flight: int) -> int:
    """``make -j`` for a board starting on a machine (the seed's ``max_boards`` rule).

    ``threads`` is the machine's CPU threads, ``max_boards`` its cap on boards
    in flight (0 or less: one board per thread), ``in_flight`` the boards
    running *including the one starting*. At steady state each board gets its
    share, ``threads // in_flight``; when fewer boards than the cap run (the
    tail), each gets up to twice its share so the machine stays busy. Never
    below 1 nor above ``threads``. (Counting the starting board avoids
    buildman's off-by-one, where every refill saw one board fewer and got the
    tail's double share.)
    """
    threads = max(1, threads)
    active = max(1, in_flight)
    baseline = max_boards if max_boards > 0 else threads
    share = 2 * threads // active if active < baseline else threads // active
    return max(1, min(threads, share))
