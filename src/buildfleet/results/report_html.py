"""A static HTML page of a run: a board x commit grid and size plots.

Meant to be opened from disk or served as a CI artifact, so everything is
inline (CSS, a little JS, SVG drawn here in Python) and nothing is fetched at
view time. Each grid cell opens its error lines; the page works without JS,
JS only adds a side panel and a filter. Rendered from the JSON report
document, like the JUnit file.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from buildfleet.model import Board, Commit
from buildfleet.results.report_json import build_report, write_text

_LABEL = {"ok": "ok", "warning": "W", "error": "✗", "not-built": "–"}

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .3em} h2{font-size:1.15em;margin:1.5em 0 .5em}
.counts span{margin-right:1.2em} table.grid{border-collapse:collapse}
.grid th,.grid td{border:1px solid #ccc;padding:2px 6px;text-align:center;vertical-align:top}
.grid th.board{text-align:left;font-weight:normal;font-family:monospace}
.grid thead th{font-weight:normal;font-size:12px;max-width:12em}
td.cell{min-width:3em;cursor:pointer} td.cell summary{list-style:none}
.ok{background:#c8efc8}.warning{background:#fbe7a1}.error{background:#f4b0ab}
.not-built{background:#e4e4e4;color:#777} td.cell.sel{outline:3px solid #36c}
pre{white-space:pre-wrap;text-align:left;font-size:12px;margin:.3em 0}
#panel{position:fixed;right:1em;bottom:1em;width:45%;max-height:40%;overflow:auto;
background:#fff;border:1px solid #999;padding:.5em 1em;box-shadow:0 2px 8px #0003;display:none}
.plots{display:flex;flex-wrap:wrap;gap:1em}.plot{background:#fff;border:1px solid #ddd;padding:.4em}
.plot h3{font:12px monospace;margin:0}.muted{color:#888;font-size:12px}
"""

_JS = """
(function(){
  var panel=document.getElementById('panel');
  var cells=document.querySelectorAll('td.cell');
  cells.forEach(function(td){
    td.addEventListener('click',function(ev){
      cells.forEach(function(c){c.classList.remove('sel');});
      td.classList.add('sel');
      var pre=td.querySelector('pre');
      panel.style.display='block';
      panel.querySelector('h3').textContent=td.dataset.board+' @ '+td.dataset.commitLabel+
        ' : '+td.dataset.status;
      panel.querySelector('pre').textContent=pre?pre.textContent:'(no error or warning lines)';
      ev.preventDefault();
    });
  });
  document.getElementById('filter').addEventListener('change',function(ev){
    var onlyBad=ev.target.checked;
    document.querySelectorAll('tr.row').forEach(function(tr){
      tr.style.display=(onlyBad&&!tr.querySelector('td.error,td.warning'))?'none':'';
    });
  });
  document.body.dataset.ready='1';
  document.getElementById('ncells').textContent=cells.length;
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _commit_label(commit: dict[str, Any]) -> str:
    if commit["hash"] is None:
        return "current"
    return f"{commit['sequence'] + 1:02d}"


def size_plot(points: list[tuple[int, int | None]], n_commits: int, width: int = 260,
              height: int = 90) -> str:
    """An inline SVG polyline of u-boot's total size per commit index (None = no data)."""
    known = [(i, v) for i, v in points if v is not None]
    if not known:
        return '<p class="muted">no size data</p>'
    lo = min(v for _, v in known)
    hi = max(v for _, v in known)
    span = (hi - lo) or 1
    pad = 8

    def xy(i: int, v: int) -> tuple[float, float]:
        x = pad + (width - 2 * pad) * (i / max(1, n_commits - 1))
        if hi == lo:
            return round(x, 1), height / 2
        y = height - pad - (height - 2 * pad) * ((v - lo) / span)
        return round(x, 1), round(y, 1)

    coords = [xy(i, v) for i, v in known]
    poly = " ".join(f"{x},{y}" for x, y in coords)
    dots = "".join(f'<circle cx="{x}" cy="{y}" r="3" fill="#36c"><title>commit {i + 1}: '
                   f'{v} bytes</title></circle>' for (i, v), (x, y) in zip(known, coords,
                                                                            strict=True))
    return (f'<svg class="sizeplot" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" role="img">'
            f'<rect width="{width}" height="{height}" fill="#fff"/>'
            f'<text x="{pad}" y="10" font-size="9" fill="#888">{hi}</text>'
            f'<text x="{pad}" y="{height - 1}" font-size="9" fill="#888">{lo}</text>'
            f'<polyline points="{poly}" fill="none" stroke="#36c" stroke-width="2"/>'
            f'{dots}</svg>')


def render_html(doc: dict[str, Any]) -> str:
    commits = doc["commits"]
    by_key = {(r["target"], r["commit"]): r for r in doc["results"]}
    head = "".join(f'<th title="{_e(c["hash"] or "current source")}">{_e(_commit_label(c))}'
                   f'<br>{_e(c["subject"][:30])}</th>' for c in commits)
    rows = []
    plots = []
    for board in doc["boards"]:
        target = board["target"]
        cells = []
        points: list[tuple[int, int | None]] = []
        for index, commit in enumerate(commits):
            res = by_key.get((target, commit["sequence"]))
            status = res["status"] if res else "not-built"
            lines = (res["errors"] + res["warnings"]) if res else []
            label = _e(_LABEL[status])
            if lines:
                inner = (f"<details><summary>{label}</summary>"
                         f"<pre>{_e(chr(10).join(lines))}</pre></details>")
            else:
                inner = label
            extra = ""
            if res and res["machine"]:
                extra += f' data-machine="{_e(res["machine"])}"'
            cells.append(f'<td class="cell {status}" data-board="{_e(target)}" '
                         f'data-commit="{commit["sequence"]}" '
                         f'data-commit-label="{_e(_commit_label(commit))}" '
                         f'data-status="{status}"{extra}>{inner}</td>')
            size = res["sizes"].get("u-boot", {}).get("all") if res else None
            points.append((index, size))
        rows.append(f'<tr class="row"><th class="board">{_e(target)} '
                    f'<span class="muted">{_e(board["arch"])}</span></th>{"".join(cells)}</tr>')
        plots.append(f'<div class="plot" data-board="{_e(target)}"><h3>{_e(target)}</h3>'
                     f'{size_plot(points, len(commits))}</div>')
    counts = doc["run"]["counts"]
    count_html = "".join(f'<span class="{k}">{_e(k)}: {v}</span>' for k, v in counts.items())
    data = json.dumps({"counts": counts}).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>buildfleet report</title><style>{_CSS}</style></head>
<body data-ready="0">
<h1>buildfleet report</h1>
<p class="muted">{_e(doc["run"]["output_dir"])} &middot; generated {_e(doc["run"]["generated"])}
&middot; <span id="ncells">{len(doc["results"])}</span> results</p>
<p class="counts">{count_html}</p>
<label><input type="checkbox" id="filter"> only boards with errors or warnings</label>
<h2>Boards &times; commits</h2>
<table class="grid"><thead><tr><th>board</th>{head}</tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<h2>u-boot size over commits</h2>
<div class="plots">{"".join(plots)}</div>
<div id="panel"><h3></h3><pre></pre></div>
<script type="application/json" id="report-data">{data}</script>
<script>{_JS}</script>
</body></html>
"""


def write_html_report(dir: Path, base: Path, commits: list[Commit], boards: list[Board]) -> None:
    """Write ``dir/index.html`` for the results under ``base``."""
    write_text(dir / "index.html", render_html(build_report(base, commits, boards)))
