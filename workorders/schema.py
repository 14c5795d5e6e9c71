"""The work-order tables. SQLite by default, PostgreSQL supported (same DDL).

Times are stored as timezone-aware UTC ``DateTime`` values. The KPI queries
(workorders/kpi.py) read these columns; the indexes below are the ones they
use (bench/kpi_bench.py prints the query plans).

- ``work_orders``: one row per matter (工單). A merged duplicate keeps its row
  with ``status='merged'`` and ``merged_into`` set; its calls move to the kept order.
- ``order_calls``: one row per call (``call_id`` unique: a call is ticketed once).
  Every call about the order stays here, whatever way it ended.
- ``order_events``: every transition and supervision act, with who did it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


UTC_DATETIME = DateTime(timezone=True)


class OrderRow(Base):
    __tablename__ = "work_orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True)  # case reference read to callers and centres
    created_at: Mapped[datetime] = mapped_column(UTC_DATETIME)
    status: Mapped[str] = mapped_column(String(16))
    caller: Mapped[str] = mapped_column(String(64))
    origin: Mapped[str] = mapped_column(String(32))  # 12345 or the legacy number / line
    department: Mapped[str | None] = mapped_column(String(40))
    centre: Mapped[str | None] = mapped_column(String(40))
    city: Mapped[str | None] = mapped_column(String(40))
    county: Mapped[str | None] = mapped_column(String(40))
    category: Mapped[str | None] = mapped_column(String(16))
    time_limit: Mapped[str | None] = mapped_column(String(16))  # class name from workorders.time_limits
    agent: Mapped[str | None] = mapped_column(String(40))
    content: Mapped[str] = mapped_column(Text, default="")
    answer: Mapped[str] = mapped_column(Text, default="")  # answer given on the call
    unit: Mapped[str | None] = mapped_column(String(40))  # responsible unit while dispatched
    dispatched_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)  # first dispatch
    deadline: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    accepted_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    replied_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)  # the unit's (last) reply
    reply: Mapped[str] = mapped_column(Text, default="")
    closed_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    rehandled: Mapped[int] = mapped_column(Integer, default=0)  # times sent back (發回重辦)
    returned: Mapped[int] = mapped_column(Integer, default=0)  # times a unit returned it
    # repeat calls that urged the unit (催办) while it was running, the last one's time and
    # when supervision sent its notice; NULL: none (an older database gets the columns
    # added, see store._migrate)
    urged: Mapped[int | None] = mapped_column(Integer)
    urged_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    urge_sent_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    reminded_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    escalated_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("work_orders.id"))
    survey: Mapped[str | None] = mapped_column(String(24))  # satisfied / basic / dissatisfied / no_answer
    survey_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)

    __table_args__ = (
        Index("ix_orders_created", "created_at", "centre"),
        Index("ix_orders_dispatched", "dispatched_at", "unit"),
        Index("ix_orders_closed", "closed_at", "centre"),
        Index("ix_orders_status_deadline", "status", "deadline"),
        # the caller's earlier orders, shown to the agent on the call (store.caller_history)
        Index("ix_orders_caller", "caller", "created_at"),
        # urges whose notice is not sent yet (store._urges, every supervision round)
        Index("ix_orders_urged", "urged_at"),
        # KPIs (workorders/kpi.py): on-time reads deadline OR replied_at, satisfaction survey_at
        Index("ix_orders_deadline", "deadline", "centre"),
        Index("ix_orders_replied", "replied_at", "centre"),
        Index("ix_orders_survey", "survey_at", "centre"),
    )


class CallRow(Base):
    __tablename__ = "order_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id"), index=True)
    call_id: Mapped[str] = mapped_column(String(64), unique=True)
    uniqueid: Mapped[str] = mapped_column(String(64))
    caller: Mapped[str] = mapped_column(String(64))
    called: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16))
    centre: Mapped[str | None] = mapped_column(String(40))
    queue: Mapped[str | None] = mapped_column(String(40))
    agent: Mapped[str | None] = mapped_column(String(40))
    started_at: Mapped[datetime] = mapped_column(UTC_DATETIME)
    answered_at: Mapped[datetime | None] = mapped_column(UTC_DATETIME)
    ended_at: Mapped[datetime] = mapped_column(UTC_DATETIME)
    wait_seconds: Mapped[float | None] = mapped_column(Float)  # None: never asked for a person
    recording: Mapped[str | None] = mapped_column(String(255))
    ivr_path: Mapped[list] = mapped_column(JSON, default=list)
    transfers: Mapped[list] = mapped_column(JSON, default=list)

    __table_args__ = (Index("ix_calls_started", "started_at", "centre"),)


class EventRow(Base):
    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTC_DATETIME)
    actor: Mapped[str] = mapped_column(String(64))  # user name, "system", "survey" …
    action: Mapped[str] = mapped_column(String(24))  # created, dispatched, returned, reminded …
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    unit: Mapped[str | None] = mapped_column(String(40))
    note: Mapped[str] = mapped_column(Text, default="")


class RefDayRow(Base):
    """The last case-reference sequence number given out on each day (Beijing time).

    Incremented in the transaction that creates the order, so a rolled-back
    creation gives its number back and references have no gaps.
    """

    __tablename__ = "order_ref_days"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)  # yyyymmdd
    last: Mapped[int] = mapped_column(Integer)
