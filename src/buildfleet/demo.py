"""Generate a small U-Boot-like source tree with a known git history.

Tests, benchmarks and ``buildfleet --demo`` need a tree that speaks U-Boot's
build interface (Kconfig, defconfigs, MAINTAINERS, ``make O= <t>defconfig``,
``make CROSS_COMPILE=``) and compiles real C into real ELF files, but builds in
well under a second per board. Its Makefile compiles in ``O=`` as kbuild does
(``../common/main.c`` when ``O=`` is a direct child of the tree, absolute
names otherwise), so the tests meet the path forms a real tree prints. The
history on branch ``demo`` is designed so that each kind of outcome a summary
reports happens on known boards at known commits; :class:`DemoTree` records
which, so callers can assert on them.

Commit numbers in :class:`DemoTree` index the branch's own commits (oldest
first, the upstream commit not counted). A ``-b demo`` build also builds the
upstream commit, as sequence 0, so the tree's commit ``n`` is built as
``Commit.sequence`` ``n + 1``, in the output directory numbered ``n + 2``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from buildfleet.demo_sources import (
    CPU,
    CROSS_PREFIX,
    KCONFIG_ARCH,
    TINY_SIZE_LIMIT,
    VENDOR_SOC,
    VENDOR_STATUS,
    DemoBoard,
    arch_dir,
    board_header,
    board_source_c,
    buildman_file,
    bulk_c,
    defconfig_text,
    feature_x_c,
    fragment_files,
    kconfig_arch,
    kconfig_board,
    kconfig_name,
    kconfig_top,
    maintainers_board,
    maintainers_top,
    person,
    table_c,
)
from buildfleet.errors import UserError

CONFIG_OPTION = "CONFIG_SYS_MALLOC_LEN"
CONFIG_VALUES = ("0x100000", "0x200000")
BASE_TABLE = 8
GROWN_TABLE = 40
LOOP_SYMBOL = "DEMO_RAM_BANKS"
BASE_DATE = 1704067200  # 2024-01-01 00:00:00 UTC; commits are an hour apart
SUBJECTS = (
    "drivers: demo: grow the lookup table; acme_arm2: larger malloc",
    "common: feature-x: report the status",
    "board: initech: rv2: switch to the new clock API",
    "board: initech: rv2: fix the clock API build",
)


class DemoError(UserError):
    """The demo tree cannot be made as asked."""


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
    link_failure_target: str | None = None  # fails after linking u-boot, every commit
    orphan_target: str | None = None  # MAINTAINERS: status Orphan (no maintainer)
    # A branch off upstream whose one commit adds an int Kconfig symbol with a
    # prompt and no default: configuring any board at it asks forever.
    loop_branch: str = "kconfig-loop"
    loop_symbol: str = LOOP_SYMBOL

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
           include_of: str = "", tpl: bool = False, size_limit: int = 0) -> DemoBoard:
        return DemoBoard(target=target, arch=arch, cpu=CPU[arch], soc=VENDOR_SOC[vendor],
                         vendor=vendor, cross_compile=CROSS_PREFIX[arch], has_spl=spl,
                         table=table, feature_x=fx, include_of=include_of, has_tpl=tpl,
                         size_limit=size_limit)
    return [
        mk("sandbox", "sandbox", "", False, True, False),
        mk("acme_arm1", "arm", "acme", True, True, True),
        mk("acme_arm2", "arm", "acme", False, False, False),
        mk("globex_a64", "aarch64", "globex", True, True, True, tpl=True),
        mk("globex_a64b", "aarch64", "globex", False, True, False, include_of="globex_a64"),
        mk("initech_rv1", "riscv64", "initech", True, True, False),
        mk("initech_rv2", "riscv64", "initech", False, False, False),
        mk("umbrella_arm3", "arm", "umbrella", False, False, True),
        # Only in trees of 9 boards or more: it fails at every commit after
        # linking u-boot (u-boot.bin over the board's size limit).
        mk("hooli_arm4", "arm", "hooli", False, False, False, size_limit=TINY_SIZE_LIMIT),
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
    out = []
    for brd in boards:
        # As buildman reads MAINTAINERS: the board's own file is read after the
        # top-level one (N: ^globex) and its record replaces that one; an
        # orphan has no maintainer, so boards.cfg says '-' for both columns.
        orphan = VENDOR_STATUS.get(brd.vendor, "Maintained").startswith("Orphan")
        out.append(DemoBoard(**{**brd.__dict__,
                                "maintainers": () if orphan else (person(brd.vendor),),
                                "status": "" if orphan else "Active"}))
    return out


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")


# Fixed files of the demo tree (its build interface: Makefile, config script,
# common C sources), shipped as package data under ``demo_template/``.
TEMPLATE_FILES = ("Makefile", "scripts/kconfig/conf.py", "scripts/kconfig/kparse.py",
                  "scripts/build_api.py",
                  "include/demo.h", "common/main.c",
                  "common/spl.c", "common/version.c", "drivers/serial.c", "env/common.c",
                  "tools/envcrc.c", "arch/u-boot-pie.lds", "drivers/demo_turbo.c")


def _template(rel: str) -> str:
    return (resources.files("buildfleet") / "demo_template" / rel).read_text(encoding="utf-8")


def _base_files(boards: list[DemoBoard]) -> dict[str, str]:
    extra = tuple(dict.fromkeys(b.arch for b in boards if b.arch not in KCONFIG_ARCH))
    files = {rel: _template(rel) for rel in TEMPLATE_FILES}
    files.update({
        "Kconfig": kconfig_top(extra),
        "MAINTAINERS": maintainers_top(boards),
        ".gitignore": _template("gitignore"),
        "README": "A small U-Boot-like tree made by buildfleet.demo for tests and demos.\n",
        "common/feature_x.c": feature_x_c(False),
        "drivers/demo_table.c": table_c(BASE_TABLE),
        "configs/demo.buildman": buildman_file(),
        **fragment_files(),
    })
    by_arch: dict[str, list[DemoBoard]] = {}
    for brd in boards:
        by_arch.setdefault(kconfig_name(brd.arch), []).append(brd)
    for kname, arch_boards in by_arch.items():
        files[f"arch/{arch_dir(kname)}/Kconfig"] = kconfig_arch(kname, arch_boards)
    for idx, brd in enumerate(boards):
        files[f"{brd.board_dir}/Kconfig"] = kconfig_board(brd)
        files[f"{brd.board_dir}/board.c"] = board_source_c(brd.config_name)
        files[f"{brd.board_dir}/MAINTAINERS"] = maintainers_board(brd)
        files[f"include/configs/{brd.config_name}.h"] = board_header(brd, idx + 1)
        files[f"configs/{brd.target}_defconfig"] = defconfig_text(brd, CONFIG_VALUES[0])
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
                   extra_archs: Mapping[str, str] | None = None,
                   bulk: Mapping[str, int] | None = None) -> DemoTree:
    """Write the demo tree at ``path`` (new or empty) and return what it holds.

    ``extra_archs`` maps an arch no standard board uses to its cross prefix
    (e.g. ``{"m68k": "/opt/m68k/bin/m68k-linux-gnu-"}``): each adds one plain
    board, :func:`extra_target` of the arch, present from the first commit.
    ``bulk`` maps a target to a number of extra source files in its board
    directory (``bulk/``), making it much longer to build than the others.
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
    for target, count in (bulk or {}).items():
        if target not in names:
            raise DemoError(f"bulk board {target!r} is not one of the tree's boards")
        board_dir = next(b for b in brds if b.target == target).board_dir
        _write(path, {f"{board_dir}/bulk/bulk_{i:03d}.c": bulk_c(i) for i in range(count)})
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
            files["drivers/demo_table.c"] = table_c(GROWN_TABLE)
            files[f"configs/{config_target}_defconfig"] = defconfig_text(cfg_board,
                                                                         CONFIG_VALUES[1])
        elif upto == 1:
            files["common/feature_x.c"] = feature_x_c(True)
        elif upto == 2:
            files[board_c] = board_source_c(broken_board.config_name, broken=True)
        elif upto == 3:
            files[board_c] = board_source_c(broken_board.config_name, fixed=True)
        else:
            entries += 2
            files["drivers/demo_table.c"] = table_c(entries)
        subject = SUBJECTS[upto] if upto < len(SUBJECTS) else \
            f"drivers: demo: add table entries (step {upto + 1})"
        _write(path, files)
        when += 3600
        hashes.append(_commit(path, subject, f"Demo commit {upto + 1}.", when))
        subjects.append(subject)

    _git(path, "checkout", "-q", "-b", "kconfig-loop", "main")
    _git(path, "config", "branch.kconfig-loop.remote", ".")
    _git(path, "config", "branch.kconfig-loop.merge", "refs/heads/main")
    _write(path, {"Kconfig": _base_files(brds)["Kconfig"]
                  + f'\nconfig {LOOP_SYMBOL}\n\tint "Number of RAM banks"\n'})
    _commit(path, "Kconfig: add the number of RAM banks",
            "No default: configuring asks for it.", when + 3600)
    _git(path, "checkout", "-q", "demo")

    return DemoTree(
        path=path, boards=brds, subjects=subjects, hashes=hashes,
        growth_targets=[b.target for b in brds if b.table], growth_upto=0,
        warning_targets=[b.target for b in brds if b.feature_x],
        warning_upto=1 if commits > 1 else None,
        broken_target=broken, broken_upto=2 if commits > 2 else None,
        fixed_upto=3 if commits > 3 else None,
        config_target=config_target, config_upto=0, env_target=config_target,
        link_failure_target=next((b.target for b in brds if b.size_limit), None),
        orphan_target=next((b.target for b in brds
                            if VENDOR_STATUS.get(b.vendor, "").startswith("Orphan")), None))


