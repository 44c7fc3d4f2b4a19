"""Machines: selection, probing and judging, the --mach report, --kill-workers, fetching."""

from __future__ import annotations

import functools
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from buildfleet.cmdline import options, parse_args
from buildfleet.fleet.machines.probe import MachineStatus, judge, probe_script
from buildfleet.fleet.machines.report import (
    ToolchainCheck,
    check_toolchains,
    notes,
    run_kill_workers,
    run_mach,
)
from buildfleet.fleet.machines.selection import MachinesError, select_machines
from buildfleet.fleet.machines.ssh import SshResult
from buildfleet.options import MachineOptions
from buildfleet.settings import MachineConfig, Settings, load_settings, parse_settings
from ci_skip import require
from sshd_harness import SshdHarness

CROSS = ("aarch64-linux-gnu-gcc", "arm-linux-gnueabihf-gcc", "riscv64-linux-gnu-gcc")
LOCAL_ARCHS = {"aarch64", "arm", "riscv64", "sandbox"}
SETTINGS_TEXT = """
[machines]
Zeta = z.example
alpha = user@a.example
Mid

[machine:Zeta]
max_boards = 4
"""


def _settings() -> Settings:
    return parse_settings(SETTINGS_TEXT, Path("/nonexistent/.buildman"))


# --- selection ----------------------------------------------------------------------------

def test_select_keeps_case_and_order() -> None:
    settings = _settings()
    assert [m.name for m in select_machines(settings, None)] == ["Zeta", "alpha", "Mid"]
    chosen = select_machines(settings, "Mid, Zeta,Mid")
    assert [(m.name, m.host) for m in chosen] == [("Mid", "Mid"), ("Zeta", "z.example")]
    assert chosen[1].max_boards == 4


def test_select_unknown_names_them_and_the_known_ones() -> None:
    with pytest.raises(MachinesError) as exc:
        select_machines(_settings(), "zeta,nope")
    assert str(exc.value) == ("--use-machines: unknown machines zeta, nope "
                              "(known: Zeta, alpha, Mid)")


# --- probing and judging (the probe script runs for real, on /usr/bin/python3) -------------

@functools.cache
def _local_probe() -> SshResult:
    proc = subprocess.run(["/usr/bin/python3", "-", "~"], input=probe_script().encode(),
                          capture_output=True, timeout=60, check=False)
    return SshResult(proc.returncode, proc.stdout, proc.stderr)


def _cfg(**kw: object) -> MachineConfig:
    return MachineConfig(name="M", host="m.example", **kw)  # type: ignore[arg-type]


def test_probe_script_ranks_toolchains_as_toolchains_py_does() -> None:
    """The script run on machines cannot import buildfleet, so it restates the
    toolchain priorities: they must be the very numbers of ``toolchains.py``."""
    from buildfleet import toolchains as tc

    script: dict[str, object] = {"__name__": "probe_script"}
    exec(compile(probe_script(), "probe_script.py", "exec"), script)  # noqa: S102 - our file
    assert script["SUFFIXES"] == tc.SUFFIX_PRIORITY
    for name in ("PRIO_DOWNLOAD", "PRIO_SUFFIX_BASE", "PRIO_NO_SUFFIX", "PRIO_PATH_BASE"):
        assert script[name] == getattr(tc, name), name
    rank = script["suffix_priority"]
    assert callable(rank)
    for path in ("/opt/x/bin/arm-none-eabi-gcc", "/usr/bin/aarch64-linux-gnu-gcc",
                 "/usr/bin/riscv64-unknown-linux-gnu-gcc", "/usr/bin/gcc",
                 "/t/or1k-elf-gcc", "/t/m68k-uclinux-gcc", "/t/weird-gcc"):
        for base in (tc.PRIO_SUFFIX_BASE, tc.PRIO_PATH_BASE):
            assert rank(path, base) == tc._suffix_priority(path, base), (path, base)


