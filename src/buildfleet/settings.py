"""Reading buildman's settings file (``~/.buildman`` or ``-G FILE``).

The settings file is a contract with users who already have one, so this
module accepts exactly buildman's INI sections and adds only the machine
availability keys of PROTOCOL.md §2. It differs from buildman where buildman
is fragile: keys keep their case (machine names and make-flags targets are
case-sensitive), a malformed file is one clear ``file:line`` error instead of
a traceback, bad numbers name their section and key, unknown keys are
warnings, and a ``${name}`` cycle in ``[make-flags]`` is an error rather than
an endless loop.

Nothing here knows about argparse, toolchain scanning or machines' state; the
result is a plain :class:`Settings` object that travels explicitly.
"""

from __future__ import annotations

import ast
import configparser
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from buildfleet.errors import UserError
from buildfleet.model import DEFAULT_KEEP_MB

DEFAULT_NAME = ".buildman"

ALLOW_MISSING_WORDS = ("always", "multiple", "branch")
AVAILABILITY_KEYS = ("busy_load", "min_disk_mb", "min_mem_mb")
BOOL_GLOBAL_KEYS = ("skip_unchanged", "ccache")
GLOBAL_KEYS = ("allow-missing", "fetch-url", "build_timeout", "build-timeout",
               "keep_build_dirs_mb", *BOOL_GLOBAL_KEYS, *AVAILABILITY_KEYS)
MACHINE_KEYS = ("max_boards", *AVAILABILITY_KEYS)
FREE_SECTIONS = ("toolchain", "toolchain-prefix", "toolchain-alias", "toolchain-wrapper",
                 "make-flags", "machines")

DEFAULT_BUSY_LOAD = 0.8
DEFAULT_MIN_DISK_MB = 1000
DEFAULT_MIN_MEM_MB = 512

_VAR_RE = re.compile(r"\$\{([-_a-zA-Z0-9]+)\}")
_ARG_RE = re.compile(r'(?:"[^"]*"|\S)+')

DEFAULT_FILE_TEXT = """\
# buildfleet / buildman settings. Lines starting with '#' are comments.

[toolchain]
# Directories searched for cross compilers ('*gcc' in ., bin and usr/bin).
# The tag before '=' is free but must be unique; '~' and '*' work. Compilers
# on your PATH are always found, so there is no need for 'other = /'.
# mytools = ~/toolchains/*
# 'buildfleet --fetch-arch ARCH' adds a 'download' line here by itself.

[toolchain-prefix]
# Force one compiler for an arch: full CROSS_COMPILE prefix, full gcc path,
# or a prefix looked up on PATH.
# arm = /opt/gcc-arm/bin/arm-none-eabi-

[toolchain-alias]
# A board arch on the left may use a toolchain for any arch on the right.
riscv = riscv32
sh = sh4
x86 = i386

[toolchain-wrapper]
# Put a command in front of every compiler, e.g.
# wrapper = ccache
# (in CROSS_COMPILE, as buildman). With none set, ccache is used where a
# machine has it ([global] ccache), as the compiler on PATH.

[make-flags]
# Extra make arguments for one board target. ${name} refers to another
# entry here, ${target} is the board target, "double quoted" groups stay one
# argument.
# qemu_arm = LOCALVERSION=-test "KCFLAGS=-O2 -g"

[global]
# allow-missing = multiple branch
# Seconds one board may build at one commit before it is stopped (0: no limit):
# build_timeout = 7200
# Copy the previous commit's result where a commit cannot change a board's
# result, instead of building it (--no-skip for one run):
# skip_unchanged = true
# Build through ccache on every machine that has it, when no
# [toolchain-wrapper] is set (--no-ccache for one run):
# ccache = true
# Each board's build directory is kept between branch builds, so the next run
# (a re-check after a rebase) builds incrementally; the least recently built
# go first beyond this many MB (0: keep none):
# keep_build_dirs_mb = 8192
# Availability of machines for --dist (defaults shown):
# busy_load = 0.8
# min_disk_mb = 1000
# min_mem_mb = 512

[machines]
# Build machines for --dist: a bare host, or name = [user@]host
# fast-box
# big = builder@big.example.com

# [machine:big]
# max_boards = 16
# busy_load = 1.5
"""


class SettingsError(UserError):
    """The settings file is missing, unreadable or malformed (one-line message)."""


