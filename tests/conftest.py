"""Shared pytest fixtures.

The sshd harness (a real OpenSSH server on 127.0.0.1 with throw-away users as
machines) is session-scoped: starting it costs about a second, and every
distributed test may use it. Its teardown fails the run if anything it made
(processes, users, homes, files) survived.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ci_skip import require
from sshd_harness import SshdHarness, harness_unavailable_reason

# faultkit's ``fleet`` fixture (the sshd harness, checked clean after each
# test) serves both fault-injection modules.
pytest_plugins = ("faultkit",)


def pytest_configure(config: pytest.Config) -> None:
    """Put this interpreter's scripts (the ``buildfleet`` command) first on PATH.

    The README runs the tests as ``.venv/bin/python -m pytest`` without
    activating the venv; tests that run ``buildfleet`` must get the venv's.
    """
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # Runs keep a per-user cache of board costs: the tests' goes to a
    # directory of their own, removed at the end, never to the user's.
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="buildfleet-test-cache-")
    # Tests press Ctrl-C on the buildfleet they start (SIGINT to its pid). A
    # session started with SIGINT ignored (under nohup, as a script's background
    # job) hands SIG_IGN on to every child, and Python keeps an inherited SIG_IGN:
    # the child would never see the Ctrl-C. A handler is reset to the default at
    # exec, so setting one here gives every child the default back.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_unconfigure(config: pytest.Config) -> None:
    cache = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.basename(cache).startswith("buildfleet-test-cache-"):
        shutil.rmtree(cache, ignore_errors=True)


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
    from buildfleet.fleet.machines.ssh import SshSession

    session = SshSession.create()
    try:
        yield session
    finally:
        session.close()
