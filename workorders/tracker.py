"""Calls followed from AMI events to one :class:`~workorders.facts.CallFacts` each (pure).

Intake of the closed loop (issue 6 item 2): every call that reaches the
hotline, whatever way it ends, becomes one ``CallFacts``. Two pure halves, no I/O:

* :class:`CallTracker` folds AMI events (plain dicts, as the AMI codec yields
  them) into a :class:`CallState` per call and hands the state back when the
  call is over. A call is keyed by the ``Linkedid`` of the caller's channel,
  which every channel of the call shares (the queue member's leg, a transfer
  leg once bridged), so events of several channels in any order fold into one
  call. A call starts with the ``Newchannel`` of a caller in an inbound context
  (``from-carrier``, ``from-partner``, ``from-emergency``; a seat dialling a
  number the hotline answers) and ends with the ``Hangup`` of the last of its
  channels. :func:`state_from_records` builds the same state from ``cdr_csv``
  records and ``queue_log`` lines, for calls that ended while the controller
  was down.
* :func:`facts_of` turns a finished state, the config and what other parts
  stored about the call (:class:`Extras`: the IVR path from Redis, transfer
  records, a call-back request) into ``CallFacts``, with its :class:`Outcome`.

AMI events used (Asterisk 22, https://docs.asterisk.org/Asterisk_22_Documentation/API_Documentation/AMI_Events/):
``Newchannel``, ``Hangup``, ``QueueCallerJoin``, ``QueueCallerLeave``,
``QueueCallerAbandon``, ``AgentConnect``, ``DialEnd``; read class ``call`` and ``agent``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from dialplan.model import Config
from hotline.channel_vars import CDR_INBOUND
from ivr.locality import locate
from queues.stats import QueueEvent

from .cdr import CdrRow
from .facts import CallFacts, Category, Outcome

#: Contexts of the PJSIP endpoints that bring callers in (dialplan/compile.py).
INBOUND_CONTEXTS = frozenset({"from-carrier", "from-partner", "from-emergency"})
#: Seats may call the hotline's own numbers (to test it): those calls count too.
SEAT_CONTEXT = "from-seat"
EVENTS = (
    "Newchannel",
    "Hangup",
    "QueueCallerJoin",
    "QueueCallerLeave",
    "QueueCallerAbandon",
    "AgentConnect",
    "DialEnd",
)
_UP = "6"  # AST_STATE_UP in ChannelState
_RING = "4"  # AST_STATE_RING: an incoming channel's first state
_ENDPOINT = re.compile(r"^PJSIP/(?P<endpoint>[A-Za-z0-9_-]+?)-[0-9a-f]{8}$")


def endpoint_of(channel: str) -> str | None:
    """``PJSIP/carrier-00000000`` → ``carrier``; anything else → None."""
    m = _ENDPOINT.match(channel or "")
    return m["endpoint"] if m else None


@dataclass
class CallState:
    """What is known about one call so far. Times are Unix seconds."""

    call_id: str  # Linkedid of the caller's channel (= its Uniqueid: the first channel)
    uniqueid: str
    channel: str
    caller: str
    called: str
    started_at: float
    live: set[str] = field(default_factory=set)  # channels of the call not hung up yet
    channels: set[str] = field(default_factory=set)  # every channel seen in the call
    up: bool = False  # the caller's channel was answered (by the IVR, a queue, anyone)
    caller_left_at: float | None = None
    ended_at: float | None = None
    cause: str = ""
    first_queued_at: float | None = None  # first QueueCallerJoin, kept across overflow
    queue: str | None = None  # last queue joined (or answered from)
    left_queue_at: float | None = None  # abandon, or left for a call-back
    abandoned: bool = False
    answered_at: float | None = None
    seat: str | None = None  # queue MemberName (the seat id) who answered
    dialled: list[str] = field(default_factory=list)  # endpoints a Dial() of the caller reached
    last_event_at: float = 0.0

    @property
    def done(self) -> bool:
        return self.caller_left_at is not None and not self.live


Handler = Callable[["CallTracker", CallState, Mapping[str, str], float], None]


class CallTracker:
    """The calls in progress, folded from AMI events; :meth:`apply` returns finished ones."""

    def __init__(self, hotline_numbers: Iterable[str] = ()):
        self.hotline_numbers = frozenset(hotline_numbers)
        self.calls: dict[str, CallState] = {}  # by call_id
        self.call_of: dict[str, str] = {}  # channel uniqueid -> call_id

    def is_inbound(self, ev: Mapping[str, str]) -> bool:
        ctx = ev.get("Context", "")
        if ev.get("Uniqueid") != ev.get("Linkedid"):
            return False  # a leg of some other call (or an Originate's second channel)
        if ev.get("ChannelState") != _RING:
            # Outgoing channels (an Originate to a trunk, a Dial) start Down and carry the
            # endpoint's context too: a transfer's dispatcher leg is not a call to us.
            return False
        return ctx in INBOUND_CONTEXTS or (
            ctx == SEAT_CONTEXT and ev.get("Exten", "") in self.hotline_numbers
        )

    def apply(self, ev: Mapping[str, str], now: float) -> CallState | None:
        """Fold one event; the call's state if this event ended it."""
        name = ev.get("Event", "")
        uid = ev.get("Uniqueid", "")
        if name == "Newchannel":
            if self.is_inbound(ev):
                st = CallState(
                    call_id=ev["Linkedid"],
                    uniqueid=uid,
                    channel=ev.get("Channel", ""),
                    caller=ev.get("CallerIDNum", ""),
                    called=ev.get("Exten", ""),
                    started_at=now,
                    live={uid},
                    channels={uid},
                    last_event_at=now,
                )
                self.calls[st.call_id] = st
                self.call_of[uid] = st.call_id
                return None
        cid = self.call_of.get(uid)
        if cid is None:
            # A channel joins a tracked call (its Linkedid became the call's when bridged).
            linked = ev.get("Linkedid", "")
            if linked not in self.calls or name == "Hangup":
                return None
            cid = linked
            self.call_of[uid] = cid
            self.calls[cid].live.add(uid)
            self.calls[cid].channels.add(uid)
        st = self.calls[cid]
        st.last_event_at = now
        if uid == st.uniqueid and ev.get("ChannelState") == _UP:
            st.up = True
        handler = _HANDLERS.get(name)
        if handler is not None:
            handler(self, st, ev, now)
        if st.done:
            return self._finish(st)
        return None

    def _finish(self, st: CallState) -> CallState:
        self.calls.pop(st.call_id, None)
        for uid in st.channels:
            self.call_of.pop(uid, None)
        return st

    def gone(self, alive: set[str]) -> list[CallState]:
        """Calls none of whose channels Asterisk still has (``CoreShowChannels`` after a
        reconnection: their Hangups were missed). Taken out, ended at their last event."""
        out = []
        for st in list(self.calls.values()):
            st.live &= alive
            if st.uniqueid not in alive and st.caller_left_at is None:
                st.caller_left_at = st.last_event_at or st.started_at
            if st.live:
                continue
            st.ended_at = st.last_event_at or st.caller_left_at
            out.append(self._finish(st))
        return out

    def expire(self, now: float, grace: float) -> list[CallState]:
        """Calls whose caller left more than ``grace`` s ago but a leg's Hangup never came."""
        old = [
            s
            for s in self.calls.values()
            if s.caller_left_at is not None and now - s.caller_left_at > grace
        ]
        for s in old:
            s.ended_at = s.caller_left_at
        return [self._finish(s) for s in old]


