"""Where transfers live outside the controller process: SQLite via SQLAlchemy.

The file is ``<instance>/state/transfers.sqlite`` (host only, like the AMI
secrets): one row per transfer in ``transfers`` (the whole record as JSON plus
the columns reports filter on) and one row per state change in
``transfer_transitions``. A transfer is saved before the service acts on its
new state, so a controller restarted at any point finds every open transfer
and reconciles it against Asterisk (:func:`transfer.machine.reconcile`).
Saving, loading and the transitions are :class:`hotline.record_store.RecordStore`'s;
this module has the tables and what lists filter on.

Writes are small transactions on a local file in WAL mode with
``synchronous=NORMAL`` (no fsync per commit; a power cut may lose the last
transactions, a process crash loses nothing), so they run inline on the
event loop: well under a millisecond each.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
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

from .machine import Transfer

log = logging.getLogger(__name__)

FILENAME = "transfers.sqlite"


class Base(DeclarativeBase):
    pass


class TransferRow(Base):
    __tablename__ = "transfers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    line: Mapped[str] = mapped_column(String(20))
    origin: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(30), index=True)
    terminal: Mapped[bool] = mapped_column(Boolean, index=True)
    outcome: Mapped[str] = mapped_column(Text, default="")
    caller_uniqueid: Mapped[str] = mapped_column(String(160), index=True)
    seat: Mapped[str | None] = mapped_column(String(40), index=True, nullable=True)
    requested_at: Mapped[float] = mapped_column(Float, index=True)
    updated_at: Mapped[float] = mapped_column(Float)
    record: Mapped[str] = mapped_column(Text)


class TransitionRow(Base):
    __tablename__ = "transfer_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    transfer_id: Mapped[str] = mapped_column(ForeignKey("transfers.id"), index=True)
    at: Mapped[float] = mapped_column(Float)
    from_state: Mapped[str] = mapped_column(String(30))
    to_state: Mapped[str] = mapped_column(String(30))
    reason: Mapped[str] = mapped_column(Text)



class TransferStore(RecordStore[Transfer]):
    FEATURE = "transfer"
    ROW = TransferRow
    TRANSITION = TransitionRow
    OWNER = "transfer_id"

    def __init__(self, path: Path | str):
        """``path``: a SQLite file, or any SQLAlchemy database URL (``scheme://...``)."""
        self.path = str(path)
        super().__init__(self.path if "://" in self.path else f"sqlite:///{self.path}")

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> TransferStore:
        return cls(state_dir / FILENAME)

    @classmethod
    def open(cls, url: str | None, state_dir: Path) -> TransferStore:
        """The store at the configured database ``url``, or a SQLite file in ``state_dir``."""
        return cls(store_url(url, state_dir, FILENAME))

    def decode(self, record: dict[str, Any]) -> Transfer:
        return Transfer.from_dict(record)

    def columns(self, t: Transfer, now: float | None) -> Columns:
        assert now is not None, "a transfer is saved with the time of its change"
        first = {"line": t.line, "origin": t.origin, "caller_uniqueid": t.caller_uniqueid,
                 "seat": t.seat, "requested_at": t.times.get("requested", now)}
        every = {"state": t.state.value, "terminal": t.terminal, "outcome": t.outcome,
                 "updated_at": now}
        return first, every

    def open_transfers(self) -> list[Transfer]:
        return self._records(select(TransferRow).where(TransferRow.terminal.is_(False))
                             .order_by(TransferRow.requested_at), loaded=True)

    def recent(self, limit: int = 100, seat: str | None = None,
               seats: Collection[str] | None = None) -> list[dict[str, Any]]:
        """The latest transfers, of ``seat`` and of one of ``seats`` when given."""
        q = select(TransferRow).order_by(TransferRow.requested_at.desc()).limit(limit)
        if seat is not None:
            q = q.where(TransferRow.seat == seat)
        if seats is not None:
            q = q.where(TransferRow.seat.in_(sorted(seats)))
        with self.db.session() as s:
            return [json.loads(r.record) for r in s.scalars(q).all()]
