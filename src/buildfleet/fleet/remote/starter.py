"""Starting the fleet for a run: probe the machines, then one RemoteExecutor each.

``remote_starter`` returns the hook the runner calls once the pool exists. It
probes every machine in parallel, drops the unavailable ones with their
reason, and gives each available machine its executor (its own thread: ship,
start, setup, push, configure, prepare, then the shared pool). Every executor
of a run uses the same work directory name on its machine (``boss_key``).
"""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from buildfleet import gitutil
from buildfleet.fleet import status as phase
from buildfleet.fleet.context import RunContext
from buildfleet.fleet.machines.probe import probe_machines
from buildfleet.fleet.machines.selection import MachinesError, select_machines
from buildfleet.fleet.machines.ssh import SshSession
from buildfleet.fleet.remote.boss import RemoteExecutor, report_phase
from buildfleet.fleet.remote.session import QUIT_SECONDS
from buildfleet.plan import PlanError, RunPlan
from buildfleet.settings import Settings


def boss_key(src_dir: Path) -> str:
    """The name of this boss's work directory on every machine: ``b-<hash16>``.

    Derived from the local user, host and source tree, so two bosses (two
    users, two trees, two hosts) never share a work directory, while the same
    user's next run of the same tree finds its worktrees and objects again
    (incremental builds).
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    ident = f"{user}@{socket.gethostname()}:{os.path.realpath(src_dir)}"
    return "b-" + hashlib.sha256(ident.encode()).hexdigest()[:16]


def _push_tip(plan: RunPlan) -> tuple[str, list[str]]:
    """What to push and the hashes workers build: the branch tip, or a snapshot."""
    if plan.branch is None:
        snap = gitutil.snapshot_working_tree(plan.src_dir)
        return snap, [snap for _ in plan.commits]
    tip = gitutil.git(["rev-parse", "--verify", f"{plan.commits[-1].hash}^{{commit}}"],
                      cwd=plan.src_dir).strip()
    branch_tip = gitutil.git(["rev-parse", "--verify",
                              f"{plan.branch.split('..')[-1]}^{{commit}}"],
                             cwd=plan.src_dir, check=False).strip()
    hashes = [c.hash for c in plan.commits if c.hash is not None]
    if len(hashes) != len(plan.commits):  # (only a current-source build has no hashes)
        raise PlanError("a commit of the branch has no hash")
    return branch_tip or tip, hashes


def remote_starter(settings: Settings) -> Callable[[RunContext], list[RemoteExecutor]]:
    """The runner's hook: probe and start every available machine."""

    def start(ctx: RunContext) -> list[RemoteExecutor]:
        opts = ctx.opts
        try:
            machines = select_machines(settings, opts.use_machines)
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
            if ctx.stop.is_set() or all(ex.join(0) for ex in executors):
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
            if opts.no_local:
                raise PlanError("No machines available: " + "; ".join(
                    f"{s.name}: {s.reason}" for s in statuses))
            ctx.log("No machines available: building everything locally")
            return []
        manifest = ctx.manifest
        if manifest is not None:
            for status in available:
                manifest.add_machine(status.name, status.toolchains, status.config.host,
                                     status.max_boards)
            if problem := manifest.save():
                ctx.log(f"Warning: {problem}")
        tip, hashes = _push_tip(ctx.plan)
        key = boss_key(ctx.plan.src_dir)
        executors += [RemoteExecutor(s, ctx, session, settings, tip, hashes, key)
                      for s in available]
        ctx.log(f"Starting workers on {len(executors)} machines: "
                + ", ".join(e.name for e in executors))
        ctx.remote_executors = list(executors)
        return executors

    return start
