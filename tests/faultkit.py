"""Tools for the fault-injection suite and the soak: run, watch, break, compare.

Why a module of its own: the fault tests (tests/test_faults*.py) and
bench/soak.py do the same three things — start a real distributed run over
the sshd harness, break something at the right moment (a worker process, its
SSH connection, its disk), then check that the output tree equals a clean
local build and that nothing is left running on any machine. The output tree
is read file by file here, independently of buildfleet's own reader.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bfrun import bf_env, require_cross, run_bf
from sshd_harness import SshdHarness

# The result of one board at one commit, as compared: done, diagnostics, sizes.
Outcome = tuple[str, str, str]
Tree = dict[tuple[str, str], Outcome]


def read_tree(branch_dir: Path) -> Tree:
    """Every result directory under ``<out>/<branch>`` as (commit dir, board) -> outcome.

    Fails if a result directory is incomplete (no ``done``) or a writer's
    temporary directory was left behind.
    """
    tree: Tree = {}
    for commit_dir in sorted(p for p in branch_dir.iterdir() if p.is_dir()):
        if commit_dir.name.startswith("."):
            continue
        for board in sorted(commit_dir.iterdir()):
            assert ".tmp-" not in board.name, f"writer left a temporary directory: {board}"
            if not board.is_dir():
                continue
            assert (board / "done").is_file(), f"incomplete result directory: {board}"
            done, err, sizes = ((board / f).read_text() if (board / f).is_file() else ""
                                for f in ("done", "err", "sizes"))
            tree[(commit_dir.name, board.name)] = (done, diagnostics(err), sizes)
    return tree


def diagnostics(err: str) -> str:
    """The compiler's distinct errors and warnings of an ``err`` file, sorted.

    With make -j, which object fails first (and whether make prints "Waiting
    for unfinished jobs") depends on timing, so the raw file is not compared.
    """
    lines = {ln.strip() for ln in err.splitlines()
             if ": error:" in ln or ": warning:" in ln or "Error 127" in ln}
    return "\n".join(sorted(lines))


def hosts_in(branch_dir: Path) -> dict[str, int]:
    """How many results each host built (from the ``host`` files)."""
    counts: dict[str, int] = {}
    for host in branch_dir.glob("*/*/host"):
        name = host.read_text().strip()
        counts[name] = counts.get(name, 0) + 1
    return counts


def assert_same_tree(got: Tree, want: Tree) -> None:
    """Exactly one result per board x commit, each equal to the local build's."""
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing, f"results lost: {missing[:10]} ({len(missing)})"
    assert not extra, f"unexpected results: {extra[:10]}"
    differ = [k for k in want if got[k] != want[k]]
    assert not differ, (f"{len(differ)} results differ from the local build, first "
                        f"{differ[0]}: {got[differ[0]]!r} != {want[differ[0]]!r}")


# -- processes ---------------------------------------------------------------------

@dataclass(frozen=True)
class Proc:
    pid: int
    uid: int
    argv: list[str]

    @property
    def cmdline(self) -> str:
        return " ".join(self.argv)


def processes() -> list[Proc]:
    """Every live (non-zombie) process, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            uid = entry.stat().st_uid
        except OSError:
            continue
        if "State:\tZ" in status:
            continue
        out.append(Proc(int(entry.name), uid,
                        [a.decode(errors="replace") for a in argv if a]))
    return out


def uids_of(users: Iterable[str]) -> set[int]:
    return {pwd.getpwnam(u).pw_uid for u in users}


def user_processes(users: Iterable[str]) -> list[Proc]:
    uids = uids_of(users)
    return [p for p in processes() if p.uid in uids]


def worker_pids(user: str) -> list[int]:
    """The buildfleet worker (python) processes of a machine user."""
    found = []
    for p in user_processes([user]):
        if "--worker" not in p.argv:
            continue
        try:
            exe = os.readlink(f"/proc/{p.pid}/exe")
        except OSError:
            continue
        if "python" in os.path.basename(exe):
            found.append(p.pid)
    return found


def sshd_session_pids(user: str) -> list[int]:
    """sshd's per-connection processes running as the user (cut them to drop the link)."""
    return [p.pid for p in user_processes([user]) if p.argv and p.argv[0].startswith("sshd")]


def wait_no_processes(users: Iterable[str], timeout: float = 15.0) -> list[str]:
    """Wait until the machine users run nothing; return what is left after ``timeout``."""
    users = list(users)
    deadline = time.monotonic() + timeout
    while True:
        left = user_processes(users)
        if not left or time.monotonic() > deadline:
            return [f"{p.pid} {p.cmdline}" for p in left]
        time.sleep(0.2)


def empty_objects(root: Path) -> list[Path]:
    """The empty objects under ``root`` now: what GNU as creates before it writes
    (a compile held or killed mid-way). A slot may be wiped meanwhile."""
    found = []
    try:
        for obj in root.rglob("*.o"):
            try:
                if obj.stat().st_size == 0:
                    found.append(obj)
            except FileNotFoundError:
                continue
    except FileNotFoundError:
        pass
    return found


def kill(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


# -- runs --------------------------------------------------------------------------

@dataclass
class Dist:
    """A ``buildfleet --dist`` run in the background."""

    proc: subprocess.Popen[str]
    out: Path
    started: float

    def wait(self, timeout: float = 180.0) -> tuple[int, str, str]:
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            stdout, stderr = self.proc.communicate()
            raise AssertionError(f"buildfleet did not finish in {timeout} s:\n{stdout}\n"
                                 f"{stderr}") from None
        return self.proc.returncode, stdout, stderr

    def wait_for_host(self, name: str, timeout: float = 60.0) -> bool:
        """Wait until ``name`` has written a result; False if the run ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if hosts_in(self.out / "demo").get(name):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False


def start_dist(tree: Path, out: Path, settings: Path, *extra: str,
               env: dict[str, str] | None = None, branch: str = "demo") -> Dist:
    """Start a --dist run into ``out``, with a per-user cost cache of the test's own.

    Each fault test needs its faulty machine to be given boards; what the
    session's earlier fault tests taught a shared cost cache about that
    machine's speed must not decide whether it gets any.
    """
    argv = [sys.executable, "-m", "buildfleet", "--dist", "-b", branch, "-G", str(settings),
            "-o", str(out), *extra]
    env = {"XDG_CACHE_HOME": str(out.parent / "cost-cache"), **(env or {})}
    proc = subprocess.Popen(argv, cwd=tree, env=bf_env(env), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return Dist(proc, out, time.monotonic())


def sigcont_all(users: Iterable[str]) -> None:
    """Wake anything a test stopped, so it can see its closed pipes and exit."""
    kill([p.pid for p in user_processes(users)], signal.SIGCONT)


def demo_and_reference(root: Path, boards: int, commits: int | None = None) -> tuple[Path, Tree]:
    """A demo tree under ``root`` and the output tree of a clean local build of it."""
    require_cross()
    tree = root / "tree"
    extra = ["--commits", str(commits)] if commits else []
    subprocess.run([sys.executable, "-m", "buildfleet.demo", str(tree), "--boards", str(boards),
                    *extra], check=True, capture_output=True)
    plain = root / "plain.ini"
    plain.write_text("[toolchain]\n")
    run = run_bf(["-b", "demo", "-o", str(root / "ref"), "-G", str(plain)], tree,
                 timeout=1800)
    assert run.returncode in (0, 100, 101), str(run)
    return tree, read_tree(root / "ref" / "demo")


@pytest.fixture()
def fleet(sshd_harness: SshdHarness) -> Iterator[SshdHarness]:
    """The harness; after the test, nothing may run as a machine user."""
    users = [m.user for m in sshd_harness.reachable if m.user]
    yield sshd_harness
    sigcont_all(users)
    left = wait_no_processes(users, timeout=20)
    assert not left, f"processes left on the machines: {left}"
