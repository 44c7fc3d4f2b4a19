"""A static HTML page of a run: a board × commit grid, error lines, per-arch size plots.

Meant to be opened from disk or served as a CI artifact, so everything is
inline (CSS, a little JS, SVG drawn here in Python) and nothing is fetched at
view time. It must stay usable for a world build, 1,500 boards × 10 commits
in one file, so:

- each grid cell is one small ``<td>`` (``class="cell <status>"``,
  ``data-board``, ``data-commit``, ``data-status``, the contract scripts
  rely on); a cell with error or warning lines links to them;
- error and warning lines are listed once per distinct block of lines, with
  every board × commit that printed it (a header broken for all boards is
  one entry, not 1,500);
- sizes are one plot per arch (:mod:`report_plots`), a board's own curve is
  drawn by the script on demand from the sizes the page carries as data.

Without JS the page still shows everything; the script adds the filter,
sorting and the side panel (:mod:`report_html_assets`). Rendered from the
JSON report document, like the JUnit file.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

from buildfleet.model import Board, Commit
from buildfleet.results.paths import Bases
from buildfleet.results.report_html_assets import CSS, JS
from buildfleet.results.report_json import build_report, write_text
from buildfleet.results.report_plots import arch_plot, arch_series

_LABEL = {"ok": "ok", "warning": "W", "error": "✗", "not-built": "–"}
_LETTER = {"error": "e", "warning": "w", "ok": "o", "not-built": "n"}
STATUS_CHOICES = (("", "any status"), ("problem", "errors or warnings"), ("error", "error"),
                  ("warning", "warning"), ("ok", "ok"), ("not-built", "not built"))


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _commit_label(commit: dict[str, Any]) -> str:
    if commit["hash"] is None:
        return "current"
    return f"{commit['sequence'] + 1:02d}"


class _Blocks:
    """Distinct blocks of error/warning lines, each with the board × commits that printed it."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.owners: list[list[tuple[str, str]]] = []
        self.texts: list[str] = []

    def add(self, text: str, target: str, label: str) -> str:
        index = self.ids.get(text)
        if index is None:
            index = self.ids[text] = len(self.texts)
            self.texts.append(text)
            self.owners.append([])
        self.owners[index].append((target, label))
        return f"L{index}"

    def render(self) -> str:
        out = []
        for index, (text, owners) in enumerate(zip(self.texts, self.owners, strict=True)):
            boards = " ".join(dict.fromkeys(t for t, _ in owners))
            who = ", ".join(f"{t} @ {label}" for t, label in owners)
            out.append(f'<div class="log" id="L{index}" data-boards="{_e(boards)}">'
                       f'<h3>{_e(who)}</h3><pre>{_e(text)}</pre></div>')
        return "".join(out)


def _cell(target: str, commit: dict[str, Any], res: dict[str, Any] | None,
          blocks: _Blocks) -> tuple[str, str]:
    """(the cell's HTML, its status)."""
    status = res["status"] if res else "not-built"
    label = _LABEL[status]
    lines = (res["errors"] + res["warnings"]) if res else []
    if lines:
        anchor = blocks.add("\n".join(lines), target, _commit_label(commit))
        label = f'<a href="#{anchor}">{label}</a>'
    extra = f' data-machine="{_e(res["machine"])}"' if res and res["machine"] else ""
    return (f'<td class="cell {status}" data-board="{_e(target)}" '
            f'data-commit="{commit["sequence"]}" data-status="{status}"{extra}>{label}</td>',
            status)


def _delta(sizes: list[int | None]) -> int | None:
    known = [s for s in sizes if s is not None]
    return known[-1] - known[0] if len(known) >= 2 else None


def _grid(doc: dict[str, Any], blocks: _Blocks) -> tuple[str, dict[str, list[int | None]]]:
    """The grid's rows, and every board's u-boot size per commit index."""
    commits = doc["commits"]
    by_key = {(r["target"], r["commit"]): r for r in doc["results"]}
    rows = []
    sizes: dict[str, list[int | None]] = {}
    for board in doc["boards"]:
        target = board["target"]
        cells = []
        has: set[str] = set()
        series: list[int | None] = []
        for commit in commits:
            res = by_key.get((target, commit["sequence"]))
            cell, status = _cell(target, commit, res, blocks)
            cells.append(cell)
            has.add(_LETTER[status])
            series.append(res["sizes"].get("u-boot", {}).get("all") if res else None)
        sizes[target] = series
        delta = _delta(series)
        shown = "" if delta is None else f"{delta:+d}" if delta else "0"
        rows.append(f'<tr class="row" data-board="{_e(target)}" data-arch="{_e(board["arch"])}" '
                    f'data-has="{"".join(sorted(has))}" '
                    f'data-delta="{"" if delta is None else delta}">'
                    f'<th class="board"><a class="b" href="#plots" title="size plot">'
                    f'{_e(target)}</a></th><td class="arch">{_e(board["arch"])}</td>'
                    f'{"".join(cells)}<td class="num">{shown}</td></tr>')
    return "".join(rows), sizes


