"""Bad input and hostile workers: one clear line, the run goes on, nothing escapes the tree.

The unit cases check the pieces directly (the writer's and the sink's refusals,
the liveness setting, the worker's out-of-disk classification, quoting where a
name meets a shell, the banner filter of ``git push``); the end-to-end cases
run real distributed builds over the sshd harness with a broken machine and
compare the output tree with a clean local build.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import shlex
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from bfrun import run_bf
from buildfleet.build.failure import exception_reason, infra_reason
from buildfleet.fleet.dispatch.policy import FifoPolicy
from buildfleet.fleet.dispatch.pool import JobPool
from buildfleet.fleet.dispatch.sink import ResultSink
from buildfleet.fleet.machines.ship import worker_command
from buildfleet.fleet.machines.ssh import remote_path
from buildfleet.fleet.machines.sshfilter import filtered_command, strip_preamble
from buildfleet.fleet.protocol import HEARTBEAT_INTERVAL
from buildfleet.fleet.remote.session import LIVENESS_SECONDS, liveness_seconds
from buildfleet.model import Board, BuildJob, BuildResult, Commit
from buildfleet.results.progress import Progress, RunCounts
from buildfleet.results.writer import ResultWriter, UnsafeResult
from faultkit import (
    Tree,
    assert_same_tree,
    demo_and_reference,
    hosts_in,
    read_tree,
    start_dist,
)
from sshd_harness import SshdHarness

COMMIT = Commit(0, "a" * 40, "First")
# Above two heartbeat intervals (see test_faults.py).
ENV = {"BUILDFLEET_LIVENESS_SECONDS": f"{HEARTBEAT_INTERVAL * 2 + 2:g}"}


# --- units --------------------------------------------------------------------------

def _writer(tmp_path: Path) -> ResultWriter:
    return ResultWriter(tmp_path / "out" / "br", [COMMIT])


@pytest.mark.parametrize("target, files", [
    ("../evil", {}), ("/etc", {}), ("a\0b", {}), ("..", {}), ("a b", {}),
    ("ok", {"../../x": b"x"}), ("ok", {"/tmp/x": b"x"}), ("ok", {"sub/x": b"x"}),
    ("ok", {"x\0y": b"x"}), ("ok", {"..": b"x"}),
])
def test_writer_refuses_names_that_escape(tmp_path: Path, target: str,
                                          files: dict[str, bytes]) -> None:
    writer = _writer(tmp_path)
    with pytest.raises(UnsafeResult):
        writer.write(BuildResult(target, 0, 0, files=files))
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written == []


def test_writer_keeps_dot_files_and_writes_once(tmp_path: Path) -> None:
    writer = _writer(tmp_path)
    path = writer.write(BuildResult("ok", 0, 0, files={".config": b"CONFIG_X=y\n"}))
    assert path is not None and (path / ".config").read_bytes() == b"CONFIG_X=y\n"
    assert writer.write(BuildResult("ok", 0, 1)) is None
    assert (path / "done").read_text() == "0"


def _sink(tmp_path: Path) -> tuple[JobPool, ResultSink]:
    board = Board("ok", "arm")
    pool = JobPool(FifoPolicy(), [BuildJob(board, (COMMIT,))])
    counts = RunCounts()
    sink = ResultSink(pool, _writer(tmp_path), counts, Progress(counts, enabled=False),
                      log=lambda _t: None)
    return pool, sink


def test_sink_discards_a_late_result_and_raises_for_an_unsafe_one(tmp_path: Path) -> None:
    pool, sink = _sink(tmp_path)
    pool.register("m1", 1, lambda _b: True)
    pool.register("m2", 1, lambda _b: True)
    assert pool.take("m1") is not None
    pool.machine_failed("m1")
    pool.remove_executor("m1")  # given up: the board goes back
    assert not sink.accept("m1", BuildResult("ok", 0, 0))  # its late result is dropped
    assert pool.take("m2") is not None
    with pytest.raises(UnsafeResult):
        sink.accept("m2", BuildResult("ok", 0, 0, files={"../x": b""}))
    assert sink.accept("m2", BuildResult("ok", 0, 0))
    assert not sink.accept("m2", BuildResult("ok", 0, 0))  # never written twice
    assert sink.discarded == 3


def test_liveness_is_configurable_but_30_s_by_default() -> None:
    assert LIVENESS_SECONDS == 30.0
    assert liveness_seconds({}) == 30.0
    assert liveness_seconds({"BUILDFLEET_LIVENESS_SECONDS": "2.5"}) == 2.5
    for bad in ("", "x", "0", "-3"):
        assert liveness_seconds({"BUILDFLEET_LIVENESS_SECONDS": bad}) == 30.0


def test_out_of_disk_is_infrastructure_but_a_compiler_error_is_not(tmp_path: Path) -> None:
    enospc = BuildResult("b", 0, 2, stderr="foo.o: No space left on device\n")
    assert infra_reason(enospc, tmp_path) == "out of disk space (No space left on device)"
    compile_error = BuildResult("b", 0, 2, stderr="b.c:3:1: error: expected ';'\n")
    assert infra_reason(compile_error, tmp_path) is None
    assert infra_reason(BuildResult("b", 0, 0, stderr="No space left on device"), None) is None


def test_a_full_disk_met_by_buildfleet_itself_is_out_of_disk_space() -> None:
    """The disk can fill while buildfleet writes (a kept directory's state, a
    checkout), not only while make does: the reason is the same either way (seen
    in the disk-full fault test as 'exception: [Errno 28] ...')."""
    for code in (errno.ENOSPC, errno.EDQUOT):
        reason = exception_reason(OSError(code, os.strerror(code)))
        assert reason.startswith("out of disk space ("), reason
    assert exception_reason(OSError(errno.ENOENT, "gone")) == "exception: [Errno 2] gone"
    assert exception_reason(ValueError("bug")) == "exception: bug"


@pytest.mark.parametrize("name", ["a b", "x;rm -rf y", "$(id)", "it's", "`x`", "~user", "-n"])
def test_shell_words_survive_quoting(tmp_path: Path, name: str) -> None:
    """Paths reach the remote shell as one word each, whatever they contain."""
    cmd = worker_command(f"/tmp/{name}/t.pyz", f"~/{name}", buildman_path=f"/opt/{name}/bf")
    words = shlex.split(cmd)
    assert words[0] == f"/opt/{name}/bf"
    argv = subprocess.run(["sh", "-c", f"printf '%s\\n' {remote_path('~/' + name)} "
                           f"{remote_path('/p/' + name)}"], capture_output=True, text=True,
                          check=True, env={**os.environ, "HOME": "/h"}).stdout.splitlines()
    assert argv == [f"/h/{name}", f"/p/{name}"]
    shipped = worker_command(f"/tmp/{name}/t.pyz", "~/w")
    assert shlex.split(shipped)[:2] == ["python3", f"/tmp/{name}/t.pyz"]


def test_push_filter_drops_a_banner_and_keeps_the_stream(tmp_path: Path) -> None:
    token = "BUILDFLEET-PUSH-t"
    cmd = filtered_command(token, "printf '0008abc\\n'")
    data = subprocess.run(["sh", "-c", f"echo Welcome; echo {token}x; {cmd}"],
                          capture_output=True, check=True).stdout
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    out = tmp_path / "out"
    with out.open("wb") as f:
        assert strip_preamble(r, f.fileno(), token.encode() + b"\n")
    os.close(r)
    assert out.read_bytes() == b"0008abc\n"


# --- bad input on the command line ---------------------------------------------------

def test_malformed_settings_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ini"
    bad.write_text("[machines\nthis is not ini\n")
    run = run_bf(["--dist", "-o", str(tmp_path / "o"), "-G", str(bad)], tmp_path)
    assert run.returncode == 1, str(run)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, str(run)
    assert str(bad) in lines[0] or "bad.ini" in lines[0], str(run)


# --- end to end over sshd -------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Tree]:
    return demo_and_reference(tmp_path_factory.mktemp("input"), 6)



@pytest.mark.sshd
def test_unknown_machine_is_one_line(demo: tuple[Path, Tree], fleet: SshdHarness,
                                     tmp_path: Path) -> None:
    tree, _ = demo
    run = start_dist(tree, tmp_path / "o", fleet.settings_file, "--use-machines", "Alpha,Nope")
    rc, stdout, stderr = run.wait()
    assert rc == 1, stdout + stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Nope" in lines[0], stderr


@pytest.mark.sshd
@pytest.mark.slow
def test_missing_worker_program_drops_the_machine(demo: tuple[Path, Tree], fleet: SshdHarness,
                                                  tmp_path: Path) -> None:
    tree, want = demo
    name = fleet.reachable[0].name
    out = tmp_path / "o"
    run = start_dist(tree, out, fleet.settings_file, "--use-machines", name,
                     "--machines-buildman-path", "/no/such/dir/buildfleet", env=ENV)
    rc, stdout, stderr = run.wait()
    assert rc == 100, stdout + stderr
    # Said once, with the reason; not a failure of the machine, so never retried.
    said = [ln for ln in stdout.splitlines() if ln.startswith(f"  {name}: cannot be used:")]
    assert len(said) == 1 and "No such file" in said[0], stdout
    assert "/no/such/dir/buildfleet --worker did not start a worker" in said[0], stdout
    assert f"Quarantined {name}" not in stdout and "Worker failed" not in stdout, stdout
    assert_same_tree(read_tree(out / "demo"), want)


@pytest.mark.sshd
@pytest.mark.slow
def test_machine_without_python3_is_dropped(demo: tuple[Path, Tree], fleet: SshdHarness,
                                            tmp_path: Path) -> None:
    tree, want = demo
    m = fleet.reachable[0]
    bashrc = m.home / ".bashrc"
    old = bashrc.read_text() if bashrc.exists() else None
    bashrc.write_text("export PATH=/nonexistent\n")
    try:
        out = tmp_path / "o"
        run = start_dist(tree, out, fleet.settings_file, "--use-machines", m.name, env=ENV)
        rc, stdout, stderr = run.wait()
    finally:
        if old is None:
            bashrc.unlink()
        else:
            bashrc.write_text(old)
    assert rc == 100, stdout + stderr
    assert f"{m.name}: unavailable: python3 not found" in stdout, stdout
    assert_same_tree(read_tree(out / "demo"), want)


FAKE_WORKER = textwrap.dedent("""\
    #!/usr/bin/python3
    import base64, json, os, subprocess, sys
    MODE = {mode!r}
    def send(obj):
        sys.stdout.write("BM> " + json.dumps(obj) + "\\n")
        sys.stdout.flush()
    send({{"resp": "ready", "nthreads": 1, "slots": 1, "version": "0", "protocol": 1}})
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.get("cmd")
        if cmd == "setup":
            d = os.path.expanduser("~/fake-worker.git")
            subprocess.run(["git", "init", "-q", "--bare", d], check=True)
            send({{"resp": "setup_done", "work_dir": d, "git_dir": d}})
        elif cmd == "configure":
            send({{"resp": "configure_done", "toolchains": msg.get("toolchains") or {{}}}})
        elif cmd == "build_prepare":
            send({{"resp": "build_started", "num_threads": 1}})
            send({{"resp": "build_prepare_done"}})
        elif cmd == "build_board":
            board = "../evil" if MODE == "board" else msg["board"]
            files = {{"../../x": base64.b64encode(b"pwned").decode()}} if MODE == "file" else {{}}
            if MODE == "nul":
                board = msg["board"] + "\\0x"
            send({{"resp": "build_result", "board": board, "commit_upto": 0,
                   "return_code": 0, "stdout": "", "stderr": "", "duration": 0.1,
                   "files": files}})
        elif cmd == "quit":
            send({{"resp": "quit_ack"}})
            break
        elif cmd == "build_done":
            send({{"resp": "build_done", "exceptions": 0}})
