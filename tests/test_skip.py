"""Skipping board x commit pairs a commit cannot change (build.skip), end to end.

Why: a skipped result is a copy of the previous commit's, made without
running make; it is only right if it is exactly what make would have
produced. So the tests build a demo branch twice into the same output path
(``-r``: no build date in the images, so a rebuild gives the same bytes),
with skipping and with ``--no-skip``, and compare every file but the marker
and the duration; they check which pairs were skipped (only those whose
commit touched a file the board never read) and that the cautious cases
(a header every board reads, an added file, a Makefile) are built.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bfrun import bf_env, branch_revs, git, require_cross, result_dir, run_bf, settings_file
from buildfleet.build import skip
from buildfleet.demo import DemoTree, make_demo_tree, touch_branch
from buildfleet.model import COPIED_FROM
from sshd_harness import SshdHarness

BOARDS = ["sandbox", "acme_arm1", "initech_rv2"]
BRANCH = "touch"
UNSTABLE = {"duration"}  # seconds: never the same twice


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> DemoTree:
    """The demo tree plus branch ``touch``: one board's file, a shared header, an
    added file, the Makefile, another board's file (commits 1-5)."""
    require_cross()
    root = tmp_path_factory.mktemp("skip")
    demo = make_demo_tree(root / "src", boards=8, commits=1)
    touch_branch(demo, BRANCH, [f"{demo.board('sandbox').board_dir}/board.c",
                                "include/demo.h"])
    git(demo.path, "checkout", "-q", BRANCH)
    (demo.path / "drivers" / "added.c").write_text("int added_unused;\n")
    git(demo.path, "add", "drivers/added.c")
    git(demo.path, "commit", "-q", "-m", "drivers: add a file no board builds")
    for rel, line in (("Makefile", "# a comment\n"),
                      (f"{demo.board('initech_rv2').board_dir}/board.c", "/* c */\n")):
        with (demo.path / rel).open("a") as f:
            f.write(line)
        git(demo.path, "commit", "-q", "-am", f"{rel}: a comment")
    git(demo.path, "checkout", "-q", demo.branch)
    return demo


def _files(build: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in build.iterdir()
            if p.is_file() and p.name not in UNSTABLE}


def _build_twice(tree: DemoTree, root: Path, *extra: str) -> tuple[Path, Path, str]:
    """(skipping tree, --no-skip tree, the skipping run's stdout): both built at
    the same output path, the first moved aside, so paths inside files match."""
    settings = settings_file(root)
    out = root / "out"
    args = ["-b", BRANCH, "--boards", ",".join(BOARDS), "-r", "-o", str(out),
            "-G", str(settings), *extra]
    first = run_bf(args, tree.path, bf_env())
    assert first.returncode == 0, first
    skipped = root / "skipped"
    shutil.move(out, skipped)
    second = run_bf([*args, "--no-skip"], tree.path, bf_env())
    assert second.returncode == 0, second
    assert "skipped" not in second.stdout, second
    return skipped / BRANCH, out / BRANCH, first.stdout


def _expected_copies(tree: DemoTree) -> dict[tuple[int, str], int]:
    """(sequence, target) -> sequence it copies, for the ``touch`` branch."""
    # 1: sandbox's board.c; 2: include/demo.h (read by all); 3: an added file;
    # 4: the Makefile; 5: initech_rv2's board.c.
    return {(1, "acme_arm1"): 0, (1, "initech_rv2"): 0,
            (5, "sandbox"): 4, (5, "acme_arm1"): 4}


def _compare(tree: DemoTree, with_skip: Path, without: Path) -> None:
    revs = branch_revs(tree.path, BRANCH)
    assert len(revs) == 6
    want = _expected_copies(tree)
    for rev in revs:
        for target in BOARDS:
            a, b = result_dir(with_skip, rev, target), result_dir(without, rev, target)
            fa, fb = _files(a), _files(b)
            marker = fa.pop(COPIED_FROM, None)
            assert COPIED_FROM not in fb, b
            if (rev.seq, target) in want:
                assert marker == f"{revs[want[rev.seq, target]].hash}\n".encode(), a
            else:
                assert marker is None, f"{a} was skipped, but its commit could change it"
            assert sorted(fa) == sorted(fb), a
            differ = [name for name in fa if fa[name] != fb[name]]
            assert not differ, f"{a}: {differ} differ from the --no-skip build"