def _plots(doc: dict[str, Any], sizes: dict[str, list[int | None]], labels: list[str]) -> str:
    by_arch: dict[str, list[list[int | None]]] = {}
    for board in doc["boards"]:
        by_arch.setdefault(board["arch"], []).append(sizes[board["target"]])
    out = []
    for arch in sorted(by_arch, key=lambda a: (-len(by_arch[a]), a)):
        series = arch_series(arch, by_arch[arch])
        out.append(f'<div class="plot" data-arch="{_e(arch)}"><h3>{_e(arch)}: '
                   f'{series.boards_with_sizes} of {series.boards} boards with sizes</h3>'
                   f'{arch_plot(series, labels)}</div>')
    return "".join(out)


def render_html(doc: dict[str, Any]) -> str:
    """The whole page for a report document (see :func:`report_json.build_report`)."""
    commits = doc["commits"]
    labels = [_commit_label(c) for c in commits]
    blocks = _Blocks()
    rows, sizes = _grid(doc, blocks)
    archs = Counter(b["arch"] for b in doc["boards"])
    head = "".join(f'<th data-sort="{i}" title="{_e(c["hash"] or "current source")}: '
                   f'{_e(c["subject"])} (click to sort by status)">{_e(labels[i])}</th>'
                   for i, c in enumerate(commits))
    cols = ('<col style="width:15em"><col style="width:6em">'
            + '<col style="width:3.2em">' * len(commits) + '<col style="width:6em">')
    arch_opts = "".join(f'<option value="{_e(a)}">{_e(a)} ({n})</option>'
                        for a, n in sorted(archs.items()))
    st_opts = "".join(f'<option value="{v}">{t}</option>' for v, t in STATUS_CHOICES)
    counts = doc["run"]["counts"]
    count_html = "".join(f'<span class="{k}">{_e(k)}: {v}</span>' for k, v in counts.items())
    legend = "".join(f"<li><b>{_e(label)}</b> {_e(c['hash'] or 'current source')[:12]} "
                     f"{_e(c['subject'])}</li>" for label, c in zip(labels, commits, strict=True))
    data = json.dumps({"commits": labels, "sizes": sizes, "counts": counts},
                      separators=(",", ":")).replace("</", "<\\/")
    nboards = len(doc["boards"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>buildfleet report</title><style>{CSS}</style></head>
<body data-ready="0">
<h1>buildfleet report</h1>
<p class="muted">{_e(doc["run"]["output_dir"])} &middot; generated {_e(doc["run"]["generated"])}
&middot; {nboards} boards &times; {len(commits)} commits,
<span id="ncells">{len(doc["results"])}</span> results</p>
<p class="counts">{count_html}</p>
<details><summary>commits</summary><ol class="muted">{legend}</ol></details>
<div class="controls"><input type="search" id="q" placeholder="board, arch or error text">
<select id="arch"><option value="">every arch</option>{arch_opts}</select>
<select id="status">{st_opts}</select>
<span class="muted"><span id="shown">{nboards}</span> of {nboards} boards shown;
click a column to sort, a board for its size plot, a cell for its lines</span></div>
<table class="grid"><colgroup>{cols}</colgroup>
<thead><tr><th data-sort="board">board</th><th data-sort="arch">arch</th>{head}
<th data-sort="delta" title="u-boot size change, first to last commit">&Delta; bytes</th>
</tr></thead>
<tbody id="rows">{rows}</tbody></table>
<h2 id="plots">u-boot size change over the commits, per arch</h2>
<p class="muted">Line: mean change of the arch's boards since each one's first size;
band: smallest to largest change.</p>
<div class="plots">{_plots(doc, sizes, labels)}</div>
<h2>Error and warning lines</h2>
<div id="logs">{blocks.render() or '<p class="muted">none</p>'}</div>
<div id="panel"><button class="close" title="close">&times;</button><h3></h3>
<div class="body"></div></div>
<script type="application/json" id="report-data">{data}</script>
<script>{JS}</script>
</body></html>
"""


def write_html_report(dir: Path, base: Bases, commits: list[Commit], boards: list[Board]) -> None:
    """Write ``dir/index.html`` for the results under ``base``."""
    write_text(dir / "index.html", render_html(build_report(base, commits, boards)))
