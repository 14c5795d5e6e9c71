"""The five KPIs of the provincial plan, by aggregate SQL over the work-order tables.

Each KPI is one ``SELECT`` with conditional sums (SQLAlchemy Core, the same
statement on SQLite and PostgreSQL): five queries for a report, whatever the
number of rows, and the same five with ``GROUP BY`` for a report per centre,
unit or category. No row reaches Python. The README's "KPIs" section states the
definitions; in short, for the period ``[start, end)``:

* connection: calls started in the period that asked for a person
  (``order_calls.wait_seconds`` not null); answered: ``answered_at`` not null;
  connection_15s: answered with ``wait_seconds <= 15``, over the same denominator;
* on_time: dispatched orders whose deadline fell in the period (before now), or
  whose reply came in it and that are not waiting for a new reply (status
  dispatched or accepted after a re-dispatch); on time: replied, not waiting,
  and ``replied_at <= deadline``;
* feedback: orders first dispatched in the period; of them, replied (so far);
* rehandling: dispatched orders closed in the period; of them, sent back at
  least once (``rehandled > 0``);
* satisfaction: surveys answered in the period (satisfied, basic,
  dissatisfied); of them, satisfied or basic; ``no_answer`` counted apart.

Orders with ``status='merged'`` are left out everywhere: their calls moved to
the order they were merged into, which is the one counted. Filters: centre (a
set, so a supervisor's centre with the centres below it), unit, category; on
calls they apply through the call's order (``order_calls.centre`` for the centre).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, null, or_, select
from sqlalchemy.engine import Connection

from .schema import CallRow, OrderRow

MERGED = "merged"
SATISFIED = ("satisfied", "basic")  # 满意, 基本满意
SURVEY_ANSWERS = ("satisfied", "basic", "dissatisfied")
NO_ANSWER = "no_answer"
FAST_ANSWER_SECONDS = 15
GROUPS = ("centre", "unit", "category")
KPI_NAMES = ("connection", "connection_15s", "on_time", "feedback", "rehandling", "satisfaction")
KPI_LABELS = {
    "connection": "电话接通率",
    "connection_15s": "15秒接通率",
    "on_time": "按时办结率",
    "feedback": "问题反馈率",
    "rehandling": "发回重办率",
    "satisfaction": "回访满意度",
}

WO = OrderRow.__table__.c  # work_orders columns
OC = CallRow.__table__.c  # order_calls columns


@dataclass(frozen=True)
class Rate:
    numerator: int
    denominator: int

    @property
    def rate(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None

    def as_dict(self) -> dict[str, Any]:
        return {"numerator": self.numerator, "denominator": self.denominator, "rate": self.rate}


ZERO = Rate(0, 0)


@dataclass(frozen=True)
class KpiFilter:
    """The period ``[start, end)`` (timezone-aware) and optional filters.

    ``now`` (default: when the filter is made) cuts the on-time KPI's deadlines:
    an order due after ``now`` has not missed its deadline yet."""

    start: datetime
    end: datetime
    centres: frozenset[str] | None = None  # None: every centre
    unit: str | None = None
    category: str | None = None
    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        for name in ("start", "end", "now"):
            t = getattr(self, name)
            if t.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")
            object.__setattr__(self, name, t.astimezone(UTC))  # the tables hold UTC
        if self.end <= self.start:
            raise ValueError("the period is empty: end must be after start")


@dataclass
class KpiReport:
    rates: dict[str, Rate] = field(default_factory=lambda: dict.fromkeys(KPI_NAMES, ZERO))
    no_answer: int = 0  # surveys in the period the citizen did not answer

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: self.rates[k].as_dict() for k in KPI_NAMES}
        out["satisfaction"]["no_answer"] = self.no_answer
        return out


def _count(cond: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _in_period(col: Any, flt: KpiFilter, until_now: bool = False) -> ColumnElement[bool]:
    return and_(col >= flt.start, col < (min(flt.end, flt.now) if until_now else flt.end))


def _order_filters(flt: KpiFilter, merged: bool = False) -> list[ColumnElement[bool]]:
    """Unit and category; and no merged order unless ``merged`` (calls keep counting:
    a call is a call, whichever order it now belongs to)."""
    out: list[ColumnElement[bool]] = [] if merged else [WO.status != MERGED]
    if flt.unit is not None:
        out.append(WO.unit == flt.unit)
    if flt.category is not None:
        out.append(WO.category == flt.category)
    return out


def _group_col(group_by: str | None, on_calls: bool) -> Any:
    if group_by is None:
        return None
    if group_by not in GROUPS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
    if group_by == "centre" and on_calls:
        return OC.centre
    return WO[group_by]


Period = Callable[[KpiFilter], ColumnElement[bool]]


@dataclass(frozen=True)
class OrderKpi:
    """One KPI over ``work_orders``: rows in ``period`` and ``population`` (merged
    orders and the filters aside); the denominator counts those meeting
    ``counted``, the numerator those meeting ``counted`` and ``hit``."""

    name: str
    period: Period  # the rows the period selects (each through an index)
    population: ColumnElement[bool]
    hit: ColumnElement[bool]
    counted: ColumnElement[bool] | None = None  # None: every row of the population


def _in(col: str) -> Period:
    return lambda flt: _in_period(WO[col], flt)


# Dispatched or accepted: the unit owes a reply to the current dispatch, whatever
# replied_at holds (a reply before the order was sent back for re-handling).
RUNNING = ("dispatched", "accepted")
_REPLIED = and_(WO.replied_at.is_not(None), WO.status.not_in(RUNNING))


def _due_or_replied(flt: KpiFilter) -> ColumnElement[bool]:
    """Due in the period (and already: a deadline ahead is not missed yet), or replied
    in the period and not waiting for a new reply."""
    return or_(
        _in_period(WO.deadline, flt, until_now=True),
        and_(_in_period(WO.replied_at, flt), WO.status.not_in(RUNNING)),
    )


_DISPATCHED = WO.dispatched_at.is_not(None)
ORDER_KPIS = (
    OrderKpi(
        "on_time", _due_or_replied, and_(_DISPATCHED, WO.deadline.is_not(None)),
        and_(_REPLIED, WO.replied_at <= WO.deadline),
    ),
    OrderKpi("feedback", _in("dispatched_at"), _DISPATCHED, WO.replied_at.is_not(None)),
    OrderKpi("rehandling", _in("closed_at"), _DISPATCHED, WO.rehandled > 0),
    OrderKpi(
        "satisfaction", _in("survey_at"), WO.survey.in_((*SURVEY_ANSWERS, NO_ANSWER)),
        WO.survey.in_(SATISFIED), counted=WO.survey.in_(SURVEY_ANSWERS),
    ),
)


def statements(flt: KpiFilter, group_by: str | None = None) -> dict[str, Any]:
    """The SELECTs of a report, by name (``calls`` and one per order KPI); for EXPLAIN too.

    Each returns rows ``(group, numerator, denominator[, extra])``; the group is
    NULL when not grouping (or for rows without one).
    """
    out: dict[str, Any] = {}
    # Calls: the connection rates. Join the order only when a filter or group needs it.
    gcol = _group_col(group_by, on_calls=True)
    offered = OC.wait_seconds.is_not(None)
    answered = OC.answered_at.is_not(None)
    stmt = select(
        (gcol if gcol is not None else null()).label("grp"),
        _count(answered).label("answered"),
        func.count().label("offered"),
        _count(and_(answered, OC.wait_seconds <= FAST_ANSWER_SECONDS)).label("fast"),
    )
    conds = [_in_period(OC.started_at, flt), offered]
    if flt.centres is not None:
        conds.append(OC.centre.in_(sorted(flt.centres)))
    if flt.unit is not None or flt.category is not None or group_by in ("unit", "category"):
        stmt = stmt.select_from(CallRow.__table__.join(OrderRow.__table__, OC.order_id == WO.id))
        conds.extend(_order_filters(flt, merged=True))
    stmt = stmt.where(*conds)
    out["calls"] = stmt.group_by(gcol) if gcol is not None else stmt

    ogcol = _group_col(group_by, on_calls=False)
    for k in ORDER_KPIS:
        conds = [k.period(flt), k.population, *_order_filters(flt)]
        if flt.centres is not None:
            conds.append(WO.centre.in_(sorted(flt.centres)))
        cols = [
            (ogcol if ogcol is not None else null()).label("grp"),
            _count(k.hit if k.counted is None else and_(k.counted, k.hit)).label("hit"),
            (func.count() if k.counted is None else _count(k.counted)).label("total"),
        ]
        if k.name == "satisfaction":
            cols.append(_count(WO.survey == NO_ANSWER).label("no_answer"))
        stmt = select(*cols).where(*conds)
        out[k.name] = stmt.group_by(ogcol) if ogcol is not None else stmt
    return out


def compute_grouped(
    conn: Connection, flt: KpiFilter, group_by: str | None
) -> dict[str | None, KpiReport]:
    """KPI reports keyed by group value (the key None: no group_by, or orders without one)."""
    reports: dict[str | None, KpiReport] = {}

    def report(key: str | None) -> KpiReport:
        return reports.setdefault(key, KpiReport())

    for name, stmt in statements(flt, group_by).items():
        for row in conn.execute(stmt):
            r = report(row[0])
            if name == "calls":
                r.rates["connection"] = Rate(int(row[1]), int(row[2]))
                r.rates["connection_15s"] = Rate(int(row[3]), int(row[2]))
            else:
                r.rates[name] = Rate(int(row[1]), int(row[2]))
                if name == "satisfaction":
                    r.no_answer = int(row[3])
    if group_by is None:
        report(None)  # an empty period still gives one report of zeros
    return reports


def compute(conn: Connection, flt: KpiFilter) -> KpiReport:
    """The five KPIs (six rates) for one period and filter."""
    return compute_grouped(conn, flt, None)[None]


def csv_rows(
    reports: Mapping[str | None, KpiReport], group_by: str | None
) -> Iterable[list[str]]:
    """Header then one row per KPI (and per group when grouping), for :mod:`csv`."""
    head = ["kpi", "label", "numerator", "denominator", "rate"]
    if group_by is not None:
        head.insert(0, group_by)
    yield head
    for key in sorted(reports, key=lambda k: (k is None, k or "")):
        rep = reports[key]
        for name in KPI_NAMES:
            r = rep.rates[name]
            row = [name, KPI_LABELS[name], str(r.numerator), str(r.denominator),
                   "" if r.rate is None else f"{r.rate:.4f}"]
            if group_by is not None:
                row.insert(0, "" if key is None else key)
            yield row
