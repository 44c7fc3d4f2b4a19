"""The git operations buildfleet needs, as plain functions over ``git`` itself.

Real git, never a library: users' hooks, worktrees and config behave exactly
as they do on the command line, and workers need nothing but git installed.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from buildfleet.errors import InfraError
from buildfleet.model import Commit

GIT_TIMEOUT = 120.0


class GitError(InfraError):
    """A git command failed; the message is one line saying which and why."""


def git(args: list[str], cwd: Path | None = None, *, env: dict[str, str] | None = None,
        timeout: float = GIT_TIMEOUT, check: bool = True) -> str:
    """Run git and return stdout (UTF-8, undecodable bytes replaced); raise GitError
    with git's last stderr line."""
    try:
        # Commit messages, author names and paths are bytes in git: a subject
        # in latin-1 must read as text with replacement characters, not stop the run.
        proc = subprocess.run(["git", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, encoding="utf-8", errors="replace",
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {' '.join(args[:2])} timed out after {timeout:.0f}s") from exc
    except FileNotFoundError as exc:
        raise GitError("git is not installed") from exc
    if check and proc.returncode != 0:
        last = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        msg = last[-1] if last else f"exit code {proc.returncode}"
        raise GitError(f"git {' '.join(args[:2])}: {msg}")
    return proc.stdout


def toplevel(path: Path) -> Path:
    return Path(git(["rev-parse", "--show-toplevel"], cwd=path).strip())


def git_dir(path: Path) -> Path:
    out = git(["rev-parse", "--absolute-git-dir"], cwd=path).strip()
    return Path(out)


def upstream_of(repo: Path, branch: str) -> str | None:
    """The upstream a branch tracks, as a revision name, or None if unset."""
    remote = git(["config", f"branch.{branch}.remote"], cwd=repo, check=False).strip()
    merge = git(["config", f"branch.{branch}.merge"], cwd=repo, check=False).strip()
    if not remote or not merge:
        return None
    short = merge.removeprefix("refs/heads/")
    return short if remote == "." else f"{remote}/{short}"


def branch_commits(repo: Path, branch: str, count: int = -1) -> list[Commit]:
    """The commits buildman builds for ``-b branch``, oldest first.

    Without ``count``: every commit since the upstream plus the upstream
    commit itself, so the first result is the baseline. A range ``a..b`` is
    taken as given (plus its base). ``count`` takes the top N commits.
    """
    if count is None or count < 0:
        if ".." in branch:
            base, tip = branch.split("..", 1)
            rng = branch
        else:
            up = upstream_of(repo, branch)
            if up is None:
                raise GitError(f"No commits found to process in branch '{branch}': "
                               "set branch's upstream or use -c flag")
            base, tip, rng = up, branch, f"{up}..{branch}"
        n = int(git(["rev-list", "--count", rng], cwd=repo).strip() or 0)
        if n == 0 and ".." in branch:
            raise GitError(f"Range '{branch}' has no commits")
        count = n + 1
        del base
    else:
        tip = branch.split("..", 1)[1] if ".." in branch else branch
    out = git(["log", f"-n{count}", "--format=%H%x00%s", tip, "--"], cwd=repo)
    rows = [line.split("\x00", 1) for line in out.splitlines() if line]
    rows.reverse()
    return [Commit(i, h, s) for i, (h, s) in enumerate(rows)]


def step_commits(commits: list[Commit], step: int) -> list[Commit]:
    """Every ``step``-th commit; 0 means just the first and the last."""
    if step == 0:
        step = max(1, len(commits) - 1)
    return [c for c in commits if c.sequence % step == 0]


def snapshot_working_tree(repo: Path) -> str:
    """A commit of the working tree as it is, uncommitted and untracked files included.

    Built with a private index so the user's index, HEAD and files are never
    touched. This is what a distributed build without ``-b`` pushes.
    """
    with tempfile.TemporaryDirectory(prefix="bf-index-") as tmp:
        env = dict(os.environ, GIT_INDEX_FILE=str(Path(tmp) / "index"))
        head = git(["rev-parse", "--verify", "-q", "HEAD"], cwd=repo, check=False).strip()
        if head:
            git(["read-tree", head], cwd=repo, env=env)
        git(["add", "-A", "."], cwd=repo, env=env)
        tree = git(["write-tree"], cwd=repo, env=env).strip()
        parents = ["-p", head] if head else []
        env.setdefault("GIT_AUTHOR_NAME", "buildfleet")
        env.setdefault("GIT_AUTHOR_EMAIL", "buildfleet@localhost")
        env.setdefault("GIT_COMMITTER_NAME", "buildfleet")
        env.setdefault("GIT_COMMITTER_EMAIL", "buildfleet@localhost")
        return git(["commit-tree", tree, *parents, "-m", "buildfleet: working tree"],
                   cwd=repo, env=env).strip()


def changed_files(worktree: Path, old: str, new: str) -> list[str]:
    out = git(["diff", "--name-only", old, new], cwd=worktree)
    return [ln for ln in out.splitlines() if ln]


def changed_status(worktree: Path, old: str, new: str) -> list[tuple[str, str]]:
    """``(status, path)`` of every file that differs between two commits.

    Status is git's letter (``M`` modified, ``A`` added, ``D`` deleted, ``T``
    type changed...); renames are shown as a delete and an add, and paths are
    read NUL-separated, so any file name comes back as it is.
    """
    out = git(["diff", "--name-status", "--no-renames", "-z", old, new], cwd=worktree)
    fields = out.split("\0")
    return [(fields[i], fields[i + 1]) for i in range(0, len(fields) - 1, 2) if fields[i]]


def remove_stale_locks(gitdir: Path) -> None:
    """Delete ``index.lock`` files a killed git left behind (the repo's and worktrees')."""
    candidates = [gitdir / "index.lock"]
    wt = gitdir / "worktrees"
    if wt.is_dir():
        candidates += [d / "index.lock" for d in wt.iterdir()]
    for lock in candidates:
        try:
            lock.unlink()
        except FileNotFoundError:
            pass


def add_worktree(src_gitdir: Path, path: Path) -> None:
    """A detached worktree at ``path`` of the repository at ``src_gitdir``.

    Reuses a valid existing worktree; replaces a directory whose ``.git``
    points nowhere (a worktree that was pruned or moved).
    """
    dot_git = path / ".git"
    if dot_git.is_file():
        private = worktree_git_dir(path)
        if private is not None:
            (private / "index.lock").unlink(missing_ok=True)
            return
        dot_git.unlink()
    elif dot_git.is_dir():
        return  # a full clone made by hand: use it as it is
    path.mkdir(parents=True, exist_ok=True)
    git(["--git-dir", str(src_gitdir), "worktree", "add", "-f", "--detach", "--no-checkout",
         str(path)], cwd=path)


def worktree_git_dir(worktree: Path) -> Path | None:
    """The private git directory of a linked worktree (from its ``.git`` file)."""
    try:
        text = (worktree / ".git").read_text()
    except OSError:
        return None
    target = Path(text.removeprefix("gitdir:").strip())
    return target if target.is_dir() else None


def checkout(worktree: Path, commit: str) -> None:
    """Check ``commit`` out in a slot's worktree (one git process per commit)."""
    git(["checkout", "-q", "-f", commit], cwd=worktree)
