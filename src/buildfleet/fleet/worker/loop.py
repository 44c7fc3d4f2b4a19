"""``buildfleet --worker``: the shared builder behind the wire protocol.

A worker is the local builder with a protocol sink instead of the output
tree: commands arrive on stdin, ``BM> `` replies leave on the real stdout
(see ``fleet.protocol``). Three things buildman's worker got wrong are done
right here:

* only protocol lines reach the real stdout: fd 1 is pointed at stderr and
  the protocol uses a private copy, so neither a stray print nor a compiler
  can corrupt the stream (and children get /dev/null as stdin, so they can't
  eat commands);
* heartbeats keep coming every ``HEARTBEAT_INTERVAL`` s while a board
  builds, not only when it starts, so a long board never looks like a hang;
* on ``quit``, end of stdin, SIGHUP or SIGTERM every process the worker
  started is killed, including makes that run in process groups of their
  own (``fleet.reaper``).
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from buildfleet.build.adjust import FRAGMENT_RE, AdjustError, parse_adjust_args
from buildfleet.build.builder import Builder, Slot, find_dtc, prepare_slots
from buildfleet.build.jobserver import Jobserver
from buildfleet.build.makecmd import make_jobs
from buildfleet.build.slot_runner import SlotRunner
from buildfleet.fleet.messages import (
    BoardCancelled,
    BuildBoard,
    BuildDone,
    BuildDoneReply,
    BuildPrepare,
    BuildPrepareDone,
    BuildStarted,
    CancelBoard,
    Command,
    Configure,
    ConfigureDone,
    ErrorReply,
    Heartbeat,
    Quit,
    QuitAck,
    Setup,
    SetupDone,
    WorktreeCreated,
)
from buildfleet.fleet.protocol import (
    HEARTBEAT_INTERVAL,
    MAX_COMMAND_LINE,
    ProtocolError,
    command_from_wire,
    decode_command_line,
    read_lines,
    ready_reply,
)
from buildfleet.fleet.worker import reaper
from buildfleet.fleet.worker.feed import InboxFeed, Running
from buildfleet.fleet.worker.streams import Output, become_leader, cpu_threads, private_streams
from buildfleet.fleet.worker.threads import ThreadClaim, ThreadsError, claim_free_threads
from buildfleet.fleet.worker.tools import (
    CommandError,
    check_commits,
    check_wrapper,
    ensure_head,
    load_toolchains,
    parse_flags,
)
from buildfleet.fleet.worker.workdir import WorkDir, WorkDirError, setup_work_dir
from buildfleet.model import BuildFlags, BuildJob, Commit
from buildfleet.options import WorkerOptions
from buildfleet.results.paths import is_safe_name

SHUTDOWN_GRACE = 3.0
BEAT_TICK = 0.5  # how often the heartbeat thread looks (seconds)


class _Terminate(BaseException):
    """Raised in the main thread by the SIGTERM/SIGHUP/SIGINT handler."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_Item = bytes | ProtocolError | str | None


