"""Slots: where a build runs. One git worktree and one O= directory per slot.

A slot is reused across boards and runs (worktrees are costly to create on a
real U-Boot tree), but a slot's O= directory is wiped when it moves on to a
different board: configuring one board over another's objects is how
buildman ended up linking RISC-V objects into a sandbox build.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from buildfleet import gitutil

BOARD_MARKER = ".buildfleet-board"


@dataclass
class Slot:
    """One build slot: ``source_dir`` is what make runs in, ``out_root`` holds its O= dirs."""

    index: int
    source_dir: Path
    out_root: Path
    checkout: bool
    fixed_out: Path | None = None   # -w: the O= directory whatever the board

    def out_dir(self, target: str, per_board: bool) -> Path:
        if self.fixed_out is not None:
            return self.fixed_out
        if per_board:
            return self.out_root.parent / target
        return self.out_root / "build"


def slot_dir_name(index: int) -> str:
    return f"{index:02d}"


def prepare_slots(git_dir: Path | None, source_dir: Path, work_root: Path,
                  count: int) -> list[Slot]:
    """Create (or reuse) ``count`` slots under ``work_root``.

    ``git_dir`` None means a current-source build: every slot builds the
    user's tree in place (with its own O=), nothing is checked out.
    """
    work_root.mkdir(parents=True, exist_ok=True)
    slots = []
    if git_dir is not None:
        gitutil.remove_stale_locks(git_dir)
        gitutil.git(["--git-dir", str(git_dir), "worktree", "prune"], check=False)
    for i in range(count):
        root = work_root / slot_dir_name(i)
        root.mkdir(parents=True, exist_ok=True)
        if git_dir is None:
            slots.append(Slot(i, source_dir, root, checkout=False))
        else:
            gitutil.add_worktree(git_dir, root)
            slots.append(Slot(i, root, root, checkout=True))
    return slots


def claim_out_dir(out_dir: Path, target: str) -> None:
    """Make ``out_dir`` belong to ``target``, wiping another board's objects."""
    marker = out_dir / BOARD_MARKER
    if out_dir.is_dir():
        try:
            owner = marker.read_text().strip()
        except OSError:
            owner = ""
        if owner != target:
            shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(target + "\n")


def wipe_out_dir(out_dir: Path, target: str) -> None:
    """Start a board from nothing (``-f`` / ``force_build``)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    claim_out_dir(out_dir, target)
