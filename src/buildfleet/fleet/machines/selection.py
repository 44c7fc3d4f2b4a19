"""Which machines a run uses: the ``[machines]`` of the settings, narrowed by ``--use-machines``.

Kept apart from probing and SSH so that choosing machines is pure and cheap to
test: it never touches the network. Names keep their case (``[machines]``
keys are case-sensitive in buildfleet, unlike buildman's lower-casing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from buildfleet.errors import UserError

if TYPE_CHECKING:
    from buildfleet.settings import MachineConfig, Settings

# Where a worker keeps its git repo, worktrees, shipped tool and lock, on the machine.
DEFAULT_WORK_DIR = "~/.buildfleet-worker"
LOCK_NAME = ".lock"


class MachinesError(UserError):
    """A bad machine selection or an empty fleet (one-line message)."""


def parse_machine_list(text: str) -> list[str]:
    """``A,B, C`` -> ``['A', 'B', 'C']`` (empty items dropped, order and case kept)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def select_machines(settings: Settings, use_machines: str | None) -> list[MachineConfig]:
    """The machines of ``settings``, or only those named in ``use_machines`` (in that order).

    Raises MachinesError naming any unknown machine and the known ones.
    """
    known = list(settings.machines)
    if use_machines is None:
        return known
    wanted = parse_machine_list(use_machines)
    if not wanted:
        raise MachinesError("--use-machines: no machine named")
    by_name = {m.name: m for m in known}
    unknown = [name for name in wanted if name not in by_name]
    if unknown:
        names = ", ".join(m.name for m in known) or "none; add a [machines] section"
        plural = "s" if len(unknown) > 1 else ""
        raise MachinesError(f"--use-machines: unknown machine{plural} "
                            f"{', '.join(unknown)} (known: {names})")
    return [by_name[name] for name in dict.fromkeys(wanted)]


def configured_machines(settings: Settings, use_machines: str | None,
                        stderr: TextIO) -> list[MachineConfig] | None:
    """The machines a fleet command works on, or None (after saying why) if none."""
    machines = select_machines(settings, use_machines)
    if not machines:
        print(f"No machines configured. Add a [machines] section to {settings.path}",
              file=stderr)
        return None
    return machines
