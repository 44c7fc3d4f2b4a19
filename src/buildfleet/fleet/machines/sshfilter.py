"""``git push`` over SSH to a machine whose shell prints a banner on stdout.

Why: sshd runs every command through the user's shell, and a ``~/.bashrc``
that echoes a greeting puts it on stdout before ``git-receive-pack`` speaks,
which breaks git's protocol ("the remote end hung up unexpectedly"). The boss
points ``GIT_SSH_COMMAND`` at this module: it prefixes the remote command
with ``echo <token>``, drops everything the remote side prints before that
token, and passes the rest through untouched. Usage (what git runs)::

    python -m buildfleet.fleet.machines.sshfilter TOKEN ssh [opts] HOST COMMAND
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

CHUNK = 1 << 16
MAX_PREAMBLE = 1 << 20


def filtered_command(token: str, command: str) -> str:
    """The remote command that announces where the real output starts."""
    return f"echo {shlex.quote(token)}; {command}"


def strip_preamble(read: int, write: int, marker: bytes) -> bool:
    """Copy ``read`` to ``write``, skipping everything up to and including ``marker``.

    False if the stream ended (or grew past MAX_PREAMBLE) without the marker.
    """
    buf = b""
    while True:
        data = os.read(read, CHUNK)
        if not data:
            return False
        buf += data
        at = buf.find(marker)
        if at >= 0:
            rest = buf[at + len(marker):]
            break
        if len(buf) > MAX_PREAMBLE:
            return False
        buf = buf[-len(marker):]
    while rest:
        rest = rest[os.write(write, rest):]
    while True:
        data = os.read(read, CHUNK)
        if not data:
            return True
        while data:
            data = data[os.write(write, data):]


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: sshfilter TOKEN SSH... COMMAND", file=sys.stderr)
        return 2
    token, ssh, command = argv[0], argv[1:-1], argv[-1]
    proc = subprocess.Popen([*ssh, filtered_command(token, command)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        found = strip_preamble(proc.stdout.fileno(), sys.stdout.fileno(),
                               token.encode() + b"\n")
    except OSError:
        found = False
    if not found:
        proc.kill()
    rc = proc.wait()
    return rc if found or rc else 255


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
