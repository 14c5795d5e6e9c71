"""test_closed_loop.py with ``storage.url`` on PostgreSQL: work orders, recordings,
call-backs, surveys and transfers all in a throw-away PostgreSQL 15 cluster
(tests/postgres.py; a missing PostgreSQL fails the run under CI=true)."""

from __future__ import annotations

from typing import Any

import pytest

from .harness import Hotline
from .test_closed_loop import hotline_config as sqlite_config
from .test_closed_loop import test_a_call_goes_round_the_loop as round_the_loop


def hotline_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    cfg = sqlite_config()
    cfg["storage"] = {"url": request.getfixturevalue("pg_url")}
    return cfg


def test_a_call_goes_round_the_loop_on_postgresql(clean: Hotline, workdir: Any) -> None:
    round_the_loop(clean, workdir)
    # nothing of it went to the instance's SQLite files
    state = clean.instance.state
    assert not (state / "workorders.sqlite").exists(), list(state.iterdir())
    assert not (state / "recordings.sqlite").exists() and not (state / "surveys.sqlite").exists()
