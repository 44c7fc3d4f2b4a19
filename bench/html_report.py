"""The HTML report at world scale: page size, render time, and load time in headless Chromium.

A world build is ~1,500 boards; with 10 commits that is 15,000 grid cells in
one self-contained page. This bench renders the page for a generated
world-shaped report (tests/world_report.py: the same document the Chromium
test loads), then loads it in headless Chromium over the DevTools pipe and
reports, per load: the time from navigation to the load event, to the first
contentful paint, and to two animation frames after the load event (the grid
drawn and the page's script done), plus the time the page takes to apply a
filter (arch, then a text that searches the error lines) and to sort the
grid. Side by side, in alternation, it loads the bare grid (the same 15,000
cells in a plain table: no style, no script, no plots, no error lines), and
prints last the ratio of the report's load to the bare grid's: what the
report's features cost over the table any page of these results must draw,
a figure a busy shared machine disturbs far less than the absolute times.
Figures go in the README's performance table.

Usage: python3 bench/html_report.py [--boards N] [--commits N] [--loads N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import gzip
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from buildfleet.results.report_html import render_html  # noqa: E402
from cdp import Browser, chromium_binary  # noqa: E402
from world_report import world_doc  # noqa: E402

TIMING_JS = """
new Promise(function(done){
  requestAnimationFrame(function(){requestAnimationFrame(function(){
    var nav=performance.getEntriesByType('navigation')[0];
    var fcp=performance.getEntriesByName('first-contentful-paint')[0];
    done({load: nav.loadEventEnd, dcl: nav.domContentLoadedEventEnd,
          fcp: fcp ? fcp.startTime : null, frames: performance.now()});
  });});
})
"""

ACTION_JS = """
new Promise(function(done){
  var t0=performance.now();
  %s
  requestAnimationFrame(function(){requestAnimationFrame(function(){
    done({ms: performance.now()-t0, shown: document.getElementById('shown').textContent});
  });});
})
"""

def bare_grid(page: str) -> str:
    """The same grid rows in a plain page: the floor any page of these results pays."""
    start, end = page.index("<table"), page.index("</table>") + len("</table>")
    table = re.sub(r"<colgroup>.*?</colgroup>", "", page[start:end], flags=re.S)
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'></head><body>{table}</body></html>"


ACTIONS = {
    "filter arch=arm": "var s=document.getElementById('arch');s.value='arm';"
                       "s.dispatchEvent(new Event('change'));",
    "filter text (error lines)": "var s=document.getElementById('arch');s.value='';"
                                 "var q=document.getElementById('q');q.value='readl_relaxed';"
                                 "s.dispatchEvent(new Event('change'));",
    "clear filters": "var q=document.getElementById('q');q.value='';"
                     "document.getElementById('arch').dispatchEvent(new Event('change'));",
    "sort by size change": "document.querySelector('th[data-sort=delta]').click();",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--boards", type=int, default=1500)
    ap.add_argument("--commits", type=int, default=10)
    ap.add_argument("--loads", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="write the page here instead of a temp dir")
    args = ap.parse_args(argv)
    binary = chromium_binary()
    if binary is None:
        print("chromium is not installed", file=sys.stderr)
        return 1
    doc = world_doc(args.boards, args.commits)
    t0 = time.perf_counter()
    page = render_html(doc)
    render_s = time.perf_counter() - t0
    data = page.encode()
    with tempfile.TemporaryDirectory(prefix="bf-html-bench-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "index.html"
        path.write_bytes(data)
        bare = out / "bare.html"
        bare.write_text(bare_grid(page))
        print(f"page: {args.boards} boards x {args.commits} commits = "
              f"{args.boards * args.commits} cells; {len(data) / 1e6:.2f} MB "
              f"({len(gzip.compress(data)) / 1e6:.2f} MB gzipped); rendered in {render_s:.2f} s")
        loads, fcps, drawn, bare_drawn = [], [], [], []
        with Browser(binary, Path(tmp) / "profile") as browser:
            for _ in range(args.loads):
                start = time.perf_counter()
                browser.load(bare.as_uri())
                browser.js(TIMING_JS)
                bare_drawn.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                browser.load(path.as_uri())
                timing = browser.js(TIMING_JS)
                wall = time.perf_counter() - start
                loads.append(timing["load"])
                drawn.append(wall * 1000)
                if timing["fcp"] is not None:
                    fcps.append(timing["fcp"])
            print(f"load event: median {statistics.median(loads):.0f} ms; first contentful "
                  f"paint: {statistics.median(fcps):.0f} ms" if fcps else "")
            print(f"navigate -> drawn (2 frames after load, script done), wall: median "
                  f"{statistics.median(drawn):.0f} ms over {args.loads} loads")
            for name, action in ACTIONS.items():
                result = browser.js(ACTION_JS % action)
                print(f"{name}: {result['ms']:.0f} ms ({result['shown']} boards shown)")
        ours, floor = statistics.median(drawn), statistics.median(bare_drawn)
        print(f"bare grid drawn: median {floor:.0f} ms; report / bare grid: {ours / floor:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
