"""Zero-install workers: the boss ships its own code to a machine and runs it there.

Why: a machine that needs buildfleet installed (at the same version as the
boss) is a machine that drifts. Instead the boss packs the ``buildfleet``
package and its pure-Python dependencies into ONE zipapp, named by the hash
of its content, copies it into the machine's work directory once, and runs
it with the machine's own ``python3``. The zip is deterministic (sorted
entries, fixed timestamps), so the same code always gives the same name and
a machine that has it already is not sent it again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shlex
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from buildfleet import PROTOCOL_VERSION, __version__
from buildfleet.errors import InfraError
from buildfleet.fleet.machines.selection import DEFAULT_WORK_DIR
from buildfleet.fleet.machines.ssh import SshSession, remote_path, run_ssh

if TYPE_CHECKING:
    from buildfleet.settings import MachineConfig

# Top-level modules and packages that go into the zipapp. The first group is
# required; the second are rich's own dependencies (pure Python), taken when present.
REQUIRED_MODULES = ("buildfleet", "kconfiglib", "elftools", "rich")
OPTIONAL_MODULES = ("pygments", "markdown_it", "mdurl")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
TOOL_DIR = ".tool"
UPLOAD_TIMEOUT_S = 300.0
CHECK_TIMEOUT_S = 60.0
MAIN_PY = b"""import sys

from buildfleet.cli import main

sys.exit(main())
"""

__all__ = ["DEFAULT_WORK_DIR", "ShipError", "Zipapp", "build_zipapp", "check_ready",
           "ensure_shipped", "worker_command"]


class ShipError(InfraError):
    """The tool could not be packed, copied or started on a machine (one line)."""


@dataclass(frozen=True)
class Zipapp:
    """A built zipapp: its local path and its name (``buildfleet-<hash16>.pyz``)."""

    path: Path
    name: str
    sha256: str


def _module_files(module: str) -> Iterator[tuple[str, Path]]:
    """(name inside the zip, local file) for one top-level module or package."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ShipError(f"cannot ship: module {module!r} is not installed")
    origin = Path(spec.origin)
    if origin.name != "__init__.py":
        yield origin.name, origin
        return
    root = origin.parent
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames
                             if d != "__pycache__" and not d.endswith(".egg-info"))
        for fname in filenames:
            if fname.endswith((".pyc", ".pyo")):
                continue
            path = Path(dirpath) / fname
            yield f"{module}/{path.relative_to(root).as_posix()}", path


def zipapp_entries() -> dict[str, bytes]:
    """Every file of the zipapp, by its name inside the zip."""
    entries: dict[str, bytes] = {"__main__.py": MAIN_PY}
    modules = list(REQUIRED_MODULES)
    modules += [m for m in OPTIONAL_MODULES if importlib.util.find_spec(m) is not None]
    for module in modules:
        for name, path in _module_files(module):
            entries[name] = path.read_bytes()
    return entries


