"""Kept build directories: each board's O= survives the run, so the next starts incremental.

A re-check after a rebase builds the new upstream commit first: from a clean
directory that is a full build of every board, though the rebase changed a
few files. So a branch build gives each board its own directory, kept
beside the slot worktrees as ``.bm-work/<target>``; the next run takes the
board up from the commit the directory was last built at, as if that commit
had been the previous one of the same run (configure only if a
configuration input changed, warnings kept by ``warned.forget_objects``).

- While the board's job runs, its directory is renamed into the slot
  worktree as ``build`` (:func:`move_in`, :func:`move_out`): ``O=build`` is
  exactly a clean build's O=. kbuild spells source paths relative
  (``../common/x.c``) only when O= is a direct child of the source tree;
  from a sibling (``O=../<target>``) it compiles with absolute paths, so
  ``err`` named ``/…/.bm-work/00/common/x.c`` (unlike a clean build, and
  per slot) and ``.debug_str`` and the ``*.objdump`` files differed from a
  clean build's. Both places are on one file system, so the rename is
  atomic: a run killed at any point leaves the directory whole in one place
  or the other. A ``build`` found in a worktree when a job starts was left
  by a run killed mid-job (half-built, or another board's): it is wiped.
  With ``-P`` a clean build's O= is ``.bm-work/<target>`` itself: no move.
- A state file in O= (``KEEP_STATE``: JSON ``commit``, ``fingerprint``,
  ``ok``, ``bytes``) is written after every make that ended by itself; only
  an ``ok`` one (return code 0) is built on without a configure, and a stopped
  or killed make removes it (its unfinished marker gets the directory wiped).
- The fingerprint is what must be equal for objects to be reused: the build
  flags that reach make, the toolchain, the slot's worktree and the O= path
  (kbuild records the source tree's and O='s absolute paths in each
  object's debug info, so objects made in another worktree would be mixed
  into the image's debug strings). A directory with another is wiped, so
  the local slots prefer boards whose worktree is free (:class:`Worktrees`).
- A directory is used under an exclusive ``flock`` of ``.<target>.lock`` beside
  it, held for the board's whole job (moves included): two runs sharing an
  output tree never build in one directory at once (the second builds in its
  slot's own O=, from clean), and eviction takes the same lock.
- The disk budget (``[global] keep_build_dirs_mb``, on by default) is kept by
  evicting the least recently built directories (by their state file's time)
  after each board; sizes come from the state files, so no tree walk per
  eviction. A directory moved into a worktree for a running job is not
  counted until it is back.
- The unfinished-make marker still wins: such a directory is wiped.

Stdlib and ``buildfleet`` only: workers run this on a bare ``python3``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from buildfleet import gitutil
from buildfleet.build.workspace import BOARD_MARKER, Slot, unfinished, wipe_out_dir
from buildfleet.model import DEFAULT_KEEP_MB as DEFAULT_KEEP_MB  # the settings' default

KEEP_STATE = ".buildfleet-kept"
_IRRELEVANT = frozenset({"build_timeout", "force_build", "jobserver", "skip_unchanged",
                         "keep_build_dirs_mb", "per_board_out_dir", "ccache"})


@dataclass
class KeptDir:
    """A board's kept O= directory, locked by this process until :meth:`release`."""

    path: Path
    fd: int
    # Where the directory is while the board's job runs (a clean build's O=), once
    # that place is cleared for it: :func:`move_out` puts it back from there.
    inside: Path | None = None

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1


