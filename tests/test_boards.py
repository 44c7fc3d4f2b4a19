"""The board database: a real kconfiglib scan of the demo tree, boards.cfg, selection."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from buildfleet.boards import (
    HEADER,
    BoardsError,
    boards_cfg_stale,
    ensure_boards_cfg,
    maintainer_check,
    read_boards_cfg,
    scan_boards,
    write_boards_cfg,
)
from buildfleet.demo import DemoTree, make_demo_tree
from buildfleet.model import Board
from buildfleet.selection import dry_run_term_lines, select_boards


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> DemoTree:
    return make_demo_tree(tmp_path_factory.mktemp("demo") / "src")


@pytest.fixture(scope="module")
def boards(tree: DemoTree) -> list[Board]:
    return scan_boards(tree.path, jobs=1)


def by_target(boards: list[Board]) -> dict[str, Board]:
    return {b.target: b for b in boards}


def test_scan_matches_the_demo(tree: DemoTree, boards: list[Board]) -> None:
    found = by_target(boards)
    assert sorted(found) == sorted(tree.targets)
    for brd in tree.boards:
        got = found[brd.target]
        assert (got.arch, got.cpu, got.soc, got.vendor, got.board_name, got.config_name) == (
            brd.arch, brd.cpu, brd.soc, brd.vendor, brd.board_name, brd.config_name)
        assert got.status == brd.status and got.maintainers == brd.maintainers
    # Arch fix-ups: arm + armv8 -> aarch64, riscv -> riscv64; '#include' defconfig via cpp.
    assert found["globex_a64"].arch == "aarch64" and found["globex_a64b"].arch == "aarch64"
    assert found["initech_rv1"].arch == "riscv64"
    assert found["acme_arm1"].arch == "arm" and found["acme_arm1"].cpu == "armv7"
    # An orphan has no maintainer (its '#M:' line notwithstanding), status '-'
    assert found["umbrella_arm3"].status == "" and found["umbrella_arm3"].maintainers == ()


def test_parallel_scan_equals_serial(tmp_path: Path) -> None:
    big = make_demo_tree(tmp_path / "big", boards=40, commits=1)
    assert scan_boards(big.path, jobs=2) == scan_boards(big.path, jobs=1)
    assert len(scan_boards(big.path, jobs=2)) == 40


def test_boards_cfg_round_trip_and_format(boards: list[Board], tmp_path: Path) -> None:
    cfg = tmp_path / "sub" / "boards.cfg"
    write_boards_cfg(cfg, boards)
    text = cfg.read_text()
    assert text.startswith(HEADER)
    assert "# Status, Arch, CPU, SoC, Vendor, Board, Target, Config, Maintainers\n" in text
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert rows == sorted(rows, key=str.lower)
    sandbox = next(r for r in rows if " sandbox " in r)
    assert sandbox.split()[:8] == ["Active", "sandbox", "sandbox", "-", "-", "sandbox",
                                    "sandbox", "sandbox"]
    # Columns padded to the widest value, two spaces apart: column 2 starts together.
    starts = {r.index(r.split()[1], len(r.split()[0])) for r in rows}
    assert starts == {len("Active") + 2}
    globex = next(r for r in rows if r.split()[6] == "globex_a64")
    # The board's own MAINTAINERS record replaces the top-level one (N: ^globex)
    assert globex.endswith("  Globex Maintainer <globex@example.com>")
    umbrella = next(r for r in rows if r.split()[6] == "umbrella_arm3")
    assert umbrella.split()[0] == "-" and umbrella.split()[-1] == "-"
    assert sorted(read_boards_cfg(cfg), key=lambda b: b.target) == \
        sorted(boards, key=lambda b: b.target)


def test_read_errors(tmp_path: Path) -> None:
    bad = tmp_path / "boards.cfg"
    bad.write_text("# x\nActive arm\n")
    with pytest.raises(BoardsError, match="boards.cfg:2: expected at least 8 columns"):
        read_boards_cfg(bad)
    with pytest.raises(BoardsError, match="cannot read board list"):
        read_boards_cfg(tmp_path / "missing.cfg")


def test_ensure_regenerates_when_stale(tree: DemoTree, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(tree.path, src, ignore=shutil.ignore_patterns(".git"))
    cfg = tmp_path / "out" / "boards.cfg"
    logs: list[str] = []
    first = ensure_boards_cfg(src, cfg, jobs=1, verbose=True, log=logs.append)
    assert cfg.is_file() and logs == ["Checking for Kconfig changes...",
                                      "Generating board list..."]
    assert len(first) == len(tree.boards)

    def age_cfg() -> None:  # make boards.cfg look older than every input
        os.utime(cfg, (1, 1))

    logs.clear()
    assert not boards_cfg_stale(src, cfg)
    ensure_boards_cfg(src, cfg, jobs=1, verbose=True, log=logs.append)
    assert logs[-1] == f"{cfg} is up to date. Nothing to do."

    # A new defconfig (newer than boards.cfg) is picked up.
    (src / "configs" / "acme_copy_defconfig").write_text(
        (src / "configs" / "acme_arm1_defconfig").read_text())
    age_cfg()
    again = ensure_boards_cfg(src, cfg, jobs=1)
    assert "acme_copy" in by_target(again)
    assert by_target(read_boards_cfg(cfg))["acme_copy"].board_name == "acme_arm1"

    # A listed target whose defconfig vanished forces a rescan even if times say fresh.
    (src / "configs" / "acme_copy_defconfig").unlink()
    assert boards_cfg_stale(src, cfg)
    assert "acme_copy" not in by_target(ensure_boards_cfg(src, cfg, jobs=1))

    # The old format ('Options,') is regenerated.
    cfg.write_text(cfg.read_text().replace("# Status,", "# Status, Options,"))
    assert boards_cfg_stale(src, cfg)
    ensure_boards_cfg(src, cfg, jobs=1)
    assert "Options," not in cfg.read_text()

    # MAINTAINERS changes count too.
    (src / "board" / "acme" / "acme_arm2" / "MAINTAINERS").write_text(
        "ACME_ARM2 BOARD\nM:\tNew Person <new@example.com>\nS:\tOdd Fixes\n"
        "F:\tconfigs/acme_arm2_defconfig\n")
    age_cfg()
    warnings: list[str] = []
    updated = by_target(ensure_boards_cfg(src, cfg, jobs=1, warn=warnings.append))
    assert updated["acme_arm2"].maintainers == ("New Person <new@example.com>",)
    assert updated["acme_arm2"].status == ""  # boards.cfg: '-'
    assert warnings == ["WARNING: Odd Fixes: unknown status for 'acme_arm2'",
                        "WARNING: no maintainers for 'umbrella_arm3'"]


def test_maintainer_warnings_and_full_check(tree: DemoTree, tmp_path: Path) -> None:
    assert maintainer_check(tree.path, full=True) == [
        "WARNING: no maintainers for 'umbrella_arm3'"]
    src = tmp_path / "src"
    shutil.copytree(tree.path, src, ignore=shutil.ignore_patterns(".git"))
    (src / "board" / "initech" / "initech_rv1" / "MAINTAINERS").unlink()
    (src / "board" / "initech" / "initech_rv2" / "MAINTAINERS").write_text(
        "RV2\nM:\tSomeone <s@example.com>\nF:\tconfigs/initech_rv2_defconfig\n")
    # For --full-check: a defconfig that enables no TARGET_ (the riscv target choice
    # made optional) and one that enables two (a TARGET_ outside the choice).
    riscv = src / "arch" / "riscv" / "Kconfig"
    riscv.write_text(riscv.read_text().replace('prompt "Target select"',
                                               'prompt "Target select"\n\toptional'))
    kconfig = src / "Kconfig"
    kconfig.write_text(kconfig.read_text() + '\nconfig TARGET_EXTRA\n\tbool "Extra"\n')
    (src / "configs" / "lonely_defconfig").write_text("CONFIG_RISCV=y\n")
    (src / "configs" / "dup_defconfig").write_text("CONFIG_TARGET_EXTRA=y\n")
    (src / "MAINTAINERS").write_text((src / "MAINTAINERS").read_text() +
                                     "\nMORE\nM:\tL <l@example.com>\nS:\tMaintained\n"
                                     "F:\tconfigs/lonely_defconfig\nN:\t^dup$\n")
    # A record without S: has status '-' (buildman's default), which is unknown
    maint = [
        "WARNING: -: unknown status for 'initech_rv2'",
        "WARNING: no maintainers for 'initech_rv1'",
        "WARNING: no maintainers for 'umbrella_arm3'",
    ]
    assert maintainer_check(src, full=False) == maint
    full = maintainer_check(src, full=True)
    assert sorted(full[:2]) == [
        "WARNING: dup_defconfig: Duplicate TARGET_xxx: sandbox and extra",
        "WARNING: lonely_defconfig: No TARGET_LONELY enabled",
    ] and full[2:] == maint


def test_no_kconfig_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BoardsError, match="has no Kconfig"):
        scan_boards(tmp_path)


def test_select_terms(boards: list[Board]) -> None:
    sel = select_boards(boards, [])
    # boards.cfg's order is kept (buildman lists boards in it everywhere): the
    # orphan (status '-') first, then by arch
    assert [b.target for b in boards][:3] == ["umbrella_arm3", "globex_a64", "globex_a64b"]
    assert len(sel.boards) == len(boards) and sel.why_selected == {
        "all": [b.target for b in boards]}
    # Match at start: 'acme' matches, 'cme' does not.
    assert [b.target for b in select_boards(boards, ["acme"]).boards] == [
        "acme_arm1", "acme_arm2"]
    cme = select_boards(boards, ["cme"])
    assert cme.boards == [] and cme.unmatched_terms == ["cme"]
    # Terms are ORed; '&' ANDs within a term, with or without spaces.
    for spelled in (["arm & armv7"], ["arm&armv7"], ["arm &armv7"], ["arm", "&", "armv7"]):
        sel = select_boards(boards, spelled)
        assert [b.target for b in sel.boards] == ["umbrella_arm3", "acme_arm1", "acme_arm2"]
        assert list(sel.why_selected) == ["arm&armv7"]
    sel = select_boards(boards, ["sandbox riscv64"])
    assert [b.target for b in sel.boards] == ["initech_rv1", "initech_rv2", "sandbox"]
    assert sel.why_selected == {"sandbox": ["sandbox"],
                                "riscv64": ["initech_rv1", "initech_rv2"]}


def test_select_exclude_and_board_list(boards: list[Board]) -> None:
    sel = select_boards(boards, ["arm", "aarch64"], exclude=["umbrella,globex_a64b"])
    assert [b.target for b in sel.boards] == ["globex_a64", "acme_arm1", "acme_arm2"]
    # 'arm' also matches cpu 'armv8' at its start.
    assert sel.why_selected["arm"] == ["globex_a64", "acme_arm1", "acme_arm2"]
    # --boards together with terms: the union; unknown names reported.
    sel = select_boards(boards, ["sandbox"], board_list=["initech_rv2,nosuch", "other"])
    assert [b.target for b in sel.boards] == ["initech_rv2", "sandbox"]
    assert sel.not_found == ["nosuch", "other"]
    only = select_boards(boards, [], board_list=["acme_arm1"])
    assert [b.target for b in only.boards] == ["acme_arm1"] and "all" not in only.why_selected


def test_regex_error(boards: list[Board]) -> None:
    with pytest.raises(BoardsError, match=r"invalid board selection regex '\[arm'"):
        select_boards(boards, ["[arm"])
    with pytest.raises(BoardsError, match="invalid board selection regex"):
        select_boards(boards, [], exclude=["(x"])


def test_dry_run_lines(boards: list[Board]) -> None:
    sel = select_boards(boards, ["acme", "initech"])
    assert dry_run_term_lines(sel, verbose=False) == [
        "acme : 2 boards", "initech : 2 boards", "Total boards to build for each commit: 4"]
    assert dry_run_term_lines(sel, verbose=True) == [
        "acme : 2 boards", "   acme_arm1 acme_arm2",
        "initech : 2 boards", "   initech_rv1 initech_rv2",
        "Total boards to build for each commit: 4"]
    everything = dry_run_term_lines(select_boards(boards, []), verbose=False)
    assert everything == ["all : 8 boards", "Total boards to build for each commit: 8"]


def test_orphans_and_dash_maintainers_have_none(tree: DemoTree, tmp_path: Path) -> None:
    """Issue 13, point 7: as buildman, an orphan or an 'M: -' board has no maintainer."""
    assert tree.orphan_target == "umbrella_arm3"
    src = tmp_path / "src"
    shutil.copytree(tree.path, src, ignore=shutil.ignore_patterns(".git"))
    (src / "board" / "acme" / "acme_arm2" / "MAINTAINERS").write_text(
        "ACME_ARM2 BOARD\nM:\t-\nS:\tMaintained\nF:\tconfigs/acme_arm2_defconfig\n")
    assert maintainer_check(src, full=False) == [
        "WARNING: no maintainers for 'acme_arm2'",
        "WARNING: no maintainers for 'umbrella_arm3'",
    ]
    found = by_target(scan_boards(src, jobs=1))
    for target in ("acme_arm2", "umbrella_arm3"):
        assert (found[target].status, found[target].maintainers) == ("", ())
    run = subprocess.run([sys.executable, "-m", "buildfleet", "--maintainer-check"], cwd=src,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run
    assert run.stderr.splitlines() == [
        "WARNING: no maintainers for 'acme_arm2'",
        "WARNING: no maintainers for 'umbrella_arm3'",
    ]
