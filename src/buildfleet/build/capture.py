"""Gather the files a finished build leaves in buildman's output tree.

Everything is read into ``BuildResult.files`` (name → bytes) instead of
being written in place, so that one writer puts local and remote results
into the tree alike, and a worker can send exactly what a local slot keeps.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.common.utils import struct_parse
from elftools.construct.lib.container import Container
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import StringTableSection

from buildfleet.model import CAPTURE_PROBLEMS, IMAGE_HASHES

ELF_IMAGES = ("u-boot", "spl/u-boot-spl", "tpl/u-boot-tpl")
TOOL_TIMEOUT = 60.0
_FILE_FORMAT_RE = re.compile(rb"file format ([A-Za-z0-9_.-]+)")

# Config files kept from each build (paths under O=), looked for in the build
# directory itself and in its spl/ and tpl/ subdirectories (buildman's set).
CONFIG_PATTERNS = ("u-boot.cfg", "spl/u-boot-spl.cfg", "tpl/u-boot-tpl.cfg", ".config",
                   "include/autoconf.mk", "include/generated/autoconf.h")
PHASES = ("", "spl", "tpl")

KEEP_PATTERNS = ("u-boot*", "*.map", "MLO", "SPL", "include/autoconf.mk", "spl/u-boot-spl*",
                 "tpl/u-boot-tpl*", "vpl/u-boot-vpl*", "*.bin", "*.rom", "*.itb", "*.img")


UNHASHED = frozenset({".note.gnu.build-id"})
Sizes = tuple[int, int, int, int]


@dataclass
class ImageInfo:
    """What one pass over an ELF image yields.

    ``sizes`` is (text, data, bss, rodata) in bytes, counted as GNU size's
    Berkeley format counts them (from the section flags, as BFD reads them), or
    None when the image could not be parsed. ``digest`` is the SHA-256 of what
    the image loads ("" if it could not be read). ``problem`` says why the
    parser gave no sizes ("" when it did).
    """

    sizes: Sizes | None
    digest: str
    problem: str = ""


def _headers(elf: ELFFile) -> Iterator[tuple[str, Container]]:
    """(name, header) of every section, without building typed section objects.

    ``ELFFile.iter_sections`` makes a typed object per section and resolves its
    links on the way; real U-Boot images (PIEs whose linker script discards
    ``.dynsym``) keep a ``.hash`` whose link is 0, and pyelftools refuses those
    with ``ELFError``. Sizes and the hash need only the headers and the bytes.
    """
    names = elf.get_section(elf["e_shstrndx"])
    if not isinstance(names, StringTableSection):
        raise ELFError("e_shstrndx does not name a string table")
    for index in range(elf.num_sections()):
        header = struct_parse(elf.structs.Elf_Shdr, elf.stream,
                              stream_pos=elf["e_shoff"] + index * elf["e_shentsize"])
        yield names.get_string(header["sh_name"]), header


def inspect_image(path: Path) -> ImageInfo:
    """One pass over an ELF image: its sizes and the hash of what it loads.

    The hash is SHA-256 of the allocated sections with their addresses.
    Debug sections are left out on purpose: they record the build directory,
    which differs between slots and machines by design, so a whole-file hash
    would call every pair of copies different. So is a GNU build-id note, a
    checksum of the whole file (debug info included). The loaded bytes are what
    ``u-boot.bin`` is made of. A file the parser cannot read has no sizes (the
    caller asks ``size`` instead) and is hashed whole.
    """
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            elf = ELFFile(fh)
            text = data = bss = rodata = 0
            for name, sec in _headers(elf):
                flags = sec["sh_flags"]
                if not flags & SH_FLAGS.SHF_ALLOC:
                    continue
                size = sec["sh_size"]
                if name == ".rodata":
                    rodata = size
                nobits = sec["sh_type"] == "SHT_NOBITS"
                if flags & SH_FLAGS.SHF_EXECINSTR or not flags & SH_FLAGS.SHF_WRITE:
                    text += size
                elif not nobits:
                    data += size
                else:
                    bss += size
                if name in UNHASHED:
                    continue
                digest.update(f"{name}\0{sec['sh_addr']:x}\0{size:x}\0".encode())
                if not nobits:
                    fh.seek(sec["sh_offset"])
                    chunk = fh.read(size)
                    if len(chunk) != size:
                        raise ELFError(f"section {name} runs past the end of the file")
                    digest.update(chunk)
            return ImageInfo((text, data, bss, rodata), digest.hexdigest())
    except OSError as exc:
        return ImageInfo(None, "", f"cannot read: {exc.strerror or exc}")
    except Exception as exc:  # noqa: BLE001 - pyelftools raises many kinds on bad input
        problem = f"pyelftools cannot read it: {type(exc).__name__}: {exc}"
    try:
        return ImageInfo(None, hashlib.sha256(path.read_bytes()).hexdigest(), problem)
    except OSError as exc:
        return ImageInfo(None, "", f"cannot read: {exc.strerror or exc}")


def sizes_line(image: str, sizes: Sizes, rodata: str | None = None) -> str:
    """buildman's ``sizes`` line: GNU size's Berkeley data line, a space, the .rodata size.

    ``rodata`` is the size as ``objdump -h`` prints it (what buildman appends);
    None formats the parsed size the same way (8 hex digits at least).
    """
    text, data, bss, rodata_size = sizes
    dec = text + data + bss
    if rodata is None:
        rodata = f"{rodata_size:08x}" if rodata_size else ""
    return f"{text:7d}\t{data:7d}\t{bss:7d}\t{dec:7d}\t{dec:7x}\t{image} {rodata}"


def objdump_rodata(objdump: bytes) -> str:
    """The ``.rodata`` size column of ``objdump -h`` output, as printed ('' if none)."""
    found = ""
    for line in objdump.decode("utf-8", "replace").splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == ".rodata":
            found = fields[2]
    return found


def size_tool_line(output: bytes | None) -> str | None:
    """The data line of ``size`` output (the second line), None if it has none."""
    lines = (output or b"").decode("utf-8", "replace").splitlines()
    return lines[1] if len(lines) > 1 else None


class _Tool:
    """One capture tool, started now and read later, so a result's tools overlap.

    The time limit is a timer that kills the tool, not ``communicate(timeout=)``,
    which polls the exit with sleeps and adds milliseconds to every call.
    """

    def __init__(self, argv: list[str], cwd: Path, env: Mapping[str, str]) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError:
            return
        self.timer = threading.Timer(TOOL_TIMEOUT, self.proc.kill)
        self.timer.daemon = True
        self.timer.start()

    def output(self) -> bytes | None:
        """The tool's stdout, or None if it could not run, failed or timed out."""
        if self.proc is None:
            return None
        try:
            out, _ = self.proc.communicate()
        finally:
            self.timer.cancel()
        return out if self.proc.returncode == 0 else None


