"""A world build split over CI jobs: real shard builds of the demo tree, merged again.

One full build and the N shard builds of the same boards and commits (real
git, make and cross gcc); ``-s``, ``--report`` and ``--junit`` over the N
output trees must say what they say over the full one. Durations are the
only thing two builds may differ in (with ``make -j`` fixed), so the reports
are compared with them (and the report's own time and paths) taken out; the
summary byte for byte.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bfrun import Run, require_cross, run_bf
from buildfleet.demo import make_demo_tree
from buildfleet.results.report_json import load_schema

SHARDS = 2
BUILD = ["-b", "demo", "-c", "2"]
# make -j rises as a run's slots go idle, and each result records its make
# command: fix it, so that the only difference between two builds is time.
MAKE_J = ["-j", "1"]
SUMMARY_FLAGS = ["-s", "-e", "-l", "-S", "-d", "-K", "-U"]


@dataclass
class Built:
    root: Path
    tree: Path
    full: Path
    shards: list[Path]

    def out_args(self, dirs: list[Path]) -> list[str]:
        return [arg for d in dirs for arg in ("-o", str(d))]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    require_cross()
    root = tmp_path_factory.mktemp("ci")
    tree = make_demo_tree(root / "tree").path
    full = root / "full"
    runs = [run_bf([*BUILD, *MAKE_J, "-o", str(full)], tree)]
    shards = [root / f"shard-{k}" for k in range(1, SHARDS + 1)]
    for k, out in enumerate(shards, 1):
        runs.append(run_bf([*BUILD, *MAKE_J, "--shard", f"{k}/{SHARDS}", "-o", str(out)], tree))
    for run in runs:
        assert run.returncode in (0, 100, 101), run  # built; errors and warnings are results
    return Built(root, tree, full, shards)


def listed_boards(run: Run) -> list[str]:
    """The boards ``-n -v`` lists under its ``Shard`` line."""
    lines = run.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Shard "))
    return [line.split()[0] for line in lines[start + 1:] if line.startswith("   ")]


def test_dry_run_shards_cover_the_selection(built: Built) -> None:
    whole = run_bf(["-n", "-v", "-o", str(built.root / "dry")], built.tree)
    assert whole.returncode == 0, whole
    everything = whole.stdout.split("all : ")[1].splitlines()[1].split()
    parts = []
    for k in range(1, 4):
        run = run_bf(["-n", "-v", "--shard", f"{k}/3", "-o", str(built.root / "dry")],
                     built.tree)
        assert run.returncode == 0, run
        assert re.search(rf"^Shard {k}/3: \d+ of 8 boards, expected [\d.]+ s of build time",
                         run.stdout, re.M), run
        assert "priors from the board database" in run.stdout
        parts.append(listed_boards(run))
    assert sorted(b for p in parts for b in p) == sorted(everything)
    assert all(p for p in parts)


def test_merged_summary_equals_the_full_builds(built: Built) -> None:
    full = run_bf([*BUILD, *SUMMARY_FLAGS, "-o", str(built.full)], built.tree)
    merged = run_bf([*BUILD, *SUMMARY_FLAGS, *built.out_args(built.shards)], built.tree)
    assert full.returncode == merged.returncode == 0, (full, merged)
    assert "error:" in full.stdout  # the demo branch's broken commit is in the range
    assert merged.stdout == full.stdout
    assert merged.stderr == full.stderr == ""


def _report_without_times(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    for key in ("generated", "output_dir", "output_dirs"):
        doc["run"].pop(key, None)
    for result in doc["results"]:
        result.pop("duration", None)
    return doc


def test_merged_reports_equal_the_full_builds(built: Built) -> None:
    r = built.root
    full = run_bf([*BUILD, "-s", "-o", str(built.full), "--report", str(r / "full.json"),
                   "--junit", str(r / "full.xml")], built.tree)
    merged = run_bf([*BUILD, "-s", *built.out_args(built.shards), "--report",
                     str(r / "merged.json"), "--junit", str(r / "merged.xml")], built.tree)
    assert full.returncode == merged.returncode == 0, (full, merged)
    assert _report_without_times(r / "merged.json") == _report_without_times(r / "full.json")
    merged_doc = json.loads((r / "merged.json").read_text())
    assert merged_doc["run"]["output_dirs"] == [str(d / "demo") for d in built.shards]
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(merged_doc, load_schema())
    # JUnit: byte for byte but for the measured times.
    untimed = re.compile(r' time="[0-9.]+"')
    assert (untimed.sub("", (r / "merged.xml").read_text())
            == untimed.sub("", (r / "full.xml").read_text()))


def test_a_missing_shard_is_named(built: Built) -> None:
    absent = built.root / "shard-never-unpacked"
    run = run_bf([*BUILD, "-s", "-o", str(built.shards[0]), "-o", str(absent)], built.tree)
    assert run.returncode == 1, run
    assert run.stderr.strip().splitlines() == [
        f"buildfleet: error: missing shard 2/{SHARDS}: no output directory given holds it "
        "(its boards show as not built)",
        f"buildfleet: error: {absent / 'demo'} does not exist (a shard's artifacts not "
        "unpacked?)"]
    assert run.stdout.startswith("Summary of")  # the summary of what is there still comes


def test_exported_costs_balance_the_next_split(built: Built) -> None:
    costs = built.root / "costs.json"
    run = run_bf([*BUILD, "-s", *built.out_args(built.shards), "--export-costs", str(costs)],
                 built.tree)
    assert run.returncode == 0, run
    doc = json.loads(costs.read_text())
    assert doc["format"] == "buildfleet-costs" and doc["version"] == 1
    assert len(doc["boards"]) == 8
    assert all(secs > 0 for hosts in doc["boards"].values() for secs in hosts.values())
    dry = run_bf(["-n", "-v", "--shard", "1/2", "--costs", str(costs), "-o",
                  str(built.root / "dry")], built.tree)
    assert dry.returncode == 0, dry
    assert f"measured costs from {costs}" in dry.stdout


def test_each_build_warms_the_users_cache(built: Built) -> None:
    from buildfleet.fleet.dispatch.costfile import cache_path, read_costs
    from buildfleet.fleet.dispatch.costsources import tree_id

    cached = read_costs(cache_path(tree_id(built.tree)))
    assert len(cached.durations) == 8  # every board, from the full build and the shards


def test_bad_cost_files_and_options_are_one_line_errors(built: Built) -> None:
    broken = built.root / "broken.json"
    broken.write_text("{not json")
    cases = [
        (["-n", "--shard", "1/2", "--costs", str(broken)], "is not JSON"),
        (["-n", "--shard", "1/2", "--costs", str(built.root / "absent.json")],
         "cannot read cost file"),
        (["-n", "--shard", "3/2"], "K must be between 1 and N"),
        (["-n", "-o", "a", "-o", "b"], "several -o directories can only be read together"),
        (["-n", "--export-costs", "x.json"], "use it with -s"),
    ]
    for args, message in cases:
        run = run_bf(args, built.tree)
        assert run.returncode == 1, run
        # One error line (the board scan may warn before it, as in any run).
        errors = [ln for ln in run.stderr.splitlines() if "error" in ln.lower()]
        assert len(errors) == 1 and errors[0].startswith("buildfleet: error: "), run
        assert message in errors[0] and "Traceback" not in run.stderr, run
