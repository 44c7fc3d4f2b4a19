"""``--mach``: probe every machine and show its state as a table, plus notes.

Why its own module: the report is what a user reads to decide whether the
fleet is fit for ``--dist`` (who answers, who is busy, who lacks which
toolchain, whose host tools differ), and ``--machines-fetch-arch`` acts on
exactly what it shows. Probing and judging live in probe.py; this module
only compares and presents (and drives the fetch).
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from buildfleet.fleet.machines.kill import run_kill_workers
from buildfleet.fleet.machines.probe import MachineStatus, probe_machines
from buildfleet.fleet.machines.selection import DEFAULT_WORK_DIR, configured_machines
from buildfleet.fleet.machines.ship import ShipError, ensure_shipped
from buildfleet.fleet.machines.ssh import SshSession, last_line, remote_path, run_ssh
from buildfleet.options import MachineOptions
from buildfleet.toolchains import merged_aliases

if TYPE_CHECKING:
    from buildfleet.settings import Settings

__all__ = ["ToolchainCheck", "check_toolchains", "fetch_missing", "notes", "render_report",
           "run_kill_workers", "run_mach"]

FETCH_URL_ENV = "BUILDFLEET_FETCH_URL"
FETCH_TIMEOUT_S = 900.0
SANDBOX = "sandbox"
DRIFT_TOOLS = ("gcc", "make", "git", "dtc", "swig", "python3")
PLAIN_WIDTH = 240


@dataclass
class ToolchainCheck:
    """How a machine's toolchains compare with the boss's."""

    missing: list[str] = field(default_factory=list)
    wrong_version: dict[str, str | None] = field(default_factory=dict)  # arch -> remote ver

    def cell(self, status: MachineStatus, local_archs: set[str]) -> str:
        if not status.reachable or not status.data:
            return "-"
        if not local_archs:
            return str(len(status.toolchains))
        if not status.toolchains:
            return "none"
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing")
        if self.wrong_version:
            parts.append(f"{len(self.wrong_version)} wrong version")
        return ", ".join(parts) or "OK"


def check_toolchains(status: MachineStatus, local_archs: set[str],
                     local_versions: Mapping[str, str | None] | None = None,
                     aliases: Mapping[str, Sequence[str]] | None = None) -> ToolchainCheck:
    """Which of the boss's archs the machine lacks, or has at another gcc-X-nolibc version."""
    check = ToolchainCheck()
    if not status.reachable or not status.data:
        return check
    have = status.archs(aliases)
    check.missing = sorted(local_archs - have)
    for arch in sorted(local_archs & set(status.toolchains)):
        mine = (local_versions or {}).get(arch)
        theirs = status.toolchain_versions.get(arch)
        if mine and theirs and mine != theirs:
            check.wrong_version[arch] = theirs
    return check


def _gb(mb: int | None) -> str:
    return "-" if mb is None else f"{mb / 1024:.1f}"


def status_cell(status: MachineStatus) -> str:
    if status.available:
        return f"available, max_boards {status.max_boards}"
    return status.reason or "unavailable"


def machine_table(statuses: Sequence[MachineStatus], checks: Sequence[ToolchainCheck],
                  local_archs: set[str], *, plain: bool) -> Table:
    table = Table(box=box.ASCII if plain else box.SIMPLE_HEAD, show_edge=plain,
                  pad_edge=True)
    table.add_column("Name", justify="left", no_wrap=True)
    table.add_column("Arch", justify="right", no_wrap=True)
    table.add_column("Threads", justify="right")
    table.add_column("Load", justify="right")
    table.add_column("Mem GB", justify="right")
    table.add_column("Disk GB", justify="right")
    table.add_column("Toolchains", justify="left", no_wrap=True)
    table.add_column("Status", justify="left", no_wrap=True)
    for status, check in zip(statuses, checks, strict=True):
        tc = check.cell(status, local_archs)
        tc_style = "green" if tc == "OK" else ("dim" if tc == "-" else "yellow")
        load = status.load
        table.add_row(
            status.name,
            status.arch or "-",
            str(status.threads) if status.data else "-",
            "-" if load is None else f"{load:.1f}",
            _gb(status.mem_mb),
            _gb(status.disk_mb),
            f"[{tc_style}]{tc}[/]",
            f"[{'green' if status.available else 'red'}]{_escape(status_cell(status))}[/]",
        )
    return table


def _escape(text: str) -> str:
    return text.replace("[", r"\[")


def notes(statuses: Sequence[MachineStatus], checks: Sequence[ToolchainCheck]) -> list[str]:
    """The lines after the table: missing archs per machine, host tool version drift."""
    lines: list[str] = []
    for status, check in zip(statuses, checks, strict=True):
        if check.missing or check.wrong_version:
            need = list(check.missing)
            need += [f"{arch}(have {ver})" for arch, ver in check.wrong_version.items()]
            lines.append(f"  {status.name}: need {', '.join(need)}")
    available = [s for s in statuses if s.available]
    drift: list[str] = []
    for tool in DRIFT_TOOLS:
        by_version: dict[str, list[str]] = {}
        for status in available:
            version = status.tools.get(tool) or "missing"
            by_version.setdefault(version, []).append(status.name)
        if len(by_version) > 1:
            groups = "; ".join(f"{ver} ({', '.join(names)})"
                               for ver, names in sorted(by_version.items()))
            drift.append(f"  {tool}: {groups}")
    if drift:
        lines.append("Host tool version drift (may cause per-machine differences):")
        lines += drift
    return lines


