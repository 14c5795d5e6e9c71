"""The call-back queue (回拨, issue 4 item 3) as pure rules: no I/O, no clock.

A caller who waited ``callback_after`` seconds may press 1, confirm or enter a
number and hang up (agi_scripts/callback_offer.py). The request keeps the
caller's ORIGINAL first arrival, so it stays in line among the live callers
of its queue. When it is the oldest of the queue (no live caller waiting
longer) and an agent of the queue can be had, the controller reserves the
agent (QueuePause, reason ``callback``, so the queue offers it no live call),
rings the agent's seat and, once the agent answers, the dialplan calls the
citizen over the carrier trunk (``hotline-callback-dial``).

Each request is an explicit state machine; :func:`transition` refuses any
move not in :data:`ALLOWED` and logs every move with the request id and the
original call's uniqueid. The service (:mod:`queues.callback_service`)
persists a request *before* acting on its new state, so after a restart it
finds every open request and reconciles it with Asterisk (channels and
queue_log) before anything is sent again::

    pending -> reserved -> calling-agent -> calling-citizen -> connected -> done
       ^          |              |                 |
       +----------+--------------+  (agent gone,    +-> retry-wait -> pending
                                     no answer)     +-> failed (retries used up)

:func:`plan` decides, from a snapshot of the queues, which requests to
reserve an agent for, which reserved ones to launch, which reservations to
give up and which agents to give back to the queue. :func:`apply_log_event`
and :func:`settle_vanished` turn what Asterisk recorded into transitions.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from hotline.channel_vars import EV_CALLBACK, EV_DIAL, EV_END, EV_FAIL

from .stats import QueueEvent

log = logging.getLogger(__name__)


class State(StrEnum):
    PENDING = "pending"  # waiting for its turn and an agent
    RESERVED = "reserved"  # an agent is paused for it; launched once the agent is free
    CALLING_AGENT = "calling-agent"  # the agent's seat rings (Originate sent)
    CALLING_CITIZEN = "calling-citizen"  # the agent answered; the citizen's phone rings
    CONNECTED = "connected"  # the citizen answered: agent and citizen talk
    DONE = "done"  # the call-back conversation ended
    RETRY_WAIT = "retry-wait"  # the citizen did not answer; tried again after retry_delay
    FAILED = "failed"  # not reached after every try (or a number that cannot be dialled)
    CANCELLED = "cancelled"  # a supervisor withdrew it


TERMINAL = frozenset({State.DONE, State.FAILED, State.CANCELLED})
HOLDS_SEAT = frozenset(
    {State.RESERVED, State.CALLING_AGENT, State.CALLING_CITIZEN, State.CONNECTED}
)
IN_FLIGHT = frozenset({State.CALLING_AGENT, State.CALLING_CITIZEN, State.CONNECTED})

ALLOWED: dict[State, frozenset[State]] = {
    State.PENDING: frozenset({State.RESERVED, State.CANCELLED, State.FAILED}),
    State.RESERVED: frozenset({State.CALLING_AGENT, State.PENDING, State.CANCELLED, State.FAILED}),
    State.CALLING_AGENT: frozenset({State.CALLING_CITIZEN, State.PENDING, State.FAILED}),
    State.CALLING_CITIZEN: frozenset({State.CONNECTED, State.RETRY_WAIT, State.FAILED}),
    State.CONNECTED: frozenset({State.DONE}),
    State.RETRY_WAIT: frozenset({State.PENDING, State.CANCELLED}),
    State.DONE: frozenset(),
    State.FAILED: frozenset(),
    State.CANCELLED: frozenset(),
}

# States a list filter names (HTTP ?state=): "done" means the citizen was reached.
STATE_GROUPS: dict[str, frozenset[State]] = {
    "open": frozenset(State) - TERMINAL,
    "pending": frozenset({State.PENDING, State.RETRY_WAIT, State.RESERVED}),
    "active": IN_FLIGHT,
    "done": frozenset({State.CONNECTED, State.DONE}),
    "failed": frozenset({State.FAILED}),
    "cancelled": frozenset({State.CANCELLED}),
    "all": frozenset(State),
}


class TransitionRefused(Exception):
    pass


# --------------------------------------------------------------------------- numbers

_MOBILE = re.compile(r"1[3-9][0-9]{9}")
# 0 + area code (010, 02X, 0XXX) + a 7-8 digit subscriber number that starts 2-9.
_FIXED = re.compile(r"0(?:10|2[0-9]|[3-9][0-9]{2})[2-9][0-9]{6,7}")


def normalize_number(raw: str) -> str | None:
    """A Chinese mobile or fixed-line number to call back, digits only, or None.

    Accepts the forms a caller ID or a keypad gives: ``13907910001``,
    ``+86 139 0791 0001``, ``008613907910001``, ``079186001234``. Refuses
    everything else: short and service numbers (110, 12345), numbers abroad,
    fixed lines without their area code, anything but digits once spaces and
    dashes are gone.
    """
    s = re.sub(r"[\s-]", "", raw or "")
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    elif s.startswith("86") and len(s) == 13:
        s = s[2:]
    if not s.isdigit() or not s.isascii():
        return None
    if _MOBILE.fullmatch(s) or _FIXED.fullmatch(s):
        return s
    return None


# --------------------------------------------------------------------------- requests


@dataclass
class CallbackRequest:
    id: str
    queue: str
    number: str  # validated digits (normalize_number)
    first_queued: float  # the ORIGINAL first arrival of the call at any queue
    uniqueid: str  # the original call (queue_log callid)
    source: str = "offer"  # offer (pressed 1), menu (IVR action) or abandoned (missed calls)
    city: str = ""
    county: str = ""
    service_number: str = ""  # the number the citizen called (shown when called back)
    created_at: float = 0.0
    created_by: str = "caller"
    state: State = State.PENDING
    attempts: int = 0  # times the citizen was dialled
    launches: int = 0  # times an agent's seat was rung (attempt ids)
    seat: str = ""  # the reserved agent, while the state holds one
    interface: str = ""
    attempt_id: str = ""  # the last launch: Originate ChannelId = the agent leg's uniqueid
    launched_at: float = 0.0
    not_before: float = 0.0  # retry-wait: when the next try may start
    avoid_seat: str = ""  # a seat that let this call-back ring out, skipped for a while
    avoid_until: float = 0.0
    result: str = ""  # the last outcome (DIALSTATUS, why a reservation ended)
    updated_at: float = 0.0
    queue_since: float = 0.0  # when it moved to its current queue by overflow (0: never)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CallbackRequest:
        known = {f for f in cls.__dataclass_fields__}
        data = {k: v for k, v in d.items() if k in known}
        data["state"] = State(data.get("state", "pending"))
        data["history"] = list(data.get("history", []))
        return cls(**data)


def transition(r: CallbackRequest, to: State, now: float, reason: str) -> None:
    """Move ``r`` to ``to`` or raise :class:`TransitionRefused`; every move is logged."""
    if to not in ALLOWED[r.state]:
        raise TransitionRefused(
            f"call-back {r.id}: {r.state.value} -> {to.value} is not allowed ({reason})"
        )
    log.info("[%s] call-back %s: %s -> %s (%s)", r.uniqueid, r.id, r.state.value, to.value, reason)
    r.history.append({"at": now, "from": r.state.value, "to": to.value, "reason": reason})
    r.state = to
    r.updated_at = now
    if to not in HOLDS_SEAT:
        r.seat = r.interface = ""


def attempt_id_for(r: CallbackRequest) -> str:
    """The id of the next launch (Originate ChannelId): never reused for a request."""
    return f"{r.id}-{r.launches + 1}"


# --------------------------------------------------------------------------- what Asterisk said


@dataclass(frozen=True)
class Policy:
    max_attempts: int  # 1 + callbacks.retries
    retry_delay: float


def _after_unanswered(r: CallbackRequest, now: float, result: str, p: Policy) -> None:
    r.result = result
    if r.attempts >= p.max_attempts:
        transition(r, State.FAILED, now, f"{result}; {r.attempts} tries, none answered")
    else:
        r.not_before = now + p.retry_delay
        transition(
            r, State.RETRY_WAIT, now, f"{result}; try {r.attempts + 1} after {p.retry_delay:.0f} s"
        )


def apply_log_event(r: CallbackRequest, ev: QueueEvent, p: Policy) -> bool:
    """Fold one queue_log line of ``r``'s current attempt into ``r``; True if it changed."""
    if not r.attempt_id or not ev.data or ev.data[0] != r.attempt_id:
        return False
    now = float(ev.time)
    if ev.event == EV_DIAL and r.state == State.CALLING_AGENT:
        r.attempts += 1
        transition(r, State.CALLING_CITIZEN, now, f"seat {r.seat} answered; dialling the citizen")
        return True
    if ev.event == EV_CALLBACK and r.state in (State.CALLING_AGENT, State.CALLING_CITIZEN):
        if r.state == State.CALLING_AGENT:  # the DIAL line was missed: count the try anyway
            r.attempts += 1
            transition(r, State.CALLING_CITIZEN, now, "dialled")
        r.result = "ANSWER"
        transition(r, State.CONNECTED, now, f"citizen answered; talking with seat {r.seat}")
        return True
    if ev.event == EV_FAIL and r.state in (State.CALLING_AGENT, State.CALLING_CITIZEN):
        status = ev.data[1] if len(ev.data) > 1 and ev.data[1] else "UNKNOWN"
        if status == "BADNUMBER":
            r.result = status
            transition(r, State.FAILED, now, "the stored number cannot be dialled")
        elif r.state == State.CALLING_CITIZEN:
            _after_unanswered(r, now, status, p)
        return True
    if ev.event == EV_END and r.state in IN_FLIGHT:
        # Written only after an answered Dial: a missed CALLBACK line changes nothing.
        if r.state == State.CALLING_AGENT:
            r.attempts += 1
            transition(r, State.CALLING_CITIZEN, now, "dialled")
        if r.state == State.CALLING_CITIZEN:
            r.result = "ANSWER"
            transition(r, State.CONNECTED, now, "citizen answered")
        talked = ev.data[1] if len(ev.data) > 1 else "?"
        transition(r, State.DONE, now, f"call-back over after {talked} s")
        return True
    return False


