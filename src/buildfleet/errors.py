"""The one exception tree: every error buildfleet raises on purpose is a ``BuildfleetError``.

Why a tree: the command line catches the root and prints its one-line
message (exit 1), so a new error class can never end in a traceback because
someone forgot to list it. The two branches say whose fault it is:

* ``UserError``: bad input (options, settings, boards, a toolchain that is
  missing, an output directory in the way). The user fixes it.
* ``InfraError``: a machine, its disk, git, SSH or a worker failed. The run
  gives up on that machine (or that board there) and builds elsewhere.

Stdlib only: workers import it on a machine's bare ``python3``.
"""

from __future__ import annotations


class BuildfleetError(Exception):
    """Root of buildfleet's errors; ``str(exc)`` is one line for the user."""


class UserError(BuildfleetError):
    """Bad input from the user: options, files, names. Exit 1, one line."""


class InfraError(BuildfleetError):
    """A machine, disk, git, SSH or worker failure: build elsewhere, report one line."""
