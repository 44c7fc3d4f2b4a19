"""What buildfleet costs on top of make, for a local build of boards x commits.

The same boards and commits are built, in one run of this script, by
(a) ``buildfleet -b demo -f -T T -j J`` into a fresh output directory, and
(b) a plain loop with the same worktrees, threads and ``-j``: a pool of T
threads, each owning one worktree, takes boards; for every commit it runs
``git checkout`` and ``make O=... -s -jJ NPROC=J`` (with the board's
``CROSS_COMPILE``), configuring with ``make <t>_defconfig`` first.

By default the loop does the same *make work* buildfleet must do to get
buildman's results: it also reconfigures when the commit changed Kconfig or
the board's defconfig, retries a failed incremental build after configuring,
and recompiles files that warned (so warnings persist, as buildfleet does).
Then the difference is pure tool overhead: the result capture (sizes, nm,
objdump, objcopy, config copies), the output-tree writer, scheduling and
start-up. ``--bare`` drops those rules (only the first commit configured).

Each measurement runs ``--repeat`` times (default 3), alternating, and the
medians are compared. The overhead ratio is printed last. Goal: <= 1.03.

Usage: python3 bench/local_overhead.py [--boards 16] [--commits 4] [-T 2] [-j 1]
       [--repeat 3] [--bare] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from buildfleet.demo import DemoBoard, DemoTree, make_demo_tree

DIAG_SOURCE_RE = re.compile(r"^([^\s:]+\.[cS]):\d+:(?:\d+:)? (?:warning|error):", re.M)


@dataclass(frozen=True)
class Setup:
    tree: DemoTree
    hashes: list[str]
    threads: int
    jobs: int
    settings: Path
    same_work: bool


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL).stdout


def branch_hashes(repo: Path) -> list[str]:
    """The commits ``-b demo`` builds: upstream commit first, then the branch's."""
    base = git(repo, "merge-base", "main", "demo").strip()
    return [base, *git(repo, "rev-list", "--reverse", f"{base}..demo").split()]


@dataclass
class Timing:
    wall: float
    cpu: float  # user + system seconds of this process's threads and every child


def _cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


