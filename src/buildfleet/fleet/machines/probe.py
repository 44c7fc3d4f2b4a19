"""Probing machines: one SSH each, all in parallel, and the verdict on each.

Why: before a run the boss must know which machines can take builds (they
answer, are not busy, have disk and memory, and a new-enough ``python3``) and
which toolchains each one finds *itself*. The measuring happens on the
machine (probe_script.py on its bare ``python3``); judging happens here, with
the thresholds of the machine's settings, so the two can be tested apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from buildfleet.fleet.machines.selection import DEFAULT_WORK_DIR
from buildfleet.fleet.machines.ssh import SshResult, SshSession, last_line, remote_path, run_ssh

if TYPE_CHECKING:
    from buildfleet.settings import MachineConfig

MIN_PYTHON = (3, 11)
PROBE_TIMEOUT_S = 60.0
MAX_PARALLEL = 32


def probe_script() -> str:
    """The self-contained script that runs on the machine."""
    script = resources.files("buildfleet.fleet.machines").joinpath("probe_script.py")
    return script.read_text("utf-8")


def probe_command(work_dir: str = DEFAULT_WORK_DIR) -> str:
    """The remote shell command: the machine's python3 reading the script on stdin."""
    return f"python3 - {remote_path(work_dir)}"


@dataclass
class MachineStatus:
    """What a probe found out about one machine, and whether it may take builds."""

    config: MachineConfig
    reachable: bool = False
    available: bool = False
    reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    toolchains: dict[str, str] = field(default_factory=dict)  # arch -> gcc path
    toolchain_versions: dict[str, str | None] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def arch(self) -> str | None:
        value = self.data.get("arch")
        return value if isinstance(value, str) else None

    @property
    def threads(self) -> int:
        return _int(self.data.get("threads")) or _int(self.data.get("cpus")) or 0

    @property
    def cpus(self) -> int:
        return _int(self.data.get("cpus")) or self.threads or 1

    @property
    def load(self) -> float | None:
        return _float(self.data.get("load_1m"))

    @property
    def mem_mb(self) -> int | None:
        return _int(self.data.get("mem_avail_mb"))

    @property
    def disk_mb(self) -> int | None:
        return _int(self.data.get("disk_avail_mb"))

    @property
    def tools(self) -> dict[str, str | None]:
        raw = self.data.get("tools")
        if not isinstance(raw, dict):
            return {}
        return {str(k): (v if isinstance(v, str) else None) for k, v in raw.items()}

    @property
    def max_boards(self) -> int:
        """Boards the machine builds at once: its setting, else its thread count."""
        return self.config.max_boards if self.config.max_boards > 0 else max(1, self.threads)

    def archs(self, aliases: Mapping[str, Sequence[str]] | None = None) -> set[str]:
        """Board archs this machine can build: its toolchains plus aliases they serve."""
        found = set(self.toolchains)
        for key, alts in (aliases or {}).items():
            if any(alt in self.toolchains for alt in alts):
                found.add(key)
        return found


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return None


def _float(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def _too_old(version: object) -> str | None:
    """``3.x`` when the machine's python3 is older than MIN_PYTHON, else None."""
    if not isinstance(version, str):
        return "unknown"
    try:
        parts = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return version
    return None if parts >= MIN_PYTHON else ".".join(str(p) for p in parts)


def judge(config: MachineConfig, result: SshResult) -> MachineStatus:
    """Turn one probe's SSH result into a MachineStatus, with the reason if unavailable."""
    status = MachineStatus(config=config)
    stderr = result.stderr.decode("utf-8", errors="replace")
    if result.rc == 127 and "python3" in stderr:
        status.reachable = True
        status.reason = "python3 not found"
        return status
    if result.rc != 0:
        status.reason = result.error or f"SSH to {config.host}: failed with code {result.rc}"
        return status
    text = result.text.strip()
    try:
        data = json.loads(text.splitlines()[-1] if text else "")
        if not isinstance(data, dict):
            raise ValueError("not an object")
    except ValueError:
        shown = text[:100] if text else f"(empty; {last_line(stderr)[:80]})"
        status.reason = f"invalid probe response: {shown}"
        return status
    status.reachable = True
    status.data = data
    chains = data.get("toolchains")
    if isinstance(chains, dict):
        for arch, info in sorted(chains.items()):
            if isinstance(info, dict) and isinstance(info.get("gcc"), str):
                status.toolchains[str(arch)] = info["gcc"]
                version = info.get("version")
                status.toolchain_versions[str(arch)] = version if isinstance(version,
                                                                             str) else None
    status.reason = _unavailable_reason(config, status)
    status.available = not status.reason
    return status


def _unavailable_reason(config: MachineConfig, status: MachineStatus) -> str:
    old = _too_old(status.data.get("python_version"))
    if old is not None:
        return f"python3 too old ({old})"
    load, cpus = status.load, status.cpus
    if load is not None and load / cpus > config.busy_load:
        return f"busy (load {load:.1f} with {cpus} cpus)"
    disk = status.disk_mb
    if disk is not None and disk < config.min_disk_mb:
        return f"low disk ({disk} MB available)"
    mem = status.mem_mb
    if mem is not None and mem < config.min_mem_mb:
        return f"low memory ({mem} MB available)"
    return ""


def probe_machine(machine: MachineConfig, session: SshSession, *,
                  work_dir: str = DEFAULT_WORK_DIR,
                  timeout: float = PROBE_TIMEOUT_S) -> MachineStatus:
    """Probe one machine with one SSH."""
    result = run_ssh(machine, session, probe_command(work_dir),
                     input=probe_script().encode("utf-8"), timeout=timeout)
    return judge(machine, result)


def probe_machines(machines: Iterable[MachineConfig], session: SshSession, *,
                   work_dir: str = DEFAULT_WORK_DIR, timeout: float = PROBE_TIMEOUT_S,
                   progress: Callable[[str], None] | None = None) -> list[MachineStatus]:
    """Probe every machine in parallel; the statuses come back in the machines' order."""
    todo = list(machines)
    if not todo:
        return []
    if progress:
        progress(f"Probing {len(todo)} machines...")
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(todo))) as pool:
        futures = [pool.submit(probe_machine, m, session, work_dir=work_dir, timeout=timeout)
                   for m in todo]
        return [f.result() for f in futures]
