"""Sharing machines, and the workers a boss can drive, over the real-sshd harness.

Why: a build machine is shared by design (two developers, a CI job and a
nightly run start ``--dist`` with the same machines), its shipped tool may be
damaged, the run's ``[toolchain-wrapper]`` must apply there too, and
``--machines-buildman-path`` may name a worker that speaks only the seed's
protocol (buildman's own). Each case runs the real ``buildfleet`` against
loopback machines (separate logins) and compares the output tree with a
clean local build; the ``fleet`` fixture checks that nothing is left running.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bfrun import bf_env, done_code, without_job_control
from buildfleet.fleet.machines.ship import build_zipapp
from ccachekit import (
    compiles,
    cross_compile,
    masquerade,
    out_path,
    path_without_ccache,
    require_ccache,
    stats,
    zero_stats,
)
from faultkit import Tree, assert_same_tree, demo_and_reference, hosts_in, read_tree, start_dist
from sshd_harness import SshdHarness

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

BOARDS = 6
ENV = {"BUILDFLEET_LIVENESS_SECONDS": "20"}

# A worker that speaks only the seed's protocol: buildfleet's worker behind a
# filter that refuses buildfleet's command-line additions, drops the commands
# and fields the seed does not have (cancel_board, commit subsets, features,
# result files...) and sends sizes the seed's way ({"raw": ...}). Runs on the
# machine's bare /usr/bin/python3.
SEED_WORKER = r'''#!/usr/bin/python3
import base64, json, os, subprocess, sys, threading
if sys.argv[1:] != ["--worker"]:
    sys.stderr.write("seedworker: error: unrecognized arguments: %s\n" % " ".join(sys.argv[2:]))
    sys.exit(2)
PYZ = os.path.join(os.path.dirname(os.path.abspath(__file__)), "buildfleet.pyz")
COMMANDS = {"setup": ("work_dir",), "configure": ("settings", "toolchains"),
            "build_prepare": ("commits",), "build_board": ("board", "arch"),
            "build_done": (), "quit": ()}
REPLIES = {"ready": ("nthreads", "slots"), "setup_done": ("work_dir", "git_dir"),
           "configure_done": (), "build_started": ("num_threads",),
           "worktree_created": ("thread",), "build_prepare_done": (),
           "heartbeat": ("board", "thread"),
           "build_result": ("board", "commit_upto", "return_code", "stdout", "stderr"),
           "build_done": ("exceptions",), "quit_ack": (), "error": ("msg",)}
child = subprocess.Popen([sys.executable, PYZ, "--worker"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
lock = threading.Lock()
def send(obj):
    with lock:
        sys.stdout.write("BM> " + json.dumps(obj) + "\n")
        sys.stdout.flush()
def replies():
    for raw in child.stdout:
        if not raw.startswith(b"BM> "):
            continue
        msg = json.loads(raw[4:])
        keep = REPLIES.get(msg.get("resp"))
        if keep is None:
            continue
        out = dict((k, msg[k]) for k in ("resp",) + keep if k in msg)
        sizes = (msg.get("files") or {}).get("sizes")
        if msg["resp"] == "build_result" and sizes:
            out["sizes"] = {"raw": base64.b64decode(sizes).decode()}
        send(out)
reader = threading.Thread(target=replies)
reader.start()
for line in sys.stdin:
    msg = json.loads(line)
    keep = COMMANDS.get(msg.get("cmd"))
    if keep is None:
        send({"resp": "error", "msg": "unknown command: %s" % msg.get("cmd")})
        continue
    child.stdin.write((json.dumps(dict((k, msg[k]) for k in ("cmd",) + keep if k in msg))
                       + "\n").encode())
    child.stdin.flush()
child.stdin.close()
reader.join()
child.wait()
'''


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Tree]:
    """A demo tree and the output tree of a clean local build of its branch."""
    return demo_and_reference(tmp_path_factory.mktemp("sharing"), BOARDS)


def _names(h: SshdHarness) -> str:
    return ",".join(m.name for m in h.reachable)


def _no_failure(stdout: str) -> None:
    for bad in ("Worker failed", "Quarantined", "Not built", "Traceback"):
        assert bad not in stdout, stdout


def test_two_bosses_share_two_machines(demo: tuple[Path, Tree], fleet: SshdHarness,
                                       tmp_path: Path) -> None:
    """Two bosses (two trees) start together with the same two machines and no local
    slots: each gets its own work directory there, the machine's threads are shared
    (one boss waits or takes fewer), and both finish with every result right."""
    tree, want = demo
    other = tmp_path / "tree2"
    shutil.copytree(tree, other, symlinks=True)
    runs = [start_dist(src, tmp_path / f"out{i}", fleet.settings_file, "--use-machines",
                       _names(fleet), "--no-local", env=ENV)
            for i, src in enumerate((tree, other))]
    results = [run.wait(timeout=400) for run in runs]
    for i, (rc, stdout, stderr) in enumerate(results):
        assert rc == 100, stdout + stderr  # the demo branch has real build errors
        _no_failure(stdout)
        assert_same_tree(read_tree(tmp_path / f"out{i}" / "demo"), want)
        assert set(hosts_in(tmp_path / f"out{i}" / "demo")) <= {m.name for m in fleet.reachable}
    # One work directory per boss (tree) on each machine that built for both.
    for m in fleet.reachable:
        dirs = sorted(p.name for p in (m.home / ".buildfleet-worker").glob("b-*"))
        assert all(re.fullmatch(r"b-[0-9a-f]{16}", d) for d in dirs), dirs
    both = [m for m in fleet.reachable
            if all(hosts_in(tmp_path / f"out{i}" / "demo").get(m.name) for i in (0, 1))]
    for m in both:
        assert len(list((m.home / ".buildfleet-worker").glob("b-*"))) >= 2


def test_the_same_tree_reuses_its_work_directory(demo: tuple[Path, Tree], fleet: SshdHarness,
                                                 tmp_path: Path) -> None:
    """The same user's next run of the same tree finds its work directory again."""
    tree, _ = demo
    m = fleet.reachable[0]
    for out in ("a", "b"):
        run = start_dist(tree, tmp_path / out, fleet.settings_file, "--use-machines", m.name,
                         "--no-local", "-c", "1", "sandbox", env=ENV)
        rc, stdout, stderr = run.wait()
        assert rc == 0, stdout + stderr
    log = (tmp_path / "b" / "demo" / f"worker-{m.name}.log").read_text()
    first = (tmp_path / "a" / "demo" / f"worker-{m.name}.log").read_text()
    used = re.findall(r"setup_done: (\S+)", log)
    assert used and used == re.findall(r"setup_done: (\S+)", first), log


