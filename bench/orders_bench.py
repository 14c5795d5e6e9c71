"""Work-order benchmark, part 1: orders created per second from CallFacts.

``python -m bench.orders_bench [--calls N]`` prints one ``name: value`` line per
figure (progress and notes on stderr), on SQLite (a file, WAL) and on a
throw-away PostgreSQL 15 (tests/postgres.py; skipped with a note when the server
binaries are missing):

* ``orders_per_s_<db>`` -- ``WorkOrderStore.record_call`` of distinct answered
  calls, one after another (each: the idempotency look-up, the daily case
  reference counter, the order, the call row with its IVR path, the event, one
  transaction).
* ``baseline_per_s_<db>`` -- in the same run and database, a bare INSERT of the
  same order row and call row in one transaction (no look-up, counter or event).
* ``ratio_<db>`` -- orders_per_s / baseline_per_s: what ticketing costs above
  writing the rows at all.
* ``duplicates_per_s_<db>`` -- record_call of calls already ticketed (the
  restart path replaying CDR): one look-up, no write.
* ``batched_per_s_<db>`` -- ``WorkOrderStore.record_calls`` of distinct answered
  calls in batches of :data:`BATCH` (what the call tracker does when calls end
  together: one transaction and ``executemany`` per batch), and
  ``batch_ratio_<db>`` -- that against the bare one-call INSERT.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from workorders.facts import CallFacts, Category, Outcome
from workorders.schema import CallRow, OrderRow
from workorders.store import WorkOrderStore

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
BATCH = 50  # calls per record_calls() in the batched figure
IVR = [{"menu": "main", "key": "2", "at": 3.1}, {"menu": "social", "key": "1", "at": 9.4}]


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def facts(i: int, run: str) -> CallFacts:
    start = T0 + timedelta(seconds=i)
    return CallFacts(
        call_id=f"{run}-{i}",
        uniqueid=f"{run}-{i}.1",
        caller=f"1380000{i % 10000:04d}",
        called="12345",
        outcome=Outcome.ANSWERED,
        started_at=start,
        ended_at=start + timedelta(minutes=3),
        centre="province",
        city="nanchang",
        category=Category.HELP,
        queue="province",
        agent="zhangwei",
        answered_at=start + timedelta(seconds=12),
        wait_seconds=12.0,
        ivr_path=IVR,
    )


def rate(n: int, fn: Callable[[int], object]) -> float:
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t)


def measure(store: WorkOrderStore, db: str, n: int) -> list[tuple[str, float]]:
    def bare(i: int) -> None:
        f = facts(i, "bare")
        with store.engine.begin() as c:
            oid = c.execute(
                insert(OrderRow)
                .values(
                    ref=f"BARE{i:012d}",
                    created_at=f.started_at,
                    status="open",
                    caller=f.caller,
                    origin=f.origin,
                    centre=f.centre,
                    city=f.city,
                    category="help",
                    agent=f.agent,
                    content="",
                    answer="",
                    reply="",
                    rehandled=0,
                    returned=0,
                )
                .returning(OrderRow.id)
            ).scalar_one()
            c.execute(
                insert(CallRow).values(
                    order_id=oid,
                    call_id=f.call_id,
                    uniqueid=f.uniqueid,
                    caller=f.caller,
                    called=f.called,
                    outcome="answered",
                    centre=f.centre,
                    queue=f.queue,
                    agent=f.agent,
                    started_at=f.started_at,
                    answered_at=f.answered_at,
                    ended_at=f.ended_at,
                    wait_seconds=f.wait_seconds,
                    ivr_path=IVR,
                    transfers=[],
                )
            )

    # warm up both paths (connections, statement caches), then alternate halves so
    # both see the same table sizes and machine load
    store.record_call(facts(-1, "warm"))
    bare(-1)
    half = n // 2
    orders = [rate(half, lambda i: store.record_call(facts(i, "rec")))]
    base = [rate(half, bare)]
    orders.append(rate(half, lambda i: store.record_call(facts(half + i, "rec"))))
    base.append(rate(half, lambda i: bare(half + i)))
    dup = rate(half, lambda i: store.record_call(facts(i, "rec")))
    batches = max(1, n // BATCH)
    batched = BATCH * rate(
        batches,
        lambda i: store.record_calls([facts(n + i * BATCH + k, "bat") for k in range(BATCH)]),
    )
    o, b = sum(orders) / 2, sum(base) / 2
    return [
        (f"orders_per_s_{db}", o),
        (f"baseline_per_s_{db}", b),
        (f"ratio_{db}", o / b),
        (f"duplicates_per_s_{db}", dup),
        (f"batched_per_s_{db}", batched),
        (f"batch_ratio_{db}", batched / b),
    ]


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--calls", type=int, default=2000, help="calls per measurement (default 2000)")
    opts = ap.parse_args(list(argv) if argv is not None else None)
    figures: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="hotline-orders-bench-") as tmp:
        say(f"orders bench: SQLite, {opts.calls} calls")
        store = WorkOrderStore(f"sqlite:///{Path(tmp) / 'orders.sqlite'}")
        figures += measure(store, "sqlite", opts.calls)
        store.close()
    try:
        from tests.postgres import TempPostgres

        pg = TempPostgres()
    except (ImportError, FileNotFoundError) as e:
        say(f"orders bench: PostgreSQL skipped: {e}")
    else:
        say(f"orders bench: PostgreSQL 15 (fsync off, loopback TCP), {opts.calls} calls")
        with pg:
            store = WorkOrderStore(pg.url)
            figures += measure(store, "postgresql", opts.calls)
            store.close()
    for name, value in figures:
        print(f"{name}: {value:.2f}" if "ratio" in name else f"{name}: {value:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
