"""What real U-Boot images look like, and the result files buildman leaves for them (issue 13).

The demo tree links U-Boot proper on arm, aarch64 and riscv64 as real U-Boot
does: a position-independent executable with dynamic relocations and a
``.hash`` section whose link is 0 (its linker script discards ``.dynsym``).
pyelftools refuses to iterate the sections of such a file, which once left
every arm and aarch64 board without ``u-boot`` sizes. It also has boards with
SPL and TPL, and a board (``hooli_arm4``) whose make fails after u-boot is
linked. Every expectation is checked against the binutils tools buildman
itself runs (``<cross>size``, ``<cross>objdump -h``, ``<cross>nm``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from bfrun import Run, done_code, require_cross, run_bf, settings_file
from buildfleet.build.capture import capture_images, inspect_image
from buildfleet.demo import DemoTree, make_demo_tree
from buildfleet.model import CAPTURE_PROBLEMS

BOARDS = ["acme_arm1", "globex_a64", "initech_rv1", "hooli_arm4"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoTree, Run, Path]:
    """The current source of a 9-board demo tree, four cross boards built once."""
    require_cross()
    root = tmp_path_factory.mktemp("real")
    tree = make_demo_tree(root / "tree", boards=9)
    # -P: an O= directory per board, so each can be compared with the tools after
    run = run_bf(["--boards", ",".join(BOARDS), "-o", str(root / "out"), "-T2", "-P",
                  "-G", str(settings_file(root))], cwd=tree.path)
    return tree, run, root / "out" / "current"


def _tool(tree: DemoTree, target: str, name: str, *args: str, cwd: Path) -> bytes:
    cross = tree.board(target).cross_compile
    return subprocess.run([f"{cross}{name}", *args], cwd=cwd, check=True,
                          capture_output=True).stdout


def _out_dir(result: Path) -> Path:
    """The O= directory the result was built in (from its ``out-cmd``)."""
    line = (result / "out-cmd").read_text().splitlines()[-1]
    return Path(next(a[2:] for a in line.split() if a.startswith("O=")))


def test_the_demo_images_are_what_pyelftools_cannot_iterate(built: tuple) -> None:
    tree, run, base = built
    for target in ("acme_arm1", "globex_a64", "initech_rv1"):
        image = _out_dir(base / target) / "u-boot"
        with image.open("rb") as fh, pytest.raises(ELFError, match="SHT_NULL"):
            list(ELFFile(fh).iter_sections())
        info = inspect_image(image)
        assert info.sizes is not None and not info.problem, info


def test_sizes_are_the_bytes_buildman_writes(built: tuple) -> None:
    """One line per ELF: ``size``'s data line, a space, .rodata as objdump prints it."""
    tree, run, base = built
    assert "Traceback" not in run.stderr, run
    for target in BOARDS:
        result = base / target
        out = _out_dir(result)
        board = tree.board(target)
        images = ["u-boot"] + (["spl/u-boot-spl"] if board.has_spl else []) + \
            (["tpl/u-boot-tpl"] if board.has_tpl else [])
        expected = []
        for image in images:
            size = _tool(tree, target, "size", image, cwd=out).decode().splitlines()[1]
            objdump = _tool(tree, target, "objdump", "-h", image, cwd=out)
            rodata = [f.split()[2] for f in objdump.decode().splitlines()
                      if len(f.split()) > 5 and f.split()[1] == ".rodata"]
            assert rodata and len(rodata[0]) == 8, objdump
            expected.append(f"{size} {rodata[0]}\n")
            stem = image.replace("/", "-")
            assert (result / f"{stem}.objdump").read_bytes() == objdump + b" "
            nm = _tool(tree, target, "nm", "--size-sort", image, cwd=out)
            assert (result / f"{stem}.sizes").read_bytes() == nm + b" "
        assert (result / "sizes").read_text() == "".join(expected), target
        assert not (result / CAPTURE_PROBLEMS).exists()


