"""Finding cross compilers and turning one into a make environment.

A board's arch picks a toolchain; the toolchain gives make its
``CROSS_COMPILE`` and ``PATH``. Discovery follows buildman (``[toolchain-prefix]``
first, then ``[toolchain]`` directories, lowest priority number wins per arch)
and also scans the directories of ``PATH`` itself, so the host ``gcc``
(sandbox) and distribution cross compilers are found without buildman's slow
``other = /`` entry. Candidates are tested with ``--version`` in parallel with
a timeout, since a stale toolchain can hang and a big collection is slow.

``--fetch-arch`` lives here too: it downloads a kernel.org crosstool tarball
(the base URL is configurable so tests can use a local server), unpacks it
safely and records where it went in the settings file.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from buildfleet.errors import UserError
from buildfleet.model import Board
from buildfleet.settings import Settings

SANDBOX = "sandbox"

# Substrings of a gcc path, best first; priority = 4 + index (buildman's list).
SUFFIX_PRIORITY = ("-elf", "-unknown-linux-gnu", "-linux", "-none-linux-gnueabi",
                   "-none-linux-gnueabihf", "-uclinux", "-none-eabi", "-gentoo-linux-gnu",
                   "-linux-gnueabi", "-linux-gnueabihf", "-le-linux", "-uclinux")
PRIO_PREFIX_FILE = 0
PRIO_PREFIX_GCC = 1
PRIO_PREFIX_PATH = 2
PRIO_DOWNLOAD = 3
PRIO_SUFFIX_BASE = 4
PRIO_NO_SUFFIX = 15
# PATH is scanned after every configured location and ranks below all of them.
PRIO_PATH_BASE = 16

# Board archs that may use a toolchain for another arch, beyond [toolchain-alias].
BUILTIN_ALIASES: Mapping[str, tuple[str, ...]] = {"riscv": ("riscv64",)}

# '*gcc' programs that are not compilers for a target of their own.
NOT_TOOLCHAINS = frozenset({"c89-gcc", "c99-gcc"})

VERSION_TIMEOUT = 20.0

Log = Callable[[str], None]


class ToolchainError(UserError):
    """No usable toolchain, or a bad toolchain request (one-line message)."""


def split_gcc_name(name: str) -> tuple[str, str]:
    """(cross prefix, arch) from a gcc file name; no '-' means sandbox."""
    cross = name[: name.rfind("-") + 1]
    if not cross:
        return "", SANDBOX
    return cross, cross.split("-", 1)[0]


@dataclass(frozen=True)
class Toolchain:
    """One compiler: its gcc, the arch it builds for and its CROSS_COMPILE prefix."""

    gcc: Path
    arch: str
    cross: str
    priority: int
    wrapper: str = ""
    # A directory of links named as this toolchain's compilers pointing at
    # ccache (buildfleet.ccache): first on make's PATH, CROSS_COMPILE untouched.
    masquerade: str = ""

    @property
    def path(self) -> Path:
        """The directory holding gcc."""
        return self.gcc.parent

    @property
    def is_sandbox(self) -> bool:
        return self.arch == SANDBOX or not self.cross

    def _wrapper_prefix(self) -> str:
        return f"{self.wrapper} " if self.wrapper else ""

    def cross_compile(self, full_path: bool = False) -> str:
        """The CROSS_COMPILE value for make."""
        if full_path and self.cross:
            return self._wrapper_prefix() + str(self.path / self.cross)
        return self._wrapper_prefix() + self.cross

    def make_env(self, base_env: Mapping[str, str] | None = None, full_path: bool = False,
                 override_cc: str | None = None) -> dict[str, str]:
        """The environment to run make (or gcc) with for this toolchain.

        ``override_cc`` (``-O``) means make gets CC itself: no CROSS_COMPILE
        and PATH as it is. ``full_path`` (``-p``) puts the directory into
        CROSS_COMPILE instead of PATH. Only the plain case can go through
        ccache's ``masquerade`` directory, which needs the compiler found by
        name on PATH: the other two build without ccache.
        """
        env = dict(os.environ if base_env is None else base_env)
        if override_cc:
            env.pop("CROSS_COMPILE", None)
        elif full_path:
            env["CROSS_COMPILE"] = self.cross_compile(full_path=True)
        else:
            env["CROSS_COMPILE"] = self.cross_compile()
            env["PATH"] = _path_with(env.get("PATH", ""), str(self.path),
                                     env.get("VIRTUAL_ENV", ""))
            if self.masquerade:
                env["PATH"] = self.masquerade + os.pathsep + env["PATH"]
        env["LC_ALL"] = "C"
        return env

    def tool(self, name: str) -> str:
        """A binutils program (``size``, ``objdump``...) of this toolchain.

        Cross tools are given by absolute path, so they work in any
        environment; the sandbox uses the plain name, found on PATH.
        """
        if self.is_sandbox:
            return name
        return str(self.path / f"{self.cross}{name}")

    def env_prefix(self) -> str:
        """What ``-A`` prints: wrapper, directory and prefix; empty for sandbox."""
        if self.is_sandbox:
            return ""
        return self._wrapper_prefix() + str(self.path / self.cross)

    def toolchain_file(self, return_code: int) -> str:
        """Text of the output tree's ``toolchain`` file for a build with this rc."""
        return (f"gcc {self.gcc}\npath {self.path}\ncross {self.cross}\n"
                f"arch {self.arch}\n{return_code}")


