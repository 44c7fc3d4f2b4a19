"""--shard K/N, cost priors, the cost file: pure parts, on the demo tree's board database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from buildfleet.boards import ensure_boards_cfg
from buildfleet.demo import make_demo_tree
from buildfleet.fleet.dispatch.costfile import (
    CostData,
    CostFileError,
    parse_costs,
    read_costs,
    write_costs,
)
from buildfleet.fleet.dispatch.costs import CostModel, Sample
from buildfleet.fleet.dispatch.priors import BoardTraits, prior_seconds, read_traits
from buildfleet.model import Board
from buildfleet.shard import (
    ShardError,
    ShardSpec,
    millis,
    read_mark,
    shard_problems,
    split_boards,
    write_mark,
)

SPLIT_SCRIPT = """
import json, sys
from pathlib import Path
from buildfleet.boards import read_boards_cfg
from buildfleet.fleet.dispatch.costsources import shard_costs
from buildfleet.shard import split_boards
tree, cfg = Path(sys.argv[1]), Path(sys.argv[2])
boards = read_boards_cfg(cfg)
model = shard_costs(tree, boards, None)
print(json.dumps({n: [[b.target for b in s] for s in split_boards(boards, model.estimate, n).shards]
                  for n in range(1, 6)}))
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Board]]:
    """A 24-board demo tree and its board database (no builds)."""
    root = tmp_path_factory.mktemp("shard")
    tree = make_demo_tree(root / "tree", boards=24).path
    cfg = root / "boards.cfg"
    return tree, cfg, ensure_boards_cfg(tree, cfg)


def test_shard_spec_parsing() -> None:
    assert ShardSpec.parse("2/5") == ShardSpec(2, 5)
    assert ShardSpec.parse(" 1 / 1 ") == ShardSpec(1, 1)
    assert str(ShardSpec(3, 29)) == "3/29"
    for bad, why in (("0/3", "K must be between 1 and N"), ("4/3", "K must be between"),
                     ("1/0", "N must be between"), ("2", "expected K/N"), ("a/b", "K/N"),
                     ("-1/3", "K/N")):
        with pytest.raises(ShardError, match=why):
            ShardSpec.parse(bad)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_shards_cover_the_selection_disjointly(demo: tuple[Path, Path, list[Board]],
                                               count: int) -> None:
    tree, _cfg, boards = demo
    from buildfleet.fleet.dispatch.costsources import shard_costs

    model = shard_costs(tree, boards, None)
    split = split_boards(boards, model.estimate, count)
    assert len(split.shards) == count
    seen = [b.target for shard in split.shards for b in shard]
    assert sorted(seen) == sorted(b.target for b in boards)  # union = the selection
    assert len(seen) == len(set(seen))                       # pairwise disjoint
    # Balanced: no shard exceeds the lightest by more than one board's cost.
    biggest = max(millis(model.estimate(b)) for b in boards)
    assert max(split.loads) - min(split.loads) <= biggest
    # The order of the input does not matter, only the boards and their costs.
    again = split_boards(list(reversed(boards)), model.estimate, count)
    assert [sorted(b.target for b in s) for s in again.shards] == [
        sorted(b.target for b in s) for s in split.shards]
    assert again.digest == split.digest


