"""Records with a state machine, kept outside the controller: the base of the
transfer, call-back and survey stores.

One row per record in the feature's table (``ROW``): the whole record as JSON
in ``record`` (what the service reads back: ``decode``) plus the columns that
lists filter on (``columns``). With ``TRANSITION`` set, one row per state
change too, written from the record's ``history`` in the same transaction as
the record: only the entries not written yet (counted once per record after a
restart or a load by another process). A service saves a record *before* it
acts on the new state, so a controller restarted at any point finds every open
record.

The database is :class:`hotline.storage.Tables`: SQLite in the instance's
``state/`` folder or the PostgreSQL of ``storage.url``; one that is down at
start only makes the store's uses fail until it is back.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from hotline.storage import Tables, read_while_up


class Record(Protocol):
    id: str
    history: list[dict[str, Any]]  # {"at", "from", "to", "reason"} per state change

    @property
    def terminal(self) -> bool: ...

    def as_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=Record)
Columns = tuple[dict[str, Any], dict[str, Any]]  # (set when the row is created, at every save)


class RecordStore(Generic[R]):
    FEATURE: ClassVar[str]  # names the database in the log
    ROW: ClassVar[type[Any]]  # mapped: id, state, terminal, updated_at, record + filter columns
    TRANSITION: ClassVar[type[Any] | None] = None  # mapped: OWNER, at, from_state, to_state, reason
    OWNER: ClassVar[str] = ""  # the TRANSITION column holding the record's id

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = Tables(url, self.ROW.metadata, self.FEATURE)
        self.engine: Engine = self.db.engine
        self._saved_history: dict[str, int] = {}  # record id -> transitions written

    # ------------------------------------------------------------ the feature's part
    def decode(self, record: dict[str, Any]) -> R:
        raise NotImplementedError

    def columns(self, r: R, now: float | None) -> Columns:
        """(columns set when the row is created, columns set at every save)."""
        raise NotImplementedError

    def _children(self, s: Session, r: R) -> None:
        """Rows that belong to the record, written in its transaction: the transitions."""
        if self.TRANSITION is None:
            return
        owner = getattr(self.TRANSITION, self.OWNER)
        done = self._saved_history.get(r.id)
        if done is None:  # loaded by another process or before a restart
            done = s.scalar(select(func.count()).select_from(self.TRANSITION)
                            .where(owner == r.id)) or 0
        for h in r.history[done:]:
            s.add(self.TRANSITION(**{self.OWNER: r.id}, at=h["at"],
                                  from_state=h["from"], to_state=h["to"], reason=h["reason"]))

    # ------------------------------------------------------------ shared
    def save(self, r: R, now: float | None = None) -> None:
        """Write ``r`` and what belongs to it (transitions not written yet), in one
        transaction."""
        rid = r.id
        record = json.dumps(r.as_dict(), ensure_ascii=False)
        first, every = self.columns(r, now)
        with self.db.session() as s, s.begin():
            row = s.get(self.ROW, rid)
            if row is None:
                row = self.ROW(id=rid, **first)
                s.add(row)
                self._saved_history[rid] = 0
            for name, value in every.items():
                setattr(row, name, value)
            row.record = record
            s.flush()  # the rows below refer to it
            self._children(s, r)
        if self.TRANSITION is None or r.terminal:
            self._saved_history.pop(rid, None)
        else:
            self._saved_history[rid] = len(r.history)

    def get(self, record_id: str) -> R | None:
        with self.db.session() as s:
            row = s.get(self.ROW, record_id)
            return None if row is None else self.decode(json.loads(row.record))

    def _records(self, query: Select[Any], loaded: bool = False) -> list[R]:
        """The records of ``query`` (rows of ``ROW``); ``loaded``: the service keeps them
        open, their transitions in the store are counted from now on."""
        with self.db.session() as s:
            out = [self.decode(json.loads(row.record)) for row in s.scalars(query).all()]
        if loaded and self.TRANSITION is not None:
            for r in out:
                self._saved_history[r.id] = len(r.history)
        return out

    def transitions(self, record_id: str) -> list[dict[str, Any]]:
        if self.TRANSITION is None:
            return []
        t = self.TRANSITION
        with self.db.session() as s:
            rows = s.scalars(select(t).where(getattr(t, self.OWNER) == record_id)
                             .order_by(t.id)).all()
            return [{"at": r.at, "from": r.from_state, "to": r.to_state, "reason": r.reason}
                    for r in rows]

    def close(self) -> None:
        self.db.close()


class LoadsOpenRecords(Generic[R]):
    """A service whose open records live in a :class:`RecordStore` that may be down.

    :meth:`load` (at start) and :meth:`reload` (from the event loop: the read in a
    worker thread) read them with ``_open_records`` and hand them to ``_adopt`` on the
    calling thread; while the database is down nothing is adopted (the outage is
    logged by the store) and both return ``False``, so the caller tries again later.
    ``_adopt`` must keep records the service made since (they are newer than rows)."""

    OPEN_WHAT: ClassVar[str]  # "open transfers", for the log
    store: Any  # the service's RecordStore (its ``db`` is the hotline.storage.Tables)

    def _open_records(self) -> list[R]:
        raise NotImplementedError

    def _adopt(self, records: list[R]) -> None:
        raise NotImplementedError

    def _read_open(self) -> list[R] | None:
        return read_while_up(self.store.db, self._open_records, f"{self.OPEN_WHAT} not loaded")

    def load(self) -> bool:
        records = self._read_open()
        if records is None:
            return False
        self._adopt(records)
        return True

    async def reload(self) -> bool:
        records = await asyncio.to_thread(self._read_open)
        if records is None:
            return False
        self._adopt(records)
        return True
