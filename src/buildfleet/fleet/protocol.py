"""The boss/worker wire protocol: framing, message names and their fields.

Both sides import this one module, so a message the boss can build is a
message the worker accepts, and vice versa. Each message is a typed class
in ``fleet.messages`` (the one spelling of its fields); the schemas below
are derived from those classes. The contract is PROTOCOL.md §4;
this module is its executable form. Decoders never raise anything but
:class:`ProtocolError`, whose text is fit to go back verbatim in an ``error``
reply: a worker must answer garbage with an error and keep going.

Framing
-------
* boss -> worker: one compact JSON object per line (``encode_command``).
* worker -> boss: ``BM> `` + one compact JSON object per line
  (``encode_reply``). Lines without the prefix (login banners, stray prints)
  are skipped by the reader (``decode_reply_line`` returns None).
* UTF-8 throughout. Commands are capped at ``MAX_COMMAND_LINE`` bytes; replies
  at ``MAX_REPLY_LINE`` (a ``build_result`` carries files).
* Unknown fields are ignored by both sides (either may add fields).

Commands (boss -> worker)
-------------------------
========================  =====================================================
``setup``                 ``work_dir`` str, optional ``shared_dir`` (where the
                          machine's thread budget is kept). Reply
                          ``setup_done`` {work_dir, git_dir} (absolute
                          paths), or ``error`` {reason: "in_use"} if another
                          worker holds the directory's lock.
``configure``             ``settings`` object (``BuildFlags.to_dict()``),
                          optional ``toolchains`` {arch: gcc path} (a hint),
                          optional ``wrapper`` (the boss's toolchain wrapper;
                          ``error`` {reason: "unusable"} if not found; ""
                          for none: the worker then uses its own ccache if
                          it has one and ``settings.ccache`` is true).
                          Reply ``configure_done`` {toolchains: {arch: path},
                          archs: [arch, ...]} (what the worker will use and
                          the board archs it can build, aliases included).
``build_prepare``         ``commits`` [hash | null, ...], optional
                          ``max_boards`` int >= 1. Replies ``build_started``
                          {num_threads}, ``worktree_created`` {thread} per
                          slot, then ``build_prepare_done``; or ``error``
                          {reason: "busy"} if every thread of the machine is
                          claimed by other workers.
``build_board``           ``board`` target, ``arch``; optional ``cpu``,
                          ``soc``, ``vendor``, ``board_name``, ``config_name``
                          (target info), ``base_target`` and ``fragments``
                          [name, ...] (an extended board, ``-X``: configured
                          as ``base_target``'s defconfig then <name>.config,
                          checked against configs/<name>.config) and
                          ``commits`` [index, ...] (a subset
                          of the prepared commits; default all). Replies
                          ``heartbeat`` {board, thread} at start and at least
                          every ``HEARTBEAT_INTERVAL`` s while building, then
                          one ``build_result`` per commit.
``build_done``            Reply ``build_done`` {exceptions} once the queue has
                          drained and every slot is idle.
``cancel_board``          ``board``. Drops the board if queued, stops it (kills
                          its make) if building. Reply ``board_cancelled``
                          {board, state}; no ``build_result`` for that board follows
                          the reply.
``quit``                  Reply ``quit_ack``; the worker then kills its
                          process group and exits.
========================  =====================================================

Replies (worker -> boss)
------------------------
``ready`` {nthreads, slots, version, protocol, features} is sent unasked at
start; ``features`` lists what the worker adds to the seed's protocol.
``build_result`` is ``BuildResult.to_wire()`` (see ``buildfleet.model``).
``error`` {msg, reason} answers any unknown or invalid command; the worker
carries on.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import IO, Any, TypeVar

from buildfleet import PROTOCOL_VERSION, __version__
from buildfleet.errors import InfraError
from buildfleet.fleet.messages import COMMAND_TYPES, REPLY_TYPES, Command, Ready, Reply

PREFIX = "BM> "
PREFIX_BYTES = PREFIX.encode("ascii")
MAX_COMMAND_LINE = 1 << 20
MAX_REPLY_LINE = 64 << 20
HEARTBEAT_INTERVAL = 5.0
# What buildfleet's worker adds to the seed's protocol, announced in ``ready``:
# cancel_board (tail hedging), commits (build_board's subset of commits),
# files (every result file in build_result), shared_threads (setup's
# shared_dir: one thread budget per machine login), wrapper (configure's
# toolchain wrapper).
FEATURES = ("cancel_board", "commits", "files", "shared_threads", "wrapper")

R = TypeVar("R", bound=Reply)


class ProtocolError(InfraError):
    """A line that is not a valid message; the text suits an ``error`` reply."""


# -- field checks ---------------------------------------------------------------
Check = Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


def _is_commit_list(value: Any) -> bool:
    return (isinstance(value, list) and len(value) > 0
            and all(v is None or _is_nonempty_str(v) for v in value))


def _is_index_list(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(v) and v >= 0 for v in value)


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool))


# name -> (check, what the check wants, in words)
_KINDS: dict[str, tuple[Check, str]] = {
    "str": (_is_str, "a string"),
    "name": (_is_nonempty_str, "a non-empty string"),
    "int": (_is_int, "an integer"),
    "count": (_is_positive_int, "an integer >= 1"),
    "number": (_is_number, "a number"),
    "object": (_is_object, "an object"),
    "str_map": (_is_str_map, "an object of strings"),
    "commits": (_is_commit_list, "a non-empty list of commit hashes (or null)"),
    "indices": (_is_index_list, "a list of integers >= 0"),
    "str_list": (_is_str_list, "a list of strings"),
}

# cmd -> {field: (kind, required)}, from the message classes (their one spelling).
COMMANDS: dict[str, dict[str, tuple[str, bool]]] = {c.NAME: c.schema() for c in COMMAND_TYPES}

# resp -> {field: (kind, required)}; the boss checks these on receipt.
# ``build_result`` is ``BuildResult.to_wire()`` (``buildfleet.model``), checked here.
REPLIES: dict[str, dict[str, tuple[str, bool]]] = {
    **{r.NAME: r.schema() for r in REPLY_TYPES},
    "build_result": {"board": ("name", True), "commit_upto": ("int", True),
                     "return_code": ("int", True), "duration": ("number", False),
                     "files": ("object", False)},
}


def _check_fields(kind_name: str, name: str, msg: dict[str, Any],
                  schema: dict[str, tuple[str, bool]]) -> None:
    for fld, (kind, required) in schema.items():
        if fld not in msg:
            if required:
                raise ProtocolError(f"{kind_name} {name!r}: missing field {fld!r}")
            continue
        check, want = _KINDS[kind]
        if not check(msg[fld]):
            raise ProtocolError(f"{kind_name} {name!r}: field {fld!r} must be {want}")


# -- encoding -------------------------------------------------------------------
def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def encode_command(obj: dict[str, Any]) -> bytes:
    """One command line for the worker's stdin."""
    return (_dump(obj) + "\n").encode("utf-8")


