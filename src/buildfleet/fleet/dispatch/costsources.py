"""Which cost data a run starts from, for dispatch and for ``--shard``.

One cost model (:class:`buildfleet.fleet.dispatch.costs.CostModel`) serves both; they
differ only in what they may feed it:

- dispatch wants the best guess this machine has: the priors of the board
  database, then the user's cache of this tree, then a ``--costs`` file, then
  the output tree's own history, later sources winning per (board, host);
- a shard split must come out the same on every CI runner, so it uses only
  inputs every runner has: the priors (from the tree) and a ``--costs`` file.
  A runner's own history or cache would make a warm runner cut the boards
  differently from a cold one, and boards would be built twice or never.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from buildfleet import gitutil
from buildfleet.fleet.dispatch.costfile import CostData, load_cache, read_costs
from buildfleet.fleet.dispatch.costs import CostModel
from buildfleet.fleet.dispatch.priors import read_traits
from buildfleet.model import Board
from buildfleet.results.history import scan_history


def tree_id(src_dir: Path) -> Path:
    """What names a source tree in the cache: its git common directory, else its path.

    Worktrees and branches of one repository share it, so a new branch or a
    new ``-o`` starts from what the repository's earlier runs measured.
    """
    try:
        out = gitutil.git(["rev-parse", "--git-common-dir"], cwd=src_dir).strip()
    except gitutil.GitError:
        return src_dir.resolve()
    path = Path(out)
    return (path if path.is_absolute() else src_dir / path).resolve()


def shard_costs(src_dir: Path, boards: Sequence[Board], costs_file: Path | None) -> CostModel:
    """The cost model of a shard split: priors, and the ``--costs`` file if given.

    Raises CostFileError if the file cannot be read.
    """
    data = read_costs(costs_file) if costs_file is not None else CostData()
    return CostModel.from_samples(data.samples(), boards=boards,
                                  traits=read_traits(src_dir, [b.target for b in boards]))


def run_costs(src_dir: Path, boards: Sequence[Board], output_root: Path,
              costs_file: Path | None, warn: Callable[[str], object]) -> CostModel:
    """The cost model dispatch starts from: priors, cache, ``--costs``, history.

    Raises CostFileError if ``costs_file`` cannot be read; an unreadable cache
    is reported through ``warn`` and ignored.
    """
    cached, problem = load_cache(tree_id(src_dir))
    if problem:
        warn(problem)
    data = cached
    if costs_file is not None:
        data = data.merged(read_costs(costs_file))
    data = data.merged(CostData.from_samples(scan_history(output_root)))
    return CostModel.from_samples(data.samples(), boards=boards,
                                  traits=read_traits(src_dir, [b.target for b in boards]))
