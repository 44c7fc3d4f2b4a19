"""Each result's ``reproduce`` script rebuilds it outside buildfleet (issue 16).

Why: a failure seen in a big run is fixed by someone who was not there. The
script a result directory holds must, run by hand in a clean clone of the
tree, check out that commit, run the same make commands with the same
toolchain and environment, and end as the result did: the same ``done`` and
the same image sizes. These tests build the demo branch with the real
command, then run scripts with ``sh`` in fresh ``git clone``s and compare.
The run manifest (``.buildfleet-run.json``) is checked here too, including
that an interrupted run leaves one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from bfrun import (
    Rev,
    Run,
    bf_env,
    branch_revs,
    done_code,
    require_cross,
    result_dir,
    run_bf,
    settings_file,
    sizes_of,
)
from buildfleet.build.capture import ELF_IMAGES, inspect_image
from buildfleet.demo import DemoTree, make_demo_tree
from buildfleet.results.report_json import load_schema
from buildfleet.results.reproducer import Reproducer, parse_out_env

BOARDS = ["sandbox", "acme_arm1", "initech_rv2"]


class Built:
    def __init__(self, tree: DemoTree, run: Run, out: Path) -> None:
        self.tree = tree
        self.run = run
        self.base = out / "demo"
        self.revs: list[Rev] = branch_revs(tree.path, "demo")

    def dir(self, seq: int, target: str) -> Path:
        return result_dir(self.base, self.revs[seq], target)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    require_cross()
    tree = make_demo_tree(tmp_path_factory.mktemp("demo") / "tree")
    out = tmp_path_factory.mktemp("out")
    settings = settings_file(tmp_path_factory.mktemp("settings"))
    run = run_bf(["-b", "demo", "--boards", ",".join(BOARDS), "-o", str(out), "-T2",
                  "-G", str(settings)], cwd=tree.path)
    assert run.returncode == 100, run  # the demo breaks initech_rv2 at one commit
    return Built(tree, run, out)


def clone(tree: DemoTree, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(tree.path), str(dest)], check=True,
                   capture_output=True, timeout=60)
    return dest


def reproduce(script: Path, checkout: Path, build: Path) -> subprocess.CompletedProcess[str]:
    """Run a script as a user would: from inside the clone, with a plain environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("CROSS_COMPILE", "ARCH")}
    env["ARCH"] = "bogus"  # a stray variable of the user's shell must not leak into make
    return subprocess.run(["sh", str(script), str(build)], cwd=checkout, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=180)


def image_sizes(build: Path) -> dict[str, tuple[int, int, int]]:
    """The images built in ``build``: image -> (text, data, bss), as ``sizes`` holds them."""
    found = {}
    for image in ELF_IMAGES:
        if (build / image).is_file():
            sizes = inspect_image(build / image).sizes
            assert sizes is not None, image
            found[image] = sizes[:3]
    return found


def recorded_sizes(result: Path) -> dict[str, tuple[int, int, int]]:
    return sizes_of(result) if (result / "sizes").exists() else {}


@pytest.mark.parametrize("case", ["incremental-warning", "broken", "sandbox"])
def test_reproducer_rebuilds_the_same_result(built: Built, tmp_path: Path, case: str) -> None:
    tree = built.tree
    assert tree.warning_upto is not None and tree.broken_upto is not None
    warner = next(t for t in BOARDS if t in tree.warning_targets)
    seq, target = {
        # a later commit: built incrementally, so out-cmd has no defconfig step
        "incremental-warning": (len(built.revs) - 1, warner),
        "broken": (tree.broken_upto + 1, tree.broken_target),
        "sandbox": (1, "sandbox"),
    }[case]
    result = built.dir(seq, target)
    script = result / "reproduce"
    assert script.is_file() and os.access(script, os.X_OK)
    if case == "incremental-warning":
        assert not any(ln.endswith("_defconfig") for ln in
                       (result / "out-cmd").read_text().splitlines())
    checkout = clone(tree, tmp_path / "clone")
    proc = reproduce(script, checkout, tmp_path / "build")
    assert proc.returncode == done_code(result), proc.stdout + proc.stderr
    assert f"reproduce: done {done_code(result)} (buildfleet recorded {done_code(result)})" \
        in proc.stdout
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert head == built.revs[seq].hash
    assert image_sizes(tmp_path / "build") == recorded_sizes(result)
    if case == "broken":
        assert tree.error_text in proc.stderr
        assert not image_sizes(tmp_path / "build")
    if case == "incremental-warning":
        assert tree.warning_text in proc.stderr


