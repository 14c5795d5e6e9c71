"""Shared test rules.

Under CI (CI=true) a test that needs Asterisk, SIPp, Redis, espeak-ng or sox
fails when the part is missing; on a developer machine it is skipped with the
command that installs it.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(what: str, present: bool, how: str = "make setup") -> None:
    if present:
        return
    msg = f"{what} is missing (install with: {how})"
    if IN_CI:
        pytest.fail(msg)
    pytest.skip(msg)


def need_tool(tool: str, how: str = "make deps") -> str:
    path = shutil.which(tool)
    need(tool, path is not None, how)
    assert path is not None
    return path


# The session fixture ``pg_url``: a throw-away PostgreSQL cluster (tests/postgres.py).
from tests.postgres import pg_url  # noqa: E402, F401
