"""The manual and ``-H``: printed byte for byte, paged on a terminal, and true.

"True" means its examples parse with the real argument parser, every option
of the parser is described, and the runnable examples work as written on a
freshly generated demo tree with the exit status the manual promises.
"""

from __future__ import annotations

import io
import os
import pty
import re
import select
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from buildfleet import cmdline
from buildfleet.manual import manual_path, show_manual
from ci_skip import require

ARROW = "\u2192"
CROSS_GCCS = ("arm-linux-gnueabihf-gcc", "aarch64-linux-gnu-gcc", "riscv64-linux-gnu-gcc")
STATUS_RE = re.compile(r"#\s*exit status (\d+)")
REQUIRED_HEADINGS = (
    "Quick start",
    "Theory of operation",
    "Selecting boards",
    "Setting up toolchains",
    "Building branches",
    "Reading summaries",
    "Sizes",
    "The settings file",
    "Reports",
    "Expected costs",
    "Continuous integration",
    "Distributed builds",
    "Machine configuration",
    "Probing",
    "Forwarded flags",
    "Protocol overview",
)
PROTOCOL_MESSAGES = (
    "ready", "setup", "configure", "build_prepare", "build_board", "heartbeat",
    "build_result", "build_done", "cancel_board", "quit", "error",
)


@dataclass(frozen=True)
class Example:
    """One ``$ buildfleet ...`` line of the manual."""

    line_no: int
    argv: list[str]
    expected_status: int
    runnable: bool  # in a ``.. code-block:: bash`` block: runs on the demo tree


def _manual_text() -> str:
    return manual_path().read_text(encoding="utf-8")


