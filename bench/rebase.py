"""A re-check after a rebase: the second run on kept build directories against the first.

The demo tree's ``demo`` branch (``--boards`` boards, ``--commits`` commits,
with a warning and a broken board, so the branch exits 100) is built with
the default settings, which keep each board's build directory
(``[global] keep_build_dirs_mb``, 8192 MB): run 1. Then ``main`` gets one new commit
that every board compiles (a comment in ``drivers/serial.c``), the branch is
rebased onto it, and the branch is built again into the same output tree:
run 2 (every commit is new, so every result is built; the kept directories
make the first commit incremental). ``--repeat`` rounds, each on a fresh
tree; medians compared. tests/test_keep.py checks that run 2's results equal
a clean build's (kept directories off).

Prints the load average before and after, each round, the medians and last
run 2 ÷ run 1.

Usage: python3 bench/rebase.py [--boards 8] [--commits 4] [-T 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from buildfleet.demo import make_demo_tree


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "B",
           "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "B",
           "GIT_COMMITTER_EMAIL": "b@example.com"}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def build(src: Path, out: Path, settings: Path, threads: int) -> float:
    cmd = [sys.executable, "-m", "buildfleet", "-b", "demo", "-o", str(out),
           "-T", str(threads), "-G", str(settings)]
    start = time.monotonic()
    run = subprocess.run(cmd, cwd=src, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.monotonic() - start
    if run.returncode not in (0, 100, 101):
        sys.exit(f"buildfleet failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=8)
    parser.add_argument("--commits", type=int, default=4)
    parser.add_argument("-T", "--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}; {args.boards} boards x "
          f"{args.commits + 1} commits; -T {args.threads}")
    firsts: list[float] = []
    seconds: list[float] = []
    for i in range(args.repeat):
        root = Path(tempfile.mkdtemp(prefix="bf-rebase-"))
        try:
            tree = make_demo_tree(root / "src", boards=args.boards, commits=args.commits)
            settings = root / "bench.cfg"
            settings.write_text("[toolchain]\n")  # the defaults: directories kept
            firsts.append(build(tree.path, root / "out", settings, args.threads))
            git(tree.path, "checkout", "-q", "main")
            with (tree.path / "drivers" / "serial.c").open("a") as f:
                f.write("/* upstream moved on */\n")
            git(tree.path, "commit", "-qam", "serial: a comment")
            git(tree.path, "checkout", "-q", "demo")
            git(tree.path, "rebase", "-q", "main")
            seconds.append(build(tree.path, root / "out", settings, args.threads))
            print(f"  round {i + 1}: run 1 {firsts[-1]:.2f} s, run 2 after the rebase "
                  f"{seconds[-1]:.2f} s")
        finally:
            shutil.rmtree(root, ignore_errors=True)
    a, b = statistics.median(seconds), statistics.median(firsts)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"wall, run 1 (median): {b:.2f} s")
    print(f"wall, run 2 after the rebase (median): {a:.2f} s")
    print(f"run 2 / run 1: {a / b:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
