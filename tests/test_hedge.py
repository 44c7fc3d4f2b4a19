"""The reproducibility check of hedged copies, from image hashes to the report.

Two copies of one board × commit (tail hedging, or a board requeued after a
worker was given up on) must be compared by the hashes of what they built:
the builder's capture adds ``images.sha256``, the writer remembers what it
wrote, the sink compares every copy it does not write (a duplicate, or a
hedge loser's late result), and the run's tally reaches the post-run lines
and the JSON report. Real gcc for the hashes; the real pool, policy, sink,
writer, channel and dispatcher for the rest, with fake workers that answer
at chosen speeds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema

from buildfleet.build.capture import capture_images
from buildfleet.fleet.dispatch.costaware import CostAwarePolicy
from buildfleet.fleet.dispatch.costs import CostModel
from buildfleet.fleet.dispatch.pool import JobPool
from buildfleet.fleet.dispatch.sink import ResultSink
from buildfleet.fleet.remote.channel import Channel
from buildfleet.fleet.remote.session import RemoteDispatcher, RemoteSession
from buildfleet.model import IMAGE_HASHES, Board, BuildJob, BuildResult, Commit
from buildfleet.results.paths import build_dir
from buildfleet.results.progress import Progress, RunCounts
from buildfleet.results.report_json import build_report, load_schema
from buildfleet.results.reproducibility import REPRO_FILE, ReproCheck, load_reproducibility
from buildfleet.results.writer import ResultWriter
from ci_skip import require

COMMITS = [Commit(0, "a" * 40, "first"), Commit(1, "b" * 40, "second")]
BOARD = Board("hedgy", "arm")
HASH_A = b"1" * 64 + b"  u-boot\n"
HASH_B = b"2" * 64 + b"  u-boot\n"


def result(seq: int, hashes: bytes, host: str, marker: str) -> BuildResult:
    return BuildResult(BOARD.target, seq, 0, stdout=marker, duration=1.5, host=host,
                       files={IMAGE_HASHES: hashes, "sizes": marker.encode()})


def make_sink(tmp_path: Path, pool: JobPool) -> ResultSink:
    writer = ResultWriter(tmp_path / "out", COMMITS)
    counts = RunCounts(total=len(COMMITS))
    return ResultSink(pool, writer, counts, Progress(counts, enabled=False))


# -- the builder's hashes, on real ELFs ----------------------------------------------------
def _compile(where: Path, body: str) -> Path:
    where.mkdir(parents=True)
    (where / "main.c").write_text(body)
    (where / "spl").mkdir()
    subprocess.run(["gcc", "-g", "-O1", "-o", "u-boot", "main.c"], cwd=where, check=True,
                   timeout=60)
    shutil.copy(where / "u-boot", where / "spl" / "u-boot-spl")
    return where


def test_capture_hashes_what_the_image_loads_not_where_it_was_built(tmp_path: Path) -> None:
    require(shutil.which("gcc") is not None, "gcc is not installed")
    code = "int answer(int x) { return x * 42; }\nint main(void) { return answer(1); }\n"
    one = _compile(tmp_path / "slot-01" / "build", code)
    two = _compile(tmp_path / "another-machine" / "deep" / "dir", code)
    other = _compile(tmp_path / "changed", code.replace("42", "43"))
    tools = {"nm": "nm", "objdump": "objdump", "objcopy": "objcopy"}

    def hashes(out_dir: Path) -> dict[str, str]:
        text = capture_images(out_dir, tools, {"PATH": "/usr/bin:/bin"})[IMAGE_HASHES].decode()
        lines = text.splitlines()
        assert all(len(ln.split("  ")[0]) == 64 for ln in lines), text
        return {ln.split("  ")[1]: ln.split("  ")[0] for ln in lines}

    h1, h2, h3 = hashes(one), hashes(two), hashes(other)
    assert sorted(h1) == ["spl/u-boot-spl", "u-boot"]
    # The files differ (debug info names the build directory) ...
    whole = [hashlib.sha256((d / "u-boot").read_bytes()).hexdigest() for d in (one, two)]
    assert whole[0] != whole[1]
    # ... but what they load is the same, and a code change shows.
    assert h1 == h2
    assert h3["u-boot"] != h1["u-boot"]


# -- sink and writer: a duplicate and a late loser are compared, never written ------------
def test_duplicate_and_late_copies_are_compared_with_what_was_written(tmp_path: Path) -> None:
    policy = CostAwarePolicy(CostModel())
    pool = JobPool(policy, [BuildJob(BOARD, tuple(COMMITS))])
    pool.register("slow", 1, lambda b: True, speed=0.1)
    assert pool.try_take("slow") is not None
    cancelled: list[str] = []
    pool.register("fast", 1, lambda b: True, cancel=cancelled.append, speed=1.0)
    assert pool.try_take("fast") is not None  # a hedged second copy
    sink = make_sink(tmp_path, pool)

    # Commit 0: the slow copy arrives first and is written; the fast one is a duplicate.
    assert sink.accept("slow", result(0, HASH_A, "slow", "slow-0"))
    assert not sink.accept("fast", result(0, HASH_B, "fast", "fast-0"))
    # Commit 1: the fast copy is first, wins the board, and the slow one is cancelled ...
    assert sink.accept("fast", result(1, HASH_A, "fast", "fast-1"))
    pool_finished = pool.finished("fast", BOARD.target)
    assert pool_finished
    # ... but its late result is still compared (same hashes: a match), not written.
    assert not sink.accept("slow", result(1, HASH_A, "slow", "slow-1"))
    sink.close()  # results are written by the sink's own thread

    base = tmp_path / "out"
    assert (build_dir(base, COMMITS[0], BOARD.target) / "log").read_text() == "slow-0"
    assert (build_dir(base, COMMITS[1], BOARD.target) / "log").read_text() == "fast-1"
    assert (build_dir(base, COMMITS[0], BOARD.target) / IMAGE_HASHES).read_bytes() == HASH_A
    assert sink.discarded == 2
    assert sink.repro.compared == 2
    assert [(m.target, m.sequence, m.hosts, m.images) for m in sink.repro.mismatches] == [
        ("hedgy", 0, ("slow", "fast"), ("u-boot",))]
    assert sink.repro.report_lines(reproducible=True) == [
        "Reproducibility: 2 results built twice compared (2 of hedged boards, 0 of boards "
        "built again), 1 mismatches",
        "  mismatch: hedgy commit 1: u-boot differ between slow and fast",
    ]
    assert sink.repro.report_lines(reproducible=False)[-1].startswith("  (built without -r")

    # The tally goes to <base>/reproducibility.json and from there into the JSON report.
    assert sink.repro.save(base) is None
    stored = json.loads((base / REPRO_FILE).read_text())
    assert stored == {"compared": 2, "hedged": 2, "mismatches": [
        {"target": "hedgy", "commit": 0, "hosts": ["slow", "fast"], "images": ["u-boot"]}]}
    doc = build_report(base, COMMITS, [BOARD])
    jsonschema.validate(doc, load_schema())
    assert doc["run"]["reproducibility"] == stored
    # A later run that compared nothing removes the stale tally.
    assert ReproCheck().save(base) is None
    assert not (base / REPRO_FILE).exists()
    assert load_reproducibility(base) is None
    assert "reproducibility" not in build_report(base, COMMITS, [BOARD])["run"]


def test_copies_without_hashes_or_without_a_written_twin_are_not_counted(tmp_path: Path) -> None:
    pool = JobPool(CostAwarePolicy(CostModel()), [BuildJob(BOARD, tuple(COMMITS))])
    pool.register("a", 1, lambda b: True)
    assert pool.try_take("a") is not None
    sink = make_sink(tmp_path, pool)
    # A copy from an executor that never owned the board, before anything was written.
    assert not sink.accept("stranger", result(0, HASH_A, "stranger", "x"))
    assert sink.accept("a", BuildResult(BOARD.target, 0, 2, stderr="error\n", host="a"))
    assert not sink.accept("stranger", result(0, HASH_B, "stranger", "y"))  # no hashes written
    assert sink.repro.compared == 0
    assert sink.repro.report_lines() == []


# -- the real remote path: channel, dispatcher, hedge, cancel, late result ----------------
FAKE_WORKER = r'''
import json, sys, time
delay, digest = float(sys.argv[1]), sys.argv[2]
def say(obj):
    sys.stdout.write("BM> " + json.dumps(obj) + "\n")
    sys.stdout.flush()
say({"resp": "ready", "nthreads": 1, "slots": 1, "protocol": 1})
for line in sys.stdin:
    msg = json.loads(line)
    cmd = msg["cmd"]
    if cmd == "build_board":
        say({"resp": "heartbeat", "board": msg["board"], "thread": 0})
        time.sleep(delay)
        for upto in msg["commits"]:
            import base64
            files = {"images.sha256": base64.b64encode(
                (digest * 64 + "  u-boot\n").encode()).decode()}
            say({"resp": "build_result", "board": msg["board"], "commit_upto": upto,
                 "return_code": 0, "stdout": "built by " + sys.argv[3], "stderr": "",
                 "duration": delay, "files": files})
    elif cmd == "cancel_board":
        say({"resp": "board_cancelled", "board": msg["board"]})
    elif cmd == "build_done":
        say({"resp": "build_done", "exceptions": 0})
    elif cmd == "quit":
        say({"resp": "quit_ack"})
        break
'''


def test_hedged_remote_copies_are_compared_after_the_loser_is_cancelled(tmp_path: Path) -> None:
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    policy = CostAwarePolicy(CostModel())
    pool = JobPool(policy, [BuildJob(BOARD, tuple(COMMITS))])
    sink = make_sink(tmp_path, pool)
    stop = threading.Event()
    errors: list[BaseException] = []

    def run_worker(name: str, delay: float, digest: str, speed: float) -> None:
        channel = Channel([sys.executable, str(script), str(delay), digest, name], name=name)
        try:
            session = RemoteSession(name, channel)
            session.wait_for("ready", 20.0)
            dispatcher = RemoteDispatcher(name, session, pool, sink,
                                          [c.sequence for c in COMMITS], 1, stop,
                                          lambda text: None, take_timeout=20.0)
            pool.register(name, 1, lambda b: True, cancel=dispatcher.cancel, speed=speed)
            dispatcher.run()
            dispatcher.build_done(20.0)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            channel.close(grace=2.0)

    slow = threading.Thread(target=run_worker, args=("slow", 2.0, "1", 0.2))
    slow.start()
    deadline = time.monotonic() + 20.0
    while not pool.owns("slow", BOARD.target):
        assert time.monotonic() < deadline, "the slow worker never took the board"
        time.sleep(0.02)
    fast = threading.Thread(target=run_worker, args=("fast", 0.0, "2", 1.0))
    fast.start()
    for t in (slow, fast):
        t.join(30.0)
    assert not slow.is_alive() and not fast.is_alive()
    assert not errors, errors
    sink.close()  # results are written by the sink's own thread

    base = tmp_path / "out"
    for commit in COMMITS:
        path = build_dir(base, commit, BOARD.target)
        assert (path / "log").read_text() == "built by fast"
        assert (path / "host").read_text() == "fast\n"
    assert policy.stats.executors["fast"].hedges == 1
    assert sink.counts.done == 2
    assert sink.repro.compared == 2
    assert [(m.sequence, m.hosts) for m in sink.repro.mismatches] == [
        (0, ("fast", "slow")), (1, ("fast", "slow"))]
