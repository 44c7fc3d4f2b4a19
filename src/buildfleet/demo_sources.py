"""The generated files of the demo tree: Kconfig, defconfigs, board sources, MAINTAINERS.

What varies per board and per commit is written here as text; the fixed build
interface (Makefile, config script, common sources) lives in
``demo_template/``, and :mod:`buildfleet.demo` decides boards and history.
"""

from __future__ import annotations

from dataclasses import dataclass

CROSS_PREFIX = {"sandbox": "", "arm": "arm-linux-gnueabihf-",
                "aarch64": "aarch64-linux-gnu-", "riscv64": "riscv64-linux-gnu-"}
ELF_MACHINE = {"arm": "EM_ARM", "aarch64": "EM_AARCH64", "riscv64": "EM_RISCV"}
KCONFIG_ARCH = {"sandbox": "SANDBOX", "arm": "ARM", "aarch64": "ARM", "riscv64": "RISCV"}
ARCH_DIRS = {"SANDBOX": "sandbox", "ARM": "arm", "RISCV": "riscv"}
CPU = {"sandbox": "sandbox", "arm": "armv7", "aarch64": "armv8", "riscv64": "generic"}
VENDOR_SOC = {"acme": "am33", "globex": "gx8", "initech": "", "umbrella": "um7",
              "hooli": "hl1", "": ""}
VENDOR_STATUS = {"acme": "Maintained", "globex": "Supported", "initech": "Maintained",
                 "umbrella": "Orphan since 2023.04", "hooli": "Maintained", "": "Maintained"}
# A board image limit (CONFIG_BOARD_SIZE_LIMIT) that u-boot.bin always exceeds:
# make fails after u-boot is linked, as a real board over its limit does.
TINY_SIZE_LIMIT = 64

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
    status: str = "Active"  # boards.cfg's status column ('' shows as '-')
    include_of: str = ""  # defconfig #includes this target's defconfig
    has_tpl: bool = False  # CONFIG_TPL: tpl/u-boot-tpl and its .cfg too
    size_limit: int = 0   # CONFIG_BOARD_SIZE_LIMIT for u-boot.bin (0: none)

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


def kconfig_name(arch: str) -> str:
    """The Kconfig symbol selecting ``arch`` (ARM, RISCV, ...; an extra arch's upper case)."""
    return KCONFIG_ARCH.get(arch, arch.upper())


def arch_dir(kname: str) -> str:
    return ARCH_DIRS.get(kname, kname.lower())


def person(who: str) -> str:
    name = who or "sandbox"
    return f"{name.capitalize()} Maintainer <{name.lower()}@example.com>"


# ---- file contents ----------------------------------------------------------

def kconfig_top(extra_archs: tuple[str, ...] = ()) -> str:
    choices = "".join(f"config {kconfig_name(a)}\n\tbool \"{a.upper()} architecture\"\n\n"
                      for a in extra_archs)
    defaults = "".join(f'\tdefault "{a}" if {kconfig_name(a)}\n' for a in extra_archs)
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

config SUPPORT_TPL
\tbool

menu "General setup"

config SPL
\tbool "Enable SPL"
\tdepends on SUPPORT_SPL
\thelp
\t  Build a secondary program loader, spl/u-boot-spl.

config TPL
\tbool "Enable TPL"
\tdepends on SPL && SUPPORT_TPL
\thelp
\t  Build a tertiary program loader, tpl/u-boot-tpl.

config HAS_BOARD_SIZE_LIMIT
\tbool "Define a maximum size for u-boot.bin"

config BOARD_SIZE_LIMIT
\tint "Maximum size of u-boot.bin in bytes"
\tdepends on HAS_BOARD_SIZE_LIMIT
\tdefault 1048576

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

config DEMO_TURBO
\tbool "Turbo lookups (a cache in front of the lookup table)"
\tdepends on DEMO_TABLE
\thelp
\t  Needs the lookup table driver: on a board without it this cannot be
\t  enabled, so an adjustment asking for it does not hold there.

config DEMO_TURBO_SLOTS
\tint "Turbo cache slots"
\tdepends on DEMO_TURBO
\tdefault 4

config DEMO_TURBO_NAME
\tstring "Turbo cache name"
\tdepends on DEMO_TURBO
\tdefault "turbo"

endmenu