def test_skipped_tree_equals_no_skip_tree(tree: DemoTree, tmp_path: Path) -> None:
    with_skip, without, stdout = _build_twice(tree, tmp_path, "-v")
    _compare(tree, with_skip, without)
    n = len(_expected_copies(tree))
    assert f"{n} skipped (unchanged: result copied)" in stdout
    assert stdout.count("skipped: unchanged since") == n  # -v: one line per copy
    # The summary and the JSON report read a copy as the result it copies.
    for flags in (["-se"], ["-sSdB"]):
        got = [run_bf(["-b", BRANCH, "-o", str(d.parent), *flags], tree.path, bf_env())
               for d in (with_skip, without)]
        assert got[0].returncode == got[1].returncode
        assert got[0].stdout == got[1].stdout
    report = tmp_path / "r.json"
    run = run_bf(["-b", BRANCH, "-o", str(with_skip.parent), "-s", "--report", str(report)],
                 tree.path, bf_env())
    assert run.returncode == 0, run
    results = json.loads(report.read_text())["results"]
    copied = {(r["commit"], r["target"]): r["copied_from"] for r in results}
    revs = branch_revs(tree.path, BRANCH)
    assert {k: v for k, v in copied.items() if v} == {
        k: revs[v].hash for k, v in _expected_copies(tree).items()}


def test_why_build_is_cautious(tmp_path: Path) -> None:
    """Each reason to build, on a real dependency file (gcc -MD)."""
    src, out = tmp_path / "src", tmp_path / "src" / "build"
    (src / "include").mkdir(parents=True)
    (src / "include" / "a.h").write_text("#define A 1\n")
    (src / "b.c").write_text('#include "a.h"\nint b = A;\n')
    (src / "other.c").write_text("int other;\n")
    (out / "arch").mkdir(parents=True)
    # The kbuild case: O= links an arch directory into the source tree.
    (src / "arch-x").mkdir()
    (src / "arch-x" / "clock.h").write_text("\n")
    (out / "include").mkdir()
    (out / "include" / "arch").symlink_to(src / "arch-x")

    def deps() -> frozenset[str] | None:
        return skip.read_deps(out, src)

    assert skip.why_build([("M", "other.c")], out, deps) == "no dependency files in O="
    (out / ".b.o.cmd").write_text(
        "deps_b.o := \\\n  ../b.c \\\n  $(wildcard include/config/x.h) \\\n"
        "  ../include/a.h \\\n  include/arch/clock.h \\\n\nb.o: $(deps_b.o)\n")
    assert skip.why_build([("M", "other.c")], out, deps) is None
    assert skip.why_build([("M", "include/a.h")], out, deps) is not None
    assert skip.why_build([("M", "b.c")], out, deps) is not None
    assert skip.why_build([("M", "arch-x/clock.h")], out, deps) is not None
    for status in ("A", "D", "T"):
        assert skip.why_build([(status, "other.c")], out, deps) is not None
    for path in ("Makefile", "arch/Kconfig", "config.mk", "scripts/x.c", "u-boot.lds",
                 "drivers/blob.bin"):
        assert skip.why_build([("M", path)], out, deps) is not None, path
    (out / "other.c").write_text("")  # a generated file of that name
    assert skip.why_build([("M", "other.c")], out, deps) is not None


# Files whose bytes are the same wherever a result was built (paths inside the
# others, e.g. out-env and the objects' debug strings, name the machine's work
# directory).
SAME_ANYWHERE = ("done", "err", "log", "sizes", "u-boot.sizes", "u-boot.cfg", "uboot.env",
                 "out-cmd", "toolchain", ".config", "images.sha256")


@pytest.mark.sshd
def test_workers_skip_alike(tree: DemoTree, tmp_path: Path, sshd_harness: SshdHarness) -> None:
    """Over --dist the worker's slot runner skips the same pairs, with the same files."""
    lines = ["[machines]", *(f"{m.name} = {m.alias}" for m in sshd_harness.reachable)]
    for m in sshd_harness.reachable:
        lines += [f"[machine:{m.name}]", "busy_load = 100", "min_disk_mb = 10",
                  "min_mem_mb = 10"]
    settings = tmp_path / "buildman.cfg"
    settings.write_text("\n".join(lines) + "\n")
    common = ["-b", BRANCH, "--boards", ",".join(BOARDS), "-r", "-G", str(settings)]
    dist = run_bf([*common, "--dist", "--no-local", "-o", str(tmp_path / "dist")], tree.path,
                  bf_env(), timeout=240)
    assert dist.returncode == 0, dist
    local = run_bf([*common, "--no-skip", "-o", str(tmp_path / "local")], tree.path, bf_env())
    assert local.returncode == 0, local
    want = _expected_copies(tree)
    assert f"{len(want)} skipped (unchanged: result copied)" in dist.stdout, dist
    revs = branch_revs(tree.path, BRANCH)
    for rev in revs:
        for target in BOARDS:
            a = result_dir(tmp_path / "dist" / BRANCH, rev, target)
            b = result_dir(tmp_path / "local" / BRANCH, rev, target)
            assert (a / "host").is_file(), a  # built (or copied) by a worker
            assert (a / COPIED_FROM).is_file() == ((rev.seq, target) in want), a
            for name in SAME_ANYWHERE:
                assert (a / name).is_file() == (b / name).is_file(), a / name
                if (a / name).is_file():
                    assert (a / name).read_bytes() == (b / name).read_bytes(), a / name
