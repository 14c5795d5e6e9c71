"""test_closed_loop.py with ``storage.url`` on PostgreSQL: work orders, recordings,
call-backs, surveys and transfers all in a throw-away PostgreSQL 15 cluster
(tests/postgres.py; a missing PostgreSQL fails the run under CI=true)."""

from __future__ import annotations

from typing import Any

import pytest

from queues import callback_store
from recordings import store as recordings_store
from transfer import store as transfer_store
from workorders import survey_store

from .harness import Hotline
from .test_closed_loop import hotline_config as sqlite_config
from .test_closed_loop import test_a_call_goes_round_the_loop as round_the_loop


def hotline_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    cfg = sqlite_config()
    cfg["storage"] = {"url": request.getfixturevalue("pg_url")}
    return cfg


def test_a_call_goes_round_the_loop_on_postgresql(clean: Hotline, workdir: Any) -> None:
    round_the_loop(clean, workdir)
    # nothing of it went to the instance's SQLite files (each store's own file name; the
    # call tracker's calls.sqlite is local by design)
    state = clean.instance.state
    local = {"workorders.sqlite", callback_store.FILENAME, transfer_store.FILENAME,
             recordings_store.FILENAME, survey_store.FILENAME}
    assert len(local) == 5 and not local & {p.name for p in state.iterdir()}, list(state.iterdir())
