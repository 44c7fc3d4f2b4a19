"""buildman's config and placement flags on the demo tree: -a, --fragments, -X, -w, --dtc-skip.

Why: each of these changes what is built or where, so each test runs the
real command on the demo tree (real make, real compilers, the tree's own
Kconfig) and asserts on what lands in the output tree: the resolved
``.config``, the image sizes, the recorded adjustments, the error lines. The
demo's ``DEMO_TURBO`` option depends on the lookup-table driver, so asking
for it on a board without the table is an adjustment that cannot hold.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bfrun import (
    Run,
    branch_revs,
    done_code,
    make_lines,
    path_without,
    require_cross,
    result_dir,
    run_bf,
    settings_file,
    sizes_of,
)
from buildfleet.demo import DemoTree, make_demo_tree

TABLE_BOARD = "acme_arm1"      # has the lookup table: DEMO_TURBO can be enabled
PLAIN_BOARD = "acme_arm2"      # no table: DEMO_TURBO cannot hold


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoTree:
    require_cross()
    return make_demo_tree(tmp_path_factory.mktemp("flags") / "tree", boards=6, commits=2)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return settings_file(tmp_path_factory.mktemp("settings"))


def config_of(build: Path) -> dict[str, str]:
    """The CONFIG_ lines of a result's ``.config`` (``n`` for 'is not set')."""
    out = {}
    for line in (build / ".config").read_text().splitlines():
        if line.startswith("CONFIG_"):
            name, _, value = line.partition("=")
            out[name] = value
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2:-len(" is not set")]] = "n"
    return out


def bf(demo: DemoTree, settings: Path, *args: str) -> Run:
    return run_bf(["-G", str(settings), *args], cwd=demo.path)


# ---- -a / --adjust-cfg ----------------------------------------------------------------------

def test_adjust_cfg_is_applied_checked_and_recorded(demo: DemoTree, settings: Path,
                                                    tmp_path: Path) -> None:
    plain = run_bf(["-G", str(settings), "-o", str(tmp_path / "plain"), TABLE_BOARD],
                   cwd=demo.path)
    run = run_bf(["-G", str(settings), "-o", str(tmp_path / "adj"),
                  "-a", "DEMO_TURBO,CONFIG_DEMO_TURBO_SLOTS=16", "-a",
                  'DEMO_TURBO_NAME="fast"', "-a", "~CONFIG_DEMO_FEATURE_X", TABLE_BOARD],
                 cwd=demo.path)
    assert plain.returncode == 101, plain  # the demo's feature-x warning
    assert run.returncode == 0, run        # feature X is off now: no warning left
    build = tmp_path / "adj" / "current" / TABLE_BOARD
    cfg = config_of(build)
    assert cfg["CONFIG_DEMO_TURBO"] == "y"
    assert cfg["CONFIG_DEMO_TURBO_SLOTS"] == "16"
    assert cfg["CONFIG_DEMO_TURBO_NAME"] == '"fast"'
    assert cfg["CONFIG_DEMO_FEATURE_X"] == "n"
    assert cfg["CONFIG_DEMO_TABLE"] == "y"  # the rest of the defconfig still holds
    assert (build / "adjust-cfg").read_text().splitlines() == [
        "CONFIG_DEMO_TURBO=y", "CONFIG_DEMO_TURBO_SLOTS=16", 'CONFIG_DEMO_TURBO_NAME="fast"',
        "~CONFIG_DEMO_FEATURE_X"]
    # 16 cache slots of 16 bytes are in the image (nm's size column), and it grew.
    before = sizes_of(tmp_path / "plain" / "current" / TABLE_BOARD)["u-boot"]
    after = sizes_of(build)["u-boot"]
    assert after[0] > before[0]
    rows = [ln.split() for ln in (build / "u-boot.sizes").read_text().splitlines()]
    symbols = {row[-1]: int(row[0], 16) for row in rows if len(row) == 3}
    assert symbols["turbo_cache"] == 16 * 16
    assert not (tmp_path / "plain" / "current" / TABLE_BOARD / "adjust-cfg").exists()
    assert any(ln.endswith(" alldefconfig") for ln in make_lines(build))


