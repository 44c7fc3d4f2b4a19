"""The output tree's history: how long each board took, and where.

Why here: ``results/`` is the one reader of the output tree (the writer's
format lives beside it). The cost model (``fleet.dispatch.costs``) learns
from these samples; it never walks the tree itself.

Every result records its ``duration`` (seconds, decimal) and, when built
remotely, the ``host`` that built it. Not every duration is a build's cost:
a result copied by the skip (``copied-from``) took no build at all and is
left out, and a failed build (``done`` not 0) stopped where it failed, so it
is marked: its time is only a lower bound of what the board costs once it
builds (a board that failed at once because a host tool was missing must
not be scheduled last when the tool is back). Read with one ``os.scandir`` per
directory and one open per file, no stat storms: a world tree is 1,500
boards × N commits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from buildfleet.model import COPIED_FROM, LOCAL
from buildfleet.results.paths import is_commit_dir


@dataclass(frozen=True)
class Sample:
    """One recorded build: a board at one commit took ``seconds`` on ``host``."""

    target: str
    host: str
    seconds: float
    failed: bool = False  # make failed: ``seconds`` is a lower bound of the board's cost


def _read_small(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(256)
    except OSError:
        return None


def _scan_targets(commit_path: str, out: list[Sample]) -> None:
    """Collect the samples of every board directory directly under ``commit_path``."""
    try:
        entries = list(os.scandir(commit_path))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        text = _read_small(os.path.join(entry.path, "duration"))
        if text is None:
            continue
        try:
            seconds = float(text.strip())
        except ValueError:
            continue
        if os.path.exists(os.path.join(entry.path, COPIED_FROM)):
            continue  # the skip copied it: no build took this long
        host_text = _read_small(os.path.join(entry.path, "host"))
        host = host_text.strip() if host_text else LOCAL
        done = (_read_small(os.path.join(entry.path, "done")) or "").split()
        out.append(Sample(entry.name, host, seconds, failed=bool(done) and done[0] != "0"))


def scan_history(output_root: Path) -> list[Sample]:
    """Every (target, host, duration) recorded under ``output_root``.

    Understands ``<root>/<branch>/<NN>_g<hash>_<subj>/<target>/``,
    ``<root>/current/<target>/`` and the ``-N`` layout
    ``<root>/<NN>_g.../<target>/``. Directories without a ``duration`` file
    (buildman's own results) are skipped.
    """
    samples: list[Sample] = []
    try:
        top = list(os.scandir(output_root))
    except OSError:
        return samples
    for entry in top:
        if entry.name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        if is_commit_dir(entry.name):
            _scan_targets(entry.path, samples)
            continue
        try:
            children = list(os.scandir(entry.path))
        except OSError:
            continue
        has_commit_dirs = False
        for child in children:
            if child.is_dir(follow_symlinks=False) and is_commit_dir(child.name):
                has_commit_dirs = True
                _scan_targets(child.path, samples)
        if not has_commit_dirs:
            # A current-source base (<root>/current/<target>/) holds boards directly.
            _scan_targets(entry.path, samples)
    return samples


def scan_base(base: Path) -> list[Sample]:
    """Every (target, host, duration) of one run's base (``<root>/<branch>`` or ``current``)."""
    samples: list[Sample] = []
    _scan_targets(str(base), samples)  # current source: boards directly under the base
    try:
        entries = list(os.scandir(base))
    except OSError:
        return samples
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and is_commit_dir(entry.name):
            _scan_targets(entry.path, samples)
    return samples
