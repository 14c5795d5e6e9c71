"""Work orders in SQL (SQLite by default, PostgreSQL supported): the one place that writes them.

Every call becomes an order. :meth:`WorkOrderStore.reserve` creates it as soon
as the call arrives (so the agent, or an emergency dispatcher, can be given the
case reference during the call); :meth:`WorkOrderStore.record_call` fills it in
from the :class:`CallFacts` when the call ends, or creates it then if it was
never reserved (a call that ended while the controller was down). Both are
idempotent by ``call_id``: the unique constraint on ``order_calls.call_id``
decides between two concurrent attempts, the loser re-reads and returns the
winner's reference.

Transitions (:meth:`act`) are checked by :mod:`workorders.lifecycle` and each
writes one ``order_events`` row. The store is synchronous: every call is one
short transaction; the aiohttp handlers and the supervision job call it in worker
threads (``asyncio.to_thread``), off the event loop of the FastAGI sessions, so
``on_closed`` listeners run in such a thread too.

A call row holds ``outcome='in_progress'`` between ``reserve`` and ``record_call``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, and_, bindparam, event, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError

from hotline.auth import Principal, centre_scope
from hotline.storage import Tables, add_missing_columns, add_missing_indexes

from . import lifecycle as lc
from .facts import CallFacts, Outcome
from .schema import Base, CallRow, EventRow, OrderRow, RefDayRow

log = logging.getLogger(__name__)

ORDERS = cast(Table, OrderRow.__table__)
CALLS = cast(Table, CallRow.__table__)
EVENTS = cast(Table, EventRow.__table__)
REF_DAYS = cast(Table, RefDayRow.__table__)

IN_PROGRESS = "in_progress"
READ_ONLY = "hotline_read_only"  # execution option: a read transaction
REF_PREFIX = "JX"
REF_TZ = ZoneInfo("Asia/Shanghai")  # the hotline's day, for case references
SURVEY_RESULTS = ("satisfied", "basic", "dissatisfied", "no_answer")
SYSTEM = Principal("system", "system")
ATTEMPTS = 8

ClosedListener = Callable[[dict[str, Any]], None]

# Caller IDs and dialled numbers come from the carrier: whatever their length, the
# call is ticketed (PostgreSQL would refuse a value longer than the column).
CALLER_MAX = 64  # work_orders.caller, order_calls.caller
CALLED_MAX = 32  # work_orders.origin, order_calls.called


# What a finished call writes: its call row, and its order's columns.
_ORDER_FACTS = ("caller", "origin", "department", "centre", "city", "county", "category", "agent")
_CALL_FACTS = (
    "uniqueid", "caller", "called", "outcome", "centre", "queue", "agent", "started_at",
    "answered_at", "ended_at", "wait_seconds", "recording", "ivr_path", "transfers",
)
# A reserved call filled in, and its order while still in intake: a fact the call did
# not learn (None) keeps what the reservation wrote.
_FILL_CALL = (
    update(CALLS)
    .where(CALLS.c.id == bindparam("_id"))
    .values({k: bindparam(f"c_{k}", type_=CALLS.c[k].type) for k in _CALL_FACTS})
)
_FILL_ORDER = (
    update(ORDERS)
    .where(ORDERS.c.id == bindparam("_id"))
    .values(
        {k: func.coalesce(bindparam(f"o_{k}", type_=ORDERS.c[k].type), ORDERS.c[k])
         for k in _ORDER_FACTS}
        | {k: bindparam(f"o_{k}", type_=ORDERS.c[k].type) for k in ("status", "closed_at")}
    )
)


@dataclass(frozen=True)
class _Intake:
    """One finished call, as rows: what :meth:`WorkOrderStore.record_calls` writes."""

    call_id: str
    started_at: datetime
    status: str  # the order's first status after the call
    note: str
    call: dict[str, Any]  # order_calls columns but order_id and call_id
    order: dict[str, Any]  # work_orders columns the call sets (None: not known)
    closed_at: datetime | None

    @property
    def order_new(self) -> dict[str, Any]:
        return {**self.order, "status": self.status, "closed_at": self.closed_at}

    @property
    def order_update(self) -> dict[str, Any]:
        return {f"o_{k}": v for k, v in self.order_new.items()}

    @property
    def call_update(self) -> dict[str, Any]:
        return {f"c_{k}": v for k, v in self.call.items()}


def _intake_row(facts: CallFacts) -> _Intake:
    status = lc.INITIAL_STATUS[facts.outcome]
    return _Intake(
        call_id=facts.call_id,
        started_at=utc(facts.started_at),
        status=status,
        note=lc.INITIAL_NOTE.get(facts.outcome, ""),
        call={
            "uniqueid": facts.uniqueid,
            "caller": facts.caller[:CALLER_MAX],
            "called": facts.called[:CALLED_MAX],
            "outcome": facts.outcome.value,
            "centre": facts.centre,
            "queue": facts.queue,
            "agent": facts.agent,
            "started_at": utc(facts.started_at),
            "answered_at": utc(facts.answered_at) if facts.answered_at else None,
            "ended_at": utc(facts.ended_at),
            "wait_seconds": facts.wait_seconds,
            "recording": facts.recording,
            "ivr_path": list(facts.ivr_path),
            "transfers": list(facts.transfers),
        },
        order={
            "caller": facts.caller[:CALLER_MAX],
            "origin": facts.origin[:CALLED_MAX],
            "department": facts.department,
            "centre": facts.centre,
            "city": facts.city,
            "county": facts.county,
            "category": facts.category.value if facts.category else None,
            "agent": facts.agent,
        },
        closed_at=utc(facts.ended_at) if status == lc.CLOSED else None,
    )


class OrderNotFound(Exception):
    status = 404
    error_id = "not-found"

    def __init__(self, ref: str) -> None:
        super().__init__(f"no work order {ref!r}")
        self.details = {"ref": ref}


def utc(dt: datetime) -> datetime:
    """Aware UTC. SQLite hands back naive values (written as UTC): read them as UTC."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def case_ref(day: str, seq: int) -> str:
    """``JX`` + yyyymmdd + a six-digit daily sequence: digits only, read out one by one."""
    return f"{REF_PREFIX}{day}{seq:06d}"