def test_adjustment_that_cannot_hold_fails_the_board(demo: DemoTree, settings: Path,
                                                     tmp_path: Path) -> None:
    run = bf(demo, settings, "-o", str(tmp_path), "-a", "DEMO_TURBO", TABLE_BOARD, PLAIN_BOARD)
    assert run.returncode == 100, run
    bad = tmp_path / "current" / PLAIN_BOARD
    good = tmp_path / "current" / TABLE_BOARD
    assert done_code(bad) != 0 and done_code(good) == 0
    err = (bad / "err").read_text().splitlines()
    assert err == ["error: -a CONFIG_DEMO_TURBO=y did not take effect: .config has no "
                   "CONFIG_DEMO_TURBO (its dependencies are not met)"]
    assert "CONFIG_DEMO_TURBO" in run.stdout  # -v of a current-source build shows it
    assert not (bad / "sizes").exists()  # nothing was built with the wrong config


@pytest.mark.parametrize("bad", ["DEMO TURBO", "~X=y", "CONFIG_=1", "X-Y"])
def test_bad_adjustment_is_one_line_error(demo: DemoTree, settings: Path, tmp_path: Path,
                                          bad: str) -> None:
    run = bf(demo, settings, "-o", str(tmp_path), "-a", bad, TABLE_BOARD)
    assert run.returncode == 1, run
    assert len(run.stderr.splitlines()) == 1 and "-a/--adjust-cfg" in run.stderr, run
    assert not (tmp_path / "current" / TABLE_BOARD).exists()


def test_branch_results_are_rebuilt_when_adjustments_differ(demo: DemoTree, settings: Path,
                                                            tmp_path: Path) -> None:
    """-b without -f reuses results only if they were built with the same -a."""
    def run(*extra: str) -> Run:
        out = bf(demo, settings, "-o", str(tmp_path), "-b", "demo", "-c", "1", *extra,
                 TABLE_BOARD)
        assert out.returncode in (0, 101), out
        return out

    run()
    (commit,) = [d for d in (tmp_path / "demo").iterdir() if d.name.startswith("01_g")]
    build = commit / TABLE_BOARD
    assert config_of(build)["CONFIG_DEMO_TURBO"] == "n"
    second = run("-a", "DEMO_TURBO")
    assert "Rebuilding 1 results built with other -a/--fragments" in second.stdout, second
    assert config_of(build)["CONFIG_DEMO_TURBO"] == "y"
    third = run("-a", "CONFIG_DEMO_TURBO=y")  # the same request, spelt otherwise
    assert "Nothing to build" in third.stdout, third
    fourth = run()
    assert "Rebuilding 1 results" in fourth.stdout, fourth
    assert config_of(build)["CONFIG_DEMO_TURBO"] == "n"
    assert not (build / "adjust-cfg").exists()


def test_adjustments_hold_through_incremental_commits(demo: DemoTree, settings: Path,
                                                     tmp_path: Path) -> None:
    run = bf(demo, settings, "-o", str(tmp_path), "-b", "demo", "-a", "DEMO_TURBO_SLOTS=12,"
             "DEMO_TURBO", TABLE_BOARD)
    assert run.returncode == 101, run
    for rev in branch_revs(demo.path, "demo"):
        cfg = config_of(result_dir(tmp_path / "demo", rev, TABLE_BOARD))
        assert cfg["CONFIG_DEMO_TURBO_SLOTS"] == "12", rev


# ---- --fragments and -X -----------------------------------------------------------------------

