"""The wire protocol: framing, validation of every command, the channel, fuzzing.

The decoders are fuzzed both in-process and through a real ``buildfleet
--worker``: whatever arrives, the answer is an ``error`` reply (or a skipped
line), never a crash or a silent worker.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from buildfleet import PROTOCOL_VERSION, __version__
from buildfleet.fleet.machines.ship import ShipError, check_ready
from buildfleet.fleet.messages import BuildBoard, ConfigureDone, Ready
from buildfleet.fleet.protocol import (
    COMMANDS,
    FEATURES,
    MAX_COMMAND_LINE,
    PREFIX,
    ProtocolError,
    command_from_wire,
    decode_command_line,
    decode_reply_line,
    encode_command,
    encode_reply,
    read_line,
    ready_reply,
    reply_from_wire,
    worker_features,
)
from buildfleet.fleet.remote.channel import Channel, ChannelClosed, ChannelTimeout
from buildfleet.model import Board, BuildResult

WORKER = [sys.executable, "-m", "buildfleet", "--worker"]

VALID: dict[str, dict[str, Any]] = {
    "setup": {"cmd": "setup", "work_dir": "~/dev/.bm-worker"},
    "configure": {"cmd": "configure", "settings": {"no_lto": True},
                  "toolchains": {"arm": "/usr/bin/arm-linux-gnueabihf-gcc"}},
    "build_prepare": {"cmd": "build_prepare", "commits": ["abc123", "def456"],
                      "max_boards": 2},
    "build_board": {"cmd": "build_board", "board": "sandbox", "arch": "sandbox",
                    "commits": [0, 1], "vendor": "acme", "config_name": "sandbox"},
    "build_done": {"cmd": "build_done"},
    "cancel_board": {"cmd": "cancel_board", "board": "sandbox"},
    "quit": {"cmd": "quit"},
}

# (command, field, bad value) for every typed field
BAD_FIELDS = [
    ("setup", "work_dir", 3), ("setup", "work_dir", None),
    ("configure", "settings", []), ("configure", "settings", "x"),
    ("configure", "toolchains", {"arm": 1}), ("configure", "toolchains", ["arm"]),
    ("build_prepare", "commits", []), ("build_prepare", "commits", "abc"),
    ("build_prepare", "commits", [1]), ("build_prepare", "commits", [""]),
    ("build_prepare", "max_boards", 0), ("build_prepare", "max_boards", True),
    ("build_prepare", "max_boards", 1.5),
    ("build_board", "board", ""), ("build_board", "board", 7),
    ("build_board", "arch", None), ("build_board", "commits", [-1]),
    ("build_board", "commits", [True]), ("build_board", "commits", "0"),
    ("build_board", "vendor", 3),
    ("cancel_board", "board", ["x"]),
]


def test_valid_commands_round_trip() -> None:
    assert set(VALID) == set(COMMANDS)
    for msg in VALID.values():
        line = encode_command(msg)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert b": " not in line and b", " not in line  # compact
        assert decode_command_line(line) == msg
        assert command_from_wire(msg).to_wire() == msg  # the typed message, both ways


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_missing_required_fields_are_refused(cmd: str) -> None:
    for fld, (_kind, required) in COMMANDS[cmd].items():
        msg = dict(VALID[cmd])
        msg.pop(fld, None)
        if required:
            with pytest.raises(ProtocolError, match=f"missing field '{fld}'"):
                decode_command_line(encode_command(msg))
        else:
            assert decode_command_line(encode_command(msg)) == msg


@pytest.mark.parametrize(("cmd", "fld", "value"), BAD_FIELDS)
def test_wrong_field_types_are_refused(cmd: str, fld: str, value: Any) -> None:
    msg = {**VALID[cmd], fld: value}
    with pytest.raises(ProtocolError, match=f"command '{cmd}': field '{fld}' must be"):
        decode_command_line(encode_command(msg))
    with pytest.raises(ProtocolError):
        command_from_wire(msg)


@pytest.mark.parametrize(("line", "message"), [
    (b"not json\n", "invalid JSON in command"),
    (b'{"cmd": "setup", \n', "invalid JSON in command"),
    (b"[1, 2]\n", "command is not a JSON object"),
    (b'"quit"\n', "command is not a JSON object"),
    (b'{"resp": "ready"}\n', 'command has no "cmd" string'),
    (b'{"cmd": 5}\n', 'command has no "cmd" string'),
    (b'{"cmd": "format_disk"}\n', "unknown command: format_disk"),
    (b'{"cmd": "quit"}\xff\n', "invalid UTF-8 in command at byte 15"),
    (b"[" * 100000 + b"]" * 100000 + b"\n", "invalid JSON in command"),
])
def test_bad_command_lines(line: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        decode_command_line(line)
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)


def test_unknown_fields_are_ignored() -> None:
    msg = {**VALID["build_board"], "priority": 3, "note": {"x": [1]}}
    assert decode_command_line(encode_command(msg)) == msg


def test_command_line_length_cap() -> None:
    big = encode_command({"cmd": "setup", "work_dir": "x" * MAX_COMMAND_LINE})
    with pytest.raises(ProtocolError, match="command line too long"):
        decode_command_line(big)


def test_read_line_skips_an_overlong_line_and_carries_on() -> None:
    stream = io.BytesIO(b"a" * 5000 + b"\n" + b'{"cmd":"quit"}\n' + b"tail")
    with pytest.raises(ProtocolError, match=r"line too long \(5001 bytes, limit 100\)"):
        read_line(stream, 100)
    assert read_line(stream, 100) == b'{"cmd":"quit"}\n'
    assert read_line(stream, 100) == b"tail"
    assert read_line(stream, 100) == b""


def test_reply_framing() -> None:
    msg = {"resp": "heartbeat", "board": "sandbox", "thread": 1}
    line = encode_reply(msg)
    assert line == b'BM> {"resp":"heartbeat","board":"sandbox","thread":1}\n'
    assert decode_reply_line(line) == msg
    assert decode_reply_line(b"Welcome to host!\n") is None
    assert decode_reply_line(b"BM>{\"resp\":\"x\"}\n") is None  # the space is part of it
    assert decode_reply_line(b"") is None
    text = encode_reply({"resp": "error", "msg": "böse ☃"})
    assert "böse ☃".encode() in text
    assert decode_reply_line(text) == {"resp": "error", "msg": "böse ☃"}


@pytest.mark.parametrize(("line", "message"), [
    (b"BM> nope\n", "invalid JSON in reply"),
    (b"BM> [1]\n", "reply is not a JSON object"),
    (b'BM> {"cmd":"quit"}\n', 'reply has no "resp" string'),
    (b'BM> {"resp":"heartbeat","board":"x"}\n', "reply 'heartbeat': missing field 'thread'"),
    (b'BM> {"resp":"build_done","exceptions":"0"}\n',
     "reply 'build_done': field 'exceptions' must be an integer"),
    (b'BM> {"resp":"ready","nthreads":0,"slots":1}\n',
     "reply 'ready': field 'nthreads' must be an integer >= 1"),
])
def test_bad_reply_lines(line: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(")):
        decode_reply_line(line)


def test_unknown_reply_types_pass_through() -> None:
    assert decode_reply_line(b'BM> {"resp":"progress","x":1}\n') == {"resp": "progress", "x": 1}


def test_build_result_goes_through_the_framing() -> None:
    result = BuildResult("sandbox", 2, 1, "out", "err\n", 1.25, files={"sizes": b"\x00\xff"})
    msg = decode_reply_line(encode_reply({"resp": "build_result", **result.to_wire()}))
    assert msg is not None
    back = BuildResult.from_wire(msg, host="m1")
    assert (back.target, back.sequence, back.return_code, back.files, back.host) == (
        "sandbox", 2, 1, {"sizes": b"\x00\xff"}, "m1")


def test_ready_and_version_check() -> None:
    ready = ready_reply(8, 8)
    assert ready == {"resp": "ready", "nthreads": 8, "slots": 8, "version": __version__,
                     "protocol": PROTOCOL_VERSION, "features": list(FEATURES)}
    check_ready(ready, __version__)
    assert worker_features(reply_from_wire(ready, Ready)) == frozenset(FEATURES)
    # The seed's ready (buildman's worker): no protocol number, no features.
    seed = {"resp": "ready", "nthreads": 8, "slots": 8}
    check_ready(seed, None)
    assert worker_features(reply_from_wire(seed, Ready)) == frozenset()
    with pytest.raises(ShipError, match=r"worker speaks protocol 99 \(buildfleet 9.9\), "
                                        r"this boss speaks protocol 1"):
        check_ready({**ready, "protocol": 99, "version": "9.9"})
    with pytest.raises(ShipError, match="worker did not send ready"):
        check_ready({"resp": "error", "msg": "locked"})


# -- fuzzing ----------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def _decode_command_or_error(line: bytes) -> None:
    try:
        msg = decode_command_line(line)
    except ProtocolError as exc:
        assert str(exc)
        return
    assert msg["cmd"] in COMMANDS


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _decode_command_or_error(data)
    _decode_command_or_error(b"{" + data)
    try:
        decode_reply_line(PREFIX.encode() + data)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(COMMANDS)), st.dictionaries(
    st.sampled_from(["work_dir", "settings", "toolchains", "commits", "max_boards", "board",
                     "arch", "vendor", "cpu", "extra"]), json_values, max_size=5))
def test_fuzz_wrong_types(cmd: str, fields: dict[str, Any]) -> None:
    _decode_command_or_error(encode_command({"cmd": cmd, **fields}))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(VALID)), st.data())
def test_fuzz_truncated(cmd: str, data: st.DataObject) -> None:
    line = encode_command(VALID[cmd])
    cut = data.draw(st.integers(0, len(line) - 2))
    with pytest.raises(ProtocolError):
        decode_command_line(line[:cut])
    try:
        decode_reply_line(PREFIX.encode() + line[:cut])
    except ProtocolError:
        pass


@settings(max_examples=20, deadline=None)
@given(st.integers(MAX_COMMAND_LINE + 1, MAX_COMMAND_LINE + 5000), st.binary(max_size=4))
def test_fuzz_huge_lines(size: int, filler: bytes) -> None:
    with pytest.raises(ProtocolError, match="too long"):
        decode_command_line((filler or b"x") * (size // max(1, len(filler)) + 1))
    stream = io.BytesIO(b"y" * size + b"\n" + b'{"cmd":"build_done"}\n')
    with pytest.raises(ProtocolError, match="too long"):
        read_line(stream, MAX_COMMAND_LINE)
    assert decode_command_line(read_line(stream, MAX_COMMAND_LINE)) == {"cmd": "build_done"}


# -- the channel ----------------------------------------------------------------
def _script(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_channel_skips_noise_and_counts_bytes() -> None:
    code = ("import sys\n"
            "print('Last login: yesterday', flush=True)\n"
            "print('BM> {\"resp\":\"ready\",\"nthreads\":1,\"slots\":1,\"protocol\":1}',"
            " flush=True)\n"
            "for line in sys.stdin:\n"
            "    print('BM> {\"resp\":\"echo\",\"line\":' + line.strip() + '}', flush=True)\n"
            "    print('said ' + line.strip(), file=sys.stderr, flush=True)\n")
    noise: list[str] = []
    errs: list[str] = []
    with Channel(_script(code), on_noise=noise.append, on_stderr=errs.append) as ch:
        assert ch.recv(10)["resp"] == "ready"
        ch.send({"cmd": "quit"})
        assert ch.recv(10) == {"resp": "echo", "line": {"cmd": "quit"}}
        assert ch.bytes_sent == len(b'{"cmd":"quit"}\n')
        assert ch.pid > 0
    assert noise == ["Last login: yesterday"]
    assert errs == ['said {"cmd":"quit"}']
    assert ch.bytes_received == len(b"Last login: yesterday\n") + 2 * len(b"BM> ") + len(
        b'{"resp":"ready","nthreads":1,"slots":1,"protocol":1}\n') + len(
        b'{"resp":"echo","line":{"cmd":"quit"}}\n')


def test_channel_timeout_then_bad_json_then_eof_with_last_stderr_line() -> None:
    code = ("import sys, time\n"
            "sys.stdin.readline()\n"
            "print('BM> {oops', flush=True)\n"
            "print('fatal: no space left', file=sys.stderr, flush=True)\n")
    with Channel(_script(code), name="m1") as ch:
        t0 = time.monotonic()
        with pytest.raises(ChannelTimeout):
            ch.recv(0.3)
        assert 0.25 < time.monotonic() - t0 < 3
        ch.send({"cmd": "build_done"})
        with pytest.raises(ProtocolError, match="bad message from m1: invalid JSON in reply"):
            ch.recv(10)
        with pytest.raises(ChannelClosed, match="m1 closed connection: fatal: no space left"):
            ch.recv(10)
        with pytest.raises(ChannelClosed):
            ch.recv(0.1)
        assert ch.stderr_tail == ["fatal: no space left"]


def test_channel_send_after_close_and_bad_argv(tmp_path: Path) -> None:
    ch = Channel(_script("import sys; sys.stdin.read()"))
    assert ch.close() == 0
    assert ch.close() == 0  # idempotent
    with pytest.raises(ChannelClosed):
        ch.send({"cmd": "quit"})
    with pytest.raises(ChannelClosed, match="cannot start"):
        Channel([str(tmp_path / "no-such-program")])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def test_channel_close_kills_the_whole_group(tmp_path: Path) -> None:
    """A process that ignores stdin EOF and SIGTERM, with a child: both die."""
    pidfile = tmp_path / "child"
    code = ("import signal, subprocess, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "p = subprocess.Popen(['sleep', '60'])\n"
            f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
            "print('BM> {\"resp\":\"ready\",\"nthreads\":1,\"slots\":1}', flush=True)\n"
            "time.sleep(60)\n")
    ch = Channel(_script(code))
    assert ch.recv(10)["resp"] == "ready"
    child = int(pidfile.read_text())
    assert os.getpgid(child) == ch.pid
    t0 = time.monotonic()
    status = ch.close(grace=0.5)
    assert status == -signal.SIGKILL
    assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


# -- a real worker under fire -------------------------------------------------------
@pytest.fixture
def worker(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {**os.environ, "HOME": str(tmp_path)}
    errs: list[str] = []
    ch = Channel(WORKER, env=env, cwd=tmp_path, on_stderr=errs.append, name="worker")
    try:
        assert ch.recv(30)["resp"] == "ready"
        yield ch
    finally:
        ch.close()


def _expects_reply(line: bytes) -> bool:
    if not line.strip():
        return False  # blank lines are ignored
    try:
        decode_command_line(line)
    except ProtocolError:
        return True
    return False  # a valid command by chance: not garbage


def test_worker_answers_garbage_with_errors_and_stays_alive(
        worker: Channel, tmp_path: Path) -> None:
    @settings(max_examples=80, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.one_of(
        st.binary(max_size=200),
        st.builds(lambda c, f: encode_command({"cmd": c, **f}), st.sampled_from(sorted(COMMANDS)),
                  st.dictionaries(st.sampled_from(["work_dir", "settings", "commits", "board",
                                                   "arch", "max_boards"]),
                                  json_values, max_size=3)),
        st.sampled_from([encode_command(v) for v in VALID.values()]).flatmap(
            lambda line: st.integers(1, len(line) - 2).map(lambda n: line[:n])),
    ))
    def fire(data: bytes) -> None:
        line = data.replace(b"\n", b" ").replace(b"\r", b" ")
        if not _expects_reply(line):
            return
        worker.send_raw(line + b"\n")
        reply = worker.recv(20)
        assert reply["resp"] == "error", reply
        assert isinstance(reply["msg"], str) and reply["msg"]

    fire()
    # Commands that are well-formed but out of order are errors too.
    for msg, text in [({"cmd": "build_board", "board": "b", "arch": "arm"}, "no builder"),
                      ({"cmd": "build_prepare", "commits": ["ab"]}, "no work directory"),
                      ({"cmd": "build_board", "board": "../x", "arch": "arm"},
                       "bad board name")]:
        worker.send(msg)
        reply = worker.recv(20)
        assert reply["resp"] == "error" and text in reply["msg"], reply
    # A line over the cap: an error, and the next line is read normally.
    worker.send_raw(b'{"cmd":"setup","work_dir":"' + b"x" * (MAX_COMMAND_LINE + 10) + b'"}\n')
    reply = worker.recv(20)
    assert reply["resp"] == "error" and "line too long" in reply["msg"]
    worker.send({"cmd": "setup", "work_dir": str(tmp_path / "wd")})
    reply = worker.recv(20)
    assert reply == {"resp": "setup_done", "work_dir": str(tmp_path / "wd"),
                     "git_dir": str(tmp_path / "wd" / ".git"), "pid": reply.get("pid")}
    assert isinstance(reply["pid"], int) and reply["pid"] > 0
    worker.send({"cmd": "cancel_board", "board": "nothing"})
    assert worker.recv(20) == {"resp": "board_cancelled", "board": "nothing",
                               "state": "unknown"}
    worker.send({"cmd": "build_done"})
    assert worker.recv(20) == {"resp": "build_done", "exceptions": 0}
    worker.send({"cmd": "quit"})
    assert worker.recv(20) == {"resp": "quit_ack"}
    assert worker.close() == 0
    assert not (tmp_path / "wd" / ".lock").exists()


def test_worker_stdout_carries_only_protocol_lines(tmp_path: Path) -> None:
    """Everything on the worker's real stdout is a BM> line, even with -D."""
    code = ("import subprocess, sys\n"
            f"p = subprocess.run({WORKER + ['-D']!r}, input=b'hello\\n"
            "{\"cmd\":\"quit\"}\\n', capture_output=True, timeout=60)\n"
            "sys.stdout.buffer.write(p.stdout)\n")
    import subprocess
    out = subprocess.run(_script(code), capture_output=True, timeout=90,
                         env={**os.environ, "HOME": str(tmp_path)}).stdout
    lines = out.decode().splitlines()
    assert [json.loads(ln.removeprefix(PREFIX))["resp"] for ln in lines] == [
        "ready", "error", "quit_ack"]
    assert all(ln.startswith(PREFIX) for ln in lines)


def test_typed_messages_carry_configure_archs_and_the_whole_board() -> None:
    """configure_done's ``archs`` is in the schema; build_board spells a board's fields once."""
    line = encode_reply(ConfigureDone({"arm": "/usr/bin/arm-linux-gnueabi-gcc"},
                                      ["arm", "aarch64"]).to_wire())
    msg = decode_reply_line(line)
    assert msg is not None
    assert reply_from_wire(msg, ConfigureDone).archs == ["arm", "aarch64"]
    with pytest.raises(ProtocolError, match="field 'archs' must be a list of strings"):
        decode_reply_line(encode_reply({"resp": "configure_done", "archs": "arm"}))
    board = Board("acme_a1", "arm", cpu="armv7", vendor="acme", board_name="a1",
                  config_name="acme_a1")
    wire = encode_command(BuildBoard.of(board, [0, 2]).to_wire())
    cmd = command_from_wire(decode_command_line(wire))
    assert isinstance(cmd, BuildBoard)
    assert cmd.to_board() == board and cmd.commits == [0, 2]
