"""The run manifest: ``<output>/<branch>/.buildfleet-run.json``, what a run was.

A result's ``reproduce`` script says how one board was built; the manifest
says how the whole run was: the tool and its version, the command line and
the build flags, every machine that took part and the toolchains it had, and
when the run started and ended. It is written before the first board starts,
so a run that fails or is interrupted leaves one too (``ended`` null and
``status`` ``running`` until the run closes it), and rewritten atomically as
machines join and when the run ends.

Shape (``"schema": "buildfleet-run"``, ``"version": 1``)::

    {"schema": "buildfleet-run", "version": 1, "tool": "buildfleet",
     "tool_version": "0.1.0", "argv": ["-b", "demo", "--dist"], "cwd": "/src/u-boot",
     "source_dir": "/src/u-boot", "branch": "demo", "commits": ["<hash>", ...],
     "boards": 12, "results_to_build": 48, "flags": {...BuildFlags...},
     "machines": [{"name": "local", "host": "myhost", "slots": 8,
                   "toolchains": {"arm": "/usr/bin/arm-linux-gnueabihf-gcc"}}, ...],
     "started": "2026-12-01T05:00:00+00:00", "ended": null, "status": "running",
     "exit_code": null}

``status`` ends as ``completed`` or ``interrupted``. Times are UTC, ISO 8601.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildfleet import __version__

MANIFEST_NAME = ".buildfleet-run.json"
SCHEMA_NAME = "buildfleet-run"
SCHEMA_VERSION = 1


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class RunManifest:
    """The manifest of one run; :meth:`save` rewrites the file whole (thread-safe)."""

    path: Path
    argv: list[str]
    source_dir: str
    branch: str | None
    commits: list[str | None]
    boards: int
    results_to_build: int
    flags: dict[str, Any]
    started: str = field(default_factory=utc_now)
    ended: str | None = None
    status: str = "running"
    exit_code: int | None = None
    machines: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add_machine(self, name: str, toolchains: dict[str, str], host: str = "",
                    slots: int | None = None) -> None:
        """Record (or update) a machine of the run and the toolchains it has (arch → gcc)."""
        entry: dict[str, Any] = {"name": name, "host": host, "slots": slots,
                                 "toolchains": dict(sorted(toolchains.items()))}
        with self._lock:
            self.machines = [m for m in self.machines if m["name"] != name] + [entry]

    def finish(self, status: str, exit_code: int | None) -> None:
        with self._lock:
            self.ended = utc_now()
            self.status = status
            self.exit_code = exit_code

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "schema": SCHEMA_NAME, "version": SCHEMA_VERSION,
                "tool": "buildfleet", "tool_version": __version__,
                "argv": list(self.argv), "cwd": os.getcwd(), "source_dir": self.source_dir,
                "branch": self.branch, "commits": list(self.commits), "boards": self.boards,
                "results_to_build": self.results_to_build, "flags": self.flags,
                "machines": [dict(m) for m in self.machines],
                "started": self.started, "ended": self.ended, "status": self.status,
                "exit_code": self.exit_code,
            }

    def save(self) -> str | None:
        """Write the file atomically; a one-line problem (the run goes on), or None."""
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            return f"cannot write the run manifest {self.path}: {exc.strerror or exc}"
        return None


def local_host() -> str:
    return socket.gethostname()


def load_manifest(base: Path) -> dict[str, Any] | None:
    """The manifest of the run that wrote ``base``, or None (absent or unreadable)."""
    try:
        data = json.loads((base / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