def test_fragments_are_make_targets_found_by_make(demo: DemoTree, settings: Path,
                                                  tmp_path: Path) -> None:
    run = bf(demo, settings, "-o", str(tmp_path), "--fragments", "turbo.config", TABLE_BOARD)
    assert run.returncode == 101, run
    build = tmp_path / "current" / TABLE_BOARD
    cfg = config_of(build)
    # make merges every turbo.config it finds, as U-Boot's rule does: configs/'s
    # (8 slots) and board/common/configs/'s (the name).
    assert cfg["CONFIG_DEMO_TURBO"] == "y" and cfg["CONFIG_DEMO_TURBO_SLOTS"] == "8"
    assert cfg["CONFIG_DEMO_TURBO_NAME"] == '"board"'
    assert any(ln.endswith(f"{TABLE_BOARD}_defconfig turbo.config") for ln in make_lines(build))
    assert (build / "adjust-cfg").read_text() == "fragment turbo.config\n"


def test_missing_fragment_fails_the_board_and_bad_name_is_usage_error(
        demo: DemoTree, settings: Path, tmp_path: Path) -> None:
    run = bf(demo, settings, "-o", str(tmp_path), "--fragments", "nosuch.config", TABLE_BOARD)
    assert run.returncode == 100, run
    err = (tmp_path / "current" / TABLE_BOARD / "err").read_text()
    assert "No configuration exists" in err
    bad = bf(demo, settings, "-o", str(tmp_path / "x"), "--fragments", "configs/turbo",
             TABLE_BOARD)
    assert bad.returncode == 1 and len(bad.stderr.splitlines()) == 1, bad
    assert "--fragments" in bad.stderr


def test_extended_boards_are_selected_and_built(demo: DemoTree, settings: Path,
                                                tmp_path: Path) -> None:
    dry = bf(demo, settings, "-o", str(tmp_path), "-X", "-n", "-v", "turbo")
    assert dry.returncode == 0, dry
    # acme* and initech* boards that have the table (initech_rv2 has not).
    assert "turbo,acme_arm1 turbo,initech_rv1" in dry.stdout, dry
    without = bf(demo, settings, "-o", str(tmp_path), "turbo,")
    assert without.returncode == 1 and "no board matches" in without.stderr, without
    run = bf(demo, settings, "-o", str(tmp_path), "-X", "turbo,")
    assert run.returncode == 101, run  # acme_arm1's feature-x warning
    for target in ("turbo,acme_arm1", "turbo,initech_rv1"):
        build = tmp_path / "current" / target
        cfg = config_of(build)
        # fragment: turbo is make's turbo.config (both files, as buildman), and
        # configs/turbo.config's lines are checked to hold.
        assert cfg["CONFIG_DEMO_TURBO"] == "y" and cfg["CONFIG_DEMO_TURBO_SLOTS"] == "8"
        assert cfg["CONFIG_DEMO_TURBO_NAME"] == '"board"'
        base = target.split(",", 1)[1]
        assert any(ln.endswith(f" {base}_defconfig turbo.config") for ln in make_lines(build))
        assert done_code(build) == 0
        assert not (build / "adjust-cfg").exists()  # no -a or --fragments in this run


def test_extended_board_whose_fragment_cannot_hold_fails(demo: DemoTree, settings: Path,
                                                         tmp_path: Path) -> None:
    """A .buildman record on a board without the table: its fragment's lines fail."""
    tree = tmp_path / "tree"
    shutil.copytree(demo.path, tree, symlinks=True)
    (tree / "configs" / "plain.buildman").write_text(
        f"name: plain\nfragment: turbo\ntargets:\n  {PLAIN_BOARD}\n")
    run = run_bf(["-G", str(settings), "-o", str(tmp_path / "out"), "-X", "plain,"], cwd=tree)
    assert run.returncode == 100, run
    build = tmp_path / "out" / "current" / f"plain,{PLAIN_BOARD}"
    err = (build / "err").read_text()
    assert ("error: configs/turbo.config CONFIG_DEMO_TURBO=y did not take effect: .config has "
            "no CONFIG_DEMO_TURBO (its dependencies are not met)") in err, err
    assert not (build / "sizes").exists()