def _path_with(path: str, directory: str, venv: str) -> str:
    """PATH with ``directory`` in front (after a Python venv's own entries)."""
    parts = [p for p in path.split(os.pathsep) if p] if path else []
    at = 0
    if venv:
        venv_parts = [i for i, p in enumerate(parts)
                      if p == venv or p.startswith(venv.rstrip("/") + "/")]
        if venv_parts:
            at = venv_parts[-1] + 1
    parts.insert(at, directory)
    return os.pathsep.join(parts)


@dataclass
class Toolchains:
    """The toolchains found, one per arch, plus the aliases used to select them."""

    aliases: dict[str, list[str]] = field(default_factory=dict)
    wrapper: str = ""
    ccache: str = ""  # the ccache the toolchains masquerade through ("" none)
    _by_arch: dict[str, Toolchain] = field(default_factory=dict, init=False)

    def add(self, tc: Toolchain, *, verbose: bool = False, log: Log | None = None) -> bool:
        """Keep ``tc`` if its arch has none yet or a worse (higher) priority."""
        old = self._by_arch.get(tc.arch)
        if old is not None and tc.priority >= old.priority:
            if verbose and log:
                log(f"Toolchain '{tc.gcc}' at priority {tc.priority} will be ignored "
                    f"because another toolchain for arch '{tc.arch}' has priority "
                    f"{old.priority}")
            return False
        if old is not None and verbose and log:
            log(f"Toolchain '{old.gcc}' at priority {old.priority} will be ignored "
                f"because another toolchain for arch '{tc.arch}' has priority {tc.priority}")
        self._by_arch[tc.arch] = tc
        return True

    def select(self, arch: str) -> Toolchain:
        """The toolchain for a board arch: aliases first, then the arch itself."""
        for alias in self.aliases.get(arch, ()):
            if alias in self._by_arch:
                return self._by_arch[alias]
        tc = self._by_arch.get(arch)
        if tc is None:
            raise ToolchainError(f"No tool chain found for arch '{arch}'")
        return tc

    def archs(self) -> set[str]:
        """Every board arch that :meth:`select` can serve."""
        found = set(self._by_arch)
        found |= {key for key, alts in self.aliases.items()
                  if any(a in self._by_arch for a in alts)}
        return found

    def items(self) -> list[tuple[str, Toolchain]]:
        """(arch, toolchain) pairs for the toolchains found, sorted by arch."""
        return sorted(self._by_arch.items())

    def __len__(self) -> int:
        return len(self._by_arch)

    def __contains__(self, arch: object) -> bool:
        return isinstance(arch, str) and arch in self.archs()

    def with_wrapper(self, wrapper: str, ccache: str = "",
                     log: Log | None = None) -> Toolchains:
        """The same toolchains, every one behind ``wrapper`` ("" for none) in
        CROSS_COMPILE, or else through ``ccache`` (a program; "" for none) by
        a masquerade directory of its own. A toolchain whose directory cannot
        be made builds without ccache (``log`` is told): a default never
        makes a build fail."""
        from buildfleet.ccache import masquerade_dir, masquerade_names

        out = Toolchains(aliases=self.aliases, wrapper=wrapper,
                         ccache="" if wrapper else ccache)
        for _arch, tc in self.items():
            links = ""
            if out.ccache:
                try:
                    links = str(masquerade_dir(out.ccache, masquerade_names(tc.cross, tc.path)))
                except OSError as exc:
                    if log is not None:
                        log(f"cannot make ccache's links for {tc.gcc} ({exc}); "
                            "building without ccache")
            out.add(dataclasses.replace(tc, wrapper=wrapper, masquerade=links))
        return out

    def to_map(self) -> dict[str, str]:
        """arch -> gcc path, as told to workers."""
        return {arch: str(tc.gcc) for arch, tc in self.items()}

    @classmethod
    def from_map(cls, data: Mapping[str, str], *, aliases: Mapping[str, Sequence[str]] | None
                 = None, wrapper: str = "") -> Toolchains:
        """Toolchains from an arch -> gcc map (``~`` expanded), arch forced to the key."""
        tcs = cls(aliases=merged_aliases(aliases or {}), wrapper=wrapper)
        for arch, gcc in data.items():
            if not isinstance(arch, str) or not isinstance(gcc, str) or not gcc:
                raise ToolchainError(f"bad toolchain entry {arch!r}: {gcc!r}")
            path = Path(os.path.expanduser(gcc))
            cross, _ = split_gcc_name(path.name)
            tcs.add(Toolchain(gcc=path, arch=arch, cross=cross, priority=0, wrapper=wrapper))
        return tcs


