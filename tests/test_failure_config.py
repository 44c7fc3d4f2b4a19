"""A failed commit does not cost a full build at the next one (issue 19, point 4).

buildman configures again after every failure; on U-Boot that rewrites
``.config`` and its syncconfig marks nearly every object stale (the demo
tree's configure does the same). When the failure came from the build right
after a good configure and nothing the configuration reads changed, the next
commit keeps the configuration, and its result must be exactly the one a run
that configures at every commit (``-C``) gets.

The demo tree of two boards: acme_arm1 warns from commit 1 (feature_x.c),
fails at commit 2 (board.c) and is fixed at commit 3, so the warning must
persist across the failure. ``-j 1`` keeps make's order fixed, so that which
files compiled before the error is the same in both runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bfrun import (
    branch_revs,
    configured,
    done_code,
    make_lines,
    require_cross,
    result_dir,
    run_bf,
    settings_file,
)
from buildfleet.demo import make_demo_tree

# Files that differ between any two runs by design: how long it took, and the
# commands (a run with -C has a configure line more; compared separately).
PER_RUN = {"duration", "out-cmd"}


def _files(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes()
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_commit_after_a_failure_equals_a_reconfigured_one(tmp_path: Path) -> None:
    require_cross()
    tree = make_demo_tree(tmp_path / "tree", boards=2)
    target = tree.broken_target
    assert target == "acme_arm1" and target in tree.warning_targets
    assert tree.broken_upto == 2 and tree.fixed_upto == 3
    settings = settings_file(tmp_path)
    common = ["-b", "demo", "--boards", target, "-T", "1", "-j", "1", "-r", "-G", str(settings)]
    kept = run_bf([*common, "-o", str(tmp_path / "run1")], cwd=tree.path)
    assert kept.returncode == 100, kept
    reconf = run_bf([*common, "-C", "-o", str(tmp_path / "run2")], cwd=tree.path)
    assert reconf.returncode == 100, reconf

    revs = branch_revs(tree.path, "demo")
    fixed_seq = tree.fixed_upto + 1
    for rev in revs:
        a = result_dir(tmp_path / "run1" / "demo", rev, target)
        b = result_dir(tmp_path / "run2" / "demo", rev, target)
        files_a = {k: v for k, v in _files(a).items() if k not in PER_RUN}
        files_b = {k: v for k, v in _files(b).items() if k not in PER_RUN}
        assert files_a.keys() == files_b.keys(), rev
        assert [k for k in files_a if files_a[k] != files_b[k]] == [], rev
        # the build command itself is the same; -C only adds its configure
        assert make_lines(a)[-1] == make_lines(b)[-1]
        assert configured(b, target)

    broken = result_dir(tmp_path / "run1" / "demo", revs[fixed_seq - 1], target)
    fixed = result_dir(tmp_path / "run1" / "demo", revs[fixed_seq], target)
    assert done_code(broken) == 2 and tree.error_text in (broken / "err").read_text()
    # the failed incremental build was retried after configuring (as buildman) ...
    assert configured(broken, target)
    # ... and the next commit, which changed no configuration input, kept it
    assert not configured(fixed, target), make_lines(fixed)
    assert done_code(fixed) == 0
    assert tree.warning_text in (fixed / "err").read_text()  # the warning persists


@pytest.mark.parametrize("changed", ["Kconfig", "configs/other_defconfig", "board/x/Kconfig",
                                     "configs/frag.config", "scripts/kconfig/conf.py",
                                     "Makefile"])
def test_configuration_inputs(changed: str) -> None:
    from buildfleet.build.builder import config_inputs_changed

    assert config_inputs_changed(["board/x/board.c", changed])
    assert not config_inputs_changed(["board/x/board.c", "include/configs/x.h",
                                      "drivers/Makefile"])
