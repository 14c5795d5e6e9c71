"""The KPI queries (workorders/kpi.py) over a large generated set of work orders.

``python -m bench.kpi_bench [--rows 1000000] [--db sqlite,postgresql]``

Method
------
* ``rows`` work orders over one year (2025-07-01 … 2026-07-01), ~70 % dispatched
  to one of 40 units across 3 centres, and about 1.25 calls per order, made by
  one seeded generator; loaded with ``executemany`` into a fresh SQLite file
  (WAL, as the controller opens it) and with ``COPY`` into a throw-away
  PostgreSQL cluster (:class:`tests.postgres.TempPostgres`), into the tables of
  workorders/schema.py, whose indexes are built after the load; then ``ANALYZE``.
* A report is the five KPI statements (:func:`workorders.kpi.statements`). Each
  is run ``repeat`` times for one month (about 1/12 of the rows): for every
  centre, for one centre, and grouped by centre; the best time per statement is
  printed, with the report's total.
* The plan of each statement (``EXPLAIN QUERY PLAN`` / ``EXPLAIN``) is printed;
  a line that reads a table without an index (SQLite ``SCAN work_orders`` /
  ``SCAN order_calls``, PostgreSQL ``Seq Scan``) is marked ``FULL SCAN`` and
  counted in ``full_scans``.

Figures go to stdout, one ``name: value`` line each; plans are indented below.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from hotline.storage import open_engine
from workorders.kpi import KpiFilter, statements
from workorders.schema import Base

START = datetime(2025, 7, 1, tzinfo=UTC)
SPAN_S = 365 * 86400
CENTRES = ("province", "nanchang", "ganzhou")
UNITS = tuple(f"unit-{i:02d}" for i in range(40))
CATEGORIES = ("consultation", "help", "complaint", "opinion", "suggestion")
SURVEYS = ("satisfied", "satisfied", "basic", "dissatisfied", "no_answer")
ORDER_COLS = ("id", "ref", "created_at", "status", "caller", "origin", "centre", "category",
              "unit", "dispatched_at", "deadline", "replied_at", "closed_at", "rehandled",
              "returned", "survey", "survey_at", "content", "answer", "reply")
CALL_COLS = ("id", "order_id", "call_id", "uniqueid", "caller", "called", "outcome", "centre",
             "started_at", "answered_at", "ended_at", "wait_seconds", "ivr_path", "transfers")
MONTH = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))


class Explain(Executable, ClauseElement):
    """``EXPLAIN`` of a statement, with its bound parameters processed as usual."""

    inherit_cache = False

    def __init__(self, stmt: Any) -> None:
        self.statement = stmt


@compiles(Explain)
def _explain(element: Explain, compiler: Any, **kw: Any) -> str:
    prefix = "EXPLAIN QUERY PLAN " if compiler.dialect.name == "sqlite" else "EXPLAIN "
    return prefix + compiler.process(element.statement, **kw)


def generate(rows: int, seed: int = 6) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """(order row, its call rows) in ORDER_COLS / CALL_COLS order; times are aware UTC."""
    rnd = random.Random(seed)
    rand, choice, randrange = rnd.random, rnd.choice, rnd.randrange
    call_id = 0
    for oid in range(1, rows + 1):
        created = START + timedelta(seconds=randrange(SPAN_S))
        centre, category = choice(CENTRES), choice(CATEGORIES)
        unit = dispatched = deadline = replied = closed = survey = survey_at = None
        status, rehandled = "created", 0
        if rand() < 0.7:
            unit = choice(UNITS)
            dispatched = created + timedelta(minutes=randrange(5, 600))
            deadline = dispatched + timedelta(hours=choice((2, 24, 168, 360)))
            status = "dispatched"
            if rand() < 0.85:
                replied = dispatched + (deadline - dispatched) * rnd.uniform(0.1, 1.3)
                status, rehandled = "replied", choice((0, 0, 0, 0, 1))
                if rand() < 0.9:
                    closed, status = replied + timedelta(hours=randrange(1, 48)), "closed"
        elif rand() < 0.6:
            closed, status = created + timedelta(minutes=randrange(2, 30)), "closed"
        if closed is not None and rand() < 0.9:
            survey, survey_at = choice(SURVEYS), closed + timedelta(hours=randrange(1, 48))
        if rand() < 0.02:
            status = "merged"
        order = (oid, f"JX{oid:010d}", created, status, "13800000000", "12345", centre,
                 category, unit, dispatched, deadline, replied, closed, rehandled, 0, survey,
                 survey_at, "", "", "")
        calls = []
        for k in range(1 if rand() < 0.8 else 2):
            call_id += 1
            started = created - timedelta(seconds=randrange(60, 600) + k * 3600)
            wait = None if rand() < 0.1 else rnd.uniform(0, 90)
            answered = None
            if wait is not None and rand() < 0.85:
                answered = started + timedelta(seconds=wait + 20)
            calls.append((call_id, oid, f"L{call_id}", f"U{call_id}", "13800000000", "12345",
                          "answered" if answered else "abandoned", centre, started, answered,
                          started + timedelta(seconds=300), wait, "[]", "[]"))
        yield order, calls


def _sqlite_value(v: Any) -> Any:
    # SQLAlchemy's SQLite DateTime storage format (naive UTC, microseconds always)
    if isinstance(v, datetime):
        return v.replace(tzinfo=None).isoformat(" ", "microseconds")
    return v


def load(engine: Engine, rows: int, batch: int = 50_000) -> float:
    """Create the tables and load ``rows`` orders and their calls; seconds taken.

    The secondary indexes are dropped for the load and built afterwards (a sort
    each, instead of a random B-tree insert per row and index)."""
    t0 = time.perf_counter()
    Base.metadata.create_all(engine)
    indexes = [ix for table in Base.metadata.sorted_tables for ix in table.indexes]
    with engine.begin() as conn:
        for ix in indexes:
            ix.drop(conn)
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        if engine.dialect.name == "sqlite":
            cur = dbapi.cursor()  # type: ignore[union-attr]
            o_sql = (f"INSERT INTO work_orders ({', '.join(ORDER_COLS)}) "
                     f"VALUES ({', '.join('?' * len(ORDER_COLS))})")
            c_sql = (f"INSERT INTO order_calls ({', '.join(CALL_COLS)}) "
                     f"VALUES ({', '.join('?' * len(CALL_COLS))})")
            orders: list[tuple[Any, ...]] = []
            calls: list[tuple[Any, ...]] = []
            for order, order_calls in generate(rows):
                orders.append(tuple(map(_sqlite_value, order)))
                calls.extend(tuple(map(_sqlite_value, c)) for c in order_calls)
                if len(orders) >= batch:
                    cur.executemany(o_sql, orders)
                    cur.executemany(c_sql, calls)
                    orders.clear()
                    calls.clear()
            cur.executemany(o_sql, orders)
            cur.executemany(c_sql, calls)
            dbapi.commit()  # type: ignore[union-attr]
        else:
            with dbapi.cursor() as cur:  # type: ignore[union-attr]
                pending: list[tuple[Any, ...]] = []
                with cur.copy(f"COPY work_orders ({', '.join(ORDER_COLS)}) FROM STDIN") as cp:
                    for order, order_calls in generate(rows):
                        cp.write_row(order)
                        pending.extend(order_calls)
                with cur.copy(f"COPY order_calls ({', '.join(CALL_COLS)}) FROM STDIN") as cp:
                    for call in pending:
                        cp.write_row(call)
            dbapi.commit()  # type: ignore[union-attr]
    finally:
        raw.close()
    t1 = time.perf_counter()
    with engine.begin() as conn:
        for ix in indexes:
            ix.create(conn)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE" if engine.dialect.name == "sqlite" else "VACUUM ANALYZE"))
    print(f"{engine.dialect.name}_index_build_s: {time.perf_counter() - t1:.1f}")
    return time.perf_counter() - t0


def full_scan(line: str) -> bool:
    if "Seq Scan" in line:
        return True
    words = line.split()
    # SQLite: "SCAN work_orders" (no index); "SCAN work_orders USING INDEX" is fine
    return "SCAN" in words and "USING" not in words and any(
        t in line for t in ("work_orders", "order_calls"))


def plan(conn: Connection, stmt: Any) -> list[str]:
    rows = conn.execute(Explain(stmt)).all()
    if conn.dialect.name == "sqlite":  # (id, parent, notused, detail)
        depth: dict[int, int] = {0: 0}
        out = []
        for rid, parent, _, detail in rows:
            depth[rid] = depth.get(parent, 0) + 1
            out.append("  " * depth[rid] + detail)
        return out
    return [r[0] for r in rows]


def best_time(conn: Connection, stmt: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        conn.execute(stmt).all()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(engine: Engine, name: str, repeat: int, show_plans: bool = True) -> dict[str, Any]:
    """Time each KPI statement of three reports and print its plan; returns the figures."""
    cases = {
        "all": (KpiFilter(*MONTH), None),
        "centre": (KpiFilter(*MONTH, centres=frozenset({"nanchang"})), None),
        "by_centre": (KpiFilter(*MONTH), "centre"),
    }
    figures: dict[str, Any] = {"full_scans": 0}
    with engine.connect() as conn:
        for case, (flt, group_by) in cases.items():
            total = 0.0
            for stmt_name, stmt in statements(flt, group_by).items():
                t = best_time(conn, stmt, repeat)
                total += t
                print(f"{name}_{case}_{stmt_name}_ms: {t * 1000:.1f}")
                for line in plan(conn, stmt):
                    bad = full_scan(line)
                    figures["full_scans"] += bad
                    if show_plans or bad:
                        print(f"    {line}{'   <-- FULL SCAN' if bad else ''}")
            figures[f"{case}_report_ms"] = total * 1000
            print(f"{name}_{case}_report_ms: {total * 1000:.1f}")
    print(f"{name}_full_scans: {figures['full_scans']}")
    return figures


def run_sqlite(rows: int, repeat: int, show_plans: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hotline-kpi-") as tmp:
        engine = open_engine(f"sqlite:///{Path(tmp) / 'orders.db'}")
        try:
            secs = load(engine, rows)
            print(f"sqlite_load_s: {secs:.1f}  ({rows / secs:.0f} orders/s with their calls)")
            return measure(engine, "sqlite", repeat, show_plans)
        finally:
            engine.dispose()


def run_postgresql(rows: int, repeat: int, show_plans: bool) -> dict[str, Any]:
    from tests.postgres import TempPostgres

    with TempPostgres() as pg:
        engine = open_engine(pg.url)
        try:
            with engine.connect() as conn:
                version = conn.execute(text("SHOW server_version")).scalar()
            print(f"postgresql_version: {version}")
            secs = load(engine, rows)
            print(f"postgresql_load_s: {secs:.1f}  ({rows / secs:.0f} orders/s with their calls)")
            return measure(engine, "postgresql", repeat, show_plans)
        finally:
            engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="work orders to generate")
    ap.add_argument("--db", default="sqlite,postgresql", help="sqlite, postgresql or both")
    ap.add_argument("--repeat", type=int, default=3, help="runs per statement (best counts)")
    ap.add_argument("--quiet-plans", action="store_true", help="print only full-scan plan lines")
    args = ap.parse_args(argv)
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    unknown = set(dbs) - {"sqlite", "postgresql"}
    if unknown or not dbs or args.rows < 1:
        ap.error(f"--db takes sqlite and/or postgresql (got {args.db!r}); --rows at least 1")
    print(f"kpi_rows: {args.rows}")
    scans = 0
    for db in dbs:
        run = run_sqlite if db == "sqlite" else run_postgresql
        scans += run(args.rows, args.repeat, not args.quiet_plans)["full_scans"]
        sys.stdout.flush()
    return 1 if scans else 0


if __name__ == "__main__":
    raise SystemExit(main())
