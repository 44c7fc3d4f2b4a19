"""The boss side of a distributed run: probe the fleet, start workers, feed them.

``remote_starter`` returns the hook the runner calls once the pool exists. It
probes every machine in parallel, then gives each available machine its own
thread that ships the tool, starts the worker, pushes exactly what will be
built, configures it and joins the shared pool. A machine that fails any step
is dropped with its reason; the run goes on with the others and the local
slots.
"""

from __future__ import annotations

import argparse
import secrets
import shlex
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from buildfleet import __version__, gitutil
from buildfleet.build.failure import infra_line
from buildfleet.fleet import status as phase
from buildfleet.fleet.machines import ship
from buildfleet.fleet.machines.leftovers import stop_leftovers
from buildfleet.fleet.machines.probe import MachineStatus, probe_machines
from buildfleet.fleet.machines.selection import DEFAULT_WORK_DIR, MachinesError, select_machines
from buildfleet.fleet.machines.ssh import SshSession, git_push_env, ssh_argv
from buildfleet.fleet.remote.channel import Channel, ChannelError
from buildfleet.fleet.remote.session import (
    PREPARE_SECONDS,
    QUIT_SECONDS,
    RemoteDispatcher,
    RemoteSession,
    RemoteStats,
    WorkerLost,
)
from buildfleet.fleet.runlog import RunLog
from buildfleet.model import Board, BuildJob, BuildResult
from buildfleet.plan import PlanError
from buildfleet.settings import Settings
from buildfleet.toolchains import Toolchains, merged_aliases

READY_SECONDS = 120.0
SETUP_SECONDS = 60.0
PUSH_SECONDS = 600.0
DONE_SECONDS = 120.0
RESTART_DELAY = 1.0
# A worker that gives up this many boards for infrastructure reasons is lost.
INFRA_FAILURES_PER_WORKER = 2


def report_phase(ctx: Any, name: str, state: str, detail: str = "") -> None:
    """Tell the live view what machine ``name`` is doing (if the run has a view)."""
    status = getattr(ctx, "status", None)
    if status is not None:
        status.set(name, state, detail)


def _summarise(msg: dict[str, Any]) -> str:
    if msg.get("resp") == "build_result":
        return (f"build_result {msg.get('board')} commit {msg.get('commit_upto')} "
                f"rc={msg.get('return_code')} files={len(msg.get('files') or {})}")
    return str(msg)[:500]