def _hangup(t: CallTracker, st: CallState, ev: Mapping[str, str], now: float) -> None:
    uid = ev.get("Uniqueid", "")
    st.live.discard(uid)
    t.call_of.pop(uid, None)
    if uid == st.uniqueid:
        st.caller_left_at = now
        st.cause = ev.get("Cause", "")
        if st.first_queued_at is not None and st.answered_at is None and st.left_queue_at is None:
            st.left_queue_at = now  # hung up while in a queue (no Abandon seen)
    if st.done:
        st.ended_at = now


def _queue_join(_t: CallTracker, st: CallState, ev: Mapping[str, str], now: float) -> None:
    if ev.get("Uniqueid") != st.uniqueid:
        return
    if st.first_queued_at is None:
        st.first_queued_at = now
    st.queue = ev.get("Queue") or st.queue
    st.left_queue_at = None
    st.abandoned = False


def _queue_leave(_t: CallTracker, st: CallState, ev: Mapping[str, str], now: float) -> None:
    # Left without an agent: a call-back offer taken (EXITWITHKEY) or overflow. The
    # next join clears it; answered calls are told by AgentConnect.
    if ev.get("Uniqueid") == st.uniqueid and st.answered_at is None and not st.abandoned:
        st.left_queue_at = now


def _queue_abandon(_t: CallTracker, st: CallState, ev: Mapping[str, str], now: float) -> None:
    if ev.get("Uniqueid") == st.uniqueid:
        st.abandoned = True
        st.left_queue_at = now
        st.queue = ev.get("Queue") or st.queue