@dataclass(frozen=True)
class BranchCommit:
    """One commit of a branch :func:`edit_branch` makes: files written whole."""

    subject: str
    files: Mapping[str, str]  # path in the tree -> its new text
    body: str = "A demo edit."


def demo_file(tree: DemoTree, rel: str, rev: str = "main") -> str:
    """The text of file ``rel`` of the demo tree at ``rev``, byte for byte."""
    out = subprocess.run(["git", "cat-file", "blob", f"{rev}:{rel}"], cwd=tree.path,
                         capture_output=True, check=False)
    if out.returncode:
        raise DemoError(f"no {rel} at {rev} in {tree.path}: "
                        f"{out.stderr.decode(errors='replace').strip()}")
    return out.stdout.decode("utf-8")


def edit_branch(tree: DemoTree, name: str, commits: Sequence[BranchCommit],
                start: str = "main") -> list[str]:
    """Add branch ``name`` off ``start``, one commit per :class:`BranchCommit`.

    What tests need to put a warning, an error or its fix in a known file at a
    known commit, as a real branch under review does (build it with ``-b
    name``). The branch tracks ``start``; the commits' hashes are returned,
    oldest first, and ``tree.branch`` is checked out again.
    """
    _git(tree.path, "checkout", "-q", "-b", name, start)
    _git(tree.path, "config", f"branch.{name}.remote", ".")
    _git(tree.path, "config", f"branch.{name}.merge", f"refs/heads/{start}")
    hashes = []
    when = BASE_DATE + 3600 * 1000
    for commit in commits:
        _write(tree.path, dict(commit.files))
        when += 3600
        hashes.append(_commit(tree.path, commit.subject, commit.body, when))
    _git(tree.path, "checkout", "-q", tree.branch)
    return hashes


def touch_branch(tree: DemoTree, name: str, paths: list[str], start: str = "main") -> list[str]:
    """Add branch ``name`` off ``start`` with one commit per path, each editing that file.

    An edit appends a comment line (``/* ... */`` to C sources and headers,
    ``# ...`` to anything else), so the build's output cannot change: what
    tests and benchmarks of skipping need (a series whose commits each touch
    one board, or a file every board reads). The branch tracks ``start``; the
    commits' hashes are returned, oldest first.
    """
    texts: dict[str, str] = {}
    commits = []
    for step, rel in enumerate(paths):
        c_like = Path(rel).suffix in (".c", ".h", ".S", ".dts", ".dtsi")
        note = f"touched at step {step + 1}"
        line = f"/* {note} */\n" if c_like else f"# {note}\n"
        texts[rel] = (texts[rel] if rel in texts else demo_file(tree, rel, start)) + line
        commits.append(BranchCommit(f"{rel}: {note}", {rel: texts[rel]}, "A comment only."))
    return edit_branch(tree, name, commits, start)


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
