"""Scripts the boss sends on their own to a machine's python3 run there.

The leftovers reaper is ``fleet/worker/reaper.py`` plus a main, piped to the
machine's ``python3 -``, where no buildfleet package is installed; an import
of buildfleet in it once made every lost worker's makes run on (the script
died with ModuleNotFoundError). Here it runs under Debian's python3 in
isolated mode, with none of this environment's packages on its path.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from buildfleet.fleet.machines.leftovers import script
from buildfleet.fleet.machines.selection import LOCK_NAME
from ci_skip import require

SYSTEM_PYTHON = "/usr/bin/python3"


def _system_python() -> str:
    require(os.access(SYSTEM_PYTHON, os.X_OK), f"{SYSTEM_PYTHON} is missing")
    return SYSTEM_PYTHON


def test_the_leftovers_reaper_runs_without_buildfleet(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    run = subprocess.run([_system_python(), "-I", "-", str(work), "0", LOCK_NAME],
                         input=script(), capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "stopped 0", run.stdout + run.stderr
