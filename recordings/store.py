"""Where call recordings are listed: the ``recordings`` table (SQLAlchemy).

One row per recorded channel: the call (``call_id``, the caller channel's
linkedid, the key work orders use), its ``kind`` (``call`` or ``survey``), the
file's ``path`` relative to the recordings root (never absolute, never with
``..``: see :mod:`recordings.paths`), when it started and ended, its size, the
pauses (who paused or resumed, when) and, once the retention purge has deleted
the file, ``purged_at``.

Rows are written when Asterisk says a recording started (the dialplan's
UserEvent) and completed at hang-up; a reconcile after a controller restart
adds rows for files that have none and closes rows whose channel is gone
(:meth:`recordings.service.RecordingService.reconcile`), so a restart loses
nothing. The table has its own metadata: the same database URL as the other
stores (:class:`hotline.storage.Tables`), SQLite in the instance's
``state/`` folder by default.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, UniqueConstraint, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hotline.storage import Tables

log = logging.getLogger(__name__)

FILENAME = "recordings.sqlite"
KINDS = ("call", "survey")


class Base(DeclarativeBase):
    pass


class RecordingRow(Base):
    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(String(64), index=True)  # linkedid
    kind: Mapped[str] = mapped_column(String(10))
    uniqueid: Mapped[str] = mapped_column(String(64), default="")  # the recorded channel
    channel: Mapped[str] = mapped_column(String(160), default="")
    path: Mapped[str] = mapped_column(String(255), unique=True)  # relative to the root
    seat: Mapped[str | None] = mapped_column(String(40), nullable=True)  # agent who answered
    started_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pauses: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    purged_at: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (
        UniqueConstraint("call_id", "kind", name="uq_recordings_call_kind"),
        Index("ix_recordings_started", "started_at"),
        Index("ix_recordings_kind_started", "kind", "started_at"),
    )


@dataclass(frozen=True)
class Recording:
    """A row as plain data (what the service, the purge and the HTTP API see)."""

    id: int
    call_id: str
    kind: str
    path: str
    started_at: float
    ended_at: float | None = None
    size: int | None = None
    uniqueid: str = ""
    channel: str = ""
    seat: str | None = None
    pauses: list[dict[str, Any]] = field(default_factory=list)
    purged_at: float | None = None

    @property
    def paused(self) -> bool:
        return bool(self.pauses) and self.pauses[-1].get("action") == "pause"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "call_id": self.call_id, "kind": self.kind, "path": self.path,
            "started_at": self.started_at, "ended_at": self.ended_at,
            "duration": (None if self.ended_at is None
                         else round(self.ended_at - self.started_at, 3)),
            "size": self.size, "seat": self.seat, "pauses": list(self.pauses),
            "paused": self.paused, "purged_at": self.purged_at,
        }


def _plain(r: RecordingRow) -> Recording:
    return Recording(
        id=r.id, call_id=r.call_id, kind=r.kind, path=r.path, started_at=r.started_at,
        ended_at=r.ended_at, size=r.size, uniqueid=r.uniqueid, channel=r.channel, seat=r.seat,
        pauses=list(r.pauses or []), purged_at=r.purged_at,
    )


class RecordingStore:
    def __init__(self, url: str):
        self.url = url
        self.db = Tables(url, Base.metadata, "recording")
        self.engine: Engine = self.db.engine

    @classmethod
    def in_state_dir(cls, state: Path) -> RecordingStore:
        return cls(f"sqlite:///{state / FILENAME}")

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ writes
    def started(self, *, call_id: str, kind: str, path: str, started_at: float,
                uniqueid: str = "", channel: str = "") -> Recording:
        """The row of a recording that started; idempotent (same call and kind: kept)."""
        if kind not in KINDS:
            raise ValueError(f"unknown recording kind {kind!r}")
        try:
            return self._started(call_id, kind, path, started_at, uniqueid, channel)
        except IntegrityError:  # written at the same moment by another task: read it back
            return self._started(call_id, kind, path, started_at, uniqueid, channel)

    def _started(self, call_id: str, kind: str, path: str, started_at: float, uniqueid: str,
                 channel: str) -> Recording:
        with self.db.session() as s, s.begin():
            row = s.scalars(select(RecordingRow).where(
                RecordingRow.call_id == call_id, RecordingRow.kind == kind)).first()
            if row is None:
                row = s.scalars(select(RecordingRow).where(RecordingRow.path == path)).first()
            if row is None:
                row = RecordingRow(call_id=call_id, kind=kind, path=path, started_at=started_at,
                                   uniqueid=uniqueid, channel=channel, pauses=[])
                s.add(row)
            else:
                row.uniqueid = row.uniqueid or uniqueid
                row.channel = row.channel or channel
            s.flush()
            return _plain(row)

    def ended(self, rec_id: int, ended_at: float, size: int | None) -> None:
        with self.db.session() as s, s.begin():
            s.execute(update(RecordingRow).where(RecordingRow.id == rec_id)
                      .values(ended_at=ended_at, size=size))

    def set_seat(self, call_id: str, seat: str) -> None:
        with self.db.session() as s, s.begin():
            s.execute(update(RecordingRow).where(RecordingRow.call_id == call_id,
                                                 RecordingRow.seat.is_(None)).values(seat=seat))

    def add_pause(self, rec_id: int, entry: dict[str, Any]) -> Recording:
        with self.db.session() as s, s.begin():
            row = s.get(RecordingRow, rec_id)
            if row is None:
                raise KeyError(rec_id)
            row.pauses = [*(row.pauses or []), entry]  # a new list: JSON columns track assignment
            s.flush()
            return _plain(row)

    def mark_purged(self, rec_id: int, at: float) -> None:
        with self.db.session() as s, s.begin():
            s.execute(update(RecordingRow).where(RecordingRow.id == rec_id).values(purged_at=at))

    # ------------------------------------------------------------ reads
    def get(self, rec_id: int) -> Recording | None:
        with self.db.session() as s:
            row = s.get(RecordingRow, rec_id)
            return None if row is None else _plain(row)

    def for_call(self, call_id: str, kind: str = "call") -> Recording | None:
        """The recording of a call (work orders and the call tracker look it up here)."""
        with self.db.session() as s:
            row = s.scalars(select(RecordingRow).where(
                RecordingRow.call_id == call_id, RecordingRow.kind == kind)).first()
            return None if row is None else _plain(row)

    def by_path(self, path: str) -> Recording | None:
        with self.db.session() as s:
            row = s.scalars(select(RecordingRow).where(RecordingRow.path == path)).first()
            return None if row is None else _plain(row)

    def listing(self, *, since: float | None = None, until: float | None = None,
                call_id: str | None = None, kind: str | None = None, seat: str | None = None,
                include_purged: bool = False, limit: int = 100) -> list[Recording]:
        q = select(RecordingRow)
        if since is not None:
            q = q.where(RecordingRow.started_at >= since)
        if until is not None:
            q = q.where(RecordingRow.started_at < until)
        if call_id is not None:
            q = q.where(RecordingRow.call_id == call_id)
        if kind is not None:
            q = q.where(RecordingRow.kind == kind)
        if seat is not None:
            q = q.where(RecordingRow.seat == seat)
        if not include_purged:
            q = q.where(RecordingRow.purged_at.is_(None))
        q = q.order_by(RecordingRow.started_at.desc(), RecordingRow.id.desc()).limit(limit)
        with self.db.session() as s:
            return [_plain(r) for r in s.scalars(q)]

    def open_rows(self) -> list[Recording]:
        """Recordings not yet ended (their call may still be on)."""
        with self.db.session() as s:
            q = select(RecordingRow).where(RecordingRow.ended_at.is_(None),
                                           RecordingRow.purged_at.is_(None))
            return [_plain(r) for r in s.scalars(q)]

    def kept(self) -> Iterator[Recording]:
        """Every recording whose file has not been purged (the purge selects from these)."""
        with self.db.session() as s:
            q = (select(RecordingRow).where(RecordingRow.purged_at.is_(None))
                 .order_by(RecordingRow.id))
            rows = [_plain(r) for r in s.scalars(q)]
        yield from rows

    def known_paths(self) -> set[str]:
        with self.db.session() as s:
            return set(s.scalars(select(RecordingRow.path)))
