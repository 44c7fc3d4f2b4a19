"""Generate a small U-Boot-like source tree with a known git history.

Tests, benchmarks and ``buildfleet --demo`` need a tree that speaks U-Boot's
build interface (Kconfig, defconfigs, MAINTAINERS, ``make O= <t>_defconfig``,
``make CROSS_COMPILE=``) and compiles real C into real ELF files, but builds in
well under a second per board. The history on branch ``demo`` is designed so
that each kind of outcome a summary reports happens on known boards at known
commits; :class:`DemoTree` records which, so callers can assert on them.

Commit numbers in :class:`DemoTree` are ``commit_upto`` values: 0-based
indexes into the branch's commits (oldest first), as in ``Commit.sequence``.
The output directory of commit ``n`` is therefore numbered ``n + 1``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

CROSS_PREFIX = {"sandbox": "", "arm": "arm-linux-gnueabihf-",
                "aarch64": "aarch64-linux-gnu-", "riscv64": "riscv64-linux-gnu-"}
ELF_MACHINE = {"arm": "EM_ARM", "aarch64": "EM_AARCH64", "riscv64": "EM_RISCV"}
KCONFIG_ARCH = {"sandbox": "SANDBOX", "arm": "ARM", "aarch64": "ARM", "riscv64": "RISCV"}
ARCH_DIRS = {"SANDBOX": "sandbox", "ARM": "arm", "RISCV": "riscv"}
CPU = {"sandbox": "sandbox", "arm": "armv7", "aarch64": "armv8", "riscv64": "generic"}
VENDOR_SOC = {"acme": "am33", "globex": "gx8", "initech": "", "umbrella": "um7",
              "": ""}
VENDOR_STATUS = {"acme": "Maintained", "globex": "Supported", "initech": "Maintained",
                 "umbrella": "Orphan since 2023.04", "": "Maintained"}
CONFIG_OPTION = "CONFIG_SYS_MALLOC_LEN"
CONFIG_VALUES = ("0x100000", "0x200000")
BASE_TABLE = 8
GROWN_TABLE = 40
BASE_DATE = 1704067200  # 2024-01-01 00:00:00 UTC; commits are an hour apart
SUBJECTS = (
    "drivers: demo: grow the lookup table; acme_arm2: larger malloc",
    "common: feature-x: report the status",
    "board: initech: rv2: switch to the new clock API",
    "board: initech: rv2: fix the clock API build",
)


class DemoError(Exception):
    """The demo tree cannot be made as asked."""


@dataclass(frozen=True)
class DemoBoard:
    """One board of the demo tree, with the values boards.cfg will report."""

    target: str
    arch: str            # as boards.cfg reports it (after the arch fix-ups)
    cpu: str
    soc: str
    vendor: str
    cross_compile: str   # the prefix to build it with ('' = host gcc)
    has_spl: bool
    table: bool          # CONFIG_DEMO_TABLE: grows at the growth commit
    feature_x: bool      # CONFIG_DEMO_FEATURE_X: warns from the warning commit
    maintainers: tuple[str, ...] = ()
    status: str = "Active"
    include_of: str = ""  # defconfig #includes this target's defconfig

    @property
    def board_name(self) -> str:
        return self.target

    @property
    def config_name(self) -> str:
        return self.target

    @property
    def elf_machine(self) -> str | None:
        """pyelftools' e_machine name of u-boot, None for sandbox (the host's)."""
        return ELF_MACHINE.get(self.arch)

    @property
    def board_dir(self) -> str:
        return f"board/{self.vendor}/{self.target}" if self.vendor else f"board/{self.target}"


@dataclass
class DemoTree:
    """What :func:`make_demo_tree` made (commit numbers are commit_upto)."""

    path: Path
    boards: list[DemoBoard]
    subjects: list[str]
    hashes: list[str]
    growth_targets: list[str]
    growth_upto: int
    warning_targets: list[str]
    warning_upto: int | None
    broken_target: str
    broken_upto: int | None
    fixed_upto: int | None
    config_target: str
    config_upto: int
    config_option: str = CONFIG_OPTION
    config_values: tuple[str, str] = CONFIG_VALUES
    branch: str = "demo"
    upstream: str = "main"
    warning_text: str = "warning: unused variable 'retries'"
    error_text: str = "error: 'cpu_clk_rate' undeclared"
    env_target: str = ""  # its default environment changes at config_upto

    @property
    def targets(self) -> list[str]:
        return [b.target for b in self.boards]

    def board(self, target: str) -> DemoBoard:
        for brd in self.boards:
            if brd.target == target:
                return brd
        raise KeyError(target)


def extra_target(arch: str) -> str:
    """The target name of the board :func:`make_demo_tree` adds for an extra arch."""
    return f"{arch}_board"


def _kconfig_name(arch: str) -> str:
    """The Kconfig symbol selecting ``arch`` (ARM, RISCV, ...; an extra arch's upper case)."""
    return KCONFIG_ARCH.get(arch, arch.upper())


def _arch_dir(kname: str) -> str:
    return ARCH_DIRS.get(kname, kname.lower())


def _extra_boards(extra_archs: Mapping[str, str]) -> list[DemoBoard]:
    """One plain board per extra arch, built with the given cross prefix."""
    out = []
    for arch, prefix in extra_archs.items():
        if not arch.isalnum() or not arch.islower() or arch in CROSS_PREFIX:
            raise DemoError(f"extra arch {arch!r}: use a new lower-case alphanumeric name")
        out.append(DemoBoard(target=extra_target(arch), arch=arch, cpu=arch, soc="", vendor=arch,
                             cross_compile=prefix, has_spl=False, table=False,
                             feature_x=False))
    return out


def _default_boards() -> list[DemoBoard]:
    def mk(target: str, arch: str, vendor: str, spl: bool, table: bool, fx: bool,
           include_of: str = "") -> DemoBoard:
        return DemoBoard(target=target, arch=arch, cpu=CPU[arch], soc=VENDOR_SOC[vendor],
                         vendor=vendor, cross_compile=CROSS_PREFIX[arch], has_spl=spl,
                         table=table, feature_x=fx, include_of=include_of)
    return [
        mk("sandbox", "sandbox", "", False, True, False),
        mk("acme_arm1", "arm", "acme", True, True, True),
        mk("acme_arm2", "arm", "acme", False, False, False),
        mk("globex_a64", "aarch64", "globex", True, True, True),
        mk("globex_a64b", "aarch64", "globex", False, True, False, include_of="globex_a64"),
        mk("initech_rv1", "riscv64", "initech", True, True, False),
        mk("initech_rv2", "riscv64", "initech", False, False, False),
        mk("umbrella_arm3", "arm", "umbrella", False, False, True),
    ]


def demo_boards(count: int, extra_archs: Mapping[str, str] | None = None) -> list[DemoBoard]:
    """The boards of a tree with ``count`` boards (deterministic names).

    ``extra_archs`` (arch -> cross prefix) appends one board per arch that none
    of the standard boards uses, for tests of toolchain routing.
    """
    if count < 1:
        raise DemoError("the demo tree needs at least one board")
    boards = _default_boards()[:count]
    arches = ("arm", "aarch64", "riscv64")
    for idx in range(len(boards), count):
        vendor = f"vendor{'ABCDEF'[idx % 6]}"
        arch = arches[idx % 3]
        boards.append(DemoBoard(
            target=f"{vendor}_board{idx}", arch=arch, cpu=CPU[arch], soc=f"soc{idx % 4}",
            vendor=vendor, cross_compile=CROSS_PREFIX[arch], has_spl=idx % 3 == 0,
            table=idx % 2 == 0, feature_x=idx % 5 == 0))
    boards += _extra_boards(extra_archs or {})
    people = {b.vendor: _person(b.vendor) for b in boards}
    out = []
    for brd in boards:
        status = VENDOR_STATUS.get(brd.vendor, "Maintained")
        # In scan order: the top-level MAINTAINERS (N: ^globex) comes first.
        maint = [_person("socs")] if brd.vendor == "globex" else []
        maint.append(people[brd.vendor])
        out.append(DemoBoard(**{**brd.__dict__, "maintainers": tuple(maint),
                                "status": "Orphan" if status.startswith("Orphan")
                                else "Active"}))
    return out


def _person(who: str) -> str:
    name = who or "sandbox"
    return f"{name.capitalize()} Maintainer <{name.lower()}@example.com>"


# ---- file contents ----------------------------------------------------------

def _kconfig_top(extra_archs: tuple[str, ...] = ()) -> str:
    choices = "".join(f"config {_kconfig_name(a)}\n\tbool \"{a.upper()} architecture\"\n\n"
                      for a in extra_archs)
    defaults = "".join(f'\tdefault "{a}" if {_kconfig_name(a)}\n' for a in extra_archs)
    return f"""\
# SPDX-License-Identifier: GPL-2.0+
mainmenu "U-Boot $(UBOOTVERSION) Configuration"

choice
\tprompt "Architecture select"
\tdefault SANDBOX

config ARM
\tbool "ARM architecture"

config RISCV
\tbool "RISC-V architecture"

config SANDBOX
\tbool "Sandbox"

{choices}endchoice

config SYS_ARCH
\tstring
\tdefault "arm" if ARM
\tdefault "riscv" if RISCV
\tdefault "sandbox" if SANDBOX
{defaults}
config SYS_CPU
\tstring

config SYS_SOC
\tstring

config SYS_VENDOR
\tstring

config SYS_BOARD
\tstring

config SYS_CONFIG_NAME
\tstring

config SUPPORT_SPL
\tbool

menu "General setup"

config SPL
\tbool "Enable SPL"
\tdepends on SUPPORT_SPL
\thelp
\t  Build a secondary program loader, spl/u-boot-spl.

config LTO
\tbool "Link-time optimisation"

config SYS_MALLOC_LEN
\thex "Size of the malloc() pool"
\tdefault 0x100000

config BOOTDELAY
\tint "Delay before booting"
\tdefault 2

config DEMO_TABLE
\tbool "Lookup table driver"

config DEMO_FEATURE_X
\tbool "Feature X"

endmenu

osource "arch/*/Kconfig"
osource "board/*/Kconfig"
osource "board/*/*/Kconfig"
"""


def _kconfig_arch(kname: str, boards: list[DemoBoard]) -> str:
    lines = [f"if {kname}", ""]
    if kname == "ARM":
        lines += ["config ARM64", "\tbool", "",
                  "config SYS_CPU", '\tdefault "armv8" if ARM64', '\tdefault "armv7"', ""]
    elif kname == "RISCV":
        lines += ["choice", '\tprompt "Base ISA"', "\tdefault ARCH_RV64I", "",
                  "config ARCH_RV32I", '\tbool "RV32I"', "",
                  "config ARCH_RV64I", '\tbool "RV64I"', "", "endchoice", "",
                  "config SYS_CPU", '\tdefault "generic"', ""]
    else:
        lines += ["config SYS_CPU", f'\tdefault "{boards[0].cpu}"', ""]
    lines += ["choice", '\tprompt "Target select"', ""]
    for brd in boards:
        lines += [f"config TARGET_{brd.target.upper()}", f'\tbool "Support {brd.target}"']
        if brd.arch == "aarch64":
            lines.append("\tselect ARM64")
        if brd.has_spl or brd.include_of:
            lines.append("\tselect SUPPORT_SPL")
        lines.append("")
    lines += ["endchoice", "", "endif", ""]
    return "\n".join(lines)


def _kconfig_board(brd: DemoBoard) -> str:
    lines = [f"if TARGET_{brd.target.upper()}", ""]
    for sym, val in (("SYS_BOARD", brd.target), ("SYS_VENDOR", brd.vendor),
                     ("SYS_SOC", brd.soc), ("SYS_CONFIG_NAME", brd.config_name)):
        if val:
            lines += [f"config {sym}", f'\tdefault "{val}"', ""]
    lines += ["endif", ""]
    return "\n".join(lines)


def _defconfig(brd: DemoBoard, malloc: str) -> str:
    if brd.include_of:
        lines = [f'#include "{brd.include_of}_defconfig"',
                 f"CONFIG_TARGET_{brd.target.upper()}=y"]
        if not brd.has_spl:
            lines.append("# CONFIG_SPL is not set")
        if not brd.feature_x:
            lines.append("# CONFIG_DEMO_FEATURE_X is not set")
        if not brd.table:
            lines.append("# CONFIG_DEMO_TABLE is not set")
        return "\n".join(lines) + "\n"
    lines = [f"CONFIG_{_kconfig_name(brd.arch)}=y", f"CONFIG_TARGET_{brd.target.upper()}=y"]
    if brd.has_spl:
        lines.append("CONFIG_SPL=y")
    lines.append(f"CONFIG_SYS_MALLOC_LEN={malloc}")
    if brd.table:
        lines.append("CONFIG_DEMO_TABLE=y")
    if brd.feature_x:
        lines.append("CONFIG_DEMO_FEATURE_X=y")
    return "\n".join(lines) + "\n"


def _board_c(config_name: str, broken: bool = False, fixed: bool = False) -> str:
    clock = ""
    if fixed:
        clock = "static const int cpu_clk_rate = 24;\n\n"
    ret = "BOARD_ID + cpu_clk_rate" if broken or fixed else "BOARD_ID"
    return ("// SPDX-License-Identifier: GPL-2.0+\n#include <demo.h>\n"
            f"#include <configs/{config_name}.h>\n\n" + clock +
            f"int board_init(void)\n{{\n\treturn {ret};\n}}\n\n"
            "const char *board_name(void)\n{\n\treturn CONFIG_SYS_BOARD;\n}\n")


def _board_header(brd: DemoBoard, idx: int) -> str:
    guard = f"__CONFIG_{brd.config_name.upper()}_H"
    return (f"/* SPDX-License-Identifier: GPL-2.0+ */\n#ifndef {guard}\n#define {guard}\n\n"
            f"#define BOARD_ID {idx}\n#define CFG_SYS_SDRAM_BASE 0x{0x40000000 + idx:x}\n\n"
            "#endif\n")


def _table_c(entries: int) -> str:
    names = ["bootcmd"] + [f"entry{i}" for i in range(1, entries)]
    rows = "".join(f'\t{{ "{name}", {i * 3 + 1} }},\n' for i, name in enumerate(names))
    return ("// SPDX-License-Identifier: GPL-2.0+\n#include <demo.h>\n\n"
            "struct demo_entry {\n\tconst char *name;\n\tint value;\n};\n\n"
            f"static const struct demo_entry demo_table[] = {{\n{rows}}};\n\n"
            "static int streq(const char *a, const char *b)\n{\n"
            "\twhile (*a && *a == *b) {\n\t\ta++;\n\t\tb++;\n\t}\n\treturn *a == *b;\n}\n\n"
            "int demo_table_lookup(const char *name)\n{\n\tunsigned int i;\n\n"
            "\tfor (i = 0; i < sizeof(demo_table) / sizeof(demo_table[0]); i++)\n"
            "\t\tif (streq(demo_table[i].name, name))\n"
            "\t\t\treturn demo_table[i].value;\n\treturn -1;\n}\n")


def _feature_x_c(warn: bool) -> str:
    body = "\tint retries = 3;\n\n" if warn else ""
    return ("// SPDX-License-Identifier: GPL-2.0+\n#include <demo.h>\n\n"
            "static int feature_x_level = 2;\n\n"
            f"int feature_x_status(void)\n{{\n{body}\treturn feature_x_level * 2;\n}}\n")


def _maintainers_top(boards: list[DemoBoard]) -> str:
    text = ("List of maintainers for the demo tree\n"
            "-------------------------------------\n\n"
            "Descriptions of section entries:\n\n"
            "\tM: Mail patches to: FullName <address@domain>\n"
            "\tS: Status: Maintained, Supported, Orphan\n"
            "\tF: Files and directories with wildcard patterns.\n"
            "\tN: Files and directories *Regex* patterns.\n\n"
            "ARM ARCHITECTURE\n"
            "M:\tArm Custodian <arm@example.com>\n"
            "S:\tMaintained\n"
            "F:\tarch/arm/\n\n")
    if any(b.target == "sandbox" for b in boards):
        text += f"SANDBOX\nM:\t{_person('')}\nS:\tMaintained\nN:\tsandbox\n\n"
    if any(b.vendor == "globex" for b in boards):
        text += f"GLOBEX SOCS\nM:\t{_person('socs')}\nS:\tSupported\nN:\t^globex\n"
    return text


def _maintainers_board(brd: DemoBoard) -> str:
    status = VENDOR_STATUS.get(brd.vendor, "Maintained")
    tag = "#M" if status.startswith("Orphan") else "M"
    return (f"{brd.target.upper()} BOARD\n{tag}:\t{_person(brd.vendor)}\nS:\t{status}\n"
            f"F:\t{brd.board_dir}/\nF:\tinclude/configs/{brd.config_name}.h\n"
            f"F:\tconfigs/{brd.target}_defconfig\n")


# ---- writing ----------------------------------------------------------------

def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")


# Fixed files of the demo tree (its build interface: Makefile, config script,
# common C sources), shipped as package data under ``demo_template/``.
TEMPLATE_FILES = ("Makefile", "scripts/kconfig/conf.py", "include/demo.h", "common/main.c",
                  "common/spl.c", "common/version.c", "drivers/serial.c", "env/common.c",
                  "tools/envcrc.c")


def _template(rel: str) -> str:
    return (resources.files("buildfleet") / "demo_template" / rel).read_text(encoding="utf-8")


def _base_files(boards: list[DemoBoard]) -> dict[str, str]:
    extra = tuple(dict.fromkeys(b.arch for b in boards if b.arch not in KCONFIG_ARCH))
    files = {rel: _template(rel) for rel in TEMPLATE_FILES}
    files.update({
        "Kconfig": _kconfig_top(extra),
        "MAINTAINERS": _maintainers_top(boards),
        ".gitignore": _template("gitignore"),
        "README": "A small U-Boot-like tree made by buildfleet.demo for tests and demos.\n",
        "common/feature_x.c": _feature_x_c(False),
        "drivers/demo_table.c": _table_c(BASE_TABLE),
    })
    by_arch: dict[str, list[DemoBoard]] = {}
    for brd in boards:
        by_arch.setdefault(_kconfig_name(brd.arch), []).append(brd)
    for kname, arch_boards in by_arch.items():
        files[f"arch/{_arch_dir(kname)}/Kconfig"] = _kconfig_arch(kname, arch_boards)
    for idx, brd in enumerate(boards):
        files[f"{brd.board_dir}/Kconfig"] = _kconfig_board(brd)
        files[f"{brd.board_dir}/board.c"] = _board_c(brd.config_name)
        files[f"{brd.board_dir}/MAINTAINERS"] = _maintainers_board(brd)
        files[f"include/configs/{brd.config_name}.h"] = _board_header(brd, idx + 1)
        files[f"configs/{brd.target}_defconfig"] = _defconfig(brd, CONFIG_VALUES[0])
    return files


def _git(root: Path, *args: str, when: int = BASE_DATE) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
           "GIT_AUTHOR_DATE": f"@{when} +0000", "GIT_COMMITTER_DATE": f"@{when} +0000"}
    out = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True,
                         check=False)
    if out.returncode:
        raise DemoError(f"git {' '.join(args)} failed in {root}: {out.stderr.strip()}")
    return out.stdout.strip()


