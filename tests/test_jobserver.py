"""The machine's shared make jobserver, with real GNU make.

Concurrency is shown by the jobs themselves: each job registers in a
directory and waits for a number of peers, so that a limit is proven by the
jobs that met (or never met), not by timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from buildfleet.build.jobserver import Jobserver, makeflags_with
from buildfleet.build.makerun import run_make

# Job $@ registers in run/, then waits (at most WAIT steps of 0.05 s) until PEERS jobs are
# registered, and appends how many it saw to seen.log.
MAKEFILE = """\
COUNT ?= 6
all: $(addprefix job,$(shell seq $(COUNT)))
job%:
\t@mkdir -p run && touch run/$@; i=0; \\
\twhile [ $$(ls run | wc -l) -lt $(PEERS) ] && [ $$i -lt $(WAIT) ]; do \\
\t    sleep 0.05; i=$$((i + 1)); done; \\
\tls run | wc -l >> seen.log; sleep 0.2; rm -f run/$@
"""


def _tree(path: Path) -> Path:
    path.mkdir()
    (path / "Makefile").write_text(MAKEFILE)
    return path


def _make(js: Jobserver, cwd: Path, stop: threading.Event, peers: int,
          wait: int, count: int = 6) -> tuple[int, str, str]:
    assert js.acquire(stop)
    try:
        run = run_make(["make", "-s", f"PEERS={peers}", f"WAIT={wait}", f"COUNT={count}"], cwd,
                       js.environ(dict(os.environ)), stop, pass_fds=js.fds)
        return run.return_code, run.stdout, run.stderr
    finally:
        js.release()


def _seen(path: Path) -> list[int]:
    return [int(x) for x in (path / "seen.log").read_text().split()]


def test_one_make_takes_every_token(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "a")
    with Jobserver(3) as js:
        rc, out, err = _make(js, tree, threading.Event(), peers=3, wait=1200)
        assert rc == 0, err
        assert "jobserver unavailable" not in err
        assert max(_seen(tree)) == 3  # three jobs met: its implicit token and two more
        assert js.running == 0


def test_makes_of_all_slots_share_the_tokens(tmp_path: Path) -> None:
    trees = [_tree(tmp_path / n) for n in ("a", "b")]
    with Jobserver(2) as js:
        stop = threading.Event()
        results: list[tuple[int, str, str]] = []
        threads = [threading.Thread(target=lambda t=t: results.append(
            _make(js, t, stop, peers=3, wait=8, count=3))) for t in trees]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert [r[0] for r in results] == [0, 0], results
        # never more than two jobs at once over both makes
        assert max(_seen(trees[0]) + _seen(trees[1])) <= 2


def test_tokens_of_a_killed_make_come_back(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "a")
    with Jobserver(3) as js:
        stop = threading.Event()
        assert js.acquire(stop)
        proc = subprocess.Popen(["make", "-s", "PEERS=99", "WAIT=1200"], cwd=tree,
                                env=js.environ(dict(os.environ)), pass_fds=js.fds,
                                start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list((tree / "run").glob("job*"))) < 3:
            time.sleep(0.05)
        assert len(list((tree / "run").glob("job*"))) == 3  # it holds two pipe tokens
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        js.release()
        other = _tree(tmp_path / "b")
        rc, _, err = _make(js, other, stop, peers=3, wait=1200)
        assert rc == 0, err
        assert max(_seen(other)) == 3


def test_acquire_gives_up_on_stop(tmp_path: Path) -> None:
    with Jobserver(1) as js:
        stop = threading.Event()
        assert js.acquire(stop)
        stop.set()
        assert not js.acquire(stop)  # the only token is held: stop ends the wait
        js.release()
        assert js.running == 0


@pytest.mark.parametrize(("inherited", "expected"), [
    ("", "--jobserver-auth=5,6"),
    ("-j8", "--jobserver-auth=5,6"),
    ("k -j --jobserver-auth=3,4 -- V=1", "k --jobserver-auth=5,6 -- V=1"),
    ("--jobs=4 -- J=-j2", "--jobserver-auth=5,6 -- J=-j2"),
])
def test_makeflags_drop_inherited_job_options(inherited: str, expected: str) -> None:
    assert makeflags_with(inherited, "5,6") == expected