def _blocks(text: str) -> list[tuple[str, int, list[tuple[int, str]]]]:
    """Literal blocks as (kind, first line, [(line number, stripped line)]).

    ``kind`` is the code-block language, or ``literal`` for ``::`` blocks.
    """
    lines = text.splitlines()
    blocks: list[tuple[str, int, list[tuple[int, str]]]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(\s*)\.\. code-block::\s*(\S+)", line)
        if m:
            kind, indent = m.group(2), len(m.group(1))
        elif line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            kind, indent = "literal", len(line) - len(line.lstrip())
        else:
            i += 1
            continue
        start = i + 1
        body: list[tuple[int, str]] = []
        i += 1
        while i < len(lines):
            cur = lines[i]
            if cur.strip() and len(cur) - len(cur.lstrip()) <= indent:
                break
            if cur.strip():
                body.append((i + 1, cur.strip()))
            i += 1
        blocks.append((kind, start, body))
    return blocks


def _examples(text: str) -> list[Example]:
    found: list[Example] = []
    for kind, _start, body in _blocks(text):
        for line_no, line in body:
            if not line.startswith("$ buildfleet"):
                continue
            command, _, comment = line[2:].partition("#")
            m = STATUS_RE.search("#" + comment) if comment else None
            words = shlex.split(command)
            found.append(Example(line_no, words[1:], int(m.group(1)) if m else 0,
                                 kind == "bash"))
    return found


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    env.pop("PAGER", None)
    return subprocess.run(argv, capture_output=True, timeout=60, env=env,
                          check=False, **kw)  # type: ignore[call-overload]


# --- the file itself -------------------------------------------------------------------


def test_manual_is_package_data_with_every_section() -> None:
    path = manual_path()
    assert path.is_file(), path
    assert path.parent.name == "docs" and path.parent.parent.name == "buildfleet"
    text = _manual_text()
    headings = {
        lines[0] for lines in zip(text.splitlines(), text.splitlines()[1:], strict=False)
        if re.fullmatch(r"[-=~]{3,}", lines[1]) and len(lines[1]) >= len(lines[0]) > 0
    }
    for heading in REQUIRED_HEADINGS:
        assert heading in headings or any(h.startswith(heading) for h in headings), heading


def test_protocol_overview_uses_arrows_and_every_message() -> None:
    text = _manual_text()
    overview = text[text.index("Protocol overview"):]
    boss_lines = [ln for ln in overview.splitlines() if f"boss {ARROW} worker: {{" in ln]
    worker_lines = [ln for ln in overview.splitlines()
                    if f"worker {ARROW} boss: BM> {{" in ln]
    assert len(boss_lines) >= 7 and len(worker_lines) >= 8
    for name in PROTOCOL_MESSAGES:
        assert f"``{name}``" in overview, name
    assert '{"cmd": "cancel_board"' in overview
    assert f'boss {ARROW} worker: {{"cmd": "setup"' in overview
    assert f'worker {ARROW} boss: BM> {{"resp": "ready"' in overview


def test_manual_is_valid_restructuredtext() -> None:
    core = pytest.importorskip("docutils.core")
    warnings = io.StringIO()
    core.publish_doctree(
        _manual_text(),
        settings_overrides={"warning_stream": warnings, "report_level": 2,
                            "halt_level": 5},
    )
    assert warnings.getvalue() == ""


def test_every_option_is_described() -> None:
    text = _manual_text()
    literals = " ".join(re.findall(r"``([^`]+)``", text))
    literals += " " + " ".join(" ".join(ex.argv) for ex in _examples(text))
    missing = []
    for action in cmdline.make_parser()._actions:
        if action.help == "==SUPPRESS==" or not action.option_strings:
            continue
        if action.dest in ("help", "version"):
            continue
        if not any(re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", literals)
                   for opt in action.option_strings):
            missing.append("/".join(action.option_strings))
    assert missing == []


def test_examples_follow_the_conventions_and_parse() -> None:
    text = _manual_text()
    examples = _examples(text)
    runnable = [ex for ex in examples if ex.runnable]
    assert len(runnable) >= 15
    # Runnable blocks hold buildfleet commands only; anything else belongs in
    # a console block, which the runner leaves alone.
    for kind, start, body in _blocks(text):
        if kind == "bash":
            for line_no, line in body:
                assert line.startswith("$ buildfleet "), (start, line_no, line)
    for ex in examples:
        args = cmdline.parse_args(ex.argv)  # SystemExit here means a bad example
        if ex.runnable:
            assert not (args.dist or args.mach or args.kill_workers), ex
            assert not args.fetch_arch, ex
    assert any(ex.argv[:1] == ["--dist"] for ex in examples if not ex.runnable)


def _yaml_blocks(text: str) -> list[str]:
    """The ``.. code-block:: yaml`` blocks, dedented, indentation kept."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.strip() != ".. code-block:: yaml":
            continue
        body = []
        for cur in lines[i + 1:]:
            if cur.strip() and not cur.startswith("   "):
                break
            body.append(cur)
        out.append(textwrap.dedent("\n".join(body)))
    return out


def _commands(node: object) -> list[str]:
    """Every shell line of a CI file (GitLab ``script``, GitHub ``run``) that runs buildfleet."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("script", "run"):
                items = value if isinstance(value, list) else [value]
                found += [ln.strip() for item in items for ln in str(item).splitlines()
                          if ln.strip().startswith("buildfleet")]
            else:
                found += _commands(value)
    elif isinstance(node, list):
        for item in node:
            found += _commands(item)
    return found


def test_ci_examples_shard_without_board_lists_and_merge_every_shard() -> None:
    """The GitLab CI and GitHub Actions examples: N shard jobs and one merge job that
    always runs; every buildfleet command parses and names no boards by hand."""
    yaml = pytest.importorskip("yaml")
    text = _manual_text()
    docs = [yaml.safe_load(block) for block in _yaml_blocks(text)]
    gitlab = next(d for d in docs if "stages" in d)
    github = next(d for d in docs if "jobs" in d)
    shard_jobs = [j for j in gitlab.values() if isinstance(j, dict) and "parallel" in j]
    assert len(shard_jobs) == 1 and shard_jobs[0]["parallel"] >= 2
    merge = [j for j in gitlab.values() if isinstance(j, dict) and j.get("when") == "always"]
    assert merge and "junit" in merge[0]["artifacts"]["reports"]
    matrix = github["jobs"]["world"]["strategy"]["matrix"]["shard"]
    assert matrix == list(range(1, len(matrix) + 1))
    assert github["jobs"]["summary"]["if"] == "always()"
    subst = {"$CI_NODE_INDEX": "2", "$CI_NODE_TOTAL": "4", "${{ matrix.shard }}": "2",
             "${{ strategy.job-total }}": "4"}
    commands = _commands(gitlab) + _commands(github)
    shards = merges = 0
    for command in commands:
        for name, value in subst.items():
            command = command.replace(name, value)
        command = re.sub(r"\$\(for d in [^)]*\)", "-o out/shard-1 -o out/shard-2", command)
        args = cmdline.parse_args(shlex.split(command)[1:])
        assert args.terms == [] and args.boards == [] and args.exclude == [], command
        if args.shard:
            shards += 1
            assert args.shard == "2/4" and args.costs == "costs.json", command
        if args.summary:
            merges += 1
            assert len(args.output_dir) == 2 and args.export_costs and args.junit, command
    assert shards == 2 and merges == 2


# --- printing it --------------------------------------------------------------------------


def _check_printed(out: bytes) -> None:
    expected = manual_path().read_bytes()
    assert len(out) == manual_path().stat().st_size
    assert out == expected
    assert out.decode("utf-8").count(ARROW) == expected.decode("utf-8").count(ARROW) > 10


def test_show_manual_writes_exact_bytes_when_piped() -> None:
    code = "import sys; from buildfleet.manual import show_manual; sys.exit(show_manual())"
    proc = _run([sys.executable, "-c", code])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    _check_printed(proc.stdout)


def test_show_manual_to_a_stream() -> None:
    buf = io.BytesIO()
    assert show_manual(buf) == 0
    _check_printed(buf.getvalue())


@pytest.mark.parametrize("flag", ["-H", "--full-help"])
def test_full_help_prints_the_manual(flag: str) -> None:
    proc = _run([sys.executable, "-m", "buildfleet", flag])
    assert proc.returncode == 0, proc.stderr
    _check_printed(proc.stdout)


def test_full_help_console_script() -> None:
    exe = shutil.which("buildfleet")
    require(exe is not None, "the buildfleet console script is not on PATH")
    assert exe is not None
    proc = _run([exe, "-H"])
    assert proc.returncode == 0, proc.stderr
    _check_printed(proc.stdout)


def test_piped_into_a_closed_reader_is_quiet() -> None:
    code = "import sys; from buildfleet.manual import show_manual; sys.exit(show_manual())"
    env = dict(os.environ)
    env.pop("PAGER", None)
    proc = subprocess.run(f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} | head -c 10",
                          shell=True, capture_output=True, timeout=60, env=env, check=False)
    assert proc.stdout == manual_path().read_bytes()[:10]
    assert b"Traceback" not in proc.stderr and b"Error" not in proc.stderr