def settle_vanished(r: CallbackRequest, now: float, p: Policy, avoid_for: float = 60.0) -> None:
    """``r``'s agent leg no longer exists and queue_log says nothing more: conclude.

    Never re-dials a citizen on a guess: without the CALLBACKDIAL line nobody
    called the citizen (the agent did not answer, or the Originate never got
    to Asterisk) and the request simply waits for an agent again; after it,
    an unknown outcome counts as an unanswered try.
    """
    if r.state == State.CALLING_AGENT:
        r.result = "AGENT-NOANSWER"
        r.avoid_seat, r.avoid_until = r.seat, now + avoid_for
        transition(r, State.PENDING, now, f"seat {r.seat} did not answer the call-back")
    elif r.state == State.CALLING_CITIZEN:
        _after_unanswered(r, now, "UNKNOWN", p)
    elif r.state == State.CONNECTED:
        transition(r, State.DONE, now, "call-back over (channel gone)")


# --------------------------------------------------------------------------- planning

# AST_DEVICE_* in QueueMember Status: in use, busy, ringing, ringinuse, on hold.
BUSY_STATUS = frozenset({"2", "3", "6", "7", "8"})
UNREACHABLE_STATUS = frozenset({"4", "5"})


@dataclass(frozen=True)
class Member:
    """One queue member row of AMI QueueStatus."""

    queue: str
    seat: str  # MemberName (the seat id)
    interface: str  # Location: PJSIP/1001, PJSIP/8001@yudu-site
    paused: bool = False
    reason: str = ""
    in_call: bool = False
    status: str = "1"
    last_call: float = 0.0


