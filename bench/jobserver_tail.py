"""Every core busy to the end: one shared make jobserver against make -j per board.

A demo tree where one board (sandbox, with ``--bulk`` generated sources) is
much longer than the others is built, current source, from scratch, by
(a) ``buildfleet -T T`` (one make jobserver for the machine) and
(b) ``buildfleet -T T --no-jobserver`` (make -j fixed per board when its make
starts), alternating, ``--repeat`` times each; medians compared.

The floor is the CPU time of the same makes (every board configured and built
once, one after the other, into fresh O= directories; user + system time of
make and everything it ran) divided by the cores this process may use.

Prints the load average before and after (the machine is shared: wall times
mean little when it is loaded), then: wall (a), wall (b), the floor, (a) ÷
the floor, and last (a) ÷ (b).

Usage: python3 bench/jobserver_tail.py [--boards 6] [--bulk 40] [-T 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from buildfleet.demo import DemoTree, make_demo_tree

LONG_BOARD = "sandbox"


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def buildfleet_wall(tree: DemoTree, out: Path, threads: int, extra: list[str]) -> float:
    """Wall seconds of one from-scratch current-source build of every board."""
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = out.parent / "bench.cfg"
    settings.write_text("")
    cmd = [sys.executable, "-m", "buildfleet", "-o", str(out), "-T", str(threads),
           "-G", str(settings), *extra]
    start = time.monotonic()
    run = subprocess.run(cmd, cwd=tree.path, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    wall = time.monotonic() - start
    if run.returncode not in (0, 100, 101):
        sys.exit(f"buildfleet failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    return wall


def makes_cpu(tree: DemoTree, work: Path) -> float:
    """CPU seconds of configuring and building every board once, serially."""
    before = _children_cpu()
    for brd in tree.boards:
        out = work / brd.target
        env = {**os.environ, "CROSS_COMPILE": brd.cross_compile}
        for args in ([f"{brd.target}_defconfig"], ["-j1"]):
            subprocess.run(["make", f"O={out}", "-s", *args], cwd=tree.path, env=env,
                           capture_output=True, check=False, stdin=subprocess.DEVNULL)
    return _children_cpu() - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=6)
    parser.add_argument("--bulk", type=int, default=40,
                        help="extra source files of the long board (40)")
    parser.add_argument("-T", "--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    root = Path(tempfile.mkdtemp(prefix="bf-jobserver-"))
    try:
        tree = make_demo_tree(root / "src", boards=args.boards, commits=1,
                              bulk={LONG_BOARD: args.bulk})
        print(f"load average before: {os.getloadavg()[0]:.2f}; {cores} cores; "
              f"{args.boards} boards, {LONG_BOARD} with {args.bulk} extra files; "
              f"-T {args.threads}")
        shared: list[float] = []
        per_board: list[float] = []
        for i in range(args.repeat):
            shared.append(buildfleet_wall(tree, root / f"a{i}" / "out", args.threads, []))
            per_board.append(buildfleet_wall(tree, root / f"b{i}" / "out", args.threads,
                                             ["--no-jobserver"]))
            print(f"  run {i + 1}: shared jobserver {shared[-1]:.2f} s, "
                  f"make -j per board {per_board[-1]:.2f} s")
        cpu = makes_cpu(tree, root / "floor")
        floor = cpu / cores
        a, b = statistics.median(shared), statistics.median(per_board)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print(f"wall, shared jobserver (median): {a:.2f} s")
        print(f"wall, make -j per board (median): {b:.2f} s")
        print(f"floor (CPU of the makes {cpu:.2f} s / {cores} cores): {floor:.2f} s")
        print(f"shared jobserver / floor: {a / floor:.3f}")
        print(f"shared jobserver / make -j per board: {a / b:.3f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
