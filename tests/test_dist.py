"""Distributed builds end to end: ``--dist`` over real OpenSSH, compared with local builds.

Why: a distributed build is only trustworthy if it is indistinguishable from a
local one. These tests run the real ``buildfleet`` command against the
real-sshd harness (two loopback machines, each a separate login, plus one
unreachable machine) and compare output trees file by file with a local build
of the same selection, check routing by toolchain, the forwarding of every
build flag, the closing lines and the error paths, and that no worker process
survives any test. One demo tree and its local/dist/no-local builds are made
once per module and shared.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bfrun import without_job_control
from buildfleet.demo import DemoTree, extra_target, make_demo_tree
from faultkit import processes, uids_of
from sshd_harness import SshdHarness
from sshd_harness import TestMachine as Machine

pytestmark = pytest.mark.sshd

RUN_TIMEOUT = 240
# Files whose bytes must be identical wherever a board was built.
# out-cmd too: with one make jobserver per machine, make's command line no
# longer depends on how many boards were in flight.
SAME_BYTES = ("done", "err", "sizes", "u-boot.sizes", "u-boot.cfg", "uboot.env", "out-cmd")
TOOLS = ("gcc", "ld", "objcopy", "nm", "objdump", "size", "ar", "strip", "readelf", "cpp")
EXTRA_ARCH = "m68k"
EDIT_MARKER = "bf_uncommitted_marker"


@dataclass
class Run:
    """One finished ``buildfleet`` command."""

    argv: list[str]
    rc: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (f"buildfleet {' '.join(self.argv)} -> {self.rc}\n--- stdout\n{self.stdout[-4000:]}"
                f"\n--- stderr\n{self.stderr[-3000:]}")


def buildfleet(argv: list[str], cwd: Path) -> Run:
    """Run the real command line (the harness put BUILDFLEET_SSH_COMMAND in os.environ)."""
    proc = subprocess.run([sys.executable, "-m", "buildfleet", *argv], cwd=cwd,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    return Run(argv, proc.returncode, proc.stdout, proc.stderr)


def write_settings(path: Path, machines: list[Machine], extra: str = "",
                   kept: bool = False) -> Path:
    """A ~/.buildman naming ``machines`` (with the harness's relaxed thresholds) + ``extra``.

    Without ``kept``, build directories are not kept (``keep_build_dirs_mb = 0``):
    the trees here are compared with ``out-cmd``, and a worker's work directory is
    shared by every run of a tree (whatever ``-o``), so a later run would build on
    an earlier one's kept directory and its ``out-cmd`` lack the configure line
    (test_keep_dist covers workers' kept directories; test_faults runs with them).
    """
    lines = [] if kept else ["[global]", "keep_build_dirs_mb = 0", ""]
    lines += ["[machines]", *(f"{m.name} = {m.alias}" for m in machines)]
    for m in machines:
        lines += ["", f"[machine:{m.name}]", "busy_load = 100", "min_disk_mb = 10",
                  "min_mem_mb = 10"]
    path.write_text("\n".join(lines) + "\n\n" + extra)
    return path


def commit_dirs(base: Path) -> list[Path]:
    return sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))


def board_dirs(base: Path, target: str) -> list[Path]:
    return [d / target for d in commit_dirs(base) if (d / target).is_dir()]


def host_of(build: Path) -> str | None:
    host = build / "host"
    return host.read_text().strip() if host.exists() else None


def arch_line(build: Path) -> str:
    lines = (build / "toolchain").read_text().splitlines()
    return next((ln for ln in lines if ln.startswith("arch ")), "")


def normalised_reproducer(build: Path) -> str | None:
    """The ``reproduce`` script with make's job count blanked (it is per machine)."""
    script = build / "reproduce"
    if not script.exists():
        return None
    return re.sub(r"(-j ?|NPROC=)\d+", r"\1N", script.read_text())


def _bytes(path: Path) -> bytes:
    """A result file's bytes; for ``err``, without make's job-control line.

    ``make: *** Waiting for unfinished jobs....`` is printed only when another
    job of a parallel make is still running as one fails: it depends on ``-j``
    (1 for the local run's 12 boards on 2 CPUs, 2 for a remote slot) and on
    timing, not on the build. buildman's summary drops it too. (kbuild's
    second make, which compiles, prints it as ``make[1]: ***``.)
    """
    data = path.read_bytes()
    return without_job_control(data) if path.name == "err" else data


def tree_differences(local: Path, other: Path) -> list[str]:
    """How ``other`` differs from ``local`` (same boards x commits expected)."""
    diffs: list[str] = []
    local_builds = sorted(b.relative_to(local) for d in commit_dirs(local) for b in d.iterdir()
                          if b.is_dir())
    other_builds = sorted(b.relative_to(other) for d in commit_dirs(other) for b in d.iterdir()
                          if b.is_dir())
    if local_builds != other_builds:
        diffs.append(f"different builds: {set(local_builds) ^ set(other_builds)}")
    for rel in local_builds:
        a, b = local / rel, other / rel
        if not b.is_dir():
            continue
        names_a = {p.name for p in a.iterdir()} - {"host"}
        names_b = {p.name for p in b.iterdir()} - {"host"}
        if names_a != names_b:
            diffs.append(f"{rel}: file names differ: {sorted(names_a ^ names_b)}")
        for name in SAME_BYTES:
            fa, fb = a / name, b / name
            if fa.exists() and fb.exists() and _bytes(fa) != _bytes(fb):
                if name == "err" and _compiler_lines(fa) == _compiler_lines(fb):
                    continue
                diffs.append(f"{rel}/{name} differs")
        # The reproducer: the same script wherever the board was built (make -j may differ).
        if normalised_reproducer(a) != normalised_reproducer(b):
            diffs.append(f"{rel}/reproduce differs")
        if arch_line(a) != arch_line(b):
            diffs.append(f"{rel}/toolchain: {arch_line(a)!r} != {arch_line(b)!r}")
    return diffs


def _compiler_lines(err: Path) -> list[str]:
    """``err`` without make's own lines, sorted.

    Every make may run jobs in parallel (the machine's jobserver), and then
    make fixes neither the order of the compilers' messages nor its own:
    "Waiting for unfinished jobs" comes and goes, and make 4.3 names the
    failed recipe's line one line early when the failure is reaped while it
    is starting other jobs.
    """
    return sorted(ln for ln in err.read_text().splitlines() if not ln.startswith("make"))


def machine_boards(stdout: str) -> dict[str, int]:
    """Boards per remote machine from the ``Machines:`` closing block."""
    lines = stdout.splitlines()
    assert "Machines:" in lines, stdout
    block = lines[lines.index("Machines:") + 1:]
    found: dict[str, int] = {}
    for line in block:
        match = re.match(r"^  (\S+): (\d+) boards, ", line)
        if match and match.group(1) == "local":
            continue
        if match:
            found[match.group(1)] = int(match.group(2))
        elif not line.startswith("  "):
            break
    return found


# ---- process hygiene ------------------------------------------------------------------

def _harness_processes(harness: SshdHarness) -> list[str]:
    """Processes of the machine users, and boss-side ssh clients of the harness."""
    uids = uids_of(m.user for m in harness.reachable if m.user)
    found = []
    for proc in processes():
        cmd = proc.cmdline.strip()
        if proc.uid in uids and not cmd.startswith("sshd:"):
            found.append(f"{proc.pid} (uid {proc.uid}): {cmd}")
        elif (proc.argv and os.path.basename(proc.argv[0]) == "ssh"
              and str(harness.ssh_config) in cmd):
            found.append(f"{proc.pid} (boss ssh): {cmd}")
    return found


@pytest.fixture(autouse=True)
def no_leftover_workers(sshd_harness: SshdHarness) -> Iterator[None]:
    """After every test no worker (nor any other process) runs as a machine user."""
    yield
    deadline = time.monotonic() + 10
    left = _harness_processes(sshd_harness)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _harness_processes(sshd_harness)
    assert not left, f"processes left behind: {left}"


# ---- shared trees -----------------------------------------------------------------------

@dataclass
class Fleet:
    """The module's demo tree, settings and the three reference builds of ``-b demo``."""

    root: Path
    tree: DemoTree
    settings: Path
    local: Run
    dist: Run
    no_local: Run

    @property
    def src(self) -> Path:
        return self.tree.path

    def out(self, name: str) -> Path:
        return self.root / name

    def build(self, *argv: str, out: str, settings: Path | None = None) -> Run:
        return buildfleet(["-G", str(settings or self.settings), "-o", str(self.out(out)),
                           *argv], self.src)


@pytest.fixture(scope="module")
def fleet(sshd_harness: SshdHarness, tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    root = tmp_path_factory.mktemp("dist")
    tree = make_demo_tree(root / "src", boards=12)
    settings = write_settings(root / "buildman.cfg", sshd_harness.machines)
    # No -j: local slots and workers alike draw make's jobs from their
    # machine's jobserver, so make's command line (out-cmd) is the same on
    # both; err is compared without make's own lines (see _compiler_lines).
    args = ["-G", str(settings), "-b", "demo"]
    local = buildfleet([*args, "-o", str(root / "local")], tree.path)
    dist = buildfleet([*args, "--dist", "-o", str(root / "dist")], tree.path)
    no_local = buildfleet([*args, "--dist", "--no-local", "-o", str(root / "nolocal")],
                          tree.path)
    return Fleet(root, tree, settings, local, dist, no_local)


@pytest.fixture(scope="module")
def extra_arch_tree(sshd_harness: SshdHarness,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(tree, settings): a tree with an m68k board whose toolchain only root can reach.

    The wrappers live in a mode-0700 directory of root's, so the machine users'
    probes cannot find them: only the local machine can build that board.
    """
    root = tmp_path_factory.mktemp("xarch")
    tc_dir = Path(tempfile.mkdtemp(prefix="bf-m68k-"))
    try:
        tc_dir.chmod(0o700)
        for tool in TOOLS:
            real = shutil.which(tool)
            assert real is not None, f"host tool {tool} missing"
            (tc_dir / f"{EXTRA_ARCH}-linux-gnu-{tool}").symlink_to(real)
        prefix = f"{tc_dir}/{EXTRA_ARCH}-linux-gnu-"
        # sandbox and acme_arm1 (which warns from the second commit), plus the m68k board.
        tree = make_demo_tree(root / "src", boards=2, commits=2,
                              extra_archs={EXTRA_ARCH: prefix})
        settings = write_settings(root / "buildman.cfg", sshd_harness.reachable,
                                  f"[toolchain-prefix]\n{EXTRA_ARCH} = {prefix}\n")
        yield tree.path, settings
    finally:
        shutil.rmtree(tc_dir, ignore_errors=True)


# ---- the same results, wherever built -------------------------------------------------------

def test_reference_builds_exit_100_everywhere(fleet: Fleet) -> None:
    """The demo branch has a broken commit: 100, whether built here, mixed or only remotely."""
    assert fleet.local.rc == 100, fleet.local
    assert fleet.dist.rc == 100, fleet.dist
    assert fleet.no_local.rc == 100, fleet.no_local
    for run in (fleet.dist, fleet.no_local):
        assert "Not built" not in run.stdout, run


@pytest.mark.parametrize("name", ["dist", "nolocal"])
def test_dist_tree_equals_local_tree(fleet: Fleet, name: str) -> None:
    local, other = fleet.out("local") / "demo", fleet.out(name) / "demo"
    assert len(commit_dirs(local)) == len(fleet.tree.hashes) + 1
    builds = [b for d in commit_dirs(local) for b in d.iterdir() if b.is_dir()]
    assert len(builds) == (len(fleet.tree.hashes) + 1) * len(fleet.tree.boards)
    assert tree_differences(local, other) == []
    # Local builds carry no host; every remote one names the machine that built it.
    assert all(host_of(b) is None for b in builds)
    reachable = {"Alpha", "beta"}
    other_hosts = {host_of(d / t) for d in commit_dirs(other) for t in fleet.tree.targets}
    if name == "nolocal":
        assert other_hosts == reachable
    else:
        assert reachable <= other_hosts <= reachable | {None}


def test_both_machines_took_work(fleet: Fleet) -> None:
    for run in (fleet.dist, fleet.no_local):
        boards = machine_boards(run.stdout)
        assert set(boards) == {"Alpha", "beta"}, run
        assert boards["Alpha"] > 0 and boards["beta"] > 0, run
        assert "Offline: unavailable" in run.stdout, run
    assert sum(machine_boards(fleet.no_local.stdout).values()) == len(fleet.tree.boards)
    assert re.search(r"^  local: \d+ boards, \d+ results, \d+ slots, busy ", fleet.dist.stdout,
                     re.M), fleet.dist
    assert not re.search(r"^  local:", fleet.no_local.stdout, re.M), fleet.no_local


@pytest.mark.parametrize("flags", [["-s"], ["-se"], ["-sS"]])
def test_summary_same_for_all_three_trees(fleet: Fleet, flags: list[str]) -> None:
    runs = [fleet.build(*flags, "-b", "demo", out=name) for name in ("local", "dist", "nolocal")]
    for run in runs:
        assert run.rc == 0, run
        assert run.stderr == "", run
    assert "initech_rv2" in runs[0].stdout, runs[0]
    # make 4.3 names a failed recipe's line one line early when it reaps the
    # failure while starting other jobs (see _compiler_lines): which line of
    # the recipe it names is timing, not the build, so only that number is masked
    # (the compiling make is kbuild's second one: make[1]).
    shown = [re.sub(r"(make(?:\[\d+\])?: \*\*\* \[Makefile:)\d+:", r"\1N:", run.stdout)
             for run in runs]
    assert shown[1] == shown[0]
    assert shown[2] == shown[0]


# ---- routing by toolchain ---------------------------------------------------------------

def test_local_only_arch_is_built_locally(extra_arch_tree: tuple[Path, Path],
                                          tmp_path: Path) -> None:
    src, settings = extra_arch_tree
    run = buildfleet(["-G", str(settings), "--dist", "-b", "demo", "-o", str(tmp_path)], src)
    assert run.rc == 101, run  # acme_arm1's warning, nothing else
    assert "Not built" not in run.stdout, run
    builds = board_dirs(tmp_path / "demo", extra_target(EXTRA_ARCH))
    assert len(builds) == 3, run
    for build in builds:
        assert (build / "done").read_text().strip() == "0"
        assert host_of(build) is None
        assert arch_line(build) == f"arch {EXTRA_ARCH}"


def test_local_only_arch_not_built_with_no_local(extra_arch_tree: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    src, settings = extra_arch_tree
    run = buildfleet(["-G", str(settings), "--dist", "--no-local", "-b", "demo",
                      "-o", str(tmp_path)], src)
    target = extra_target(EXTRA_ARCH)
    # Only a warning among what was built, but a board not built is a failure: 100.
    assert run.rc == 100, run
    not_built = [ln for ln in run.stdout.splitlines() if ln.startswith("Not built")]
    assert len(not_built) == 1 and target in not_built[0], run
    # ... and its results say why, as a board without toolchain does in buildman
    unbuilt = board_dirs(tmp_path / "demo", target)
    assert len(unbuilt) == 3
    for path in unbuilt:
        assert (path / "done").read_bytes() == b"2\n"
        assert (path / "err").read_text() == (f"Tool chain error for {EXTRA_ARCH}: No tool "
                                              f"chain found for arch '{EXTRA_ARCH}'")
    others = board_dirs(tmp_path / "demo", "sandbox") + board_dirs(tmp_path / "demo", "acme_arm1")
    assert len(others) == 6
    assert all(host_of(b) in ("Alpha", "beta") for b in others)
    assert all((b / "done").read_text().strip() == "0" for b in others)
    assert "warning: unused variable 'retries'" in (others[-1] / "err").read_text()


# ---- what is pushed is what is built ------------------------------------------------------

@pytest.mark.parametrize("kept", [False, True])
def test_uncommitted_edit_is_built_remotely(sshd_harness: SshdHarness, tmp_path: Path,
                                            kept: bool) -> None:
    """A worker builds the snapshot of the working tree as the local build does,
    whether build directories are kept or not (the local current-source build
    keeps none)."""
    tree = make_demo_tree(tmp_path / "src", boards=1, commits=1)
    settings = write_settings(tmp_path / "buildman.cfg", sshd_harness.reachable, kept=kept)

    def build(out: str, *extra: str) -> Path:
        run = buildfleet(["-G", str(settings), "-o", str(tmp_path / out), *extra, "sandbox"],
                         tree.path)
        assert run.rc in (0, 101), run
        return tmp_path / out / "current" / "sandbox"

    clean = build("clean")
    board_c = tree.path / "board" / "sandbox" / "board.c"
    text = board_c.read_text()
    board_c.write_text(text.replace("int board_init(void)\n{\n",
                                    f"const char {EDIT_MARKER}_pad[777] = \"pad\";\n\n"
                                    f"int board_init(void)\n{{\n\tint {EDIT_MARKER} = 1;\n\n"))
    remote = build("remote", "--dist", "--no-local")
    local = build("local")
    assert host_of(remote) in ("Alpha", "beta")
    assert f"unused variable '{EDIT_MARKER}'" in (remote / "err").read_text()
    # The worker builds the snapshot in a worktree, but with O= outside it as the
    # local build has it, so kbuild names the file alike (absolute, not ../).
    assert (remote / "err").read_text() == (local / "err").read_text()
    for result in (remote, local):
        o_args = [a for a in (result / "out-cmd").read_text().split() if a.startswith("O=")]
        assert o_args and all(Path(a[2:]).is_absolute() for a in o_args), result
    assert (remote / "sizes").read_bytes() == (local / "sizes").read_bytes()
    assert (remote / "sizes").read_bytes() != (clean / "sizes").read_bytes()
    assert not (clean / "err").exists()
    # The user's files, index and HEAD are untouched by the snapshot.
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tree.path,
                            capture_output=True, text=True, check=True).stdout
    assert status.strip() == "M board/sandbox/board.c"


# ---- forwarded build flags -------------------------------------------------------------

def test_warnings_as_errors_remotely(fleet: Fleet) -> None:
    target = "acme_arm1"
    assert target in fleet.tree.warning_targets
    run = fleet.build("--dist", "--no-local", "-E", "-b", "demo", target, out="werror")
    assert run.rc == 100, run
    builds = board_dirs(fleet.out("werror") / "demo", target)
    warn_at = fleet.tree.warning_upto
    assert warn_at is not None and len(builds) == len(fleet.tree.hashes) + 1
    for idx, build in enumerate(builds):
        assert host_of(build) in ("Alpha", "beta")
        done = int((build / "done").read_text())
        if idx <= warn_at:  # dir idx is commit idx-1: up to the warning commit, clean
            assert done == 0, build
        else:
            assert done != 0, build
            assert "error: unused variable 'retries'" in (build / "err").read_text()
    # Without -E the same commits only warn.
    plain = board_dirs(fleet.out("nolocal") / "demo", target)
    assert (plain[warn_at + 1] / "done").read_text().strip() == "0"
    assert "warning: unused variable 'retries'" in (plain[warn_at + 1] / "err").read_text()


def test_keep_outputs_remotely(fleet: Fleet) -> None:
    targets = ["sandbox", "globex_a64"]
    remote = fleet.build("--dist", "--no-local", "-k", "-b", "demo", "-c", "1", *targets,
                         out="keep-remote")
    local = fleet.build("-k", "-b", "demo", "-c", "1", *targets, out="keep-local")
    assert remote.rc in (0, 101), remote
    assert local.rc in (0, 101), local
    base_r, base_l = fleet.out("keep-remote") / "demo", fleet.out("keep-local") / "demo"
    assert tree_differences(base_l, base_r) == []
    for target in targets:
        (build,) = board_dirs(base_r, target)
        assert host_of(build) in ("Alpha", "beta")
        assert (build / "u-boot").read_bytes()[:4] == b"\x7fELF"
        assert (build / "u-boot.bin").stat().st_size > 0
    plain = board_dirs(fleet.out("nolocal") / "demo", "sandbox")[-1]
    assert not (plain / "u-boot").exists()


@pytest.mark.parametrize("flags", [["--step", "2"], ["-c", "2"]])
def test_commit_selection_remotely(fleet: Fleet, flags: list[str]) -> None:
    tag = "-".join(f.strip("-") for f in flags)
    remote = fleet.build("--dist", "--no-local", "-b", "demo", *flags, "sandbox",
                         out=f"sel-{tag}-remote")
    local = fleet.build("-b", "demo", *flags, "sandbox", out=f"sel-{tag}-local")
    assert remote.rc == local.rc == 0, (remote, local)
    dirs_r = [d.name for d in commit_dirs(fleet.out(f"sel-{tag}-remote") / "demo")]
    dirs_l = [d.name for d in commit_dirs(fleet.out(f"sel-{tag}-local") / "demo")]
    assert dirs_r == dirs_l
    hashes = [re.match(r"\d+_g([0-9a-f]+)_", d).group(1) for d in dirs_r]  # type: ignore[union-attr]
    every = [*_upstream(fleet), *fleet.tree.hashes]
    if flags[0] == "-c":
        assert hashes == fleet.tree.hashes[-2:]
    else:
        assert hashes == every[::2]
    builds = board_dirs(fleet.out(f"sel-{tag}-remote") / "demo", "sandbox")
    assert len(builds) == len(hashes)
    assert all(host_of(b) in ("Alpha", "beta") for b in builds)
    assert tree_differences(fleet.out(f"sel-{tag}-local") / "demo",
                            fleet.out(f"sel-{tag}-remote") / "demo") == []


def _upstream(fleet: Fleet) -> list[str]:
    out = subprocess.run(["git", "rev-parse", fleet.tree.upstream], cwd=fleet.src,
                         capture_output=True, text=True, check=True).stdout.strip()
    return [out]


def test_quick_skips_the_retry_remotely(fleet: Fleet) -> None:
    target = fleet.tree.broken_target
    broken = fleet.tree.broken_upto
    assert broken is not None
    run = fleet.build("--dist", "--no-local", "-Q", "-b", "demo", target, out="quick")
    assert run.rc == 100, run
    quick = board_dirs(fleet.out("quick") / "demo", target)[broken + 1]
    plain = board_dirs(fleet.out("nolocal") / "demo", target)[broken + 1]
    assert host_of(quick) in ("Alpha", "beta")
    assert (quick / "done").read_text().strip() != "0"
    # Without -Q the failed incremental build is retried from a fresh defconfig.
    assert f"{target}_defconfig" in (plain / "out-cmd").read_text()
    assert f"{target}_defconfig" not in (quick / "out-cmd").read_text()


def test_force_rebuilds_remotely(fleet: Fleet) -> None:
    target = "acme_arm1"
    warn_at = fleet.tree.warning_upto
    assert warn_at is not None
    args = ["--dist", "--no-local", "-b", "demo", "-c", "2", target]
    first = fleet.build(*args, out="force")
    assert first.rc == 101, first
    builds = board_dirs(fleet.out("force") / "demo", target)
    before = [(b / "done").stat().st_mtime_ns for b in builds]
    again = fleet.build(*args, out="force")
    assert "Nothing to build" in again.stdout, again
    assert [(b / "done").stat().st_mtime_ns for b in builds] == before
    forced = fleet.build("-f", *args, out="force")
    assert forced.rc == 101, forced
    assert "Nothing to build" not in forced.stdout, forced
    after = [(b / "done").stat().st_mtime_ns for b in builds]
    assert all(a > b for a, b in zip(after, before, strict=True))
    # A forced rebuild starts clean, so it reports the warning again.
    assert all("warning: unused variable 'retries'" in (b / "err").read_text() for b in builds)
    assert all(host_of(b) in ("Alpha", "beta") for b in builds)


def test_make_flags_forwarded(sshd_harness: SshdHarness, fleet: Fleet) -> None:
    settings = write_settings(fleet.out("mf.cfg"), sshd_harness.reachable,
                              "[make-flags]\nacme_arm2 = KCFLAGS=-DBF_MAKE_FLAG_MARK=1\n")
    run = fleet.build("--dist", "--no-local", "-b", "demo", "-c", "1", "acme_arm2", "sandbox",
                      out="makeflags", settings=settings)
    assert run.rc == 0, run
    (marked,) = board_dirs(fleet.out("makeflags") / "demo", "acme_arm2")
    (other,) = board_dirs(fleet.out("makeflags") / "demo", "sandbox")
    assert host_of(marked) in ("Alpha", "beta")
    assert "KCFLAGS=-DBF_MAKE_FLAG_MARK=1" in (marked / "out-cmd").read_text()
    assert "BF_MAKE_FLAG_MARK" not in (other / "out-cmd").read_text()


def test_debug_shows_worker_lines_and_logs(fleet: Fleet) -> None:
    run = fleet.build("--dist", "--no-local", "-D", "-b", "demo", "-c", "1", "sandbox",
                      "acme_arm2", out="debug")
    assert run.rc == 0, run
    console = run.stdout + run.stderr
    shown = {m for m in ("Alpha", "beta") if re.search(rf"^\[{m}\] W: ", console, re.M)}
    assert shown == {"Alpha", "beta"}, run
    for name in ("Alpha", "beta"):
        log = fleet.out("debug") / "demo" / f"worker-{name}.log"
        assert log.is_file(), run
        assert "ready" in log.read_text()


# ---- choosing machines, and the errors ----------------------------------------------------

def test_use_machines_one(fleet: Fleet) -> None:
    run = fleet.build("--use-machines", "beta", "--no-local", "-b", "demo", "-c", "1",
                      "sandbox", "acme_arm2", "initech_rv1", out="one")
    assert run.rc == 0, run
    assert set(machine_boards(run.stdout)) == {"beta"}, run
    assert "Alpha" not in run.stdout and "Offline" not in run.stdout, run
    builds = [b for t in ("sandbox", "acme_arm2", "initech_rv1")
              for b in board_dirs(fleet.out("one") / "demo", t)]
    assert len(builds) == 3
    assert {host_of(b) for b in builds} == {"beta"}


def _one_error_line(run: Run) -> str:
    """The one line of a usage error. The board scan's own warnings (the demo tree
    has an orphan board on purpose, and buildman warns of it too) are not part of it."""
    lines = [ln for ln in run.stderr.splitlines()
             if ln.strip() and not ln.startswith("WARNING: no maintainers for '")]
    assert run.rc == 1, run
    assert len(lines) == 1, run
    assert "Traceback" not in run.stdout + run.stderr
    return lines[0]


def test_unknown_machine_is_one_line_error(fleet: Fleet) -> None:
    run = fleet.build("--use-machines", "Nosuch", "-b", "demo", "-c", "1", "sandbox",
                      out="unknown")
    line = _one_error_line(run)
    assert "Nosuch" in line and "Alpha" in line, run


def test_no_local_without_dist_is_one_line_error(fleet: Fleet) -> None:
    run = fleet.build("--no-local", "-b", "demo", "-c", "1", "sandbox", out="nodist")
    assert "--dist" in _one_error_line(run)
    assert not fleet.out("nodist").exists()


def test_no_local_with_no_machine_available(sshd_harness: SshdHarness, fleet: Fleet) -> None:
    offline = [m for m in sshd_harness.machines if m.user is None]
    assert offline
    settings = write_settings(fleet.out("offline.cfg"), offline)
    run = fleet.build("--dist", "--no-local", "-b", "demo", "-c", "1", "sandbox",
                      out="offline", settings=settings)
    line = _one_error_line(run)
    assert "No machines available" in line and offline[0].name in line, run
    base = fleet.out("offline") / "demo"
    assert not base.exists() or board_dirs(base, "sandbox") == []
