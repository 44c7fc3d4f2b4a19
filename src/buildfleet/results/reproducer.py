"""A ``reproduce`` script per result: that board at that commit, rebuilt without buildfleet.

A failure seen in a world build is fixed by someone who was not there: they
need the commit, the exact ``make`` commands and the environment and
toolchain they ran with. A result directory already records those facts in
buildman's files: ``out-cmd`` (one make command per line), ``out-env``
(``NAME="value"`` entries, concatenated) and ``toolchain`` (``gcc``,
``path``, ``cross``, ``arch`` lines, then the return code). This module turns
them into a :class:`Reproducer` and renders it two ways: a POSIX shell script
(written into the result directory by the one result writer, so a board
built by a worker gets exactly the script a local one gets) and the
``reproducer`` object of the JSON report.

The script is run from the top of any clone holding the commit; it refuses a
tree with uncommitted changes, checks the commit out (detached), exports the
variables of ``out-env`` that make and kbuild read (and unsets the others of
that kind; a toolchain wrapper such as ccache in ``CROSS_COMPILE`` is dropped
when this machine lacks it), puts the recorded toolchain first on ``PATH`` (or
says which compiler it uses instead when that one is not on this machine), runs the
recorded make commands with ``O=`` pointed at a fresh build directory, and
exits with the return code buildfleet would have recorded (``done``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

SCRIPT_NAME = "reproduce"
ELF_IMAGES = ("u-boot", "spl/u-boot-spl", "tpl/u-boot-tpl")

# Variables of the build's environment that change what make and kbuild do.
# The rest of out-env (HOME, SSH_AUTH_SOCK, ...) is the session's, not the build's.
MAKE_VARS = frozenset({
    "ARCH", "CROSS_COMPILE", "CC", "HOSTCC", "LD", "AR", "CPP", "KCFLAGS", "KCPPFLAGS",
    "KAFLAGS", "KLDFLAGS", "HOSTCFLAGS", "HOSTLDFLAGS", "LC_ALL", "SOURCE_DATE_EPOCH",
    "MAKEFLAGS", "DEVICE_TREE", "EXT_DTB", "BL31", "BL32", "TEE", "OPENSBI", "SCP",
    "ROCKCHIP_TPL", "PYTHON", "DTC",
})
MAKE_VAR_PREFIXES = ("KBUILD_", "KCONFIG_", "BINMAN_")

_ENV_ENTRY_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="')
_DEFCONFIG_GOAL = "_defconfig"


def is_make_var(name: str) -> bool:
    return name in MAKE_VARS or name.startswith(MAKE_VAR_PREFIXES)


def parse_out_env(text: str) -> dict[str, str]:
    """``out-env`` as a dict: ``NAME="value"`` entries, written back to back (buildman's form).

    A value ends at the ``"`` that is followed by the next ``NAME="`` or by the
    end of the file, so a quote inside a value survives.
    """
    env: dict[str, str] = {}
    starts = [m for m in _ENV_ENTRY_RE.finditer(text)
              if m.start() == 0 or text[m.start() - 1] in '"\n']
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text.rstrip("\n"))
        value = text[match.end():end].rstrip("\n")
        env[match.group(1)] = value[:-1] if value.endswith('"') else value
    return env


def parse_toolchain(text: str) -> dict[str, str]:
    """The ``toolchain`` file's ``key value`` lines (``gcc``, ``path``, ``cross``, ``arch``)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key in ("gcc", "path", "cross", "arch"):
            out[key] = value
    return out


# make's options whose argument may be the next word (-j and -l only when it is a number).
_OPTION_ARG = frozenset({"-C", "-f", "-I", "-o", "-W", "--directory", "--file", "--makefile",
                         "--include-dir", "--old-file", "--what-if"})
_OPTIONAL_NUMBER = frozenset({"-j", "-l", "--jobs", "--load-average"})


def make_options(argv: tuple[str, ...]) -> tuple[str, ...]:
    """``argv[1:]`` without its goals, by make's own rule: a word that is neither an
    option (nor an option's argument) nor ``VAR=value`` is a goal."""
    kept: list[str] = []
    words = list(argv[1:])
    i = 0
    while i < len(words):
        word = words[i]
        takes = word in _OPTION_ARG or (word in _OPTIONAL_NUMBER and i + 1 < len(words)
                                        and words[i + 1].isdigit())
        if takes and i + 1 < len(words):
            kept += [word, words[i + 1]]
            i += 2
            continue
        if word.startswith("-") or "=" in word:
            kept.append(word)
        i += 1
    return tuple(kept)


@dataclass(frozen=True)
class Reproducer:
    """How one result was built, with ``O=`` left open.

    ``commands`` are make argvs; an ``O=`` argument is stored as ``O=`` plus
    :attr:`BUILD_DIR` (the script fills in its build directory).
    ``commit`` is None for a build of the working tree. ``env`` holds the
    make-relevant variables of ``out-env``; ``toolchain`` the parsed
    ``toolchain`` file (empty if there was none).
    """

    target: str
    commit: str | None
    commands: tuple[tuple[str, ...], ...]
    env: tuple[tuple[str, str], ...]
    toolchain: tuple[tuple[str, str], ...]
    return_code: int | None = None

    BUILD_DIR = "${BUILD_DIR}"

    @classmethod
    def from_files(cls, target: str, commit: str | None, files: Mapping[str, bytes],
                   return_code: int | None = None) -> Reproducer | None:
        """From a result's ``out-cmd``, ``out-env`` and ``toolchain``; None without ``out-cmd``.

        A commit built incrementally records only its build command, so a
        configure command (the same options and variables, goal
        ``<target>_defconfig``) is put first when ``out-cmd`` has none: the
        reproducer always starts from an empty build directory.
        """
        raw = files.get("out-cmd")
        if raw is None:
            return None
        commands: list[tuple[str, ...]] = []
        for line in raw.decode("utf-8", "replace").splitlines():
            try:
                argv = shlex.split(line)
            except ValueError:
                argv = line.split()
            if argv:
                commands.append(tuple(cls.BUILD_DIR.join(["O=", ""]) if w.startswith("O=")
                                      else w for w in argv))
        if not commands:
            return None
        if not any(w.endswith(_DEFCONFIG_GOAL) for cmd in commands for w in cmd[1:]):
            first = commands[0]
            commands.insert(0, (first[0], *make_options(first), f"{target}{_DEFCONFIG_GOAL}"))
        env = parse_out_env(files.get("out-env", b"").decode("utf-8", "replace"))
        tc = parse_toolchain(files.get("toolchain", b"").decode("utf-8", "replace"))
        return cls(target, commit, tuple(commands),
                   tuple(sorted((k, v) for k, v in env.items() if is_make_var(k))),
                   tuple(sorted(tc.items())), return_code)

    @property
    def uses_build_dir(self) -> bool:
        return any(w.startswith("O=") for cmd in self.commands for w in cmd)

    def command_lines(self) -> list[str]:
        """The make commands as shell lines, ``O=${BUILD_DIR}`` as the build directory."""
        return [" ".join(_quote_keep_build_dir(w) for w in cmd) for cmd in self.commands]

    def to_json(self, script: str | None) -> dict[str, object]:
        """The JSON report's ``reproducer`` object (``script``: its path, or None)."""
        return {
            "script": script,
            "checkout": self.commit,
            "commands": self.command_lines(),
            "env": dict(self.env),
            "toolchain": dict(self.toolchain).get("gcc"),
        }

    def script(self, tool: str = "buildfleet") -> str:
        """The ``reproduce`` script (POSIX sh).

        Nothing in it names the machine that built the result (that is in
        ``host``): a board gets the same script wherever it was built.
        """
        tc = dict(self.toolchain)
        env = dict(self.env)
        recorded = "unknown" if self.return_code is None else str(self.return_code)
        lines = [
            "#!/bin/sh",
            f"# Rebuild {self.target} at {self.commit or 'the working tree'} without buildfleet.",
            f"# Written by {tool}; the result it rebuilds has done {recorded}.",
            "#",
            "# Usage: cd <a clone of the tree that holds the commit> && sh <this file> [BUILD_DIR]",
            "# BUILD_DIR (O=) defaults to ./build-<board>; the tree must have no uncommitted",
            "# changes (the commit is checked out, detached). Exits with make's status as",
            "# buildfleet records it in 'done'.",
            "set -u",
            f"board={shlex.quote(self.target)}",
            f"recorded_done={recorded}",
            'BUILD_DIR=${1:-"build-$board"}',
            'top=$(git rev-parse --show-toplevel 2>/dev/null) || {',
            '    echo "reproduce: run me from inside a git clone of the source tree" >&2',
            '    exit 1; }',
            'case $BUILD_DIR in /*) ;; *) BUILD_DIR="$PWD/$BUILD_DIR" ;; esac',
            'cd "$top" || exit 1',
        ]
        if self.commit is not None:
            lines += [
                f"commit={shlex.quote(self.commit)}",
                'if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then',
                '    echo "reproduce: commit $commit is not in $top: fetch it first" >&2; exit 1',
                "fi",
                "git update-index -q --refresh >/dev/null 2>&1",
                "if ! git diff-index --quiet HEAD --; then",
                '    echo "reproduce: $top has uncommitted changes: commit or stash them" >&2',
                "    exit 1",
                "fi",
                'git -c advice.detachedHead=false checkout -q --detach "$commit" || exit 1',
            ]
        else:
            lines.append('echo "reproduce: buildfleet built the working tree as it was; '
                         'building $top as it is"')
        lines += self._toolchain_lines(tc, env)
        lines += [
            'mkdir -p "$BUILD_DIR" || exit 1',
            'BUILD_DIR=$(cd "$BUILD_DIR" && pwd) || exit 1',
        ] if self.uses_build_dir else ['echo "reproduce: an in-tree build (no O=)"']
        if self.uses_build_dir:
            # A stale image would survive a failed link and be taken for this build's.
            lines.append("rm -f " + " ".join(f'"$BUILD_DIR/{img}"' for img in ELF_IMAGES))
        lines += [
            'errs=$(mktemp) || exit 1',
            "rc=0",
            "run() {",
            '    echo "+ $*"',
            '    "$@" 2>"$errs"; rc=$?',
            '    cat "$errs" >&2',
            "    # As buildfleet and buildman: binman's missing blobs are not a failure.",
            '    if [ "$rc" -eq 2 ] && grep -q "Some images are invalid" "$errs"; then rc=0; fi',
            "}",
        ]
        for cmd in self.command_lines():
            lines.append(f'[ "$rc" -eq 0 ] && run {cmd}')
        out = '"$BUILD_DIR"' if self.uses_build_dir else '"$top"'
        lines += [
            'rm -f "$errs"',
            f"for image in {' '.join(ELF_IMAGES)}; do",
            f'    [ -f {out}/"$image" ] && "${{size_tool:-size}}" {out}/"$image"',
            "done",
            'echo "reproduce: done $rc (buildfleet recorded $recorded_done)"',
            'exit "$rc"',
        ]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _toolchain_lines(tc: dict[str, str], env: dict[str, str]) -> list[str]:
        """Export the build's make variables, unset others of that kind, find the compiler."""
        lines = [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
        others = sorted(MAKE_VARS - set(env))
        lines.append("unset " + " ".join(others))
        keep = " ".join(k for k in env if k.startswith(MAKE_VAR_PREFIXES))
        lines += [
            "for var in $(env | sed -n 's/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p'); do",
            "    case $var in",
            f'    KBUILD_*|KCONFIG_*|BINMAN_*) case " {keep} " in *" $var "*) ;; '
            '*) unset "$var" ;; esac ;;',
            "    esac",
        ]
        lines.append("done")
        if " " in env.get("CROSS_COMPILE", ""):
            # Built through a toolchain wrapper (ccache): not needed for the same result.
            lines += [
                'wrapper=${CROSS_COMPILE%% *}',
                'if ! command -v "$wrapper" >/dev/null 2>&1; then',
                '    echo "reproduce: no $wrapper here (the toolchain wrapper buildfleet used);'
                ' building without it" >&2',
                '    CROSS_COMPILE=${CROSS_COMPILE#* }',
                "fi",
            ]
        gcc = tc.get("gcc", "")
        if not gcc:
            return lines
        path = tc.get("path", "")
        lines += [
            f"# The toolchain buildfleet used: {gcc} (arch {tc.get('arch', '?')})",
            f"gcc_used={shlex.quote(gcc)}",
        ]
        if path:
            lines.append(f'[ -d {shlex.quote(path)} ] && PATH={shlex.quote(path)}:"$PATH"')
        lines += [
            'if [ -x "$gcc_used" ]; then gcc=$gcc_used',
            'elif gcc=$(command -v "${gcc_used##*/}"); then',
            '    echo "reproduce: $gcc_used is not on this machine; using $gcc" >&2',
            "else",
            '    echo "reproduce: no ${gcc_used##*/} here (buildfleet used $gcc_used)" >&2; exit 1',
            "fi",
            'echo "reproduce: toolchain $gcc: $("$gcc" --version | head -n 1)"',
            'size_tool=${gcc%gcc}size',
        ]
        return lines


def _quote_keep_build_dir(word: str) -> str:
    """Shell-quote ``word`` but let ``${BUILD_DIR}`` expand."""
    if Reproducer.BUILD_DIR not in word:
        return shlex.quote(word)
    head, _, tail = word.partition(Reproducer.BUILD_DIR)
    return f'{shlex.quote(head) if head else ""}"$BUILD_DIR"{shlex.quote(tail) if tail else ""}'
