"""The free reproducibility check: two copies of one result should build the same images.

Tail hedging (and a board requeued after a worker was given up on) sometimes
builds the same board × commit twice, on two machines. Only the first copy is
written; the other would be thrown away. Comparing the image hashes of the
two (``images.sha256``, which the builder adds to every result) costs nothing
and tells a maintainer when the same source gives different binaries on
different machines: a toolchain that differs, a build that is not
reproducible. This module keeps the tally during a run, renders the
post-run lines and stores them as ``<base>/reproducibility.json``, which the
JSON report reads (so ``--report`` works after the run too, and a later
``-s --report`` still shows the check of the run that built the tree).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from buildfleet.model import LOCAL

REPRO_FILE = "reproducibility.json"


def parse_hashes(data: bytes) -> dict[str, str]:
    """``images.sha256`` (``<sha256>  <image>`` lines) as image -> hash."""
    out: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        digest, sep, image = line.partition("  ")
        if sep and digest and image:
            out[image.strip()] = digest.strip()
    return out


@dataclass(frozen=True)
class Mismatch:
    """Two copies of ``target`` at ``sequence`` whose images differ."""

    target: str
    sequence: int
    hosts: tuple[str, str]
    """(host of the written copy, host of the other); ``LOCAL`` for the boss."""
    images: tuple[str, ...]
    """Images whose hashes differ, or that only one copy has."""

    def line(self) -> str:
        return (f"  mismatch: {self.target} commit {self.sequence + 1}: "
                f"{', '.join(self.images)} differ between {self.hosts[0]} and {self.hosts[1]}")

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "commit": self.sequence, "hosts": list(self.hosts),
                "images": list(self.images)}


@dataclass
class ReproCheck:
    """Thread-safe tally of the copies compared during one run."""

    compared: int = 0
    hedged: int = 0
    """Of ``compared``: copies of boards that were hedged (the rest were built
    again after going back to the pool, or arrived late from a lost worker)."""
    mismatches: list[Mismatch] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def compare(self, target: str, sequence: int, written: bytes, written_host: str,
                other: bytes, other_host: str, hedged: bool = True) -> Mismatch | None:
        """Compare two copies' ``images.sha256``; the mismatch (also recorded) or None."""
        a = parse_hashes(written)
        b = parse_hashes(other)
        differ = tuple(sorted(img for img in a.keys() | b.keys() if a.get(img) != b.get(img)))
        mismatch = None
        if differ:
            mismatch = Mismatch(target, sequence, (written_host or LOCAL, other_host or LOCAL),
                                differ)
        with self._lock:
            self.compared += 1
            self.hedged += int(hedged)
            if mismatch is not None:
                self.mismatches.append(mismatch)
        return mismatch

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {"compared": self.compared, "hedged": self.hedged,
                    "mismatches": [m.to_dict() for m in self.mismatches]}

    def report_lines(self, reproducible: bool = True) -> list[str]:
        """The post-run lines; none when no two copies were compared."""
        with self._lock:
            compared, hedged = self.compared, self.hedged
            mismatches = sorted(self.mismatches, key=lambda m: (m.sequence, m.target))
        if not compared:
            return []
        lines = [f"Reproducibility: {compared} results built twice compared ({hedged} of "
                 f"hedged boards, {compared - hedged} of boards built again), "
                 f"{len(mismatches)} mismatches"]
        lines += [m.line() for m in mismatches]
        if mismatches and not reproducible:
            lines.append("  (built without -r: the build date embedded in each image "
                         "differs between copies)")
        return lines

    def save(self, base: Path) -> str | None:
        """Store the tally as ``<base>/reproducibility.json`` (or remove a stale one).

        Returns an error message instead of raising: the check is advisory.
        """
        path = base / REPRO_FILE
        try:
            if not self.compared:
                path.unlink(missing_ok=True)
                return None
            tmp = path.with_name(f".{REPRO_FILE}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            return f"cannot write {path}: {exc.strerror or exc}"
        return None


def load_reproducibility(base: Path) -> dict[str, Any] | None:
    """The stored tally of the run that built ``base``, or None (absent or unreadable)."""
    try:
        data = json.loads((base / REPRO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("compared"), int):
        return None
    mismatches = data.get("mismatches")
    if not isinstance(mismatches, list):
        return None
    out: dict[str, Any] = {"compared": data["compared"],
                           "mismatches": [m for m in mismatches if isinstance(m, dict)]}
    if isinstance(data.get("hedged"), int):
        out["hedged"] = data["hedged"]
    return out


def merge_reproducibility(tallies: list[dict[str, Any]]) -> dict[str, Any] | None:
    """One tally of several output trees' (CI shards'): counts added, mismatches joined."""
    if not tallies:
        return None
    out: dict[str, Any] = {"compared": sum(t["compared"] for t in tallies),
                           "mismatches": [m for t in tallies for m in t["mismatches"]]}
    if any("hedged" in t for t in tallies):
        out["hedged"] = sum(t.get("hedged", 0) for t in tallies)
    return out
