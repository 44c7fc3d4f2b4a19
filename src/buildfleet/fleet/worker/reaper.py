"""Kill everything a worker started, and nothing else.

A worker's makes run in process groups of their own (so one board can be
stopped alone), which means killing the worker's own group is not enough:
buildman's "SIGKILL my group" left such makes behind. The reaper walks the
process table for the worker's descendants and the members of its group
(Linux ``/proc``) and kills them, groups first, until none is left.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

PROC = Path("/proc")


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (ppid, pgid) for every live process; empty without /proc."""
    table: dict[int, tuple[int, int]] = {}
    try:
        entries = list(PROC.iterdir())
    except OSError:
        return table
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parens.
        # Zombies are dead already (their parent collects them): skip them.
        fields = stat[stat.rfind(")") + 2:].split()
        if not fields or fields[0] in ("Z", "X"):
            continue
        try:
            table[int(entry.name)] = (int(fields[1]), int(fields[2]))
        except (IndexError, ValueError):
            continue
    return table


def descendants(root: int, table: dict[int, tuple[int, int]]) -> set[int]:
    """Every process below ``root`` in the parent tree."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _pgid) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def _kill(pid: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def reap(include_own_group: bool, rounds: int = 20) -> int:
    """SIGKILL this process's descendants (and, if asked, its group's members).

    Groups led by a descendant are killed whole, which catches compilers that
    make started even if they were re-parented. Returns how many processes
    were signalled. Without /proc (not Linux) it falls back to signalling
    this process's own group with SIGTERM, which this process ignores.
    """
    me = os.getpid()
    total = 0
    for _ in range(rounds):
        table = process_table()
        if not table:
            if include_own_group:
                old = signal.signal(signal.SIGTERM, signal.SIG_IGN)
                _signal_group(os.getpgrp(), signal.SIGTERM)
                signal.signal(signal.SIGTERM, old)
            return total
        victims = descendants(me, table)
        if include_own_group:
            mygroup = os.getpgrp()
            victims |= {pid for pid, (_pp, pg) in table.items() if pg == mygroup}
        victims.discard(me)
        if not victims:
            return total
        total += _kill_round(victims, table, spare_group=None)
    return total


def _kill_round(victims: set[int], table: dict[int, tuple[int, int]],
                spare_group: int | None) -> int:
    """SIGKILL ``victims``, each group leader's whole group first (but ``spare_group``).

    ``table`` is ``process_table()``'s {pid: (ppid, pgid)}; returns how many
    were signalled, after a short pause for the kernel to reap them.
    """
    for pid in victims:
        if table[pid][1] == pid and pid != spare_group:
            _kill(pid, group=True)
    for pid in victims:
        _kill(pid, group=False)
    time.sleep(0.02)
    return len(victims)


def _cwd_inside(pid: int, root: str) -> bool:
    try:
        cwd = os.readlink(PROC / str(pid) / "cwd")
    except OSError:  # gone, or not ours to look at
        return False
    return cwd == root or cwd.startswith(root + os.sep)


def reap_inside(directory: Path, rounds: int = 50) -> int:
    """SIGKILL every process working inside ``directory``, with its descendants.

    A worker killed with SIGKILL cannot stop its makes (they run in their own
    sessions), so they build on in the slots' directories. The next worker to
    take over the work directory must stop them first, or they would write into
    the very build directories it is about to use. Only processes this user
    may signal are touched, never this process or its ancestors. Returns how
    many processes were signalled.
    """
    root = os.path.realpath(directory)
    me = os.getpid()
    spared = {me}
    table = process_table()
    pid = me
    while pid in table and pid not in (0, 1):  # never our own ancestors
        pid = table[pid][0]
        spared.add(pid)
    total = 0
    for _ in range(rounds):
        table = process_table()
        victims: set[int] = set()
        for pid in table:
            if pid not in spared and _cwd_inside(pid, root):
                victims.add(pid)
                victims |= descendants(pid, table)
        victims -= spared
        if not victims:
            return total
        total += _kill_round(victims, table, spare_group=os.getpgrp())
    return total


def _signal_group(pgid: int, sig: int) -> None:
    """Signal a process group (gone already: nothing to do).

    Not makerun.kill_group: the boss sends this file on its own to a machine's
    python3 (fleet/machines/leftovers.py), where no buildfleet package exists,
    so it imports the standard library only.
    """
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