class RemoteExecutor:
    """One machine of the fleet: start-up, then dispatch, in its own thread."""

    def __init__(self, status: MachineStatus, ctx: Any, session: SshSession,
                 settings: Settings, tip: str, commit_hashes: list[str]) -> None:
        self.status = status
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
        self.failures = 0
        self.infra_failures = 0
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
        self.log.write("!!", line)
        if self.ctx.args.debug:
            self.ctx.log(f"[{self.name}] {line}")

    def _run(self) -> None:
        """Attempts until the work is done, the run stops or the machine is quarantined.

        A lost worker counts one failure against its machine; the machine gets
        a fresh worker (after RESTART_DELAY) until it has failed
        ``quarantine_after`` times, then it is out for the rest of the run.
        """
        pool = self.ctx.pool
        limit = max(1, int(getattr(pool.policy, "quarantine_after", 2)))
        try:
            while not self._stopping():
                if self._attempt():
                    report_phase(self.ctx, self.name, phase.DONE)
                    return
                self.failures += 1
                if not self._stopping():
                    self._stop_leftovers()
                if self.failures >= limit:
                    report_phase(self.ctx, self.name, phase.QUARANTINED, self.failure)
                    if not self._stopping():
                        self.ctx.log(f"Quarantined {self.name} for the rest of the run "
                                     f"after {self.failures} failures")
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
        answer = stop_leftovers(self.status.config, self.session, DEFAULT_WORK_DIR,
                                self.worker_pid)
        self.log.write("!!", f"given-up worker {self.worker_pid or '?'}: {answer}")
        if self.ctx.args.debug or answer.startswith("FAILED"):
            self.ctx.log(f"{self.name}: stopping what the lost worker left running: {answer}")

    def _stopping(self) -> bool:
        return self.ctx.stop.is_set() or self._aborted

    def _attempt(self) -> bool:
        """One worker's life on this machine; False if it failed (reason in ``failure``)."""
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
                return True
            report_phase(self.ctx, self.name, phase.PREPARING)
            archs = self._configure(session)
            max_boards = self.status.max_boards
            self._prepare(session, max_boards)

            def can_build(board: Board) -> bool:
                return board.arch in archs

            self.dispatcher = RemoteDispatcher(
                self.name, session, max_boards, [c.sequence for c in self.ctx.plan.commits],
                self._take, self._accept, lambda t: pool.finished(self.name, t),
                self.ctx.stop, self.ctx.log, lost=self._board_lost, late=self.ctx.sink.check)
            self.dispatcher.stats = self.stats
            pool.register(self.name, max_boards, can_build, cancel=self.dispatcher.cancel,
                          speed=self.ctx.costs.speed(self.name) if self.ctx.costs else None)
            report_phase(self.ctx, self.name, phase.BUILDING)
            self.dispatcher.run()
            self.dispatcher.close_busy()
            if not self._stopping():
                # (late results of cancelled copies still in the pipe are compared)
                done = self.dispatcher.build_done(DONE_SECONDS)
                self.exceptions += int(done.get("exceptions") or 0)
            return True
        except (WorkerLost, ship.ShipError, ChannelError, gitutil.GitError, OSError) as exc:
            self.failure = str(exc) or type(exc).__name__
            report_phase(self.ctx, self.name, phase.LOST, self.failure)
            if not self._stopping():
                # Boards in flight were tried here: that counts towards their retry limit.
                in_flight = sorted(self.dispatcher.in_flight) if self.dispatcher else []
                for target in in_flight:
                    pool.failed(self.name, target, f"lost with {self.name}: {self.failure}")
                back = pool.remove_executor(self.name, failed=True)
                extra = f"; {len(in_flight) or len(back)} boards back to the pool" if (
                    in_flight or back) else ""
                self.ctx.log(f"Worker failed on {self.name}: {self.failure}{extra}")
            self.log.write("!!", f"failed: {self.failure}")
            return False
        finally:
            if self.dispatcher is not None:
                self.dispatcher.close_busy()
            pool.remove_executor(self.name)
            self._quit(graceful=not self.failure)

    def _board_lost(self, target: str, reason: str) -> None:
        """The worker gave ``target`` up for an infrastructure reason: build it elsewhere."""
        self.infra_failures += 1
        self.log.write("!!", f"infrastructure failure on {target}: {reason}")
        self.ctx.log(infra_line(self.name, target, reason))
        self.ctx.pool.failed(self.name, target, f"{self.name}: {reason.strip()}")
        if self.infra_failures >= INFRA_FAILURES_PER_WORKER:
            raise WorkerLost(f"{self.infra_failures} infrastructure failures, last: "
                             f"{reason.strip()}")

    def _start_up(self) -> RemoteSession:
        machine = self.status.config
        args = self.ctx.args
        work_dir = DEFAULT_WORK_DIR
        pyz = ""
        if not args.machines_buildman_path:
            pyz = ship.ensure_shipped(machine, self.session, work_dir)
        else:
            self.session.warm_up(machine)
        cmd = ship.worker_command(pyz, work_dir, args.debug, args.machines_buildman_path)
        self.log.write(">>", f"start: {cmd}")
        self.channel = Channel(ssh_argv(machine, self.session, cmd), name=self.name,
                               on_stderr=self._on_stderr,
                               on_noise=lambda ln: self.log.write("..", ln))
        session = RemoteSession(self.name, self.channel)
        ready = session.wait_for("ready", READY_SECONDS)
        self.log.write("<<", _summarise(ready))
        expected = None if args.machines_buildman_path else __version__
        ship.check_ready(ready, expected)
        setup = session.request({"cmd": "setup", "work_dir": work_dir}, "setup_done",
                                SETUP_SECONDS)
        git_dir = str(setup.get("git_dir") or "")
        pid = setup.get("pid")
        self.worker_pid = pid if isinstance(pid, int) and not isinstance(pid, bool) else 0
        if not git_dir.startswith("/"):
            raise WorkerLost(f"setup_done without an absolute git_dir: {git_dir!r}")
        report_phase(self.ctx, self.name, phase.PUSHING)
        self._push(git_dir)
        return session

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
        """Configure the worker; the board archs it can build (aliases included)."""
        settings = self.ctx.plan.flags.to_dict()
        reply = session.request({"cmd": "configure", "settings": settings,
                                 "toolchains": self.status.toolchains},
                                "configure_done", SETUP_SECONDS)
        served = reply.get("archs")
        if isinstance(served, list) and all(isinstance(a, str) for a in served):
            archs = set(served)  # the worker's own answer: its toolchains and aliases
        else:
            tcs = reply.get("toolchains")
            found = tcs if isinstance(tcs, dict) else self.status.toolchains
            aliases = merged_aliases(self.settings.toolchain_alias)
            archs = Toolchains.from_map(found, aliases=aliases).archs()
        self.log.write("<<", f"configure_done: {sorted(archs)}")
        return archs

    def _prepare(self, session: RemoteSession, max_boards: int) -> None:
        session.request({"cmd": "build_prepare", "commits": self.commit_hashes,
                         "max_boards": max_boards}, "build_prepare_done", PREPARE_SECONDS,
                        accept=("build_started", "worktree_created"))

    def _take(self, may_wait: bool) -> BuildJob | None:
        pool = self.ctx.pool
        return pool.take(self.name) if may_wait else pool.try_take(self.name)

    def _accept(self, result: BuildResult) -> bool:
        self.log.write("<<", f"result {result.target} {result.sequence} rc={result.return_code}")
        return bool(self.ctx.sink.accept(self.name, result))

    def _quit(self, graceful: bool) -> None:
        with self._quit_lock:
            if self._quitted or self.channel is None:
                return
            self._quitted = True
        channel = self.channel
        try:
            channel.send({"cmd": "quit"})
            if graceful:
                RemoteSession(self.name, channel).wait_for("quit_ack", QUIT_SECONDS,
                                                           accept=("build_result",
                                                                   "board_cancelled",
                                                                   "build_done"))
        except (ChannelError, WorkerLost):
            pass
        channel.close(grace=2.0)

    def closing_line(self) -> str:
        stats = self.stats if self.dispatcher or self.stats.results else None
        sent = self.channel.bytes_sent if self.channel else 0
        recv = self.channel.bytes_received if self.channel else 0
        if stats is None:
            return f"  {self.name}: no boards ({self.failure or 'not started'})"
        state = f", failed: {self.failure}" if self.failure else ""
        return (f"  {self.name}: {stats.boards} boards, {stats.results} results, busy "
                f"{stats.busy:.1f}s, sent {_size(sent)}, received {_size(recv)}{state}")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n}B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f}KB"
    return f"{n / 1024 / 1024:.1f}MB"


