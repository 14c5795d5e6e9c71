"""The five KPIs (workorders/kpi.py) on a generated set of orders, against values
counted by hand over the same records (tests/kpi_data.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import itertools
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import create_engine, insert, text
from sqlalchemy.engine import Engine

from hotline.storage import open_engine
from tests.kpi_data import CATEGORIES, CENTRES, DAYS, T0, UNITS, generate, hand_count
from workorders.kpi import KPI_NAMES, KpiFilter, compute, compute_grouped, csv_rows
from workorders.schema import Base
from workorders.store import CALLS as CALLS_TABLE
from workorders.store import ORDERS as ORDERS_TABLE

ORDERS, CALLS = generate()
END = T0 + timedelta(days=DAYS + 30)


def load(engine: Engine) -> Engine:
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(ORDERS_TABLE), ORDERS)
        conn.execute(insert(CALLS_TABLE), CALLS)
    return engine


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = open_engine(f"sqlite:///{tmp_path_factory.mktemp('kpi')}/orders.db")
        yield load(eng)
        eng.dispose()
        return
    # A database of our own in the session's cluster: other tests use its default one.
    base_url = request.getfixturevalue("pg_url")
    name = f"kpi_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    eng = create_engine(base_url.rsplit("/", 1)[0] + f"/{name}")
    yield load(eng)
    eng.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}"'))
    admin.dispose()


def kpis(engine: Engine, **kw: object) -> dict[str, object]:
    with engine.connect() as conn:
        return compute(conn, KpiFilter(**kw)).as_dict()  # type: ignore[arg-type]


def test_the_generated_set_has_every_case() -> None:
    """The hand counts mean something only if every branch of every definition occurs."""
    dispatched = [o for o in ORDERS if o["dispatched_at"] and o["status"] != "merged"]
    assert 200 < len(dispatched) < 350
    assert any(o["replied_at"] == o["deadline"] for o in dispatched)  # the boundary: on time
    assert any(o["replied_at"] and o["replied_at"] > o["deadline"] for o in dispatched)
    assert any(o["replied_at"] is None for o in dispatched)
    # re-dispatched after re-handling: an old reply, a new deadline, waiting for the unit
    assert sum(o["status"] in ("dispatched", "accepted") and o["replied_at"] is not None
               for o in dispatched) >= 5
    assert any(o["rehandled"] for o in dispatched if o["closed_at"])
    assert sum(o["status"] == "merged" for o in ORDERS) > 10
    surveys = {o["survey"] for o in ORDERS}
    assert surveys == {None, "satisfied", "basic", "dissatisfied", "no_answer"}
    assert any(c["wait_seconds"] == 15.0 and c["answered_at"] for c in CALLS)
    assert any(c["wait_seconds"] is None for c in CALLS)
    assert any(c["wait_seconds"] is not None and c["answered_at"] is None for c in CALLS)


def test_whole_period(engine: Engine) -> None:
    got = kpis(engine, start=T0 - timedelta(days=1), end=END)
    want = hand_count(ORDERS, CALLS, T0 - timedelta(days=1), END)
    assert got == want
    for k in KPI_NAMES:  # no KPI is trivially 0 or 1 on this set
        assert 0 < want[k]["rate"] < 1, k


MONTHS = [(T0 + timedelta(days=30 * i), T0 + timedelta(days=30 * (i + 1))) for i in range(3)]


@pytest.mark.parametrize("start,end", MONTHS)
def test_one_month(engine: Engine, start: datetime, end: datetime) -> None:
    assert kpis(engine, start=start, end=end) == hand_count(ORDERS, CALLS, start, end)


def test_deadlines_after_now_are_not_missed_yet(engine: Engine) -> None:
    """A report for a period that is not over: orders due later are not late yet."""
    start, end = MONTHS[1]
    now = start + timedelta(days=12, hours=5)
    got = kpis(engine, start=start, end=end, now=now)
    want = hand_count(ORDERS, CALLS, start, end, now=now)
    assert got == want
    assert want["on_time"] != hand_count(ORDERS, CALLS, start, end)["on_time"]


def test_period_bounds_in_another_time_zone(engine: Engine) -> None:
    """[start, end) is compared in UTC whatever zone the bounds are given in."""
    cst = timezone(timedelta(hours=8))
    start, end = datetime(2026, 4, 1, 8, tzinfo=cst), datetime(2026, 4, 15, 8, tzinfo=cst)
    assert kpis(engine, start=start, end=end) == hand_count(ORDERS, CALLS, start, end)


@pytest.mark.parametrize("centre", CENTRES)
def test_one_centre(engine: Engine, centre: str) -> None:
    start, end = MONTHS[1]
    got = kpis(engine, start=start, end=end, centres=frozenset({centre}))
    assert got == hand_count(ORDERS, CALLS, start, end, centres={centre})


def test_several_centres(engine: Engine) -> None:
    """A supervisor of the province sees the cities below it: a set of centres."""
    sel = {"province", "ganzhou"}
    got = kpis(engine, start=T0, end=END, centres=frozenset(sel))
    assert got == hand_count(ORDERS, CALLS, T0, END, centres=sel)


@pytest.mark.parametrize("unit", UNITS)
def test_one_unit(engine: Engine, unit: str) -> None:
    got = kpis(engine, start=T0, end=END, unit=unit)
    assert got == hand_count(ORDERS, CALLS, T0, END, unit=unit)


@pytest.mark.parametrize("category", CATEGORIES)
def test_one_category(engine: Engine, category: str) -> None:
    start, end = T0, MONTHS[1][1]
    got = kpis(engine, start=start, end=end, category=category)
    assert got == hand_count(ORDERS, CALLS, start, end, category=category)


def test_all_filters_together(engine: Engine) -> None:
    for centre, unit, category in itertools.product(CENTRES[:2], UNITS[:2], CATEGORIES[2:4]):
        got = kpis(engine, start=T0, end=END, centres=frozenset({centre}),
                   unit=unit, category=category)
        want = hand_count(ORDERS, CALLS, T0, END, {centre}, unit, category)
        assert got == want, (centre, unit, category)


def test_an_empty_period_has_no_rates(engine: Engine) -> None:
    got = kpis(engine, start=T0 - timedelta(days=400), end=T0 - timedelta(days=300))
    for k in KPI_NAMES:
        assert got[k] == {"numerator": 0, "denominator": 0, "rate": None} | (
            {"no_answer": 0} if k == "satisfaction" else {})


@pytest.mark.parametrize("group_by", ["centre", "unit", "category"])
def test_grouped_reports_match_filtered_ones(engine: Engine, group_by: str) -> None:
    start, end = MONTHS[0]
    with engine.connect() as conn:
        reports = compute_grouped(conn, KpiFilter(start, end), group_by)
    values = {"centre": CENTRES, "unit": UNITS, "category": CATEGORIES}[group_by]
    assert set(values) <= set(reports)
    for v in values:
        flt = {"centres": {v}} if group_by == "centre" else {group_by: v}
        assert reports[v].as_dict() == hand_count(ORDERS, CALLS, start, end, **flt), v  # type: ignore[arg-type]


def test_csv_export(engine: Engine) -> None:
    start, end = MONTHS[2]
    with engine.connect() as conn:
        reports = compute_grouped(conn, KpiFilter(start, end), "unit")
    text_out = io.StringIO()
    csv.writer(text_out).writerows(csv_rows(reports, "unit"))
    rows = list(csv.DictReader(io.StringIO(text_out.getvalue())))
    assert list(rows[0]) == ["unit", "kpi", "label", "numerator", "denominator", "rate"]
    by_key = {(r["unit"], r["kpi"]): r for r in rows}
    assert len(by_key) == len(rows)
    for unit in UNITS:
        want = hand_count(ORDERS, CALLS, start, end, unit=unit)
        for k in KPI_NAMES:
            r = by_key[(unit, k)]
            assert (int(r["numerator"]), int(r["denominator"])) == (
                want[k]["numerator"], want[k]["denominator"])
            assert r["rate"] == ("" if want[k]["rate"] is None else f"{want[k]['rate']:.4f}")
    assert by_key[("water", "on_time")]["label"] == "按时办结率"


def test_bad_filters_are_refused() -> None:
    with pytest.raises(ValueError, match="end must be after start"):
        KpiFilter(T0, T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        KpiFilter(datetime(2026, 1, 1), datetime(2026, 2, 1))
