"""Skip a test whose environment is missing, except in CI where it must fail.

CI promises the cross compilers, sshd and root; a silent skip there would hide
a broken job, so with ``CI=true`` a missing prerequisite is a failure.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    """True when the environment variable CI is set to 'true'."""
    return os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip (or fail under CI=true) the calling test unless ``condition``."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)
