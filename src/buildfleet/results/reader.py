"""Reading one build directory of the output tree back into a StoredResult.

The summary must read any tree in buildman's format, whoever wrote it
(buildfleet locally, a buildfleet worker, buildman, or buildman's own
distributed mode with its quirks), so every file is optional and every parse
is forgiving: a bad line is skipped, never a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path

from buildfleet.model import COPIED_FROM
from buildfleet.results.errlines import filter_err_lines
from buildfleet.results.outcome import ImageSizes, StoredResult

BASE_CONFIG_FILES = ("u-boot.cfg", "u-boot-spl.cfg", "u-boot-tpl.cfg")
EXTRA_CONFIG_FILES = (
    ".config", ".config-spl", ".config-tpl",
    "autoconf.mk", "autoconf-spl.mk", "autoconf-tpl.mk",
    "autoconf.h", "autoconf-spl.h", "autoconf-tpl.h",
)
ALL_CONFIG_FILES = BASE_CONFIG_FILES + EXTRA_CONFIG_FILES
NM_SYMBOL_TYPES = "tTdDbBr"

# buildman's remote builds record the worker's absolute ELF path in ``sizes``
_WORKER_PATH_RE = re.compile(r"/\.bm-work/[^/]+/(?:build/)?(.+)$")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None


RETRY_RC = -1
"""buildman's ``done`` for "build this again" (its workers write it on a retry)."""


def read_done(build_dir: Path) -> int | None:
    """The return code recorded in ``build_dir/done``, or None if there is none.

    The one reading of ``done`` (the plan's "is it built?" and the summary's
    "how did it end?" both ask here): None when the file is absent,
    unreadable or its first line is not an integer (a write that never
    finished: the board is built again). ``RETRY_RC`` is returned as is:
    the summary shows it as an error, the plan builds the board again
    (see ``is_done``).
    """
    text = _read_text(build_dir / "done")
    first = text.splitlines()[0].strip() if text and text.strip() else ""
    try:
        return int(first)
    except ValueError:
        return None


def is_done(return_code: int | None) -> bool:
    """Is a ``read_done`` answer a finished result (one the plan need not build again)?"""
    return return_code is not None and return_code != RETRY_RC


def image_key(filename: str) -> str:
    """The image name of a ``sizes`` line, with a worker's absolute path made relative."""
    if filename.startswith("/"):
        match = _WORKER_PATH_RE.search(filename)
        return match.group(1) if match else filename.rsplit("/", 1)[-1]
    return filename


def parse_sizes(text: str) -> ImageSizes:
    """``text data bss dec hex filename [rodata-hex]`` lines -> parts per image."""
    sizes: ImageSizes = {}
    for line in text.splitlines():
        values = line.split()
        if len(values) < 6:
            continue
        try:
            text_sz, data, bss = int(values[0]), int(values[1]), int(values[2])
            rodata = int(values[6], 16) if len(values) > 6 else 0
        except ValueError:
            continue  # a header line, or garbage
        sizes[image_key(values[5])] = {
            "all": text_sz + data + bss,
            "text": text_sz - rodata,
            "data": data,
            "bss": bss,
            "rodata": rodata,
        }
    return sizes


def parse_func_sizes(text: str) -> dict[str, int]:
    """``nm --size-sort`` output -> symbol sizes (local statics merged as ``static.x``)."""
    syms: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3 or parts[1] not in NM_SYMBOL_TYPES:
            continue
        size_hex, _, name = parts
        try:
            size = int(size_hex, 16)
        except ValueError:
            continue
        if "." in name[1:]:
            name = "static." + name.split(".")[0]
        syms[name] = syms.get(name, 0) + size
    return syms


def parse_config(text: str, squash_config_y: bool = True) -> dict[str, str]:
    """A ``.config``, ``u-boot.cfg``, ``autoconf.mk`` or ``autoconf.h`` -> options."""
    config: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#define"):
            fields = line[len("#define"):].strip().split(" ", 1)
            key = fields[0]
            value = fields[1] if len(fields) > 1 else ("1" if squash_config_y else "")
            if not key.startswith("CONFIG_"):
                continue
        elif not line or line[0] in "#*/":
            continue
        elif "=" in line:
            key, value = line.split("=", 1)
        else:
            continue
        if squash_config_y and value == "y":
            value = "1"
        config[key] = value
    return config


def parse_environment(data: bytes) -> dict[str, str]:
    """``uboot.env``: NUL-separated ``key=value`` records."""
    env: dict[str, str] = {}
    for record in data.decode("utf-8", errors="replace").split("\0"):
        if "=" in record:
            key, value = record.split("=", 1)
            env[key] = value
    return env


def parse_toolchain(text: str) -> dict[str, str]:
    """``toolchain``: ``gcc``/``path``/``cross``/``arch`` lines (the trailing rc is dropped)."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        if " " in line:
            key, value = line.split(" ", 1)
            info[key] = value.strip()
    return info


def read_result(build_dir: Path, *, filter_dtb: bool = False, filter_migration: bool = False,
                squash_config_y: bool = True, func_sizes: bool = True, config: bool = True,
                environment: bool = True) -> StoredResult | None:
    """Read a build directory; None when it has no result (``read_done`` is None).

    The keyword flags skip files a caller does not need (a world build has
    thousands of build directories, and config files are large).
    """
    return_code = read_done(build_dir)
    if return_code is None:
        return None
    result = StoredResult(return_code=return_code)
    err = _read_text(build_dir / "err")
    if err is not None:
        result.err_lines = filter_err_lines(err.splitlines(), filter_dtb, filter_migration)
    sizes = _read_text(build_dir / "sizes")
    if sizes is not None:
        result.sizes = parse_sizes(sizes)
    if func_sizes:
        for path in sorted(build_dir.glob("*.sizes")):
            text = _read_text(path)
            if text is not None:
                result.func_sizes[path.name[:-len(".sizes")]] = parse_func_sizes(text)
    if config:
        for name in ALL_CONFIG_FILES:
            text = _read_text(build_dir / name)
            if text is not None:
                result.config[name] = parse_config(text, squash_config_y)
    if environment:
        try:
            result.environment = parse_environment((build_dir / "uboot.env").read_bytes())
        except OSError:
            pass
    duration = _read_text(build_dir / "duration")
    if duration is not None:
        try:
            result.duration = float(duration.strip())
        except ValueError:
            pass
    host = _read_text(build_dir / "host")
    if host is not None and host.strip():
        result.host = host.strip()
    toolchain = _read_text(build_dir / "toolchain")
    if toolchain is not None:
        result.toolchain = parse_toolchain(toolchain)
    copied = _read_text(build_dir / COPIED_FROM)
    if copied is not None and copied.strip():
        result.copied_from = copied.strip()
    return result
