"""Where survey jobs live outside the controller: SQLAlchemy, SQLite by default.

The default database is ``<instance>/state/surveys.sqlite`` (host only); any
SQLAlchemy URL works. ``survey_jobs`` holds one row per job (the whole record
as JSON plus the columns lists filter on), ``survey_attempts`` one row per
call with its outcome (for reports: how many calls a survey took, how they
ended). The service saves a job *before* it acts on the new state, so a
controller restarted at any point finds every open job -- as
queues/callback_store.py does for call-backs (both on
:class:`hotline.record_store.RecordStore`; the attempts instead of transitions).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, String, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from hotline.record_store import Columns, RecordStore

from .survey import SurveyJob

log = logging.getLogger(__name__)

FILENAME = "surveys.sqlite"


class Base(DeclarativeBase):
    pass


class SurveyJobRow(Base):
    __tablename__ = "survey_jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_ref: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(20), index=True)
    terminal: Mapped[bool] = mapped_column(Boolean, index=True)
    result: Mapped[str] = mapped_column(String(20), index=True)
    reported: Mapped[bool] = mapped_column(Boolean, index=True)  # the sink took the result
    not_before: Mapped[float] = mapped_column(Float)
    created_at: Mapped[float] = mapped_column(Float, index=True)
    updated_at: Mapped[float] = mapped_column(Float)
    record: Mapped[str] = mapped_column(Text)


class SurveyAttemptRow(Base):
    __tablename__ = "survey_attempts"

    id: Mapped[str] = mapped_column(String(48), primary_key=True)  # the Originate ChannelId
    job_id: Mapped[str] = mapped_column(ForeignKey("survey_jobs.id"), index=True)
    started_at: Mapped[float] = mapped_column(Float, index=True)
    answered_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float] = mapped_column(Float)
    outcome: Mapped[str] = mapped_column(String(20))
    result: Mapped[str] = mapped_column(String(20))


class SurveyStore(RecordStore[SurveyJob]):
    FEATURE = "survey"
    ROW = SurveyJobRow

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> SurveyStore:
        return cls(f"sqlite:///{state_dir / FILENAME}")

    def decode(self, record: dict[str, Any]) -> SurveyJob:
        return SurveyJob.from_dict(record)

    def columns(self, j: SurveyJob, now: float | None) -> Columns:
        first = {"order_ref": j.order_ref, "created_at": j.created_at}
        every = {"state": j.state.value, "terminal": j.terminal, "result": j.result,
                 "reported": j.reported_at > 0, "not_before": j.not_before,
                 "updated_at": j.updated_at}
        return first, every

    def _children(self, s: Session, j: SurveyJob) -> None:
        """One row per call, its outcome updated as it goes (not the state changes)."""
        for a in j.attempts:
            arow = s.get(SurveyAttemptRow, a["id"])
            if arow is None:
                arow = SurveyAttemptRow(id=a["id"], job_id=j.id, started_at=a["started_at"])
                s.add(arow)
            arow.answered_at, arow.ended_at = a["answered_at"], a["ended_at"]
            arow.outcome, arow.result = a["outcome"], a["result"]

    def open_jobs(self) -> list[SurveyJob]:
        """Jobs not finished, and finished jobs whose result the sink has not taken yet."""
        return self._records(
            select(SurveyJobRow)
            .where(SurveyJobRow.terminal.is_(False) | SurveyJobRow.reported.is_(False))
            .order_by(SurveyJobRow.created_at))

    def recent(self, states: Iterable[str] | None = None, limit: int = 100,
               order_ref: str | None = None, offset: int = 0) -> list[SurveyJob]:
        q = (select(SurveyJobRow)
             .order_by(SurveyJobRow.created_at.desc(), SurveyJobRow.id.desc())
             .limit(limit).offset(offset))
        if states is not None:
            q = q.where(SurveyJobRow.state.in_(list(states)))
        if order_ref is not None:
            q = q.where(SurveyJobRow.order_ref == order_ref)
        return self._records(q)

    def attempts(self, job_id: str) -> list[dict[str, object]]:
        with self.db.session() as s:
            rows = s.scalars(
                select(SurveyAttemptRow)
                .where(SurveyAttemptRow.job_id == job_id)
                .order_by(SurveyAttemptRow.started_at)
            ).all()
            return [
                {"id": r.id, "started_at": r.started_at, "answered_at": r.answered_at,
                 "ended_at": r.ended_at, "outcome": r.outcome, "result": r.result}
                for r in rows
            ]