@dataclass(frozen=True)
class Snapshot:
    now: float
    members: tuple[Member, ...]
    waiting: Mapping[str, tuple[float, ...]]  # queue -> first arrivals of the live callers
    wrapup: Mapping[str, int]  # queue -> wrap-up seconds
    rest_until: Mapping[str, float] = field(default_factory=dict)  # seat -> after a call-back
    # queue -> (seconds, queue): where a caller goes after that wait or when nobody is there
    overflow: Mapping[str, tuple[int, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Reserve:
    request_id: str
    seat: str
    interface: str


@dataclass(frozen=True)
class Launch:
    request_id: str


@dataclass(frozen=True)
class Release:
    request_id: str
    reason: str


@dataclass(frozen=True)
class Requeue:
    request_id: str  # retry-wait is over: pending again


@dataclass(frozen=True)
class Unpause:
    seat: str
    interface: str


@dataclass(frozen=True)
class Overflow:
    request_id: str
    to: str  # the queue the pending call-back moves to, keeping its first arrival
    reason: str


Action = Reserve | Launch | Release | Requeue | Unpause | Overflow


def _overflow(r: CallbackRequest, seats: Mapping[str, _Seat], snap: Snapshot) -> tuple[str, str]:
    """The queue a pending request belongs in now, and why it moved ("" if it stays).

    The live callers' rules (dialplan.compile: ``joinempty`` and the Queue() timeout):
    a queue with an overflow sends its callers on when nobody reachable is logged in,
    or after ``after`` seconds there (counted from the first arrival in the first
    queue, from the move in the next); the top of the chain keeps them.
    """
    queue, since, why = r.queue, r.queue_since or r.first_queued, ""
    for _ in range(len(snap.overflow) + 1):  # a chain visits each queue once at most
        if queue not in snap.overflow:
            break
        after, to = snap.overflow[queue]
        if not any(queue in s.queues and not s.unreachable for s in seats.values()):
            step = f"nobody in {queue}"
        elif snap.now - since >= after:
            step = f"{snap.now - since:.0f} s in {queue}"
        else:
            break
        why = f"{why}; {step}" if why else step
        queue, since = to, snap.now
    return queue, why


@dataclass
class _Seat:
    seat: str
    interface: str
    queues: set[str] = field(default_factory=set)
    paused: dict[str, bool] = field(default_factory=dict)  # per queue
    ours: bool = True  # paused with reason callback in every queue
    busy: bool = False
    unreachable: bool = False
    last_call: float = 0.0


def _seats(members: Iterable[Member]) -> dict[str, _Seat]:
    out: dict[str, _Seat] = {}
    for m in members:
        s = out.setdefault(m.seat, _Seat(m.seat, m.interface))
        s.queues.add(m.queue)
        s.paused[m.queue] = m.paused
        s.ours = s.ours and m.paused and m.reason == "callback"
        s.busy = s.busy or m.in_call or m.status in BUSY_STATUS
        s.unreachable = s.unreachable or m.status in UNREACHABLE_STATUS
        s.last_call = max(s.last_call, m.last_call)
    return out


def _resting(s: _Seat, queue: str, snap: Snapshot) -> bool:
    until = max(s.last_call + snap.wrapup.get(queue, 0), snap.rest_until.get(s.seat, 0.0))
    return snap.now < until


def plan(snap: Snapshot, requests: Iterable[CallbackRequest]) -> list[Action]:
    """What to do now, given the queues (``snap``) and the open requests.

    * A reserved request is launched once its agent is free (not on a call,
      wrap-up over, still paused by us); it is given up when the agent left
      the queue, became unreachable or was resumed by someone else.
    * A pending request gets an agent only when no live caller of its queue
      arrived before it (original arrival order), one agent per request, so
      no more call-backs are launched than there are agents for them. Free
      agents first, then agents in wrap-up, and -- only when live callers
      wait, who would otherwise take every agent the moment it is free --
      agents still on a call (reserved for when it ends).
    * A pending request in a queue with an overflow moves on like a live caller
      would (:func:`_overflow`), keeping its original arrival.
    * An agent paused for call-backs that no request holds is given back.
    """
    now = snap.now
    seats = _seats(snap.members)
    reqs = sorted(requests, key=lambda r: (r.first_queued, r.created_at, r.id))
    held = {r.seat for r in reqs if r.state in HOLDS_SEAT and r.seat}
    out: list[Action] = []

    for r in reqs:
        if r.state == State.RETRY_WAIT and r.not_before <= now:
            out.append(Requeue(r.id))
        if r.state != State.RESERVED:
            continue
        s = seats.get(r.seat)
        why = ""
        if s is None or r.queue not in s.queues:
            why = f"seat {r.seat} left queue {r.queue}"
        elif s.unreachable:
            why = f"seat {r.seat} is unreachable"
        elif not s.ours:
            why = f"seat {r.seat} is no longer paused for call-backs"
        if why or s is None:
            out.append(Release(r.id, why))
            held.discard(r.seat)
        elif not s.busy and not _resting(s, r.queue, snap):
            out.append(Launch(r.id))

    by_queue: dict[str, list[CallbackRequest]] = {}
    for r in reqs:
        if r.state == State.PENDING and r.not_before <= now:
            to, why = _overflow(r, seats, snap)
            if to != r.queue:  # placed in its new queue at the next look
                out.append(Overflow(r.id, to, why))
                continue
            by_queue.setdefault(r.queue, []).append(r)
    for queue, pending in by_queue.items():
        live = snap.waiting.get(queue, ())
        oldest_live = min(live, default=math.inf)
        for r in pending:
            if r.first_queued >= oldest_live:
                break  # a live caller came first: the queue serves them
            s = _pick(r, queue, seats, held, snap, live_waiting=bool(live))
            if s is None:
                break
            held.add(s.seat)
            out.append(Reserve(r.id, s.seat, s.interface))

    for s in seats.values():
        if s.ours and s.seat not in held and now >= snap.rest_until.get(s.seat, 0.0):
            out.append(Unpause(s.seat, s.interface))
    return out


def _pick(
    r: CallbackRequest,
    queue: str,
    seats: Mapping[str, _Seat],
    held: set[str],
    snap: Snapshot,
    live_waiting: bool,
) -> _Seat | None:
    best: tuple[int, float, str] | None = None
    chosen: _Seat | None = None
    for s in seats.values():
        if queue not in s.queues or s.seat in held or s.unreachable:
            continue
        if s.paused.get(queue) and not s.ours:
            continue  # paused by the agent or a supervisor
        if s.seat == r.avoid_seat and snap.now < r.avoid_until:
            continue
        if s.busy:
            if not live_waiting:
                continue
            rank = 3
        elif _resting(s, queue, snap):
            rank = 2
        else:
            rank = 0 if s.ours else 1
        key = (rank, s.last_call, s.seat)
        if best is None or key < best:
            best, chosen = key, s
    return chosen


# --------------------------------------------------------------------------- missed calls


def abandoned_calls(
    events: Iterable[QueueEvent], since: float, until: float | None, handled: set[str]
) -> list[dict[str, Any]]:
    """Calls that hung up while queued (ABANDON) and were never answered nor called back.

    ``handled`` holds the uniqueids that already have a call-back request.
    The number is the caller ID that ENTERQUEUE recorded
    (``ENTERQUEUE|url|callerid|position``), normalised, or "" when it cannot
    be called back.
    """
    first: dict[str, QueueEvent] = {}
    answered: set[str] = set()
    abandoned: dict[str, QueueEvent] = {}
    for ev in sorted(events, key=lambda e: e.time):
        if ev.callid in ("", "NONE"):
            continue
        if ev.event == "ENTERQUEUE":
            first.setdefault(ev.callid, ev)
        elif ev.event in ("CONNECT", EV_CALLBACK):
            answered.add(ev.callid)
        elif ev.event == "ABANDON":
            abandoned[ev.callid] = ev
    out: list[dict[str, Any]] = []
    for callid, ev in abandoned.items():
        if callid in answered or callid in handled:
            continue
        if ev.time < since or (until is not None and ev.time >= until):
            continue
        enter = first.get(callid)
        raw = enter.data[1] if enter is not None and len(enter.data) > 1 else ""
        wait = ev.data[2] if len(ev.data) > 2 and ev.data[2].isdigit() else "0"
        out.append(
            {
                "uniqueid": callid,
                "queue": ev.queue,
                "abandoned_at": ev.time,
                "first_queued": enter.time if enter is not None else ev.time - int(wait),
                "waited_s": int(wait),
                "caller": raw,
                "number": normalize_number(raw) or "",
            }
        )
    out.sort(key=lambda d: d["abandoned_at"])
    return out
