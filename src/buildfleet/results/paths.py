"""Where results live in the output tree, by buildman's naming rules.

Both the writer and the summary reader use these, and both must agree with
buildman byte for byte: a buildman tree must read here and vice versa.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from buildfleet.model import Commit

Bases = Path | Sequence[Path]
"""One output tree's base, or several read as one run (CI shards side by side)."""

_COMMIT_DIR_RE = re.compile(r"^(\d+)_g([0-9a-f]+)_")
SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+,=@-]*$")


def branch_dir_name(branch: str) -> str:
    """``/`` in a branch name becomes ``_`` in its output directory."""
    return branch.replace("/", "_")


def base_dir(output_dir: Path, branch: str | None, no_subdirs: bool = False) -> Path:
    """The directory that holds one run's commits (buildman's ``base_dir``)."""
    if no_subdirs:
        return output_dir
    if branch is None:
        return output_dir / "current"
    return output_dir / branch_dir_name(branch)


def subject_slug(subject: str) -> str:
    """A commit subject as buildman puts it in a directory name."""
    slug = subject
    for ch in "/: ":
        slug = slug.replace(ch, "-")
    return slug[:20]


def commit_dir_name(commit: Commit) -> str:
    if commit.hash is None:
        return "current"
    return f"{commit.sequence + 1:02d}_g{commit.hash}_{subject_slug(commit.subject)}"


def commit_dir(base: Path, commit: Commit) -> Path:
    """Current source results go straight under ``base`` (which is ``current``)."""
    if commit.hash is None:
        return base
    return base / commit_dir_name(commit)


def build_dir(base: Path, commit: Commit, target: str) -> Path:
    """The per-board result directory; refuses names that would leave the tree."""
    if not is_safe_name(target):
        raise ValueError(f"unsafe board name {target!r}")
    return commit_dir(base, commit) / target


def base_list(bases: Bases) -> list[Path]:
    return [bases] if isinstance(bases, Path) else list(bases)


def locate(bases: Bases, commit: Commit, target: str) -> Path:
    """The result directory of ``target`` at ``commit`` among several output trees.

    The first tree that holds it wins (shards are disjoint, so normally only
    one does); if none does, the first tree's path (where it would be).
    """
    trees = base_list(bases)
    for base in trees if len(trees) > 1 else []:
        path = build_dir(base, commit, target)
        if path.is_dir():
            return path
    return build_dir(trees[0], commit, target)


def is_safe_name(name: str) -> bool:
    """True if ``name`` is one plain path component (no ``..``, ``/``, NUL)."""
    return bool(SAFE_NAME_RE.match(name)) and name not in (".", "..")


def is_commit_dir(name: str) -> bool:
    return bool(_COMMIT_DIR_RE.match(name))


def work_dir(base: Path) -> Path:
    """Slots' worktrees and O= directories live under ``.bm-work``."""
    return base / ".bm-work"
