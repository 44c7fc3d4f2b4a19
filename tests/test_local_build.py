"""Local builds end to end: the real ``buildfleet`` on the demo tree (issue 3).

Each test runs ``python -m buildfleet`` with real git, make and the Debian
cross compilers, then reads the output tree as buildman's ``-s`` would: file
contents, not just names. The demo tree's history is known (see
``buildfleet.demo.DemoTree``), so every expectation here is derived from it.

Numbering: ``-b demo`` builds the upstream commit too, so the demo's
``*_upto`` commit numbers (indexes into the demo's own commits) are built as
sequence ``upto + 1`` here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from bfrun import (
    ALWAYS,
    BUILT,
    Rev,
    Run,
    branch_revs,
    configured,
    done_code,
    git,
    make_lines,
    require_cross,
    result_dir,
    run_bf,
    settings_file,
    sizes_of,
)
from buildfleet.demo import DemoTree, make_demo_tree
from buildfleet.plan import cpu_count

BOARDS = ["sandbox", "acme_arm1", "acme_arm2", "globex_a64", "initech_rv2"]


@dataclass
class BranchRun:
    tree: DemoTree
    run: Run
    base: Path
    revs: list[Rev]

    def dir(self, seq: int, target: str) -> Path:
        return result_dir(self.base, self.revs[seq], target)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoTree:
    require_cross()
    return make_demo_tree(tmp_path_factory.mktemp("demo") / "tree")


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return settings_file(tmp_path_factory.mktemp("settings"),
                         "[make-flags]\nsandbox = LOCALVERSION=-bftest\n")


@pytest.fixture(scope="module")
def branch_run(demo: DemoTree, settings: Path,
               tmp_path_factory: pytest.TempPathFactory) -> BranchRun:
    """The demo branch, five boards of every arch, built once for the read-only tests."""
    out = tmp_path_factory.mktemp("out")
    run = run_bf(["-b", "demo", "--boards", ",".join(BOARDS), "-o", str(out), "-T2",
                  "-G", str(settings)], cwd=demo.path)
    return BranchRun(demo, run, out / "demo", branch_revs(demo.path, "demo"))


def _build(demo: DemoTree, settings: Path, out: Path, *args: str) -> Run:
    return run_bf([*args, "-o", str(out), "-G", str(settings)], cwd=demo.path)


# ---- the demo branch: layout and contents ------------------------------------

def test_branch_exit_code_and_completed_line(branch_run: BranchRun) -> None:
    run = branch_run.run
    assert run.returncode == 100, run  # initech_rv2 breaks at one commit
    total = len(BOARDS) * len(branch_run.revs)
    assert re.search(rf"^Completed: {total} total built", run.stdout, re.M), run
    assert "Traceback" not in run.stderr


def test_one_directory_per_commit_and_board(branch_run: BranchRun) -> None:
    base = branch_run.base
    assert len(branch_run.revs) == len(branch_run.tree.subjects) + 1
    commit_dirs = sorted(p.name for p in base.iterdir() if re.match(r"\d\d_g", p.name))
    assert commit_dirs == [r.dir_name for r in branch_run.revs]
    for rev in branch_run.revs:
        assert sorted(p.name for p in (base / rev.dir_name).iterdir()) == sorted(BOARDS)
        for target in BOARDS:
            path = result_dir(base, rev, target)
            names = {p.name for p in path.iterdir()}
            missing = set(ALWAYS) - names
            if done_code(path) == 0:
                missing |= set(BUILT) - names
            assert not missing, f"{path}: missing {sorted(missing)}"
            assert not any(n.startswith(".") and n != ".config" for n in names), names


def test_done_holds_return_codes(branch_run: BranchRun) -> None:
    tree = branch_run.tree
    assert tree.broken_upto is not None
    broken_seq = tree.broken_upto + 1
    for rev in branch_run.revs:
        for target in BOARDS:
            path = branch_run.dir(rev.seq, target)
            text = (path / "done").read_text()
            assert text == text.strip(), "done has no trailing newline (buildman's format)"
            if target == tree.broken_target and rev.seq == broken_seq:
                assert int(text) == 2, f"{path}: make's error code expected"
                assert tree.error_text in (path / "err").read_text()
                assert not (path / "sizes").exists()  # no u-boot was linked
            else:
                assert int(text) == 0, path


def test_err_only_where_the_demo_warns_or_breaks(branch_run: BranchRun) -> None:
    tree = branch_run.tree
    assert tree.warning_upto is not None and tree.broken_upto is not None
    warn_seq, broken_seq = tree.warning_upto + 1, tree.broken_upto + 1
    warners = [t for t in BOARDS if t in tree.warning_targets]
    assert warners, "the selection must include a warning board"
    for rev in branch_run.revs:
        for target in BOARDS:
            err = branch_run.dir(rev.seq, target) / "err"
            # the demo never removes the warning, so it stays in every later
            # result too, incremental builds included (its object is recompiled)
            expected = ((target in warners and rev.seq >= warn_seq)
                        or (target == tree.broken_target and rev.seq == broken_seq))
            assert err.is_file() == expected, err
            if target in warners and rev.seq >= warn_seq:
                text = err.read_text()
                assert tree.warning_text in text
                # named as kbuild names them from O=build, a direct child of the
                # slot's worktree (buildman strips only an absolute source prefix)
                assert "\n../common/feature_x.c:" in "\n" + text and ".bm-work" not in text


def test_sizes_grow_where_the_demo_grows(branch_run: BranchRun) -> None:
    tree = branch_run.tree
    before, after = tree.growth_upto, tree.growth_upto + 1  # sequences around the growth
    for target in BOARDS:
        old = sizes_of(branch_run.dir(before, target))["u-boot"]
        new = sizes_of(branch_run.dir(after, target))["u-boot"]
        if target in tree.growth_targets:
            assert new[0] > old[0], f"{target}: text {old[0]} -> {new[0]} should grow"
        else:
            assert new == old, target
    # the sizes file says 'u-boot', with a rodata column, as buildman's does
    line = (branch_run.dir(0, "sandbox") / "sizes").read_text().splitlines()[0]
    assert re.fullmatch(r" *\d+\t *\d+\t *\d+\t *\d+\t *[0-9a-f]+\tu-boot [0-9a-f]+", line)


def test_spl_boards_have_spl_entries(branch_run: BranchRun) -> None:
    tree = branch_run.tree
    for target in BOARDS:
        path = branch_run.dir(0, target)
        sizes = sizes_of(path)
        if tree.board(target).has_spl:
            assert "spl/u-boot-spl" in sizes, target
            assert sizes["spl/u-boot-spl"][0] > 0
            assert (path / "spl-u-boot-spl.sizes").read_text().strip()
            assert "u-boot-spl" in (path / "spl-u-boot-spl.objdump").read_text()
            assert "CONFIG_SPL=y" in (path / ".config").read_text()
        else:
            assert set(sizes) == {"u-boot"}, target
            assert not (path / "spl-u-boot-spl.sizes").exists()


def test_toolchain_and_environment_files(branch_run: BranchRun) -> None:
    tree = branch_run.tree
    for target in BOARDS:
        board = tree.board(target)
        for rev in branch_run.revs:
            path = branch_run.dir(rev.seq, target)
            lines = (path / "toolchain").read_text().split("\n")
            fields = {}
            for line in lines[:-1]:
                key, _, value = line.partition(" ")
                fields[key] = value
            assert fields["cross"] == board.cross_compile, path
            assert fields["gcc"].endswith("/" + board.cross_compile + "gcc"), path
            assert Path(fields["gcc"]).is_file()
            assert fields["path"] == str(Path(fields["gcc"]).parent)
            assert fields["arch"] == board.arch, path
            assert lines[-1] == str(done_code(path)), "toolchain ends with the rc"
            env = (path / "out-env").read_text()
            # ccache, where installed, masquerades as the compiler (first on PATH):
            # CROSS_COMPILE is the toolchain's prefix, as a build without it.
            assert f'CROSS_COMPILE="{board.cross_compile}"' in env
            assert "\n" not in env.strip(), "out-env runs together, as buildman writes it"
            float((path / "duration").read_text())


def test_image_and_config_captures(branch_run: BranchRun) -> None:
    tree = branch_run.tree
    for target in BOARDS:
        path = branch_run.dir(0, target)
        assert f"CONFIG_TARGET_{target.upper()}=y" in (path / ".config").read_text()
        assert f'CONFIG_SYS_BOARD="{target}"' in (path / "autoconf.mk").read_text()
        assert f'#define CONFIG_SYS_BOARD "{target}"' in (path / "autoconf.h").read_text()
        assert "CONFIG_SYS_BOARD" in (path / "u-boot.cfg").read_text()
        assert re.search(r"^ +\d+ \.text ", (path / "u-boot.objdump").read_text(), re.M)
        assert re.search(r"^[0-9a-f]+ [Tt] board_init$", (path / "u-boot.sizes").read_text(),
                         re.M)
        env = (path / "uboot.env").read_bytes().split(b"\0")
        assert f"board={target}".encode() in env
    # the demo changes one board's config (and its default environment) at growth time
    cfg = tree.config_target
    assert cfg in BOARDS
    old, new = tree.config_values
    seq = tree.config_upto + 1
    assert f"{tree.config_option}={old}" in (branch_run.dir(seq - 1, cfg) / ".config").read_text()
    assert f"{tree.config_option}={new}" in (branch_run.dir(seq, cfg) / ".config").read_text()
    assert f"malloc_len={new}".encode() in (branch_run.dir(seq, cfg) / "uboot.env").read_bytes()


def test_incremental_builds_and_retry(branch_run: BranchRun) -> None:
    tree = branch_run.tree
    assert tree.broken_upto is not None
    broken_seq = tree.broken_upto + 1
    for target in BOARDS:
        assert configured(branch_run.dir(0, target), target), "first commit is configured"
        for rev in branch_run.revs[1:]:
            path = branch_run.dir(rev.seq, target)
            cmds = make_lines(path)
            # one make jobserver for the machine: no -j, NPROC its size
            assert all(c.startswith("make O=") and " -j" not in c
                       and re.search(rf" NPROC={cpu_count()}( |$)", c) for c in cmds), cmds
            assert all("LOCALVERSION=-bftest" in c for c in cmds) == (target == "sandbox")
            if target == tree.broken_target and rev.seq == broken_seq:
                # failed incrementally, then retried after configuring; as in
                # buildman, out-cmd holds the commands of the attempt that counts
                assert [c.endswith(f" {target}_defconfig") for c in cmds] == [
                    True, False], cmds
            elif target == tree.broken_target and rev.seq == broken_seq + 1:
                # the failure came right after a configure and the fix changes
                # no configuration input: the configuration is kept
                assert not configured(path, target), cmds
            elif target == tree.config_target and rev.seq == tree.config_upto + 1:
                assert configured(path, target), "a changed defconfig reconfigures"
            else:
                assert len(cmds) == 1 and not configured(path, target), (path, cmds)


# ---- exit codes ---------------------------------------------------------------

def test_exit_codes_warning_clean_and_W(demo: DemoTree, settings: Path,
                                        tmp_path: Path) -> None:
    # the tip of the demo branch: acme_arm1 warns on a fresh build, sandbox is clean
    warn = _build(demo, settings, tmp_path / "w", "-b", "demo", "-c", "1", "--boards",
                  "acme_arm1")
    assert warn.returncode == 101, warn
    clean = _build(demo, settings, tmp_path / "c", "-b", "demo", "-c", "1", "--boards",
                   "sandbox")
    assert clean.returncode == 0, clean
    ignored = _build(demo, settings, tmp_path / "i", "-b", "demo", "-c", "1", "--boards",
                     "acme_arm1", "-W")
    assert ignored.returncode == 0, ignored
    path = result_dir(tmp_path / "i" / "demo", _top(demo, 1)[0], "acme_arm1")
    assert demo.warning_text in (path / "err").read_text()


# ---- flags that change the build ----------------------------------------------

def _top(demo: DemoTree, n: int) -> list[Rev]:
    revs = branch_revs(demo.path, "demo")[-n:]
    return [Rev(i, r.hash, r.subject) for i, r in enumerate(revs)]


def test_force_reconfig_and_mrproper(demo: DemoTree, settings: Path, tmp_path: Path) -> None:
    run = _build(demo, settings, tmp_path, "-b", "demo", "-c", "3", "--boards", "sandbox",
                 "-C", "-m", "-j", "3")
    assert run.returncode == 0, run
    for rev in _top(demo, 3):
        cmds = make_lines(result_dir(tmp_path / "demo", rev, "sandbox"))
        # -j given: make gets it, as in buildman (no shared jobserver)
        assert all(re.search(" -s -j 3 NPROC=3( |$)", c) for c in cmds), cmds
        assert [c.split()[-1] for c in cmds] == ["mrproper", "sandbox_defconfig",
                                                 cmds[-1].split()[-1]], cmds
        assert "_defconfig" not in cmds[-1] and "mrproper" not in cmds[-1]


def test_quick_turns_off_the_retry(demo: DemoTree, settings: Path, tmp_path: Path) -> None:
    assert demo.broken_upto is not None
    # the top three commits: warning, breakage, fix
    run = _build(demo, settings, tmp_path, "-b", "demo", "-c", "3", "--boards",
                 demo.broken_target, "-Q")
    assert run.returncode == 100, run
    revs = _top(demo, 3)
    broken = result_dir(tmp_path / "demo", revs[1], demo.broken_target)
    assert done_code(broken) == 2
    cmds = make_lines(broken)
    assert len(cmds) == 1 and "_defconfig" not in cmds[0], cmds
    fixed = result_dir(tmp_path / "demo", revs[2], demo.broken_target)
    assert configured(fixed, demo.broken_target), "after a failure the next commit configures"
    assert done_code(fixed) == 0


def test_warnings_as_errors(demo: DemoTree, settings: Path, tmp_path: Path) -> None:
    run = _build(demo, settings, tmp_path, "-b", "demo", "-c", "1", "--boards", "acme_arm1",
                 "-E")
    assert run.returncode == 100, run
    path = result_dir(tmp_path / "demo", _top(demo, 1)[0], "acme_arm1")
    assert done_code(path) != 0
    err = (path / "err").read_text()
    assert "error: unused variable 'retries'" in err and "-Werror" in err
    assert all("KCFLAGS=-Werror HOSTCFLAGS=-Werror" in c for c in make_lines(path))


def test_verbose_keep_reproducible_and_make_flags(demo: DemoTree, settings: Path,
                                                   tmp_path: Path) -> None:
    run = _build(demo, settings, tmp_path, "-b", "demo", "-c", "1", "--boards", "sandbox",
                 "-V", "-k", "-r")
    assert run.returncode == 0, run
    path = result_dir(tmp_path / "demo", _top(demo, 1)[0], "sandbox")
    cmds = make_lines(path)
    assert len(cmds) == 2
    for cmd in cmds:
        assert " V=1 " in cmd and " -s " not in cmd
        assert "SOURCE_DATE_EPOCH=0" in cmd.split()
        assert "LOCALVERSION=-bftest" in cmd.split()  # [make-flags] from -G
    log = (path / "log").read_text()
    for cmd in cmds:
        assert cmd in log, "-V puts the commands into the log"
    assert (path / "u-boot").read_bytes()[:4] == b"\x7fELF"
    assert (path / "u-boot.bin").stat().st_size > 0
    assert re.search(r"^[0-9a-f]+ [Tt] board_init$", (path / "System.map").read_text(), re.M)


def test_default_keeps_no_binaries(branch_run: BranchRun) -> None:
    path = branch_run.dir(0, "sandbox")
    assert not (path / "u-boot").exists() and not (path / "System.map").exists()
    assert all(" -s " in c and "V=1" not in c and "SOURCE_DATE_EPOCH" not in c
               for c in make_lines(path))


# ---- which commits ------------------------------------------------------------

def _dry_hashes(run: Run) -> list[str]:
    return re.findall(r"^    ([0-9a-f]{8}) ", run.stdout, re.M)


def test_step_and_count_pick_commits(demo: DemoTree, settings: Path, tmp_path: Path) -> None:
    revs = branch_revs(demo.path, "demo")
    assert len(revs) == 5
    for args, picked in ((["--step", "2"], [0, 2, 4]), (["--step", "0"], [0, 4]),
                         (["-c", "2"], [3, 4]), ([], [0, 1, 2, 3, 4])):
        dry = _build(demo, settings, tmp_path / "dry", "-b", "demo", "-n", "sandbox", *args)
        assert dry.returncode == 0, dry
        assert _dry_hashes(dry) == [revs[i].hash[:8] for i in picked], (args, dry)
    run = _build(demo, settings, tmp_path, "-b", "demo", "--step", "2", "--boards", "sandbox")
    assert run.returncode == 0, run
    built = sorted(p.name for p in (tmp_path / "demo").iterdir() if re.match(r"\d\d_g", p.name))
    assert built == [revs[i].dir_name for i in (0, 2, 4)]
    for i in (0, 2, 4):
        assert done_code(result_dir(tmp_path / "demo", revs[i], "sandbox")) == 0


def test_branch_name_with_slash(demo: DemoTree, settings: Path, tmp_path: Path) -> None:
    git(demo.path, "branch", "-f", "feature/x", "demo~1")
    git(demo.path, "config", "branch.feature/x.remote", ".")
    git(demo.path, "config", "branch.feature/x.merge", "refs/heads/main")
    run = _build(demo, settings, tmp_path, "-b", "feature/x", "--step", "0", "--boards",
                 "sandbox")
    assert run.returncode == 0, run
    revs = branch_revs(demo.path, "feature/x")
    assert len(revs) == 4
    base = tmp_path / "feature_x"
    assert sorted(p.name for p in base.iterdir() if re.match(r"\d\d_g", p.name)) == [
        revs[0].dir_name, revs[-1].dir_name]
    assert done_code(result_dir(base, revs[-1], "sandbox")) == 0
    assert not (tmp_path / "feature").exists()
