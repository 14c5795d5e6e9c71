"""A smoke run of bench/kpi_bench.py: 20 000 orders on SQLite and PostgreSQL, and
every KPI statement's plan reads its table through an index (no full scan)."""

from __future__ import annotations

import re

import pytest

from bench import kpi_bench
from tests.conftest import need
from tests.postgres import find_bindir


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_smoke_run_uses_indexes(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    if db == "postgresql":
        need("PostgreSQL server (initdb, pg_ctl)", find_bindir() is not None, "make deps")
    rc = kpi_bench.main(["--rows", "20000", "--db", db, "--repeat", "1"])
    out = capsys.readouterr().out
    assert f"{db}_full_scans: 0" in out, out
    assert rc == 0
    for case in ("all", "centre", "by_centre"):
        for stmt in ("calls", "on_time", "feedback", "rehandling", "satisfaction"):
            assert re.search(rf"^{db}_{case}_{stmt}_ms: \d+\.\d$", out, re.M), (case, stmt)
    index_word = "USING INDEX" if db == "sqlite" else "Index Scan on"
    for ix in ("ix_calls_started", "ix_orders_deadline", "ix_orders_replied",
               "ix_orders_dispatched", "ix_orders_closed", "ix_orders_survey"):
        assert re.search(rf"{index_word} {ix}\b", out), ix


def test_full_scan_lines_are_recognised() -> None:
    assert kpi_bench.full_scan("SCAN work_orders")
    assert kpi_bench.full_scan("->  Seq Scan on order_calls  (cost=0.00..877.00 rows=1 width=16)")
    assert not kpi_bench.full_scan("SEARCH work_orders USING INDEX ix_orders_survey (survey_at>?)")
    assert not kpi_bench.full_scan("SCAN order_calls USING COVERING INDEX ix_calls_started")
    assert not kpi_bench.full_scan("USE TEMP B-TREE FOR GROUP BY")