def test_probe_script_reports_the_machine_and_its_own_toolchains() -> None:
    require(all(shutil.which(c) for c in CROSS), "the Debian cross compilers are not installed")
    status = judge(_cfg(busy_load=100, min_disk_mb=1, min_mem_mb=1), _local_probe())
    assert status.reachable and status.available and status.reason == ""
    data = status.data
    assert data["arch"] == os.uname().machine
    assert data["cpus"] == os.cpu_count()
    assert data["python_version"].startswith("3.")
    assert data["tools"]["make"].startswith("GNU Make")
    assert data["tools"]["git"].startswith("git version")
    assert data["tools"]["python3"].startswith("Python 3.")
    assert "dtc" in data["tools"] and "swig" in data["tools"]
    assert status.toolchains["aarch64"] == "/usr/bin/aarch64-linux-gnu-gcc"
    assert status.toolchains["arm"] == "/usr/bin/arm-linux-gnueabihf-gcc"
    assert status.toolchains["sandbox"] == "/usr/bin/gcc"
    assert "c89" not in status.toolchains
    st = os.statvfs(os.path.expanduser("~"))
    assert abs(status.disk_mb - st.f_bavail * st.f_frsize // 2**20) < 200  # type: ignore[operator]


def test_probe_reads_swig_version(tmp_path: Path) -> None:
    """swig prints its version after a blank line and only knows ``-version``."""
    swig = tmp_path / "swig"
    swig.write_text("#!/bin/sh\n[ \"$1\" = -version ] || exit 1\n"
                    "printf '\\nSWIG Version 4.1.0\\n\\nCompiled with g++\\n'\n")
    swig.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["/usr/bin/python3", "-", "~"], input=probe_script().encode(),
                          capture_output=True, timeout=60, check=False, env=env)
    status = judge(_cfg(busy_load=100, min_disk_mb=1, min_mem_mb=1),
                   SshResult(proc.returncode, proc.stdout, proc.stderr))
    assert status.tools["swig"] == "SWIG Version 4.1.0"


def test_unavailable_reasons() -> None:
    probe = _local_probe()
    cpus = os.cpu_count()
    busy = judge(_cfg(busy_load=-1.0), probe)
    assert busy.reachable and not busy.available
    assert busy.reason.startswith("busy (load ") and busy.reason.endswith(f" with {cpus} cpus)")
    disk = judge(_cfg(busy_load=100, min_disk_mb=10**9), probe)
    assert disk.reason == f"low disk ({disk.disk_mb} MB available)"
    mem = judge(_cfg(busy_load=100, min_mem_mb=10**9), probe)
    assert mem.reason == f"low memory ({mem.mem_mb} MB available)"
    old = SshResult(0, probe.stdout.replace(b'"python_version": "3.', b'"python_version": "2.'),
                    b"")
    assert judge(_cfg(busy_load=100), old).reason.startswith("python3 too old (2.")
    bad = judge(_cfg(), SshResult(0, b"Welcome to the machine\n", b""))
    assert not bad.reachable and bad.reason == "invalid probe response: Welcome to the machine"
    none = judge(_cfg(), SshResult(127, b"", b"bash: line 1: python3: command not found\n"))
    assert none.reason == "python3 not found" and not none.available
    lost = judge(_cfg(), SshResult(255, b"", b"x\nssh: connect to host m port 22: No route\n",
                                   "SSH to m.example: ssh: connect to host m port 22: No route"))
    assert not lost.reachable and lost.reason.startswith("SSH to m.example: ssh: connect")


def _status(name: str, tools: dict[str, str | None], chains: dict[str, str],
            versions: dict[str, str | None] | None = None) -> MachineStatus:
    return MachineStatus(config=MachineConfig(name=name, host=name), reachable=True,
                         available=True, data={"arch": "x86_64", "threads": 4, "tools": tools},
                         toolchains=chains, toolchain_versions=versions or {})


def test_toolchain_check_and_notes() -> None:
    a = _status("a", {"gcc": "gcc 12", "dtc": "1.6.1", "swig": "SWIG Version 4.1.0"},
                {"arm": "/x/arm-linux-gcc"}, {"arm": "gcc-13.2.0-nolibc"})
    b = _status("b", {"gcc": "gcc 12", "dtc": "1.7.0", "swig": "SWIG Version 4.1.0"},
                {"arm": "/x", "riscv64": "/y"})
    c = _status("c", {"gcc": "gcc 12", "dtc": None, "swig": "SWIG Version 4.2.1"},
                {"riscv64": "/y"})
    local = {"arm", "riscv64", "riscv"}
    versions = {"arm": "gcc-14.2.0-nolibc"}
    checks = [check_toolchains(s, local, versions, {"riscv": ["riscv64"]}) for s in (a, b, c)]
    assert checks[0] == ToolchainCheck(missing=["riscv", "riscv64"],
                                       wrong_version={"arm": "gcc-13.2.0-nolibc"})
    assert checks[1] == ToolchainCheck()
    assert [ch.cell(s, local) for s, ch in zip((a, b, c), checks, strict=True)] == [
        "2 missing, 1 wrong version", "OK", "1 missing"]
    assert notes([a, b, c], checks) == [
        "  a: need riscv, riscv64, arm(have gcc-13.2.0-nolibc)",
        "  c: need arm",
        "Host tool version drift (may cause per-machine differences):",
        "  dtc: 1.6.1 (a); 1.7.0 (b); missing (c)",
        "  swig: SWIG Version 4.1.0 (a, b); SWIG Version 4.2.1 (c)",
    ]


