"""The command line as a user meets it (issue 2): dry runs, toolchain queries, setup errors.

Runs the real ``buildfleet`` on a demo tree; expectations come from the
demo's own description of its boards (``DemoTree``), not from buildfleet.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from bfrun import Run, bf_env, branch_revs, done_code, require_cross, run_bf, settings_file
from buildfleet import __version__
from buildfleet.demo import DemoBoard, DemoTree, make_demo_tree
from ci_skip import require


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoTree:
    return make_demo_tree(tmp_path_factory.mktemp("cli") / "tree")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return settings_file(tmp_path_factory.mktemp("cli-settings"))


def _bf(demo: DemoTree, settings: Path, *args: str, env: dict[str, str] | None = None) -> Run:
    out = demo.path.parent / "out"
    return run_bf([*args, "-o", str(out), "-G", str(settings)], demo.path, env=env)


def _matches(board: DemoBoard, term: str) -> bool:
    """buildman's rule: a term matches the start of any of a board's fields."""
    fields = (board.target, board.arch, board.cpu, board.board_name, board.vendor, board.soc,
              board.config_name)
    return any(re.match(term, f) for f in fields if f)


def _listed(run: Run, term: str) -> list[str]:
    """The targets ``-n -v`` lists under ``<term> : N boards``."""
    lines = run.stdout.splitlines()
    for i, line in enumerate(lines):
        m = re.fullmatch(rf"{re.escape(term)} : (\d+) boards", line)
        if m:
            names = lines[i + 1].split() if int(m.group(1)) else []
            assert len(names) == int(m.group(1)), run
            return names
    raise AssertionError(f"no '{term} : N boards' line\n{run}")


def _one_error_line(run: Run) -> str:
    assert run.returncode == 1, run
    assert "Traceback" not in run.stderr, run
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("buildfleet: error: "), run
    return lines[0]


def test_version() -> None:
    run = run_bf(["--version"], Path.cwd())
    assert run.returncode == 0, run
    assert run.stdout.strip() == f"buildfleet {__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_dry_run_lists_exactly_the_arm_boards(demo: DemoTree, settings: Path) -> None:
    run = _bf(demo, settings, "-n", "-v", "arm")
    assert run.returncode == 0, run
    wanted = {b.target for b in demo.boards if _matches(b, "arm")}
    # the arm-arch boards, plus aarch64 ones whose cpu (armv8) starts with 'arm'
    assert {b.target for b in demo.boards if b.arch == "arm"} <= wanted
    # listed in boards.cfg's order, as buildman lists them
    cfg = (demo.path.parent / "out" / "boards.cfg").read_text().splitlines()
    order = [ln.split()[6] for ln in cfg if ln and not ln.startswith("#")]
    expected = [t for t in order if t in wanted]
    assert len(expected) == len(wanted) and expected[0] == "umbrella_arm3"
    assert _listed(run, "arm") == expected
    assert "Dry run, so not doing much" in run.stdout
    assert f"Building current source for {len(expected)} boards" in run.stdout
    assert f"Total boards to build for each commit: {len(expected)}" in run.stdout
    assert not (demo.path.parent / "out" / "current" / "sandbox").exists()


def test_and_and_exclude(demo: DemoTree, settings: Path) -> None:
    both = sorted(b.target for b in demo.boards if _matches(b, "aarch64")
                  and _matches(b, "globex"))
    assert len(both) >= 2, both
    run = _bf(demo, settings, "-n", "-v", "aarch64 & globex")
    assert run.returncode == 0, run
    assert _listed(run, "aarch64&globex") == both
    drop = both[-1]
    run = _bf(demo, settings, "-n", "-v", "aarch64 & globex", "-x", drop)
    assert run.returncode == 0, run
    assert _listed(run, "aarch64&globex") == [t for t in both if t != drop]
    assert f"Total boards to build for each commit: {len(both) - 1}" in run.stdout


def test_dry_run_of_a_branch_lists_its_commits(demo: DemoTree, settings: Path) -> None:
    run = _bf(demo, settings, "-n", "-b", "demo", "sandbox", "-T", "3", "-j", "5")
    assert run.returncode == 0, run
    revs = branch_revs(demo.path, "demo")
    assert f"Building {len(revs)} commits for 1 boards (3 threads, 5 jobs per thread)" \
        in run.stdout, run
    listed = re.findall(r"^    ([0-9a-f]{8}) (.*)$", run.stdout, re.M)
    assert listed == [(r.hash[:8], r.subject) for r in revs]


def test_list_tool_chains_finds_the_cross_compilers_and_gcc(settings: Path) -> None:
    require_cross()
    run = run_bf(["--list-tool-chains", "-G", str(settings)], Path.cwd())
    assert run.returncode == 0, run
    found = dict(re.findall(r"^(\S+)\s*: (\S+)$", run.stdout, re.M))
    for arch, prefix in (("arm", "arm-linux-gnueabihf-"), ("aarch64", "aarch64-linux-gnu-"),
                         ("riscv64", "riscv64-linux-gnu-")):
        assert arch in found, run
        assert found[arch] == shutil.which(prefix + "gcc"), run
    assert os.path.basename(found["sandbox"]) == "gcc", run


def test_print_prefix_and_arch(demo: DemoTree, settings: Path) -> None:
    require_cross()
    gcc = shutil.which("arm-linux-gnueabihf-gcc")
    assert gcc is not None
    # What buildman prints without a toolchain wrapper...
    run = _bf(demo, settings, "-A", "--no-ccache", "--boards", "acme_arm1")
    assert run.returncode == 0, run
    assert run.stdout.strip().splitlines()[-1] == gcc.removesuffix("gcc")
    # ... the same by default, where ccache (if installed) masquerades as the
    # compiler and CROSS_COMPILE stays the prefix ...
    run = _bf(demo, settings, "-A", "--boards", "acme_arm1")
    assert run.returncode == 0, run
    assert run.stdout.strip().splitlines()[-1] == gcc.removesuffix("gcc")
    # ... and the wrapper in front with "[toolchain-wrapper] wrapper = ccache".
    wrapped = settings.parent / "wrapped.ini"
    wrapped.write_text(settings.read_text() + "\n[toolchain-wrapper]\nwrapper = ccache\n")
    run = _bf(demo, wrapped, "-A", "--boards", "acme_arm1")
    assert run.returncode == 0, run
    assert run.stdout.strip().splitlines()[-1] == "ccache " + gcc.removesuffix("gcc")
    run = _bf(demo, settings, "--print-arch", "--boards", "globex_a64")
    assert run.returncode == 0, run
    assert run.stdout.strip().splitlines()[-1] == demo.board("globex_a64").arch


# ---- setup errors: one line, exit 1, no traceback ------------------------------------

def test_broken_settings_file(demo: DemoTree, tmp_path: Path) -> None:
    bad = tmp_path / "bad.ini"
    bad.write_text("[toolchain\nroot = /\n")
    line = _one_error_line(_bf(demo, bad, "-n"))
    assert str(bad) in line


def test_unknown_term(demo: DemoTree, settings: Path) -> None:
    line = _one_error_line(_bf(demo, settings, "-n", "nosuchboard"))
    assert "nosuchboard" in line


def test_unknown_branch(demo: DemoTree, settings: Path) -> None:
    line = _one_error_line(_bf(demo, settings, "-b", "nosuchbranch", "sandbox"))
    assert "nosuchbranch" in line


def test_missing_toolchain(demo: DemoTree, settings: Path, tmp_path: Path) -> None:
    """A PATH with the host tools but none of the cross compilers: arm cannot build."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("git", "make", "gcc", "cpp"):
        found = shutil.which(tool)
        require(found is not None, f"{tool} is not installed")
        (bindir / tool).symlink_to(str(found))
    env = bf_env({"PATH": str(bindir)})
    # As buildman: the board fails with a result saying why; not a usage error.
    run = _bf(demo, settings, "acme_arm1", env=env)
    assert run.returncode == 100 and "Traceback" not in run.stderr, run
    result = demo.path.parent / "out" / "current" / "acme_arm1"
    assert (result / "done").read_bytes() == b"2\n"
    assert (result / "err").read_text() == (
        "Tool chain error for arm: No tool chain found for arch 'arm'")


