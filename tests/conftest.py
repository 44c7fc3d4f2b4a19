"""Shared pytest fixtures.

The sshd harness (a real OpenSSH server on 127.0.0.1 with throw-away users as
machines) is session-scoped: starting it costs about a second, and every
distributed test may use it. Its teardown fails the run if anything it made
(processes, users, homes, files) survived.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ci_skip import require
from sshd_harness import SshdHarness, harness_unavailable_reason


@pytest.fixture(scope="session")
def sshd_harness() -> Iterator[SshdHarness]:
    """sshd on 127.0.0.1 with two loopback machines and one unreachable one.

    Sets BUILDFLEET_SSH_COMMAND for the session; ``settings_file`` is a
    ``~/.buildman``-style file naming the three machines.
    """
    reason = harness_unavailable_reason()
    require(reason is None, reason or "")
    harness = SshdHarness(count=2, unreachable=True).start()
    try:
        yield harness
    finally:
        harness.stop()
    left = harness.leftovers()
    assert not left, f"the sshd harness left things behind: {left}"


@pytest.fixture()
def ssh_session(sshd_harness: SshdHarness) -> Iterator[object]:
    """A buildfleet SshSession for one test; its master connections are closed after."""
    from buildfleet.fleet.ssh import SshSession

    session = SshSession.create()
    try:
        yield session
    finally:
        session.close()
