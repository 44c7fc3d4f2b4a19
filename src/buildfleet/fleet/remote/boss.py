"""One machine of the fleet as an executor: its start-up, then its share of the pool.

Each ``RemoteExecutor`` runs in its own thread: ship the tool (checked by size
and hash), start the worker, take this boss's own work directory there, push
exactly what will be built, configure it (flags, compilers, the toolchain
wrapper), claim the machine's free threads, and join the shared pool. A
machine busy with other runs is waited for; one that cannot do this run is
said so once; one that fails is restarted, then quarantined. The run goes on
with the others and the local slots.
"""

from __future__ import annotations

import collections
import secrets
import shlex
import sys
import threading
from typing import Any

from buildfleet import __version__, gitutil
from buildfleet.fleet import status as phase
from buildfleet.fleet.context import RunContext
from buildfleet.fleet.dispatch.pool import quarantine_line
from buildfleet.fleet.machines import ship
from buildfleet.fleet.machines.leftovers import stop_leftovers
from buildfleet.fleet.machines.probe import MachineStatus
from buildfleet.fleet.machines.selection import DEFAULT_WORK_DIR
from buildfleet.fleet.machines.ssh import SshSession, git_push_env, ssh_argv
from buildfleet.fleet.messages import (
    BuildPrepare,
    BuildStarted,
    Configure,
    ConfigureDone,
    Quit,
    Ready,
    Setup,
    SetupDone,
)
from buildfleet.fleet.protocol import ProtocolError, reply_from_wire, worker_features
from buildfleet.fleet.remote.channel import Channel, ChannelError
from buildfleet.fleet.remote.session import (
    DONE_SECONDS,
    PREPARE_SECONDS,
    QUIT_SECONDS,
    MachineBusy,
    MachineUnusable,
    RemoteDispatcher,
    RemoteSession,
    RemoteStats,
    WorkerLost,
)
from buildfleet.fleet.runlog import RunLog
from buildfleet.model import Board
from buildfleet.settings import Settings
from buildfleet.toolchains import Toolchains, merged_aliases

READY_SECONDS = 120.0
SETUP_SECONDS = 60.0
PUSH_SECONDS = 600.0
RESTART_DELAY = 1.0
# A machine busy with other runs is asked again this often (seconds).
BUSY_RETRY = 3.0
# Work directories a boss may use on one machine (its own, then spares for a
# second run of the same tree by the same user at the same time).
WORK_DIR_CHOICES = 4
# How a start-up attempt ended.
DONE, FAILED, BUSY, UNUSABLE = "done", "failed", "busy", "unusable"


def report_phase(ctx: RunContext, name: str, state: str, detail: str = "") -> None:
    """Tell the live view what machine ``name`` is doing."""
    ctx.status.set(name, state, detail)


def _summarise(msg: dict[str, Any]) -> str:
    if msg.get("resp") == "build_result":
        return (f"build_result {msg.get('board')} commit {msg.get('commit_upto')} "
                f"rc={msg.get('return_code')} files={len(msg.get('files') or {})}")
    return str(msg)[:500]