def zipapp_bytes(entries: dict[str, bytes]) -> bytes:
    """A deterministic zip of ``entries``: sorted, fixed timestamps and modes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, entries[name], compress_type=zipfile.ZIP_DEFLATED,
                        compresslevel=6)
    return buf.getvalue()


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "buildfleet"


def build_zipapp(cache_dir: Path | None = None) -> Zipapp:
    """Pack the running buildfleet and its dependencies; cache it under its hash name."""
    data = zipapp_bytes(zipapp_entries())
    digest = hashlib.sha256(data).hexdigest()
    name = f"buildfleet-{digest[:16]}.pyz"
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    path = cache / name
    if not (path.is_file() and path.stat().st_size == len(data)):
        try:
            cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=cache)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as exc:
            raise ShipError(f"cannot write the zipapp to {cache}: {exc.strerror}") from None
    return Zipapp(path=path, name=name, sha256=digest)


def ensure_shipped(machine: MachineConfig, session: SshSession,
                   work_dir: str = DEFAULT_WORK_DIR, *, zipapp: Zipapp | None = None,
                   cache_dir: Path | None = None,
                   log: Callable[[str], None] | None = None) -> str:
    """Make sure ``<work_dir>/.tool/<name>.pyz`` is on the machine; return its absolute path.

    The file there is checked by size and SHA-256 (a name alone would trust a
    truncated or damaged copy for ever); it is sent when missing or different,
    through a temporary name and ``mv`` so a half-copied file is never taken
    for a complete one. ``log`` hears why a present copy was replaced.
    """
    app = zipapp if zipapp is not None else build_zipapp(cache_dir)
    tool_dir = f"{work_dir.rstrip('/')}/{TOOL_DIR}"
    name = shlex.quote(app.name)
    # One line: "<state> <size> <sha256> <dir>"; the dir last, as it may hold spaces.
    check = (f"mkdir -p {remote_path(tool_dir)} && cd {remote_path(tool_dir)} && "
             f"if test -f {name}; then echo \"present $(wc -c < {name}) "
             f"$(sha256sum < {name} | cut -c1-64) $(pwd)\"; "
             f"else echo \"missing 0 - $(pwd)\"; fi")
    res = run_ssh(machine, session, check, timeout=CHECK_TIMEOUT_S)
    if not res.ok:
        raise ShipError(f"cannot prepare {tool_dir} on {machine.name}: {res.error}")
    line = res.text.strip().splitlines()[-1] if res.text.strip() else ""
    state, size, digest, abs_dir = (line.split(" ", 3) + ["", "", "", ""])[:4]
    if state not in ("present", "missing") or not abs_dir.startswith("/"):
        raise ShipError(f"unexpected answer from {machine.name}: {res.text.strip()[:100]!r}")
    remote = f"{abs_dir}/{app.name}"
    if state == "present":
        if size.strip() == str(app.path.stat().st_size) and digest == app.sha256:
            return remote
        if log is not None:
            log(f"{machine.name}: the shipped {app.name} is damaged ({size.strip()} bytes, "
                f"expected {app.path.stat().st_size}, or another hash); shipping it again")
    tmp = shlex.quote(f".{app.name}.upload")
    upload = (f"cd {shlex.quote(abs_dir)} && cat > {tmp}.$$ && chmod 644 {tmp}.$$ && "
              f"mv -f {tmp}.$$ {name}")
    res = run_ssh(machine, session, upload, input=app.path.read_bytes(),
                  timeout=UPLOAD_TIMEOUT_S)
    if not res.ok:
        raise ShipError(f"cannot copy the tool to {machine.name}: {res.error}")
    return remote


def worker_command(remote_pyz: str, work_dir: str | None = None, debug: bool = False,
                   buildman_path: str | None = None) -> str:
    """The remote shell command that starts a worker.

    ``python3 <pyz> --worker [-D]``, or with ``--machines-buildman-path``
    ``<PATH> --worker`` (an installed tool: buildman's own worker knows no
    other argument, as in the seed). The work directory goes in ``setup``;
    ``work_dir`` adds buildfleet's ``--work-dir`` (taken at start).
    """
    if buildman_path:
        return f"{remote_path(buildman_path)} --worker"
    cmd = f"python3 {remote_path(remote_pyz)} --worker"
    if work_dir:
        cmd += f" --work-dir {remote_path(work_dir)}"
    return cmd + " -D" if debug else cmd


def check_ready(msg: dict[str, Any], expected_version: str | None = __version__) -> None:
    """Refuse a ``ready`` from a worker of another protocol or (when given) version.

    A ``ready`` without ``protocol`` is the seed's (buildman's worker): protocol 1.
    """
    if msg.get("resp") != "ready":
        shown = repr(msg)[:200]
        raise ShipError(f"worker did not send ready: {shown}")
    proto = msg.get("protocol", PROTOCOL_VERSION)
    version = msg.get("version")
    if proto != PROTOCOL_VERSION:
        raise ShipError(f"worker speaks protocol {proto} (buildfleet {version}), "
                        f"this boss speaks protocol {PROTOCOL_VERSION}")
    if expected_version is not None and version != expected_version:
        raise ShipError(f"worker runs buildfleet {version}, this boss is {expected_version}")