""")


@pytest.mark.sshd
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["board", "file", "nul"])
def test_result_escaping_the_tree_is_refused(demo: tuple[Path, Tree], fleet: SshdHarness,
                                             tmp_path: Path, mode: str) -> None:
    tree, want = demo
    m = fleet.reachable[0]
    assert m.user is not None
    fake = m.home / "fake-worker"
    fake.write_text(FAKE_WORKER.format(mode=mode))
    fake.chmod(0o755)
    shutil.chown(fake, m.user, m.user)
    nest = tmp_path / "a" / "b"
    out = nest / "o"
    try:
        run = start_dist(tree, out, fleet.settings_file, "--use-machines", m.name,
                         "--machines-buildman-path", str(fake), env=ENV)
        rc, stdout, stderr = run.wait()
    finally:
        fake.unlink()
        shutil.rmtree(m.home / "fake-worker.git", ignore_errors=True)
    assert rc == 100, stdout + stderr
    failed = [ln for ln in stdout.splitlines() if ln.startswith(f"Worker failed on {m.name}")]
    assert failed, stdout
    assert "evil" in failed[0] or "../../x" in failed[0] or "\\x00" in failed[0], failed[0]
    assert_same_tree(read_tree(out / "demo"), want)
    escaped = [p for p in tmp_path.rglob("*") if p.name in ("x", "evil", "pwned")]
    assert escaped == []
    assert "Traceback" not in stdout + stderr


@pytest.mark.sshd
@pytest.mark.slow
def test_output_dir_with_spaces_and_metacharacters(demo: tuple[Path, Tree], fleet: SshdHarness,
                                                   tmp_path: Path) -> None:
    tree, want = demo
    out = tmp_path / "my out;$(touch pwned) 'q'"
    run = start_dist(tree, out, fleet.settings_file, "--use-machines",
                     ",".join(m.name for m in fleet.reachable), env=ENV)
    rc, stdout, stderr = run.wait()
    assert rc == 100, stdout + stderr
    assert_same_tree(read_tree(out / "demo"), want)
    assert any(hosts_in(out / "demo").get(m.name) for m in fleet.reachable), stdout
    assert not list(tmp_path.rglob("pwned"))


def test_protocol_example_is_json() -> None:
    """The fake worker's replies are plain protocol lines (a guard for the template)."""
    line = json.dumps({"files": {"../../x": base64.b64encode(b"p").decode()}})
    assert json.loads(line)["files"]["../../x"] == "cA=="
