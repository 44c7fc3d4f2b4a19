"""How many results per second the boss absorbs and writes into the output tree.

A world build on a big fleet delivers results faster than any one builder
makes them: 1,500 boards × several commits arriving from ten machines at
once. If the boss (JSON decode, base64, the dispatch policy, the result
writer, progress) cannot keep up, the fleet waits for the boss. This bench
takes the builders out of the picture: 20 protocol-speaking fake workers
(local subprocesses running a tiny script that speaks the real ``BM> ``
framing) answer every ``build_board`` at once with one realistic
``build_result`` per commit, and the REAL boss machinery drives them:
``Channel`` + ``RemoteSession``/``RemoteDispatcher`` per worker, one
``JobPool`` with ``CostAwarePolicy``, one ``ResultSink`` and ``ResultWriter``
into a temporary output tree. The SSH start-up phases (ship, setup, push,
configure, prepare) are skipped: each fake worker is started directly.

The figure, printed last: results written per second, from the first
``build_board`` to the last result on disk. Goal: >= 2,000/s. Before it,
the boss's own CPU time per result (user and system), which a busy shared
machine disturbs less than the wall-clock rate. ``--out /dev/shm`` takes the
disk out of the figure: creating ~15 small files per result is what a
slow filesystem pays for, whoever writes them.

Usage: python3 bench/boss_throughput.py [--boards N] [--commits N] [--workers N]
       [--tty] [--profile FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from buildfleet.fleet.dispatch.costaware import CostAwarePolicy
from buildfleet.fleet.dispatch.costs import CostModel
from buildfleet.fleet.dispatch.pool import JobPool
from buildfleet.fleet.dispatch.sink import ResultSink
from buildfleet.fleet.messages import Quit, QuitAck
from buildfleet.fleet.remote.channel import Channel, ChannelError
from buildfleet.fleet.remote.session import RemoteDispatcher, RemoteSession, WorkerLost
from buildfleet.model import Board, BuildJob, BuildResult, Commit
from buildfleet.results.paths import build_dir
from buildfleet.results.progress import Progress, RunCounts
from buildfleet.results.writer import ResultWriter

GOAL = 2000
ARCHS = ("arm", "aarch64", "riscv", "powerpc", "x86", "mips", "sandbox")
MAX_BOARDS = 8

# The fake worker: no buildfleet import, so it starts in milliseconds and
# costs the boss nothing. It answers each build_board with one build_result per
# commit index, from a payload prepared once (the boss cannot tell).
FAKE_WORKER = r'''
import json, sys
payload = json.loads(sys.argv[1])
out = sys.stdout.buffer
def reply(obj):
    return b"BM> " + json.dumps(obj, separators=(",", ":")).encode() + b"\n"
out.write(reply({"resp": "ready", "nthreads": 8, "slots": 8, "version": "bench",
                 "protocol": 1}))
out.flush()
for line in sys.stdin.buffer:
    msg = json.loads(line)
    cmd = msg.get("cmd")
    if cmd == "build_board":
        board = msg["board"]
        chunks = [reply({"resp": "heartbeat", "board": board, "thread": 0})]
        for upto in msg.get("commits", []):
            res = dict(payload)
            res["board"] = board
            res["commit_upto"] = upto
            chunks.append(reply(res))
        out.write(b"".join(chunks))
        out.flush()
    elif cmd == "build_done":
        out.write(reply({"resp": "build_done", "exceptions": 0}))
        out.flush()
    elif cmd == "quit":
        out.write(reply({"resp": "quit_ack"}))
        out.flush()
        break
    elif cmd == "cancel_board":
        out.write(reply({"resp": "board_cancelled", "board": msg["board"]}))
        out.flush()
'''


def payload_files() -> dict[str, bytes]:
    """Files of a typical successful result: sizes, nm output, config copies."""
    nm = "".join(f"{0x100 + 8 * i:08x} {'TtDdBbRr'[i % 8]} func_{i:04d}\n" for i in range(120))
    cfg = "".join(f"#define CONFIG_OPTION_{i:04d} {i}\n" for i in range(120))
    dotconfig = "".join(f"CONFIG_OPTION_{i:04d}=y\n" for i in range(120))
    return {
        "toolchain": b"path = /usr/bin\ngcc = /usr/bin/arm-linux-gnueabihf-gcc\n"
                     b"prefix = arm-linux-gnueabihf-\ncross = arm-linux-gnueabihf-\narch = arm\n",
        "out-env": b"PATH=/usr/bin:/bin\nCROSS_COMPILE=arm-linux-gnueabihf-\n",
        "out-cmd": b"make O=/work/out -s -j 8 board_defconfig\nmake O=/work/out -s -j 8\n",
        "sizes": b"  41234\t   2012\t   5120\t  48366\t   bcee\tu-boot 1f00\n",
        "u-boot.sizes": nm.encode(),
        "u-boot.objdump": b"\nu-boot:     file format elf32-littlearm\n\nSections:\n"
                          b"Idx Name  Size  VMA  LMA  File off  Algn\n"
                          b"  0 .text 0000a0f2 00000000 00000000 00010000 2**2\n",
        "u-boot.cfg": cfg.encode(),
        ".config": dotconfig.encode(),
        "autoconf.mk": dotconfig.encode(),
        "images.sha256": b"9f2c" + b"0" * 60 + b"  u-boot\n",
    }


def wire_payload(files: dict[str, bytes]) -> dict[str, Any]:
    res = BuildResult("x", 0, 0, stdout="", stderr="", duration=12.345, files=files)
    msg = {"resp": "build_result", **res.to_wire()}
    return msg


def plan(n_boards: int, n_commits: int) -> tuple[list[Commit], list[BuildJob]]:
    commits = [Commit(i, f"{i + 1:040x}", f"Commit number {i} of the branch")
               for i in range(n_commits)]
    jobs = [BuildJob(Board(f"{ARCHS[i % len(ARCHS)]}_board{i:04d}", ARCHS[i % len(ARCHS)]),
                     tuple(commits)) for i in range(n_boards)]
    return commits, jobs


class _FakeTty(io.StringIO):
    """An output stream that claims to be a terminal (so rich draws live)."""

    def isatty(self) -> bool:
        return True


def run(args: argparse.Namespace, script: Path, base: Path) -> tuple[int, float]:
    commits, jobs = plan(args.boards, args.commits)
    sequences = [c.sequence for c in commits]
    payload = json.dumps(wire_payload(payload_files()), separators=(",", ":"))
    pool = JobPool(CostAwarePolicy(CostModel()), jobs)
    writer = ResultWriter(base, commits)
    counts = RunCounts(total=args.boards * args.commits)
    out: io.StringIO = _FakeTty() if args.tty else io.StringIO()
    progress = Progress(counts, out, enabled=True)
    sink = ResultSink(pool, writer, counts, progress)
    stop = threading.Event()
    errors: list[str] = []

    sessions = []
    for i in range(args.workers):
        name = f"fake{i:02d}"
        channel = Channel([sys.executable, str(script), payload], name=name)
        session = RemoteSession(name, channel)
        sessions.append(session)
    for session in sessions:
        session.wait_for("ready", 30.0)

    go = threading.Barrier(args.workers + 1)

    def drive(session: RemoteSession) -> None:
        name = session.name
        dispatcher = RemoteDispatcher(name, session, pool, sink, sequences, MAX_BOARDS, stop,
                                      lambda text: None)
        pool.register(name, MAX_BOARDS, lambda b: True, cancel=dispatcher.cancel)
        go.wait()
        try:
            dispatcher.run()
            dispatcher.build_done(30.0)
            session.request(Quit(), QuitAck, 10.0,
                            accept=("board_cancelled", "build_done", "build_result"))
        except (WorkerLost, ChannelError) as exc:
            errors.append(f"{name}: {exc}")
            pool.machine_failed(name)
            pool.remove_executor(name)
        finally:
            session.channel.close(grace=2.0)

    threads = [threading.Thread(target=drive, args=(s,), daemon=True) for s in sessions]
    for t in threads:
        t.start()
    go.wait()
    start = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    for t in threads:
        t.join()
    sink.close()  # every accepted result is on disk before the clock stops
    elapsed = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    user, system = cpu1.ru_utime - cpu0.ru_utime, cpu1.ru_stime - cpu0.ru_stime
    done = max(1, counts.done)
    progress.stop()  # (rich redirects stdout while it draws)
    print(f"boss CPU per result: {1e6 * user / done:.0f} us user + "
          f"{1e6 * system / done:.0f} us system (the fake workers not counted)")
    if errors:
        raise SystemExit("workers failed: " + "; ".join(errors))
    return counts.done, elapsed


def check_tree(base: Path, commits: list[Commit], jobs: list[BuildJob]) -> None:
    """Every result directory holds exactly the payload's files (a sample)."""
    files = payload_files()
    for job in jobs[:: max(1, len(jobs) // 50)]:
        for commit in commits:
            path = build_dir(base, commit, job.board.target)
            for name, data in files.items():
                if (path / name).read_bytes() != data:
                    raise SystemExit(f"{path / name}: content differs from what was sent")
            if (path / "done").read_text() != "0":
                raise SystemExit(f"{path}: bad done file")
            if (path / "duration").read_text() != "12.345\n":
                raise SystemExit(f"{path}: bad duration file")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=2000)
    parser.add_argument("--commits", type=int, default=5)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument("--tty", action="store_true",
                        help="draw progress as on a terminal (rich live display)")
    parser.add_argument("--out", metavar="DIR",
                        help="where to put the temporary output tree (default: the system's "
                             "temporary directory; /dev/shm takes the disk out of the figure)")
    parser.add_argument("--profile", metavar="FILE",
                        help="profile the boss (all threads) and print the top entries")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bf-throughput-", dir=args.out))
    try:
        script = tmp / "fake_worker.py"
        script.write_text(FAKE_WORKER)
        base = tmp / "out" / "branch"
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            threading.setprofile(lambda *a: profiler.enable())
            profiler.enable()
        done, elapsed = run(args, script, base)
        if profiler is not None:
            profiler.disable()
            threading.setprofile(None)  # type: ignore[arg-type,unused-ignore]
            profiler.dump_stats(args.profile)
            pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
        expected = args.boards * args.commits
        if done != expected:
            raise SystemExit(f"only {done} of {expected} results were written")
        commits, jobs = plan(args.boards, args.commits)
        check_tree(base, commits, jobs)
        rate = done / elapsed if elapsed > 0 else 0.0
        print(f"{args.workers} fake workers, {args.boards} boards x {args.commits} commits: "
              f"{done} results in {elapsed:.2f}s")
        print(f"boss throughput: {rate:.0f} results/s (goal >= {GOAL})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