def _run_on_tty(env: dict[str, str]) -> bytes:
    """Run show_manual() with a pseudo-terminal as stdout; return what it drew."""
    code = "import sys; from buildfleet.manual import show_manual; sys.exit(show_manual())"
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer has gone
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return b"".join(chunks).replace(b"\r\n", b"\n")


def test_terminal_goes_through_pager(tmp_path: Path) -> None:
    captured = tmp_path / "paged"
    pager = tmp_path / "pager.sh"
    pager.write_text(f"#!/bin/sh\ncat > {shlex.quote(str(captured))}\necho PAGED\n")
    pager.chmod(0o755)
    env = dict(os.environ, PAGER=f"{pager} --some-option")
    drawn = _run_on_tty(env)
    assert captured.read_bytes() == manual_path().read_bytes()
    assert drawn.strip() == b"PAGED"


def test_terminal_without_any_pager_prints_plainly(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # no less on this PATH
    env.pop("PAGER", None)
    drawn = _run_on_tty(env)
    assert drawn == manual_path().read_bytes()


def test_missing_pager_command_falls_back_to_plain(tmp_path: Path) -> None:
    env = dict(os.environ, PAGER=str(tmp_path / "no-such-pager"))
    drawn = _run_on_tty(env)
    assert drawn == manual_path().read_bytes()


# --- the examples, run on the demo tree --------------------------------------------------


@pytest.mark.slow
def test_local_examples_work_on_the_demo_tree(tmp_path: Path) -> None:
    for gcc in ("gcc", *CROSS_GCCS):
        require(shutil.which(gcc) is not None, f"{gcc} is not installed")
    try:
        from buildfleet.demo import make_demo_tree
    except ImportError as exc:
        require(False, f"buildfleet.demo is not available yet: {exc}")
        raise
    src = tmp_path / "u-boot"
    home = tmp_path / "home"
    home.mkdir()
    make_demo_tree(src)
    env = dict(os.environ, HOME=str(home))
    env.pop("PAGER", None)
    examples = [ex for ex in _examples(_manual_text()) if ex.runnable]
    assert examples
    started = time.monotonic()
    for ex in examples:
        proc = subprocess.run([sys.executable, "-m", "buildfleet", *ex.argv], cwd=src,
                              env=env, capture_output=True, timeout=120, check=False)
        shown = shlex.join(["buildfleet", *ex.argv])
        assert proc.returncode == ex.expected_status, (
            f"manual line {ex.line_no}: `{shown}` exited {proc.returncode}, "
            f"manual says {ex.expected_status}\n"
            f"stdout: {proc.stdout.decode(errors='replace')[-2000:]}\n"
            f"stderr: {proc.stderr.decode(errors='replace')[-2000:]}")
        assert b"Traceback" not in proc.stderr, shown
    assert time.monotonic() - started < 120