@dataclass
class MachineConfig:
    """One build machine from ``[machines]`` plus its ``[machine:NAME]`` section."""

    name: str
    host: str
    max_boards: int = 0
    busy_load: float = DEFAULT_BUSY_LOAD
    min_disk_mb: int = DEFAULT_MIN_DISK_MB
    min_mem_mb: int = DEFAULT_MIN_MEM_MB


@dataclass
class Settings:
    """Everything the settings file says, already checked."""

    path: Path
    toolchain_paths: dict[str, str] = field(default_factory=dict)
    toolchain_prefix: dict[str, str] = field(default_factory=dict)
    toolchain_alias: dict[str, list[str]] = field(default_factory=dict)
    toolchain_wrapper: str | None = None
    make_flags: dict[str, str] = field(default_factory=dict)
    allow_missing: set[str] = field(default_factory=set)
    machines: list[MachineConfig] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fetch_url: str | None = None
    build_timeout: float | None = None  # seconds; 0 = no limit; None = the default
    skip_unchanged: bool = True  # [global] skip_unchanged: see build.skip
    keep_build_dirs_mb: int = DEFAULT_KEEP_MB  # [global] keep_build_dirs_mb: build.keep
    ccache: bool = True  # [global] ccache: ccache by default, see buildfleet.ccache

    def make_flags_for(self, target: str) -> list[str]:
        """The extra make arguments for board ``target`` (buildman's rules)."""
        return expand_make_flags(self.make_flags, target, where=str(self.path))

    def machine(self, name: str) -> MachineConfig | None:
        """The machine called ``name`` (case-sensitive), or None."""
        for mach in self.machines:
            if mach.name == name:
                return mach
        return None


def expand_make_flags(flags: Mapping[str, str], target: str,
                      where: str = "make-flags") -> list[str]:
    """Expand ``flags[target]`` into make arguments.

    ``${name}`` is replaced by ``flags[name]`` recursively (unknown names are
    empty), ``${target}`` by the board target; the text is then split on
    blanks, keeping double-quoted groups together and dropping the quotes.
    A reference cycle raises :class:`SettingsError`.
    """

    def expand(text: str, stack: tuple[str, ...]) -> str:
        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "target":
                return target
            if name in stack:
                chain = " -> ".join((*stack, name))
                raise SettingsError(f"{where}: [make-flags] reference cycle: {chain}")
            return expand(flags.get(name) or "", (*stack, name))

        return _VAR_RE.sub(repl, text)

    text = expand(flags.get(target) or "", (target,))
    args = [word.replace('"', "") for word in _ARG_RE.findall(text)]
    return [arg for arg in args if arg]


def _display(path: Path, home: Path) -> str:
    """``~/...`` for files under the home directory, as users write them."""
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