def _run_tool(argv: list[str], cwd: Path, env: Mapping[str, str]) -> bytes | None:
    return _Tool(argv, cwd, env).output()


def _nm_target(objdump: bytes | None) -> list[str]:
    """``--target=<bfd name>`` for nm, from the format ``objdump -h`` reported.

    Without it nm probes every format, which makes binutils load its linker
    plugins (LLVMgold pulls in all of libLLVM): 25 ms per call instead of 3,
    for the same output. A linked image is never LTO bitcode, so naming its
    format loses nothing.
    """
    match = _FILE_FORMAT_RE.search(objdump or b"")
    return [f"--target={match.group(1).decode()}"] if match else []


def _buildman_text(output: bytes) -> bytes:
    """A tool's output as buildman stores it: followed by one space.

    buildman writes each nm and objdump output with ``print(..., end=' ')``;
    the same bytes keep the two output trees byte-for-byte alike.
    """
    return output + b" "


def capture_images(out_dir: Path, tool: Mapping[str, str],
                   env: Mapping[str, str]) -> dict[str, bytes]:
    """``sizes``, ``<elf>.sizes``, ``<elf>.objdump`` and ``uboot.env`` for the ELFs present.

    Whatever the return code of make: an image linked before a later step
    failed still has its sizes recorded, as buildman does. Plus buildfleet's
    own ``images.sha256`` (``<sha256>  <image>`` per image, see
    :func:`inspect_image`) and, when an image's sizes could not be read as
    usual, ``capture.err`` (``<image>: <what went wrong>`` per line): a parser
    or tool failure is kept in the result, never dropped in silence.
    """
    files: dict[str, bytes] = {}
    images = [image for image in ELF_IMAGES if (out_dir / image).is_file()]
    # objdump (whose output names the format nm needs) and objcopy run while
    # the sizes and hashes are read here; then every nm runs at once.
    objdumps = {image: _Tool([tool["objdump"], "-h", image], out_dir, env) for image in images}
    env_image = None
    if (out_dir / "env" / "built-in.a").is_file():
        env_image = out_dir / "uboot.env"
        env_image.unlink(missing_ok=True)
        objcopy = _Tool([tool["objcopy"], "-O", "binary", "-j", ".rodata.default_environment",
                         "env/built-in.a", "uboot.env"], out_dir, env)
    infos = {image: inspect_image(out_dir / image) for image in images}
    problems: list[str] = []
    lines = []
    hashes = []
    nms = {}
    for image in images:
        info = infos[image]
        objdump = objdumps[image].output()
        rodata = None
        if objdump is not None:
            files[f"{image.replace('/', '-')}.objdump"] = _buildman_text(objdump)
            rodata = objdump_rodata(objdump)
        else:
            problems.append(f"{image}: {tool['objdump']} -h failed")
        if info.sizes is not None:
            lines.append(sizes_line(image, info.sizes, rodata))
        else:
            # The parser could not read it: ask binutils' size, as buildman does.
            line = size_tool_line(_run_tool([tool["size"], image], out_dir, env))
            if line is not None:
                lines.append(f"{line} {rodata or ''}")
                problems.append(f"{image}: {info.problem}; sizes from {tool['size']}")
            else:
                problems.append(f"{image}: {info.problem}; {tool['size']} failed too: "
                                "no sizes")
        if info.digest:
            hashes.append(f"{info.digest}  {image}\n")
        target = _nm_target(objdump)
        nms[image] = (_Tool([tool["nm"], *target, "--size-sort", image], out_dir, env), target)
    for image, (nm_tool, target) in nms.items():
        nm = nm_tool.output()
        if nm is None and target:  # an nm that does not know objdump's name for it
            nm = _run_tool([tool["nm"], "--size-sort", image], out_dir, env)
        if nm is None:
            problems.append(f"{image}: {tool['nm']} --size-sort failed")
        elif nm:  # buildman writes no file for empty output
            files[f"{image.replace('/', '-')}.sizes"] = _buildman_text(nm)
    if lines:
        files["sizes"] = ("\n".join(lines) + "\n").encode()
    if hashes:
        files[IMAGE_HASHES] = "".join(hashes).encode()
    if problems:
        files[CAPTURE_PROBLEMS] = "".join(p + "\n" for p in problems).encode()
    if env_image is not None:
        objcopy.output()
        if env_image.is_file():
            files["uboot.env"] = env_image.read_bytes()
    return files


