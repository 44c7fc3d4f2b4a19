"""Soak: a large distributed build while workers are killed or stopped at random; nothing
lost, doubled or wrong.

Builds the demo tree (``--boards N --commits C``) over two loopback machines of
the real-sshd harness plus the local slots, and meanwhile SIGKILLs or SIGSTOPs
a random machine's worker at seeded random intervals (a machine gets a fresh
worker after a failure and is quarantined after its second, so the faults
are bounded; a stopped worker is given up after the liveness bound and its
makes are killed mid-compile, the interleaving that once left a truncated
object to the next build of the board). At the end the output tree is
compared with a clean local build and the last line says how many results
were lost, written twice, or wrong (present, but done, err diagnostics or
sizes differ from the local build); all must be 0. Needs root and sshd, like
the fault suite; bounded by --deadline.

    python bench/soak.py [--boards 100] [--commits 3] [--seed 1] [--deadline 600]
                         [--faults kill,stop]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from faultkit import (  # noqa: E402
    demo_and_reference,
    hosts_in,
    kill,
    read_tree,
    sigcont_all,
    start_dist,
    wait_no_processes,
    worker_pids,
)
from sshd_harness import SshdHarness, harness_unavailable_reason  # noqa: E402


def duplicates(branch_dir: Path) -> int:
    """Result directories that exist more than once for one board x commit.

    The layout makes a second copy impossible under one name, so look for the
    other ways a result could be doubled: two commit directories for the same
    commit number, or a writer's temporary directory left beside a result.
    """
    seqs = Counter(p.name.split("_", 1)[0] for p in branch_dir.iterdir() if p.is_dir())
    doubled = sum(n - 1 for n in seqs.values() if n > 1)
    doubled += len(list(branch_dir.glob("*/.*.tmp-*")))
    return doubled


FAULTS = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP}


def soak(boards: int, commits: int, seed: int, deadline: float, min_gap: float,
         max_gap: float, faults: list[str]) -> tuple[int, int, int, int, str]:
    """Run the soak; returns (lost, duplicated, wrong, faults done, summary text)."""
    rng = random.Random(seed)
    root = Path(tempfile.mkdtemp(prefix="bf-soak-"))
    started = time.monotonic()
    print(f"Soak in {root}: {boards} boards x {commits + 1} commits, seed {seed}", flush=True)
    tree, want = demo_and_reference(root, boards, commits)
    print(f"Local reference build: {len(want)} results in "
          f"{time.monotonic() - started:.0f} s", flush=True)
    harness = SshdHarness(count=2, unreachable=False).start()
    users = [m.user for m in harness.reachable if m.user]
    kills = 0
    try:
        out = root / "out"
        env = {"BUILDFLEET_LIVENESS_SECONDS": "10"}
        run = start_dist(tree, out, harness.settings_file, env=env)
        limit = time.monotonic() + deadline
        next_kill = time.monotonic() + rng.uniform(min_gap, max_gap)
        while run.proc.poll() is None and time.monotonic() < limit:
            time.sleep(0.2)
            if time.monotonic() < next_kill:
                continue
            victim = rng.choice(harness.reachable)
            assert victim.user is not None
            pids = worker_pids(victim.user)
            if pids:
                fault = rng.choice(faults)
                kill(pids, FAULTS[fault])
                kills += 1
                print(f"  t={time.monotonic() - run.started:5.1f}s {fault}: "
                      f"{'killed' if fault == 'kill' else 'stopped'} the worker on "
                      f"{victim.name}", flush=True)
            next_kill = time.monotonic() + rng.uniform(min_gap, max_gap)
        rc, stdout, stderr = run.wait(timeout=max(10.0, limit - time.monotonic()))
        got = read_tree(out / "demo")
        lost = len(set(want) - set(got))
        differ = [k for k in want if k in got and got[k] != want[k]]
        doubled = duplicates(out / "demo")
        by_host = dict(sorted(hosts_in(out / "demo").items()))
        by_host["local"] = len(got) - sum(by_host.values())
        summary = [f"buildfleet exit code {rc}; {kills} workers killed; "
                   f"results by host: {by_host}",
                   *[ln for ln in stdout.splitlines()
                     if ln.startswith(("Worker failed", "Quarantined", "Restarting",
                                       "Completed", "Not built", "Discarded"))]]
        if differ:
            summary.append(f"{len(differ)} results differ from the local build, first "
                           f"{differ[0]}")
        if stderr.strip():
            summary.append("stderr: " + stderr.strip()[-500:])
        return lost, doubled, len(differ), kills, "\n".join(summary)
    finally:
        sigcont_all(users)
        left = wait_no_processes(users, timeout=20)
        harness.stop()
        if left:
            print(f"processes were left on the machines: {left}", flush=True)
        if not os.environ.get("BF_SOAK_KEEP"):
            import shutil
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", type=int, default=100)
    ap.add_argument("--commits", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--deadline", type=float, default=600.0, help="seconds for the run")
    ap.add_argument("--min-gap", type=float, default=4.0, help="seconds between kills, min")
    ap.add_argument("--max-gap", type=float, default=12.0, help="seconds between kills, max")
    ap.add_argument("--faults", default="kill,stop",
                    help="what is done to a worker, chosen at random: kill (SIGKILL), "
                         "stop (SIGSTOP)")
    args = ap.parse_args(argv)
    faults = [f for f in args.faults.split(",") if f]
    if not faults or any(f not in FAULTS for f in faults):
        ap.error(f"--faults: choose from {', '.join(FAULTS)}")
    reason = harness_unavailable_reason()
    if reason:
        print(f"soak: {reason}", file=sys.stderr)
        return 2
    lost, doubled, wrong, kills, summary = soak(args.boards, args.commits, args.seed,
                                                args.deadline, args.min_gap, args.max_gap,
                                                faults)
    print(summary)
    print(f"results lost: {lost}, duplicated: {doubled}, wrong: {wrong}")
    return 0 if lost == doubled == wrong == 0 and kills > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
