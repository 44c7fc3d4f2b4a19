"""The JSON, JUnit and HTML reports on a hand-written buildman-format tree."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

from buildfleet.cmdline import parse_args
from buildfleet.results.report_json import ReportError, load_schema
from buildfleet.results.reports import write_reports
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
    write_reports(args, tree, COMMITS, ALL_BOARDS)
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
    assert page.count("<polyline") == 3  # board_d has no sizes
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    assert "expected &#x27;;&#x27; before" in page  # error lines behind the cell, escaped


def _chromium() -> str | None:
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


def _chromium_cmd(binary: str, profile: Path) -> list[str]:
    return [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}"]


def test_html_in_chromium(reports: Path, tmp_path: Path) -> None:
    binary = _chromium()
    require(binary is not None, "chromium is not installed")
    assert binary is not None
    url = (reports / "html" / "index.html").as_uri()
    dom = subprocess.run([*_chromium_cmd(binary, tmp_path / "p1"), "--dump-dom", url],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert 'data-ready="1"' in dom  # the page's script ran
    assert len(re.findall(r'<td class="cell ', dom)) == 12
    assert '<span id="ncells">12</span>' in dom  # counted by the script
    assert dom.count("<polyline") == 3
    shot = tmp_path / "shot.png"
    subprocess.run([*_chromium_cmd(binary, tmp_path / "p2"), f"--screenshot={shot}",
                    "--window-size=1200,900", url],
                   capture_output=True, timeout=60, check=True)
    assert shot.stat().st_size > 5000


def test_report_error_is_one_line(tree: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = parse_args(["-s", "--report", str(blocker / "r.json")])
    with pytest.raises(ReportError, match=r"^cannot write report .*r\.json: "):
        write_reports(args, tree, COMMITS, ALL_BOARDS)
