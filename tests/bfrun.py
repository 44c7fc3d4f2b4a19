"""Helpers for tests that run the real ``buildfleet`` command on a demo tree.

The build tests check what a user sees: the process's exit code, its output
and the files it leaves in the output tree. So they run ``python -m
buildfleet`` as a subprocess, and compute the expected output-tree paths here
independently of the package's own path code (a bug there must fail a test,
not move the expectation with it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ci_skip import require

CROSS_PREFIXES = ("arm-linux-gnueabihf-", "aarch64-linux-gnu-", "riscv64-linux-gnu-")
RUN_TIMEOUT = 120.0

# Files every finished result directory holds (buildman's set, plus duration).
ALWAYS = ("done", "log", "toolchain", "out-env", "out-cmd", "duration")
# Files a successful build of a demo board adds.
BUILT = ("sizes", "u-boot.sizes", "u-boot.objdump", "uboot.env", "u-boot.cfg", ".config",
         "autoconf.mk", "autoconf.h")


def require_cross() -> None:
    """Skip (fail under CI=true) unless the Debian cross compilers and make are here."""
    for prefix in CROSS_PREFIXES:
        require(shutil.which(prefix + "gcc") is not None, f"{prefix}gcc is not installed")
    require(shutil.which("make") is not None, "make is not installed")
    require(shutil.which("gcc") is not None, "gcc is not installed")


@dataclass
class Run:
    """One finished ``buildfleet`` process."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (f"buildfleet {' '.join(self.args)} -> {self.returncode}\n"
                f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}")


def bf_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["TERM"] = "dumb"
    env.update(extra or {})
    return env


def run_bf(args: list[str], cwd: Path, env: dict[str, str] | None = None,
           timeout: float = RUN_TIMEOUT) -> Run:
    """Run ``python -m buildfleet ARGS`` in ``cwd`` and wait for it."""
    proc = subprocess.run([sys.executable, "-m", "buildfleet", *args], cwd=cwd,
                          env=env or bf_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    return Run(args, proc.returncode, proc.stdout, proc.stderr)


def path_without(tool: str, directory: Path) -> str:
    """This PATH with ``tool`` gone and every other program still found, in the same order.

    Why: a tool shares its directory with the ones a build needs (a packaged
    dtc sits in /usr/bin with make, gcc, cpp and git), so leaving that
    directory out of PATH would take them away too. Each directory holding
    ``tool`` is replaced by one under ``directory`` with symlinks to its
    other entries.
    """
    dirs = os.environ["PATH"].split(os.pathsep)
    for i, d in enumerate(dirs):
        if d and (Path(d) / tool).exists():
            copy = directory / f"path{i}"
            copy.mkdir(parents=True)
            for entry in os.scandir(d):
                if entry.name != tool:
                    (copy / entry.name).symlink_to(entry.path)
            dirs[i] = str(copy)
    return os.pathsep.join(dirs)


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="T",
               GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="T",
               GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True,
                          capture_output=True, text=True).stdout


def slug(subject: str) -> str:
    for ch in "/: ":
        subject = subject.replace(ch, "-")
    return subject[:20]


@dataclass(frozen=True)
class Rev:
    """One commit as buildfleet numbers it: ``seq`` is 0-based, oldest first."""

    seq: int
    hash: str
    subject: str

    @property
    def dir_name(self) -> str:
        return f"{self.seq + 1:02d}_g{self.hash}_{slug(self.subject)}"


def branch_revs(repo: Path, branch: str, upstream: str = "main") -> list[Rev]:
    """The commits ``-b branch`` builds: the upstream commit, then the branch's own."""
    base = git(repo, "merge-base", upstream, branch).strip()
    rows = git(repo, "log", "--reverse", "--format=%H%x00%s", f"{base}..{branch}")
    first = git(repo, "log", "-n1", "--format=%H%x00%s", base)
    revs = []
    for i, line in enumerate([first.strip(), *rows.splitlines()]):
        h, s = line.split("\x00", 1)
        revs.append(Rev(i, h, s))
    return revs


def result_dir(base: Path, rev: Rev, target: str) -> Path:
    return base / rev.dir_name / target


def done_code(path: Path) -> int:
    return int((path / "done").read_text())


def sizes_of(path: Path) -> dict[str, tuple[int, int, int]]:
    """``sizes`` as image -> (text, data, bss), parsed from buildman's format."""
    out = {}
    for line in (path / "sizes").read_text().splitlines():
        cols = line.split("\t")
        text, data, bss = (int(c) for c in cols[:3])
        image = cols[5].split()[0]
        out[image] = (text, data, bss)
    return out


def make_lines(path: Path) -> list[str]:
    """The make commands of a result, from ``out-cmd``."""
    return [ln for ln in (path / "out-cmd").read_text().splitlines() if ln]


def configured(path: Path, target: str) -> bool:
    return any(ln.split()[-1] == f"{target}_defconfig" for ln in make_lines(path))


def settings_file(directory: Path, text: str = "") -> Path:
    """A ``-G`` settings file, so no test depends on the user's ``~/.buildman``."""
    path = directory / "buildman.ini"
    path.write_text(text or "[toolchain]\n")
    return path


def rebase_on_a_new_upstream_commit(repo: Path) -> None:
    """``main`` of a demo tree gets a commit every board compiles (``drivers/serial.c``);
    the ``demo`` branch is rebased onto it: a re-check after a rebase."""
    git(repo, "checkout", "-q", "main")
    with (repo / "drivers" / "serial.c").open("a") as f:
        f.write("/* upstream moved on */\n")
    git(repo, "commit", "-qam", "serial: a comment")
    git(repo, "checkout", "-q", "demo")
    git(repo, "rebase", "-q", "main")


def without_job_control(err: bytes) -> bytes:
    """An ``err`` without make's ``make[N]: *** Waiting for unfinished jobs....`` lines.

    A parallel make prints that line only when another of its jobs is still
    running as one fails: a matter of ``-j`` and timing, not of the build
    (buildman's summary drops it too). Compare two builds' ``err`` with it
    left out.
    """
    return b"".join(line for line in err.splitlines(keepends=True)
                    if not re.match(rb"make(\[\d+\])?: \*\*\* Waiting for unfinished jobs", line))
