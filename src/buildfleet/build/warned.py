"""Keep a warning in the results for as long as its cause exists.

An incremental build compiles only what changed, so a warning printed by an
earlier commit's build would not be printed again; the builder removes the
objects of the files that warned so that make compiles them once more.
"""

from __future__ import annotations

import re
from pathlib import Path

_DIAG_SOURCE_RE = re.compile(r"^([^\s:]+\.[cS]):\d+:(?:\d+:)? (?:warning|error):", re.M)


def forget_objects(out_dir: Path | None, source_dir: Path, stderr: str) -> None:
    """Delete the objects of source files that produced diagnostics.

    An incremental build does not recompile an unchanged file, so its warning
    would vanish from the next commit's result and the summary would call it
    fixed. Removing its object makes make compile it again, so a warning
    persists for exactly as long as its cause does.

    The compiler names a file as make handed it over: relative to the source
    tree (an in-tree build), or, as kbuild does with ``O=``, relative to the
    output directory it runs in (``../common/board_r.c``) or absolute. Each
    form is resolved to a file of the source tree; the SPL/TPL/VPL objects of
    that file are removed too, since they compile from the same source.
    """
    root = out_dir if out_dir is not None else source_dir
    source = source_dir.resolve()
    for match in _DIAG_SOURCE_RE.finditer(stderr):
        rel = _source_relative(Path(match.group(1)), out_dir, source)
        if rel is None:
            continue
        obj = rel.with_suffix(".o")
        for phase in (Path(), Path("spl"), Path("tpl"), Path("vpl")):
            (root / phase / obj).unlink(missing_ok=True)


def _source_relative(named: Path, out_dir: Path | None, source: Path) -> Path | None:
    """The source-tree path of a file a diagnostic names, or None if outside the tree."""
    bases = [out_dir, source] if out_dir is not None else [source]
    for base in bases:
        base = base if base.is_absolute() else source / base
        full = (named if named.is_absolute() else base / named).resolve()
        if full.is_relative_to(source) and full.is_file():
            return full.relative_to(source)
    return None
