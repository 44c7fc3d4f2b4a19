"""The live fleet view, driven in a real pseudo-terminal over the real sshd harness (issue 16).

Why: on a terminal a distributed run draws one line per machine (the local
slots included) with its state, boards in flight, results and share, plus a
line for the whole run with an ETA. These tests run the real command under a
pty of a known size, feed everything it wrote to a terminal emulator (pyte)
and read the screens a user saw: the lines each machine got while the run
went on, the last drawing (every machine's results as the output tree has
them), and the screen left at the end, after a normal end and after Ctrl-C.
The same run with stdout on a pipe must keep buildman's plain output, and
``-v`` keeps buildman's one line on a terminal.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyte
import pytest

from buildfleet.demo import DemoTree, make_demo_tree
from sshd_harness import SshdHarness
from test_dist import write_settings

pytestmark = pytest.mark.sshd

COLS, ROWS = 150, 40
RUN_TIMEOUT = 240.0
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
STATES = ("probing", "starting", "pushing", "preparing", "building", "idle", "done", "lost",
          "quarantined", "unavailable")
MACHINE_RE = re.compile(rf"^  (\S+)\s+({'|'.join(STATES)})\s+(.*)$")
RESULTS_RE = re.compile(r"^(?:(\d+)/(\d+))?\s*(\d+) results\s+(\d+)%\s*(.*)$")
RUN_RE = re.compile(r"^(\d+)/(\d+) done: (\d+) ok, (\d+) warned, (\d+) failed\s+ETA (\S+)")


@dataclass
class PtyRun:
    rc: int
    screens: list[list[str]]  # the emulated screen after each chunk of output
    final: list[str]
    raw: str


# Where a screen is recorded: before each carriage return that does not end a
# line. rich starts every drawing with "\r" + erase-line and the erase of a
# transient view (when it stops) with "\r" + cursor-up, while the lines of a
# drawing end with "\r\n" (the pty's ONLCR). So each drawing gets a screen of
# its own even when one read holds the last drawing and its erase, which it
# always does at the end: rich writes both in one write.
FRAME_START = re.compile(r"(?=\r(?!\n))")


def run_in_pty(argv: list[str], cwd: Path, interrupt_when: Callable[[list[str]], bool]
               | None = None) -> PtyRun:
    """Run ``python -m buildfleet ARGV`` with a COLS x ROWS pty as its terminal.

    ``interrupt_when(screen)``: type Ctrl-C (through the terminal, as a user
    would) the first time it is true.
    """
    return run_command_in_pty([sys.executable, "-m", "buildfleet", *argv], cwd, interrupt_when)


def run_command_in_pty(command: list[str], cwd: Path, interrupt_when:
                       Callable[[list[str]], bool] | None = None) -> PtyRun:
    """Run COMMAND with a COLS x ROWS pty as its terminal (see :func:`run_in_pty`)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "CI")}
    env["TERM"] = "xterm-256color"

    def make_controlling_tty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        # Ctrl-C must reach the command even if this test runs with SIGINT
        # ignored (as a shell's background job does): a user's terminal has it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(command, cwd=cwd, env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            preexec_fn=make_controlling_tty)
    os.close(slave)
    screen = pyte.Screen(COLS, ROWS)
    stream = pyte.Stream(screen)
    screens: list[list[str]] = []
    raw: list[str] = []
    deadline = time.monotonic() + RUN_TIMEOUT
    interrupted = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the pty is gone
                break
            if not data:
                break
            text = data.decode("utf-8", "replace")
            raw.append(text)
            for piece in FRAME_START.split(text):  # one screen per drawing
                if piece:
                    stream.feed(piece)
                    screens.append(list(screen.display))
            if interrupt_when and not interrupted and interrupt_when(screens[-1]):
                os.write(master, b"\x03")
                interrupted = True
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)
    return PtyRun(rc, screens, list(screen.display), "".join(raw))


def machine_lines(screen: list[str]) -> dict[str, tuple[str, str]]:
    """name -> (state, rest of the line) for the fleet view's lines on a screen."""
    found = {}
    for line in screen:
        match = MACHINE_RE.match(line.rstrip())
        if match:
            found[match.group(1)] = (match.group(2), match.group(3))
    return found