class Worker:
    """The worker's state; the main thread runs ``serve``, slots run boards."""

    def __init__(self, out: Output, log: Callable[[str], None], debug: bool) -> None:
        self.out = out
        self.log = log
        self.debug = debug
        self.nthreads = cpu_threads()
        self.host = socket.gethostname()
        self.work: WorkDir | None = None
        self.shared_dir: Path | None = None
        self.claim = ThreadClaim()
        self.flags = BuildFlags()
        self.builder: Builder | None = None
        self.toolchain_map: dict[str, str] = {}
        self._archs: set[str] = set()
        self.commits: list[Commit] = []
        self.max_boards = 0
        self.slots: list[Slot] = []
        self.generation = 0
        self.lock = threading.Condition()
        self.pending: deque[BuildJob] = deque()
        self.running: dict[str, Running] = {}
        self.busy = 0
        self.runner: SlotRunner | None = None
        self.closing = False
        self.inbox: queue.Queue[_Item] = queue.Queue()
        self.runners: list[SlotRunner] = []
        self.jobserver: Jobserver | None = None

    def dlog(self, msg: str) -> None:
        if self.debug:
            self.log(f"W: {msg}")

    # -- main loop --------------------------------------------------------------
    def serve(self) -> int:
        """Dispatch commands until quit, end of input or a broken stdout."""
        handlers: dict[type[Command], Callable[[Any], bool]] = {
            Setup: self.cmd_setup, Configure: self.cmd_configure,
            BuildPrepare: self.cmd_build_prepare, BuildBoard: self.cmd_build_board,
            BuildDone: self.cmd_build_done, CancelBoard: self.cmd_cancel_board,
            Quit: self.cmd_quit,
        }
        while True:
            item = self.inbox.get()
            if item is None:
                self.dlog("stdin closed, killing group")
                return 0
            if isinstance(item, str):  # "broken": the boss is gone
                self.log("W: stdout closed, killing group")
                return 1
            try:
                if isinstance(item, ProtocolError):
                    raise item
                cmd = command_from_wire(decode_command_line(item))
                if not handlers[type(cmd)](cmd):
                    return 0
            except (ProtocolError, CommandError, WorkDirError, ThreadsError) as exc:
                self.dlog(f"error: {exc}")
                self.out.send(ErrorReply(str(exc), getattr(exc, "reason", "") or None).to_wire())
            except Exception as exc:  # noqa: BLE001 - a bad command must not kill us
                self.log(f"W: internal error: {exc}\n{traceback.format_exc()}")
                self.out.send(ErrorReply(f"internal error: {exc}").to_wire())

    def read_stdin(self, stream: IO[bytes]) -> None:
        """Reader thread: raw command lines (or errors) into the inbox; None at EOF."""
        try:
            for line in read_lines(stream, MAX_COMMAND_LINE):
                if isinstance(line, ProtocolError) or line.strip():
                    self.inbox.put(line)
        except (OSError, ValueError) as exc:
            self.log(f"W: reading stdin: {exc}")
        finally:
            self.inbox.put(None)

    # -- commands (each returns False to stop serving) --------------------------
    def cmd_setup(self, msg: Setup) -> bool:
        wanted = msg.work_dir
        with self.lock:
            if self.pending or self.busy:
                raise CommandError("cannot change the work directory while building")
        path = Path(os.path.expanduser(wanted)).absolute() if wanted else None
        if self.work is None or path is None or self.work.path != path:
            # Take the new directory before giving up the old one: a refused
            # setup leaves the worker as it was.
            new = setup_work_dir(wanted)
            if self.work is not None:
                self.work.release()
            self.work = new
            self._start_slots([])
        shared = msg.shared_dir
        self.shared_dir = Path(os.path.expanduser(shared)).absolute() if shared else None
        self.dlog(f"setup: {self.work.path}")
        # pid: so a boss that gives this worker up can stop it and its makes.
        self.out.send(SetupDone(str(self.work.path), str(self.work.git_dir),
                                os.getpid()).to_wire())
        return True

    def cmd_configure(self, msg: Configure) -> bool:
        with self.lock:
            if self.pending or self.busy:
                raise CommandError("cannot configure while boards are building")
        # An empty wrapper is the boss's "none set": the run's ccache default
        # then applies, judged by this machine (load_toolchains).
        self._configure(parse_flags(msg.settings), msg.toolchains or {},
                        None if msg.wrapper is None else check_wrapper(msg.wrapper))
        self.out.send(ConfigureDone(self.toolchain_map, sorted(self._archs)).to_wire())
        return True

    def _configure(self, flags: BuildFlags, hint: dict[str, str],
                   wrapper: str | None = None) -> None:
        try:
            parse_adjust_args(flags.adjust_cfg)
        except AdjustError as exc:
            raise CommandError(f"configure: {exc}") from None
        if not all(FRAGMENT_RE.match(f) for f in flags.fragments):
            raise CommandError(f"configure: bad --fragments {list(flags.fragments)}")
        if flags.dtc_skip and find_dtc(dict(os.environ)) is None:
            raise CommandError("configure: --dtc-skip: Cannot find dtc on this machine")
        tcs = load_toolchains(hint, self.log, wrapper, flags.ccache)
        self.flags = flags
        if flags.jobserver and self.jobserver is None:
            # The machine's one jobserver: kept across configures and build
            # generations, so makes still ending share it with new ones.
            self.jobserver = Jobserver(self.nthreads)
        self.builder = Builder(flags, tcs, host=self.host,
                               jobserver=self.jobserver if flags.jobserver else None)
        if self.runner is not None:
            self.runner.builder = self.builder
        self.toolchain_map = tcs.to_map()
        self._archs = tcs.archs()
        self.dlog(f"configure: {len(self.toolchain_map)} toolchains, wrapper "
                  f"{tcs.wrapper!r}, ccache {tcs.ccache!r}, {flags.to_dict()}")

    def cmd_build_prepare(self, msg: BuildPrepare) -> bool:
        if self.work is None:
            raise CommandError("no work directory set up (send setup first)")
        with self.lock:
            if self.pending or self.busy:
                raise CommandError("cannot prepare a new build while boards are building")
        hashes: list[str] = check_commits(self.work.git_dir, msg.commits)
        ensure_head(self.work.git_dir, hashes[0])
        if self.builder is None:
            self._configure(BuildFlags(), {})
        self.commits = [Commit(i, h) for i, h in enumerate(hashes)]
        self.max_boards = msg.max_boards or self.nthreads
        # The machine's free threads (shared with this login's other workers when the
        # boss named a shared_dir); a "busy" error if there are none.
        self.claim.release()
        self.claim = claim_free_threads(self.shared_dir or self.work.path, self.nthreads,
                                        lambda line: self.log(f"W: {line}"))
        count = min(self.claim.count, self.max_boards)
        self.dlog(f"build_prepare: {len(hashes)} commits threads={count} "
                  f"max_boards={self.max_boards}")
        self.out.send(BuildStarted(count).to_wire())
        slots: list[Slot] = []
        for i in range(count):
            # One at a time, so each worktree_created keeps the boss's timeout alive.
            slots = prepare_slots(self.work.git_dir, self.work.path, self.work.slots_root,
                                  i + 1)
            self.out.send(WorktreeCreated(i).to_wire())
        self._start_slots(slots)
        self.out.send(BuildPrepareDone().to_wire())
        return True

    def _start_slots(self, slots: list[Slot]) -> None:
        with self.lock:
            self.generation += 1
            self.slots = slots
            old, self.runner = self.runner, None
            self.lock.notify_all()
            gen = self.generation
        if old is not None:
            old.stop()
        if slots:
            if self.builder is None:
                self._configure(BuildFlags(), {})
            assert self.builder is not None
            runner = SlotRunner(self.host, self.builder, slots, InboxFeed(self, gen),
                                self._make_jobs, lambda line: self.log(f"W: {line}"),
                                tracebacks=True)
            with self.lock:
                self.runner = runner
            runner.start()
            self.runners.append(runner)

    def cmd_build_board(self, msg: BuildBoard) -> bool:
        target = msg.board
        if not is_safe_name(target):
            raise CommandError(f"bad board name {target!r}")
        if not self.slots or self.builder is None:
            raise CommandError("no builder (send build_prepare first)")
        indices = msg.commits
        if indices is None:
            commits = tuple(self.commits)
        else:
            bad = [i for i in indices if i >= len(self.commits)]
            if bad or not indices:
                raise CommandError(f"board {target}: commit indices must be 0.."
                                   f"{len(self.commits) - 1}, got {indices}")
            commits = tuple(self.commits[i] for i in sorted(set(indices)))
        board = msg.to_board()
        if board.base_target and not is_safe_name(board.base_target) or not all(
                is_safe_name(f) for f in board.fragments):
            raise CommandError(f"board {target}: bad base_target or fragments")
        with self.lock:
            if target in self.running or any(j.board.target == target for j in self.pending):
                raise CommandError(f"board {target} is already queued or building")
            self.pending.append(BuildJob(board, commits))
            self.lock.notify_all()
        return True

    def cmd_build_done(self, msg: BuildDone) -> bool:
        threading.Thread(target=self._finish_build, daemon=True, name="build-done").start()
        return True

    def _finish_build(self) -> None:
        with self.lock:
            while (self.pending or self.busy) and not self.closing:
                self.lock.wait()
            if self.closing:
                return
            count = self.runner.exceptions if self.runner is not None else 0
        self.out.send(BuildDoneReply(count).to_wire())

    def cmd_cancel_board(self, msg: CancelBoard) -> bool:
        target = msg.board
        state = "unknown"
        with self.lock:
            for job in list(self.pending):
                if job.board.target == target:
                    self.pending.remove(job)
                    state = "queued"
            run = self.running.pop(target, None)
            if run is not None and self.runner is not None:
                self.runner.cancel(target)  # its make is killed; nothing more is sent
                state = "building"
            self.lock.notify_all()
            # Sent under the lock: no result for this board can follow it.
            self.out.send(BoardCancelled(target, state).to_wire())
        self.dlog(f"cancel {target} ({state})")
        return True

    def cmd_quit(self, msg: Quit) -> bool:
        self.stop_all()
        self.out.send(QuitAck().to_wire())
        return False

    # -- slots ------------------------------------------------------------------
    def _make_jobs(self, active: int) -> int:
        # The threads this worker claimed (the rest of the machine is other runs').
        return make_jobs(self.claim.count or self.nthreads,
                         min(self.max_boards, len(self.slots)) or self.max_boards, active)

    def heartbeat_loop(self, stop: threading.Event) -> None:
        """Beat for each building board ``HEARTBEAT_INTERVAL`` s after its last beat."""
        while not stop.wait(BEAT_TICK):
            now = time.monotonic()
            with self.lock:
                for target, run in self.running.items():
                    if now - run.last_beat >= HEARTBEAT_INTERVAL:
                        run.last_beat = now
                        self.out.send(Heartbeat(target, run.thread).to_wire())

    # -- shutdown ---------------------------------------------------------------
    def stop_all(self) -> None:
        with self.lock:
            self.closing = True
            self.pending.clear()
            runner = self.runner
            self.lock.notify_all()
        if runner is not None:
            runner.stop()

    def shutdown(self, leader: bool) -> None:
        """Stop every build, kill what we started, give up the work directory."""
        self.stop_all()
        deadline = time.monotonic() + SHUTDOWN_GRACE
        for runner in self.runners:
            runner.join(max(0.0, deadline - time.monotonic()))
        reaper.reap(include_own_group=leader)
        self.claim.release()
        if self.work is not None:
            self.work.release()
            self.work = None