def test_not_a_source_tree(tmp_path: Path, settings: Path) -> None:
    run = run_bf(["-n", "-G", str(settings)], tmp_path)
    line = _one_error_line(run)
    assert "--demo" in line


# ---- --demo ----------------------------------------------------------------------

def test_demo_into_a_directory_whose_tree_is_not_empty(tmp_path: Path, settings: Path) -> None:
    """A ``DIR/tree`` that is neither empty nor a demo tree is refused in one line."""
    tree = tmp_path / "d" / "tree"
    tree.mkdir(parents=True)
    (tree / "notes.txt").write_text("mine\n")
    run = run_bf(["--demo", "d", "-G", str(settings)], tmp_path)
    line = _one_error_line(run)
    assert str(tree) in line and "not empty" in line, run
    assert [p.name for p in tree.iterdir()] == ["notes.txt"]  # nothing touched


def test_demo_from_an_empty_directory(tmp_path: Path, settings: Path) -> None:
    require_cross()
    work = tmp_path / "empty"
    work.mkdir()
    run = run_bf(["--demo", "d", "-G", str(settings)], work)
    assert run.returncode == 100, run  # the demo breaks one board at one commit
    tree = work / "d" / "tree"
    assert (tree / ".git").is_dir()
    revs = branch_revs(tree, "demo")
    base = work / "d" / "demo"
    assert sorted(p.name for p in base.iterdir() if re.match(r"\d\d_g", p.name)) == [
        r.dir_name for r in revs]
    broken = next(r for r in revs if r.subject.endswith("switch to the new clock API"))
    assert done_code(base / broken.dir_name / "initech_rv2") != 0
    assert re.search(r"^Completed: \d+ total built", run.stdout, re.M), run
    # the summary follows: one line per commit, the breakage marked with '+'
    for rev in revs:
        assert f"{rev.seq + 1:02d}: {rev.subject}" in run.stdout, run
    assert re.search(r"^ +riscv64: +\+ +initech_rv2$", run.stdout, re.M), run