def _push_tip(plan: Any) -> tuple[str, list[str]]:
    """What to push and the hashes workers build: the branch tip, or a snapshot."""
    if plan.branch is None:
        snap = gitutil.snapshot_working_tree(plan.src_dir)
        return snap, [snap for _ in plan.commits]
    tip = gitutil.git(["rev-parse", "--verify", f"{plan.commits[-1].hash}^{{commit}}"],
                      cwd=plan.src_dir).strip()
    branch_tip = gitutil.git(["rev-parse", "--verify",
                              f"{plan.branch.split('..')[-1]}^{{commit}}"],
                             cwd=plan.src_dir, check=False).strip()
    return branch_tip or tip, [c.hash for c in plan.commits]


def remote_starter(settings: Settings) -> Callable[[Any], list[RemoteExecutor]]:
    """The runner's hook: probe and start every available machine."""

    def start(ctx: Any) -> list[RemoteExecutor]:
        args: argparse.Namespace = ctx.args
        try:
            machines = select_machines(settings, args.use_machines)
        except MachinesError as exc:
            raise PlanError(str(exc)) from None
        bad_hosts = [m for m in machines if m.host.startswith("-")]
        for m in bad_hosts:
            # It would reach ssh's and git's command lines as an option.
            ctx.log(f"  {m.name}: unavailable: host {m.host!r} must not start with '-'")
        machines = [m for m in machines if m not in bad_hosts]
        session = SshSession.create()
        executors: list[RemoteExecutor] = []

        def close_all() -> None:
            """Every worker told to quit and every connection closed, in parallel, bounded."""
            quitters = [threading.Thread(target=ex.abort, daemon=True) for ex in executors]
            for t in quitters:
                t.start()
            deadline = time.monotonic() + QUIT_SECONDS
            for t in quitters:
                t.join(max(0.0, deadline - time.monotonic()))
            for ex in executors:
                ex.join(max(0.0, deadline - time.monotonic()))
            if ctx.stop.is_set() or all(not ex._thread.is_alive() for ex in executors):
                session.close()

        ctx.closers.append(close_all)
        for m in machines:
            report_phase(ctx, m.name, phase.PROBING)
        statuses = probe_machines(machines, session, progress=ctx.log)
        available = []
        for status in statuses:
            if status.available:
                available.append(status)
            else:
                report_phase(ctx, status.name, phase.UNAVAILABLE, status.reason)
                ctx.log(f"  {status.name}: unavailable: {status.reason}")
        if not available:
            if args.no_local:
                raise PlanError("No machines available: " + "; ".join(
                    f"{s.name}: {s.reason}" for s in statuses))
            ctx.log("No machines available: building everything locally")
            return []
        manifest = getattr(ctx, "manifest", None)
        if manifest is not None:
            for status in available:
                manifest.add_machine(status.name, status.toolchains, status.config.host,
                                     status.max_boards)
            if problem := manifest.save():
                ctx.log(f"Warning: {problem}")
        tip, hashes = _push_tip(ctx.plan)
        executors += [RemoteExecutor(s, ctx, session, settings, tip, hashes) for s in available]
        ctx.log(f"Starting workers on {len(executors)} machines: "
                + ", ".join(e.name for e in executors))
        ctx.remote_executors = executors
        return executors

    return start
