"""Where transfers live outside the controller process: SQLite via SQLAlchemy.

The file is ``<instance>/state/transfers.sqlite`` (host only, like the AMI
secrets): one row per transfer in ``transfers`` (the whole record as JSON plus
the columns reports filter on) and one row per state change in
``transfer_transitions``. A transfer is saved before the service acts on its
new state, so a controller restarted at any point finds every open transfer
and reconciles it against Asterisk (:func:`transfer.machine.reconcile`).

Writes are small transactions on a local file in WAL mode with
``synchronous=NORMAL`` (no fsync per commit; a power cut may lose the last
transactions, a process crash loses nothing), so they run inline on the
event loop: well under a millisecond each.
"""

from __future__ import annotations

import json
import logging
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



class TransferStore:
    def __init__(self, path: Path | str):
        """``path``: a SQLite file, or any SQLAlchemy database URL (``scheme://...``)."""
        self.path = str(path)
        url = self.path if "://" in self.path else f"sqlite:///{self.path}"
        self.db = Tables(url, Base.metadata, "transfer")
        self.engine: Engine = self.db.engine
        self._saved_history: dict[str, int] = {}

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> TransferStore:
        return cls(state_dir / FILENAME)

    @classmethod
    def open(cls, url: str | None, state_dir: Path) -> TransferStore:
        """The store at the configured database ``url``, or a SQLite file in ``state_dir``."""
        return cls(store_url(url, state_dir, FILENAME))

    def save(self, t: Transfer, now: float) -> None:
        """Write ``t`` and the transitions not written yet, in one transaction."""
        record = json.dumps(t.as_dict(), ensure_ascii=False)
        with self.db.session() as s, s.begin():
            row = s.get(TransferRow, t.id)
            new = row is None
            if row is None:
                row = TransferRow(
                    id=t.id,
                    line=t.line,
                    origin=t.origin,
                    caller_uniqueid=t.caller_uniqueid,
                    seat=t.seat,
                    requested_at=t.times.get("requested", now),
                )
            row.state, row.terminal, row.outcome = t.state.value, t.terminal, t.outcome
            row.updated_at, row.record = now, record
            if new:
                s.add(row)
                s.flush()  # the transitions below refer to it
            done = self._saved_history.get(t.id, 0)
            for h in t.history[done:]:
                s.add(
                    TransitionRow(
                        transfer_id=t.id,
                        at=h["at"],
                        from_state=h["from"],
                        to_state=h["to"],
                        reason=h["reason"],
                    )
                )
        self._saved_history[t.id] = len(t.history)
        if t.terminal:
            self._saved_history.pop(t.id, None)

    def _load(self, row: TransferRow) -> Transfer:
        t = Transfer.from_dict(json.loads(row.record))
        self._saved_history[t.id] = len(t.history)
        return t

    def get(self, transfer_id: str) -> Transfer | None:
        with self.db.session() as s:
            row = s.get(TransferRow, transfer_id)
            return None if row is None else Transfer.from_dict(json.loads(row.record))

    def open_transfers(self) -> list[Transfer]:
        with self.db.session() as s:
            rows = s.scalars(
                select(TransferRow)
                .where(TransferRow.terminal.is_(False))
                .order_by(TransferRow.requested_at)
            ).all()
            return [self._load(r) for r in rows]

    def recent(self, limit: int = 100, seat: str | None = None) -> list[dict[str, Any]]:
        with self.db.session() as s:
            q = select(TransferRow).order_by(TransferRow.requested_at.desc()).limit(limit)
            if seat is not None:
                q = q.where(TransferRow.seat == seat)
            return [json.loads(r.record) for r in s.scalars(q).all()]

    def transitions(self, transfer_id: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(
                select(TransitionRow)
                .where(TransitionRow.transfer_id == transfer_id)
                .order_by(TransitionRow.id)
            ).all()
            return [
                {"at": r.at, "from": r.from_state, "to": r.to_state, "reason": r.reason}
                for r in rows
            ]

    def close(self) -> None:
        self.db.close()