def run_worker(opts: WorkerOptions) -> int:
    """``buildfleet --worker [-D] [--work-dir DIR]``; returns the exit status."""
    debug = opts.debug
    stdin, stdout = private_streams()
    leader = become_leader()

    log_lock = threading.Lock()

    def log(msg: str) -> None:
        # One write per line, under a lock: slot threads must not interleave.
        with log_lock:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()

    worker: Worker
    out = Output(stdout, lambda: worker.inbox.put("broken"))
    worker = Worker(out, log, debug)

    def on_signal(signum: int, _frame: object) -> None:
        raise _Terminate(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)
    beat_stop = threading.Event()
    code = 0
    try:
        work_dir = opts.work_dir
        if work_dir:
            try:
                worker.work = setup_work_dir(work_dir)
            except WorkDirError as exc:
                out.send(ErrorReply(str(exc)).to_wire())
                log(f"W: {exc}")
                return 1
        out.send(ready_reply(worker.nthreads, worker.nthreads))
        worker.dlog(f"ready: {worker.nthreads} threads (group leader: {leader})")
        threading.Thread(target=worker.read_stdin, args=(stdin,), daemon=True,
                         name="stdin").start()
        threading.Thread(target=worker.heartbeat_loop, args=(beat_stop,), daemon=True,
                         name="heartbeat").start()
        code = worker.serve()
    except _Terminate as exc:
        worker.dlog(f"signal {exc.signum}, killing group")
        code = 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        beat_stop.set()
        worker.shutdown(leader)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run a worker without the full command line (``python -m buildfleet.fleet.worker.loop``)."""
    from buildfleet.cmdline import options, parse_args

    return run_worker(options(parse_args(argv), WorkerOptions))


if __name__ == "__main__":
    sys.exit(main())