def render_report(statuses: Sequence[MachineStatus], local_archs: set[str], out: TextIO, *,
                  local_versions: Mapping[str, str | None] | None = None,
                  aliases: Mapping[str, Sequence[str]] | None = None) -> None:
    """Print the pool line, the table and the notes to ``out``."""
    checks = [check_toolchains(s, local_archs, local_versions, aliases) for s in statuses]
    plain = not out.isatty()
    console = Console(file=out, no_color=plain, color_system=None if plain else "auto",
                      width=PLAIN_WIDTH if plain else None, highlight=False, emoji=False)
    available = sum(1 for s in statuses if s.available)
    console.print(f"[blue]Machine pool: {available} of {len(statuses)} machines available[/]")
    console.print()
    console.print(machine_table(statuses, checks, local_archs, plain=plain))
    for line in notes(statuses, checks):
        console.print(_escape(line))


# --- --machines-fetch-arch ------------------------------------------------------------------

def _fetch_env() -> str:
    url = os.environ.get(FETCH_URL_ENV)
    return f"{FETCH_URL_ENV}={shlex.quote(url)} " if url else ""


def fetch_on_machine(status: MachineStatus, check: ToolchainCheck, session: SshSession,
                     work_dir: str = DEFAULT_WORK_DIR,
                     log: Callable[[str], None] = print) -> list[str]:
    """Fetch the machine's missing archs one at a time; return the archs that failed."""
    archs = [a for a in check.missing if a != SANDBOX] + list(check.wrong_version)
    if not archs:
        return []
    try:
        pyz = ensure_shipped(status.config, session, work_dir)
    except ShipError as exc:
        log(f"  Failed to fetch {status.name}: {exc}")
        return archs
    failed = []
    for arch in archs:
        old = check.wrong_version.get(arch)
        if old:
            run_ssh(status.config, session,
                    f"rm -rf {remote_path('~/.buildman-toolchains/' + old)}", timeout=60)
        cmd = f"{_fetch_env()}python3 {shlex.quote(pyz)} --fetch-arch {shlex.quote(arch)}"
        res = run_ssh(status.config, session, cmd, timeout=FETCH_TIMEOUT_S)
        if not res.ok:
            why = last_line(res.stderr) or last_line(res.stdout) or res.error
            log(f"  Failed to fetch {status.name}: {arch}: {why}")
            failed.append(arch)
    return failed


def fetch_missing(statuses: list[MachineStatus], checks: Sequence[ToolchainCheck],
                  session: SshSession, work_dir: str = DEFAULT_WORK_DIR,
                  log: Callable[[str], None] = print) -> list[MachineStatus]:
    """Fetch missing toolchains in parallel across machines, then probe those machines again."""
    todo = [(s, c) for s, c in zip(statuses, checks, strict=True)
            if s.reachable and s.data and (c.missing or c.wrong_version)
            and [a for a in c.missing if a != SANDBOX] + list(c.wrong_version)]
    if not todo:
        return statuses
    total = sum(len(c.missing) + len(c.wrong_version) for _, c in todo)
    log(f"Fetching {total} toolchains on {len(todo)} machines...")
    with ThreadPoolExecutor(max_workers=min(16, len(todo))) as pool:
        list(pool.map(lambda sc: fetch_on_machine(sc[0], sc[1], session, work_dir, log), todo))
    again = probe_machines([s.config for s, _ in todo], session, work_dir=work_dir)
    fresh = {s.name: s for s in again}
    return [fresh.get(s.name, s) for s in statuses]


def run_mach(opts: MachineOptions, settings: Settings, local_archs: set[str], *,
             local_versions: Mapping[str, str | None] | None = None,
             out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``--mach`` (and ``--machines-fetch-arch``): probe, maybe fetch, print the report.

    An unknown ``--use-machines`` name raises MachinesError (the CLI prints it).

    ``local_archs`` are the boss's toolchain archs (``Toolchains.archs()``) the
    machines are compared with; ``local_versions`` optionally maps an arch to
    its ``gcc-X-nolibc`` version so that a different remote version shows.
    """
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    machines = configured_machines(settings, opts.use_machines, stderr)
    if machines is None:
        return 1
    aliases = merged_aliases(getattr(settings, "toolchain_alias", None) or {})

    def log(line: str) -> None:
        print(line, file=stderr, flush=True)

    with SshSession.create() as session:
        statuses = probe_machines(machines, session, progress=log)
        if opts.machines_fetch_arch:
            checks = [check_toolchains(s, local_archs, local_versions, aliases)
                      for s in statuses]
            statuses = fetch_missing(statuses, checks, session, log=log)
        render_report(statuses, local_archs, stdout, local_versions=local_versions,
                      aliases=aliases)
    return 0