class RemoteExecutor:
    """One machine of the fleet: start-up, then dispatch, in its own thread.

    ``status`` is the machine as probed (toolchains, ``max_boards``); ``tip``
    the commit pushed and ``commit_hashes`` the commits its worker prepares
    (one per plan commit, in order); ``work_key`` names this boss's work
    directory there. ``start`` returns at once; ``join(timeout)`` (seconds)
    is True once the machine is done, given up or quarantined; ``abort``
    (Ctrl-C) tells its worker to quit, bounded. It raises nothing: a busy
    machine is waited for, an unusable one said once (``gone_reason``), a
    lost worker counted in the pool's machine health and restarted until
    the machine is quarantined.
    """

    def __init__(self, status: MachineStatus, ctx: RunContext, session: SshSession,
                 settings: Settings, tip: str, commit_hashes: list[str],
                 work_key: str = "b-default") -> None:
        self.status = status
        self.work_key = work_key
        self.features: frozenset[str] = frozenset()
        self.note = ""
        self.state = ""
        self.bytes_sent = 0
        self.bytes_received = 0
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=3)
        self.name = status.name
        self.ctx = ctx
        self.session = session
        self.settings = settings
        self.tip = tip
        self.commit_hashes = commit_hashes
        self.exceptions = 0
        self.failure = ""
        self.channel: Channel | None = None
        self.dispatcher: RemoteDispatcher | None = None
        self.log = RunLog(ctx.plan.base / f"worker-{self.name}.log")
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"remote-{self.name}")
        self._quit_lock = threading.Lock()
        self._quitted = False
        self._aborted = False
        self.workers_lost = 0  # for the closing line; the machine's health is the pool's
        self.work_dir = f"{DEFAULT_WORK_DIR}/{work_key}"  # this boss's, once set up
        self.worker_pid = 0  # the current worker's pid on the machine (setup_done), 0: unknown
        self.stats = RemoteStats()

    # -- executor interface ---------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread.ident is None:
            return True  # never started (the run was interrupted first)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def abort(self) -> None:
        """Ctrl-C: tell the worker to quit and drop the connection (bounded)."""
        self._aborted = True
        self._quit(graceful=False)

    # -- the machine's life ---------------------------------------------------
    def _on_stderr(self, line: str) -> None:
        self._stderr_tail.append(line.strip())
        self.log.write("!!", line)
        if self.ctx.opts.debug:
            self.ctx.log(f"[{self.name}] {line}")

    def _run(self) -> None:
        """Attempts until the work is done, the run stops or the machine is quarantined.

        A lost worker, like a board it gives up for an infrastructure reason,
        counts one failure against its machine in the pool (the one owner of
        machine health); the machine gets a fresh worker (after RESTART_DELAY)
        until the pool quarantines it, then it is out for the rest of the run.
        """
        pool = self.ctx.pool
        busy_said = False
        try:
            while not self._stopping():
                state = self._attempt()
                if state == DONE:
                    report_phase(self.ctx, self.name, phase.DONE)
                    return
                if state == UNUSABLE:
                    report_phase(self.ctx, self.name, phase.UNAVAILABLE, self.note)
                    self.ctx.log(f"  {self.name}: cannot be used: {self.note}")
                    return
                if state == BUSY:
                    # Other runs use it: wait (not a failure, never quarantined).
                    report_phase(self.ctx, self.name, phase.IDLE, f"busy: {self.note}")
                    if not busy_said:
                        self.ctx.log(f"  {self.name}: busy: {self.note}; waiting for it")
                        busy_said = True
                    if (self.ctx.stop.wait(BUSY_RETRY) or self._aborted
                            or pool.all_done()):
                        return
                    continue
                self.workers_lost += 1
                if not self._stopping():
                    self._stop_leftovers()
                if pool.quarantined(self.name):
                    report_phase(self.ctx, self.name, phase.QUARANTINED, self.failure)
                    if not self._stopping():
                        self.ctx.log(quarantine_line(self.name, pool.failures(self.name)))
                    return
                if self._stopping() or pool.all_done():
                    return
                if self.ctx.stop.wait(RESTART_DELAY) or self._aborted or pool.all_done():
                    return
                self.ctx.log(f"Restarting the worker on {self.name}")
        finally:
            self.log.close()

    def _stop_leftovers(self) -> None:
        """The worker was given up: stop it and its makes on the machine (bounded),
        before a new worker starts there or the machine is left for good."""
        # This boss's own work directory only: the others on the machine are other runs'.
        answer = stop_leftovers(self.status.config, self.session, self.work_dir,
                                self.worker_pid)
        self.log.write("!!", f"given-up worker {self.worker_pid or '?'}: {answer}")
        if self.ctx.opts.debug or answer.startswith("FAILED"):
            self.ctx.log(f"{self.name}: stopping what the lost worker left running: {answer}")

    def _stopping(self) -> bool:
        return self.ctx.stop.is_set() or self._aborted

    def _attempt(self) -> str:
        """One worker's life on this machine: DONE, FAILED (reason in ``failure``), or
        BUSY / UNUSABLE (reason in ``note``)."""
        pool = self.ctx.pool
        with self._quit_lock:
            self.channel = None
            self._quitted = False
        self.failure = ""
        self.dispatcher = None
        self.worker_pid = 0
        try:
            report_phase(self.ctx, self.name, phase.STARTING)
            session = self._start_up()
            if self._stopping():
                return DONE
            report_phase(self.ctx, self.name, phase.PREPARING)
            archs = self._configure(session)
            slots = self._prepare_when_free(session, self.status.max_boards)
            if slots is None:
                return DONE  # the run ended while the machine was busy
            self.note = ""

            def can_build(board: Board) -> bool:
                return board.arch in archs

            self.dispatcher = RemoteDispatcher(
                self.name, session, pool, self.ctx.sink,
                [c.sequence for c in self.ctx.plan.commits], slots, self.ctx.stop,
                self.ctx.log, runlog=self.log, features=self.features)
            self.dispatcher.stats = self.stats
            cancels = "cancel_board" in self.features
            pool.register(self.name, slots, can_build,
                          cancel=self.dispatcher.cancel if cancels else None,
                          speed=self.ctx.costs.speed(self.name) if self.ctx.costs else None,
                          hedgeable=cancels)
            report_phase(self.ctx, self.name, phase.BUILDING)
            self.dispatcher.run()
            self.dispatcher.close_busy()
            if not self._stopping():
                # (late results of cancelled copies still in the pipe are compared)
                done = self.dispatcher.build_done(DONE_SECONDS)
                self.exceptions += done.exceptions
            return DONE
        except MachineBusy as exc:
            self.note = str(exc).removeprefix("busy: ")
            self.state = "busy"
            self.log.write("!!", f"busy: {exc}")
            return BUSY
        except MachineUnusable as exc:
            self.note = str(exc)
            self.state = "cannot be used"
            self.log.write("!!", f"cannot be used: {exc}")
            return UNUSABLE
        except (WorkerLost, ship.ShipError, ChannelError, gitutil.GitError, OSError) as exc:
            self.failure = str(exc) or type(exc).__name__
            report_phase(self.ctx, self.name, phase.LOST, self.failure)
            if not self._stopping():
                # Boards in flight were tried here: that counts towards their retry limit.
                in_flight = sorted(self.dispatcher.in_flight) if self.dispatcher else []
                for target in in_flight:
                    pool.failed(self.name, target, f"lost with {self.name}: {self.failure}")
                if not pool.quarantined(self.name):  # (else a lost board did it)
                    pool.machine_failed(self.name)
                back = pool.remove_executor(self.name)
                extra = f"; {len(in_flight) or len(back)} boards back to the pool" if (
                    in_flight or back) else ""
                self.ctx.log(f"Worker failed on {self.name}: {self.failure}{extra}")
            self.log.write("!!", f"failed: {self.failure}")
            return FAILED
        finally:
            if self.dispatcher is not None:
                self.dispatcher.close_busy()
            pool.remove_executor(self.name)
            self._quit(graceful=not self.failure)

    def _start_up(self) -> RemoteSession:
        machine = self.status.config
        opts = self.ctx.opts
        installed = opts.machines_buildman_path
        pyz = ""
        if not installed:
            pyz = ship.ensure_shipped(machine, self.session, DEFAULT_WORK_DIR,
                                      log=self.ctx.log)
        else:
            self.session.warm_up(machine)
        cmd = ship.worker_command(pyz, None, opts.debug, installed)
        self.log.write(">>", f"start: {cmd}")
        self._stderr_tail.clear()
        self.channel = Channel(ssh_argv(machine, self.session, cmd), name=self.name,
                               on_stderr=self._on_stderr,
                               on_noise=lambda ln: self.log.write("..", ln))
        session = RemoteSession(self.name, self.channel)
        try:
            # A starting worker sends nothing before ready (a cold python3 on a loaded
            # machine may take seconds): the start-up bound applies, not the liveness one.
            ready = RemoteSession(self.name, self.channel, liveness=READY_SECONDS).wait_for(
                "ready", READY_SECONDS)
        except WorkerLost as exc:
            if installed:  # the program is not a worker we can drive: say why, once
                said = "; ".join(self._stderr_tail) or str(exc)
                raise MachineUnusable(f"{installed} --worker did not start a worker: "
                                      f"{said}") from None
            raise
        self.log.write("<<", _summarise(ready))
        try:
            ship.check_ready(ready, None if installed else __version__)
            self.features = worker_features(reply_from_wire(ready, Ready))
        except (ship.ShipError, ProtocolError) as exc:
            if installed:
                raise MachineUnusable(f"{installed}: {exc}") from None
            raise WorkerLost(str(exc)) from None
        if installed and not self.features:
            self.ctx.log(f"  {self.name}: {installed} speaks the seed's protocol only: no "
                         "hedged copies on it; its results carry no toolchain, out-env, "
                         "symbol or section files")
        git_dir = self._setup(session)
        report_phase(self.ctx, self.name, phase.PUSHING)
        self._push(git_dir)
        return session

    def _setup(self, session: RemoteSession) -> str:
        """Take this boss's work directory on the machine (or a spare); its git dir.

        buildfleet's workers keep their thread budget in the shared
        directory; a seed-protocol worker is given a path relative to the
        login's home (it does not expand ``~``) and may answer with a
        relative git dir, which ``git push`` over SSH takes from the home too.
        """
        base = DEFAULT_WORK_DIR
        last: Exception | None = None
        for i in range(WORK_DIR_CHOICES):
            work_dir = f"{base}/{self.work_key}{f'-{i + 1}' if i else ''}"
            if "shared_threads" in self.features:
                cmd = Setup(work_dir, shared_dir=base)
            else:
                cmd = Setup(work_dir.removeprefix("~/"))
            try:
                setup = session.request(cmd, SetupDone, SETUP_SECONDS)
            except MachineBusy as exc:  # another run of this tree uses it: try a spare
                last = exc
                continue
            git_dir = setup.git_dir
            self.worker_pid = setup.pid or 0
            self.work_dir = work_dir
            if git_dir.startswith("-") or "\n" in git_dir:
                raise WorkerLost(f"setup_done with an unusable git_dir: {git_dir!r}")
            self.log.write("<<", f"setup_done: {git_dir}")
            return git_dir
        raise MachineBusy(f"all {WORK_DIR_CHOICES} work directories of this tree are in use "
                          f"by other runs ({last})")

    def _push(self, git_dir: str) -> None:
        machine = self.status.config
        env = git_push_env(machine, self.session)
        # Through sshfilter: a banner from the machine's shell must not break git's protocol.
        token = f"BUILDFLEET-PUSH-{secrets.token_hex(8)}"
        env["GIT_SSH_COMMAND"] = (shlex.join([sys.executable, "-m",
                                              "buildfleet.fleet.machines.sshfilter", token])
                                  + " " + env["GIT_SSH_COMMAND"])
        gitutil.git(["push", "-q", "--force", f"{machine.host}:{git_dir}",
                     f"{self.tip}:refs/heads/work"], cwd=self.ctx.plan.src_dir, env=env,
                    timeout=PUSH_SECONDS)
        self.log.write(">>", f"pushed {self.tip} to {git_dir}")

    def _configure(self, session: RemoteSession) -> set[str]:
        """Configure the worker; the board archs it can build (aliases included).

        The boss's ``[toolchain-wrapper]`` goes along (none is sent as ""), so
        a board gets the same ``CROSS_COMPILE`` on every machine; a worker
        that lacks the wrapper's program refuses (MachineUnusable). With none
        set, the worker uses its own machine's ccache if it has one and the
        run's flags allow it (``ccache``), whatever the boss has.
        """
        settings = self.ctx.plan.flags.to_dict()
        wrapper = self.settings.toolchain_wrapper or ""
        if "wrapper" not in self.features and wrapper:
            self.ctx.log(f"  {self.name}: its worker cannot take the toolchain wrapper "
                         f"{wrapper!r}; it builds with its own settings' wrapper")
        cmd = Configure(settings, self.status.toolchains,
                        wrapper=wrapper if "wrapper" in self.features else None)
        reply = session.request(cmd, ConfigureDone, SETUP_SECONDS)
        if reply.archs is not None:
            archs = set(reply.archs)  # the worker's own answer: its toolchains and aliases
        else:  # (a seed-protocol worker: judge from its toolchains)
            found = reply.toolchains if reply.toolchains is not None else self.status.toolchains
            aliases = merged_aliases(self.settings.toolchain_alias)
            archs = Toolchains.from_map(found, aliases=aliases).archs()
        self.log.write("<<", f"configure_done: {sorted(archs)}")
        return archs

    def _prepare(self, session: RemoteSession, max_boards: int) -> int:
        """Prepare the worker's slots; how many boards it takes at once.

        That is ``max_boards``, or fewer when the worker got fewer threads
        (other runs use the rest of the machine). MachineBusy if it got none.
        """
        started = session.request(BuildPrepare(list(self.commit_hashes), max_boards),
                                  BuildStarted, PREPARE_SECONDS)
        session.wait_for("build_prepare_done", PREPARE_SECONDS, accept=("worktree_created",))
        slots = min(max_boards, started.num_threads)
        self.log.write("<<", f"build_prepare_done: {slots} slots")
        return max(1, slots)

    def _prepare_when_free(self, session: RemoteSession, max_boards: int) -> int | None:
        """``_prepare``, asking again every BUSY_RETRY s while the machine's threads are
        all taken by other runs; None if the run ends (or needs it no more) meanwhile."""
        said = False
        while True:
            try:
                return self._prepare(session, max_boards)
            except MachineBusy as exc:
                self.note = str(exc).removeprefix("busy: ")
                self.state = "busy"
                report_phase(self.ctx, self.name, phase.IDLE, f"busy: {self.note}")
                if not said:
                    self.ctx.log(f"  {self.name}: busy: {self.note}; waiting for it")
                    said = True
            if self.ctx.stop.wait(BUSY_RETRY) or self._aborted or self.ctx.pool.all_done():
                return None

    def _quit(self, graceful: bool) -> None:
        with self._quit_lock:
            if self._quitted or self.channel is None:
                return
            self._quitted = True
        channel = self.channel
        try:
            channel.send(Quit().to_wire())
            if graceful:
                RemoteSession(self.name, channel).wait_for("quit_ack", QUIT_SECONDS,
                                                           accept=("build_result",
                                                                   "board_cancelled",
                                                                   "build_done"))
        except (ChannelError, WorkerLost):
            pass
        channel.close(grace=2.0)
        self.bytes_sent += channel.bytes_sent
        self.bytes_received += channel.bytes_received

    def closing_extra(self) -> str:
        """What only this executor knows, for its line in the run's closing block:
        bytes each way (every worker it started), lost workers, the last failure."""
        parts = [f"sent {_size(self.bytes_sent)}", f"received {_size(self.bytes_received)}"]
        if self.workers_lost:
            parts.append(f"workers lost {self.workers_lost}")
        if self.failure:
            parts.append(f"failed: {self.failure}")
        return ", ".join(parts)

    def gone_reason(self) -> str:
        """Why this machine is out of the run at its end ("" if it is not): it could
        not be used, stayed busy with other runs, or failed (quarantined)."""
        if self.failure:
            return f"failed: {self.failure}"
        if self.state == "cannot be used" or (self.state == "busy" and self.note):
            return f"{self.state}: {self.note}"
        return ""

    def closing_line(self) -> str:
        """The closing line of a machine that never joined the pool, and why."""
        why = self.failure or (f"{self.state}: {self.note}" if self.note else "not started")
        return f"  {self.name}: no boards ({why})"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n}B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f}KB"
    return f"{n / 1024 / 1024:.1f}MB"
