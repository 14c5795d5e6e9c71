"""The life of a work order as a pure state machine (no I/O).

Statuses::

    intake ──record_call──► open / callback / void / closed (emergency)
    open, callback ──complete(answer)──► closed        (a consultation answered on the call)
    open, callback ──complete(dispatch)─► dispatched   (to a unit, with a deadline)
    dispatched ──accept──► accepted
    dispatched, accepted ──reply──► replied ──close──► closed
    dispatched, accepted ──return(reason)──► returned ──dispatch──► dispatched
    replied, closed ──reopen (發回重辦)──► dispatched (same unit) or open
    open, callback ──dismiss──► void                    (a call-back found no matter)
    any but merged/void ──merge (並單)──► merged          (calls move to the kept order)

``TRANSITIONS`` says, for each action, the statuses it leaves from and the roles
that may do it; :func:`plan` checks one request against it and returns the
column changes and the event to write, or raises :class:`TransitionError`
(HTTP 409) naming the reason. Which *order* a user may touch at all (an agent
the orders they handled, a supervisor their centre's, a unit the orders
dispatched to it) is :func:`may_see`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from dialplan.model import DEFAULT_REMINDER, DEFAULT_TIME_LIMITS, TimeLimit
from hotline.auth import Principal, centre_scope
from queues.hours import add_working_days

from .facts import Category, Outcome

INTAKE = "intake"  # reserved while the call is in progress
OPEN = "open"  # the agent completes it
CALLBACK = "callback"  # the caller was not served: a dispatcher calls back
VOID = "void"  # no matter stated (hung up in the menus, or a call-back found none)
DISPATCHED = "dispatched"
ACCEPTED = "accepted"
RETURNED = "returned"  # a unit returned it: back with the dispatcher
REPLIED = "replied"
CLOSED = "closed"
MERGED = "merged"

STATUSES = (INTAKE, OPEN, CALLBACK, VOID, DISPATCHED, ACCEPTED, RETURNED, REPLIED, CLOSED, MERGED)
# Orders a unit is working on: the deadline runs, supervision watches them.
RUNNING = (DISPATCHED, ACCEPTED)

# The status an order gets when its call ends, by outcome.
INITIAL_STATUS: dict[Outcome, str] = {
    Outcome.ANSWERED: OPEN,
    Outcome.TRANSFERRED: OPEN,
    Outcome.ABANDONED: CALLBACK,
    Outcome.CALLBACK: CALLBACK,
    Outcome.FAILED: CALLBACK,
    Outcome.IVR_HANGUP: VOID,
    Outcome.EMERGENCY: CLOSED,
}
INITIAL_NOTE: dict[Outcome, str] = {
    Outcome.EMERGENCY: "transferred to an emergency line: handled there",
    Outcome.IVR_HANGUP: "hung up in the menus before asking for anything",
    Outcome.ABANDONED: "hung up waiting in the queue: call back",
    Outcome.CALLBACK: "call-back booked in the queue",
    Outcome.FAILED: "the hotline could not serve the call: call back",
}

DISPATCHERS = frozenset({"supervisor", "admin"})


class TransitionError(Exception):
    """The order is not in a state that allows this (409), or the request is incomplete."""

    status = 409
    error_id = "invalid-transition"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.details = details


class RequestError(TransitionError):
    """The request itself is wrong: a missing reason, an unknown unit (400)."""

    status = 400
    error_id = "bad-request"


class NotAllowed(TransitionError):
    """This role may not do this action (403)."""

    status = 403
    error_id = "forbidden"


@dataclass(frozen=True)
class Transition:
    sources: frozenset[str]
    roles: frozenset[str]
    target: str | None  # None: decided by plan() (complete, reopen)


TRANSITIONS: dict[str, Transition] = {
    "complete": Transition(
        frozenset({OPEN, CALLBACK}), frozenset({"agent", "supervisor", "admin"}), None
    ),
    "dispatch": Transition(frozenset({RETURNED}), DISPATCHERS, DISPATCHED),
    "accept": Transition(frozenset({DISPATCHED}), frozenset({"unit", "admin"}), ACCEPTED),
    "reply": Transition(frozenset({DISPATCHED, ACCEPTED}), frozenset({"unit", "admin"}), REPLIED),
    "return": Transition(frozenset({DISPATCHED, ACCEPTED}), frozenset({"unit", "admin"}), RETURNED),
    "close": Transition(frozenset({REPLIED}), frozenset({"supervisor", "admin"}), CLOSED),
    "reopen": Transition(
        frozenset({REPLIED, CLOSED}), frozenset({"supervisor", "admin", "survey"}), None
    ),
    "dismiss": Transition(
        frozenset({OPEN, CALLBACK}), frozenset({"agent", "supervisor", "admin"}), VOID
    ),
    "merge": Transition(
        frozenset({INTAKE, OPEN, CALLBACK, DISPATCHED, ACCEPTED, RETURNED, REPLIED, CLOSED}),
        DISPATCHERS,
        MERGED,
    ),
    # 重复来电: this call is about one of the caller's earlier orders (the agent's screen
    # lists them); it joins that order, and urges (催办) the unit when it is still running.
    "repeat": Transition(
        frozenset({INTAKE, OPEN, CALLBACK}), frozenset({"agent", "supervisor", "admin"}), MERGED
    ),
}


def every_day(_day: date) -> bool:
    return True


@dataclass(frozen=True)
class Policy:
    """What the config says about orders (built from ``workorders:`` and ``units:``)."""

    time_limits: Mapping[str, TimeLimit] = field(default_factory=lambda: dict(DEFAULT_TIME_LIMITS))
    category_limits: Mapping[str, str] = field(default_factory=dict)
    default_limit: str = "general"
    units: Mapping[str, str] = field(default_factory=dict)  # unit id -> centre
    #: How long before its deadline a running order is reminded (time or working days),
    #: for every class or per class (workorders.remind_before).
    remind_before: TimeLimit | Mapping[str, TimeLimit] = DEFAULT_REMINDER
    reopen_on_dissatisfied: bool = True
    #: Which local dates count for time limits in working days (workorders.calendar).
    working_day: Callable[[date], bool] = every_day

    def reminder(self, limit: str | None) -> TimeLimit:
        """How long before its deadline an order of class ``limit`` is reminded."""
        rb = self.remind_before
        if isinstance(rb, TimeLimit):
            return rb
        # a class no longer in the config (or none): the default
        return rb.get(limit or "", DEFAULT_REMINDER)

    def horizons(self, now: datetime) -> Horizons:
        return Horizons(self, now)

    def limit_for(self, category: str | None, asked: str | None) -> str:
        if asked is not None:
            if not isinstance(asked, str) or asked not in self.time_limits:
                raise RequestError(f"unknown time limit {asked!r}", known=sorted(self.time_limits))
            return asked
        return self.category_limits.get(category or "", self.default_limit)


class Horizons:
    """At one moment, the deadline by which each class's orders are near it.

    With a reminder in working days the clock stops on rest days, as for the
    limits: 1wd before a Monday 15:00 deadline is Friday 15:00.  A calendar that
    stops working (validation refuses most) counts calendar days instead.
    """

    def __init__(self, policy: Policy, now: datetime) -> None:
        self._policy, self.now = policy, now
        self._by_reminder: dict[TimeLimit, datetime] = {}

    def __call__(self, limit: str | None) -> datetime:
        return self._of(self._policy.reminder(limit))

    def latest(self) -> datetime:
        """The furthest of them: every order near its deadline is due by then."""
        rb = self._policy.remind_before
        every = [rb] if isinstance(rb, TimeLimit) else [*rb.values(), DEFAULT_REMINDER]
        return max(self._of(tl) for tl in every)

    def _of(self, tl: TimeLimit) -> datetime:
        at = self._by_reminder.get(tl)
        if at is None:
            at = self._by_reminder[tl] = self._horizon(tl)
        return at

    def _horizon(self, tl: TimeLimit) -> datetime:
        if tl.working_days:
            try:
                return add_working_days(self.now, tl.working_days, self._policy.working_day)
            except ValueError:
                return self.now + timedelta(days=tl.working_days)
        return self.now + timedelta(seconds=tl.seconds)


@dataclass(frozen=True)
class Change:
    """What one transition writes: column updates on the order and one event."""

    action: str
    from_status: str
    to_status: str
    updates: dict[str, Any]
    unit: str | None = None
    note: str = ""


def deadline(start: datetime, limit: str, policy: Policy) -> datetime:
    tl = policy.time_limits[limit]
    if tl.working_days:
        try:
            return add_working_days(start, tl.working_days, policy.working_day)
        except ValueError as e:  # a calendar that stops working (validation refuses most)
            raise RequestError(f"time limit {limit!r} ({tl}): {e}") from None
    return start + timedelta(seconds=tl.seconds)


def _text(params: Mapping[str, Any], key: str, what: str) -> str:
    v = params.get(key)
    if not isinstance(v, str) or not v.strip():
        raise RequestError(f"{what} is required ({key!r}: a non-empty string)")
    return v.strip()


def _unit(params: Mapping[str, Any], policy: Policy) -> str:
    u = params.get("unit")
    if not isinstance(u, str) or u not in policy.units:
        raise RequestError(f"unknown unit {u!r}", known=sorted(policy.units))
    return u


def _dispatch_updates(
    order: Mapping[str, Any], unit: str, limit: str, now: datetime, policy: Policy
) -> dict[str, Any]:
    """A (re-)dispatch: new unit and deadline, supervision starts again. ``dispatched_at``
    stays the first dispatch and ``replied_at``/``reply`` the last reply (the KPIs read them)."""
    up: dict[str, Any] = {
        "unit": unit,
        "time_limit": limit,
        "deadline": deadline(now, limit, policy),
        "accepted_at": None,
        "closed_at": None,
        "reminded_at": None,
        "escalated_at": None,
    }
    if order.get("dispatched_at") is None:
        up["dispatched_at"] = now
    return up


def plan(
    order: Mapping[str, Any],
    action: str,
    role: str,
    params: Mapping[str, Any],
    now: datetime,
    policy: Policy,
) -> Change:
    """Check ``action`` by a user of ``role`` on ``order`` (its columns) and say what changes.

    Raises :class:`NotAllowed` (the role may never do it), :class:`TransitionError`
    (not from this status) or :class:`RequestError` (a parameter is missing or wrong).
    """
    t = TRANSITIONS.get(action)
    if t is None:
        raise RequestError(f"unknown action {action!r}", known=sorted(TRANSITIONS))
    status = order["status"]
    if role not in t.roles:
        raise NotAllowed(f"a {role} may not {action} an order", allowed=sorted(t.roles))
    if status not in t.sources:
        raise TransitionError(
            f"cannot {action} order {order.get('ref')}: it is {status}",
            current=status,
            allowed_from=sorted(t.sources),
        )
    raw_note = params.get("note")
    note: str = raw_note if isinstance(raw_note, str) else ""
    up: dict[str, Any] = {}
    unit: str | None = order.get("unit")
    target = t.target

    if action == "complete":
        up["content"] = _text(params, "content", "the matter's content")
        cat = params.get("category")
        if not isinstance(cat, str) or cat not in {c.value for c in Category}:
            raise RequestError(f"unknown category {cat!r}", known=[c.value for c in Category])
        up["category"] = cat
        if params.get("unit") is not None:
            unit = _unit(params, policy)
            limit = policy.limit_for(cat, params.get("time_limit"))
            up |= _dispatch_updates(order, unit, limit, now, policy)
            target = DISPATCHED
        elif isinstance(params.get("answer"), str) and params["answer"].strip():
            if cat != Category.CONSULTATION.value:
                raise TransitionError(
                    f"only a consultation is closed on the call; dispatch this {cat} to a unit",
                    category=cat,
                )
            up["answer"] = params["answer"].strip()
            up["closed_at"] = now
            target = CLOSED
        else:
            raise RequestError("complete needs an answer (consultation) or a unit to dispatch to")
    elif action == "dispatch":
        unit = _unit(params, policy)
        limit = policy.limit_for(order.get("category"), params.get("time_limit"))
        up |= _dispatch_updates(order, unit, limit, now, policy)
    elif action == "accept":
        up["accepted_at"] = now
    elif action == "reply":
        up["reply"] = _text(params, "reply", "the unit's reply")
        up["replied_at"] = now
        note = note or up["reply"]
    elif action == "return":
        note = _text(params, "reason", "the reason for returning")
        up |= {
            "unit": None,
            "deadline": None,
            "accepted_at": None,
            "returned": int(order.get("returned") or 0) + 1,
        }
    elif action == "close":
        up["closed_at"] = now
    elif action == "reopen":
        note = note or _text(params, "reason", "the reason for re-handling")
        up["rehandled"] = int(order.get("rehandled") or 0) + 1
        if unit is not None:
            limit = order.get("time_limit") or policy.limit_for(order.get("category"), None)
            if limit not in policy.time_limits:
                limit = policy.default_limit
            up |= _dispatch_updates(order, unit, limit, now, policy)
            target = DISPATCHED
        else:
            up |= {"closed_at": None}
            target = OPEN
    elif action == "dismiss":
        note = _text(params, "reason", "why there is no matter")
    elif action == "merge":
        into = params.get("into")
        if not isinstance(into, Mapping):
            raise RequestError("merge needs the order to keep ('into')")
        if into.get("id") == order.get("id"):
            raise TransitionError("an order cannot be merged into itself")
        if into["status"] in (MERGED, VOID):
            raise TransitionError(
                f"cannot merge into order {into.get('ref')}: it is {into['status']}"
            )
        up["merged_into"] = into["id"]
        note = note or f"merged into {into.get('ref')}"
    elif action == "repeat":
        of = params.get("of")
        if not isinstance(of, Mapping):
            raise RequestError("repeat needs 'of': the reference of the caller's earlier order")
        if of.get("id") == order.get("id"):
            raise TransitionError("a call cannot repeat its own order")
        caller = str(order.get("caller") or "")
        if not identifies_caller(caller) or of.get("caller") != caller:
            raise RequestError(f"order {of.get('ref')} is not an order of this call's caller")
        if of["status"] in NOT_HISTORY:
            raise TransitionError(f"cannot join order {of.get('ref')}: it is {of['status']}")
        up["merged_into"] = of["id"]
        note = note or f"repeat call about {of.get('ref')}"
    assert target is not None
    return Change(action, status, target, up, unit=unit, note=note)


#: Orders a caller's history leaves out: nothing stated, merged away, or the order of
#: a call still in progress (joining one would take it from the agent on that call).
NOT_HISTORY = (VOID, MERGED, INTAKE)


def identifies_caller(number: str) -> bool:
    """Whether a caller ID names one citizen: digits (a leading + allowed), at least 7,
    not all zeros (carriers send "0" or "00000000" for a withheld number)."""
    digits = (number or "").removeprefix("+")
    return len(digits) >= 7 and digits.isdigit() and digits.strip("0") != ""


def urges(kept: Mapping[str, Any]) -> bool:
    """A repeat call about ``kept`` urges (催办) its unit: the order is still running."""
    return kept.get("status") in RUNNING


# ----------------------------------------------------------------- who sees what


def may_see(
    role: str,
    name: str,
    seat: str | None,
    centre: str | None,
    unit: str | None,
    order: Mapping[str, Any],
    centres_under: Mapping[str, set[str]],
    unit_centres: Mapping[str, str] | None = None,
) -> bool:
    """Whether a user may read and act on ``order`` at all (the role rules are in ``plan``).

    A supervisor sees the orders of calls to their centre (and the centres below),
    and those dispatched to a unit of their centre (``unit_centres``: unit -> centre).
    """
    if role == "admin":
        return True
    if role == "agent":
        return order.get("agent") is not None and order.get("agent") in (name, seat)
    if role == "supervisor" and centre is not None:
        scope = centre_scope(Principal(name, role, seat, centre, unit), centres_under)
        if order.get("centre") is None:  # not placed yet: the supervisors over every centre
            return scope.unplaced
        unit_centre = (unit_centres or {}).get(order.get("unit") or "")
        return scope.sees(order["centre"]) or (unit_centre is not None and scope.sees(unit_centre))
    if role == "unit" and unit is not None:
        return order.get("unit") == unit
    return False


# ----------------------------------------------------------------- supervision


@dataclass(frozen=True)
class Due:
    order_id: int
    ref: str
    action: str  # reminded / escalated / urged (a repeat call, see store.act)
    unit: str | None
    deadline: datetime


def due(orders: Sequence[Mapping[str, Any]], horizons: Horizons) -> list[Due]:
    """Running orders to remind (near their deadline by their class's reminder, once)
    and to escalate (past the deadline, once), at ``horizons.now``. An overdue order
    never reminded is only escalated."""
    out: list[Due] = []
    now = horizons.now
    for o in orders:
        dl = o.get("deadline")
        if o.get("status") not in RUNNING or dl is None:
            continue
        if dl <= now:
            if o.get("escalated_at") is None:
                out.append(Due(o["id"], o["ref"], "escalated", o.get("unit"), dl))
        elif o.get("reminded_at") is None and dl <= horizons(o.get("time_limit")):
            out.append(Due(o["id"], o["ref"], "reminded", o.get("unit"), dl))
    return out
