"""The soak (bench/soak.py) as a test: excluded by default (``-m soak`` runs it).

100 boards x 3 commits over two loopback machines and the local slots while
workers are killed or stopped at random; the last line must say nothing was
lost, written twice or written wrong.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ci_skip import require
from sshd_harness import harness_unavailable_reason

pytestmark = [pytest.mark.soak, pytest.mark.sshd]

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"


def test_soak_loses_nothing_and_doubles_nothing() -> None:
    reason = harness_unavailable_reason()
    require(reason is None, reason or "")
    proc = subprocess.run([sys.executable, str(SOAK), "--boards", "100", "--commits", "3",
                           "--seed", "7", "--deadline", "600"],
                          capture_output=True, text=True, timeout=1200)
    last = proc.stdout.strip().splitlines()[-1]
    assert last == "results lost: 0, duplicated: 0, wrong: 0", proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the worker on" in proc.stdout
