"""The --report, --junit and --html flags: which report files a run writes.

The CLI calls one function after a build or a summary; each report reads
the output tree itself, so reports also work on a tree built earlier or by
buildman.
"""

from __future__ import annotations

from pathlib import Path

from buildfleet.model import Board, Commit
from buildfleet.options import ReportOptions
from buildfleet.results.paths import Bases
from buildfleet.results.report_html import write_html_report
from buildfleet.results.report_json import ReportError, write_json_report
from buildfleet.results.report_junit import write_junit_report

__all__ = ["ReportError", "write_reports"]


def write_reports(opts: ReportOptions, base: Bases, commits: list[Commit],
                  boards: list[Board]) -> None:
    """Write each report asked for; raises ReportError with a one-line message."""
    report, junit, html_dir = opts.report, opts.junit, opts.html
    if report:
        write_json_report(Path(report), base, commits, boards, extra={"branch": opts.branch})
    if junit:
        write_junit_report(Path(junit), base, commits, boards)
    if html_dir:
        write_html_report(Path(html_dir), base, commits, boards)