def _commit(root: Path, subject: str, body: str, when: int) -> str:
    _git(root, "add", "-A", when=when)
    _git(root, "commit", "-q", "-m", subject, "-m", body, when=when)
    return _git(root, "rev-parse", "HEAD")


def make_demo_tree(path: Path, boards: int = 8, commits: int = 4,
                   extra_archs: Mapping[str, str] | None = None) -> DemoTree:
    """Write the demo tree at ``path`` (new or empty) and return what it holds.

    ``extra_archs`` maps an arch no standard board uses to its cross prefix
    (e.g. ``{"m68k": "/opt/m68k/bin/m68k-linux-gnu-"}``): each adds one plain
    board, :func:`extra_target` of the arch, present from the first commit.
    """
    path = Path(path)
    if commits < 1:
        raise DemoError("the demo branch needs at least one commit")
    if path.exists() and any(path.iterdir()):
        raise DemoError(f"{path} exists and is not empty")
    brds = demo_boards(boards, extra_archs)
    names = [b.target for b in brds[:boards]]
    broken = "initech_rv2" if "initech_rv2" in names else names[-1]
    config_target = "acme_arm2" if "acme_arm2" in names else names[0]
    cfg_board = next(b for b in brds if b.target == config_target)
    if cfg_board.include_of:
        raise DemoError("internal: the config-change board may not #include")
    broken_board = next(b for b in brds if b.target == broken)

    path.mkdir(parents=True, exist_ok=True)
    _write(path, _base_files(brds))
    _git(path, "init", "-q", "-b", "main")
    for key, val in (("user.name", "Demo Developer"), ("user.email", "dev@example.com"),
                     ("commit.gpgsign", "false"), ("core.autocrlf", "false")):
        _git(path, "config", key, val)
    when = BASE_DATE
    _commit(path, "Initial demo tree", f"{len(brds)} boards.", when)
    _git(path, "checkout", "-q", "-b", "demo")
    _git(path, "config", "branch.demo.remote", ".")
    _git(path, "config", "branch.demo.merge", "refs/heads/main")

    board_c = f"{broken_board.board_dir}/board.c"
    subjects: list[str] = []
    hashes: list[str] = []
    entries = GROWN_TABLE
    for upto in range(commits):
        files: dict[str, str] = {}
        if upto == 0:
            files["drivers/demo_table.c"] = _table_c(GROWN_TABLE)
            files[f"configs/{config_target}_defconfig"] = _defconfig(cfg_board, CONFIG_VALUES[1])
        elif upto == 1:
            files["common/feature_x.c"] = _feature_x_c(True)
        elif upto == 2:
            files[board_c] = _board_c(broken_board.config_name, broken=True)
        elif upto == 3:
            files[board_c] = _board_c(broken_board.config_name, fixed=True)
        else:
            entries += 2
            files["drivers/demo_table.c"] = _table_c(entries)
        subject = SUBJECTS[upto] if upto < len(SUBJECTS) else \
            f"drivers: demo: add table entries (step {upto + 1})"
        _write(path, files)
        when += 3600
        hashes.append(_commit(path, subject, f"Demo commit {upto + 1}.", when))
        subjects.append(subject)

    return DemoTree(
        path=path, boards=brds, subjects=subjects, hashes=hashes,
        growth_targets=[b.target for b in brds if b.table], growth_upto=0,
        warning_targets=[b.target for b in brds if b.feature_x],
        warning_upto=1 if commits > 1 else None,
        broken_target=broken, broken_upto=2 if commits > 2 else None,
        fixed_upto=3 if commits > 3 else None,
        config_target=config_target, config_upto=0, env_target=config_target)


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    """``python -m buildfleet.demo DIR [--boards N] [--commits M]``."""
    parser = argparse.ArgumentParser(prog="python -m buildfleet.demo",
                                     description="Write a small U-Boot-like demo tree.")
    parser.add_argument("dir", type=Path, help="directory to create (must be empty)")
    parser.add_argument("--boards", type=int, default=8, help="number of boards (8)")
    parser.add_argument("--commits", type=int, default=4, help="commits on branch demo (4)")
    args = parser.parse_args(argv)
    try:
        tree = make_demo_tree(args.dir, args.boards, args.commits)
    except DemoError as exc:
        print(f"buildfleet.demo: {exc}", file=sys.stderr)
        return 1
    out(f"Demo tree in {tree.path}: {len(tree.boards)} boards, "
        f"{len(tree.subjects)} commits on branch '{tree.branch}' (upstream '{tree.upstream}')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