def _parse_error(exc: configparser.Error, shown: str) -> SettingsError:
    """One ``file:line: what`` message from a configparser error."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return SettingsError(f"{shown}:{exc.lineno}: line before any [section]: "
                             f"{exc.line.strip()!r}")
    if isinstance(exc, configparser.ParsingError):
        lineno, line = exc.errors[0]
        try:  # configparser stores the repr() of the offending line
            line = str(ast.literal_eval(line))
        except (ValueError, SyntaxError):
            pass
        return SettingsError(f"{shown}:{lineno}: bad line {line.strip()!r}")
    if isinstance(exc, configparser.DuplicateOptionError):
        return SettingsError(f"{shown}:{exc.lineno}: duplicate key {exc.option!r} "
                             f"in [{exc.section}]")
    if isinstance(exc, configparser.DuplicateSectionError):
        return SettingsError(f"{shown}:{exc.lineno}: duplicate section [{exc.section}]")
    return SettingsError(f"{shown}: {str(exc).splitlines()[0]}")


def _number(kind: type[int] | type[float], value: str | None, shown: str, section: str,
            key: str) -> int | float:
    """Parse a non-negative number or raise a SettingsError naming its place."""
    what = "a whole number" if kind is int else "a number"
    if value is None or not value.strip():
        raise SettingsError(f"{shown}: [{section}] {key}: no value given")
    try:
        number = kind(value)
    except ValueError:
        raise SettingsError(f"{shown}: [{section}] {key}: {value!r} is not {what}") from None
    if number < 0 or number != number:  # negative or NaN
        raise SettingsError(f"{shown}: [{section}] {key}: {value!r} must not be negative")
    return number


def _boolean(value: str | None, shown: str, section: str, key: str) -> bool:
    """Parse a yes/no value (configparser's words) or raise a SettingsError naming its place."""
    word = (value or "").strip().lower()
    if word in ("1", "yes", "true", "on"):
        return True
    if word in ("0", "no", "false", "off"):
        return False
    raise SettingsError(f"{shown}: [{section}] {key}: {value!r} is not true or false")


def _availability(items: Mapping[str, str | None], shown: str, section: str,
                  base: dict[str, float | int]) -> dict[str, float | int]:
    """busy_load / min_disk_mb / min_mem_mb from a section, over ``base``."""
    out = dict(base)
    for key, value in items.items():
        norm = key.replace("-", "_")
        if norm == "busy_load":
            out[norm] = float(_number(float, value, shown, section, key))
        elif norm in ("min_disk_mb", "min_mem_mb"):
            out[norm] = int(_number(int, value, shown, section, key))
    return out


def parse_settings(text: str, path: Path, shown: str | None = None) -> Settings:
    """Parse settings text; ``shown`` is how the file is named in messages."""
    shown = shown or str(path)
    parser = configparser.ConfigParser(allow_no_value=True, interpolation=None,
                                       strict=True, default_section="\0none")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text, source=shown)
    except configparser.Error as exc:
        raise _parse_error(exc, shown) from None

    settings = Settings(path=path)
    warn = settings.warnings.append

    def section(name: str) -> dict[str, str | None]:
        return dict(parser.items(name)) if parser.has_section(name) else {}

    for tag, value in section("toolchain").items():
        settings.toolchain_paths[tag] = value if value else tag
    for arch, value in section("toolchain-prefix").items():
        if value:
            settings.toolchain_prefix[arch] = value
        else:
            warn(f"{shown}: [toolchain-prefix] {arch}: no prefix given, ignored")
    for arch, value in section("toolchain-alias").items():
        if value and value.split():
            settings.toolchain_alias[arch] = value.split()
        else:
            warn(f"{shown}: [toolchain-alias] {arch}: no alias given, ignored")
    if parser.has_section("toolchain-wrapper"):
        wrappers = list(section("toolchain-wrapper").items())
        if wrappers:
            tag, value = wrappers[-1]
            settings.toolchain_wrapper = (value or "").strip() or None
            if settings.toolchain_wrapper is None:
                warn(f"{shown}: [toolchain-wrapper] {tag}: Wrapper not found (empty)")
    for target, value in section("make-flags").items():
        settings.make_flags[target] = value or ""

    glob = section("global")
    for key in glob:
        if key not in GLOBAL_KEYS and key.replace("-", "_") not in AVAILABILITY_KEYS:
            warn(f"{shown}: [global] unknown key {key!r} ignored")
    for word in (glob.get("allow-missing") or "").split():
        if word in ALLOW_MISSING_WORDS:
            settings.allow_missing.add(word)
        else:
            warn(f"{shown}: [global] allow-missing: unknown word {word!r} ignored "
                 f"(use {', '.join(ALLOW_MISSING_WORDS)})")
    settings.fetch_url = (glob.get("fetch-url") or "").strip() or None
    for key in ("build_timeout", "build-timeout"):
        if key in glob:
            settings.build_timeout = float(_number(float, glob[key], shown, "global", key))
    if "keep_build_dirs_mb" in glob:
        settings.keep_build_dirs_mb = int(_number(int, glob["keep_build_dirs_mb"], shown,
                                                  "global", "keep_build_dirs_mb"))
    if "skip_unchanged" in glob:
        settings.skip_unchanged = _boolean(glob["skip_unchanged"], shown, "global",
                                           "skip_unchanged")
    if "ccache" in glob:
        settings.ccache = _boolean(glob["ccache"], shown, "global", "ccache")
    defaults: dict[str, float | int] = {"busy_load": DEFAULT_BUSY_LOAD,
                                        "min_disk_mb": DEFAULT_MIN_DISK_MB,
                                        "min_mem_mb": DEFAULT_MIN_MEM_MB}
    defaults = _availability(glob, shown, "global", defaults)

    for name, value in section("machines").items():
        host = (value or "").strip() or name
        if not name or "/" in name or name.startswith(".") or any(c.isspace() for c in name):
            raise SettingsError(f"{shown}: [machines] bad machine name {name!r}")
        if any(c.isspace() for c in host):
            raise SettingsError(f"{shown}: [machines] {name}: bad host {host!r}")
        settings.machines.append(MachineConfig(name=name, host=host))

    known_machines = {m.name: m for m in settings.machines}
    for sect in parser.sections():
        if sect.startswith("machine:"):
            continue
        if sect not in FREE_SECTIONS and sect != "global":
            warn(f"{shown}: unknown section [{sect}] ignored")
    for mach in settings.machines:
        mach.busy_load = float(defaults["busy_load"])
        mach.min_disk_mb = int(defaults["min_disk_mb"])
        mach.min_mem_mb = int(defaults["min_mem_mb"])
    for sect in parser.sections():
        if not sect.startswith("machine:"):
            continue
        name = sect.split(":", 1)[1]
        items = section(sect)
        found = known_machines.get(name)
        for key in items:
            if key.replace("-", "_") not in MACHINE_KEYS:
                warn(f"{shown}: [{sect}] unknown key {key!r} ignored")
        values = _availability(items, shown, sect, defaults)
        max_boards = 0
        for key, value in items.items():
            if key.replace("-", "_") == "max_boards":
                max_boards = int(_number(int, value, shown, sect, key))
        if found is None:
            warn(f"{shown}: [{sect}] names no machine in [machines], ignored")
            continue
        found.max_boards = max_boards
        found.busy_load = float(values["busy_load"])
        found.min_disk_mb = int(values["min_disk_mb"])
        found.min_mem_mb = int(values["min_mem_mb"])
    return settings


