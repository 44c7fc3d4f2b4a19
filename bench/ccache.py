"""ccache by default: the same build without ccache, with a cold cache, warm.

A demo tree whose boards have ``--bulk`` extra sources each (so compiling,
not buildfleet's per-result work, is most of a build, as on a real U-Boot
tree) has its branch built, every board x commit, into one output tree, with
``-f`` (every board from a clean build directory, ``-r``: no build date) by
(a) ``--no-ccache``, (b) ccache with an empty cache of its own and (c) ccache
again with the cache (b) filled, in that order, ``--repeat`` times; medians
compared. Every run builds in the same slot worktrees, so (c) hits wherever a
board lands in the slot that built it in (b) (ccache keeps hashing the
directory: see buildfleet.ccache); its hit rate is printed.

Prints the load average before and after (the machine is shared), each
round, the medians, (b) ÷ (a) and (c) ÷ (a).

Usage: python3 bench/ccache.py [--boards 8] [--commits 4] [--bulk 24] [-T 2] [--repeat 3]
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

from buildfleet.demo import DemoTree, make_demo_tree


def build(tree: DemoTree, out: Path, threads: int, env: dict[str, str],
          extra: list[str]) -> float:
    """Wall seconds of building the whole demo branch into ``out`` with ``-f -r``."""
    settings = out.parent / "bench.cfg"
    settings.write_text("")
    cmd = [sys.executable, "-m", "buildfleet", "-b", "demo", "-o", str(out), "-f", "-r",
           "-T", str(threads), "-G", str(settings), *extra]
    start = time.monotonic()
    run = subprocess.run(cmd, cwd=tree.path, capture_output=True, text=True, env=env,
                         stdin=subprocess.DEVNULL)
    wall = time.monotonic() - start
    if run.returncode not in (0, 100, 101):
        sys.exit(f"buildfleet failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    return wall


def counters(cache: Path) -> dict[str, int]:
    """ccache's counters for ``cache`` (``--print-stats``)."""
    proc = subprocess.run(["ccache", "--print-stats"], capture_output=True, text=True,
                          env=dict(os.environ, CCACHE_DIR=str(cache)), check=True)
    pairs = (line.split("\t", 1) for line in proc.stdout.splitlines() if "\t" in line)
    return {k: int(v) for k, v in pairs if v.strip().isdigit()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=8)
    parser.add_argument("--commits", type=int, default=4)
    parser.add_argument("--bulk", type=int, default=24, help="extra sources per board")
    parser.add_argument("-T", "--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("ccache") is None:
        sys.exit("ccache is not installed")
    root = Path(tempfile.mkdtemp(prefix="bf-ccache-"))
    try:
        targets = make_demo_tree(root / "probe", boards=args.boards, commits=1).targets
        shutil.rmtree(root / "probe")
        tree = make_demo_tree(root / "src", boards=args.boards, commits=args.commits,
                              bulk={t: args.bulk for t in targets})
        out = root / "out" / "tree"
        out.parent.mkdir()
        print(f"load average before: {os.getloadavg()[0]:.2f}; {len(targets)} boards "
              f"(+{args.bulk} sources each), branch 'demo', -f -r -T {args.threads}")
        times: dict[str, list[float]] = {"off": [], "cold": [], "warm": []}
        rates: list[float] = []
        for i in range(args.repeat):
            cache = root / f"cache{i}"
            env = dict(os.environ, CCACHE_DIR=str(cache))
            times["off"].append(build(tree, out, args.threads, env, ["--no-ccache"]))
            times["cold"].append(build(tree, out, args.threads, env, []))
            subprocess.run(["ccache", "-z"], env=env, capture_output=True, check=True)
            times["warm"].append(build(tree, out, args.threads, env, []))
            got = counters(cache)
            hit = got.get("direct_cache_hit", 0) + got.get("preprocessed_cache_hit", 0)
            rates.append(hit / max(1, hit + got.get("cache_miss", 0)))
            print(f"  round {i + 1}: --no-ccache {times['off'][-1]:.2f} s, cold "
                  f"{times['cold'][-1]:.2f} s, warm {times['warm'][-1]:.2f} s "
                  f"({rates[-1]:.0%} of its compiles hit)")
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        for key, label in (("off", "--no-ccache"), ("cold", "ccache, cold"),
                           ("warm", "ccache, warm")):
            print(f"wall, {label} (median): {med[key]:.2f} s")
        print(f"warm compiles that hit (median): {statistics.median(rates):.0%}")
        print(f"cold / --no-ccache: {med['cold'] / med['off']:.3f}")
        print(f"warm / --no-ccache: {med['warm'] / med['off']:.3f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