osource "arch/*/Kconfig"
osource "board/*/Kconfig"
osource "board/*/*/Kconfig"
"""


def kconfig_arch(kname: str, boards: list[DemoBoard]) -> str:
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
        if brd.has_tpl or brd.include_of:
            lines.append("\tselect SUPPORT_TPL")
        lines.append("")
    lines += ["endchoice", "", "endif", ""]
    return "\n".join(lines)


def kconfig_board(brd: DemoBoard) -> str:
    lines = [f"if TARGET_{brd.target.upper()}", ""]
    for sym, val in (("SYS_BOARD", brd.target), ("SYS_VENDOR", brd.vendor),
                     ("SYS_SOC", brd.soc), ("SYS_CONFIG_NAME", brd.config_name)):
        if val:
            lines += [f"config {sym}", f'\tdefault "{val}"', ""]
    lines += ["endif", ""]
    return "\n".join(lines)


def defconfig_text(brd: DemoBoard, malloc: str) -> str:
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
    lines = [f"CONFIG_{kconfig_name(brd.arch)}=y", f"CONFIG_TARGET_{brd.target.upper()}=y"]
    if brd.has_spl:
        lines.append("CONFIG_SPL=y")
    if brd.has_tpl:
        lines.append("CONFIG_TPL=y")
    if brd.size_limit:
        lines += ["CONFIG_HAS_BOARD_SIZE_LIMIT=y", f"CONFIG_BOARD_SIZE_LIMIT={brd.size_limit}"]
    lines.append(f"CONFIG_SYS_MALLOC_LEN={malloc}")
    if brd.table:
        lines.append("CONFIG_DEMO_TABLE=y")
    if brd.feature_x:
        lines.append("CONFIG_DEMO_FEATURE_X=y")
    return "\n".join(lines) + "\n"


def board_source_c(config_name: str, broken: bool = False, fixed: bool = False) -> str:
    clock = ""
    if fixed:
        clock = "static const int cpu_clk_rate = 24;\n\n"
    ret = "BOARD_ID + cpu_clk_rate" if broken or fixed else "BOARD_ID"
    return ("// SPDX-License-Identifier: GPL-2.0+\n#include <demo.h>\n"
            f"#include <configs/{config_name}.h>\n\n" + clock +
            f"int board_init(void)\n{{\n\treturn {ret};\n}}\n\n"
            "const char *board_name(void)\n{\n\treturn CONFIG_SYS_BOARD;\n}\n")


def board_header(brd: DemoBoard, idx: int) -> str:
    guard = f"__CONFIG_{brd.config_name.upper()}_H"
    return (f"/* SPDX-License-Identifier: GPL-2.0+ */\n#ifndef {guard}\n#define {guard}\n\n"
            f"#define BOARD_ID {idx}\n#define CFG_SYS_SDRAM_BASE 0x{0x40000000 + idx:x}\n\n"
            "#endif\n")


def table_c(entries: int) -> str:
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


def bulk_c(index: int, functions: int = 12) -> str:
    """One of a long board's extra sources: real work for the optimiser.

    Each function is a small state machine over a table, unrolled and inlined
    at -Os, so one file costs gcc a noticeable fraction of a second; a board
    with many of them builds far longer than the others (for benchmarks).
    """
    parts = ["// SPDX-License-Identifier: GPL-2.0+\n#include <demo.h>\n\n"]
    for fn in range(functions):
        name = f"bulk_{index}_{fn}"
        parts.append(
            f"static const unsigned int {name}_tab[64] = {{"
            + ", ".join(str((index * 131 + fn * 17 + k * 29) % 251) for k in range(64))
            + "};\n\n"
            f"unsigned int {name}(unsigned int x)\n{{\n\tunsigned int i, acc = x;\n\n"
            "\tfor (i = 0; i < 64; i++) {\n"
            f"\t\tswitch ((acc ^ {name}_tab[i]) & 7) {{\n"
            + "".join(f"\t\tcase {c}: acc = acc * {2 * c + 3} + {name}_tab[(i + {c}) & 63];"
                      " break;\n" for c in range(8))
            + "\t\t}\n\t}\n\treturn acc;\n}\n\n")
    return "".join(parts)


def feature_x_c(warn: bool) -> str:
    body = "\tint retries = 3;\n\n" if warn else ""
    return ("// SPDX-License-Identifier: GPL-2.0+\n#include <demo.h>\n\n"
            "static int feature_x_level = 2;\n\n"
            f"int feature_x_status(void)\n{{\n{body}\treturn feature_x_level * 2;\n}}\n")


def maintainers_top(boards: list[DemoBoard]) -> str:
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
        text += f"SANDBOX\nM:\t{person('')}\nS:\tMaintained\nN:\tsandbox\n\n"
    if any(b.vendor == "globex" for b in boards):
        text += f"GLOBEX SOCS\nM:\t{person('socs')}\nS:\tSupported\nN:\t^globex\n"
    return text


def maintainers_board(brd: DemoBoard) -> str:
    status = VENDOR_STATUS.get(brd.vendor, "Maintained")
    tag = "#M" if status.startswith("Orphan") else "M"
    return (f"{brd.target.upper()} BOARD\n{tag}:\t{person(brd.vendor)}\nS:\t{status}\n"
            f"F:\t{brd.board_dir}/\nF:\tinclude/configs/{brd.config_name}.h\n"
            f"F:\tconfigs/{brd.target}_defconfig\n")


# ---- writing ----------------------------------------------------------------


TURBO_FRAGMENT = "turbo"
"""The -X fragment (``configs/turbo.config``) and the --fragments one (``turbo.config``)."""


def buildman_file() -> str:
    """``configs/demo.buildman``: one extended board per table board of acme and initech."""
    return f"""\
# Boards with the lookup table, built again with the turbo cache
name: {TURBO_FRAGMENT}
desc: Table boards with the turbo cache (configs/{TURBO_FRAGMENT}.config)
fragment: {TURBO_FRAGMENT}
targets:
  acme*
  initech*
  CONFIG_DEMO_TABLE=y
"""


def fragment_files() -> dict[str, str]:
    """Two fragments of one name, as U-Boot has ``acpi.config`` in configs/ and board/.

    ``make b_defconfig turbo.config`` merges both (configs/ first); a
    ``.buildman`` file's ``fragment: turbo`` names ``configs/turbo.config``.
    They set different options, so a test can tell that both were merged.
    """
    return {
        f"configs/{TURBO_FRAGMENT}.config": "CONFIG_DEMO_TURBO=y\nCONFIG_DEMO_TURBO_SLOTS=8\n",
        f"board/common/configs/{TURBO_FRAGMENT}.config": "CONFIG_DEMO_TURBO=y\n"
                                                        'CONFIG_DEMO_TURBO_NAME="board"\n',
    }
