"""Summary mode (-s and its display flags) on a hand-written buildman-format tree.

The expected lines were checked against the reference buildman's own summary
code run on the same tree: the text must be identical.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from buildfleet.cmdline import options, parse_args
from buildfleet.model import Board, Commit
from buildfleet.options import threads_and_jobs
from buildfleet.results.paths import build_dir
from buildfleet.results.reader import read_result
from buildfleet.results.summary import (
    SummaryOptions,
    format_board_result,
    run_summary,
    show_summary,
    summary_header,
)
from results_tree import BOARDS, COMMITS, ERR, MAKE_ERR, UNBUILT, WARN, WARN_FUNC, make_tree

FLAKES = ["Likely flakes (failed then recovered, re-run to confirm):", "  board_b"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("out") / "demo")


def summary(base: Path, argv: list[str], boards: list[Board] | None = None,
            commits: list[Commit] | None = None, color: bool = False) -> list[str]:
    opts = options(parse_args(["-s", *argv]), SummaryOptions)
    out = io.StringIO()
    show_summary(base, COMMITS if commits is None else commits, boards or BOARDS, opts, out,
                 color, io.StringIO())
    return out.getvalue().splitlines()


def test_plain(tree: Path) -> None:
    assert summary(tree, []) == [
        "01: Initial commit",
        "02: Add warning to foo",
        "       arm:  w+   board_a +   board_b",
        "     riscv:  w+   board_c",
        "03: Fix board b",
        "       arm:     board_b",
        "     riscv:     board_c",
        *FLAKES,
    ]


def test_errors(tree: Path) -> None:
    assert summary(tree, ["-e"]) == [
        "01: Initial commit",
        "02: Add warning to foo",
        "       arm:  w+   board_a +   board_b",
        "     riscv:  w+   board_c",
        f"+{ERR}",
        f"+{MAKE_ERR}",
        f"w+{WARN_FUNC}",
        f"w+{WARN}",
        "03: Fix board b",
        "       arm:     board_b",
        "     riscv:     board_c",
        f"-{ERR}",
        f"-{MAKE_ERR}",
        *FLAKES,
    ]


def test_errors_with_boards(tree: Path) -> None:
    lines = summary(tree, ["-e", "-l"])
    assert lines[4:8] == [
        f"+(board_b) {ERR}",
        f"+(board_b) {MAKE_ERR}",
        f"w+(board_a board_c) {WARN_FUNC}",  # one line for both boards
        f"w+(board_a board_c) {WARN}",
    ]
    assert lines[11:13] == [f"-(board_b) {ERR}", f"-(board_b) {MAKE_ERR}"]


def test_sizes(tree: Path) -> None:
    assert summary(tree, ["-S"]) == [
        "01: Initial commit",
        "02: Add warning to foo",
        "       arm:  w+   board_a +   board_b",
        "     riscv:  w+   board_c",
        "     riscv: (for 1/1 boards) all +64.0 text +64.0",
        "03: Fix board b",
        "       arm:     board_b",
        "     riscv:     board_c",
        "       arm: (for 2/2 boards) all +8.0 bss +8.0",
        *FLAKES,
    ]


def test_sizes_detail(tree: Path) -> None:
    lines = summary(tree, ["-S", "-d"])
    assert lines[4:6] == ["     riscv: (for 1/1 boards) all +64.0 text +64.0",
                          "            board_c        : all +64 text +64"]
    assert lines[9:11] == ["       arm: (for 2/2 boards) all +8.0 bss +8.0",
                           "            board_a        : all +16 bss +16"]


def test_bloat(tree: Path) -> None:
    lines = summary(tree, ["-S", "-B"])
    assert lines[5:10] == [
        "            board_c        : all +64 text +64",
        "               u-boot: add: 1/0, grow: 1/0 bytes: 64/0 (64)",
        "                 function                                   old     new   delta",
        "                 new_func                                     -      32     +32",
        "                 main_loop                                   64      96     +32",
    ]


def test_config(tree: Path) -> None:
    change = ["   + u-boot.cfg: CONFIG_FOO=1 ", "   c u-boot.cfg: CONFIG_BAR=0x10 -> 0x20 ",
              "   + all: CONFIG_FOO=1 ", "   c all: CONFIG_BAR=0x10 -> 0x20 "]
    assert summary(tree, ["-K"]) == [
        "01: Initial commit",
        "02: Add warning to foo",
        "       arm:  w+   board_a +   board_b",
        "     riscv:  w+   board_c",
        "riscv:", *change,
        "board_c :", *change,
        "03: Fix board b",
        "       arm:     board_b",
        "     riscv:     board_c",
        *FLAKES,
    ]


def test_environment(tree: Path) -> None:
    lines = summary(tree, ["-U"])
    assert lines[4] == "   c board_a: bootdelay=2 -> 5 "
    assert lines[8] == "   + board_c: fdtfile=c.dtb "
    assert len(lines) == 9 + len(FLAKES)


def test_unknown_and_not_built(tree: Path) -> None:
    boards = [*BOARDS, UNBUILT]
    lines = summary(tree, ["-u", "--show-not-built"], boards)
    assert lines[:3] == ["01: Initial commit", "   sandbox:  ?   board_d",
                         "Boards not built (1): board_d"]
    assert lines.count("   sandbox:  ?   board_d") == 3
    assert "   sandbox:  ?   board_d" not in summary(tree, [], boards)


def test_step(tree: Path) -> None:
    expect = ["01: Initial commit", "03: Fix board b", "       arm:  w+   board_a",
              "       arm: (for 2/2 boards) all +8.0 bss +8.0",
              "     riscv: (for 1/1 boards) all +64.0 text +64.0"]
    assert summary(tree, ["--step", "2", "-S"]) == expect
    assert summary(tree, ["--step", "0", "-S"]) == expect  # first and last


def test_nothing_to_report(tree: Path) -> None:
    assert summary(tree, ["-e"], commits=COMMITS[:1]) == [
        "01: Initial commit", "(no errors to report)"]


def test_colour_only_when_asked(tree: Path) -> None:
    coloured = summary(tree, ["-e"], color=True)
    assert coloured[0] == "\033[1;34m01: Initial commit\033[0m"
    assert "\033[1;31m+\033[0m  \033[1;31m board_b\033[0m" in coloured[2]
    assert not any("\033" in line for line in summary(tree, ["-e"]))


def test_ide_mode(tree: Path) -> None:
    opts = options(parse_args(["-s", "-I"]), SummaryOptions)
    out, err = io.StringIO(), io.StringIO()
    show_summary(tree, COMMITS, BOARDS, opts, out, False, err)
    assert out.getvalue().splitlines() == ["01: Initial commit", "02: Add warning to foo",
                                           "03: Fix board b", "(no errors to report)", *FLAKES]
    assert err.getvalue().splitlines()[:4] == [WARN_FUNC, WARN, ERR, MAKE_ERR]


def test_run_summary_header(tree: Path) -> None:
    args = parse_args(["-s", "-T", "2", "-j", "3"])
    out = io.StringIO()
    threads, jobs = threads_and_jobs(args.threads, args.jobs, len(BOARDS), cpus=8)
    assert run_summary(options(args, SummaryOptions), tree, COMMITS, BOARDS, threads, jobs,
                       out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "Summary of 3 commits for 3 boards (2 threads, 3 jobs per thread)"
    assert "\033" not in out.getvalue()  # a StringIO is not a terminal
    assert summary_header([], BOARDS[:1], 1, 1) == \
        "Summary of current source for 1 boards (1 thread, 1 job per thread)"
    assert summary_header(COMMITS, BOARDS, 2, 1, step=2, no_local=True) == \
        "Summary of 2 commits for 3 boards"


def test_bloat_implies_detail() -> None:
    opts = options(parse_args(["-B"]), SummaryOptions)
    assert opts.detail and opts.bloat and opts.step == 1


def test_threads_and_jobs_are_buildmans_defaults_computed_once() -> None:
    """One answer for the plan and the summary header: a slot per CPU, at most one per
    board, make -j filling the CPUs; -T and -j win."""
    assert threads_and_jobs(None, None, n_boards=3, cpus=8) == (3, 3)
    assert threads_and_jobs(None, None, n_boards=100, cpus=8) == (8, 1)
    assert threads_and_jobs(2, 5, n_boards=100, cpus=8) == (2, 5)
    assert threads_and_jobs(None, None, n_boards=0, cpus=1) == (1, 1)


def test_current_source(tmp_path: Path) -> None:
    base = tmp_path / "current"
    board = BOARDS[0]
    cur = Commit(0, None, "")
    d = build_dir(base, cur, board.target)
    d.mkdir(parents=True)
    (d / "done").write_text("0")
    (d / "err").write_text(f"{WARN}\n")
    assert summary(base, ["-e"], [board], commits=[cur]) == [
        "       arm:  w+   board_a", f"w+{WARN}"]


def test_format_board_result(tree: Path) -> None:
    opts = options(parse_args(["-e"]), SummaryOptions)
    board_b = BOARDS[1]
    res = read_result(build_dir(tree, COMMITS[1], "board_b"))
    text = format_board_result(res, board_b, COMMITS[1], opts, False, remote="m1")
    assert text.splitlines() == ["[m1]", "02: Add warning to foo", "       arm:  +   board_b",
                                 f"+{ERR}", f"+{MAKE_ERR}"]
    ok = read_result(build_dir(tree, COMMITS[0], "board_b"))
    assert format_board_result(ok, board_b, Commit(0, None, ""), opts, False) == ""


def test_filters_and_blobs(tmp_path: Path) -> None:
    base = tmp_path / "b"
    commits = [Commit(0, "a" * 40, "One")]
    board = Board("blobby", "arm")
    d = build_dir(base, commits[0], "blobby")
    d.mkdir(parents=True)
    (d / "done").write_text("1")
    banner = "=" * 21 + " WARNING " + "=" * 22
    (d / "err").write_text(
        "arch/arm/dts/x.dtb: Warning (reg_format): bad reg\n"
        f"{banner}\nThis board does not use CONFIG_DM.\n{'=' * 52}\n"
        "Image 'image' is missing external blobs and is non-functional: tee-os\n"
        "Some images are invalid\n"
        "make: *** Waiting for unfinished jobs....\n")
    lines = summary(base, ["-e"], [board], commits=commits)
    assert lines == [
        "01: One", "       arm:  +   blobby",
        f"+{banner}", "+This board does not use CONFIG_DM.", f"+{'=' * 52}",
        "w+arch/arm/dts/x.dtb: Warning (reg_format): bad reg",
        "Missing external blobs (expected in a blobless build):",
        "+Image 'image' is missing external blobs and is non-functional: tee-os",
        "+Some images are invalid",
    ]
    filtered = summary(base, ["-e", "-y", "-Y"], [board], commits=commits)
    assert filtered[2:] == [
        "Missing external blobs (expected in a blobless build):",
        "+Image 'image' is missing external blobs and is non-functional: tee-os",
        "+Some images are invalid",
    ]


def test_reader(tree: Path, tmp_path: Path) -> None:
    res = read_result(build_dir(tree, COMMITS[2], "board_a"))
    assert res is not None
    assert res.return_code == 0 and res.outcome.name == "WARNING"
    assert res.sizes == {"u-boot": {"all": 1166, "text": 936, "data": 100, "bss": 66,
                                    "rodata": 64}}
    assert res.func_sizes == {"u-boot": {"main_loop": 256, "static.helper": 32, "tbl": 16}}
    assert res.config["u-boot.cfg"] == {"CONFIG_SYS_ARCH": '"arm"', "CONFIG_DM": "1"}
    assert res.environment == {"bootdelay": "5", "baudrate": "115200"}
    assert (res.duration, res.host) == (12.5, "local")
    assert res.toolchain["cross"] == "arm-linux-gnueabihf-"
    assert read_result(tmp_path / "nothing") is None
    # buildman's remote results: rc with a newline, host size output with a header
    # and the worker's absolute path, -1 for "retry"
    d = tmp_path / "remote"
    d.mkdir()
    (d / "done").write_text("-1\n")
    (d / "sizes").write_text("   text    data     bss     dec     hex filename\n"
                             "   1000     100      50    1150     47e "
                             "/home/w/dev/.bm-worker/.bm-work/03/build/u-boot\n")
    (d / "u-boot.cfg").write_text("#define CONFIG_X\nbroken line\n#define NOT_CONFIG 1\n")
    remote = read_result(d)
    assert remote is not None and remote.return_code == -1 and remote.outcome.name == "ERROR"
    assert list(remote.sizes) == ["u-boot"] and remote.sizes["u-boot"]["text"] == 1000
    assert remote.config == {"u-boot.cfg": {"CONFIG_X": "1"}}


def test_blank_lines_in_err_are_lines_as_in_buildman(tmp_path: Path) -> None:
    """A blank line inside a compiler's message (rustc prints them) is an error line
    of its own, as buildman shows it; -Y drops empty lines, as buildman's -Y does."""
    commit = Commit(0, "a" * 40, "Rust demo")
    board = Board("qemu-riscv64", "riscv64")
    result = build_dir(tmp_path, commit, board.target)
    result.mkdir(parents=True)
    (result / "done").write_text("2")
    (result / "err").write_text("error[E0463]: can't find crate for `core`\n  |\n\n"
                                "error: aborting due to 1 previous error\n")
    lines = summary(tmp_path, ["-e", "-l"], boards=[board], commits=[commit])
    assert lines[2:6] == [
        "+(qemu-riscv64) error[E0463]: can't find crate for `core`",
        "+(qemu-riscv64)   |",
        "+(qemu-riscv64) ",
        "+(qemu-riscv64) error: aborting due to 1 previous error",
    ], lines
    assert "+(qemu-riscv64) " not in summary(tmp_path, ["-e", "-l", "-Y"], boards=[board],
                                             commits=[commit])
