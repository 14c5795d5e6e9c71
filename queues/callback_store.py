"""Where call-back requests live outside the controller: SQLAlchemy, SQLite by default.

The default database is ``<instance>/state/callbacks.sqlite`` (host only,
like the AMI secrets); any SQLAlchemy URL works (PostgreSQL for several
controllers later). One row per request in ``callbacks`` (the whole record as
JSON plus the columns lists filter on) and one row per state change in
``callback_transitions``. The service saves a request *before* it acts on the
new state, so a controller restarted at any point finds every open request.
Saving, loading and the transitions are :class:`hotline.record_store.RecordStore`'s.

Writes are single small transactions; on the local SQLite file (WAL,
``synchronous=NORMAL``: a process crash loses nothing) they take well under
a millisecond and run inline on the event loop, as transfer/store.py does.
"""

from __future__ import annotations

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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hotline.record_store import Columns, RecordStore
from hotline.storage import store_url

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



class CallbackStore(RecordStore[CallbackRequest]):
    FEATURE = "call-back"
    ROW = CallbackRow
    TRANSITION = TransitionRow
    OWNER = "callback_id"

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> CallbackStore:
        return cls(f"sqlite:///{state_dir / FILENAME}")

    @classmethod
    def open(cls, url: str | None, state_dir: Path) -> CallbackStore:
        """The store at the configured database ``url`` (any SQLAlchemy URL, e.g.
        ``postgresql+psycopg://...``), or by default a SQLite file in ``state_dir``."""
        return cls(store_url(url, state_dir, FILENAME))

    def decode(self, record: dict[str, Any]) -> CallbackRequest:
        return CallbackRequest.from_dict(record)

    def columns(self, r: CallbackRequest, now: float | None) -> Columns:
        first = {"queue": r.queue, "uniqueid": r.uniqueid, "first_queued": r.first_queued,
                 "created_at": r.created_at}
        return first, {"state": r.state.value, "terminal": r.terminal, "updated_at": r.updated_at}

    def open_requests(self) -> list[CallbackRequest]:
        return self._records(select(CallbackRow).where(CallbackRow.terminal.is_(False))
                             .order_by(CallbackRow.first_queued), loaded=True)

    def recent(
        self,
        states: Iterable[str] | None = None,
        queues: Iterable[str] | None = None,
        limit: int = 100,
    ) -> list[CallbackRequest]:
        q = select(CallbackRow).order_by(CallbackRow.created_at.desc()).limit(limit)
        if states is not None:
            q = q.where(CallbackRow.state.in_(list(states)))
        if queues is not None:
            q = q.where(CallbackRow.queue.in_(list(queues)))
        return self._records(q)

    def uniqueids(self) -> set[str]:
        """Every original call that has (or had) a call-back request."""
        with self.db.session() as s:
            return set(s.scalars(select(CallbackRow.uniqueid)).all())