def _agent_connect(_t: CallTracker, st: CallState, ev: Mapping[str, str], now: float) -> None:
    if ev.get("Uniqueid") != st.uniqueid or st.answered_at is not None:
        return
    st.answered_at = now
    st.seat = ev.get("MemberName") or None
    st.queue = ev.get("Queue") or st.queue


def _dial_end(_t: CallTracker, st: CallState, ev: Mapping[str, str], _now: float) -> None:
    # Queue() rings members with dials too; only the dialplan's Dial() of a trunk counts
    # (a legacy number's own centre, an emergency line when the transfer service is away).
    if ev.get("Uniqueid") != st.uniqueid or ev.get("DialStatus") != "ANSWER":
        return
    if (
        ev.get("DestContext") == SEAT_CONTEXT
        or st.first_queued_at is not None
        and st.answered_at is None
    ):
        return
    ep = endpoint_of(ev.get("DestChannel", ""))
    if ep is not None:
        st.dialled.append(ep)


_HANDLERS: dict[str, Handler] = {
    "Hangup": _hangup,
    "QueueCallerJoin": _queue_join,
    "QueueCallerLeave": _queue_leave,
    "QueueCallerAbandon": _queue_abandon,
    "AgentConnect": _agent_connect,
    "DialEnd": _dial_end,
}


# ------------------------------------------------------------------ restart: CDR + queue_log


def inbound_number(row: CdrRow) -> str | None:
    """The number dialled, for a record of an inbound caller's channel (CDR userfield)."""
    if row.userfield.startswith(CDR_INBOUND):
        number = row.userfield[len(CDR_INBOUND) :]
        return number if number.isdigit() else None
    return None


def state_from_records(rows: list[CdrRow], queue_events: Iterable[QueueEvent]) -> CallState:
    """A finished call from its caller's CDR records (one uniqueid) and queue_log lines.

    ``queue_log`` keys a call by the caller's uniqueid, as the CDR does.
    """
    if not rows:
        raise ValueError("a call needs at least one CDR record")
    rows = sorted(rows, key=lambda r: r.start)
    first = rows[0]
    number = next((n for n in map(inbound_number, rows) if n), first.dst)
    st = CallState(
        call_id=first.uniqueid,
        uniqueid=first.uniqueid,
        channel=first.channel,
        caller=first.src,
        called=number,
        started_at=min(r.start for r in rows),
        up=any(r.answer is not None for r in rows),
    )
    st.ended_at = st.caller_left_at = max(r.end for r in rows)
    for r in rows:
        if r.lastapp == "Dial" and r.disposition == "ANSWERED":
            ep = endpoint_of(r.dstchannel)
            if ep is not None:
                st.dialled.append(ep)
    for ev in sorted(queue_events, key=lambda e: e.time):
        if ev.callid != st.uniqueid:
            continue
        at = float(ev.time)
        if ev.event == "ENTERQUEUE":
            if st.first_queued_at is None:
                st.first_queued_at = at
            st.queue, st.left_queue_at, st.abandoned = ev.queue, None, False
        elif ev.event == "CONNECT" and st.answered_at is None:
            st.answered_at, st.seat, st.queue = at, ev.agent or None, ev.queue
        elif ev.event == "ABANDON":
            st.abandoned, st.left_queue_at, st.queue = True, at, ev.queue
        elif ev.event in ("EXITWITHKEY", "EXITWITHTIMEOUT", "EXITEMPTY") and st.answered_at is None:
            st.left_queue_at = at
    if st.first_queued_at is not None and st.answered_at is None and st.left_queue_at is None:
        st.left_queue_at = st.ended_at
    return st


# ------------------------------------------------------------------ facts


@dataclass(frozen=True)
class Extras:
    """What other parts of the controller stored about the call (read by the I/O shell)."""

    ivr: Mapping[str, Any] | None = None  # Redis hotline:call:<uniqueid> field ivr
    transfers: tuple[Mapping[str, Any], ...] = ()  # transfer.machine.Transfer.as_dict()
    callback: Mapping[str, Any] | None = None  # the call-back request booked in this call
    recording: str | None = None  # the call's recording, relative to the recordings root


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _connected(t: Mapping[str, Any]) -> bool:
    """An emergency transfer whose dispatcher answered and joined."""
    return bool(t.get("answered_attempt")) or "dispatcher_joined" in (t.get("times") or {})


