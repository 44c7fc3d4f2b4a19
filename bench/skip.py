"""Skipping boards a commit cannot change: a series of commits each touching one board.

A demo tree gets a branch of ``--commits`` commits (10), each editing the
``board.c`` of one board (round robin over the ``--boards`` boards). The
branch is built, every board x commit, from a fresh output directory by
(a) ``buildfleet -b touch`` (a commit's other boards are copied, not built)
and (b) the same with ``--no-skip``, alternating, ``--repeat`` times each;
medians compared. Both trees hold the same results (tests/test_skip.py checks
that file for file); only the work differs.

Prints the load average before and after (the machine is shared), the runs,
the skipped count of (a), the medians and last (a) ÷ (b).

Usage: python3 bench/skip.py [--boards 8] [--commits 10] [-T 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from buildfleet.demo import DemoTree, make_demo_tree, touch_branch

BRANCH = "touch"


def build(tree: DemoTree, out: Path, threads: int, extra: list[str]) -> tuple[float, str]:
    """(wall seconds, closing Completed line) of building the whole branch into ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = out.parent / "bench.cfg"
    settings.write_text("")
    cmd = [sys.executable, "-m", "buildfleet", "-b", BRANCH, "-o", str(out),
           "-T", str(threads), "-G", str(settings), *extra]
    start = time.monotonic()
    run = subprocess.run(cmd, cwd=tree.path, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    wall = time.monotonic() - start
    if run.returncode != 0:
        sys.exit(f"buildfleet failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    completed = next((ln for ln in run.stdout.splitlines() if ln.startswith("Completed:")), "")
    return wall, completed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=8)
    parser.add_argument("--commits", type=int, default=10)
    parser.add_argument("-T", "--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bf-skip-"))
    try:
        tree = make_demo_tree(root / "src", boards=args.boards, commits=1)
        dirs = [b.board_dir for b in tree.boards]
        touch_branch(tree, BRANCH, [f"{dirs[i % len(dirs)]}/board.c"
                                    for i in range(args.commits)])
        results = (args.commits + 1) * len(tree.boards)
        print(f"load average before: {os.getloadavg()[0]:.2f}; {len(tree.boards)} boards x "
              f"{args.commits + 1} commits = {results} results; -T {args.threads}")
        skipping: list[float] = []
        building: list[float] = []
        skipped = ""
        for i in range(args.repeat):
            wall, completed = build(tree, root / f"a{i}" / "out", args.threads, [])
            skipping.append(wall)
            match = re.search(r"(\d+) skipped", completed)
            skipped = match.group(1) if match else "0"
            wall, _ = build(tree, root / f"b{i}" / "out", args.threads, ["--no-skip"])
            building.append(wall)
            print(f"  run {i + 1}: skipping {skipping[-1]:.2f} s ({skipped} results copied), "
                  f"--no-skip {building[-1]:.2f} s")
        a, b = statistics.median(skipping), statistics.median(building)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print(f"results copied, not built: {skipped} of {results}")
        print(f"wall, skipping (median): {a:.2f} s")
        print(f"wall, --no-skip (median): {b:.2f} s")
        print(f"skipping / --no-skip: {a / b:.3f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
