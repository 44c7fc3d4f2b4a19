"""Kconfig adjustments (``-a``, ``-X`` fragments): parse, merge, and check they held.

A build asked for with ``-a CONFIG_X=y`` that quietly comes out without X is a
build of something else. So an adjustment is applied the way Kconfig itself
resolves options (the board's minimal defconfig from ``make savedefconfig``,
with the adjustments laid over it, through ``make alldefconfig`` with
``KCONFIG_ALLCONFIG``; defaults, ``select`` and ``imply`` re-evaluate) and
then *checked* against the resulting ``.config``: one that a dependency turned
off again becomes an error line naming the option, and the board fails.

Formats (buildman's and kbuild's): ``-a`` takes ``X``, ``CONFIG_X``,
``~X``, ``X=val`` and ``X="string"``, comma lists allowed; ``.config`` and
fragments use ``CONFIG_X=val`` and ``# CONFIG_X is not set`` lines.
Runs on workers too, so the standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ADJUST_RECORD = "adjust-cfg"
"""buildfleet's own result file: the ``-a``/``--fragments`` a result was built with.

One line per item (``fragment NAME`` then canonical adjustments); absent when
there were none. The plan rebuilds a result whose record differs from the
run's, since ``-a`` does not change the output directory's name."""

ALLCONFIG = ".buildfleet-allconfig"
"""The merged minimal config handed to ``make alldefconfig`` (in the O= dir)."""

_ARG_RE = re.compile(r"^([A-Za-z0-9_]+)(?:=(.*))?$")
_SET_RE = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
_UNSET_RE = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set$")


FRAGMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*\.config$")
"""A ``--fragments`` item: a file name make looks up (never a path, never an option)."""


class AdjustError(ValueError):
    """An ``-a`` item or a fragment line that is not a Kconfig assignment."""


@dataclass(frozen=True)
class Adjustment:
    """One requested option value. ``value`` None means "not set" (``~X``, ``X=n``).

    ``origin`` says where it came from (``-a`` or a fragment's path), for messages.
    """

    name: str
    value: str | None
    origin: str = "-a"

    @property
    def text(self) -> str:
        """Canonical form: ``CONFIG_X=val`` or ``~CONFIG_X``."""
        return f"~CONFIG_{self.name}" if self.value is None else f"CONFIG_{self.name}={self.value}"

    @property
    def config_line(self) -> str:
        """The line as ``.config`` and fragments write it."""
        if self.value is None:
            return f"# CONFIG_{self.name} is not set"
        return f"CONFIG_{self.name}={self.value}"


def parse_adjust_args(items: Iterable[str]) -> list[Adjustment]:
    """Parse ``-a`` values (each may be a comma list); later items win for one option.

    Raises AdjustError naming the bad item. ``X`` and ``X=y`` enable, ``~X``
    and ``X=n`` disable; any other value is kept as given (quotes included).
    """
    by_name: dict[str, Adjustment] = {}
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            negate = part.startswith("~")
            body = part[1:] if negate else part
            match = _ARG_RE.match(body.removeprefix("CONFIG_"))
            if not match:
                raise AdjustError(f"invalid -a/--adjust-cfg item {part!r} (use X, ~X, X=val "
                                  "or X=\"string\", with or without CONFIG_)")
            name, value = match.groups()
            if negate and value is not None:
                raise AdjustError(f"invalid -a/--adjust-cfg item {part!r}: '~' takes no value")
            if negate or value == "n":
                adj = Adjustment(name, None)
            else:
                adj = Adjustment(name, "y" if value is None else value)
            by_name.pop(name, None)
            by_name[name] = adj
    return list(by_name.values())


def parse_fragment(text: str, origin: str) -> list[Adjustment]:
    """The assignments of a config fragment (``CONFIG_X=val`` / ``# CONFIG_X is not set``).

    Comments and blank lines are skipped; anything else raises AdjustError
    naming ``origin`` and the line number.
    """
    out: dict[str, Adjustment] = {}
    for num, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        unset = _UNSET_RE.match(line)
        if unset:
            out.pop(unset.group(1), None)
            out[unset.group(1)] = Adjustment(unset.group(1), None, origin)
            continue
        if line.startswith("#"):
            continue
        match = _SET_RE.match(line)
        if not match:
            raise AdjustError(f"{origin}:{num}: not a Kconfig assignment: {line!r}")
        name, value = match.groups()
        out.pop(name, None)
        out[name] = Adjustment(name, None if value == "n" else value, origin)
    return list(out.values())


def read_config(text: str) -> dict[str, str | None]:
    """``.config`` text -> {option name: value}, None for ``is not set``."""
    values: dict[str, str | None] = {}
    for line in text.splitlines():
        line = line.strip()
        match = _SET_RE.match(line)
        if match:
            values[match.group(1)] = match.group(2)
            continue
        unset = _UNSET_RE.match(line)
        if unset:
            values[unset.group(1)] = None
    return values


def merge_defconfig(defconfig: str, adjustments: list[Adjustment]) -> str:
    """A minimal defconfig with each adjusted option's line replaced by the adjustment."""
    names = {a.name for a in adjustments}
    kept = []
    for line in defconfig.splitlines():
        match = _SET_RE.match(line.strip()) or _UNSET_RE.match(line.strip())
        if match and match.group(1) in names:
            continue
        kept.append(line)
    return "".join(f"{line}\n" for line in kept + [a.config_line for a in adjustments])


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def same_value(want: str, have: str) -> bool:
    """Equal as Kconfig sees it: quotes optional, hex with or without ``0x``."""
    if want == have or _unquote(want) == _unquote(have):
        return True
    base = 16 if "0x" in (want[:2].lower(), have[:2].lower()) else 10
    try:
        return int(want, base) == int(have, base)
    except ValueError:
        return False


def failed(adjustments: list[Adjustment], config: dict[str, str | None]) -> list[str]:
    """One error line per adjustment that ``config`` (a read ``.config``) does not show.

    An option asked off holds when ``.config`` says ``is not set`` or does not
    mention it (an option whose dependencies are unmet is off and unlisted).
    """
    lines = []
    for adj in adjustments:
        have = config.get(adj.name)
        if adj.value is None or adj.value == "n":
            if have is None or have == "n":
                continue
            got = f"has CONFIG_{adj.name}={have}"
        else:
            if have is not None and same_value(adj.value, have):
                continue
            if adj.name not in config:
                got = f"has no CONFIG_{adj.name} (its dependencies are not met)"
            elif have is None:
                got = f"has '# CONFIG_{adj.name} is not set' (a dependency turned it off)"
            else:
                got = f"has CONFIG_{adj.name}={have}"
        lines.append(f"error: {adj.origin} {adj.text} did not take effect: .config {got}")
    return lines


def check_config(path: Path, adjustments: list[Adjustment]) -> list[str]:
    """:func:`failed` for the ``.config`` at ``path`` (missing file: every one fails)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return [f"error: {a.origin} {a.text} did not take effect: no .config" for a in adjustments]
    return failed(adjustments, read_config(text))