def run_buildfleet(setup: Setup, out: Path) -> Timing:
    argv = [sys.executable, "-m", "buildfleet", "-b", "demo", "-f", "-T", str(setup.threads),
            "-j", str(setup.jobs), "-o", str(out), "-G", str(setup.settings), "-I"]
    cpu = _cpu()
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=setup.tree.path, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    took = Timing(time.perf_counter() - start, _cpu() - cpu)
    if proc.returncode not in (0, 100, 101):
        raise SystemExit(f"buildfleet failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
    return took


def _make(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True)
    return proc.returncode, proc.stderr


def _config_changed(worktree: Path, old: str, new: str, target: str) -> bool:
    names = git(worktree, "diff", "--name-only", old, new).split()
    return any(n.rsplit("/", 1)[-1].startswith("Kconfig") or n == f"configs/{target}_defconfig"
               for n in names)


def plain_board(setup: Setup, board: DemoBoard, worktree: Path, out_dir: Path) -> None:
    """One board through every commit in one worktree: what any tool must do."""
    env = dict(os.environ, CROSS_COMPILE=board.cross_compile)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    common = ["make", f"O={out_dir}", "-s", f"-j{setup.jobs}", f"NPROC={setup.jobs}"]
    defconfig = [*common, f"{board.target}_defconfig"]
    need_config = True
    previous = None
    for commit in setup.hashes:
        subprocess.run(["git", "checkout", "-q", "-f", commit], cwd=worktree, check=True,
                       stdin=subprocess.DEVNULL, capture_output=True)
        configure = need_config
        if (setup.same_work and not configure and previous is not None
                and _config_changed(worktree, previous, commit, board.target)):
            configure = True
        rc = 0
        err = ""
        if configure:
            rc, err = _make(defconfig, worktree, env)
        if rc == 0:
            rc, err = _make(common, worktree, env)
        if setup.same_work and rc != 0 and not configure:
            rc, err = _make(defconfig, worktree, env)
            if rc == 0:
                rc, err = _make(common, worktree, env)
        need_config = rc != 0 and setup.same_work
        if setup.same_work:
            for m in DIAG_SOURCE_RE.finditer(err):
                (out_dir / Path(m.group(1)).with_suffix(".o")).unlink(missing_ok=True)
        previous = commit


def run_plain(setup: Setup, worktrees: list[Path], out_root: Path) -> Timing:
    free: queue.Queue[int] = queue.Queue()
    for i in range(len(worktrees)):
        free.put(i)

    def one(board: DemoBoard) -> None:
        slot = free.get()
        try:
            plain_board(setup, board, worktrees[slot], out_root / f"{slot:02d}")
        finally:
            free.put(slot)

    cpu = _cpu()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=setup.threads) as pool:
        for fut in [pool.submit(one, b) for b in setup.tree.boards]:
            fut.result()
    return Timing(time.perf_counter() - start, _cpu() - cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--boards", type=int, default=16)
    parser.add_argument("--commits", type=int, default=4,
                        help="commits built, the upstream commit included (>= 2)")
    parser.add_argument("-T", "--threads", type=int, default=2)
    parser.add_argument("-j", "--jobs", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bare", action="store_true",
                        help="plain loop configures only at the first commit")
    parser.add_argument("--keep", type=Path, help="work here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.commits < 2:
        parser.error("--commits must be at least 2")

    work = args.keep or Path(tempfile.mkdtemp(prefix="bf-overhead-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        tree = make_demo_tree(work / "tree", boards=args.boards, commits=args.commits - 1)
        settings = work / "settings.ini"
        settings.write_text("[toolchain]\n")
        setup = Setup(tree, branch_hashes(tree.path), args.threads, args.jobs, settings,
                      same_work=not args.bare)
        print(f"{len(tree.boards)} boards x {len(setup.hashes)} commits, -T{args.threads} "
              f"-j{args.jobs}, {args.repeat} runs each; plain loop: "
              f"{'bare' if args.bare else 'same make work as buildfleet'}", flush=True)
        bf_times: list[Timing] = []
        plain_times: list[Timing] = []
        worktrees: list[Path] = []
        for rep in range(args.repeat):
            out = work / f"out-{rep}"
            shutil.rmtree(out, ignore_errors=True)
            bf_times.append(run_buildfleet(setup, out))
            if not worktrees:  # the loop reuses the first run's worktrees
                worktrees = [out / "demo" / ".bm-work" / f"{i:02d}"
                             for i in range(args.threads)]
            plain_times.append(run_plain(setup, worktrees, work / "plain"))
            print(f"  run {rep + 1}: buildfleet {bf_times[-1].wall:.2f} s "
                  f"(cpu {bf_times[-1].cpu:.2f} s), plain make loop "
                  f"{plain_times[-1].wall:.2f} s (cpu {plain_times[-1].cpu:.2f} s)", flush=True)
        bf = statistics.median(t.wall for t in bf_times)
        plain = statistics.median(t.wall for t in plain_times)
        bf_cpu = statistics.median(t.cpu for t in bf_times)
        plain_cpu = statistics.median(t.cpu for t in plain_times)
        print(f"load average now: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        print(f"buildfleet (median):      {bf:.2f} s wall, {bf_cpu:.2f} s cpu")
        print(f"plain make loop (median): {plain:.2f} s wall, {plain_cpu:.2f} s cpu")
        results = len(tree.boards) * len(setup.hashes)
        print(f"cpu ratio (buildfleet / plain make loop): {bf_cpu / plain_cpu:.2f} "
              f"({(bf_cpu - plain_cpu) / results * 1000:.1f} ms cpu per result)")
        print(f"overhead ratio (buildfleet / plain make loop): {bf / plain:.2f}")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