def _out_env(build: Path) -> str:
    """CROSS_COMPILE as ``out-env`` records it (buildman's ``K="V"`` pairs, no separator)."""
    found = re.search(r'CROSS_COMPILE="[^"]*"', (build / "out-env").read_text())
    assert found, build
    return found.group(0)


def test_toolchain_wrapper_reaches_the_workers(demo: tuple[Path, Tree], fleet: SshdHarness,
                                               tmp_path: Path) -> None:
    """``[toolchain-wrapper]`` (``env`` standing in for ccache) applies on a worker as
    locally; a wrapper the machine lacks makes it unusable for the run, said once."""
    tree, _ = demo
    m = fleet.reachable[0]
    settings = tmp_path / "wrapped.cfg"
    settings.write_text(fleet.settings_file.read_text() + "\n[toolchain-wrapper]\nwrapper = env\n")
    local = subprocess.run([sys.executable, "-m", "buildfleet", "-G", str(settings), "-b", "demo",
                            "-c", "1", "-o", str(tmp_path / "local"), "acme_arm1"], cwd=tree,
                           env=bf_env(None), capture_output=True, text=True, timeout=300)
    # In CROSS_COMPILE, as buildman puts it: the demo's build_api.py rule (as
    # U-Boot's) fails on the two-word $(OBJCOPY), alike on both.
    assert local.returncode == 100, local.stdout + local.stderr
    run = start_dist(tree, tmp_path / "remote", settings, "--use-machines", m.name, "--no-local",
                     "-c", "1", "acme_arm1", env=ENV)
    rc, stdout, stderr = run.wait()
    assert rc == local.returncode, stdout + stderr
    # Results only: not .bm-work/acme_arm1, the board's kept build directory.
    (lbuild,) = (tmp_path / "local" / "demo").glob("[!.]*/acme_arm1")
    (rbuild,) = (tmp_path / "remote" / "demo").glob("[!.]*/acme_arm1")
    assert (rbuild / "host").read_text().strip() == m.name
    assert _out_env(rbuild) == _out_env(lbuild) == 'CROSS_COMPILE="env arm-linux-gnueabihf-"'
    # make -j: "Waiting for unfinished jobs" comes with timing (bfrun.without_job_control).
    assert (without_job_control((rbuild / "err").read_bytes())
            == without_job_control((lbuild / "err").read_bytes()))
    assert "unrecognized arguments: arm-linux-gnueabihf-objcopy" in (rbuild / "err").read_text()
    # A wrapper only the boss has (in a directory of root's the machine users cannot read).
    hidden = Path(tmp_path / "private")
    hidden.mkdir(mode=0o700)
    wrapper = hidden / "mywrap"
    wrapper.write_text("#!/bin/sh\nexec \"$@\"\n")
    wrapper.chmod(0o755)
    settings.write_text(fleet.settings_file.read_text()
                        + f"\n[toolchain-wrapper]\nwrapper = {wrapper}\n")
    run = start_dist(tree, tmp_path / "missing", settings, "--use-machines", m.name,
                     "--no-local", "-c", "1", "acme_arm1", env=ENV)
    rc, stdout, stderr = run.wait()
    said = [ln for ln in stdout.splitlines() if ln.startswith(f"  {m.name}: cannot be used:")]
    assert len(said) == 1 and f"toolchain wrapper '{wrapper}' not found" in said[0], stdout
    assert "Quarantined" not in stdout and "Worker failed" not in stdout, stdout
    assert rc == 100, stdout + stderr  # nothing could build the board
    # Not blamed on toolchains: the machine has the compiler, it lacks the wrapper.
    assert "no executor with a toolchain" not in stdout, stdout
    assert f"Not built (no machine left for them; {m.name}: cannot be used: " in stdout, stdout
    assert not list((tmp_path / "missing" / "demo").glob("[!.]*/acme_arm1"))


