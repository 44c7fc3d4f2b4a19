"""A small output tree in buildman's format, written file by file for the summary tests.

Three boards x three commits:
  01 Initial commit     all OK
  02 Add warning to foo board_a and board_c warn (same line), board_b breaks,
                        board_c grows 64 bytes (one new function, one grown),
                        board_c config change, board_a env change
  03 Fix board b        board_b fixed, board_c's warning gone, board_a bss +16,
                        board_c env gains fdtfile
board_d (sandbox) is selected but never built.
"""

from __future__ import annotations

from pathlib import Path

from buildfleet.model import Board, Commit
from buildfleet.results.paths import build_dir

COMMITS = [
    Commit(0, "1" * 40, "Initial commit"),
    Commit(1, "2" * 40, "Add warning to foo"),
    Commit(2, "3" * 40, "Fix board b"),
]
BOARDS = [
    Board("board_a", "arm", "armv7", vendor="acme", board_name="a"),
    Board("board_b", "arm", "armv8", vendor="acme", board_name="b"),
    Board("board_c", "riscv", "generic", vendor="acme", board_name="c"),
]
UNBUILT = Board("board_d", "sandbox", "sandbox", board_name="d")

WARN_FUNC = "drivers/foo.c: In function 'foo_probe':"
WARN = "drivers/foo.c:12:5: warning: unused variable 'x' [-Wunused-variable]"
ERR = "board/b/b.c:3:1: error: expected ';' before '}' token"
MAKE_ERR = "make[1]: *** [scripts/Makefile.build:250: board/b/b.o] Error 1"


def _sizes_line(text: int, data: int, bss: int, rodata: int, name: str = "u-boot") -> str:
    dec = text + data + bss
    return f"{text:7d}\t{data:7d}\t{bss:7d}\t{dec:7d}\t{dec:7x}\t{name} {rodata:x}\n"


def _write(d: Path, files: dict[str, str | bytes]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if isinstance(data, bytes):
            (d / name).write_bytes(data)
        else:
            (d / name).write_text(data)


def _cfg(values: dict[str, str]) -> str:
    return "".join(f"#define {k} {v}\n" for k, v in values.items())


def _env(values: dict[str, str]) -> bytes:
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in values.items()) + b"\0"


def make_tree(base: Path) -> Path:
    """Write the tree under ``base`` (the branch directory) and return ``base``."""
    nm_a = "00000100 T main_loop\n00000020 t helper.lto_priv.0\n00000010 D tbl\n"
    nm_c1 = "00000040 T main_loop\n00000010 D tbl\n"
    nm_c2 = "00000060 T main_loop\n00000020 T new_func\n00000010 D tbl\n"
    toolchain = ("gcc /usr/bin/arm-linux-gnueabihf-gcc\npath /usr/bin\n"
                 "cross arm-linux-gnueabihf-\narch arm\n0")
    cfg_a = {"CONFIG_SYS_ARCH": '"arm"', "CONFIG_DM": "1"}
    cfg_c1 = {"CONFIG_SYS_ARCH": '"riscv"', "CONFIG_BAR": "0x10", "CONFIG_DM": "1"}
    cfg_c2 = {"CONFIG_SYS_ARCH": '"riscv"', "CONFIG_BAR": "0x20", "CONFIG_DM": "1",
              "CONFIG_FOO": "1"}
    env = {"bootdelay": "2", "baudrate": "115200"}
    plan: dict[tuple[int, str], dict[str, str | bytes]] = {}
    for seq in range(3):
        a_env = dict(env, bootdelay="5") if seq >= 1 else env
        plan[(seq, "board_a")] = {
            "done": "0", "log": "", "toolchain": toolchain, "duration": "12.500\n",
            "host": "local\n",
            "sizes": _sizes_line(1000, 100, 66 if seq == 2 else 50, 0x40),
            "u-boot.sizes": nm_a, "u-boot.cfg": _cfg(cfg_a), "uboot.env": _env(a_env),
        }
        if seq >= 1:
            plan[(seq, "board_a")]["err"] = f"{WARN_FUNC}\n{WARN}\n"
        b_files: dict[str, str | bytes] = {
            "done": "0", "log": "", "duration": "3.25\n", "host": "m1\n",
            "u-boot.cfg": _cfg(cfg_a), "uboot.env": _env(env),
        }
        if seq == 1:
            b_files.update({"done": "2", "err": f"{ERR}\n{MAKE_ERR}\n"})
        else:
            b_files.update({"sizes": _sizes_line(2000, 200, 80, 0x100),
                            "u-boot.sizes": nm_a})
        plan[(seq, "board_b")] = b_files
        c_env = dict(env, fdtfile="c.dtb") if seq == 2 else env
        plan[(seq, "board_c")] = {
            "done": "0", "log": "", "duration": "7\n",
            "sizes": _sizes_line(3000 + (64 if seq else 0), 300, 30, 0x80),
            "u-boot.sizes": nm_c2 if seq else nm_c1,
            "u-boot.cfg": _cfg(cfg_c2 if seq else cfg_c1), "uboot.env": _env(c_env),
        }
        if seq == 1:
            plan[(seq, "board_c")]["err"] = f"{WARN_FUNC}\n{WARN}\n"
    for (seq, target), files in plan.items():
        _write(build_dir(base, COMMITS[seq], target), files)
    return base
