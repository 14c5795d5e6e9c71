"""What the telephony side knows about one finished call: the only input of work orders.

The call tracker (``recordings``/AMI side) builds one :class:`CallFacts` per call
when its last channel hangs up, or on restart from CDR and queue_log for calls
that ended while the controller was down. ``WorkOrderStore.record_call`` turns it
into a work order; ``call_id`` (the caller channel's Asterisk ``linkedid``) makes
that idempotent: the same call never gets two orders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any


class Outcome(str, Enum):
    """How the call ended, from the caller's point of view."""

    ANSWERED = "answered"  # an agent (or a call-back) talked to the caller
    ABANDONED = "abandoned"  # hung up waiting in a queue
    IVR_HANGUP = "ivr_hangup"  # hung up in the menus, never queued
    EMERGENCY = "emergency"  # connected to 110/119/120/122 (from the IVR or by an agent)
    TRANSFERRED = "transferred"  # handed to a department or another centre
    CALLBACK = "callback"  # left the queue with a call-back booked
    FAILED = "failed"  # the hotline could not serve it (error path, nobody reachable)


class Category(str, Enum):
    """The national standard's five kinds of matter (诉求类型)."""

    CONSULTATION = "consultation"  # 咨询
    HELP = "help"  # 求助
    COMPLAINT = "complaint"  # 投诉
    OPINION = "opinion"  # 意见
    SUGGESTION = "suggestion"  # 建议


CATEGORY_LABELS = {
    Category.CONSULTATION: "咨询",
    Category.HELP: "求助",
    Category.COMPLAINT: "投诉",
    Category.OPINION: "意见",
    Category.SUGGESTION: "建议",
}


@dataclass(frozen=True)
class CallFacts:
    call_id: str  # linkedid of the caller's channel: one per call, the dedup key
    uniqueid: str  # the caller's channel
    caller: str  # caller ID number as received
    called: str  # the number dialled: 12345 or a retained legacy number
    outcome: Outcome
    started_at: datetime  # timezone-aware UTC, when Asterisk saw the call
    ended_at: datetime
    origin: str = "12345"  # 12345, the legacy number, or the line a transfer came from (110 …)
    department: str | None = None  # a legacy number's department id
    centre: str | None = None  # centre id that handled (or would have handled) it
    city: str | None = None  # locality id from the IVR
    county: str | None = None
    category: Category | None = None  # when the IVR path already says it
    queue: str | None = None  # last queue the caller waited in
    agent: str | None = None  # agent id (or seat id) who answered
    answered_at: datetime | None = None  # when a person answered
    wait_seconds: float | None = None  # time in queue(s) before answer or abandon
    recording: str | None = None  # path relative to the recordings root
    ivr_path: list[dict[str, Any]] = field(default_factory=list)  # steps from Redis hotline:call:<uniqueid>
    transfers: list[dict[str, Any]] = field(default_factory=list)  # transfer records (line, outcome, timings)
