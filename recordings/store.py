"""Where call recordings are listed: the ``recordings`` table (SQLAlchemy).

One row per recorded channel: the call (``call_id``, the caller channel's
linkedid, the key work orders use), its ``kind`` (``call`` or ``survey``), the
file's ``path`` relative to the recordings root (never absolute, never with
``..``: see :mod:`recordings.paths`), when it started and ended, its size, the
pauses (who paused or resumed, when), the ``centre`` of the call (who may
listen: :func:`hotline.auth.centre_scope`) and, once the retention purge has
deleted the file, ``purged_at``.

The centre comes from the dialplan when the recording starts (the dialled
number's ``HOTLINE_CENTRE``) and is replaced by the call tracker's when the
call's facts are delivered (:meth:`RecordingStore.set_centres`); until either
is known it is NULL, and only admins and the supervisors over every centre see
the recording. ``centre`` was added after the first release: the store adds the
column to an older table on the first use that reaches the database, with its
tables (:func:`hotline.storage.add_missing_columns` as the ``Tables`` migration),
and the plugin places such rows from the work orders' calls
(:meth:`recordings.plugin.RecordingsPlugin.place_from_orders`).

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
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Float,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    or_,
    select,
    update,
)
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from hotline.storage import Tables, add_missing_columns

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
    centre: Mapped[str | None] = mapped_column(String(40), nullable=True)  # the call's

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
    centre: str | None = None

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
            "paused": self.paused, "purged_at": self.purged_at, "centre": self.centre,
        }


def _plain(r: RecordingRow) -> Recording:
    return Recording(
        id=r.id, call_id=r.call_id, kind=r.kind, path=r.path, started_at=r.started_at,
        ended_at=r.ended_at, size=r.size, uniqueid=r.uniqueid, channel=r.channel, seat=r.seat,
        pauses=list(r.pauses or []), purged_at=r.purged_at, centre=r.centre,
    )


def _add_centre_column(engine: Engine) -> None:
    add_missing_columns(engine, cast(Table, RecordingRow.__table__))


class RecordingStore:
    def __init__(self, url: str):
        self.url = url
        # the centre column is added to a table an older release made, on the first use
        # that reaches the database (also when it comes up after the controller)
        self.db = Tables(url, Base.metadata, "recording", migrate=_add_centre_column)
        self.engine: Engine = self.db.engine

    @classmethod
    def in_state_dir(cls, state: Path) -> RecordingStore:
        return cls(f"sqlite:///{state / FILENAME}")

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ writes
    def started(self, *, call_id: str, kind: str, path: str, started_at: float,
                uniqueid: str = "", channel: str = "", centre: str | None = None) -> Recording:
        """The row of a recording that started; idempotent (same call and kind: kept)."""
        if kind not in KINDS:
            raise ValueError(f"unknown recording kind {kind!r}")
        try:
            return self._started(call_id, kind, path, started_at, uniqueid, channel, centre)
        except IntegrityError:  # written at the same moment by another task: read it back
            return self._started(call_id, kind, path, started_at, uniqueid, channel, centre)

    def _started(self, call_id: str, kind: str, path: str, started_at: float, uniqueid: str,
                 channel: str, centre: str | None) -> Recording:
        with self.db.session() as s, s.begin():
            row = s.scalars(select(RecordingRow).where(
                RecordingRow.call_id == call_id, RecordingRow.kind == kind)).first()
            if row is None:
                row = s.scalars(select(RecordingRow).where(RecordingRow.path == path)).first()
            if row is None:
                row = RecordingRow(call_id=call_id, kind=kind, path=path, started_at=started_at,
                                   uniqueid=uniqueid, channel=channel, pauses=[], centre=centre)
                s.add(row)
            else:
                row.uniqueid = row.uniqueid or uniqueid
                row.channel = row.channel or channel
                row.centre = row.centre or centre
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

    def set_centres(self, centres: Mapping[str, str | None]) -> int:
        """The centre of each call (call id -> centre id), as the call tracker placed it
        when the call ended: it replaces what the dialplan said at the start (the call
        may have been answered by another centre's queue). A call with no centre (None)
        is left as it is. Idempotent; returns how many rows changed."""
        n = 0
        by_centre: dict[str, list[str]] = {}
        for call_id, centre in centres.items():
            if centre:
                by_centre.setdefault(centre, []).append(call_id)
        with self.db.session() as s, s.begin():
            for centre, ids in by_centre.items():
                for i in range(0, len(ids), 500):  # well below any database's parameter limit
                    done = s.execute(update(RecordingRow).where(
                        RecordingRow.call_id.in_(ids[i:i + 500]),
                        or_(RecordingRow.centre.is_(None), RecordingRow.centre != centre),
                    ).values(centre=centre))
                    n += cast(CursorResult[Any], done).rowcount
        return n

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

    def paths_for_calls(self, call_ids: Sequence[str], kind: str = "call") -> dict[str, str]:
        """call id -> the path of its recording, for the calls that have one (one query)."""
        if not call_ids:
            return {}
        with self.db.session() as s:
            return {cid: path for cid, path in s.execute(
                select(RecordingRow.call_id, RecordingRow.path).where(
                    RecordingRow.call_id.in_(list(call_ids)), RecordingRow.kind == kind))}

    def by_path(self, path: str) -> Recording | None:
        with self.db.session() as s:
            row = s.scalars(select(RecordingRow).where(RecordingRow.path == path)).first()
            return None if row is None else _plain(row)

    def listing(self, *, since: float | None = None, until: float | None = None,
                call_id: str | None = None, kind: str | None = None, seat: str | None = None,
                centres: Collection[str] | None = None, unplaced: bool = True,
                include_purged: bool = False, limit: int = 100) -> list[Recording]:
        """Newest first. ``centres``: only the calls of these centres (None: any), and
        those not placed in a centre yet only with ``unplaced``."""
        q = select(RecordingRow)
        if centres is not None:
            placed = RecordingRow.centre.in_(list(centres))
            q = q.where(or_(placed, RecordingRow.centre.is_(None)) if unplaced else placed)
        elif not unplaced:
            q = q.where(RecordingRow.centre.is_not(None))
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

    def unplaced_calls(self) -> list[str]:
        """The calls whose recording has no centre yet (kind ``call``, file kept)."""
        with self.db.session() as s:
            q = select(RecordingRow.call_id).where(
                RecordingRow.centre.is_(None), RecordingRow.kind == "call",
                RecordingRow.purged_at.is_(None)).order_by(RecordingRow.id)
            return list(s.scalars(q))

    def known_paths(self) -> set[str]:
        with self.db.session() as s:
            return set(s.scalars(select(RecordingRow.path)))