def encode_reply(obj: dict[str, Any]) -> bytes:
    """One reply line for the worker's stdout, with the ``BM> `` prefix."""
    return (PREFIX + _dump(obj) + "\n").encode("utf-8")


def ready_reply(nthreads: int, slots: int) -> dict[str, Any]:
    """The worker's unasked first line: its threads, version, protocol and features."""
    return Ready(nthreads=nthreads, slots=slots, version=__version__,
                 protocol=PROTOCOL_VERSION, features=list(FEATURES)).to_wire()


def worker_features(ready: Ready) -> frozenset[str]:
    """What a worker supports beyond the seed's protocol, from its ``ready``.

    A worker that lists no ``features`` (buildman's own, or any worker written
    from the seed's documentation) gets none: no ``cancel_board`` (so no
    hedged copies on it), no result files (only ``stdout``/``stderr``/
    ``sizes``), no shared thread budget, no forwarded toolchain wrapper.
    """
    return frozenset(ready.features or ())


def seed_result(msg: dict[str, Any]) -> dict[str, Any]:
    """A ``build_result`` of a seed-protocol worker, with its ``sizes`` as a result file.

    Such a worker (buildman's own) sends ``stdout``, ``stderr`` and ``sizes``
    as ``{"raw": <size's output without its header>}`` but no ``files``; the
    raw lines become the ``sizes`` file. Every other file of a result
    (toolchain, out-env, nm and objdump tables, config copies) is missing.
    """
    if "files" in msg:
        return msg
    files: dict[str, str] = {}
    sizes = msg.get("sizes")
    raw = sizes.get("raw") if isinstance(sizes, dict) else None
    if isinstance(raw, str) and raw.strip():
        files["sizes"] = base64.b64encode((raw.rstrip("\n") + "\n").encode()).decode()
    return {**msg, "files": files}


