"""Every boss/worker message as a typed dataclass: the single spelling of its fields.

Why: the boss builds commands and reads replies, the worker the other way
round; when both built raw dicts, a field could be spelled one way on one
side and another way on the other. Here each field is written once, with
its kind; ``protocol`` derives the validation schema from these classes,
``to_wire`` makes the JSON object and ``from_wire`` reads an object that
``protocol`` has already validated (so it cannot fail on types).

A field whose value is None is left out of the wire object (every optional
field defaults to None). Unknown fields are ignored by ``from_wire``.
Stdlib and ``buildfleet.model`` only: the worker imports this.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from buildfleet.model import Board

M = TypeVar("M", bound="Message")

# The optional target information of a board, sent with ``build_board``.
TARGET_INFO_FIELDS = ("cpu", "soc", "vendor", "board_name", "config_name")


def _req(kind: str) -> Any:
    """A required field of ``kind`` (see ``protocol``'s kinds)."""
    return field(metadata={"kind": kind})


def _opt(kind: str) -> Any:
    """An optional field of ``kind``: None is not sent."""
    return field(default=None, metadata={"kind": kind})


@dataclass(frozen=True)
class Message:
    """One protocol message; ``KEY`` is "cmd" or "resp", ``NAME`` its value."""

    KEY: ClassVar[str] = ""
    NAME: ClassVar[str] = ""

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {self.KEY: self.NAME}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = value
        return out

    @classmethod
    def from_wire(cls: type[M], msg: dict[str, Any]) -> M:
        """The message from a validated wire object (``protocol`` checked it)."""
        return cls(**{f.name: msg[f.name] for f in dataclasses.fields(cls) if f.name in msg})

    @classmethod
    def schema(cls) -> dict[str, tuple[str, bool]]:
        """{field: (kind, required)}, for ``protocol``'s checks."""
        return {f.name: (f.metadata["kind"], f.default is dataclasses.MISSING)
                for f in dataclasses.fields(cls)}


class Command(Message):
    KEY = "cmd"


class Reply(Message):
    KEY = "resp"


# -- commands (boss -> worker) ----------------------------------------------------
@dataclass(frozen=True)
class Setup(Command):
    NAME = "setup"
    work_dir: str = _req("str")
    shared_dir: str | None = _opt("str")


@dataclass(frozen=True)
class Configure(Command):
    NAME = "configure"
    settings: dict[str, Any] = _req("object")
    toolchains: dict[str, str] | None = _opt("str_map")
    wrapper: str | None = _opt("str")


@dataclass(frozen=True)
class BuildPrepare(Command):
    NAME = "build_prepare"
    commits: list[str | None] = _req("commits")
    max_boards: int | None = _opt("count")


@dataclass(frozen=True)
class BuildBoard(Command):
    NAME = "build_board"
    board: str = _req("name")
    arch: str = _req("name")
    commits: list[int] | None = _opt("indices")
    cpu: str | None = _opt("str")
    soc: str | None = _opt("str")
    vendor: str | None = _opt("str")
    board_name: str | None = _opt("str")
    config_name: str | None = _opt("str")
    base_target: str | None = _opt("str")
    fragments: list[str] | None = _opt("str_list")

    @classmethod
    def of(cls, board: Board, commits: list[int] | None) -> BuildBoard:
        """The command that asks for ``board`` at prepared commit indices ``commits``."""
        info = {name: getattr(board, name) for name in TARGET_INFO_FIELDS}
        return cls(board=board.target, arch=board.arch, commits=commits, **info,
                   base_target=board.base_target or None,
                   fragments=list(board.fragments) if board.base_target else None)

    def to_board(self) -> Board:
        info = {name: value for name in TARGET_INFO_FIELDS
                if (value := getattr(self, name)) is not None}
        return Board(target=self.board, arch=self.arch, **info,
                     base_target=self.base_target or "", fragments=tuple(self.fragments or ()))


@dataclass(frozen=True)
class BuildDone(Command):
    NAME = "build_done"


@dataclass(frozen=True)
class CancelBoard(Command):
    NAME = "cancel_board"
    board: str = _req("name")


@dataclass(frozen=True)
class Quit(Command):
    NAME = "quit"


COMMAND_TYPES: tuple[type[Command], ...] = (Setup, Configure, BuildPrepare, BuildBoard,
                                             BuildDone, CancelBoard, Quit)


# -- replies (worker -> boss) -----------------------------------------------------
@dataclass(frozen=True)
class Ready(Reply):
    NAME = "ready"
    nthreads: int = _req("count")
    slots: int = _req("count")
    version: str | None = _opt("str")
    protocol: int | None = _opt("int")
    features: list[str] | None = _opt("str_list")


@dataclass(frozen=True)
class SetupDone(Reply):
    NAME = "setup_done"
    work_dir: str = _req("name")
    git_dir: str = _req("name")
    pid: int | None = _opt("int")


@dataclass(frozen=True)
class ConfigureDone(Reply):
    NAME = "configure_done"
    toolchains: dict[str, str] | None = _opt("str_map")
    archs: list[str] | None = _opt("str_list")


@dataclass(frozen=True)
class BuildStarted(Reply):
    NAME = "build_started"
    num_threads: int = _req("count")


@dataclass(frozen=True)
class WorktreeCreated(Reply):
    NAME = "worktree_created"
    thread: int = _req("int")


@dataclass(frozen=True)
class BuildPrepareDone(Reply):
    NAME = "build_prepare_done"


@dataclass(frozen=True)
class Heartbeat(Reply):
    NAME = "heartbeat"
    board: str = _req("name")
    thread: int = _req("int")


@dataclass(frozen=True)
class BuildDoneReply(Reply):
    NAME = "build_done"
    exceptions: int = _req("int")


@dataclass(frozen=True)
class BoardCancelled(Reply):
    NAME = "board_cancelled"
    board: str = _req("name")
    state: str | None = _opt("str")


@dataclass(frozen=True)
class QuitAck(Reply):
    NAME = "quit_ack"


@dataclass(frozen=True)
class ErrorReply(Reply):
    NAME = "error"
    msg: str = _req("str")
    reason: str | None = _opt("str")


REPLY_TYPES: tuple[type[Reply], ...] = (Ready, SetupDone, ConfigureDone, BuildStarted,
                                         WorktreeCreated, BuildPrepareDone, Heartbeat,
                                         BuildDoneReply, BoardCancelled, QuitAck, ErrorReply)
