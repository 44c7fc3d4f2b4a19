"""A report document shaped like a world build, for the HTML report's scale tests.

~1,500 boards in ~20 archs (arm the biggest, as in U-Boot), 10 commits: most
results OK, some boards warning from a commit on, a few broken at one commit
and fixed at the next, one whole arch broken at one commit by the same error
(one block of lines shared by all its boards), one arch never built (no
toolchain), sizes that grow a little with each commit. Deterministic for a
seed; valid against the shipped JSON schema. Used by tests/test_reports.py and
bench/html_report.py.
"""

from __future__ import annotations

import random
from typing import Any

ARCHS = (("arm", 520), ("aarch64", 330), ("powerpc", 120), ("riscv", 60), ("x86", 70),
         ("mips", 60), ("m68k", 40), ("sandbox", 10), ("microblaze", 10), ("nios2", 10),
         ("sh", 20), ("xtensa", 15), ("arc", 25), ("nds32", 10), ("openrisc", 5),
         ("sparc", 10), ("ppc_fsl", 80), ("armv7m", 60), ("rockchip", 45), ("sunxi", 80))
BROKEN_ARCH = "m68k"
UNBUILT_ARCH = "xtensa"
ARCH_ERROR = ("arch/m68k/include/asm/io.h:42:9: error: implicit declaration of function "
              "'readl_relaxed' [-Werror=implicit-function-declaration]")


def world_doc(boards: int = 1500, commits: int = 10, seed: int = 16) -> dict[str, Any]:
    """The report document (see buildfleet.results.report_json.build_report)."""
    rng = random.Random(seed)
    weights = [n for _, n in ARCHS]
    archs = [a for a, _ in ARCHS]
    board_list = [{"target": f"{arch}_board{i:04d}", "arch": arch, "cpu": "", "soc": "",
                   "vendor": f"vendor{i % 37}", "board": f"b{i}"}
                  for i, arch in enumerate(rng.choices(archs, weights, k=boards))]
    broken_at = commits // 2
    commit_list = [{"sequence": s, "hash": f"{s:02x}" * 20, "subject": f"Change number {s}",
                    "directory": f"{s + 1:02d}_g{f'{s:02x}' * 20}_Change-number-{s}",
                    "aggregate": _empty_aggregate()} for s in range(commits)]
    results = []
    counts = {"ok": 0, "warning": 0, "error": 0, "not-built": 0}
    for b in board_list:
        warn_from = rng.randrange(commits) if rng.random() < 0.08 else None
        break_at = rng.randrange(commits) if rng.random() < 0.03 else None
        size = rng.randrange(200_000, 900_000)
        for s in range(commits):
            size += rng.choice((0, 0, 0, 8, 16, 64, -8))
            entry = _result(b, s, size, rng)
            if b["arch"] == UNBUILT_ARCH:
                entry.update(status="not-built", return_code=None, sizes={}, duration=None,
                             machine=None, toolchain=None, reproducer=None)
            elif b["arch"] == BROKEN_ARCH and s == broken_at:
                entry.update(status="error", return_code=2, sizes={},
                             errors=[ARCH_ERROR, "make[1]: *** [arch/m68k/lib/io.o] Error 1"])
            elif s == break_at:
                entry.update(status="error", return_code=2, sizes={}, errors=[
                    f"board/{b['target']}/board.c:{17 + s}:5: error: '{b['target']}_init' "
                    "undeclared (first use in this function)"])
            elif warn_from is not None and s >= warn_from:
                entry.update(status="warning", warnings=[
                    f"drivers/{b['vendor']}/clk.c: In function 'clk_probe':",
                    f"drivers/{b['vendor']}/clk.c:88:13: warning: unused variable 'rate' "
                    "[-Wunused-variable]"])
            counts[entry["status"]] += 1
            results.append(entry)
    return {
        "schema": "buildfleet-report", "version": 1,
        "run": {"tool": "buildfleet", "tool_version": "0.1.0",
                "generated": "2026-12-01T06:00:00+00:00",
                "output_dir": "/srv/out/world", "current_source": False, "counts": counts,
                "branch": "world"},
        "boards": board_list, "commits": commit_list, "results": results,
    }


def _result(board: dict[str, Any], seq: int, size: int, rng: random.Random) -> dict[str, Any]:
    text = size * 8 // 10
    return {
        "target": board["target"], "arch": board["arch"], "commit": seq, "status": "ok",
        "return_code": 0, "errors": [], "warnings": [],
        "sizes": {"u-boot": {"all": size, "text": text, "data": size - text - 4096, "bss": 4096,
                             "rodata": text // 5}},
        "duration": round(rng.uniform(20, 200), 3), "machine": f"m{rng.randrange(5)}",
        "toolchain": {"gcc": "/usr/bin/gcc", "path": "/usr/bin", "cross": "", "arch": "x"},
        "reproducer": None,
    }


def _empty_aggregate() -> dict[str, Any]:
    return {"counts": {"ok": 0, "warning": 0, "error": 0, "not-built": 0}, "new_failures": [],
            "fixed_failures": [], "new_warnings": [], "fixed_warnings": [],
            "error_lines": {"new": [], "fixed": []}, "warning_lines": {"new": [], "fixed": []},
            "size_deltas": {}}