def merged_aliases(configured: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """[toolchain-alias] entries, then the built-in ones not already listed."""
    out = {key: list(alts) for key, alts in configured.items()}
    for key, alts in BUILTIN_ALIASES.items():
        have = out.setdefault(key, [])
        have += [a for a in alts if a not in have]
    return out


@dataclass(frozen=True)
class _Candidate:
    gcc: Path
    priority: int
    arch: str | None  # forced by [toolchain-prefix]


def _suffix_priority(path: str, base: int) -> int:
    for index, suffix in enumerate(SUFFIX_PRIORITY):
        if suffix in path:
            return base + index
    return base + (PRIO_NO_SUFFIX - PRIO_SUFFIX_BASE)


def _is_compiler_name(name: str) -> bool:
    """``gcc`` or ``<prefix>-gcc``, not a wrapper and not a doubled prefix."""
    if name in NOT_TOOLCHAINS or not (name == "gcc" or name.endswith("-gcc")):
        return False
    cross = name[:-3]
    half = len(cross) // 2
    return not (cross and len(cross) % 2 == 0 and cross[:half] == cross[half:])


def gccs_in(directory: Path) -> list[Path]:
    """Executable ``*gcc`` files in one directory, sorted by name."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return []
    out = []
    for entry in entries:
        if not _is_compiler_name(entry.name):
            continue
        try:
            if entry.is_file() and os.access(entry.path, os.X_OK):
                out.append(Path(entry.path))
        except OSError:
            continue
    return out


def _scan_dir(root: Path, priority_for: Callable[[Path], int], verbose: bool,
              log: Log) -> list[_Candidate]:
    found = []
    for sub in (".", "bin", "usr/bin"):
        directory = root / sub if sub != "." else root
        if verbose:
            log(f"      - looking in '{directory}'")
        for gcc in gccs_in(directory):
            if verbose:
                log(f"         - found '{gcc}'")
            found.append(_Candidate(gcc, priority_for(gcc), None))
    return found


def _prefix_candidates(arch: str, prefix: str, verbose: bool, log: Log,
                       search_path: Sequence[str]) -> list[_Candidate]:
    expanded = os.path.expanduser(prefix)
    if verbose:
        log(f"   - scanning prefix '{expanded}'")
    if os.path.isfile(expanded):
        return [_Candidate(Path(expanded), PRIO_PREFIX_FILE, arch)]
    if os.path.isfile(expanded + "gcc"):
        return [_Candidate(Path(expanded + "gcc"), PRIO_PREFIX_GCC, arch)]
    found = []
    if "/" not in expanded:
        for directory in search_path:
            gcc = Path(directory) / f"{expanded}gcc"
            if gcc.is_file():
                found.append(_Candidate(gcc, PRIO_PREFIX_PATH, arch))
    if not found:
        raise ToolchainError(f"No tool chain found for prefix '{expanded}gcc'")
    return found


def test_gcc(tc: Toolchain) -> tuple[bool, str]:
    """Run ``gcc --version``; (ok, output or error)."""
    cmd = [str(tc.gcc), "--version"]
    try:
        proc = subprocess.run(cmd, env=tc.make_env(), capture_output=True, text=True,
                              errors="replace", timeout=VERSION_TIMEOUT,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {VERSION_TIMEOUT:.0f}s"
    except OSError as exc:
        return False, str(exc)
    return proc.returncode == 0, (proc.stdout + proc.stderr).strip()


def test_toolchains(candidates: Sequence[Toolchain]) -> list[tuple[bool, str]]:
    """``--version`` of each toolchain, run in parallel; results in order."""
    if not candidates:
        return []
    workers = min(8, len(candidates))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(test_gcc, candidates))


def scan_toolchains(settings: Settings, *, use_path: bool = True, verbose: bool = False,
                    log: Log | None = None, env: Mapping[str, str] | None = None,
                    errors: list[str] | None = None) -> Toolchains:
    """Find and test every toolchain the settings (and PATH) point at.

    A ``[toolchain-prefix]`` entry that matches nothing raises
    ToolchainError, or is appended to ``errors`` when a list is given.
    """
    say: Log = log or (lambda _msg: None)
    environ = os.environ if env is None else env
    search_path = list(dict.fromkeys(p for p in environ.get("PATH", "").split(os.pathsep) if p))
    wrapper = settings.toolchain_wrapper or ""
    if verbose:
        say("Scanning for tool chains")

    candidates: list[_Candidate] = []
    for arch, prefix in settings.toolchain_prefix.items():
        try:
            candidates += _prefix_candidates(arch, prefix, verbose, say, search_path)
        except ToolchainError as exc:
            if errors is None:
                raise
            errors.append(str(exc))

    for tag, pattern in settings.toolchain_paths.items():
        expanded = os.path.expanduser(pattern)
        roots = sorted(glob.glob(expanded)) if glob.has_magic(expanded) else [expanded]
        for root in roots:
            if verbose:
                say(f"   - scanning path '{root}'")
            if tag == "download":
                candidates += _scan_dir(Path(root), lambda _g: PRIO_DOWNLOAD, verbose, say)
            else:
                candidates += _scan_dir(
                    Path(root), lambda g: _suffix_priority(str(g), PRIO_SUFFIX_BASE),
                    verbose, say)

    if use_path:
        for directory in search_path:
            if verbose:
                say(f"   - scanning PATH directory '{directory}'")
            for gcc in gccs_in(Path(directory)):
                if verbose:
                    say(f"         - found '{gcc}'")
                prio = _suffix_priority(str(gcc), PRIO_PATH_BASE)
                candidates.append(_Candidate(gcc, prio, None))

    # The same file seen twice for the same arch (through a symlinked
    # directory, or in a configured path and on PATH) is tested once, at its
    # best priority.
    unique: dict[tuple[str, str, str], Toolchain] = {}
    for cand in candidates:
        cross, parsed_arch = split_gcc_name(cand.gcc.name)
        tc = Toolchain(gcc=cand.gcc, arch=cand.arch or parsed_arch, cross=cross,
                       priority=cand.priority, wrapper=wrapper)
        key = (os.path.realpath(cand.gcc.parent), cand.gcc.name, tc.arch)
        if key not in unique or tc.priority < unique[key].priority:
            unique[key] = tc

    tcs = Toolchains(aliases=merged_aliases(settings.toolchain_alias), wrapper=wrapper)
    pending = list(unique.values())
    for tc, (ok, output) in zip(pending, test_toolchains(pending), strict=True):
        if verbose:
            if ok:
                say(f"Tool chain test:  OK, arch='{tc.arch}', priority {tc.priority}")
            else:
                say("Tool chain test:  BAD")
                say(f"Command: {tc.gcc} --version")
                say(output)
        if ok:
            tcs.add(tc, verbose=verbose, log=say)
    return tcs


def list_toolchains_text(tcs: Toolchains) -> str:
    """buildman's ``--list-tool-chains`` listing (without the scan detail)."""
    lines = [f"List of available toolchains ({len(tcs)}):"]
    if len(tcs):
        lines += [f"{arch:<10}: {tc.gcc}" for arch, tc in tcs.items()]
    else:
        lines.append("None")
    return "\n".join(lines) + "\n\n"


def run_list_toolchains(verbose: bool, settings: Settings) -> int:
    """``--list-tool-chains``: scan (verbosely with ``-v``), print the list."""
    errors: list[str] = []
    tcs = scan_toolchains(settings, verbose=verbose,
                          log=print, errors=errors)
    for msg in errors:
        print(f"Error: {msg}")
    text = list_toolchains_text(tcs)
    if sys.stdout.isatty():
        head, rest = text.split("\n", 1)
        text = f"\033[34m{head}\033[0m\n{rest}"
    sys.stdout.write(text)
    return 1 if errors else 0


def _boards_toolchains(boards: Iterable[Board], tcs: Toolchains) -> set[Toolchain]:
    chosen = {tcs.select(board.arch) for board in boards}
    if not chosen:
        raise ToolchainError("No boards selected")
    return chosen


def print_prefix(boards: Iterable[Board], tcs: Toolchains) -> str:
    """``-A``: the CROSS_COMPILE (with directory) shared by the boards."""
    chosen = _boards_toolchains(boards, tcs)
    if len(chosen) != 1:
        raise ToolchainError("Supplied boards must share one toolchain")
    return chosen.pop().env_prefix()
