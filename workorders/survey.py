"""The call-back satisfaction survey (100% 回访, issue 6 item 3) as pure rules.

When a work order is closed, the work orders call :meth:`SurveyService.schedule
<workorders.survey_service.SurveyService.schedule>` with the order's reference,
the citizen's number and the closing time. A *survey job* is created; once
``survey.delay`` has passed and while the calling hours (``survey.hours``) are
open, the controller calls the citizen over the carrier trunk, the AGI script
``survey`` asks the question and the answer goes back to the work orders through
a sink ``on_result(order_ref, result, at)``.

Each job is an explicit state machine; :func:`transition` refuses any move not
in :data:`ALLOWED` and logs every move with the job id and the order::

    scheduled -> calling -> answered        (the citizen chose 1, 2 or 3)
        ^           |-----> no_answer       (not reached after every try, or
        |           |                        reached and no choice)
        +-----------+-----> failed          (the number cannot be called)
      (not answered, busy, failed: retry_delay later while tries remain)

Every call is an *attempt* with its own id ``<job id>-<n>`` -- the Originate's
ChannelId, so the channel's uniqueid -- never reused; its outcome
(:class:`Outcome`) is kept with the job. No clock and no I/O here: the service
(:mod:`workorders.survey_service`) persists a job before it acts on its new
state and passes the time in.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from dialplan.model import Config, SurveyChoice, SurveyResult
from ivr.menu import Answer
from queues.callback import normalize_number
from queues.hours import DEFAULT_TZ, is_open

log = logging.getLogger(__name__)


class State(StrEnum):
    SCHEDULED = "scheduled"  # waiting for not_before and the calling hours
    CALLING = "calling"  # an attempt is under way (Originate sent)
    ANSWERED = "answered"  # the citizen chose: result is satisfied, basic or dissatisfied
    NO_ANSWER = "no_answer"  # no choice obtained: every try unanswered, or no choice made
    FAILED = "failed"  # the number cannot be called (or Asterisk refused every try)


class Outcome(StrEnum):
    """How one attempt ended."""

    ANSWERED = "answered"  # the citizen answered and chose
    NO_CHOICE = "no-choice"  # answered, no valid key after the question was repeated
    HUNG_UP = "hung-up"  # answered, hung up before choosing
    NO_ANSWER = "no-answer"  # rang out
    BUSY = "busy"
    FAILED = "failed"  # congestion, unreachable, refused by the carrier
    REFUSED = "refused"  # Asterisk refused the Originate: no call was placed
    UNKNOWN = "unknown"  # the channel is gone and nothing says how it ended
    BAD_NUMBER = "bad-number"  # the stored number did not pass the check again


TERMINAL = frozenset({State.ANSWERED, State.NO_ANSWER, State.FAILED})
REACHED = frozenset({Outcome.ANSWERED, Outcome.NO_CHOICE, Outcome.HUNG_UP})
RESULTS = ("satisfied", "basic", "dissatisfied", "no_answer")

ALLOWED: dict[State, frozenset[State]] = {
    State.SCHEDULED: frozenset({State.CALLING, State.FAILED}),
    State.CALLING: frozenset({State.SCHEDULED, State.ANSWERED, State.NO_ANSWER, State.FAILED}),
    State.ANSWERED: frozenset(),
    State.NO_ANSWER: frozenset(),
    State.FAILED: frozenset(),
}

# What a listing filter names (HTTP ?state=).
STATE_GROUPS: dict[str, frozenset[State]] = {
    "open": frozenset({State.SCHEDULED, State.CALLING}),
    **{s.value: frozenset({s}) for s in State},
    "all": frozenset(State),
}

# An order reference goes into a channel variable and the logs: keep it plain.
ORDER_REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class TransitionRefused(Exception):
    pass


@dataclass(frozen=True)
class Policy:
    max_attempts: int  # 1 + survey.retries
    retry_delay: float


def policy_of(cfg: Config) -> Policy:
    return Policy(max_attempts=1 + cfg.survey.retries, retry_delay=float(cfg.survey.retry_delay))


# --------------------------------------------------------------------------- jobs


@dataclass
class SurveyJob:
    id: str
    order_ref: str
    number: str  # validated digits (queues.callback.normalize_number)
    closed_at: float
    created_at: float
    created_by: str = "work-orders"
    state: State = State.SCHEDULED
    not_before: float = 0.0  # no call before this
    attempts: list[dict[str, Any]] = field(default_factory=list)
    result: str = ""  # one of RESULTS once terminal
    result_at: float = 0.0
    reported_at: float = 0.0  # when the sink took the result (0: not yet)
    updated_at: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    centre: str | None = None  # the order's: where the survey call's recording is placed

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def current(self) -> dict[str, Any] | None:
        """The attempt under way, if any."""
        if self.state == State.CALLING and self.attempts and not self.attempts[-1]["ended_at"]:
            return self.attempts[-1]
        return None

    @property
    def attempt_id(self) -> str:
        a = self.current
        return str(a["id"]) if a else ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SurveyJob:
        known = set(cls.__dataclass_fields__)
        data = {k: v for k, v in d.items() if k in known}
        data["state"] = State(data.get("state", "scheduled"))
        data["attempts"] = [dict(a) for a in data.get("attempts", [])]
        data["history"] = list(data.get("history", []))
        return cls(**data)


def new_job(
    job_id: str,
    order_ref: str,
    number: str,
    closed_at: float,
    now: float,
    delay: float,
    created_by: str = "work-orders",
) -> SurveyJob:
    """A scheduled job, or :class:`ValueError` for a bad reference or number."""
    _check_ref(order_ref)
    digits = normalize_number(number) if isinstance(number, str) else None
    if digits is None:
        raise ValueError(
            f"{number!r} is not a number to call: a mobile or a fixed line with its area code"
        )
    return _job(job_id, order_ref, digits, closed_at, now, closed_at + delay, created_by)


def _check_ref(order_ref: object) -> None:
    if not isinstance(order_ref, str) or not ORDER_REF_RE.fullmatch(order_ref):
        raise ValueError(
            f"order reference {order_ref!r} must be 1-64 letters, digits, '.', '_' or '-'"
        )


def _job(job_id: str, order_ref: str, number: str, closed_at: float, now: float,
         not_before: float, created_by: str) -> SurveyJob:
    j = SurveyJob(id=job_id, order_ref=order_ref, number=number, closed_at=closed_at,
                  created_at=now, created_by=created_by, not_before=not_before, updated_at=now)
    j.history.append(
        {"at": now, "from": "new", "to": j.state.value, "reason": f"order closed; by {created_by}"}
    )
    return j


def unreachable_job(job_id: str, order_ref: str, raw_number: str, closed_at: float,
                    now: float, created_by: str = "work-orders") -> SurveyJob:
    """A closed order whose citizen cannot be called (no callable number on it): the job
    is stored failed, with the result ``no_answer``, so every closed order is accounted
    for (100% 回访) and the work orders hear about it like any other result."""
    _check_ref(order_ref)
    j = _job(job_id, order_ref, "", closed_at, now, closed_at, created_by)
    fail_unscheduled(j, now, f"no number to call: {str(raw_number)[:40]!r}")
    return j


def transition(j: SurveyJob, to: State, now: float, reason: str) -> None:
    """Move ``j`` to ``to`` or raise :class:`TransitionRefused`; every move is logged."""
    if to not in ALLOWED[j.state]:
        raise TransitionRefused(
            f"survey {j.id}: {j.state.value} -> {to.value} is not allowed ({reason})"
        )
    log.info("survey %s (order %s): %s -> %s (%s)", j.id, j.order_ref, j.state.value, to.value,
             reason)
    j.history.append({"at": now, "from": j.state.value, "to": to.value, "reason": reason})
    j.state = to
    j.updated_at = now


def start_attempt(j: SurveyJob, now: float) -> str:
    """Begin the next call: its id (Originate ChannelId) is ``<job>-<n>``, never reused."""
    aid = f"{j.id}-{len(j.attempts) + 1}"
    transition(j, State.CALLING, now, f"calling {j.number} (attempt {aid})")
    j.attempts.append(
        {"id": aid, "started_at": now, "answered_at": 0.0, "ended_at": 0.0, "outcome": "",
         "result": "", "detail": ""}
    )
    return aid


def mark_answered(j: SurveyJob, attempt_id: str, now: float) -> bool:
    """The citizen picked up on ``attempt_id``; False if that is not the call under way."""
    a = j.current
    if a is None or a["id"] != attempt_id or a["answered_at"]:
        return False
    a["answered_at"] = now
    j.updated_at = now
    return True


def finish_attempt(
    j: SurveyJob,
    attempt_id: str,
    outcome: Outcome,
    now: float,
    p: Policy,
    result: str = "",
    detail: str = "",
) -> bool:
    """Conclude the call under way; False (nothing changes) if it is not ``attempt_id``.

    An answer ends the job (``answered``); a citizen reached who made no choice
    ends it too (``no_answer``: they are not called again); a number that
    cannot be called fails it. Anything else is a try that did not reach the
    citizen: the job is scheduled again ``retry_delay`` later, or, after the
    last try, ends ``no_answer`` (``failed`` when no try could even be placed).
    """
    a = j.current
    if a is None or a["id"] != attempt_id:
        return False
    if outcome == Outcome.ANSWERED and result not in RESULTS[:3]:
        raise ValueError(f"an answered survey needs a result, not {result!r}")
    a["ended_at"], a["outcome"], a["result"], a["detail"] = now, outcome.value, result, detail
    why = f"attempt {attempt_id}: {outcome.value}" + (f" ({detail})" if detail else "")
    if outcome == Outcome.ANSWERED:
        _conclude(j, State.ANSWERED, result, now, f"{why}: {result}")
    elif outcome in REACHED:
        _conclude(j, State.NO_ANSWER, "no_answer", now, f"{why}: reached, no choice")
    elif outcome == Outcome.BAD_NUMBER:
        _conclude(j, State.FAILED, "no_answer", now, f"{why}: the stored number cannot be called")
    elif len(j.attempts) >= p.max_attempts:
        placed = any(x["outcome"] != Outcome.REFUSED for x in j.attempts)
        final = State.NO_ANSWER if placed else State.FAILED
        _conclude(j, final, "no_answer", now, f"{why}; {len(j.attempts)} tries, none answered")
    else:
        j.not_before = now + p.retry_delay
        transition(j, State.SCHEDULED, now,
                   f"{why}; try {len(j.attempts) + 1} after {p.retry_delay:.0f} s")
    return True


def _conclude(j: SurveyJob, to: State, result: str, now: float, reason: str) -> None:
    transition(j, to, now, reason)
    j.result, j.result_at = result, now


def fail_unscheduled(j: SurveyJob, now: float, reason: str) -> None:
    """A scheduled job that cannot be called at all (its number no longer passes)."""
    _conclude(j, State.FAILED, "no_answer", now, reason)


# --------------------------------------------------------------------------- what Asterisk said

# OriginateResponse Reason: the last AST_CONTROL_* frame of the outgoing call (main/manager.c,
# include/asterisk/frame.h): 3 ringing (rang out), 5 busy, 8 congestion, 1 hung up, 0 none.
_REASONS = {"3": Outcome.NO_ANSWER, "5": Outcome.BUSY, "8": Outcome.FAILED, "1": Outcome.NO_ANSWER}
# Hangup Cause (Q.850): a 486 ends with Reason 0 but Cause 17 (see transfer/services.py).
_CAUSES = {"17": Outcome.BUSY, "21": Outcome.BUSY, "18": Outcome.NO_ANSWER,
           "19": Outcome.NO_ANSWER}


def outcome_of(reason: str | None, cause: str | None) -> Outcome:
    """An unanswered attempt's outcome from what AMI said (either may be missing)."""
    if cause in _CAUSES:
        return _CAUSES[cause]
    if reason in _REASONS:
        return _REASONS[reason]
    if reason is None and cause is None:
        return Outcome.UNKNOWN
    return Outcome.FAILED


