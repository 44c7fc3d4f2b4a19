"""JUnit XML for CI servers (GitLab, Jenkins) that already know how to show tests.

Each board x commit is one test case: a failed build is a failure carrying
its error lines, warnings go to system-out, a board that was never built is
skipped. It is rendered from the JSON report document so the two agree.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from buildfleet.model import Board, Commit
from buildfleet.results.paths import Bases
from buildfleet.results.report_json import build_report, write_text

# XML 1.0 forbids most control characters; compilers sometimes print them.
_BAD_XML = {c: None for c in range(32) if c not in (9, 10, 13)}


def _clean(text: str) -> str:
    return text.translate(_BAD_XML)


def commit_label(commit: dict[str, Any]) -> str:
    if commit["hash"] is None:
        return "current"
    return f"{commit['sequence'] + 1:02d}_{commit['hash'][:12]}"


def junit_tree(doc: dict[str, Any]) -> ET.Element:
    """The <testsuites> element: one suite per commit, one case per board."""
    commits = {c["sequence"]: c for c in doc["commits"]}
    root = ET.Element("testsuites", name="buildfleet")
    suites: dict[int, ET.Element] = {}
    totals = {"tests": 0, "failures": 0, "skipped": 0}
    for seq, commit in commits.items():
        name = commit_label(commit) + (f": {commit['subject']}" if commit["subject"] else "")
        suites[seq] = ET.SubElement(root, "testsuite", name=_clean(name))
    counts = {seq: {"tests": 0, "failures": 0, "skipped": 0, "time": 0.0} for seq in suites}
    for res in doc["results"]:
        seq = res["commit"]
        label = commit_label(commits[seq])
        case = ET.SubElement(suites[seq], "testcase", classname=res["arch"],
                             name=f"{res['target']}@{label}",
                             time=f"{res['duration'] or 0:.3f}")
        count = counts[seq]
        count["tests"] += 1
        count["time"] += res["duration"] or 0.0
        if res["status"] == "error":
            count["failures"] += 1
            failure = ET.SubElement(case, "failure", type="build-error",
                                    message=f"build failed (return code {res['return_code']})")
            failure.text = _clean("\n".join(res["errors"]))
        elif res["status"] == "not-built":
            count["skipped"] += 1
            ET.SubElement(case, "skipped", message="not built")
        if res["warnings"]:
            ET.SubElement(case, "system-out").text = _clean("\n".join(res["warnings"]))
    for seq, suite in suites.items():
        count = counts[seq]
        suite.set("tests", str(count["tests"]))
        suite.set("failures", str(count["failures"]))
        suite.set("errors", "0")
        suite.set("skipped", str(count["skipped"]))
        suite.set("time", f"{count['time']:.3f}")
        for key in totals:
            totals[key] += int(count[key])
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("errors", "0")
    return root


def write_junit_report(path: Path, base: Bases, commits: list[Commit],
                       boards: list[Board]) -> None:
    """Write the JUnit XML report of the results under ``base`` to ``path``."""
    root = junit_tree(build_report(base, commits, boards))
    ET.indent(root)
    text = ET.tostring(root, encoding="unicode")
    write_text(path, '<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n")