def test_every_options_class_is_filled_from_the_parser() -> None:
    """Each typed option object takes its fields from flags of the same name: a renamed
    flag fails here, not as a feature silently turned off."""
    import dataclasses

    from buildfleet import options as opts_mod
    from buildfleet.cmdline import options, parse_args
    from buildfleet.results.summary import SummaryOptions

    args = parse_args(["-b", "x", "-T", "3", "--use-machines", "m1", "--report", "r.json", "-e",
                       "--shard", "2/3", "--build-timeout", "90"])
    classes = [c for c in vars(opts_mod).values()
               if isinstance(c, type) and dataclasses.is_dataclass(c)] + [SummaryOptions]
    assert len(classes) >= 6
    for cls in classes:
        filled = options(args, cls)
        for f in dataclasses.fields(cls):
            assert getattr(filled, f.name) == getattr(args, f.name), (cls.__name__, f.name)
    plan = options(args, opts_mod.PlanOptions)
    assert (plan.threads, plan.shard, plan.build_timeout) == (3, "2/3", 90.0)
    assert options(args, opts_mod.RunOptions).use_machines == "m1"
    assert options(args, SummaryOptions).show_errors
    with pytest.raises(AttributeError):
        options(args, dataclasses.make_dataclass("Renamed", [("no_such_flag", bool)]))