@pytest.mark.parametrize("text,where,what", [
    ("name: a\n  acme*\n", "x.buildman:2", "Unexpected indent"),
    ("name: a b\n", "x.buildman:1", "Invalid name"),
    ("name: a\ncolour: red\n", "x.buildman:2", "Unknown tag 'colour'"),
    ("name: a\ntargets:\n  CONFIG_A=b=c\n", "x.buildman:3", "Invalid CONFIG syntax"),
    ("name: a\nfragment: nosuch\ntargets:\n  acme*\n", "x.buildman:1", "configs/nosuch.config"),
])
def test_malformed_buildman_file_is_one_line_error(demo: DemoTree, settings: Path,
                                                   tmp_path: Path, text: str, where: str,
                                                   what: str) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(demo.path, tree, symlinks=True)
    (tree / "configs" / "x.buildman").write_text(text)
    run = run_bf(["-G", str(settings), "-o", str(tmp_path / "out"), "-X", "-n", "acme"],
                 cwd=tree)
    assert run.returncode == 1, run
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and f"configs/{where}" in lines[0] and what in lines[0], run


# ---- -w ---------------------------------------------------------------------------------------

def test_work_in_output_builds_in_the_output_directory(demo: DemoTree, settings: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "w"
    run = bf(demo, settings, "-w", "-o", str(out), TABLE_BOARD)
    assert run.returncode == 101, run
    assert done_code(out) == 0
    assert (out / "u-boot").is_file() and (out / ".config").is_file()  # O= is the directory
    assert "u-boot" in sizes_of(out)
    assert not (out / "current").exists()
    assert any(f"O={out} " in ln for ln in make_lines(out))


@pytest.mark.parametrize("args,message", [
    (["-w", TABLE_BOARD], "-w requires that you specify -o"),
    (["-w", "-o", "OUT", TABLE_BOARD, PLAIN_BOARD], "-w can only be used with a single board"),
    (["-w", "-o", "OUT", "-b", "demo", TABLE_BOARD], "-w can only be used with a single commit"),
])
def test_work_in_output_usage_errors(demo: DemoTree, settings: Path, tmp_path: Path,
                                     args: list[str], message: str) -> None:
    args = [str(tmp_path / "w") if a == "OUT" else a for a in args]
    run = bf(demo, settings, *args)
    assert run.returncode == 1, run
    assert run.stderr.strip() == f"buildfleet: error: {message}", run


# ---- --dtc-skip -------------------------------------------------------------------------------

def test_dtc_skip_passes_the_system_dtc_or_refuses(demo: DemoTree, settings: Path,
                                                   tmp_path: Path) -> None:
    # A PATH without any dtc (but with the compilers): the run refuses before building.
    no_dtc = path_without("dtc", tmp_path / "no-dtc")
    assert shutil.which("dtc", path=no_dtc) is None
    env = dict(os.environ, PATH=no_dtc)
    run = run_bf(["-G", str(settings), "-o", str(tmp_path / "o1"), "--dtc-skip", TABLE_BOARD],
                 cwd=demo.path, env=env)
    assert run.returncode == 1, run
    assert run.stderr.strip() == "buildfleet: error: --dtc-skip: Cannot find dtc", run
    # With a dtc on PATH, make is given DTC=<that dtc>.
    dtc_dir = tmp_path / "dtc-bin"
    dtc_dir.mkdir()
    dtc = dtc_dir / "dtc"
    dtc.write_text("#!/bin/sh\necho 'Version: DTC 1.7.0'\n")
    dtc.chmod(0o755)
    env = dict(os.environ, PATH=os.pathsep.join([str(dtc_dir), no_dtc]))
    run = run_bf(["-G", str(settings), "-o", str(tmp_path / "o2"), "--dtc-skip", TABLE_BOARD],
                 cwd=demo.path, env=env)
    assert run.returncode == 101, run
    out_env = (tmp_path / "o2" / "current" / TABLE_BOARD / "out-env").read_text()
    assert f'DTC="{dtc}"' in out_env
