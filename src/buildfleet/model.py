"""The few objects every room passes around.

They live in one place so that the local builder, the worker, the boss and the
result writer agree on them without importing each other. Everything here is
plain data that serialises to and from JSON-compatible dicts, because the same
objects cross the wire between boss and worker.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass, field
from typing import Any

LOCAL = "local"
"""The name of this machine's slots as an executor and as a host in reports.

A result built here has ``host == ""`` (no ``host`` file, as buildman); every
place that names where a result was built says ``host or LOCAL``.
"""


@dataclass(frozen=True)
class Board:
    """One row of boards.cfg: a target and where it sits in the tree."""

    target: str
    arch: str
    cpu: str = ""
    soc: str = ""
    vendor: str = ""
    board_name: str = ""
    config_name: str = ""
    status: str = ""
    maintainers: tuple[str, ...] = ()
    # An extended board (-X, configs/*.buildman): the board it is made from and
    # the fragments (configs/<name>.config) laid over that board's defconfig.
    base_target: str = ""
    fragments: tuple[str, ...] = ()

    @property
    def defconfig(self) -> str:
        """The defconfig's name without ``_defconfig`` (the base board's, if extended)."""
        return self.base_target or self.target

    def properties(self) -> tuple[str, ...]:
        """The fields a selection term is matched against (buildman's order)."""
        return (self.target, self.arch, self.cpu, self.board_name, self.vendor,
                self.soc, self.config_name)


@dataclass(frozen=True)
class Commit:
    """A commit to build. ``sequence`` is buildman's ``commit_upto``.

    ``hash`` is None for a build of the current source (the working tree).
    """

    sequence: int
    hash: str | None
    subject: str = ""

    @property
    def is_current_source(self) -> bool:
        return self.hash is None


DEFAULT_BUILD_TIMEOUT = 7200.0
# [global] keep_build_dirs_mb when unset: each board's O= kept between runs (build.keep).
DEFAULT_KEEP_MB = 8192


@dataclass(frozen=True)
class BuildFlags:
    """Every flag that changes how a board is built.

    Field names are the ones buildman's workers receive in ``configure``; the
    dict form is exactly the ``settings`` object of that message.
    """

    verbose_build: bool = False
    allow_missing: bool = False
    no_lto: bool = False
    reproducible_builds: bool = False
    warnings_as_errors: bool = False
    mrproper: bool = False
    fallback_mrproper: bool = False
    config_only: bool = False
    force_build: bool = False
    force_reconfig: bool = False
    quick: bool = False
    keep_outputs: bool = False
    per_board_out_dir: bool = False
    in_tree: bool = False
    full_path: bool = False
    override_toolchain: str | None = None
    make_target: str | None = None
    make_flags: dict[str, list[str]] = field(default_factory=dict)
    adjust_cfg: tuple[str, ...] = ()   # canonical -a items: CONFIG_X=val, ~CONFIG_X
    fragments: tuple[str, ...] = ()    # --fragments: make targets after the defconfig
    dtc_skip: bool = False             # --dtc-skip: DTC=<the machine's own dtc>
    # Seconds one board x commit may build before its make is stopped; 0: no limit.
    build_timeout: float = DEFAULT_BUILD_TIMEOUT
    # One make jobserver per machine for all its slots (else make -j per board).
    jobserver: bool = True
    # Copy the previous commit's result where a commit cannot change it (build.skip).
    skip_unchanged: bool = True
    # Keep each board's O= between runs (build.keep), within this many MB; 0: do not.
    keep_build_dirs_mb: int = DEFAULT_KEEP_MB
    # Build through ccache where the machine has it and no toolchain wrapper is
    # set (buildfleet.ccache); each machine, worker or boss, decides for itself.
    ccache: bool = True
    # The commits are snapshots of a working tree (no -b). A worker builds such
    # a snapshot in a worktree; it gets an O= outside it and an absolute O=, as
    # the boss's own current-source build does, so kbuild names the sources
    # alike (absolute, not ../) and the results match.
    current_source: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def adjust_record(self) -> str:
        """Text of the ``adjust-cfg`` result file ('' when neither -a nor --fragments).

        One line per item, ``fragment NAME`` lines first: what a result was
        built with, so a later run with other adjustments rebuilds it.
        """
        lines = [f"fragment {f}" for f in self.fragments] + list(self.adjust_cfg)
        return "".join(f"{line}\n" for line in lines)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildFlags:
        """Build from a ``settings`` dict, ignoring unknown keys (protocol rule)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in known:
                continue
            if key == "make_flags":
                if not isinstance(value, dict):
                    raise ValueError("make_flags must be an object")
                kwargs[key] = {str(k): [str(a) for a in v] for k, v in value.items()}
            elif key in ("adjust_cfg", "fragments"):
                if not isinstance(value, list | tuple) or not all(
                        isinstance(v, str) for v in value):
                    raise ValueError(f"{key} must be a list of strings")
                kwargs[key] = tuple(value)
            elif key == "build_timeout":
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ValueError("build_timeout must be a number of seconds (0: none)")
                kwargs[key] = float(value)
            elif key == "keep_build_dirs_mb":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError("keep_build_dirs_mb must be a whole number of MB (0: none)")
                kwargs[key] = value
            elif key in ("override_toolchain", "make_target"):
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"{key} must be a string or null")
                kwargs[key] = value
            else:
                if not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
                kwargs[key] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class BuildJob:
    """One board and the commits it still needs, in order.

    ``commits`` holds only what must be built (the boss has already skipped
    what is done), so the first commit is always configured from scratch.
    """

    board: Board
    commits: tuple[Commit, ...]


IMAGE_HASHES = "images.sha256"
"""buildfleet's own result file: ``<sha256>  <image>`` per ELF image built.

The writer keeps it in memory too, so two copies of a board (a hedged or
requeued one) can be compared: a free reproducibility check."""


TOOLCHAIN_ERROR_RC = 10
"""The return code of a board that had no toolchain for its arch (buildman's).

Its ``done`` file holds ``2`` and a newline instead, as buildman writes it."""


def toolchain_error_result(target: str, arch: str, sequence: int, host: str = "") -> BuildResult:
    """The result of a board that could not be built for want of a toolchain.

    ``err`` is buildman's text, without a newline: ``Tool chain error for <arch>:
    No tool chain found for arch '<arch>'``.
    """
    return BuildResult(target, sequence, TOOLCHAIN_ERROR_RC,
                       stderr=f"Tool chain error for {arch}: No tool chain found for arch "
                              f"'{arch}'", host=host)


CAPTURE_PROBLEMS = "capture.err"
"""buildfleet's own result file: ``<image>: <problem>`` per line, when reading an
image's sizes needed a fallback or failed (a parser error, a binutils tool that
failed). Absent when everything was read; never read by buildman."""


COPIED_FROM = "copied-from"
"""buildfleet's own result file: this result was not built but copied (build.skip).

One line, the full hash of the commit whose build it copies (the result
directory of that commit holds the same files), and a newline. Only a
skipped result has it; buildman ignores it."""


@dataclass
class BuildResult:
    """The outcome of one board at one commit, whoever built it.

    ``files`` maps output-tree file names (``sizes``, ``u-boot.sizes``,
    ``u-boot.cfg``, ``toolchain``, ``out-env``...) to their bytes; the result
    writer puts them beside ``done``, ``err``, ``log``, ``duration`` and
    ``host``. A worker sends the same object, so a remote board leaves exactly
    the files of a local one.
    """

    target: str
    sequence: int
    return_code: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    host: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    infra_error: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """Fields of a ``build_result`` message (files base64-encoded)."""
        return {
            "board": self.target,
            "commit_upto": self.sequence,
            "return_code": self.return_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "duration": round(self.duration, 3),
            "files": {name: base64.b64encode(data).decode("ascii")
                      for name, data in self.files.items()},
            **({"infra_error": self.infra_error} if self.infra_error else {}),
        }

    @classmethod
    def from_wire(cls, msg: dict[str, Any], host: str = "") -> BuildResult:
        """Parse a ``build_result`` message; raises ValueError on bad fields."""
        def want(key: str, kind: type | tuple[type, ...]) -> Any:
            value = msg.get(key)
            if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
                raise ValueError(f"build_result field {key!r} is missing or has the wrong type")
            return value

        files_in = msg.get("files", {})
        if not isinstance(files_in, dict):
            raise ValueError("build_result field 'files' must be an object")
        files: dict[str, bytes] = {}
        for name, data in files_in.items():
            if not isinstance(data, str):
                raise ValueError(f"build_result file {name!r} is not base64 text")
            try:
                files[str(name)] = base64.b64decode(data, validate=True)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"build_result file {name!r} is not base64: {exc}") from exc
        infra = msg.get("infra_error")
        return cls(
            target=want("board", str),
            sequence=want("commit_upto", int),
            return_code=want("return_code", int),
            stdout=msg.get("stdout", "") if isinstance(msg.get("stdout"), str) else "",
            stderr=msg.get("stderr", "") if isinstance(msg.get("stderr"), str) else "",
            duration=float(want("duration", (int, float))) if "duration" in msg else 0.0,
            host=host,
            files=files,
            infra_error=infra if isinstance(infra, str) else None,
        )
