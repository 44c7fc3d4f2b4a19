"""Slots: where a build runs. One git worktree and one O= directory per slot.

A slot is reused across boards and runs (worktrees are costly to create on a
real U-Boot tree), but a slot's O= directory is wiped when it moves on to a
different board: configuring one board over another's objects is how
buildman ended up linking RISC-V objects into a sandbox build.

Nor is a directory trusted whose last make did not end by itself. A make
killed on purpose (a stop, a cancelled hedge copy, a worker given up, a time
limit) or by anything else leaves what its compilers were writing: GNU as
creates its object before it assembles, so a killed compile leaves an empty
or partial ``.o`` newer than its source, which the next incremental make
links as it is (no compiler message, a "file truncated" link failure). So a
marker is written into the directory before every make and removed only after
make has ended by itself; a directory found with the marker is wiped.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from buildfleet import gitutil

BOARD_MARKER = ".buildfleet-board"
UNFINISHED_MARKER = ".buildfleet-make-unfinished"


@dataclass
class Slot:
    """One build slot: ``source_dir`` is what make runs in, ``out_root`` holds its O= dirs."""

    index: int
    source_dir: Path
    out_root: Path
    checkout: bool
    fixed_out: Path | None = None   # -w: the O= directory whatever the board

    def out_dir(self, target: str, per_board: bool, beside: bool = False) -> Path:
        """The O= directory for ``target``: ``build`` in the slot (in a branch build a
        direct child of the slot's worktree: kbuild names sources ``../x.c``), unless
        -w, -P or ``beside`` (a sibling of the slot: kbuild names them absolutely)."""
        if self.fixed_out is not None:
            return self.fixed_out
        if per_board:
            return self.out_root.parent / target
        if beside:
            return self.out_root.parent / f"{self.out_root.name}-current"
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


def begin_make(build_dir: Path) -> None:
    """Mark ``build_dir`` as being written by a make (before make starts)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / UNFINISHED_MARKER).write_text(f"{os.getpid()}\n")


def distrust(build_dir: Path) -> None:
    """Never build incrementally on what is in ``build_dir`` (it is wiped first).

    Dropping the board marker needs no disk space, so it works on a full disk
    too (a directory without an owner is wiped when claimed)."""
    (build_dir / BOARD_MARKER).unlink(missing_ok=True)
    try:
        begin_make(build_dir)
    except OSError:
        pass


def end_make(build_dir: Path) -> None:
    """Every make since :func:`begin_make` ended by itself: the directory can be trusted."""
    (build_dir / UNFINISHED_MARKER).unlink(missing_ok=True)


def unfinished(build_dir: Path) -> bool:
    """Did a make in ``build_dir`` end without finishing (killed, or still running)?"""
    return (build_dir / UNFINISHED_MARKER).exists()


def claim_out_dir(out_dir: Path, target: str) -> None:
    """Make ``out_dir`` belong to ``target``, wiping another board's objects
    and anything a make that did not finish left behind."""
    marker = out_dir / BOARD_MARKER
    if out_dir.is_dir():
        try:
            owner = marker.read_text().strip()
        except OSError:
            owner = ""
        if owner != target or unfinished(out_dir):
            _wipe(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(target + "\n")


def wipe_out_dir(out_dir: Path, target: str) -> None:
    """Start a board from nothing (``-f`` / ``force_build``)."""
    _wipe(out_dir)
    claim_out_dir(out_dir, target)


def _wipe(out_dir: Path) -> None:
    """Remove ``out_dir``; an error is raised (OSError), never ignored: a directory
    that could not be emptied must not be built in as if it had been."""
    try:
        shutil.rmtree(out_dir)
    except FileNotFoundError:
        pass
