"""The checks and look-ups behind the worker's commands, apart from its loop.

Each turns a command's fields into what the builder needs, or raises
:class:`CommandError` whose text goes back to the boss as an ``error`` reply.
Kept out of ``worker.py`` so that file is only the loop and its threads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from buildfleet.ccache import choose_wrapper
from buildfleet.errors import InfraError
from buildfleet.model import BuildFlags
from buildfleet.settings import Settings, SettingsError, load_settings
from buildfleet.toolchains import (
    ToolchainError,
    Toolchains,
    scan_toolchains,
    test_toolchains,
)

GIT_CHECK_TIMEOUT = 60.0


class CommandError(InfraError):
    """A well-formed command the worker cannot carry out now.

    ``reason`` (sent as the ``error`` reply's ``reason``) tells the boss what
    kind of refusal it is: ``busy`` (every build thread of the machine is in
    use by other workers: try later), ``unusable`` (this machine cannot do
    this run, e.g. the toolchain wrapper is missing), or "" (a fault).
    """

    def __init__(self, msg: str, reason: str = "") -> None:
        super().__init__(msg)
        self.reason = reason


def parse_flags(settings: dict[str, Any]) -> BuildFlags:
    try:
        return BuildFlags.from_dict(settings)
    except (ValueError, TypeError, AttributeError) as exc:
        raise CommandError(f"configure: bad settings: {exc}") from None


def check_wrapper(wrapper: str) -> str:
    """The boss's ``[toolchain-wrapper]`` if its program exists here; CommandError if not."""
    words = wrapper.split()
    if not words:
        return ""
    if shutil.which(os.path.expanduser(words[0])) is None:
        raise CommandError(f"configure: toolchain wrapper {words[0]!r} not found on this "
                           f"machine (PATH={os.environ.get('PATH', '')})", reason="unusable")
    return wrapper


def load_toolchains(hint: dict[str, str], log: Callable[[str], None],
                    wrapper: str | None = None, ccache: bool = True) -> Toolchains:
    """This machine's toolchains, with the boss's ``{arch: gcc}`` hint first.

    A hinted compiler that exists here and answers ``--version`` wins for its
    arch (the boss chose it); every other arch comes from this machine's own
    ``~/.buildman`` and PATH, so a worker builds with what it really has.
    ``wrapper`` (the boss's ``[toolchain-wrapper]``, "" for none) replaces the
    machine's own for every toolchain, so a board builds with the same
    ``CROSS_COMPILE`` here as on the boss; None (an older boss) keeps the
    machine's own. With no wrapper either way and ``ccache`` (the run's
    ``BuildFlags.ccache``), this machine's own ccache is used if it has a
    usable one (masquerading as the compilers, buildfleet.ccache): the
    boss's PATH says nothing about this machine's.
    """
    try:
        settings = load_settings(create=False)
    except SettingsError as exc:
        log(f"W: ignoring settings: {exc}")
        settings = Settings(path=Path.home() / ".buildman")
    errors: list[str] = []
    tcs = scan_toolchains(settings, use_path=True, errors=errors)
    for err in errors:
        log(f"W: toolchain: {err}")
    if hint:
        try:
            hinted = Toolchains.from_map(hint)
        except ToolchainError as exc:
            raise CommandError(f"configure: {exc}") from None
        candidates = [tc for _arch, tc in hinted.items() if tc.gcc.is_file()]
        for tc, (ok, _out) in zip(candidates, test_toolchains(candidates), strict=True):
            if ok:
                tcs.add(tc)
    configured = settings.toolchain_wrapper if wrapper is None else wrapper
    choice = choose_wrapper(configured, ccache)
    if choice.note:
        log(f"W: {choice.note}")
    return tcs.with_wrapper(choice.wrapper, choice.ccache, lambda msg: log(f"W: {msg}"))


def check_commits(git_dir: Path, hashes: Sequence[str | None]) -> list[str]:
    """The commits to build, if all were pushed (one git call for all).

    A null commit (buildman's "current source") is refused: what a worker
    builds is always a pushed commit (PROTOCOL.md §4, "what is pushed is
    what is built").
    """
    if any(h is None for h in hashes):
        raise CommandError("build_prepare: a worker builds pushed commits only, not the "
                           "current source (null); push a commit of the working tree")
    names = [h for h in hashes if h is not None]
    if any(not h.isalnum() for h in names):
        raise CommandError("build_prepare: commit names must be hexadecimal hashes")
    query = "".join(f"{h}^{{commit}}\n" for h in names)
    try:
        proc = subprocess.run(["git", "--git-dir", str(git_dir), "cat-file", "--batch-check"],
                              input=query, capture_output=True, text=True,
                              errors="replace",
                              timeout=GIT_CHECK_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CommandError(f"build_prepare: cannot check commits: {exc}") from None
    missing = [h for h, line in zip(names, proc.stdout.splitlines(), strict=False)
               if line.endswith(" missing")]
    if proc.returncode != 0 or len(proc.stdout.splitlines()) != len(names):
        raise CommandError(f"build_prepare: cannot check commits in {git_dir}: "
                           f"{proc.stderr.strip() or proc.returncode}")
    if missing:
        raise CommandError(f"build_prepare: {len(missing)} commit(s) not in {git_dir} "
                           f"(push first), e.g. {missing[0]}")
    return names


def ensure_head(git_dir: Path, commit: str) -> None:
    """Give a fresh repository a HEAD (detached at ``commit``) so worktrees can be added.

    ``git init`` leaves HEAD on an unborn branch and pushes go to
    ``refs/heads/work``; detaching HEAD (rather than pointing it at ``work``)
    keeps later pushes from trying to update a checkout nobody uses.
    """
    probe = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "-q", "--verify",
                            "HEAD^{commit}"], capture_output=True, text=True,
                           errors="replace", timeout=GIT_CHECK_TIMEOUT)
    if probe.returncode == 0:
        return
    proc = subprocess.run(["git", "--git-dir", str(git_dir), "update-ref", "--no-deref",
                           "HEAD", commit], capture_output=True, text=True,
                          errors="replace", timeout=GIT_CHECK_TIMEOUT)
    if proc.returncode != 0:
        raise CommandError(f"build_prepare: cannot set HEAD in {git_dir}: "
                           f"{proc.stderr.strip()}")