# --------------------------------------------------------------------------- scheduling


def calling_open(cfg: Config, now: datetime) -> bool:
    """Whether survey calls may be placed at ``now`` (the hotline's time zone)."""
    hours = cfg.survey.hours
    if hours == "always":
        return True
    return is_open(cfg.hours[hours], now.astimezone(DEFAULT_TZ))


def due(jobs: Iterable[SurveyJob], now: float, open_now: bool, max_parallel: int) -> list[str]:
    """The jobs to call now, oldest first: none outside calling hours, at most one
    call per order and ``max_parallel`` calls in all (those under way included)."""
    jobs = list(jobs)
    calling = [j for j in jobs if j.state == State.CALLING]
    if not open_now:
        return []
    busy = {j.order_ref for j in calling}
    room = max_parallel - len(calling)
    out: list[str] = []
    ready = [j for j in jobs if j.state == State.SCHEDULED and j.not_before <= now]
    for j in sorted(ready, key=lambda j: (j.not_before, j.created_at, j.id)):
        if len(out) >= room:
            break
        if j.order_ref in busy:
            continue
        busy.add(j.order_ref)
        out.append(j.id)
    return out


# --------------------------------------------------------------------------- the answer


def choose(choices: Mapping[SurveyResult, SurveyChoice], answer: Answer) -> str | None:
    """The result a key or recognised words mean, or None.

    Words: the longest configured word found in the text wins, so 不满意 is
    never taken for 满意, nor 基本满意 for 满意.
    """
    if answer.digit:
        return next((r for r, c in choices.items() if c.key == answer.digit), None)
    if answer.text:
        found = [(len(w), r) for r, c in choices.items() for w in c.words if w in answer.text]
        if found:
            return max(found)[1]
    return None