HISTORY = 5  # earlier orders shown to the agent on a call (caller_history)
SUMMARY_CHARS = 200


def summary(order: Mapping[str, Any]) -> dict[str, Any]:
    """What an agent on a call is shown of one of the caller's earlier orders."""
    content = order.get("content") or ""
    if len(content) > SUMMARY_CHARS:
        content = content[: SUMMARY_CHARS - 1] + "…"
    return {
        "ref": order["ref"],
        "created_at": order["created_at"],
        "status": order["status"],
        "category": order.get("category"),
        "content": content,
        "unit": order.get("unit"),
        "deadline": order.get("deadline"),
        "closed_at": order.get("closed_at"),
        "survey": order.get("survey"),
        "urged": order.get("urged") or 0,
    }


def _row(m: Mapping[Any, Any]) -> dict[str, Any]:
    return {k: (utc(v) if isinstance(v, datetime) else v) for k, v in m.items()}


def _busy(e: OperationalError) -> bool:
    text = str(e.orig).lower()
    return "locked" in text or "busy" in text or "deadlock" in text or "could not serialize" in text


def _migrate(engine: Engine) -> None:
    """Columns and indexes added since a database's tables were made (``urged``,
    ``urged_at``, ``urge_sent_at``, ``ix_orders_caller``)."""
    table = cast(Table, OrderRow.__table__)
    add_missing_columns(engine, table)
    add_missing_indexes(engine, table)


