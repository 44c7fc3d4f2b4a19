"""The argument parser: buildman's flags, short and long, plus the fleet ones.

Kept apart from ``cli.py`` (which decides what to run) so that the worker,
the manual and the tests can build the parser without running anything.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, TypeVar

from buildfleet import __version__

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

EPILOG = "[list of target/arch/cpu/board/vendor/soc to build]"


def _add_selection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("board selection")
    g.add_argument("terms", nargs="*", help="selection terms: regexes matched at the start "
                   "of a board's target, arch, cpu, board, vendor, soc or config; '&' joins")
    g.add_argument("--boards", action="append", default=[], metavar="LIST",
                   help="comma-separated exact target names (added to the terms)")
    g.add_argument("-x", "--exclude", action="append", default=[], metavar="LIST",
                   help="comma-separated terms whose boards are left out")
    g.add_argument("-X", "--extend", action="store_true",
                   help="also build the extended boards of configs/*.buildman (named "
                   "'<name>,<base target>')")
    g.add_argument("-R", "--regen-board-list", metavar="FILE",
                   help="write the board list to FILE ('-' for the default) and exit")
    g.add_argument("--maintainer-check", action="store_true",
                   help="check boards against MAINTAINERS, print warnings and exit")
    g.add_argument("--full-check", action="store_true",
                   help="like --maintainer-check, also checking TARGET_xxx options")
    g.add_argument("-A", "--print-prefix", action="store_true",
                   help="print CROSS_COMPILE for the selected boards and exit")
    g.add_argument("--print-arch", action="store_true",
                   help="print ARCH for the selected boards and exit")


def _add_build(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("building")
    g.add_argument("-b", "--branch", help="branch (or range a..b) to build; default: the "
                   "current source")
    g.add_argument("-c", "--count", type=int, default=-1, help="build the top COUNT commits")
    g.add_argument("--step", type=int, default=1,
                   help="build every STEP-th commit (0: only the first and last)")
    g.add_argument("-T", "--threads", type=int, default=None,
                   help="build slots on this machine (default: CPUs, at most one per board)")
    g.add_argument("-j", "--jobs", type=int, default=None, help="make -j per slot")
    g.add_argument("-f", "--force-build", action="store_true",
                   help="build again even where a result exists")
    g.add_argument("-F", "--force-build-failures", action="store_true",
                   help="build again where the previous result failed or warned")
    g.add_argument("-C", "--force-reconfig", action="store_true",
                   help="configure at every commit (no incremental builds)")
    g.add_argument("-Z", "--no-kconfig-check", action="store_true",
                   help="do not reconfigure when Kconfig files changed")
    g.add_argument("-Q", "--quick", action="store_true",
                   help="do not reconfigure and retry after a failed incremental build")
    g.add_argument("-m", "--mrproper", action="store_true",
                   help="run 'make mrproper' before every configure")
    g.add_argument("--no-jobserver", action="store_true",
                   help="give each board's make its own -j instead of one shared "
                        "make jobserver per machine")
    g.add_argument("--no-skip", action="store_true",
                   help="build every commit, even where a commit cannot change a board's "
                        "result (by default that result is copied from the commit before)")
    g.add_argument("--no-ccache", action="store_true",
                   help="do not build through ccache (by default it is used on every "
                        "machine that has it, unless a [toolchain-wrapper] is set)")
    g.add_argument("--fallback-mrproper", action="store_true",
                   help="run 'make mrproper' only in the retry after a failure")
    g.add_argument("--config-only", action="store_true",
                   help="configure only, then 'make cfg'")
    g.add_argument("--build-timeout", type=_seconds, metavar="SECONDS",
                   help="stop a board's build at one commit after this long and record a "
                        "timeout error (0: no limit; default [global] build_timeout or 7200)")
    g.add_argument("--target", help="make this target instead of the default")
    g.add_argument("-k", "--keep-outputs", action="store_true",
                   help="copy the binaries into each result directory")
    g.add_argument("-w", "--work-in-output", action="store_true",
                   help="build in the output directory itself (one board, one commit; needs -o "
                   "unless -i)")
    g.add_argument("-i", "--in-tree", action="store_true", help="build in the source tree (no O=)")
    g.add_argument("-P", "--per-board-out-dir", action="store_true",
                   help="one O= directory per board instead of per slot")
    g.add_argument("-N", "--no-subdirs", action="store_true",
                   help="no branch or 'current' subdirectory in the output directory")
    g.add_argument("-o", "--output-dir", action="append", default=None, metavar="DIR",
                   help="base of all output (default: ..); with -s, give it once per "
                   "directory to read several (CI shards) as one run")
    g.add_argument("-g", "--git", default=".", help="directory holding the git repository")
    g.add_argument("-E", "--warnings-as-errors", action="store_true",
                   help="treat compiler warnings as errors (KCFLAGS=-Werror)")
    g.add_argument("-L", "--no-lto", action="store_true", help="build with NO_LTO=1")
    g.add_argument("-M", "--allow-missing", action="store_true", default=None,
                   help="allow missing binary blobs (BINMAN_ALLOW_MISSING=1)")
    g.add_argument("--no-allow-missing", action="store_true",
                   help="fail on missing blobs, whatever the settings say")
    g.add_argument("-r", "--reproducible-builds", action="store_true",
                   help="build reproducibly (SOURCE_DATE_EPOCH=0)")
    g.add_argument("-V", "--verbose-build", action="store_true",
                   help="run make with V=1 and keep the commands in 'log'")
    g.add_argument("-a", "--adjust-cfg", action="append", default=[], metavar="CFG",
                   help="change Kconfig options before building, then check they held: X, ~X, "
                   "X=val, X=\"str\", with or without CONFIG_; comma lists; repeatable")
    g.add_argument("--fragments", metavar="LIST",
                   help="comma-separated config fragments (e.g. acpi.config) for make "
                   "after the defconfig")
    g.add_argument("--dtc-skip", action="store_true",
                   help="use the system dtc (DTC=<path>) instead of building one")
    g.add_argument("-O", "--override-toolchain", metavar="CC",
                   help="compiler for sandbox builds (HOSTCC=CC CC=CC)")
    g.add_argument("-p", "--full-path", action="store_true",
                   help="full path in CROSS_COMPILE, PATH left alone")
    g.add_argument("--process-limit", type=int, default=0,
                   metavar="N", help="first wait until fewer than N buildfleet runs with "
                   "--process-limit are active on this machine")
    g.add_argument("--shard", metavar="K/N",
                   help="build only shard K of N of the selected boards (disjoint, "
                   "balanced by expected cost; for N parallel CI jobs)")
    g.add_argument("--costs", metavar="FILE",
                   help="board costs measured by an earlier run (from --export-costs): "
                   "balance shards and order the build by them")
    g.add_argument("-n", "--dry-run", action="store_true",
                   help="say what would be built, build nothing")
    g.add_argument("--demo", nargs="?", const="", default=None, metavar="DIR",
                   help="generate the demo tree (in DIR, default a temporary directory) and "
                   "build its 'demo' branch")


def _add_display(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("summaries and display")
    g.add_argument("-s", "--summary", action="store_true",
                   help="summarise the results already in the output tree, build nothing")
    g.add_argument("-z", "--build-summary", action="store_true",
                   help="show the summary after building")
    g.add_argument("-e", "--show_errors", action="store_true", help="show error and warning lines")
    g.add_argument("-l", "--list-error-boards", action="store_true",
                   help="list the boards beside each error line")
    g.add_argument("-S", "--show-sizes", action="store_true", help="show image size changes")
    g.add_argument("-d", "--detail", action="store_true", help="size changes per board")
    g.add_argument("-B", "--bloat", action="store_true", help="size changes per function")
    g.add_argument("-K", "--show-config", action="store_true", help="show config changes")
    g.add_argument("--preserve-config-y", action="store_true",
                   help="keep '=y' in config values (and compare more config files)")
    g.add_argument("-U", "--show-environment", action="store_true",
                   help="show default-environment changes")
    g.add_argument("-u", "--show_unknown", action="store_true",
                   help="show boards whose result is unknown")
    g.add_argument("--show-not-built", action="store_true", help="list boards not built")
    g.add_argument("-y", "--filter-dtb-warnings", action="store_true", help="drop dtc warnings")
    g.add_argument("-Y", "--filter-migration-warnings", action="store_true",
                   help="drop migration warning blocks")
    g.add_argument("-I", "--ide", action="store_true",
                   help="IDE mode: raw errors on stderr, no progress or summary")
    g.add_argument("-v", "--verbose", action="store_true", help="say more while working")
    g.add_argument("-W", "--ignore-warnings", action="store_true",
                   help="exit 0, not 101, when there are only warnings")
    g.add_argument("--export-costs", metavar="FILE",
                   help="with -s: write the build times in the output tree(s) as a cost "
                   "file for --costs")
    g.add_argument("--report", metavar="FILE.json", help="write a JSON report of the run")
    g.add_argument("--junit", metavar="FILE.xml", help="write a JUnit XML report of the run")
    g.add_argument("--html", metavar="DIR", help="write a static HTML report into DIR")


def _add_toolchains(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("toolchains")
    g.add_argument("--list-tool-chains", action="store_true",
                   help="list the toolchains found and exit")
    g.add_argument("--fetch-arch", metavar="ARCH",
                   help="download a toolchain for ARCH ('list', 'all' or a comma list)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more seconds")
    return value


def _add_dist(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("distributed builds")
    g.add_argument("--dist", "--distribute", action="store_true",
                   help="share the build with the machines in [machines]")
    g.add_argument("--use-machines", metavar="M1,M2",
                   help="use only these machines (implies --dist)")
    g.add_argument("--no-local", action="store_true", help="build nothing on this machine")
    g.add_argument("--mach", "--machines", action="store_true",
                   help="probe the machines, print their state and exit")
    g.add_argument("--machines-fetch-arch", action="store_true",
                   help="with --mach: fetch missing toolchains on the machines")
    g.add_argument("--machines-buildman-path", metavar="PATH",
                   help="run 'PATH --worker' on machines instead of shipping this tool")
    g.add_argument("--kill-workers", action="store_true",
                   help="stop this user's workers on every machine and exit")
    g.add_argument("--no-hedge", action="store_true",
                   help="never start a second copy of a straggling board on an idle executor")
    g.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    g.add_argument("--work-dir", help=argparse.SUPPRESS)


def _add_misc(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("other")
    g.add_argument("-G", "--config-file", help="settings file (default: ~/.buildman)")
    g.add_argument("-H", "--full-help", action="store_true", help="print the full manual and exit")
    g.add_argument("-D", "--debug", action="store_true",
                   help="tracebacks on errors; with --dist, workers' debug lines")
    g.add_argument("--version", action="version", version=f"buildfleet {__version__}")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="buildfleet",
        description="Build U-Boot for many boards and commits, here and on a fleet of "
        "machines, and summarise what broke, warned or grew. Speaks buildman's flags.",
        epilog=EPILOG,
    )
    _add_selection(parser)
    _add_build(parser)
    _add_display(parser)
    _add_toolchains(parser)
    _add_dist(parser)
    _add_misc(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse argv and apply the implications buildman applies."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.use_machines:
        args.dist = True
    if args.machines_fetch_arch:
        args.mach = True
    if args.bloat:
        # -B alone would print nothing (bloat lives in the size section): imply -S too.
        args.detail = True
        args.show_sizes = True
    return args


def options(args: argparse.Namespace, cls: type[T]) -> T:
    """The typed options ``cls`` (``buildfleet.options``, ``SummaryOptions``) from ``args``.

    Each field takes the flag of its name; a field without one raises
    AttributeError here (never a silent default somewhere downstream).
    """
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})
