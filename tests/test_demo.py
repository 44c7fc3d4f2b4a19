"""The demo tree: real Kconfig, real make, real cross compilers, real ELF files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from buildfleet.demo import DemoError, DemoTree, main, make_demo_tree
from ci_skip import require

ENV = {**os.environ, "LC_ALL": "C", "SOURCE_DATE_EPOCH": "0"}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> DemoTree:
    return make_demo_tree(tmp_path_factory.mktemp("demo") / "src")


def git(tree: DemoTree, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=tree.path, check=True, capture_output=True,
                          text=True).stdout.strip()


def need_cross(prefix: str) -> None:
    if prefix:
        require(shutil.which(prefix + "gcc") is not None, f"{prefix}gcc is not installed")


def build(tree: DemoTree, target: str, out: Path, *extra: str,
          commit: str | None = None, configure: bool = True) -> subprocess.CompletedProcess[str]:
    """defconfig (unless not ``configure``) + make in a worktree at ``commit`` (or the tree)."""
    src = tree.path
    if commit:
        src = out.parent / f"wt-{commit[:8]}"
        if not src.exists():
            git(tree, "worktree", "add", "-q", "--detach", str(src), commit)
    cross = tree.board(target).cross_compile
    need_cross(cross)
    if configure:
        cfg = subprocess.run(["make", f"O={out}", f"{target}_defconfig"], cwd=src, env=ENV,
                             capture_output=True, text=True, timeout=60)
        assert cfg.returncode == 0, cfg.stderr
    return subprocess.run(["make", f"O={out}", f"CROSS_COMPILE={cross}", "-j2", *extra],
                          cwd=src, env=ENV, capture_output=True, text=True, timeout=60)


def test_history_and_layout(tree: DemoTree) -> None:
    assert git(tree, "rev-parse", "--abbrev-ref", "HEAD") == "demo"
    assert git(tree, "config", "branch.demo.remote") == "."
    assert git(tree, "config", "branch.demo.merge") == "refs/heads/main"
    log = git(tree, "log", "--reverse", "--format=%H %s", "main..demo").splitlines()
    assert [line.split(" ", 1)[1] for line in log] == tree.subjects
    assert [line.split(" ", 1)[0] for line in log] == tree.hashes
    assert len(tree.subjects) == 4 and len(tree.boards) == 8
    assert {b.arch for b in tree.boards} == {"sandbox", "arm", "aarch64", "riscv64"}
    assert any(b.has_spl for b in tree.boards) and not all(b.has_spl for b in tree.boards)
    assert len({b.vendor for b in tree.boards}) >= 4
    for brd in tree.boards:
        assert (tree.path / "configs" / f"{brd.target}_defconfig").is_file()
    assert git(tree, "status", "--porcelain") == ""


def test_hashes_are_deterministic(tree: DemoTree, tmp_path: Path) -> None:
    again = make_demo_tree(tmp_path / "again")
    assert again.hashes == tree.hashes


def test_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(DemoError, match="not empty"):
        make_demo_tree(tmp_path / "full")
    with pytest.raises(DemoError, match="at least one commit"):
        make_demo_tree(tmp_path / "a", commits=0)
    assert main([str(tmp_path / "full")]) == 1


def test_scaled_tree(tmp_path: Path) -> None:
    lines: list[str] = []
    assert main([str(tmp_path / "big"), "--boards", "40", "--commits", "6"], lines.append) == 0
    assert "40 boards, 6 commits" in lines[0]
    configs = sorted(p.name for p in (tmp_path / "big" / "configs").glob("*_defconfig"))
    assert len(configs) == 40 and "vendorC_board38_defconfig" in configs


@pytest.mark.parametrize("target", ["sandbox", "acme_arm1", "globex_a64", "initech_rv1"])
def test_build_each_arch(tree: DemoTree, tmp_path: Path, target: str) -> None:
    brd = tree.board(target)
    res = build(tree, target, tmp_path / "out")
    assert res.returncode == 0, res.stderr
    out = tmp_path / "out"
    with open(out / "u-boot", "rb") as inf:
        elf = ELFFile(inf)
        expected = brd.elf_machine or {"x86_64": "EM_X86_64", "aarch64": "EM_AARCH64"}[
            os.uname().machine]
        assert elf["e_machine"] == expected
        if brd.arch in ("aarch64", "riscv64", "sandbox"):
            assert elf.elfclass == 64
    assert (out / "spl" / "u-boot-spl").is_file() == brd.has_spl
    if brd.has_spl:
        assert (out / "spl" / "u-boot.cfg").read_text().count("CONFIG_SPL_BUILD 1") == 1
    for name in ("u-boot.bin", "System.map", "u-boot.cfg", ".config",
                 "include/autoconf.mk", "include/generated/autoconf.h"):
        assert (out / name).is_file(), name
    assert re.search(r"^[0-9a-f]+ T _start$", (out / "System.map").read_text(), re.M)
    assert f'CONFIG_SYS_BOARD "{target}"' in (out / "u-boot.cfg").read_text()
    env = subprocess.run([f"{brd.cross_compile}objcopy", "-O", "binary", "-j",
                          ".rodata.default_environment", "env/built-in.a", "uboot.env"],
                         cwd=out, capture_output=True, text=True)
    assert env.returncode == 0, env.stderr
    pairs = (out / "uboot.env").read_bytes().rstrip(b"\0").split(b"\0")
    assert f"board={target}".encode() in pairs
    assert any(pair.startswith(b"malloc_len=0x") for pair in pairs)
    # The version string carries SOURCE_DATE_EPOCH.
    assert b"U-Boot 2024.01-demo (Jan 01 1970 - 00:00:00 +0000)" in (out / "u-boot").read_bytes()


def test_warning_error_and_growth(tree: DemoTree, tmp_path: Path) -> None:
    warn = tree.warning_targets[0]
    assert tree.warning_upto == 1
    before = build(tree, warn, tmp_path / "w0", commit=tree.hashes[0])
    at = build(tree, warn, tmp_path / "w1", commit=tree.hashes[1])
    assert before.returncode == 0 and "warning:" not in before.stderr
    assert at.returncode == 0
    assert "common/feature_x.c:8:13: " + tree.warning_text in at.stderr
    # Not on a board without feature X.
    other = next(b.target for b in tree.boards
                 if b.target not in tree.warning_targets and b.cross_compile == "")
    quiet = build(tree, other, tmp_path / "q1", commit=tree.hashes[1])
    assert quiet.returncode == 0 and quiet.stderr == ""
    # -Werror makes it fatal.
    fatal = build(tree, warn, tmp_path / "w1e", "KCFLAGS=-Werror", commit=tree.hashes[1])
    assert fatal.returncode != 0 and "error: unused variable" in fatal.stderr

    broken = tree.broken_target
    assert tree.broken_upto == 2 and tree.fixed_upto == 3
    bad = build(tree, broken, tmp_path / "b2", commit=tree.hashes[2])
    assert bad.returncode != 0 and tree.error_text in bad.stderr
    good = build(tree, broken, tmp_path / "b3", commit=tree.hashes[3])
    assert good.returncode == 0, good.stderr


def _text_size(path: Path) -> int:
    with open(path, "rb") as inf:
        elf = ELFFile(inf)
        return sum(s["sh_size"] for s in elf.iter_sections()
                   if s["sh_flags"] & 2 and not s["sh_flags"] & 1)  # alloc, not write


def test_size_grows_and_config_changes(tree: DemoTree, tmp_path: Path) -> None:
    target = "sandbox"
    assert target in tree.growth_targets and tree.growth_upto == 0
    base = git(tree, "rev-parse", "main")
    old = build(tree, target, tmp_path / "s0", commit=base)
    new = build(tree, target, tmp_path / "s1", commit=tree.hashes[0])
    assert old.returncode == 0 and new.returncode == 0
    assert _text_size(tmp_path / "s1" / "u-boot") > _text_size(tmp_path / "s0" / "u-boot")

    cfg = tree.config_target
    need_cross(tree.board(cfg).cross_compile)
    old_cfg = build(tree, cfg, tmp_path / "c0", commit=base)
    new_cfg = build(tree, cfg, tmp_path / "c1", commit=tree.hashes[0])
    assert old_cfg.returncode == 0 and new_cfg.returncode == 0
    opt = tree.config_option
    assert f"{opt}={tree.config_values[0]}" in (tmp_path / "c0" / ".config").read_text()
    assert f"{opt}={tree.config_values[1]}" in (tmp_path / "c1" / ".config").read_text()


def test_verbose_incremental_and_mrproper(tree: DemoTree, tmp_path: Path) -> None:
    out = tmp_path / "o"
    first = build(tree, "sandbox", out)
    assert first.returncode == 0 and first.stdout == ""  # quiet without V=1
    again = build(tree, "sandbox", out, "V=1")
    assert again.returncode == 0
    compiled = [line for line in again.stdout.splitlines() if " -c -o " in line]
    # as in U-Boot, re-running defconfig rewrites the configuration (same
    # symbols, new timestamps), so every object is compiled again
    assert any("common/main.c" in line for line in compiled), again.stdout
    same = build(tree, "sandbox", out, "V=1", configure=False)
    assert [line for line in same.stdout.splitlines() if " -c -o " in line] == []
    flags = build(tree, "sandbox", out, "V=1", "KCFLAGS=-DDEMO_EXTRA")
    assert any("-DDEMO_EXTRA" in line and "common/main.c" in line
               for line in flags.stdout.splitlines())
    clean = subprocess.run(["make", f"O={out}", "mrproper"], cwd=tree.path, env=ENV,
                           capture_output=True, text=True)
    assert clean.returncode == 0
    assert not (out / ".config").exists() and not (out / "u-boot").exists()
    nocfg = subprocess.run(["make", f"O={out}"], cwd=tree.path, env=ENV,
                           capture_output=True, text=True)
    assert nocfg.returncode != 0 and 'Configuration file ".config" not found' in nocfg.stderr


@pytest.mark.parametrize("layout", ["child", "elsewhere", "sibling", "in-tree"])
def test_compiles_the_kbuild_way(tree: DemoTree, tmp_path: Path, layout: str) -> None:
    """As U-Boot's kbuild, make runs a second make in O= and compiles there, so
    gcc names a source ../drivers/serial.c when O= is a direct child of the source
    tree and by its absolute path otherwise; no O=: as given, relative to the tree.
    Objects and dependency files are in O=, and an unchanged tree rebuilds nothing
    while a header change recompiles what includes it."""
    src = tmp_path / "src"
    git(tree, "worktree", "add", "-q", "--detach", str(src), "main")
    with (src / "drivers" / "serial.c").open("a") as f:
        f.write("static int unused_demo_state;\n")
    src = src.resolve()
    o_arg, out, named = {
        "child": ("O=build", src / "build", "../drivers/serial.c"),
        "elsewhere": (f"O={tmp_path / 'out'}", tmp_path / "out", f"{src}/drivers/serial.c"),
        "sibling": ("O=../sib", tmp_path / "sib", f"{src}/drivers/serial.c"),
        "in-tree": ("", src, "drivers/serial.c"),
    }[layout]
    o_args = [o_arg] if o_arg else []

    def make(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["make", *o_args, *args], cwd=src, env=ENV, capture_output=True,
                              text=True, timeout=60)

    cfg = make("sandbox_defconfig")
    assert cfg.returncode == 0, cfg.stderr
    first = make("-j2")
    assert first.returncode == 0, first.stderr
    diags = re.findall(r"^(\S+):\d+:\d+: warning: .unused_demo_state. defined but not used",
                       first.stderr, re.M)
    assert diags == [named], first.stderr
    assert (out / "drivers" / "serial.o").is_file() and (out / "u-boot").is_file()
    deps = (out / "drivers" / "serial.d").read_text()
    assert f" {named}" in deps, deps
    again = make("V=1")
    assert again.returncode == 0 and " -c -o " not in again.stdout, again.stdout
    (src / "include" / "demo.h").write_text((src / "include" / "demo.h").read_text() + "\n")
    header = make("V=1")
    compiled = [ln.split()[-1] for ln in header.stdout.splitlines() if " -c -o " in ln]
    assert named in compiled, header.stdout
    git(tree, "worktree", "remove", "--force", str(src))


def test_configure_without_kconfiglib_matches(tree: DemoTree, tmp_path: Path) -> None:
    conf = tree.path / "scripts" / "kconfig" / "conf.py"
    for brd in tree.boards:
        outs = []
        for extra in ([], ["--no-kconfiglib"]):
            res = subprocess.run(["python3", str(conf), "--srctree", str(tree.path),
                                  "--objdir", str(tmp_path), "--print", *extra,
                                  str(tree.path / "configs" / f"{brd.target}_defconfig")],
                                 capture_output=True, text=True, check=True)
            outs.append(res.stdout)
        assert outs[0] == outs[1], brd.target
        assert f"SYS_BOARD string {brd.target}" in outs[0]
