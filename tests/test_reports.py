"""The JSON, JUnit and HTML reports on a hand-written buildman-format tree."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

import world_report
from buildfleet.cmdline import options, parse_args
from buildfleet.options import ReportOptions
from buildfleet.results.report_html import render_html
from buildfleet.results.report_json import ReportError, load_schema
from buildfleet.results.reports import write_reports
from cdp import Browser, chromium_binary
from ci_skip import require
from results_tree import BOARDS, COMMITS, ERR, MAKE_ERR, UNBUILT, WARN, make_tree

ALL_BOARDS = [*BOARDS, UNBUILT]


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tmp_path_factory.mktemp("out") / "demo")


@pytest.fixture(scope="module")
def reports(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reports")
    args = parse_args(["-s", "-b", "demo", "--report", str(out / "r.json"),
                       "--junit", str(out / "junit.xml"), "--html", str(out / "html")])
    write_reports(options(args, ReportOptions), tree, COMMITS, ALL_BOARDS)
    return out


def test_json_valid_and_complete(reports: Path) -> None:
    doc = json.loads((reports / "r.json").read_text())
    jsonschema.validate(doc, load_schema())
    assert (doc["schema"], doc["version"]) == ("buildfleet-report", 1)
    assert doc["run"]["branch"] == "demo"
    assert doc["run"]["counts"] == {"ok": 5, "warning": 3, "error": 1, "not-built": 3}
    assert len(doc["results"]) == 12
    by = {(r["target"], r["commit"]): r for r in doc["results"]}
    broken = by[("board_b", 1)]
    assert (broken["status"], broken["return_code"]) == ("error", 2)
    assert broken["errors"] == [ERR, MAKE_ERR] and broken["machine"] == "m1"
    assert by[("board_a", 1)]["warnings"][-1] == WARN
    assert by[("board_a", 0)]["toolchain"]["arch"] == "arm"
    assert by[("board_a", 0)]["duration"] == 12.5
    assert by[("board_c", 1)]["sizes"]["u-boot"]["all"] == 3394
    unbuilt = by[("board_d", 2)]
    assert (unbuilt["status"], unbuilt["return_code"], unbuilt["machine"]) == \
        ("not-built", None, None)
    agg = [c["aggregate"] for c in doc["commits"]]
    assert agg[1]["new_failures"] == ["board_b"] and agg[2]["fixed_failures"] == ["board_b"]
    assert agg[1]["new_warnings"] == ["board_a", "board_c"]
    assert agg[2]["fixed_warnings"] == ["board_c"]
    assert agg[1]["error_lines"]["new"] == [{"text": ERR, "boards": ["board_b"]},
                                            {"text": MAKE_ERR, "boards": ["board_b"]}]
    assert agg[1]["warning_lines"]["new"][1] == {"text": WARN, "boards": ["board_a", "board_c"]}
    assert agg[1]["size_deltas"]["riscv"]["average"] == {"all": 64.0, "text": 64.0}
    assert agg[2]["size_deltas"]["arm"]["per_board"] == {"board_a": {"all": 16, "bss": 16}}
    assert [c["directory"] for c in doc["commits"]][0] == "01_g" + "1" * 40 + "_Initial-commit"


def test_schema_rejects_bad_status(reports: Path) -> None:
    doc = json.loads((reports / "r.json").read_text())
    doc["results"][0]["status"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, load_schema())


def test_junit(reports: Path) -> None:
    root = ET.parse(reports / "junit.xml").getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("12", "1", "3")
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == 12
    failures = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failures] == ["board_b@02_222222222222"]
    assert failures[0].get("classname") == "arm"
    failure = failures[0].find("failure")
    assert failure is not None and failure.text == f"{ERR}\n{MAKE_ERR}"
    warned = [c for c in cases if c.find("system-out") is not None]
    assert len(warned) == 3
    assert len(root.findall("./testsuite/testcase/skipped")) == 3
    assert root.findall("./testsuite")[1].get("name") == "02_222222222222: Add warning to foo"


def test_html_static(reports: Path) -> None:
    page = (reports / "html" / "index.html").read_text()
    assert len(re.findall(r'<td class="cell ', page)) == 12
    assert page.count('data-status="error"') == 1
    # one size plot per arch (arm, riscv, sandbox); sandbox's board_d has no sizes
    assert page.count('<div class="plot"') == 3
    assert len(re.findall(r'<polyline class="mean" points="\d', page)) == 2
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    # the error cell links to its lines, which are on the page, escaped
    cell = re.search(r'<td class="cell error" data-board="board_b" data-commit="1" '
                     r'data-status="error"[^>]*><a href="#(L\d+)">', page)
    assert cell, "the error cell links to its lines"
    block = re.search(rf'<div class="log" id="{cell.group(1)}"[^>]*>(.*?)</div>', page, re.S)
    assert block and "expected &#x27;;&#x27; before" in block.group(1)
    assert "board_b @ 02" in block.group(1)


def test_html_in_chromium(reports: Path, tmp_path: Path) -> None:
    binary = chromium_binary()
    require(binary is not None, "chromium is not installed")
    assert binary is not None
    url = (reports / "html" / "index.html").as_uri()
    with Browser(binary, tmp_path / "profile") as page:
        page.load(url)
        assert page.js("document.body.dataset.ready") == "1"  # the page's script ran
        assert page.js("document.getElementById('ncells').textContent") == "12"
        assert page.js("document.querySelectorAll('svg polyline').length") == 2
        # a click on the broken cell shows its lines in the side panel
        page.js("document.querySelector('td.cell.error').click()")
        assert page.js("getComputedStyle(document.getElementById('panel')).display") == "block"
        assert ERR in page.js("document.querySelector('#panel pre').textContent")
        # a click on a board name draws that board's own size plot
        page.js("document.querySelector('tr[data-board=board_c] a.b').click()")
        assert page.js("document.querySelectorAll('#panel svg circle').length") == 3
        page.screenshot(tmp_path / "shot.png")
    assert (tmp_path / "shot.png").stat().st_size > 5000


def _visible(page: Browser) -> list[dict[str, str]]:
    return page.js("Array.from(document.querySelectorAll('#rows tr')).filter(function(tr)"
                   "{return !tr.hidden;}).map(function(tr){return {board: tr.dataset.board,"
                   " arch: tr.dataset.arch, delta: tr.dataset.delta};})")


def test_world_scale_html_filters_in_chromium(tmp_path: Path) -> None:
    """1,500 boards x 10 commits in one page: the filter and sorting work in a real browser."""
    binary = chromium_binary()
    require(binary is not None, "chromium is not installed")
    assert binary is not None
    doc = world_report.world_doc()
    jsonschema.validate(doc, load_schema())
    page_file = tmp_path / "index.html"
    page_file.write_text(render_html(doc))
    boards = doc["boards"]
    assert len(boards) == 1500 and len(doc["commits"]) == 10
    statuses: dict[str, set[str]] = {}
    for r in doc["results"]:
        statuses.setdefault(r["target"], set()).add(r["status"])
    with Browser(binary, tmp_path / "profile") as page:
        page.load(page_file.as_uri())
        assert page.js("document.body.dataset.ready") == "1"
        assert page.js("document.querySelectorAll('td.cell').length") == 15000
        assert len(_visible(page)) == 1500
        # by arch
        page.js("var s=document.getElementById('arch');s.value='riscv';"
                "s.dispatchEvent(new Event('change'))")
        riscv = sorted(b["target"] for b in boards if b["arch"] == "riscv")
        assert sorted(r["board"] for r in _visible(page)) == riscv
        assert page.js("document.getElementById('shown').textContent") == str(len(riscv))
        # by arch and status
        page.js("var s=document.getElementById('arch');s.value='';"
                "s.dispatchEvent(new Event('change'));var t=document.getElementById('status');"
                "t.value='error';t.dispatchEvent(new Event('change'))")
        broken = sorted(t for t, st in statuses.items() if "error" in st)
        assert sorted(r["board"] for r in _visible(page)) == broken
        # text typed into the box matches error lines too (after the input debounce)
        page.type_text("#q", "readl_relaxed")
        page.js("new Promise(function(r){setTimeout(r,300)})")
        m68k = sorted(b["target"] for b in boards if b["arch"] == world_report.BROKEN_ARCH)
        assert sorted(r["board"] for r in _visible(page)) == m68k
        # sort by size change, largest first (second click on the column)
        page.js("var t=document.getElementById('status');t.value='';"
                "t.dispatchEvent(new Event('change'));var q=document.getElementById('q');"
                "q.value='';q.dispatchEvent(new Event('input'))")
        page.js("new Promise(function(r){setTimeout(r,300)})")
        for _ in range(2):
            page.js("document.querySelector('th[data-sort=delta]').click()")
        deltas = [int(r["delta"]) for r in _visible(page) if r["delta"] != ""]
        assert len(deltas) > 1000 and deltas == sorted(deltas, reverse=True)
        # filters given in the address
        page.load(page_file.as_uri() + f"?arch={world_report.UNBUILT_ARCH}&status=not-built")
        unbuilt = sorted(b["target"] for b in boards if b["arch"] == world_report.UNBUILT_ARCH)
        assert sorted(r["board"] for r in _visible(page)) == unbuilt


def test_report_error_is_one_line(tree: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = parse_args(["-s", "--report", str(blocker / "r.json")])
    with pytest.raises(ReportError, match=r"^cannot write report .*r\.json: "):
        write_reports(options(args, ReportOptions), tree, COMMITS, ALL_BOARDS)
