"""Cost data that outlives an output tree: the ``buildfleet-costs`` file and the user's cache.

Two needs, one format. A CI job starts on a runner with no output tree, yet
its shard should be balanced by measured cost: ``-s --export-costs FILE``
writes what an earlier run measured, the pipeline keeps the file, and
``--costs FILE`` reads it. A developer who starts a new branch or a new
``-o`` should not wait through a cold, badly ordered first build either: each
run folds what it measured into a per-user cache of its tree.

The file is JSON (format ``buildfleet-costs``, version 1)::

    {"format": "buildfleet-costs", "version": 1, "unit": "seconds",
     "boards": {"<target>": {"<host>": <seconds>, ...}, ...}}

``<seconds>`` is the median time of one commit of the board built on
``<host>`` (``local``: the machine of the run itself, which writes no
``host`` file), rounded to milliseconds. Readers ignore keys they do
not know; a file of another format or version is refused with one line.
The cache lives in ``$XDG_CACHE_HOME/buildfleet/costs/`` (default
``~/.cache``), one file per source tree; two runs updating it at once both
write whole files (atomic rename), the later one winning.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from buildfleet.errors import UserError
from buildfleet.results.history import Sample

COSTS_FORMAT = "buildfleet-costs"
COSTS_VERSION = 1
CACHE_ENV = "XDG_CACHE_HOME"


class CostFileError(UserError, ValueError):
    """A cost file that cannot be read or written (one line for the user)."""


@dataclass(frozen=True)
class CostData:
    """Seconds per board-commit, per target and host: what a cost file holds.

    ``at_least`` names the (target, host) pairs whose seconds come only from
    failed builds: a lower bound, which raises a known cost but never lowers
    it when merged. It lives in memory only; the file holds the merged value.
    """

    durations: dict[str, dict[str, float]] = field(default_factory=dict)
    at_least: frozenset[tuple[str, str]] = frozenset()

    @classmethod
    def from_samples(cls, samples: Iterable[Sample]) -> CostData:
        """The median of each (target, host)'s builds that ended well, in milliseconds;
        where every build failed, the longest of them, as a lower bound."""
        built: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        failed: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for s in samples:
            if s.seconds > 0 and math.isfinite(s.seconds):
                (failed if s.failed else built)[s.target][s.host].append(s.seconds)
        out = {t: {h: round(statistics.median(v), 3) for h, v in hosts.items()}
               for t, hosts in built.items()}
        bounds: set[tuple[str, str]] = set()
        for t, hosts in failed.items():
            for h, v in hosts.items():
                if h not in out.get(t, {}):
                    out.setdefault(t, {})[h] = round(max(v), 3)
                    bounds.add((t, h))
        return cls(out, frozenset(bounds))

    def samples(self) -> list[Sample]:
        return [Sample(t, h, secs) for t in sorted(self.durations)
                for h, secs in sorted(self.durations[t].items())]

    def merged(self, newer: CostData) -> CostData:
        """This data with every (target, host) that ``newer`` has replaced by it; a
        lower bound of ``newer`` only raises what this data knows."""
        out = {t: dict(hosts) for t, hosts in self.durations.items()}
        bounds = set(self.at_least)
        for t, hosts in newer.durations.items():
            mine = out.setdefault(t, {})
            for h, secs in hosts.items():
                if (t, h) in newer.at_least:
                    if h in mine:
                        mine[h] = max(secs, mine[h])  # never lowers a known cost
                    else:
                        mine[h] = secs
                        bounds.add((t, h))
                else:
                    mine[h] = secs
                    bounds.discard((t, h))
        return CostData(out, frozenset(bounds))

    def to_text(self) -> str:
        doc = {"format": COSTS_FORMAT, "version": COSTS_VERSION, "unit": "seconds",
               "boards": {t: dict(sorted(self.durations[t].items()))
                          for t in sorted(self.durations)}}
        return json.dumps(doc, indent=1) + "\n"


def parse_costs(text: str, where: str) -> CostData:
    """Parse a cost file's text; raises CostFileError naming ``where`` and the fault."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise CostFileError(f"cost file {where} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != COSTS_FORMAT:
        raise CostFileError(f"{where} is not a cost file (no \"format\": \"{COSTS_FORMAT}\")")
    if doc.get("version") != COSTS_VERSION:
        raise CostFileError(f"cost file {where} has version {doc.get('version')!r}; "
                            f"this buildfleet reads version {COSTS_VERSION}")
    boards = doc.get("boards")
    if not isinstance(boards, dict):
        raise CostFileError(f"cost file {where}: \"boards\" must be an object")
    out: dict[str, dict[str, float]] = {}
    for target, hosts in boards.items():
        if not isinstance(hosts, dict):
            raise CostFileError(f"cost file {where}: board {target!r} must map hosts to seconds")
        per: dict[str, float] = {}
        for host, secs in hosts.items():
            if (isinstance(secs, bool) or not isinstance(secs, (int, float))
                    or not math.isfinite(secs) or secs <= 0):
                raise CostFileError(f"cost file {where}: board {target!r} host {host!r}: "
                                    f"{secs!r} is not a positive number of seconds")
            per[str(host)] = float(secs)
        if per:
            out[str(target)] = per
    return CostData(out)


def read_costs(path: Path) -> CostData:
    """Read a cost file; raises CostFileError with one line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise CostFileError(f"cannot read cost file {path}: {reason}") from None
    return parse_costs(text, str(path))


def write_costs(path: Path, data: CostData) -> None:
    """Write a cost file atomically; raises CostFileError with one line."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(data.to_text(), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CostFileError(f"cannot write cost file {path}: {exc.strerror or exc}") from None


# -- the per-user cache ------------------------------------------------------------
def cache_path(tree_id: Path) -> Path:
    """The cache file of the source tree whose git directory (or top) is ``tree_id``."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache")
    resolved = str(tree_id.resolve())
    digest = hashlib.sha256(resolved.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    name = tree_id.resolve().name or "root"
    if name == ".git":
        name = tree_id.resolve().parent.name or "root"
    return Path(root) / "buildfleet" / "costs" / f"{name}-{digest}.json"


def load_cache(tree_id: Path) -> tuple[CostData, str | None]:
    """The cached cost data of a tree, and a warning if the cache was unreadable."""
    path = cache_path(tree_id)
    if not path.exists():
        return CostData(), None
    try:
        return read_costs(path), None
    except CostFileError as exc:
        return CostData(), f"{exc} (ignored; it is rewritten after this run)"


def update_cache(tree_id: Path, measured: CostData) -> str | None:
    """Fold ``measured`` into the tree's cache; a problem is returned as a warning."""
    if not measured.durations:
        return None
    cached, _ = load_cache(tree_id)
    try:
        write_costs(cache_path(tree_id), cached.merged(measured))
    except CostFileError as exc:
        return str(exc)
    return None