def fingerprint(flags: dict[str, object], toolchain: str, target: str) -> str:
    """What ``target``'s objects in a kept directory were built with: flags
    reaching its make, toolchain. Of ``make_flags`` (``[make-flags]``, per
    board) only the board's own count: another board entering or leaving the
    run's selection must not wipe this one's directory."""
    relevant = {k: v for k, v in sorted(flags.items()) if k not in _IRRELEVANT}
    per_board = relevant.get("make_flags")
    if isinstance(per_board, dict):
        relevant["make_flags"] = per_board.get(target, [])
    text = json.dumps([relevant, toolchain], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _lock_path(root: Path, target: str) -> Path:
    return root / f".{target}.lock"


def acquire(root: Path, target: str) -> KeptDir | None:
    """Lock ``root/target`` for this job; None if another run holds it (or it cannot be locked)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(_lock_path(root, target), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o666)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return KeptDir(root / target, fd)


def move_in(kept: KeptDir | None, out_dir: Path) -> None:
    """Make ``out_dir`` (a clean build's O= in the job's worktree) the job's build
    directory, holding the board's kept directory if there is one.

    Whatever is at ``out_dir`` already was left by a run killed mid-job (or built
    there without a kept directory): it is wiped, never trusted. A wipe that fails
    raises OSError (a directory that could not be emptied must not be built in).
    A kept directory that cannot be renamed (another file system) is removed: it
    could never be used, and the job builds from clean.
    """
    if kept is not None and out_dir == kept.path:
        return  # -P: a clean build's O= is the kept directory itself
    try:
        shutil.rmtree(out_dir)
    except FileNotFoundError:
        pass
    if kept is None:
        return
    try:
        os.rename(kept.path, out_dir)
    except FileNotFoundError:
        pass  # nothing kept yet: built from clean, kept from now on
    except OSError:
        shutil.rmtree(kept.path, ignore_errors=True)
    kept.inside = out_dir


def move_out(kept: KeptDir | None) -> None:
    """Put the job's build directory back as the board's kept directory, however the
    job ended: a stopped or killed make left its unfinished marker in it, so the
    next job wipes it. Never raises; what cannot be put back is removed, so no
    worktree keeps a ``build`` of this board."""
    if kept is None or kept.inside is None:
        return
    inside, kept.inside = kept.inside, None
    try:
        os.rename(inside, kept.path)
    except FileNotFoundError:
        pass  # the job never made it (e.g. it failed before its first make)
    except OSError:
        shutil.rmtree(inside, ignore_errors=True)


def worktree_of(out_dir: Path) -> Path | None:
    """The worktree a kept directory was last built from, if recorded."""
    state = read_state(out_dir)
    tree = state.get("worktree") if state else None
    return Path(tree) if isinstance(tree, str) else None


class Worktrees:
    """Which slot worktree each running job builds in, shared by a machine's slots.

    A kept directory is only worth building on from the worktree that made
    it, so a job may take another slot's worktree when it is free. Every slot
    brings its own worktree and each job holds at most one (busy, or claimed
    for it when the pool gave it the job), so a free one is always found: the
    known trees (one per slot that took or claimed one) outnumber the jobs
    holding one by at least the asker's.

    The local slots also choose their boards by it (:meth:`prefers`): with S
    slots, a board taken when one worktree has just freed would otherwise find
    its own busy about (S-1)/S of the time, and its directory be wiped.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[Path, Slot] = {}
        self._busy: set[Path] = set()
        self._claimed: dict[Path, str] = {}  # worktree -> the target whose job will take it

    def take(self, slot: Slot, want: Path | None, target: str = "") -> Slot:
        """The slot to build in: ``slot`` with the worktree ``want`` if free (or claimed
        for ``target``), else its own if free, else any free one (``source_dir`` and
        ``out_root`` swapped)."""
        with self._lock:
            for tree in [t for t, who in self._claimed.items() if who == target]:
                del self._claimed[tree]
            held = self._busy | set(self._claimed)
            self._known.setdefault(slot.source_dir, slot)
            if (want is not None and want not in self._known
                    and want.parent == slot.source_dir.parent and (want / ".git").is_file()):
                # A sibling slot worktree whose slot has not started yet (or of an
                # earlier run with more slots): a branch slot's out_root is its worktree.
                self._known[want] = replace(slot, source_dir=want, out_root=want)
            free = [t for t in self._known if t not in held]
            for choice in (want, slot.source_dir, *free):
                if choice is not None and choice in self._known and choice not in held:
                    self._busy.add(choice)
                    other = self._known[choice]
                    return replace(slot, source_dir=other.source_dir, out_root=other.out_root)
        raise RuntimeError("no free worktree")  # unreachable: see the class docstring

    def give_back(self, slot: Slot) -> None:
        with self._lock:
            self._busy.discard(slot.source_dir)

    def prefers(self, root: Path) -> Callable[[str], bool]:
        """For the pool: is ``root/<target>``'s worktree free now? False for a board
        with nothing kept (neutral: any worktree serves it alike)."""
        def free(target: str) -> bool:
            tree = worktree_of(root / target)
            with self._lock:
                return tree is not None and tree not in self._busy and tree not in self._claimed
        return free

    def claim(self, slot: Slot, root: Path, target: str) -> None:
        """The pool gave ``target``'s job to ``slot``: hold its kept worktree, if free,
        until the job takes it (:meth:`take`) or ends (:meth:`unclaim`). The slot's
        own worktree becomes known, which keeps the count of the class docstring."""
        tree = worktree_of(root / target)
        with self._lock:
            self._known.setdefault(slot.source_dir, slot)
            if tree is not None and tree not in self._busy and tree not in self._claimed:
                self._claimed[tree] = target

    def unclaim(self, target: str) -> None:
        with self._lock:
            for tree in [t for t, who in self._claimed.items() if who == target]:
                del self._claimed[tree]


def read_state(out_dir: Path) -> dict[str, object] | None:
    """The kept directory's state, or None (absent, unreadable, or not ours)."""
    try:
        data = json.loads((out_dir / KEEP_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _size(path: Path) -> int:
    total = 0
    for top, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_blocks * 512
            except OSError:
                pass
    return total


def write_state(out_dir: Path, commit: str, print_: str, ok: bool, worktree: Path) -> None:
    """Record that ``out_dir`` holds a build of ``commit`` made with ``print_``
    in ``worktree`` (``ok``: make ended by itself with return code 0)."""
    state = {"commit": commit, "fingerprint": print_, "ok": ok, "bytes": _size(out_dir),
             "worktree": str(worktree)}
    tmp = out_dir / f"{KEEP_STATE}.tmp"
    tmp.write_text(json.dumps(state), encoding="utf-8")
    os.replace(tmp, out_dir / KEEP_STATE)


def clear_state(out_dir: Path) -> None:
    (out_dir / KEEP_STATE).unlink(missing_ok=True)


def resume(out_dir: Path, target: str, print_: str, source_dir: Path) -> str | None:
    """The commit a kept ``out_dir`` holds a good build of, if it may be built on.

    None for a directory a make did not finish, another board's, one without
    state or whose last build failed, or whose commit the repository lacks
    (the caller then configures, as for a first commit); a directory built
    with another fingerprint is wiped as well.
    """
    if unfinished(out_dir):
        return None
    try:
        owner = (out_dir / BOARD_MARKER).read_text().strip()
    except OSError:
        return None
    state = read_state(out_dir)
    if owner != target or state is None:
        return None
    if state.get("fingerprint") != print_:
        wipe_out_dir(out_dir, target)
        return None
    commit = state.get("commit")
    if not state.get("ok") or not isinstance(commit, str):
        return None
    try:
        gitutil.git(["rev-parse", "-q", "--verify", f"{commit}^{{commit}}"], cwd=source_dir)
    except gitutil.GitError:
        return None
    return commit


def needs_config(changed: list[str], defconfig: Path, fragments: tuple[str, ...]) -> bool:
    """Must a board be configured again on its kept directory, given the files
    changed since that directory's commit?

    Narrower than the rule after a failed build (any defconfig there): a
    rebase brings in every other board's defconfig changes, which cannot touch
    this board's ``.config`` unless its own defconfig ``#include``s one. Yes
    for Kconfig files, ``scripts/kconfig/``, the top Makefile, any ``.config``
    fragment, its own defconfig (``defconfig``, at the new commit), and any
    other defconfig when its own includes others (or cannot be read).
    """
    own = defconfig.name
    try:
        includes = "#include" in defconfig.read_text(encoding="utf-8", errors="replace")
    except OSError:
        includes = True
    names = set(fragments)
    for name in changed:
        base = name.rsplit("/", 1)[-1]
        if (base.startswith("Kconfig") or name.startswith("scripts/kconfig/")
                or name == "Makefile" or base.endswith(".config") or base in names
                or base == own):
            return True
        if includes and (base.endswith("_defconfig") or name.startswith("configs/")):
            return True
    return False


def evict(root: Path, budget_mb: int, keep: Path | None = None) -> list[str]:
    """Remove the least recently built kept directories under ``root`` until the
    rest fit in ``budget_mb``; ``keep`` (the caller's, still locked) is never
    removed, nor a directory another run holds. Returns the targets removed."""
    dirs: list[tuple[float, int, str]] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    for entry in entries:
        state_path = os.path.join(entry.path, KEEP_STATE)
        try:
            st = os.stat(state_path)
            size = int(json.loads(Path(state_path).read_text(encoding="utf-8"))["bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        dirs.append((st.st_mtime, size, entry.name))
    total = sum(size for _, size, _ in dirs)
    removed = []
    for _, size, name in sorted(dirs):
        if total <= budget_mb * 1024 * 1024:
            break
        if keep is not None and root / name == keep:
            continue
        held = acquire(root, name)
        if held is None:
            continue  # in use by another run
        try:
            shutil.rmtree(root / name, ignore_errors=True)
        finally:
            held.release()
        total -= size
        removed.append(name)
    return removed
