"""-a, --fragments and -X over --dist: workers build exactly what a local run builds.

Why: buildman sends none of these to its workers, so a distributed run
silently builds plain boards (and, for -X, boards that do not exist there).
Each test builds the same selection locally and with ``--dist --no-local``
over the real-sshd harness, and asserts the two output trees are equal, the
resolved ``.config`` and the recorded adjustments included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from buildfleet.demo import DemoTree, make_demo_tree
from sshd_harness import SshdHarness
from test_dist import (  # noqa: F401  (no_leftover_workers: autouse fixture)
    Run,
    buildfleet,
    commit_dirs,
    host_of,
    no_leftover_workers,
    tree_differences,
    write_settings,
)

pytestmark = pytest.mark.sshd

# Beyond test_dist's SAME_BYTES: what these flags change.
CONFIG_FILES = (".config", "adjust-cfg", "autoconf.h", "u-boot.cfg", "sizes")


@dataclass
class Pair:
    local: Run
    remote: Run
    local_base: Path
    remote_base: Path


@pytest.fixture(scope="module")
def flags_tree(sshd_harness: SshdHarness,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoTree, Path, Path]]:
    root = tmp_path_factory.mktemp("distflags")
    tree = make_demo_tree(root / "src", boards=6, commits=1)
    settings = write_settings(root / "buildman.cfg", sshd_harness.machines)
    yield tree, settings, root


def both(flags_tree: tuple[DemoTree, Path, Path], name: str, *argv: str) -> Pair:
    tree, settings, root = flags_tree
    args = ["-G", str(settings), "-b", "demo", *argv]
    local = buildfleet([*args, "-o", str(root / f"{name}-local")], tree.path)
    remote = buildfleet([*args, "--dist", "--no-local", "-o", str(root / f"{name}-remote")],
                        tree.path)
    return Pair(local, remote, root / f"{name}-local" / "demo", root / f"{name}-remote" / "demo")


def assert_same_trees(pair: Pair, targets: list[str]) -> None:
    assert pair.remote.rc == pair.local.rc, pair.remote
    assert "Not built" not in pair.remote.stdout, pair.remote
    assert tree_differences(pair.local_base, pair.remote_base) == []
    commits = commit_dirs(pair.local_base)
    assert len(commits) == 2
    for commit in commits:
        assert sorted(b.name for b in commit.iterdir() if b.is_dir()) == sorted(targets)
        for target in targets:
            local, remote = commit / target, pair.remote_base / commit.name / target
            assert host_of(remote) in ("Alpha", "beta")
            for name in CONFIG_FILES:
                a, b = local / name, remote / name
                assert a.exists() == b.exists(), f"{target}/{name}"
                if a.exists():
                    assert a.read_bytes() == b.read_bytes(), f"{target}/{name} differs"


def test_adjust_cfg_over_dist(flags_tree: tuple[DemoTree, Path, Path]) -> None:
    targets = ["acme_arm1", "acme_arm2", "initech_rv1"]
    pair = both(flags_tree, "adjust", "-a", "DEMO_TURBO,DEMO_TURBO_SLOTS=16", *targets)
    assert pair.local.rc == 100, pair.local  # acme_arm2 has no table: DEMO_TURBO cannot hold
    assert_same_trees(pair, targets)
    for commit in commit_dirs(pair.remote_base):
        assert "CONFIG_DEMO_TURBO_SLOTS=16" in (commit / "initech_rv1" / ".config").read_text()
        assert "CONFIG_DEMO_TURBO=y did not take effect" in (
            commit / "acme_arm2" / "err").read_text()
        assert (commit / "acme_arm1" / "adjust-cfg").read_text() == (
            "CONFIG_DEMO_TURBO=y\nCONFIG_DEMO_TURBO_SLOTS=16\n")


def test_fragments_over_dist(flags_tree: tuple[DemoTree, Path, Path]) -> None:
    targets = ["acme_arm1", "initech_rv1"]
    pair = both(flags_tree, "frag", "--fragments", "turbo.config", *targets)
    assert pair.local.rc == 0, pair.local
    assert_same_trees(pair, targets)
    for commit in commit_dirs(pair.remote_base):
        cfg = (commit / "initech_rv1" / ".config").read_text()
        assert "CONFIG_DEMO_TURBO=y" in cfg and 'CONFIG_DEMO_TURBO_NAME="board"' in cfg


def test_extended_boards_over_dist(flags_tree: tuple[DemoTree, Path, Path]) -> None:
    targets = ["turbo,acme_arm1", "turbo,initech_rv1"]
    pair = both(flags_tree, "ext", "-X", "turbo,")
    assert pair.local.rc == 0, pair.local
    assert_same_trees(pair, targets)
    for commit in commit_dirs(pair.remote_base):
        for target in targets:
            assert "CONFIG_DEMO_TURBO_SLOTS=8" in (commit / target / ".config").read_text()