# -- decoding -------------------------------------------------------------------
def _parse_object(text: bytes, what: str) -> dict[str, Any]:
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"invalid UTF-8 in {what} at byte {exc.start}") from None
    try:
        obj = json.loads(decoded)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"invalid JSON in {what}: {_short(str(exc))}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} is not a JSON object")
    return obj


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def validate_command(msg: dict[str, Any]) -> None:
    cmd = msg.get("cmd")
    if not isinstance(cmd, str):
        raise ProtocolError("command has no \"cmd\" string")
    schema = COMMANDS.get(cmd)
    if schema is None:
        raise ProtocolError(f"unknown command: {_short(cmd, 60)}")
    _check_fields("command", cmd, msg, schema)


def decode_command_line(line: bytes) -> dict[str, Any]:
    """Parse and validate one command line (trailing newline optional)."""
    if len(line) > MAX_COMMAND_LINE:
        raise ProtocolError(f"command line too long ({len(line)} bytes, "
                            f"limit {MAX_COMMAND_LINE})")
    msg = _parse_object(line.strip(b" \t\r\n"), "command")
    validate_command(msg)
    return msg


_COMMAND_CLASSES = {c.NAME: c for c in COMMAND_TYPES}


def command_from_wire(msg: dict[str, Any]) -> Command:
    """The typed command of a wire object; ProtocolError if it is not a valid one."""
    validate_command(msg)
    return _COMMAND_CLASSES[msg["cmd"]].from_wire(msg)


def reply_from_wire(msg: dict[str, Any], want: type[R]) -> R:
    """The typed reply ``want`` of a wire object (checked on receipt); ProtocolError if not."""
    if msg.get("resp") != want.NAME:
        raise ProtocolError(f"expected reply {want.NAME!r}, got {_short(str(msg.get('resp')))!r}")
    _check_fields("reply", want.NAME, msg, want.schema())
    return want.from_wire(msg)


def decode_reply_line(line: bytes) -> dict[str, Any] | None:
    """Parse one stdout line of a worker; None if it is not a protocol line.

    Known replies have their fields checked; unknown reply types pass through
    (the boss skips them).
    """
    if not line.startswith(PREFIX_BYTES):
        return None
    if len(line) > MAX_REPLY_LINE:
        raise ProtocolError(f"reply line too long ({len(line)} bytes, limit {MAX_REPLY_LINE})")
    msg = _parse_object(line[len(PREFIX_BYTES):].strip(b" \t\r\n"), "reply")
    resp = msg.get("resp")
    if not isinstance(resp, str):
        raise ProtocolError("reply has no \"resp\" string")
    schema = REPLIES.get(resp)
    if schema is not None:
        _check_fields("reply", resp, msg, schema)
    return msg


def read_line(stream: IO[bytes], limit: int) -> bytes:
    """Read one line of at most ``limit`` bytes; b"" at end of stream.

    A longer line is consumed to its end and reported as ProtocolError, so the
    next read starts at the next line and memory stays bounded.
    """
    line = stream.readline(limit + 1)
    if len(line) <= limit or line.endswith(b"\n"):
        return line
    total = len(line)
    while True:
        chunk = stream.readline(1 << 16)
        total += len(chunk)
        if not chunk or chunk.endswith(b"\n"):
            break
    raise ProtocolError(f"line too long ({total} bytes, limit {limit})")


def read_lines(stream: IO[bytes], limit: int) -> Iterator[bytes | ProtocolError]:
    """Each line of ``stream`` (at most ``limit`` bytes) until its end, for a reader thread.

    A longer line comes as its ProtocolError, and reading goes on at the next
    one: both sides put what they get into their queue as it comes, so one
    bad line costs one error reply (worker) or one lost worker (boss), never
    the reader. OSError/ValueError (the pipe closed under the reader) pass out.
    """
    while True:
        try:
            line = read_line(stream, limit)
        except ProtocolError as exc:
            yield exc
            continue
        if not line:
            return
        yield line