def test_reproducer_refuses_a_dirty_tree(built: Built, tmp_path: Path) -> None:
    checkout = clone(built.tree, tmp_path / "clone")
    makefile = checkout / "Makefile"
    makefile.write_text(makefile.read_text() + "\n# local edit\n")
    proc = reproduce(built.dir(1, "acme_arm1") / "reproduce", checkout, tmp_path / "build")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"reproduce: {checkout} has uncommitted changes: commit or stash them"]
    assert not (tmp_path / "build").exists()


def test_reproducer_in_the_json_report(built: Built, tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    run = run_bf(["-s", "-b", "demo", "--boards", ",".join(BOARDS), "-o", str(built.base.parent),
                  "--report", str(report)], cwd=built.tree.path)
    assert run.returncode in (0, 100, 101), run
    doc = json.loads(report.read_text())
    jsonschema.validate(doc, load_schema())
    for entry in doc["results"]:
        repro = entry["reproducer"]
        seq = entry["commit"]
        assert repro["checkout"] == built.revs[seq].hash
        script = Path(doc["run"]["output_dir"]) / repro["script"]
        assert script == built.dir(seq, entry["target"]) / "reproduce"
        assert repro["commands"][0].endswith(f"{entry['target']}_defconfig")
        assert all('O="$BUILD_DIR"' in cmd for cmd in repro["commands"])
        assert repro["env"]["LC_ALL"] == "C"
        assert repro["toolchain"] == entry["toolchain"]["gcc"]


def test_run_manifest(built: Built) -> None:
    manifest = json.loads((built.base / ".buildfleet-run.json").read_text())
    assert (manifest["schema"], manifest["version"], manifest["tool"]) == \
        ("buildfleet-run", 1, "buildfleet")
    assert manifest["status"] == "completed" and manifest["exit_code"] == 100
    assert manifest["started"] <= manifest["ended"]
    assert manifest["commits"] == [r.hash for r in built.revs]
    assert manifest["argv"][:2] == ["-b", "demo"]
    local = manifest["machines"][0]
    assert local["name"] == "local" and local["slots"] == 2
    assert local["toolchains"]["arm"].endswith("arm-linux-gnueabihf-gcc")


def test_interrupted_run_leaves_a_manifest(built: Built, tmp_path: Path) -> None:
    """Written before the build starts, closed as 'interrupted' on Ctrl-C."""
    out = tmp_path / "out"
    manifest = out / "demo" / ".buildfleet-run.json"
    proc = subprocess.Popen([sys.executable, "-m", "buildfleet", "-b", "demo", "--boards",
                             ",".join(BOARDS), "-o", str(out), "-T1",
                             "-G", str(settings_file(tmp_path))],
                            cwd=built.tree.path, env=bf_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # as from a terminal, even if the tests run with SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not manifest.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert manifest.exists(), "no manifest while the run builds"
        assert json.loads(manifest.read_text())["status"] == "running"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    data = json.loads(manifest.read_text())
    assert data["status"] == "interrupted" and data["exit_code"] == 130 and data["ended"]


def test_out_env_parsing_and_command_derivation() -> None:
    env = parse_out_env('A="1"CROSS_COMPILE="arm-"Q="say "hi""LC_ALL="C"')
    assert env == {"A": "1", "CROSS_COMPILE": "arm-", "Q": 'say "hi"', "LC_ALL": "C"}
    files = {
        "out-cmd": b"make O=build -s -j 4 NPROC=4 'KCFLAGS=-O2 -g' u-boot.bin\n",
        "out-env": b'HOME="/root"CROSS_COMPILE="arm-linux-gnueabihf-"KBUILD_BUILD_USER="ci"',
        "toolchain": b"gcc /usr/bin/arm-linux-gnueabihf-gcc\npath /usr/bin\n"
                     b"cross arm-linux-gnueabihf-\narch arm\n0",
    }
    repro = Reproducer.from_files("b1", "abc", files, 0)
    assert repro is not None
    assert repro.command_lines() == [
        "make O=\"$BUILD_DIR\" -s -j 4 NPROC=4 'KCFLAGS=-O2 -g' b1_defconfig",
        "make O=\"$BUILD_DIR\" -s -j 4 NPROC=4 'KCFLAGS=-O2 -g' u-boot.bin",
    ]
    assert dict(repro.env) == {"CROSS_COMPILE": "arm-linux-gnueabihf-",
                               "KBUILD_BUILD_USER": "ci"}  # HOME is the session's
    assert Reproducer.from_files("b1", "abc", {}, 0) is None  # a tree without out-cmd