def load_settings(path: Path | None = None, *, create: bool = True,
                  home: Path | None = None, stderr: TextIO | None = None) -> Settings:
    """Read the settings file.

    ``path`` None means ``<home>/.buildman``; when that is missing it is
    created with commented defaults (and a note on stderr) if ``create``,
    else empty settings are returned. A ``path`` given explicitly (``-G``)
    must exist.
    """
    home = home if home is not None else Path.home()
    err = stderr if stderr is not None else sys.stderr
    explicit = path is not None
    path = Path(path).expanduser() if path is not None else home / DEFAULT_NAME
    shown = str(path) if explicit else _display(path, home)
    if not path.exists():
        if explicit:
            raise SettingsError(f"{shown}: settings file not found")
        if not create:
            return Settings(path=path)
        print(f"No config file found {shown}", file=err)
        print("Creating one...", file=err)
        try:
            path.write_text(DEFAULT_FILE_TEXT, encoding="utf-8")
        except OSError as exc:
            settings = parse_settings(DEFAULT_FILE_TEXT, path, shown)
            settings.warnings.append(f"{shown}: cannot create: {exc.strerror}")
            return settings
        print("Add toolchains to it, or run 'buildfleet --fetch-arch all' to download "
              "some from kernel.org", file=err)
    if path.is_dir():
        raise SettingsError(f"{shown}: is a directory, not a settings file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{shown}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise SettingsError(f"{shown}: cannot read: {exc.strerror}") from None
    return parse_settings(text, path, shown)


def add_download_path(settings: Settings, path: str) -> None:
    """Record ``download = <path>`` under ``[toolchain]`` in the settings file.

    An existing ``download`` line is replaced (the key must be unique); the
    rest of the file, comments included, is kept as it is.
    """
    line_out = f"download = {path}"
    try:
        lines = settings.path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        lines = []
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{settings.path}: cannot read: {exc}") from None
    header = re.compile(r"^\s*\[([^\]]+)\]")
    key_re = re.compile(r"^download\s*[=:]")
    start = next((i for i, ln in enumerate(lines)
                  if (m := header.match(ln)) and m.group(1) == "toolchain"), None)
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += ["[toolchain]", line_out]
    else:
        end = next((i for i in range(start + 1, len(lines)) if header.match(lines[i])),
                   len(lines))
        existing = next((i for i in range(start + 1, end) if key_re.match(lines[i])), None)
        if existing is not None:
            lines[existing] = line_out
        else:
            insert = end
            while insert > start + 1 and not lines[insert - 1].strip():
                insert -= 1
            lines.insert(insert, line_out)
    try:
        settings.path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"{settings.path}: cannot write: {exc.strerror}") from None
    settings.toolchain_paths["download"] = path