def test_split_is_identical_across_processes(demo: tuple[Path, Path, list[Board]]) -> None:
    """Two interpreters (with different hash seeds) cut the same shards for N = 1..5."""
    tree, cfg, _boards = demo
    outs = []
    for seed in ("1", "2"):
        proc = subprocess.run([sys.executable, "-c", SPLIT_SCRIPT, str(tree), str(cfg)],
                              capture_output=True, text=True, check=True, timeout=60,
                              env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"})
        outs.append(json.loads(proc.stdout))
    assert outs[0] == outs[1]
    assert len(outs[0]) == 5


def test_split_refuses_a_board_twice() -> None:
    with pytest.raises(ShardError, match="selected twice"):
        split_boards([Board("a", "arm"), Board("a", "arm")], lambda b: 1.0, 2)


def test_priors_follow_what_the_defconfig_says(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "plain_defconfig").write_text("CONFIG_ARM=y\n# comment\n\nCONFIG_X=y\n")
    (configs / "spl_defconfig").write_text("CONFIG_ARM=y\nCONFIG_SPL=y\nCONFIG_TPL=y\n")
    (configs / "child_defconfig").write_text(
        '#include "spl_defconfig"\nCONFIG_Y=y\n# CONFIG_TPL is not set\n')
    traits = read_traits(tmp_path, ["plain", "spl", "child", "missing"])
    assert traits["plain"] == BoardTraits(frozenset(), 2)
    assert traits["spl"] == BoardTraits(frozenset({"CONFIG_SPL", "CONFIG_TPL"}), 3)
    assert traits["child"] == BoardTraits(frozenset({"CONFIG_SPL"}), 4)
    assert "missing" not in traits
    arm = prior_seconds(Board("plain", "arm"), traits["plain"])
    assert prior_seconds(Board("spl", "arm"), traits["spl"]) > arm
    assert prior_seconds(Board("sb", "sandbox"), traits["plain"]) > arm
    assert prior_seconds(Board("big", "arm"), BoardTraits(frozenset(), 200)) > arm


def test_boards_of_a_soc_predict_each_other() -> None:
    boards = [Board("s1", "arm", "armv7", "heavy"), Board("s2", "arm", "armv7", "heavy"),
              Board("l1", "arm", "armv7", "light"), Board("l2", "arm", "armv7", "light"),
              Board("r1", "riscv", "generic", "")]
    m = CostModel.from_samples([], boards=boards, traits={})
    assert m.estimate(boards[1]) == m.estimate(boards[3])  # priors alone: alike
    m.observe(boards[0], 600.0)
    m.observe(boards[2], 60.0)
    assert m.estimate(boards[1]) == m.estimate(boards[3])  # not before the refit
    m.refit()
    # Each SoC's unmeasured board follows its measured sibling, not the arch.
    assert m.estimate(boards[1]) > 400.0
    assert m.estimate(boards[3]) < 150.0  # the arch median would say 330
    # A board still building past its estimate is evidence for its SoC too.
    before = m.estimate(boards[4])
    r2 = Board("r2", "riscv", "generic", "")
    assert m.observe_running([(r2, before * 3)]) == 1
    assert m.estimate(boards[4]) > before * 3
    assert m.observe_running([(boards[0], 1.0)]) == 0  # finished boards are not "running"


def test_cost_file_round_trip_and_errors(tmp_path: Path) -> None:
    data = CostData.from_samples([Sample("a", "", 10.0), Sample("a", "", 30.0),
                                  Sample("a", "fast", 5.0), Sample("b", "", 2.5)])
    assert data.durations == {"a": {"": 20.0, "fast": 5.0}, "b": {"": 2.5}}
    path = tmp_path / "costs.json"
    write_costs(path, data)
    doc = json.loads(path.read_text())
    assert doc["format"] == "buildfleet-costs" and doc["version"] == 1
    assert read_costs(path) == data
    assert data.merged(CostData({"a": {"": 7.0}})).durations["a"] == {"": 7.0, "fast": 5.0}
    for text, why in (("{", "not JSON"), ("[]", "not a cost file"),
                      ('{"format": "buildfleet-costs", "version": 2, "boards": {}}',
                       "version 2; this buildfleet reads version 1"),
                      ('{"format": "buildfleet-costs", "version": 1, "boards": {"a": {"": -1}}}',
                       "not a positive number"),
                      ('{"format": "buildfleet-costs", "version": 1, "boards": []}',
                       '"boards" must be an object')):
        with pytest.raises(CostFileError, match=why):
            parse_costs(text, "x.json")
    with pytest.raises(CostFileError, match="cannot read cost file"):
        read_costs(tmp_path / "nothing.json")


def test_missing_doubled_and_mismatched_shards_are_named(tmp_path: Path) -> None:
    boards = [Board(f"b{i}", "arm") for i in range(6)]
    split = split_boards(boards, lambda b: 1.0, 3)
    other = split_boards(boards, lambda b: 2.0 if b.target == "b0" else 1.0, 3)
    trees = [tmp_path / f"s{k}" for k in range(1, 5)]
    write_mark(trees[0], ShardSpec(1, 3), split)
    write_mark(trees[1], ShardSpec(3, 3), split)
    assert read_mark(trees[0]) is not None and read_mark(tmp_path / "none") is None
    assert shard_problems(trees[:2]) == [
        "missing shard 2/3: no output directory given holds it (its boards show as not built)"]
    write_mark(trees[2], ShardSpec(2, 3), split)
    assert shard_problems(trees[:3]) == []
    write_mark(trees[3], ShardSpec(2, 3), other)
    problems = shard_problems(trees)
    assert any("different boards or cost data" in p for p in problems)
    assert any(p.startswith("shard 2/3 is in more than one output directory") for p in problems)


def test_cache_warms_dispatch_but_never_the_split(demo: tuple[Path, Path, list[Board]],
                                                 tmp_path: Path) -> None:
    """A new -o starts from the user's cache of the tree; a shard split ignores it."""
    from buildfleet.fleet.dispatch.costfile import update_cache
    from buildfleet.fleet.dispatch.costsources import run_costs, shard_costs, tree_id

    tree, _cfg, boards = demo
    board = boards[0]
    cold = shard_costs(tree, boards, None).estimate(board)
    assert update_cache(tree_id(tree), CostData({board.target: {"": cold * 7}})) is None
    warnings: list[str] = []
    warm = run_costs(tree, boards, tmp_path / "new-output-dir", None, warnings.append)
    assert warm.estimate(board) == pytest.approx(cold * 7)
    assert warnings == []
    assert shard_costs(tree, boards, None).estimate(board) == cold