def test_each_machine_decides_on_ccache_for_itself(demo: tuple[Path, Tree], fleet: SshdHarness,
                                                   tmp_path: Path) -> None:
    """With no ``[toolchain-wrapper]``, a worker builds through its own machine's
    ccache whatever the boss has, follows the run's ``--no-ccache``, and builds
    without ccache (no error) where its machine has none; a ``[toolchain-wrapper]``
    naming ccache there stays the error it was."""
    require_ccache()
    tree, _ = demo
    m = fleet.reachable[0]
    bashrc = m.home / ".bashrc"
    old = bashrc.read_text() if bashrc.exists() else ""
    cache = m.home / "ccache-of-this-test"  # the machine's own cache, this test's only
    no_ccache = path_without_ccache(m.home / "bin-without-ccache")
    boss_path = f"{Path(sys.executable).parent}:{path_without_ccache(tmp_path / 'bin')}"

    def remote(out: str, *extra: str, env: dict[str, str] | None = None,
               settings: Path = fleet.settings_file) -> tuple[Path | None, str]:
        run = start_dist(tree, tmp_path / out, settings, "--use-machines", m.name,
                         "--no-local", "-c", "1", *extra, "acme_arm1", env={**ENV, **(env or {})})
        rc, stdout, stderr = run.wait()
        found = list((tmp_path / out / "demo").glob("*/acme_arm1"))
        if rc == 100:
            return None, stdout
        assert rc in (0, 101) and len(found) == 1, stdout + stderr
        assert (found[0] / "host").read_text().strip() == m.name
        return found[0], stdout

    try:
        bashrc.write_text(f"export CCACHE_DIR={cache}\n{old}")
        # The boss has no ccache on its PATH; the machine has.
        built, _ = remote("on", env={"PATH": boss_path})
        assert built is not None and cross_compile(built) == "arm-linux-gnueabihf-"
        assert masquerade(built) is not None and done_code(built) == 0, out_path(built)
        assert compiles(stats(cache)) > 0
        zero_stats(cache)
        built, _ = remote("off", "--no-ccache")
        assert built is not None and cross_compile(built) == "arm-linux-gnueabihf-"
        assert masquerade(built) is None
        assert compiles(stats(cache)) == 0
        # The machine has no ccache on its PATH; the boss has.
        bashrc.write_text(f"export CCACHE_DIR={cache}\nexport PATH={no_ccache}\n{old}")
        built, stdout = remote("absent")
        assert built is not None and cross_compile(built) == "arm-linux-gnueabihf-"
        assert masquerade(built) is None
        assert "cannot be used" not in stdout, stdout
        assert compiles(stats(cache)) == 0
        explicit = tmp_path / "explicit.cfg"
        explicit.write_text(fleet.settings_file.read_text()
                            + "\n[toolchain-wrapper]\nwrapper = ccache\n")
        built, stdout = remote("explicit", settings=explicit)
        assert built is None, stdout
        assert f"  {m.name}: cannot be used: configure: toolchain wrapper 'ccache' not found " \
            "on this machine" in stdout, stdout
    finally:
        bashrc.write_text(old)
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(no_ccache)