def outcome_of(st: CallState, cfg: Config, x: Extras) -> Outcome:
    """How the call ended, in this order of precedence:

    emergency (a dispatcher of 110/119/120/122 answered: transfer, or the dialplan's own
    Dial), transferred (a department or centre trunk answered), answered (an agent),
    callback (booked in this call), abandoned (waited in a queue), ivr_hangup (left in
    the welcome, the menus or a greeting: the hotline never lost them), failed (never
    answered, or the hand-off the IVR chose — legacy, emergency — reached nobody).
    """
    kinds = [cfg.trunks[e].kind for e in st.dialled if e in cfg.trunks]
    if any(_connected(t) for t in x.transfers) or "emergency" in kinds:
        return Outcome.EMERGENCY
    if any(k in ("department", "centre", "county") for k in kinds):
        return Outcome.TRANSFERRED
    if st.answered_at is not None:
        return Outcome.ANSWERED
    if x.callback is not None:
        return Outcome.CALLBACK
    if st.first_queued_at is not None:
        return Outcome.ABANDONED
    route = (x.ivr or {}).get("route")
    if not st.up or route in ("legacy", "emergency") or x.transfers:
        return Outcome.FAILED
    return Outcome.IVR_HANGUP


def _category(ivr: Mapping[str, Any] | None) -> Category | None:
    found = None
    for step in (ivr or {}).get("steps") or ():
        c = step.get("category") if isinstance(step, Mapping) else None
        if c in Category._value2member_map_:
            found = Category(c)
    return found


def _transfer_summary(t: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("id", "line", "origin", "state", "outcome", "seat", "answered_attempt", "timings")
    out = {k: t.get(k) for k in keep if k in t}
    out["requested_at"] = (t.get("times") or {}).get("requested")
    return out


def facts_of(st: CallState, cfg: Config, x: Extras = Extras()) -> CallFacts:
    """The finished call as the work orders' input."""
    if st.ended_at is None:
        raise ValueError(f"call {st.call_id} has not ended")
    number = cfg.number(st.called)
    ep = endpoint_of(st.channel)
    trunk = cfg.trunks.get(ep) if ep else None
    department = number.department if number is not None and number.kind == "legacy" else None
    if trunk is not None and trunk.kind == "emergency":
        origin = st.caller if st.caller in cfg.emergency_lines else "emergency"
    elif number is not None:
        origin = number.number
    else:
        origin = st.called
    ivr = x.ivr or {}
    if ivr.get("route") == "legacy" and department is None:
        chosen = cfg.number(str(ivr.get("target") or ""))
        department = chosen.department if chosen is not None else None
    if st.queue in cfg.queues:
        centre: str | None = cfg.queues[st.queue].centre
    elif number is not None:
        centre = number.centre
    else:
        centre = cfg.queues[cfg.hotline.default_queue].centre
    if "city" in ivr or "county" in ivr:
        city, county = ivr.get("city"), ivr.get("county")
    else:
        loc = locate(cfg, st.caller)
        city, county = loc.city, loc.county
    agent = None
    if st.seat:
        seat = cfg.seats.get(st.seat)
        agent = (seat.agent if seat is not None else None) or st.seat
    wait = None
    if st.first_queued_at is not None:
        end = st.answered_at or st.left_queue_at or st.ended_at
        wait = round(max(0.0, end - st.first_queued_at), 3)
    steps = [dict(s) for s in ivr.get("steps") or () if isinstance(s, Mapping)]
    return CallFacts(
        call_id=st.call_id,
        uniqueid=st.uniqueid,
        caller=st.caller,
        called=st.called,
        outcome=outcome_of(st, cfg, x),
        started_at=_utc(st.started_at),
        ended_at=_utc(st.ended_at),
        origin=origin,
        department=department,
        centre=centre,
        city=city,
        county=county,
        category=_category(ivr),
        queue=st.queue,
        agent=agent,
        answered_at=_utc(st.answered_at) if st.answered_at is not None else None,
        wait_seconds=wait,
        recording=x.recording,
        ivr_path=steps,
        transfers=[_transfer_summary(t) for t in x.transfers],
    )


def facts_to_json(f: CallFacts) -> dict[str, Any]:
    """``CallFacts`` as JSON-ready data (ISO times, enum values)."""
    d = asdict(f)
    for k, v in d.items():
        if isinstance(v, datetime):
            d[k] = v.isoformat()
        elif isinstance(v, Outcome | Category):
            d[k] = v.value
    return d