def run_line(screen: list[str]) -> re.Match[str] | None:
    for line in screen:
        match = RUN_RE.match(line.strip())
        if match:
            return match
    return None


def results_per_machine(base: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for done in base.glob("[0-9][0-9]_g*/*/done"):
        host = done.parent / "host"
        name = host.read_text().strip() if host.exists() else "local"
        counts[name] = counts.get(name, 0) + 1
    return counts


@dataclass
class Setup:
    tree: DemoTree
    settings: Path
    root: Path
    names: list[str]

    def argv(self, out: str, *extra: str) -> list[str]:
        return ["-G", str(self.settings), "-o", str(self.root / out), "-b", "demo", "--dist",
                *extra]


@pytest.fixture(scope="module")
def setup(sshd_harness: SshdHarness, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("live")
    tree = make_demo_tree(root / "src", boards=8, commits=3)
    settings = write_settings(root / "buildman.cfg", sshd_harness.machines)
    return Setup(tree, settings, root, [m.name for m in sshd_harness.reachable])


def test_fleet_view_lines_per_machine(setup: Setup) -> None:
    run = run_in_pty(setup.argv("tty"), setup.tree.path)
    assert run.rc == 100, run.raw[-3000:]  # the demo breaks a board at one commit
    base = setup.root / "tty" / "demo"
    built = results_per_machine(base)
    seen: dict[str, set[str]] = {}
    last: dict[str, str] = {}
    last_run: re.Match[str] | None = None
    for screen in run.screens:
        for name, (state, rest) in machine_lines(screen).items():
            seen.setdefault(name, set()).add(state)
            last[name] = rest
        last_run = run_line(screen) or last_run
    # every machine had its line: the local slots, both loopback machines, the dead one
    for name in ("local", *setup.names):
        assert name in seen, (name, seen)
        assert seen[name] & {"building", "idle", "done"}, (name, seen[name])
    for name in setup.names:  # the start-up phases of a remote machine were shown
        assert seen[name] & {"probing", "starting", "pushing", "preparing"}, seen[name]
    unreachable = [n for n in seen if n not in ("local", *setup.names)]
    assert unreachable and all(seen[n] == {"probing", "unavailable"} or
                               seen[n] >= {"unavailable"} for n in unreachable), seen
    # the last drawing has every machine's results as the output tree holds them
    total = sum(built.values())
    for name in ("local", *setup.names):
        match = RESULTS_RE.match(last[name])
        assert match, (name, last[name])
        assert int(match.group(3)) == built.get(name, 0), (name, last[name], built)
        assert int(match.group(4)) == round(100 * built.get(name, 0) / total), last[name]
    assert last_run is not None
    assert (int(last_run.group(1)), int(last_run.group(2))) == (total, total)
    assert int(last_run.group(5)) >= 1  # the broken board
    # boards in flight were named while they built
    assert any(re.search(r"\d+ results\s+\d+%\s+\S+_", rest) for screen in run.screens
               for _, rest in machine_lines(screen).values())
    # the screen left behind: no view lines, the closing lines instead
    assert not machine_lines(run.final) and run_line(run.final) is None, run.final
    assert any(line.startswith("Completed:") for line in run.final)


def test_ctrl_c_leaves_a_clean_screen(setup: Setup) -> None:
    def half_way(screen: list[str]) -> bool:
        """Remote machines building and at most half of the results done."""
        progress = run_line(screen)
        lines = machine_lines(screen)
        return (progress is not None and 0 < int(progress.group(1)) <= int(progress.group(2)) // 2
                and all(lines.get(n, ("",))[0] == "building" for n in setup.names))

    run = run_in_pty(setup.argv("ctrlc"), setup.tree.path, interrupt_when=half_way)
    assert any(half_way(s) for s in run.screens), "never saw the run half-way"
    assert run.rc == 130, run.raw[-3000:]
    assert not machine_lines(run.final) and run_line(run.final) is None, run.final
    assert any("Interrupted" in line for line in run.final), run.final
    assert "\x1b[?25l" not in run.raw.rsplit("\x1b[?25h", 1)[-1]  # the cursor is shown again


def test_non_terminal_output_is_buildmans(setup: Setup) -> None:
    proc = subprocess.run([sys.executable, "-m", "buildfleet", *setup.argv("pipe")],
                          cwd=setup.tree.path, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, env={**os.environ, "TERM": "xterm-256color"})
    assert proc.returncode == 100, proc.stdout + proc.stderr
    assert not ANSI_RE.search(proc.stdout + proc.stderr)
    lines = proc.stdout.splitlines()
    assert not [ln for ln in lines if MACHINE_RE.match(ln) or RUN_RE.match(ln.strip())]
    # buildman's progress line, then the closing lines
    assert re.match(r"^ +0 +0 +0 /\d+ +-\d+ +\(starting\)$", lines[0]) or any(
        re.match(r"^ +0 +0 +0 /\d+ +-\d+ +\(starting\)$", ln) for ln in lines), lines
    assert any(ln.startswith("Completed: ") for ln in lines)
    assert "Machines:" in lines


def test_verbose_keeps_one_line_on_a_terminal(setup: Setup) -> None:
    run = run_in_pty(setup.argv("verbose", "-v", "--no-local", "--use-machines",
                                setup.names[0], "--boards", "sandbox"), setup.tree.path)
    assert run.rc in (0, 101), run.raw[-3000:]
    assert not any(machine_lines(s) or run_line(s) for s in run.screens)
    assert re.search(r"\d+ +\d+ +\d+ /\d+", ANSI_RE.sub("", run.raw))


# The end of a run as the live view draws it: results arrive between timed
# redraws, the last one just before the view stops. Each drawing is numbered.
LAST_RESULT_THEN_STOP = """
import sys, threading
from rich.text import Text
from buildfleet.fleet.status import BUILDING, FleetSnapshot, MachineView
from buildfleet.results import fleet_view
from buildfleet.results.progress import Progress, RunCounts

counts = RunCounts(total=int(sys.argv[1]))
progress = Progress(counts, sys.stdout)
drawn = threading.Event()
drawings = [0]

def view():
    drawings[0] += 1
    drawn.set()
    local = MachineView("local", BUILDING, "", 2, (), counts.done, 1.0)
    snap = FleetSnapshot((local,), counts.ok, counts.warned, counts.failed, counts.done,
                         counts.total, None)
    return Text("\\n").join([fleet_view.render(snap), Text(f"drawing {drawings[0]}")])

progress.show_fleet(view)
for i in range(counts.total):
    drawn.clear()
    if not drawn.wait(60):  # a timed redraw before each result
        sys.exit("no timed redraw")
    counts.add(0, False)
    progress.update(f"board{i}")
progress.stop()
print(f"drawings: {drawings[0]}")
"""


def test_the_last_drawing_before_the_erase_is_seen(tmp_path: Path) -> None:
    """The screens run_in_pty records include the view's last drawing.

    Why: rich draws the transient view one last time when it stops and erases
    it in the same write; that drawing is the only one sure to count every
    result, and the tests above read the last one they saw.
    """
    total = 4
    run = run_command_in_pty([sys.executable, "-c", LAST_RESULT_THEN_STOP, str(total)], tmp_path)
    assert run.rc == 0, run.raw[-3000:]
    drawings = re.search(r"drawings: (\d+)", ANSI_RE.sub("", run.raw))
    assert drawings, run.raw[-3000:]
    views = [screen for screen in run.screens if run_line(screen)]
    assert views, run.raw[-3000:]
    last = views[-1]
    assert f"drawing {drawings.group(1)}" in [line.strip() for line in last], last
    last_run = run_line(last)
    assert last_run and (int(last_run.group(1)), int(last_run.group(2))) == (total, total), last
    match = RESULTS_RE.match(machine_lines(last)["local"][1])
    assert match and int(match.group(3)) == total, last
    assert not machine_lines(run.final) and run_line(run.final) is None, run.final