def test_spl_and_tpl_config_copies(built: tuple) -> None:
    tree, run, base = built
    for target in BOARDS:
        board = tree.board(target)
        names = {p.name for p in (base / target).iterdir()}
        assert {"u-boot.cfg", ".config", "autoconf.mk", "autoconf.h"} <= names
        # As buildman names them: spl/u-boot.cfg -> u-boot-spl.cfg,
        # spl/include/autoconf.mk -> autoconf-spl.mk (and the same for TPL)
        out = _out_dir(base / target)
        for phase, has in (("spl", board.has_spl), ("tpl", board.has_tpl)):
            assert (f"u-boot-{phase}.cfg" in names) == has, (target, names)
            assert (f"autoconf-{phase}.mk" in names) == has, (target, names)
            if has:
                assert (base / target / f"u-boot-{phase}.cfg").read_bytes() == \
                    (out / phase / "u-boot.cfg").read_bytes()
                assert f"CONFIG_{phase.upper()}_BUILD" in \
                    (base / target / f"u-boot-{phase}.cfg").read_text()
        assert not names & {".config-spl", "autoconf-spl.h", ".config-tpl", "autoconf-tpl.h"}
    assert any(tree.board(t).has_tpl for t in BOARDS)


def test_a_build_failing_after_link_keeps_its_image_files(built: tuple) -> None:
    tree, run, base = built
    target = tree.link_failure_target
    assert target == "hooli_arm4"
    assert run.returncode == 100, run
    result = base / target
    assert done_code(result) == 2
    assert "u-boot.bin exceeds file size limit" in (result / "err").read_text()
    for name in ("sizes", "u-boot.sizes", "u-boot.objdump", "u-boot.cfg", "uboot.env"):
        assert (result / name).is_file(), name
    assert (result / "sizes").read_text().split("\t")[5].startswith("u-boot ")


def test_an_unreadable_image_is_reported_in_the_result(tmp_path: Path) -> None:
    """A parser failure falls back to ``size``; if that fails too, the result says so."""
    (tmp_path / "u-boot").write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9))  # e_ident only
    tools = {"nm": "nm", "objdump": "objdump", "objcopy": "objcopy", "size": "size"}
    files = capture_images(tmp_path, tools, {"PATH": "/usr/bin:/bin"})
    problems = files[CAPTURE_PROBLEMS].decode().splitlines()
    assert "u-boot: objdump -h failed" in problems
    assert "u-boot: nm --size-sort failed" in problems
    parser = [p for p in problems if p.startswith("u-boot: pyelftools cannot read it: ")]
    assert len(parser) == 1 and parser[0].endswith("; size failed too: no sizes"), problems
    assert "sizes" not in files


def test_a_parser_failure_falls_back_to_size(tmp_path: Path) -> None:
    """A real ELF pyelftools rejects (a bad section-name table index) still gets sizes."""
    src = tmp_path / "a.c"
    src.write_text("int x = 1;\nint main(void) { return x; }\n")
    subprocess.run(["gcc", "-O0", "-o", str(tmp_path / "u-boot"), str(src)], check=True)
    data = bytearray((tmp_path / "u-boot").read_bytes())
    # e_shstrndx (ELF64: offset 62) -> section 1, which is not a string table
    data[62:64] = (1).to_bytes(2, "little")
    (tmp_path / "u-boot").write_bytes(bytes(data))
    size = subprocess.run(["size", "u-boot"], cwd=tmp_path, capture_output=True, text=True)
    assert size.returncode == 0, size.stderr
    tools = {"nm": "nm", "objdump": "objdump", "objcopy": "objcopy", "size": "size"}
    files = capture_images(tmp_path, tools, {"PATH": "/usr/bin:/bin"})
    line = files["sizes"].decode()
    assert line.startswith(size.stdout.splitlines()[1] + " "), (line, size.stdout)
    assert "sizes from size" in files[CAPTURE_PROBLEMS].decode()
