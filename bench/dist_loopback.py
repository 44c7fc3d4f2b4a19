"""What going remote costs per board: the demo tree built locally and with ``--dist``.

Why: a distributed build pays for SSH, shipping the tool, ``git push``, the
protocol and sending every result file back. This measures that price on
this machine, over the real-sshd harness (tests/sshd_harness.py) with two
loopback machines. The machines share this host's CPUs, so no build runs
faster remotely: every millisecond of difference is overhead.

Method: the same selection (N boards x M commit dirs of a demo tree made with
``--boards N``) is built with ``-b demo`` locally (``-T S``) and with
``--dist --no-local`` on two machines whose ``max_boards`` add up to the same
S slots, with the same ``make -j`` per board as a worker uses (threads /
max_boards), so both runs have the same parallelism on the same cores, and
with ``-f`` so that every board starts from a clean build directory. Each run
is also done for one board, to separate the fixed start-up (probe, ship,
push, start, configure) from the per-board cost:

  per-board overhead = ((dist_N - dist_1) - (local_N - local_1)) / (N - 1)   [wall ms]

The sum of the ``duration`` files (builder time of each result, wherever it
ran) shows whether the builds themselves got slower remotely. Each of the
four runs is repeated (``--repeat``) and its fastest round kept. Figures and
ratios are printed last. Needs root (the harness creates users) and sshd.

Usage: python3 bench/dist_loopback.py [--boards 24] [--commits 1] [--slots 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from buildfleet.demo import make_demo_tree  # noqa: E402
from sshd_harness import SshdHarness, harness_unavailable_reason  # noqa: E402

MACHINES = 2


@dataclass
class Measure:
    """One build run: wall time, results and the builders' own time."""

    label: str
    wall: float
    results: int
    build_time: float
    remote: int


def build(src: Path, settings: Path, out: Path, label: str, extra: list[str]) -> Measure:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "buildfleet", "-G", str(settings), "-b", "demo",
                           "-o", str(out), *extra], cwd=src, capture_output=True, text=True,
                          timeout=900, check=False)
    wall = time.monotonic() - start
    if proc.returncode not in (0, 100, 101):
        sys.exit(f"{label}: buildfleet exited {proc.returncode}:\n{proc.stdout[-2000:]}\n"
                 f"{proc.stderr[-2000:]}")
    dones = [p for p in (out / "demo").glob("*/*/done")]
    build_time = sum(float((p.parent / "duration").read_text()) for p in dones
                     if (p.parent / "duration").exists())
    remote = sum(1 for p in dones if (p.parent / "host").exists())
    return Measure(label, wall, len(dones), build_time, remote)


def settings_file(path: Path, harness: SshdHarness, slots: int) -> Path:
    per_machine = max(1, slots // MACHINES)
    lines = ["[machines]", *(f"{m.name} = {m.alias}" for m in harness.reachable)]
    for m in harness.reachable:
        lines += ["", f"[machine:{m.name}]", "busy_load = 100", "min_disk_mb = 10",
                  "min_mem_mb = 10", f"max_boards = {per_machine}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=24)
    parser.add_argument("--commits", type=int, default=1,
                        help="commits on the branch (the upstream is built too)")
    parser.add_argument("--slots", type=int, default=2,
                        help="build slots in each run (local -T; split over the machines)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the four runs; the fastest of each is kept")
    args = parser.parse_args()
    reason = harness_unavailable_reason()
    if reason:
        print(f"dist_loopback: cannot run: {reason}", file=sys.stderr)
        return 1
    if args.repeat < 1 or args.boards < 2:
        print("dist_loopback: needs --repeat >= 1 and --boards >= 2", file=sys.stderr)
        return 1
    if args.slots < MACHINES or args.slots % MACHINES:
        print(f"dist_loopback: --slots must be a multiple of {MACHINES}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="bf-bench-dist-") as tmp:
        root = Path(tmp)
        tree = make_demo_tree(root / "src", boards=args.boards, commits=args.commits)
        one = tree.targets[0]
        harness = SshdHarness(count=MACHINES, unreachable=False).start()
        try:
            settings = settings_file(root / "buildman.cfg", harness, args.slots)
            # -f everywhere: every board starts from a clean build directory, so
            # no run profits from build directories a previous run left behind.
            # A worker gives each of its boards make -j threads/max_boards; so does -j here.
            jobs = max(1, (os.cpu_count() or 1) // (args.slots // MACHINES))
            local = ["-f", "-T", str(args.slots), "-j", str(jobs)]
            dist = ["-f", "--dist", "--no-local"]
            # Warm-up: ship the tool and fill the workers' git repos once, as a
            # second run on a real fleet would find them.
            build(tree.path, settings, root / "warm", "warm-up", [*dist, one])
            plans = [("l1", "local, 1 board", [*local, one]), ("d1", "dist, 1 board", [*dist, one]),
                     ("ln", f"local, {args.boards} boards", local),
                     ("dn", f"dist, {args.boards} boards", dist)]
            rounds = [[build(tree.path, settings, root / f"{key}-{n}", label, extra)
                       for key, label, extra in plans] for n in range(args.repeat)]
            # The host is shared: keep each configuration's fastest round.
            runs = [min((r[i] for r in rounds), key=lambda m: m.wall) for i in range(len(plans))]
        finally:
            harness.stop()
        left = harness.leftovers()
        if left:
            print(f"dist_loopback: the harness left things behind: {left}", file=sys.stderr)
    l1, d1, ln, dn = runs
    if ln.results != dn.results or dn.remote != dn.results:
        print(f"dist_loopback: results differ: local {ln.results}, dist {dn.results} "
              f"({dn.remote} remote)", file=sys.stderr)
        return 1
    commits = ln.results // args.boards
    print(f"Demo tree: {args.boards} boards x {commits} commit dirs; {args.slots} slots per run "
          f"(local -T {args.slots}; {MACHINES} loopback machines x max_boards "
          f"{args.slots // MACHINES}); make -j {jobs} per board; all on the same host CPUs")
    for m in runs:
        print(f"  {m.label:<22} wall {m.wall:6.2f} s  {m.results:3d} results "
              f"({m.remote} remote)  builder time {m.build_time:6.2f} s")
    fixed = (d1.wall - l1.wall) * 1000
    per_board = ((dn.wall - d1.wall) - (ln.wall - l1.wall)) / (args.boards - 1) * 1000
    per_board_slot = per_board * args.slots
    per_result_build = (dn.build_time - ln.build_time) / ln.results * 1000
    print(f"Fixed start-up cost of going remote (1-board runs): {fixed:.0f} ms")
    print(f"Builder time per result, remote minus local: {per_result_build:+.0f} ms")
    print(f"Per-board overhead of going remote: {per_board:+.0f} ms wall "
          f"({per_board_slot:+.0f} ms of slot time)")
    print(f"Ratio dist/local wall ({args.boards} boards): {dn.wall / ln.wall:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