def test_truncated_shipped_tool_is_replaced(demo: tuple[Path, Tree], fleet: SshdHarness,
                                            tmp_path: Path) -> None:
    tree, _ = demo
    m = fleet.reachable[0]
    assert m.user is not None
    app = build_zipapp()
    pyz = m.home / ".buildfleet-worker" / ".tool" / app.name
    pyz.parent.mkdir(parents=True, exist_ok=True)
    pyz.write_bytes(app.path.read_bytes()[:4096])  # a copy cut short (a full disk)
    for path in (m.home / ".buildfleet-worker", pyz.parent, pyz):
        shutil.chown(path, m.user, m.user)
    run = start_dist(tree, tmp_path / "o", fleet.settings_file, "--use-machines", m.name,
                     "--no-local", "-c", "1", "sandbox", env=ENV)
    rc, stdout, stderr = run.wait()
    assert rc == 0, stdout + stderr
    assert f"{m.name}: the shipped {app.name} is damaged (4096 bytes" in stdout, stdout
    _no_failure(stdout)
    assert pyz.read_bytes() == app.path.read_bytes()
    assert hosts_in(tmp_path / "o" / "demo") == {m.name: 1}


def test_seed_protocol_worker_builds_the_demo_branch(demo: tuple[Path, Tree],
                                                     fleet: SshdHarness, tmp_path: Path) -> None:
    """``--machines-buildman-path`` naming a worker that speaks only the seed's protocol:
    started as ``PATH --worker``, given its work directory in ``setup``, no hedged
    copies (it has no cancel_board), and every result of the branch right."""
    tree, want = demo
    installed = []
    for m in fleet.reachable:
        assert m.user is not None
        seed = m.home / "seed"
        seed.mkdir()
        (seed / "seedworker").write_text(SEED_WORKER)
        (seed / "seedworker").chmod(0o755)
        shutil.copyfile(build_zipapp().path, seed / "buildfleet.pyz")
        for path in (seed, seed / "seedworker", seed / "buildfleet.pyz"):
            shutil.chown(path, m.user, m.user)
        installed.append(seed)
    try:
        run = start_dist(tree, tmp_path / "o", fleet.settings_file, "--use-machines",
                         _names(fleet), "--no-local", "--machines-buildman-path",
                         "~/seed/seedworker", env=ENV)
        rc, stdout, stderr = run.wait(timeout=400)
    finally:
        for seed in installed:
            shutil.rmtree(seed, ignore_errors=True)
    assert rc == 100, stdout + stderr
    _no_failure(stdout)
    for m in fleet.reachable:
        assert f"{m.name}: ~/seed/seedworker speaks the seed's protocol only" in stdout, stdout
    assert_same_tree(read_tree(tmp_path / "o" / "demo"), want)
    assert re.search(r"hedged 0\b", stdout), stdout
    for m in fleet.reachable:
        log = (tmp_path / "o" / "demo" / f"worker-{m.name}.log").read_text()
        assert "cancel_board" not in log and "unknown command" not in log, log