# --- through the real sshd ----------------------------------------------------------------

def _rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|-"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells
    return rows


def _mach(h: SshdHarness, *extra: str, local: set[str] = LOCAL_ARCHS) -> tuple[int, str, str]:
    settings = load_settings(h.settings_file)
    args = parse_args(["--mach", "-G", str(h.settings_file), *extra])
    out, err = io.StringIO(), io.StringIO()
    rc = run_mach(options(args, MachineOptions), settings, local, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.sshd
def test_mach_table_shows_two_available_and_the_unreachable_reason(
        sshd_harness: SshdHarness) -> None:
    rc, out, err = _mach(sshd_harness)
    assert rc == 0
    assert out.splitlines()[0] == "Machine pool: 2 of 3 machines available"
    rows = _rows(out)
    assert rows["Name"] == ["Name", "Arch", "Threads", "Load", "Mem GB", "Disk GB",
                            "Toolchains", "Status"]
    threads = len(os.sched_getaffinity(0))
    for name in ("Alpha", "beta"):
        row = rows[name]
        assert row[1] == os.uname().machine
        assert row[2] == str(threads)
        assert float(row[3]) >= 0 and float(row[4]) > 0 and float(row[5]) > 0
        assert row[6] == "OK"
        assert row[7] == f"available, max_boards {threads}"
    gone = rows["Offline"]
    assert gone[1:7] == ["-", "-", "-", "-", "-", "-"]
    assert gone[7].startswith("SSH to bf-gone: ssh: connect to host 127.0.0.1 port ")
    assert gone[7].endswith(": Connection refused")
    assert "Probing 3 machines..." in err
    assert "drift" not in out  # both machines run the same host tools


@pytest.mark.sshd
def test_mach_reports_missing_archs(sshd_harness: SshdHarness) -> None:
    rc, out, _ = _mach(sshd_harness, "--use-machines", "beta",
                       local=LOCAL_ARCHS | {"m68k", "xtensa"})
    assert rc == 0
    rows = _rows(out)
    assert set(rows) == {"Name", "beta"}
    assert rows["beta"][6] == "2 missing"
    assert "  beta: need m68k, xtensa" in out.splitlines()


@pytest.mark.sshd
def test_mach_from_the_command_line(sshd_harness: SshdHarness) -> None:
    proc = subprocess.run(["buildfleet", "--mach", "-G", str(sshd_harness.settings_file)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "Machine pool: 2 of 3 machines available"
    rows = _rows(proc.stdout)
    assert rows["Alpha"][7].startswith("available, max_boards ")
    assert rows["beta"][7].startswith("available, max_boards ")
    assert rows["Offline"][7].endswith("Connection refused")


@pytest.mark.sshd
def test_unknown_use_machines_is_one_line_error(sshd_harness: SshdHarness) -> None:
    proc = subprocess.run(["buildfleet", "--mach", "--use-machines", "alpha",
                           "-G", str(sshd_harness.settings_file)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "buildfleet: error: --use-machines: unknown machine alpha "
        "(known: Alpha, beta, Offline)"]


def _start_fake_worker(h: SshdHarness, index: int) -> int:
    """A long-running process whose argv holds --worker, plus a lock, on a machine."""
    # Its argv looks like a shipped worker's (a buildfleet-*.pyz path, --worker).
    out = h.ssh(h.machines[index],
                "mkdir -p ~/.buildfleet-worker/.tool && echo 1 > ~/.buildfleet-worker/.lock; "
                "echo 'import time; time.sleep(60)' > ~/.buildfleet-worker/.tool/buildfleet-0.py; "
                "setsid python3 ~/.buildfleet-worker/.tool/buildfleet-0.py --worker "
                "</dev/null >/dev/null 2>&1 & echo $!")
    return int(out.strip())


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.sshd
def test_kill_workers_stops_only_this_users_workers(sshd_harness: SshdHarness) -> None:
    h = sshd_harness
    alpha_pid = _start_fake_worker(h, 0)
    beta_pid = _start_fake_worker(h, 1)
    try:
        assert _alive(alpha_pid) and _alive(beta_pid)
        settings = load_settings(h.settings_file)
        out, err = io.StringIO(), io.StringIO()
        args = parse_args(["--kill-workers", "--use-machines", "Alpha,Offline"])
        assert run_kill_workers(options(args, MachineOptions), settings, out=out, err=err) == 0
        lines = out.getvalue().splitlines()
        assert lines[0] == "  Alpha: killed 1"
        assert lines[1].startswith("  Offline: FAILED: SSH to bf-gone: ")
        assert len(lines) == 2
        deadline = time.monotonic() + 5
        while _alive(alpha_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(alpha_pid)
        assert _alive(beta_pid)  # same host, another user: untouched
        assert h.ssh(h.machines[0], "test -e ~/.buildfleet-worker/.lock && echo yes || "
                     "echo no").strip() == "no"
        assert h.ssh(h.machines[1], "cat ~/.buildfleet-worker/.lock").strip() == "1"
        proc = subprocess.run(["buildfleet", "--kill-workers", "-G", str(h.settings_file)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[:2] == ["  Alpha: no workers", "  beta: killed 1"]
        assert not _alive(beta_pid) or _wait_dead(beta_pid)
    finally:
        for pid in (alpha_pid, beta_pid):
            if _alive(pid):
                os.kill(pid, 9)


def _wait_dead(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def toolchain_server(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 laid out like kernel.org's crosstool directory.

    It offers one m68k toolchain whose gcc is a script wrapping /usr/bin/gcc.
    """
    root = tmp_path / "www"
    host = os.uname().machine
    folder = root / host / "13.2.0"
    folder.mkdir(parents=True)
    gcc = b'#!/bin/sh\nexec /usr/bin/gcc "$@"\n'
    tarball = folder / f"{host}-gcc-13.2.0-nolibc-m68k-linux.tar.xz"
    with tarfile.open(tarball, "w:xz") as tar:
        for name, mode, data in (("gcc-13.2.0-nolibc", 0o755, None),
                                 ("gcc-13.2.0-nolibc/m68k-linux", 0o755, None),
                                 ("gcc-13.2.0-nolibc/m68k-linux/bin", 0o755, None),
                                 ("gcc-13.2.0-nolibc/m68k-linux/bin/m68k-linux-gcc", 0o755,
                                  gcc)):
            info = tarfile.TarInfo(name)
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{{host}}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.sshd
def test_machines_fetch_arch_fetches_on_the_machine_and_reprobes(
        sshd_harness: SshdHarness, toolchain_server: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    h = sshd_harness
    beta = h.machines[1]
    monkeypatch.setenv("BUILDFLEET_FETCH_URL", toolchain_server)
    try:
        rc, out, err = _mach(h, "--use-machines", "beta", "--machines-fetch-arch",
                             local=LOCAL_ARCHS | {"m68k"})
        assert rc == 0, err
        assert "Fetching 1 toolchains on 1 machines..." in err
        assert "Failed to fetch" not in err, err
        rows = _rows(out)
        assert rows["beta"][6] == "OK", out + err
        gcc = h.ssh(beta, "ls ~/.buildman-toolchains/gcc-13.2.0-nolibc/m68k-linux/bin/")
        assert gcc.split() == ["m68k-linux-gcc"]
        # The probe itself now finds it on the machine.
        rc, out, _ = _mach(h, "--use-machines", "beta", local=LOCAL_ARCHS | {"m68k"})
        assert _rows(out)["beta"][6] == "OK"
    finally:
        h.ssh(beta, "rm -rf ~/.buildman-toolchains ~/.buildman")


@pytest.mark.sshd
def test_probe_json_from_a_machine(sshd_harness: SshdHarness) -> None:
    """The machine user has only Debian's python3, and the probe works there."""
    proc = subprocess.run([*h_ssh(sshd_harness), "bf-m1", "--", "python3 - ~"],
                          input=probe_script(), capture_output=True, text=True, timeout=60)
    data = json.loads(proc.stdout)
    assert data["python_version"] == subprocess.run(
        ["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True).stdout.strip()
    assert data["work_dir"] == str(sshd_harness.machines[0].home)


def h_ssh(h: SshdHarness) -> list[str]:
    return ["ssh", "-F", str(h.ssh_config)]
