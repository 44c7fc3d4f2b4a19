"""``--process-limit``: at most N runs build at once, and a killed run frees its place.

Why: on a shared CI machine a run killed with SIGKILL (a job timeout, the OOM
killer) must not leave a lock that blocks every later run. The places are
kernel file locks, so these tests use real processes and real SIGKILLs, and
the end-to-end test runs the real command on the demo tree.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bfrun import bf_env, require_cross
from buildfleet.demo import make_demo_tree
from buildfleet.process_limit import try_take

WAIT_LIMIT = 60.0
HOLDER = """
import sys, time
from pathlib import Path
from buildfleet.process_limit import wait_for_turn
turn = wait_for_turn(int(sys.argv[2]), Path(sys.argv[1]) if sys.argv[1] else None)
print("held", flush=True)
time.sleep(600)
"""


def start_holder(directory: Path | None, limit: int = 100,
                 env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A process that takes a place and keeps it until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory or ""), str(limit)],
                            stdout=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture()
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def test_places_are_counted_and_a_killed_run_frees_its_place(
        tmp_path: Path, holders: list[subprocess.Popen[str]]) -> None:
    holders += [start_holder(tmp_path), start_holder(tmp_path)]
    turn, active = try_take(2, tmp_path)
    assert turn is None and active == 2
    turn, active = try_take(3, tmp_path)
    assert turn is not None and active == 2
    turn.release()
    os.killpg(holders[0].pid, signal.SIGKILL)
    holders[0].wait(timeout=10)
    turn, active = try_take(2, tmp_path)
    assert turn is not None and active == 1
    # The dead run's file is gone; the live run's and ours remain.
    assert len(list(tmp_path.glob("*.run"))) == 2
    turn.release()
    assert len(list(tmp_path.glob("*.run"))) == 1


def test_run_waits_for_its_turn_and_starts_when_the_holder_is_killed(
        tmp_path: Path, holders: list[subprocess.Popen[str]]) -> None:
    require_cross()
    tree = make_demo_tree(tmp_path / "tree", boards=1, commits=1)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = bf_env({"TMPDIR": str(tmpdir)})
    holders.append(start_holder(None, env=env))
    log = tmp_path / "run.log"
    with log.open("w") as out:
        run = subprocess.Popen([sys.executable, "-m", "buildfleet", "-G", os.devnull,
                                "--process-limit", "1", "-o", str(tmp_path / "out"), "sandbox"],
                               cwd=tree.path, env=env, stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT_LIMIT
        while "Waiting for other buildfleet runs" not in log.read_text():
            assert run.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert "(1 active, --process-limit 1)" in log.read_text()
        assert not (tmp_path / "out" / "current" / "sandbox").exists()
        os.killpg(holders[0].pid, signal.SIGKILL)
        assert run.wait(timeout=WAIT_LIMIT) == 0, log.read_text()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    text = log.read_text()
    assert "done, starting build" in text
    assert (tmp_path / "out" / "current" / "sandbox" / "done").read_text() == "0"
    # The run released its place: nothing is left registered.
    assert list((tmpdir / f"buildfleet-runs-{os.getuid()}").glob("*.run")) == []
