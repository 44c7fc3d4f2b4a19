"""The one builder: ONE board through a list of commits, in one slot.

Local slots and remote workers run this same code; only the sink differs
(the output-tree writer here, the protocol on a worker). It never writes into
the output tree and never decides what needs building: the job it gets holds
exactly the commits to build, so its first commit is always configured.
"""

from __future__ import annotations

import os
import shlex
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from buildfleet import gitutil
from buildfleet.build import adjust, capture, keep, skip
from buildfleet.build.jobserver import Jobserver
from buildfleet.build.makecmd import STALE_ELFS, build_targets, common_args
from buildfleet.build.makerun import BuildInterrupted, run_make
from buildfleet.build.warned import forget_objects
from buildfleet.build.workspace import (
    Slot,
    begin_make,
    claim_out_dir,
    distrust,
    end_make,
    prepare_slots,
    unfinished,
    wipe_out_dir,
)
from buildfleet.model import (
    Board,
    BuildFlags,
    BuildJob,
    BuildResult,
    Commit,
    toolchain_error_result,
)
from buildfleet.toolchains import Toolchain, ToolchainError, Toolchains

__all__ = ["Builder", "BuildInterrupted", "Slot", "prepare_slots"]

# The return code recorded for a make that buildfleet stopped (time limit, Kconfig
# loop): a failure, like make's own 2, never -1 (which means "interrupted, retry").
STOPPED_RC = 2
Sink = Callable[[BuildResult], object]


@dataclass
class MakeOutcome:
    return_code: int = 0
    stdout: str = ""
    stderr: str = ""
    commands: list[str] = field(default_factory=list)
    stopped: str = ""  # why buildfleet ended a make of this build, if it did
    killed: int = 0  # the signal that ended a make buildfleet did not stop
    configured: bool = False  # this attempt configured (defconfig) first
    build_failed: bool = False  # the configure (if any) worked and the build's make failed


def env_file(env: dict[str, str]) -> bytes:
    return "".join(f'{k}="{v}"' for k, v in sorted(env.items())).encode()


def config_changed(changed: list[str], board: Board, fragments: tuple[str, ...] = ()) -> bool:
    """Did Kconfig, or a file this board's configuration reads, change between two commits?

    That is its defconfig and any file named like one of its config fragments
    (``--fragments`` items and its ``-X`` fragments): make finds those by name.
    """
    names = set(fragments) | {f"{frag}.config" for frag in board.fragments}
    own = f"configs/{board.defconfig}_defconfig"
    for name in changed:
        base = name.rsplit("/", 1)[-1]
        if base.startswith("Kconfig") or name == own or base in names:
            return True
    return False


def find_dtc(env: dict[str, str]) -> str | None:
    """``--dtc-skip``: the ``dtc`` on the build's PATH, or None."""
    return shutil.which("dtc", path=env.get("PATH"))


def config_inputs_changed(changed: list[str]) -> bool:
    """Could any board's ``.config`` differ between two commits (a cautious answer)?

    Anything a configure reads: Kconfig files, every defconfig and fragment
    (``configs/``, ``*_defconfig``, ``*.config``, so ``#include``d ones too),
    the configurator (``scripts/kconfig/``) and the top Makefile.
    """
    for name in changed:
        base = name.rsplit("/", 1)[-1]
        if (base.startswith("Kconfig") or base.endswith(("_defconfig", ".config"))
                or name.startswith(("configs/", "scripts/kconfig/")) or name == "Makefile"):
            return True
    return False


