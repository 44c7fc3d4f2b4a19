"""A warning persists after a failed commit, whatever path form the compiler printed.

Seen on a real U-Boot tree: kbuild compiles in ``O=`` and gcc names the file
``../common/board_r.c``; the object of the warned file was kept, the next
incremental commit did not recompile it, and a warning whose cause was still
there vanished from the result. The compiles here are real gcc runs in the
three forms make hands a source over: in-tree, ``O=``-relative, absolute.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from buildfleet.build.warned import forget_objects

WARNS = "int f(void)\n{\n\tint unused_flag;\n\treturn 0;\n}\n"


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    (src / "common").mkdir(parents=True)
    (src / "common" / "board_r.c").write_text(WARNS)
    out = src / "build"
    for phase in ("", "spl/"):
        (out / phase / "common").mkdir(parents=True)
    return src, out


@pytest.mark.parametrize("form", ["kbuild-relative", "absolute", "in-tree"])
def test_the_warned_files_objects_are_removed(tmp_path: Path, form: str) -> None:
    src, out = _tree(tmp_path)
    obj = out / "common" / "board_r.o"
    spl_obj = out / "spl" / "common" / "board_r.o"
    named, cwd = {
        "kbuild-relative": ("../common/board_r.c", out),
        "absolute": (str(src / "common" / "board_r.c"), out),
        "in-tree": ("common/board_r.c", src),
    }[form]
    for target in (obj, spl_obj):
        run = subprocess.run(["gcc", "-Wall", "-c", named, "-o", str(target)], cwd=cwd,
                             capture_output=True, text=True, check=True)
    assert "warning: unused variable" in run.stderr
    assert obj.exists() and spl_obj.exists()
    forget_objects(out, src, run.stderr)
    assert not obj.exists() and not spl_obj.exists()


def test_a_file_outside_the_tree_is_left_alone(tmp_path: Path) -> None:
    src, out = _tree(tmp_path)
    elsewhere = tmp_path / "elsewhere.o"
    elsewhere.write_bytes(b"x")
    forget_objects(out, src, "../../elsewhere.c:3:6: warning: unused variable 'x'\n")
    assert elsewhere.exists()