def config_copies(out_dir: Path) -> dict[str, Path]:
    """Result-file name -> file under O=, for every config file the build left.

    buildman's naming: a file found under ``spl/`` or ``tpl/`` gets the phase
    before its extension, so real U-Boot's ``spl/u-boot.cfg`` becomes
    ``u-boot-spl.cfg`` and ``spl/include/autoconf.mk`` ``autoconf-spl.mk``.
    Later phases win a name, as in buildman (``spl/u-boot.cfg`` over
    ``spl/u-boot-spl.cfg``). A name with no extension (``spl/.config``) gets
    the phase appended (``.config-spl``) instead of replacing ``.config``.
    """
    copies: dict[str, Path] = {}
    for phase in PHASES:
        for pattern in CONFIG_PATTERNS:
            path = out_dir / phase / pattern
            if not path.is_file():
                continue
            name = path.name
            if phase:
                stem, ext = os.path.splitext(name)
                name = f"{stem}-{phase}{ext}" if ext else f"{name}-{phase}"
            copies[name] = path
    return copies


def capture_configs(out_dir: Path) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in config_copies(out_dir).items()}


def capture_kept_outputs(out_dir: Path) -> dict[str, bytes]:
    """``-k``: the binaries, flattened to their base names."""
    files: dict[str, bytes] = {}
    for pattern in KEEP_PATTERNS:
        for path in sorted(out_dir.glob(pattern)):
            if path.is_file():
                files.setdefault(path.name, path.read_bytes())
    return files