class Builder:
    """Builds boards; one instance is shared by all slots of a machine.

    With a ``jobserver`` (the machine's), every make draws its jobs from it and
    gets no ``-j``; without, make gets ``-j`` from the slot runner's share.
    """

    def __init__(self, flags: BuildFlags, toolchains: Toolchains, host: str = "",
                 kconfig_check: bool = True, jobserver: Jobserver | None = None) -> None:
        self.flags = flags
        self.jobserver = jobserver
        # Checked when the run starts (cli, worker configure): valid here.
        self.adjustments = adjust.parse_adjust_args(flags.adjust_cfg)
        self.toolchains = toolchains
        self.host = host
        self.kconfig_check = kconfig_check
        # Files changed between two commits: the same for every board, so asked
        # of git once per commit pair (keyed by hashes, never by position).
        self._changed: dict[tuple[str, str], list[str]] = {}
        self._changed_lock = threading.Lock()
        self.trees = keep.Worktrees()  # the slots' worktrees, shared (build.keep)

    def changed_files(self, worktree: Path, old: str, new: str) -> list[str]:
        with self._changed_lock:
            cached = self._changed.get((old, new))
        if cached is None:
            cached = gitutil.changed_files(worktree, old, new)
            with self._changed_lock:
                self._changed[(old, new)] = cached
        return cached

    def kept_root(self, slot: Slot) -> Path | None:
        """Where ``slot``'s boards keep their directories (build.keep), if they do."""
        if (self.flags.in_tree or slot.fixed_out is not None or not slot.checkout
                or self.flags.keep_build_dirs_mb <= 0):
            return None
        return slot.out_root.parent

    def build(self, job: BuildJob, slot: Slot, make_jobs: Callable[[], int], sink: Sink,
              stop: threading.Event) -> None:
        """Build ``job``'s commits in order, handing each result to ``sink``."""
        board = job.board
        try:
            tc = self.toolchains.select(board.arch)
        except ToolchainError:
            for commit in job.commits:
                sink(toolchain_error_result(board.target, board.arch, commit.sequence,
                                            self.host))
            return
        env = tc.make_env(os.environ, full_path=self.flags.full_path,
                          override_cc=self.flags.override_toolchain)
        if self.flags.dtc_skip:
            dtc = find_dtc(env)
            if dtc is None:
                for commit in job.commits:
                    sink(BuildResult(board.target, commit.sequence, 1,
                                     stderr="error: --dtc-skip: Cannot find dtc\n",
                                     host=self.host))
                return
            env["DTC"] = dtc
        # A snapshot of the boss's working tree: O= beside the worktree (BuildFlags).
        snapshot = self.flags.current_source and slot.checkout
        out_dir = None if self.flags.in_tree else slot.out_dir(
            board.target, self.flags.per_board_out_dir, beside=snapshot)
        fixed = out_dir is not None and slot.fixed_out is not None
        if fixed and out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)  # -w: the user's directory, never wiped
        # Kept directories (build.keep): the board's own, in the worktree that made it,
        # moved to a clean build's O= for the job so kbuild spells paths alike.
        # Not for a snapshot: it stands in for a current-source build, which keeps none.
        pooled = (out_dir is not None and not fixed and slot.checkout and not snapshot
                  and self.flags.keep_build_dirs_mb > 0)
        kept = keep.acquire(slot.out_root.parent, board.target) if pooled else None
        if pooled:
            slot = self.trees.take(slot, keep.worktree_of(kept.path) if kept else None,
                                    board.target)
            # Held by another run sharing this output tree: the slot's O=, from clean.
            out_dir = (slot.out_dir(board.target, self.flags.per_board_out_dir)
                       if kept is not None else slot.out_root / "build")
        # The worktree and O= too: kbuild records their absolute paths (build.keep).
        print_ = keep.fingerprint(self.flags.to_dict(), tc.toolchain_file(0)
                                  + env.get("CROSS_COMPILE", "") + str(slot.source_dir)
                                  + f"\0{out_dir}", board.target)
        try:
            if pooled and out_dir is not None:
                keep.move_in(kept, out_dir)
            self._build_job(job, slot, make_jobs, sink, stop, tc, env, out_dir, fixed, kept,
                            print_)
        finally:
            if pooled:
                keep.move_out(kept)  # before the worktree is free: a job there wipes build/
                self.trees.give_back(slot)
            if kept is not None:
                keep.evict(kept.path.parent, self.flags.keep_build_dirs_mb, keep=kept.path)
                kept.release()

    def _build_job(self, job: BuildJob, slot: Slot, make_jobs: Callable[[], int], sink: Sink,
                   stop: threading.Event, tc: Toolchain, env: dict[str, str],
                   out_dir: Path | None, fixed: bool, kept: keep.KeptDir | None,
                   print_: str) -> None:
        board = job.board
        need_config = True
        keep_config = False
        previous: str | None = None
        # The result built at ``previous``, while a later commit may copy it (point
        # of build.skip), and what the dependency files of that build name.
        last: BuildResult | None = None
        deps: list[frozenset[str] | None] = []
        may_skip = out_dir is not None and not fixed and self._may_skip(slot)
        for index, commit in enumerate(job.commits):
            if stop.is_set():
                raise BuildInterrupted()
            start = time.monotonic()
            if may_skip and out_dir is not None and last is not None and previous:
                copy = self._unchanged(board.target, slot, out_dir, previous, commit, last,
                                       deps, make_jobs, start)
                if copy is not None:
                    sink(copy)
                    continue
            # Never trusted: another board's directory, or one a make did not finish.
            mrproper = self.flags.mrproper
            if keep_config and unfinished(out_dir or slot.source_dir):
                keep_config = False
            if index == 0 and kept is not None and out_dir is not None:
                # As if the kept directory's commit had been built just before this one.
                resume = (None if self.flags.force_build else
                          keep.resume(out_dir, board.target, print_, slot.source_dir))
                if resume is not None and commit.hash is not None:
                    previous = resume
                    need_config = keep.needs_config(
                        self.changed_files(slot.source_dir, resume, commit.hash),
                        slot.source_dir / "configs" / f"{board.defconfig}_defconfig",
                        (*self.flags.fragments, *(f"{f}.config" for f in board.fragments)))
            if out_dir is not None and not fixed:
                if index == 0 and self.flags.force_build:
                    wipe_out_dir(out_dir, board.target)
                elif index == 0 or unfinished(out_dir):
                    need_config = need_config or unfinished(out_dir)
                    claim_out_dir(out_dir, board.target)
            elif unfinished(out_dir or slot.source_dir):
                # In-tree or -w: not ours to wipe; make mrproper clears what was left.
                mrproper = need_config = True
            if slot.checkout and commit.hash is not None:
                gitutil.checkout(slot.source_dir, commit.hash)
            configure = need_config or self.flags.force_reconfig
            if (configure and keep_config and not self.flags.force_reconfig and previous
                    and commit.hash and not config_inputs_changed(
                        self.changed_files(slot.source_dir, previous, commit.hash))):
                configure = False
            if (not configure and self.kconfig_check and previous and commit.hash
                    and config_changed(self.changed_files(slot.source_dir, previous,
                                                          commit.hash), board,
                                       self.flags.fragments)):
                configure = True
            deadline = (start + self.flags.build_timeout if self.flags.build_timeout > 0
                        else None)
            outcome = self._build_commit(board, slot, out_dir, env, make_jobs(),
                                         configure, mrproper, stop, deadline)
            if (outcome.return_code != 0 and not outcome.stopped and not outcome.killed
                    and not configure and not self.flags.quick and not self.flags.mrproper):
                # What warned in the failed attempt compiled then: its diagnostics
                # would be lost with that attempt, unless the retry compiles it again.
                forget_objects(out_dir, slot.source_dir, outcome.stderr)
                mrproper = self.flags.fallback_mrproper
                outcome = self._build_commit(board, slot, out_dir, env, make_jobs(),
                                             True, mrproper, stop, deadline)
            need_config = outcome.return_code != 0
            # A build that failed right after a good configure leaves a .config
            # fresh from this commit: configuring again at the next commit
            # (buildman's rule after any failure) would write the same .config
            # with new timestamps, and kbuild then recompiles nearly everything
            # (U-Boot's syncconfig touches include/config/*.h). So the next
            # commit keeps it unless an input of the configuration changed.
            keep_config = need_config and outcome.configured and outcome.build_failed
            if outcome.stderr:
                forget_objects(out_dir, slot.source_dir, outcome.stderr)
            previous = commit.hash
            if kept is not None and out_dir is not None:
                if outcome.stopped or outcome.killed or commit.hash is None:
                    keep.clear_state(out_dir)
                else:
                    keep.write_state(out_dir, commit.hash, print_, outcome.return_code == 0,
                                     slot.source_dir)
            result = self._result(board.target, commit, tc, env, out_dir or slot.source_dir,
                                  outcome, time.monotonic() - start, slot)
            deps.clear()
            last = (result if result.return_code == 0 and not outcome.stopped
                    and not outcome.killed else None)
            try:
                sink(result)
            except BaseException:
                # Refused (the machine's failure, e.g. a full disk, which may have cut
                # objects short): nothing built here is trusted by the next build.
                distrust(out_dir or slot.source_dir)
                raise

    def _may_skip(self, slot: Slot) -> bool:
        """May a commit be skipped at all (build.skip)? Not with ``--no-skip``, ``-C``,
        ``-m`` (every commit configured or cleaned), ``-V`` (the log lists make's
        commands) or without a checkout per commit."""
        flags = self.flags
        return (flags.skip_unchanged and slot.checkout and not flags.in_tree
                and not flags.force_reconfig and not flags.mrproper
                and not flags.verbose_build)

    def _unchanged(self, target: str, slot: Slot, out_dir: Path, previous: str,
                   commit: Commit, last: BuildResult, deps: list[frozenset[str] | None],
                   make_jobs: Callable[[], int], start: float) -> BuildResult | None:
        """``last`` copied for ``commit`` if the commit cannot change it, else None;
        ``deps`` caches what the dependency files of ``out_dir`` name (emptied after a build)."""
        if commit.hash is None or unfinished(out_dir):
            return None

        def known() -> frozenset[str] | None:
            if not deps:
                deps.append(skip.read_deps(out_dir, slot.source_dir))
            return deps[0]

        changed = gitutil.changed_status(slot.source_dir, previous, commit.hash)
        if skip.why_build(changed, out_dir, known) is not None:
            return None
        js = self.jobserver
        args = common_args(self.flags, out_dir, js.size if js else make_jobs(), target,
                           slot.source_dir, jobserver=js is not None)
        out_cmd = shlex.join(["make", *args, *build_targets(self.flags)]) + "\n"
        return skip.copied_result(last, commit.sequence, previous, out_cmd.encode(),
                                  time.monotonic() - start)

    def _adjustments(self, board: Board, slot: Slot) -> tuple[list[adjust.Adjustment], list[str]]:
        """What ``.config`` must show: the lines of the board's ``-X`` fragments
        (``configs/<name>.config`` at this commit), then ``-a``: (adjustments, errors)."""
        found: list[adjust.Adjustment] = []
        errors: list[str] = []
        for frag in board.fragments:
            rel = f"configs/{frag}.config"
            try:
                text = (slot.source_dir / rel).read_text(encoding="utf-8", errors="replace")
                found += adjust.parse_fragment(text, rel)
            except OSError as exc:
                errors.append(f"error: {rel}: cannot read the fragment of {board.target}: "
                              f"{exc.strerror or exc}")
            except adjust.AdjustError as exc:
                errors.append(f"error: {exc}")
        names = {a.name for a in self.adjustments}
        found = [a for a in found if a.name not in names] + self.adjustments
        return found, errors

    def _build_commit(self, board: Board, slot: Slot, out_dir: Path | None, env: dict[str, str],
                      jobs: int, configure: bool, mrproper: bool,
                      stop: threading.Event, deadline: float | None) -> MakeOutcome:
        """Configure (if asked) and build one commit.

        The build directory is marked unfinished before the first make and
        trusted again only if every make ended by itself: a stop raises
        BuildInterrupted with the mark left in place, and a make ended by a
        guard (time limit, Kconfig loop) returns ``stopped`` with it left too.
        """
        js = self.jobserver
        relative_to = slot.source_dir if slot.checkout and not self.flags.current_source else None
        args = common_args(self.flags, out_dir, js.size if js else jobs, board.target,
                           relative_to, jobserver=js is not None)
        result = MakeOutcome()
        config_out = ""
        obj = out_dir if out_dir is not None else slot.source_dir
        wanted, errors = self._adjustments(board, slot)
        timeout_text = (f"buildfleet: build stopped after {self.flags.build_timeout:g} s "
                        f"(build_timeout)")

        def make(extra: list[str]) -> tuple[int, str, str]:
            argv = ["make", *args, *extra]
            result.commands.append(shlex.join(argv))  # buildman's join, quoted where needed
            if result.stopped:
                return STOPPED_RC, "", ""
            if js is None:
                run = run_make(argv, slot.source_dir, env, stop, deadline, timeout_text)
            else:
                if not js.acquire(stop):
                    raise BuildInterrupted()
                try:
                    run = run_make(argv, slot.source_dir, js.environ(env), stop, deadline,
                                   timeout_text, js.fds)
                finally:
                    js.release()
            if run.stopped:
                result.stopped = run.stopped
                return STOPPED_RC, run.stdout, run.stderr + run.stopped + "\n"
            if run.return_code < 0:
                result.killed = -run.return_code
            return run.return_code, run.stdout, run.stderr

        if errors:
            result.return_code = 1
            result.stderr = "".join(f"{line}\n" for line in errors)
            return result
        begin_make(obj)
        if configure:
            if out_dir is not None:
                for elf in STALE_ELFS:
                    (out_dir / elf).unlink(missing_ok=True)
            if mrproper:
                rc, out, err = make(["mrproper"])
                config_out += out
                result.stderr += err
            # As buildman: an extended board's fragments are make targets too, so
            # make merges every file of that name U-Boot's rule finds.
            rc, out, err = make([f"{board.defconfig}_defconfig",
                                 *(f"{frag}.config" for frag in board.fragments),
                                 *self.flags.fragments])
            config_out += out
            result.stderr += err
            result.return_code = rc
            result.configured = True
            if rc == 0 and self.adjustments:
                rc, out = self._apply(wanted, obj, make, result)
                config_out += out
            elif rc == 0 and wanted:
                self._check(wanted, obj, result)
        if result.return_code == 0:
            rc, out, err = make(build_targets(self.flags))
            result.return_code = rc
            result.stdout = out
            result.stderr += err
            if rc == 2 and "Some images are invalid" in err:
                result.return_code = 0
            result.build_failed = (result.return_code != 0 and not result.stopped
                                   and not result.killed)
            if wanted:
                # make may have re-run Kconfig (an incremental build after a
                # Kconfig change): the adjustments must still hold.
                self._check(wanted, obj, result)
        if self.flags.verbose_build:
            result.stdout = config_out + "".join(c + "\n" for c in result.commands) + result.stdout
        prefix = f"{slot.source_dir}/"
        result.stderr = result.stderr.replace(prefix, "")
        if not result.stopped and not result.killed:
            end_make(obj)
        return result

    @staticmethod
    def _check(wanted: list[adjust.Adjustment], obj: Path, result: MakeOutcome) -> None:
        bad = adjust.check_config(obj / ".config", wanted)
        if bad:
            result.stderr += "".join(f"{line}\n" for line in bad)
            result.return_code = result.return_code or 1

    def _apply(self, wanted: list[adjust.Adjustment], obj: Path,
               make: Callable[[list[str]], tuple[int, str, str]],
               result: MakeOutcome) -> tuple[int, str]:
        """Lay ``wanted`` over the board's minimal defconfig and let Kconfig resolve it.

        Then check ``.config``: an adjustment that did not hold fails the board
        (sets ``result.return_code``) before anything is built.
        """
        config_out = ""
        rc, out, err = make(["savedefconfig"])
        config_out += out
        result.stderr += err
        if rc == 0:
            try:
                minimal = (obj / "defconfig").read_text(encoding="utf-8", errors="replace")
                merged = obj / adjust.ALLCONFIG
                merged.write_text(adjust.merge_defconfig(minimal, wanted), encoding="utf-8")
            except OSError as exc:
                result.stderr += f"error: cannot merge the Kconfig adjustments: {exc}\n"
                rc = 1
        if rc == 0:
            # Relative: Kconfig reads it in the O= directory (kbuild's sub-make runs
            # there), so the command is spelt alike on every machine.
            rc, out, err = make([f"KCONFIG_ALLCONFIG={adjust.ALLCONFIG}", "alldefconfig"])
            config_out += out
            result.stderr += err
        result.return_code = rc
        if rc == 0:
            self._check(wanted, obj, result)
        return result.return_code, config_out

    def _result(self, target: str, commit: Commit, tc: Toolchain, env: dict[str, str],
                out_dir: Path, outcome: MakeOutcome, duration: float, slot: Slot) -> BuildResult:
        files: dict[str, bytes] = {
            "toolchain": tc.toolchain_file(outcome.return_code).encode(),
            "out-env": env_file(env),
            "out-cmd": "".join(c + "\n" for c in outcome.commands).encode(),
        }
        tools = {name: tc.tool(name) for name in ("nm", "objdump", "objcopy", "size")}
        files.update(capture.capture_images(out_dir, tools, env))
        files.update(capture.capture_configs(out_dir))
        if self.flags.keep_outputs:
            files.update(capture.capture_kept_outputs(out_dir))
        record = self.flags.adjust_record()
        if record:
            files[adjust.ADJUST_RECORD] = record.encode()
        # A make killed from outside (the OOM killer, a user) keeps its negative
        # return code: build.failure calls that the machine's fault, not the code's.
        return BuildResult(target, commit.sequence, outcome.return_code, outcome.stdout,
                           outcome.stderr, duration, self.host, files)
