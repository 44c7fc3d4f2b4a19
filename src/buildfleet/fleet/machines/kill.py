"""``--kill-workers``: stop this user's workers and remove their locks on every machine.

Why a separate small script per machine: buildman matched any user's
``python3 ... --worker`` machine-wide with ``pgrep -f``, so one user could
kill (or be blocked by) another's workers. Here a tiny script on the
machine's own ``python3`` looks only at processes owned by the SSH user whose
argv is a worker's (``worker.workdir.is_worker_argv``, sent along), stops
them (SIGTERM, then SIGKILL after a grace period), and removes the locks of
the default work directory and of every boss's own work directory in it
(``b-<hash>``).
"""

from __future__ import annotations

import inspect
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TextIO

from buildfleet.fleet.machines.selection import DEFAULT_WORK_DIR, LOCK_NAME, configured_machines
from buildfleet.fleet.machines.ssh import SshSession, last_line, remote_path, run_ssh
from buildfleet.fleet.worker.workdir import is_worker_argv
from buildfleet.options import MachineOptions

if TYPE_CHECKING:
    from buildfleet.settings import MachineConfig, Settings

KILL_TIMEOUT_S = 60.0

# Runs on the machine: python3 - LOCK_PATH. Standard library and old syntax only.
_KILL_BODY = r"""
import os, signal, sys, time
uid = os.getuid()
skip = (os.getpid(), os.getppid())
pids = []
for entry in os.listdir('/proc'):
    if not entry.isdigit() or int(entry) in skip:
        continue
    try:
        if os.stat('/proc/' + entry).st_uid != uid:
            continue
        with open('/proc/' + entry + '/cmdline', 'rb') as f:
            argv = f.read().split(b'\0')
    except OSError:
        continue
    if is_worker_argv(argv):
        pids.append(int(entry))
for pid in pids:
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
deadline = time.time() + 3
def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False
while time.time() < deadline and any(alive(p) for p in pids):
    time.sleep(0.05)
for pid in pids:
    if alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
import glob
lock = os.path.expanduser(sys.argv[1])
# The base directory's lock and those of every boss's own work directory in it.
base, name = os.path.split(lock)
for path in [lock] + glob.glob(os.path.join(glob.escape(base), 'b-*', name)):
    try:
        os.unlink(path)
    except OSError:
        pass
print('killed %d' % len(pids) if pids else 'no workers')
"""
# Run by the machine's bare python3: the one worker test, then the killing.
KILL_SCRIPT = ("from __future__ import annotations\n\n" + inspect.getsource(is_worker_argv)
               + _KILL_BODY)


def kill_on(machine: MachineConfig, session: SshSession,
            work_dir: str = DEFAULT_WORK_DIR) -> str:
    """Stop the workers on one machine; ``killed N`` / ``no workers`` / ``FAILED: <err>``."""
    lock = f"{work_dir.rstrip('/')}/{LOCK_NAME}"
    res = run_ssh(machine, session, f"python3 - {remote_path(lock)}",
                  input=KILL_SCRIPT.encode(), timeout=KILL_TIMEOUT_S)
    if not res.ok:
        return f"FAILED: {res.error}"
    return last_line(res.stdout) or "FAILED: no answer"


def run_kill_workers(opts: MachineOptions, settings: Settings, *, out: TextIO | None = None,
                     err: TextIO | None = None) -> int:
    """``--kill-workers`` on every (or every ``--use-machines``) machine, in parallel."""
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    machines = configured_machines(settings, opts.use_machines, stderr)
    if machines is None:
        return 1
    with SshSession.create() as session, ThreadPoolExecutor(
            max_workers=min(32, len(machines))) as pool:
        answers = list(pool.map(lambda m: kill_on(m, session), machines))
    pairs = sorted(zip(machines, answers, strict=True), key=lambda p: p[0].name.lower())
    for machine, answer in pairs:
        print(f"  {machine.name}: {answer}", file=stdout)
    return 0
