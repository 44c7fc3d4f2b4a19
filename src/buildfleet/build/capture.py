"""Gather the files a finished build leaves in buildman's output tree.

Everything is read into ``BuildResult.files`` (name → bytes) instead of
being written in place, so that one writer puts local and remote results
into the tree alike, and a worker can send exactly what a local slot keeps.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from buildfleet.model import IMAGE_HASHES

ELF_IMAGES = ("u-boot", "spl/u-boot-spl", "tpl/u-boot-tpl")
TOOL_TIMEOUT = 60.0
_FILE_FORMAT_RE = re.compile(rb"file format ([A-Za-z0-9_.-]+)")

# (path under O=, name in the result directory)
CONFIG_COPIES = (
    ("u-boot.cfg", "u-boot.cfg"),
    ("spl/u-boot-spl.cfg", "u-boot-spl.cfg"),
    ("tpl/u-boot-tpl.cfg", "u-boot-tpl.cfg"),
    (".config", ".config"),
    ("spl/.config", ".config-spl"),
    ("tpl/.config", ".config-tpl"),
    ("include/autoconf.mk", "autoconf.mk"),
    ("spl/include/autoconf.mk", "autoconf-spl.mk"),
    ("tpl/include/autoconf.mk", "autoconf-tpl.mk"),
    ("include/generated/autoconf.h", "autoconf.h"),
    ("spl/include/generated/autoconf.h", "autoconf-spl.h"),
    ("tpl/include/generated/autoconf.h", "autoconf-tpl.h"),
)

KEEP_PATTERNS = ("u-boot*", "*.map", "MLO", "SPL", "include/autoconf.mk", "spl/u-boot-spl*",
                 "tpl/u-boot-tpl*", "vpl/u-boot-vpl*", "*.bin", "*.rom", "*.itb", "*.img")


UNHASHED = frozenset({".note.gnu.build-id"})
Sizes = tuple[int, int, int, int]


def inspect_image(path: Path) -> tuple[Sizes | None, str]:
    """One pass over an ELF image: its sizes and the hash of what it loads.

    Sizes are (text, data, bss, rodata), counted as GNU size's Berkeley format
    does. The hash is SHA-256 of the allocated sections with their addresses.
    Debug sections are left out on purpose: they record the build directory,
    which differs between slots and machines by design, so a whole-file hash
    would call every pair of copies different. So is a GNU build-id note, a
    checksum of the whole file (debug info included). The loaded bytes are what
    ``u-boot.bin`` is made of. A file that is not a readable ELF has no sizes
    and is hashed whole; an unreadable one gives (None, "").
    """
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            elf = ELFFile(fh)
            text = data = bss = rodata = 0
            for sec in elf.iter_sections():
                flags = sec["sh_flags"]
                if not flags & SH_FLAGS.SHF_ALLOC:
                    continue
                size = sec["sh_size"]
                if sec.name == ".rodata":
                    rodata = size
                if flags & SH_FLAGS.SHF_EXECINSTR or not flags & SH_FLAGS.SHF_WRITE:
                    text += size
                elif sec["sh_type"] != "SHT_NOBITS":
                    data += size
                else:
                    bss += size
                if sec.name in UNHASHED:
                    continue
                digest.update(f"{sec.name}\0{sec['sh_addr']:x}\0{size:x}\0".encode())
                if sec["sh_type"] != "SHT_NOBITS":
                    digest.update(sec.data())
            return (text, data, bss, rodata), digest.hexdigest()
    except ELFError:
        pass
    except OSError:
        return None, ""
    try:
        return None, hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None, ""


def sizes_line(image: str, sizes: Sizes) -> str:
    text, data, bss, rodata = sizes
    dec = text + data + bss
    return f"{text:7d}\t{data:7d}\t{bss:7d}\t{dec:7d}\t{dec:7x}\t{image} {rodata:x}"


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


def capture_images(out_dir: Path, tool: Mapping[str, str],
                   env: Mapping[str, str]) -> dict[str, bytes]:
    """``sizes``, ``<elf>.sizes``, ``<elf>.objdump`` and ``uboot.env`` for the ELFs present.

    Plus buildfleet's own ``images.sha256`` (``<sha256>  <image>`` per image,
    see :func:`inspect_image`), for comparing two copies of the same result.
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
    lines = []
    hashes = []
    for image in images:
        sizes, digest = inspect_image(out_dir / image)
        if sizes is not None:
            lines.append(sizes_line(image, sizes))
        if digest:
            hashes.append(f"{digest}  {image}\n")
    nms = {}
    for image in images:
        objdump = objdumps[image].output()
        if objdump is not None:
            files[f"{image.replace('/', '-')}.objdump"] = objdump
        target = _nm_target(objdump)
        nms[image] = (_Tool([tool["nm"], *target, "--size-sort", image], out_dir, env), target)
    for image, (nm_tool, target) in nms.items():
        nm = nm_tool.output()
        if nm is None and target:  # an nm that does not know objdump's name for it
            nm = _run_tool([tool["nm"], "--size-sort", image], out_dir, env)
        if nm is not None:
            files[f"{image.replace('/', '-')}.sizes"] = nm
    if lines:
        files["sizes"] = ("\n".join(lines) + "\n").encode()
    if hashes:
        files[IMAGE_HASHES] = "".join(hashes).encode()
    if env_image is not None:
        objcopy.output()
        if env_image.is_file():
            files["uboot.env"] = env_image.read_bytes()
    return files


def capture_configs(out_dir: Path) -> dict[str, bytes]:
    files = {}
    for rel, name in CONFIG_COPIES:
        path = out_dir / rel
        if path.is_file():
            files[name] = path.read_bytes()
    return files


def capture_kept_outputs(out_dir: Path) -> dict[str, bytes]:
    """``-k``: the binaries, flattened to their base names."""
    files: dict[str, bytes] = {}
    for pattern in KEEP_PATTERNS:
        for path in sorted(out_dir.glob(pattern)):
            if path.is_file():
                files.setdefault(path.name, path.read_bytes())
    return files
