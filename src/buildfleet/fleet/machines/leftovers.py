"""Stop what a worker the boss gave up on left running on its machine.

A worker that is killed (SIGKILL, the OOM killer), cut off or stopped
(SIGSTOP, swapping) cannot stop its makes: they run in process groups of
their own and build on in the slots. A new worker on that machine stops them
when it takes the work directory over, but a machine that gets no new worker
(quarantined, or the run ended) would keep them for as long as they run, and
a hung make runs forever. So the boss, when it gives a worker up, runs the
worker's own reaper (``fleet.worker.reaper``, standard library only) on the
machine's ``python3``: it kills the given-up worker with everything below
it, then every process still working inside the work directory, unless
another live worker has taken the directory since.
"""

from __future__ import annotations

from importlib import resources

from buildfleet.fleet.machines.selection import LOCK_NAME
from buildfleet.fleet.machines.ssh import MachineLike, SshSession, last_line, remote_path, run_ssh

LEFTOVERS_SECONDS = 20.0

# Appended to reaper.py's source; run as: python3 - WORK_DIR WORKER_PID (0: unknown).
_MAIN = r'''

def _is_worker(pid):
    try:
        if os.stat("/proc/%d" % pid).st_uid != os.getuid():
            return False
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"--worker" in f.read().split(b"\0")
    except OSError:
        return False


def _stop_given_up(work_dir, pid, lock_name):
    stopped = 0
    if pid > 0 and _is_worker(pid):
        table = process_table()
        victims = {pid} | descendants(pid, table)
        for victim in victims:
            if table.get(victim, (0, 0))[1] == victim and victim != os.getpgrp():
                _kill(victim, group=True)
        for victim in victims:
            _kill(victim, group=False)
        stopped += len(victims)
    try:
        with open(os.path.join(work_dir, lock_name)) as f:
            holder = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        holder = 0
    if holder and holder != pid and _is_worker(holder):
        return "stopped %d; %s is now used by pid %d" % (stopped, work_dir, holder)
    stopped += reap_inside(Path(work_dir))
    return "stopped %d" % stopped


if __name__ == "__main__":
    import sys
    print(_stop_given_up(os.path.expanduser(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
'''


def script() -> str:
    """The program sent to the machine's ``python3 -``: the reaper plus a main."""
    source = resources.files("buildfleet.fleet.worker").joinpath("reaper.py").read_text()
    return source + _MAIN


def stop_leftovers(machine: MachineLike, session: SshSession, work_dir: str,
                   worker_pid: int) -> str:
    """Stop a given-up worker (``worker_pid``, 0 if unknown) and its makes on ``machine``.

    Bounded by ``LEFTOVERS_SECONDS``. Returns the script's answer (``stopped N``)
    or ``FAILED: <reason>``; never raises for the machine's sake.
    """
    res = run_ssh(machine, session,
                  f"python3 - {remote_path(work_dir)} {int(worker_pid)} {LOCK_NAME}",
                  input=script().encode(), timeout=LEFTOVERS_SECONDS)
    if not res.ok:
        return f"FAILED: {res.error}"
    return last_line(res.stdout) or "FAILED: no answer"