class WorkOrderStore:
    def __init__(
        self,
        url: str,
        policy: lc.Policy | Callable[[], lc.Policy] | None = None,
        clock: Callable[[], datetime] = utcnow,
        centres_under: Callable[[], Mapping[str, set[str]]] | None = None,
    ) -> None:
        self.url = url
        # A database down at start does not stop the controller (calls go on): the
        # tables are created on the first use that reaches it (hotline.storage.Tables).
        self.db = Tables(url, Base.metadata, "work-order",
                         setup=_sqlite_immediate if url.startswith("sqlite") else None,
                         migrate=_migrate)
        self.engine: Engine = self.db.engine
        self._policy = policy or lc.Policy()
        self.clock = clock
        self._centres_under = centres_under or dict
        self._closed: list[ClosedListener] = []
        self.retries = 0  # transactions retried after a unique-key race or a busy database

    @classmethod
    def in_state_dir(cls, state: Path, **kw: Any) -> WorkOrderStore:
        """The default store: ``workorders.sqlite`` in the instance's host-only state folder."""
        state.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{state / 'workorders.sqlite'}", **kw)

    @property
    def policy(self) -> lc.Policy:
        p = self._policy
        return p if isinstance(p, lc.Policy) else p()

    def close(self) -> None:
        self.db.close()

    def on_closed(self, callback: ClosedListener) -> None:
        """``callback(order)`` after an order is closed by a transition (not at intake:
        an emergency call's order is created closed and is not surveyed by the hotline)."""
        self._closed.append(callback)

    # ------------------------------------------------------------ transactions

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        self.db.ensure()
        with self.engine.begin() as c:
            yield c

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read-only connection (on SQLite a deferred BEGIN: readers never wait for writers)."""
        self.db.ensure()
        with self.engine.connect() as c:
            yield c.execution_options(**{READ_ONLY: True})

    def _retrying(self, fn: Callable[[Connection], Any]) -> Any:
        """Run ``fn`` in a transaction; a unique-key race or a busy database is retried
        (the retry re-reads and finds what the other writer committed)."""
        for attempt in range(ATTEMPTS):
            try:
                with self._tx() as c:
                    return fn(c)
            except IntegrityError:
                if attempt == ATTEMPTS - 1:
                    raise
            except OperationalError as e:
                if not _busy(e) or attempt == ATTEMPTS - 1:
                    raise
            self.retries += 1
            time.sleep(0.005 * (attempt + 1))
        raise AssertionError("unreachable")

    # ------------------------------------------------------------ intake

    def reserve(
        self,
        call_id: str,
        caller: str,
        called: str,
        started_at: datetime,
        origin: str = "12345",
        department: str | None = None,
        centre: str | None = None,
    ) -> str:
        """Create the order of a call in progress and return its case reference."""
        caller, called, origin = caller[:CALLER_MAX], called[:CALLED_MAX], origin[:CALLED_MAX]

        def run(c: Connection) -> str:
            ref = self._ref_of_call(c, call_id)
            if ref is not None:
                return ref
            oid, ref = self._new_order(
                c,
                utc(started_at),
                {
                    "status": lc.INTAKE,
                    "caller": caller,
                    "origin": origin,
                    "department": department,
                    "centre": centre,
                },
            )
            c.execute(
                insert(CALLS).values(
                    order_id=oid,
                    call_id=call_id,
                    uniqueid=call_id,
                    caller=caller,
                    called=called,
                    outcome=IN_PROGRESS,
                    centre=centre,
                    started_at=utc(started_at),
                    ended_at=utc(started_at),
                    ivr_path=[],
                    transfers=[],
                )
            )
            self._event(c, oid, "system", "created", None, lc.INTAKE, note="call in progress")
            return ref

        ref: str = self._retrying(run)
        return ref

    def record_call(self, facts: CallFacts) -> str:
        """The order of a finished call (created, or the reserved one filled in)."""
        return self.record_calls([facts])[0]

    def record_calls(self, batch: Sequence[CallFacts]) -> list[str]:
        """The orders of finished calls, in one transaction: their references, in order.

        The call tracker hands over every call that ended in the last moment at once:
        one transaction and a few statements for the lot (``executemany``) instead of
        six statements and a commit per call. Idempotent by ``call_id`` like
        :meth:`reserve`: a call already recorded keeps its order, a reserved one is
        filled in, the rest get new orders."""
        if not batch:
            return []
        rows = {f.call_id: _intake_row(f) for f in batch}  # one per call, the last wins

        def run(c: Connection) -> list[str]:
            found = {
                r["call_id"]: r
                for r in c.execute(
                    select(
                        CALLS.c.call_id,
                        CALLS.c.id,
                        CALLS.c.outcome,
                        ORDERS.c.id.label("oid"),
                        ORDERS.c.ref,
                        ORDERS.c.status,
                    )
                    .join(ORDERS, ORDERS.c.id == CALLS.c.order_id)
                    .where(CALLS.c.call_id.in_(list(rows)))
                ).mappings()
            }
            refs = {cid: str(r["ref"]) for cid, r in found.items()}
            # Reserved at arrival (the IVR, the queue entry): fill the call and the order in.
            filled = [(rows[cid], r) for cid, r in found.items() if r["outcome"] == IN_PROGRESS]
            if filled:
                c.execute(_FILL_CALL, [{"_id": r["id"], **row.call_update} for row, r in filled])
                intake = [(row, r) for row, r in filled if r["status"] == lc.INTAKE]
                if intake:
                    c.execute(
                        _FILL_ORDER,
                        [{"_id": r["oid"], **row.order_update} for row, r in intake],
                    )
                    self._events(
                        c,
                        [
                            (r["oid"], "call-ended", lc.INTAKE, row.status, row.note)
                            for row, r in intake
                        ],
                    )
            new = [row for cid, row in rows.items() if cid not in found]
            if new:
                created = self._new_orders(c, [(row.started_at, row.order_new) for row in new])
                c.execute(
                    insert(CALLS),
                    [
                        {"order_id": oid, "call_id": row.call_id, **row.call}
                        for row, (oid, _ref) in zip(new, created, strict=True)
                    ],
                )
                self._events(
                    c,
                    [
                        (oid, "created", None, row.status, row.note)
                        for row, (oid, _ref) in zip(new, created, strict=True)
                    ],
                )
                refs.update(
                    (row.call_id, ref) for row, (_oid, ref) in zip(new, created, strict=True)
                )
            return [refs[f.call_id] for f in batch]

        out: list[str] = self._retrying(run)
        return out

    def _ref_of_call(self, c: Connection, call_id: str) -> str | None:
        return c.execute(
            select(ORDERS.c.ref)
            .join(CALLS, CALLS.c.order_id == ORDERS.c.id)
            .where(CALLS.c.call_id == call_id)
        ).scalar()

    def _new_orders(
        self, c: Connection, orders: Sequence[tuple[datetime, dict[str, Any]]]
    ) -> list[tuple[int, str]]:
        """Insert orders (creation time, columns); their ids and case references, in order.

        Each day's numbers are taken in one step: ``ref_days.last`` moves by the count."""
        by_day: dict[str, list[int]] = {}
        for i, (created_at, _fields) in enumerate(orders):
            by_day.setdefault(created_at.astimezone(REF_TZ).strftime("%Y%m%d"), []).append(i)
        refs: list[str] = [""] * len(orders)
        for day, idx in by_day.items():
            last = c.execute(
                update(REF_DAYS)
                .where(REF_DAYS.c.day == day)
                .values(last=REF_DAYS.c.last + len(idx))
                .returning(REF_DAYS.c.last)
            ).scalar()
            if last is None:
                # The day's first orders; a concurrent first insert loses on the primary
                # key and its whole transaction is retried.
                c.execute(insert(REF_DAYS).values(day=day, last=len(idx)))
                last = len(idx)
            first = int(last) - len(idx) + 1
            for n, i in enumerate(idx):
                refs[i] = case_ref(day, first + n)
        params = [
            {
                "ref": ref,
                "created_at": created_at,
                "content": "",
                "answer": "",
                "reply": "",
                "rehandled": 0,
                "returned": 0,
                **fields,
            }
            for ref, (created_at, fields) in zip(refs, orders, strict=True)
        ]
        if len(params) == 1:  # one row: a plain INSERT ... RETURNING
            oid = c.execute(insert(ORDERS).values(**params[0]).returning(ORDERS.c.id)).scalar_one()
            return [(int(oid), refs[0])]
        ids = c.execute(
            insert(ORDERS).returning(ORDERS.c.id, sort_by_parameter_order=True), params
        ).scalars().all()
        return [(int(oid), ref) for oid, ref in zip(ids, refs, strict=True)]

    def _new_order(
        self, c: Connection, created_at: datetime, fields: dict[str, Any]
    ) -> tuple[int, str]:
        return self._new_orders(c, [(created_at, fields)])[0]

    def _events(
        self,
        c: Connection,
        events: Sequence[tuple[int, str, str | None, str | None, str]],
    ) -> None:
        """System events (order id, action, from, to, note), one ``executemany``."""
        at = utc(self.clock())
        c.execute(
            insert(EVENTS),
            [
                {
                    "order_id": oid,
                    "at": at,
                    "actor": "system",
                    "action": action,
                    "from_status": before,
                    "to_status": after,
                    "unit": None,
                    "note": note,
                }
                for oid, action, before, after, note in events
            ],
        )

    def _event(
        self,
        c: Connection,
        order_id: int,
        actor: str,
        action: str,
        from_status: str | None,
        to_status: str | None,
        unit: str | None = None,
        note: str = "",
        at: datetime | None = None,
    ) -> None:
        c.execute(
            insert(EVENTS).values(
                order_id=order_id,
                at=utc(at or self.clock()),
                actor=actor,
                action=action,
                from_status=from_status,
                to_status=to_status,
                unit=unit,
                note=note,
            )
        )

    # ------------------------------------------------------------ reading

    def _order(self, c: Connection, ref: str, lock: bool = False) -> dict[str, Any]:
        q = select(ORDERS).where(ORDERS.c.ref == ref)
        if lock:
            q = q.with_for_update()
        row = c.execute(q).mappings().first()
        if row is None:
            raise OrderNotFound(ref)
        return _row(row)

    def get(self, ref: str, who: Principal | None = None) -> dict[str, Any]:
        """One order with its calls and events (``who``: only if they may see it)."""
        with self._read() as c:
            order = self._order(c, ref)
            if who is not None and not self.may_see(who, order):
                raise OrderNotFound(ref)
            order["calls"] = [
                _row(r)
                for r in c.execute(
                    select(CALLS)
                    .where(CALLS.c.order_id == order["id"])
                    .order_by(CALLS.c.started_at)
                ).mappings()
            ]
            order["events"] = [
                _row(r)
                for r in c.execute(
                    select(EVENTS).where(EVENTS.c.order_id == order["id"]).order_by(EVENTS.c.id)
                ).mappings()
            ]
            if order["merged_into"] is not None:
                order["merged_into_ref"] = c.execute(
                    select(ORDERS.c.ref).where(ORDERS.c.id == order["merged_into"])
                ).scalar()
        return order

    def ref_of_call(self, call_id: str) -> str | None:
        with self._read() as c:
            return self._ref_of_call(c, call_id)

    def assign_agent(self, call_id: str, agent: str) -> str | None:
        """An agent answered a call in progress: the order (still ``intake``) becomes
        theirs, so they can read its reference during the call. Returns the reference."""

        def run(c: Connection) -> str | None:
            row = (
                c.execute(
                    select(ORDERS.c.id, ORDERS.c.ref, ORDERS.c.agent, ORDERS.c.status)
                    .join(CALLS, CALLS.c.order_id == ORDERS.c.id)
                    .where(CALLS.c.call_id == call_id)
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            if row["status"] == lc.INTAKE and row["agent"] != agent:
                c.execute(update(ORDERS).where(ORDERS.c.id == row["id"]).values(agent=agent))
                c.execute(update(CALLS).where(CALLS.c.call_id == call_id).values(agent=agent))
                self._event(c, row["id"], "system", "answered", lc.INTAKE, lc.INTAKE, note=agent)
            return str(row["ref"])

        ref: str | None = self._retrying(run)
        return ref

    def find(
        self, who: Principal | None = None, limit: int = 100, **filters: Any
    ) -> list[dict[str, Any]]:
        """Orders, newest first, filtered by column equality (status, unit, centre, agent,
        caller, category) and ``since``/``until`` on ``created_at``; only those ``who`` may see."""
        q = select(ORDERS)
        for key in ("status", "unit", "centre", "agent", "caller", "category", "time_limit"):
            if filters.get(key) is not None:
                q = q.where(ORDERS.c[key] == filters[key])
        if filters.get("call_id") is not None:
            q = q.where(
                ORDERS.c.id.in_(
                    select(CALLS.c.order_id).where(CALLS.c.call_id == filters["call_id"])
                )
            )
        if filters.get("since") is not None:
            q = q.where(ORDERS.c.created_at >= utc(filters["since"]))
        if filters.get("until") is not None:
            q = q.where(ORDERS.c.created_at < utc(filters["until"]))
        if who is not None and who.role == "unit":
            q = q.where(ORDERS.c.unit == who.unit)
        elif who is not None and who.role == "supervisor" and who.centre is not None:
            under = self._centres_under().get(who.centre, {who.centre})
            units = [u for u, centre in self.policy.units.items() if centre in under]
            q = q.where(
                or_(ORDERS.c.centre.is_(None), ORDERS.c.centre.in_(under), ORDERS.c.unit.in_(units))
            )
        elif who is not None and who.role == "agent":
            q = q.where(ORDERS.c.agent.in_([x for x in (who.name, who.seat) if x]))
        q = q.order_by(ORDERS.c.id.desc())
        out: list[dict[str, Any]] = []
        with self._read() as c:
            for r in c.execution_options(yield_per=200).execute(q).mappings():
                o = _row(r)
                if who is None or self.may_see(who, o):
                    out.append(o)
                    if len(out) >= limit:
                        break
        return out

    def caller_history(
        self, caller: str, *, exclude: str | None = None, limit: int = HISTORY
    ) -> list[dict[str, Any]]:
        """The caller's last orders, newest first, for the agent on a call with them
        (重复来电: "my water is still off, I called on Monday"): what each was about,
        where it is and by when. Orders that stated nothing (void), were merged into
        another, or belong to a call still in progress (intake) are left out, as is
        ``exclude`` (the call's own order); a withheld or placeholder number has none."""
        with self._read() as c:
            return [summary(o) for o in self._history(c, caller, exclude, limit)]

    def _history(
        self, c: Connection, caller: str, exclude: str | None, limit: int = HISTORY
    ) -> list[dict[str, Any]]:
        """:meth:`caller_history`'s orders, whole (``repeat`` accepts only these)."""
        if not lc.identifies_caller(caller):
            return []
        q = (
            select(ORDERS)
            .where(ORDERS.c.caller == caller, ORDERS.c.status.not_in(lc.NOT_HISTORY))
            .order_by(ORDERS.c.created_at.desc(), ORDERS.c.id.desc())
            .limit(limit + 1)
        )
        rows = [_row(r) for r in c.execute(q).mappings()]
        return [o for o in rows if o["ref"] != exclude][:limit]

    def may_see(self, who: Principal, order: Mapping[str, Any]) -> bool:
        return lc.may_see(
            who.role,
            who.name,
            who.seat,
            who.centre,
            getattr(who, "unit", None),
            order,
            self._centres_under(),
            self.policy.units,
        )

    def visible_refs(self, who: Principal, refs: Collection[str]) -> set[str]:
        """Which of ``refs`` ``who`` may see (:meth:`may_see`), for what hangs off orders
        in another database (the surveys). A reference with no order (a survey an admin
        scheduled by hand) counts as placed in no centre: admins and the supervisors
        over every centre."""
        wanted = sorted(set(refs))
        found: set[str] = set()
        out: set[str] = set()
        with self._read() as c:
            for i in range(0, len(wanted), 500):  # well below any database's parameter limit
                q = select(ORDERS).where(ORDERS.c.ref.in_(wanted[i:i + 500]))
                for r in c.execute(q).mappings():
                    o = _row(r)
                    found.add(o["ref"])
                    if self.may_see(who, o):
                        out.add(o["ref"])
        if centre_scope(who, self._centres_under()).unplaced:
            out.update(r for r in wanted if r not in found)
        return out

    def call_centres(self, call_ids: Collection[str]) -> dict[str, str | None]:
        """The centre each of ``call_ids`` was placed in (calls with no order: absent)."""
        wanted = sorted(set(call_ids))
        out: dict[str, str | None] = {}
        with self._read() as c:
            for i in range(0, len(wanted), 500):
                q = select(CALLS.c.call_id, CALLS.c.centre).where(
                    CALLS.c.call_id.in_(wanted[i:i + 500]))
                out.update({r.call_id: r.centre for r in c.execute(q)})
        return out

    # ------------------------------------------------------------ transitions

    def act(
        self,
        ref: str,
        action: str,
        who: Principal,
        params: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """Do ``action`` on order ``ref`` as ``who``; returns the order after it.

        Raises :class:`OrderNotFound` (also for an order ``who`` may not see) or a
        :class:`workorders.lifecycle.TransitionError`.
        """
        params = dict(params or {})
        now = utc(at or self.clock())
        policy = self.policy

        def run(c: Connection) -> lc.Change:
            order = self._order(c, ref, lock=True)
            if who.role not in ("system", "survey") and not self.may_see(who, order):
                raise OrderNotFound(ref)
            if action == "merge":
                into_ref = params.get("into")
                if not isinstance(into_ref, str):
                    raise lc.RequestError("merge needs 'into': the reference of the order to keep")
                into = self._order(c, into_ref, lock=True)
                if not self.may_see(who, into):
                    raise OrderNotFound(into_ref)
                params["into"] = into
            elif action == "repeat":
                # Only an order the agent's screen lists for this caller (GET /calls/{seat}:
                # caller_history), or one a supervisor may see; anything else is "not
                # found", whether it exists or not.
                of_ref = params.get("of")
                if not isinstance(of_ref, str):
                    raise lc.RequestError(
                        "repeat needs 'of': the reference of the caller's earlier order")
                shown = {o["ref"] for o in self._history(c, order["caller"], order["ref"])}
                of = self._order(c, of_ref, lock=True)
                if of_ref not in shown and (who.role == "agent" or not self.may_see(who, of)):
                    raise OrderNotFound(of_ref)
                params["of"] = of
            change = lc.plan(order, action, who.role, params, now, policy)
            c.execute(
                update(ORDERS)
                .where(ORDERS.c.id == order["id"])
                .values(status=change.to_status, **change.updates)
            )
            self._event(
                c,
                order["id"],
                who.name,
                change.action,
                change.from_status,
                change.to_status,
                unit=change.unit,
                note=change.note,
                at=now,
            )
            if action in ("merge", "repeat"):
                kept = params["into"] if action == "merge" else params["of"]
                moved = c.execute(
                    update(CALLS).where(CALLS.c.order_id == order["id"]).values(order_id=kept["id"])
                ).rowcount
                what, note = "merged-in", f"{order['ref']} merged in ({moved} call(s))"
                if action == "repeat":
                    what, note = "repeat-call", f"{order['ref']}: the caller called again"
                    if lc.urges(kept):  # the next supervision round sends the notice
                        what = "urged"
                        c.execute(update(ORDERS).where(ORDERS.c.id == kept["id"])
                                  .values(urged=func.coalesce(ORDERS.c.urged, 0) + 1,
                                          urged_at=now))
                self._event(c, kept["id"], who.name, what, kept["status"], kept["status"],
                            note=note, at=now)
            return change

        change = self._retrying(run)
        after = self.get(ref)
        if change.to_status == lc.CLOSED:
            self._fire_closed(after)
        return after

    def _fire_closed(self, order: dict[str, Any]) -> None:
        for cb in list(self._closed):
            try:
                cb(order)
            except Exception:  # noqa: BLE001 - a listener's bug never undoes a closed order
                log.exception("on_closed listener %r failed for %s", cb, order["ref"])

    def record_survey(
        self, ref: str, result: str, at: datetime, actor: str = "survey"
    ) -> dict[str, Any]:
        """Store the call-back survey's answer; ``dissatisfied`` sends the order back for
        re-handling when ``workorders.reopen_on_dissatisfied`` says so."""
        if result not in SURVEY_RESULTS:
            raise lc.RequestError(f"unknown survey result {result!r}", known=list(SURVEY_RESULTS))
        at = utc(at)

        def run(c: Connection) -> str:
            order = self._order(c, ref, lock=True)
            c.execute(
                update(ORDERS).where(ORDERS.c.id == order["id"]).values(survey=result, survey_at=at)
            )
            self._event(
                c,
                order["id"],
                actor,
                "surveyed",
                order["status"],
                order["status"],
                note=result,
                at=at,
            )
            return str(order["status"])

        status = self._retrying(run)
        if (
            result == "dissatisfied"
            and self.policy.reopen_on_dissatisfied
            and status in lc.TRANSITIONS["reopen"].sources
        ):
            return self.act(
                ref,
                "reopen",
                Principal(actor, "survey"),
                {"reason": "the citizen was dissatisfied (call-back survey)"},
                at=at,
            )
        return self.get(ref)

    # ------------------------------------------------------------ supervision

    def running_near(self, now: datetime) -> list[dict[str, Any]]:
        """Running orders near their deadline (by their class's reminder, see
        :class:`lc.Horizons`) or past it, soonest first."""
        return self._near(self.policy.horizons(utc(now)))

    def _near(self, horizons: lc.Horizons) -> list[dict[str, Any]]:
        horizon = horizons.latest()
        with self._read() as c:
            rows = (
                c.execute(
                    select(ORDERS)
                    .where(
                        ORDERS.c.status.in_(lc.RUNNING),
                        ORDERS.c.deadline.is_not(None),
                        ORDERS.c.deadline <= horizon,
                    )
                    .order_by(ORDERS.c.deadline)
                )
                .mappings()
                .all()
            )
        return [o for o in map(_row, rows) if o["deadline"] <= horizons(o["time_limit"])]

    def supervise(self, now: datetime | None = None) -> list[lc.Due]:
        """Remind and escalate what is due, each once; returns what was done now."""
        now = utc(now or self.clock())
        horizons = self.policy.horizons(now)
        done: list[lc.Due] = []
        for d in lc.due(self._near(horizons), horizons):
            col = ORDERS.c.reminded_at if d.action == "reminded" else ORDERS.c.escalated_at

            def run(c: Connection, d: lc.Due = d, col: Any = col) -> bool:
                hit = c.execute(
                    update(ORDERS)
                    .where(
                        ORDERS.c.id == d.order_id, col.is_(None), ORDERS.c.status.in_(lc.RUNNING)
                    )
                    .values({col.key: now})
                ).rowcount
                if hit:
                    what = "deadline near" if d.action == "reminded" else "overdue"
                    self._event(
                        c,
                        d.order_id,
                        "system",
                        d.action,
                        None,
                        None,
                        unit=d.unit,
                        note=f"{what}: deadline {d.deadline.isoformat()}",
                        at=now,
                    )
                return bool(hit)

            if self._retrying(run):
                done.append(d)
        return done + self._urges(now)

    def _urges(self, now: datetime) -> list[lc.Due]:
        """The urges (催办) of repeat calls whose notice is not sent yet, each once: marked
        sent in the same step, so two rounds or two controllers never send one twice,
        and a restart loses none."""
        unsent = and_(ORDERS.c.urged_at.is_not(None),
                      or_(ORDERS.c.urge_sent_at.is_(None),
                          ORDERS.c.urge_sent_at < ORDERS.c.urged_at))
        with self._read() as c:
            rows = [_row(r) for r in c.execute(
                select(ORDERS.c.id, ORDERS.c.ref, ORDERS.c.unit, ORDERS.c.deadline,
                       ORDERS.c.urged_at).where(unsent).order_by(ORDERS.c.urged_at)
            ).mappings()]
        out: list[lc.Due] = []
        for o in rows:
            def run(c: Connection, oid: int = o["id"]) -> bool:
                hit = c.execute(update(ORDERS).where(ORDERS.c.id == oid, unsent)
                                .values(urge_sent_at=now)).rowcount
                return bool(hit)

            if self._retrying(run):
                out.append(lc.Due(o["id"], o["ref"], "urged", o["unit"],
                                  o["deadline"] or o["urged_at"]))
        return out


def _sqlite_immediate(engine: Engine) -> None:
    """SQLite transactions take the write lock at BEGIN (``BEGIN IMMEDIATE``): a
    read-then-write transaction never fails half-way on a lock upgrade, concurrent
    writers wait for each other (busy timeout) instead."""

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        readonly = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def due_as_dict(d: lc.Due) -> dict[str, Any]:
    return asdict(d)


__all__ = ["WorkOrderStore", "OrderNotFound", "case_ref", "Outcome", "SURVEY_RESULTS"]
