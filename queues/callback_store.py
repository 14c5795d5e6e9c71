"""Where call-back requests live outside the controller: SQLAlchemy, SQLite by default.

The default database is ``<instance>/state/callbacks.sqlite`` (host only,
like the AMI secrets); any SQLAlchemy URL works (PostgreSQL for several
controllers later). One row per request in ``callbacks`` (the whole record as
JSON plus the columns lists filter on) and one row per state change in
``callback_transitions``. The service saves a request *before* it acts on the
new state, so a controller restarted at any point finds every open request.

Writes are single small transactions; on the local SQLite file (WAL,
``synchronous=NORMAL``: a process crash loses nothing) they take well under
a millisecond and run inline on the event loop, as transfer/store.py does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hotline.storage import Tables, store_url

from .callback import CallbackRequest

log = logging.getLogger(__name__)

FILENAME = "callbacks.sqlite"


class Base(DeclarativeBase):
    pass


class CallbackRow(Base):
    __tablename__ = "callbacks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    queue: Mapped[str] = mapped_column(String(40), index=True)
    state: Mapped[str] = mapped_column(String(20), index=True)
    terminal: Mapped[bool] = mapped_column(Boolean, index=True)
    uniqueid: Mapped[str] = mapped_column(String(160), index=True)
    first_queued: Mapped[float] = mapped_column(Float, index=True)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    updated_at: Mapped[float] = mapped_column(Float)
    record: Mapped[str] = mapped_column(Text)


class TransitionRow(Base):
    __tablename__ = "callback_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    callback_id: Mapped[str] = mapped_column(ForeignKey("callbacks.id"), index=True)
    at: Mapped[float] = mapped_column(Float)
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text)



class CallbackStore:
    def __init__(self, url: str):
        self.url = url
        self.db = Tables(url, Base.metadata, "call-back")
        self.engine: Engine = self.db.engine
        self._saved_history: dict[str, int] = {}

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> CallbackStore:
        return cls(f"sqlite:///{state_dir / FILENAME}")

    @classmethod
    def open(cls, url: str | None, state_dir: Path) -> CallbackStore:
        """The store at the configured database ``url`` (any SQLAlchemy URL, e.g.
        ``postgresql+psycopg://...``), or by default a SQLite file in ``state_dir``."""
        return cls(store_url(url, state_dir, FILENAME))

    def save(self, r: CallbackRequest) -> None:
        """Write ``r`` and its transitions not written yet, in one transaction."""
        record = json.dumps(r.as_dict(), ensure_ascii=False)
        with self.db.session() as s, s.begin():
            row = s.get(CallbackRow, r.id)
            if row is None:
                row = CallbackRow(
                    id=r.id,
                    queue=r.queue,
                    uniqueid=r.uniqueid,
                    first_queued=r.first_queued,
                    created_at=r.created_at,
                )
                s.add(row)
                self._saved_history[r.id] = 0
            row.state, row.terminal = r.state.value, r.terminal
            row.updated_at, row.record = r.updated_at, record
            s.flush()  # the transitions below refer to the row
            done = self._saved_history.get(r.id)
            if done is None:  # loaded by another process or before a restart
                done = len(
                    s.scalars(
                        select(TransitionRow.id).where(TransitionRow.callback_id == r.id)
                    ).all()
                )
            for h in r.history[done:]:
                s.add(
                    TransitionRow(
                        callback_id=r.id,
                        at=h["at"],
                        from_state=h["from"],
                        to_state=h["to"],
                        reason=h["reason"],
                    )
                )
        self._saved_history[r.id] = len(r.history)
        if r.terminal:
            self._saved_history.pop(r.id, None)

    def get(self, request_id: str) -> CallbackRequest | None:
        with self.db.session() as s:
            row = s.get(CallbackRow, request_id)
            return None if row is None else CallbackRequest.from_dict(json.loads(row.record))

    def open_requests(self) -> list[CallbackRequest]:
        with self.db.session() as s:
            rows = s.scalars(
                select(CallbackRow)
                .where(CallbackRow.terminal.is_(False))
                .order_by(CallbackRow.first_queued)
            ).all()
            out = [CallbackRequest.from_dict(json.loads(row.record)) for row in rows]
        for r in out:
            self._saved_history[r.id] = len(r.history)
        return out

    def recent(
        self,
        states: Iterable[str] | None = None,
        queues: Iterable[str] | None = None,
        limit: int = 100,
    ) -> list[CallbackRequest]:
        with self.db.session() as s:
            q = select(CallbackRow).order_by(CallbackRow.created_at.desc()).limit(limit)
            if states is not None:
                q = q.where(CallbackRow.state.in_(list(states)))
            if queues is not None:
                q = q.where(CallbackRow.queue.in_(list(queues)))
            return [CallbackRequest.from_dict(json.loads(row.record)) for row in s.scalars(q).all()]

    def uniqueids(self) -> set[str]:
        """Every original call that has (or had) a call-back request."""
        with self.db.session() as s:
            return set(s.scalars(select(CallbackRow.uniqueid)).all())

    def transitions(self, request_id: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(
                select(TransitionRow)
                .where(TransitionRow.callback_id == request_id)
                .order_by(TransitionRow.id)
            ).all()
            return [
                {"at": r.at, "from": r.from_state, "to": r.to_state, "reason": r.reason}
                for r in rows
            ]

    def close(self) -> None:
        self.db.close()
