"""The emergency transfer as an explicit state machine (pure: no I/O, no clock).

One :class:`Transfer` record per transfer. Its :class:`State` only changes
through :func:`transition`, which refuses any move not listed in
:data:`ALLOWED` (:class:`TransitionRefused`) and logs every move with the
transfer id and the caller's uniqueid. The rules that react to what happens
on the call (a route failed, the dispatcher joined, a party hung up, the
controller restarted) are functions of the record and the fact, returning the
:class:`Command` s the service must carry out; the service persists the record
*before* it carries them out (see :mod:`transfer.services`).

Who is in the call is ``Transfer.present``, a set of :class:`Role`. The
departure rules are a table, :data:`DEPARTURES`, keyed by (state, role):

* the **caller** leaving ends the transfer: every other party still there is
  hung up, a dispatcher still ringing is cancelled (the bridge exists for the
  caller's call; no half-bridge is left behind);
* the **agent** leaving while the line is dialled changes nothing: the caller
  stays in the bridge (music on hold when alone) and meets the dispatcher when
  they answer; in the three-way call the caller and dispatcher stay connected;
  with the caller alone and no dispatcher coming, the caller is queued again;
* the **dispatcher** leaving the three-way call leaves caller and agent
  together; leaving the caller alone ends the call when they cleared it
  normally (cause 16), otherwise (trunk failure) the caller is queued again.

A failed route (busy, no answer within ``answer_timeout``, trunk down) moves to
the next route (:func:`dial_next`); with none left the caller is back with the
agent (who hears a message), or, with no agent, queued with an apology.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Literal

from hotline import channel_vars as cv

log = logging.getLogger(__name__)


class State(StrEnum):
    REQUESTED = "requested"  # recorded; the parties are being moved into the bridge
    CALLER_HELD = "caller_held"  # caller (and agent) in the transfer's bridge
    DIALLING = "dialling"  # the line's first route is ringing
    ALTERNATE_DIALLING = "alternate_dialling"  # the first route failed; the alternate rings
    THREE_WAY = "three_way"  # caller, agent and dispatcher talk together
    CONSULTING = "consulting"  # the agent talks with the department; the caller on hold
    CALLER_AND_DISPATCHER = "caller_and_dispatcher"  # the agent left (or there was none)
    FAILED_BACK_TO_AGENT = "failed_back_to_agent"  # no route answered: caller with the agent
    CALLER_AND_AGENT = "caller_and_agent"  # the dispatcher left the three-way call
    CALLER_REQUEUED = "caller_requeued"  # caller sent to the default queue with an apology
    DONE = "done"  # the call is over (or superseded by a new transfer)
    ABORTED = "aborted"  # nothing was done to the call (it had moved on)


TERMINAL = frozenset({State.CALLER_REQUEUED, State.DONE, State.ABORTED})

ALLOWED: dict[State, frozenset[State]] = {
    State.REQUESTED: frozenset({State.CALLER_HELD, State.ABORTED, State.DONE}),
    State.CALLER_HELD: frozenset({State.DIALLING, State.DONE}),
    State.DIALLING: frozenset(
        {
            State.ALTERNATE_DIALLING,
            State.THREE_WAY,
            State.CONSULTING,
            State.CALLER_AND_AGENT,  # a consultation given up before the answer
            State.CALLER_AND_DISPATCHER,
            State.FAILED_BACK_TO_AGENT,
            State.CALLER_REQUEUED,
            State.DONE,
        }
    ),
    State.ALTERNATE_DIALLING: frozenset(
        {
            State.THREE_WAY,
            State.CONSULTING,
            State.CALLER_AND_AGENT,
            State.CALLER_AND_DISPATCHER,
            State.FAILED_BACK_TO_AGENT,
            State.CALLER_REQUEUED,
            State.DONE,
        }
    ),
    State.THREE_WAY: frozenset({State.CALLER_AND_DISPATCHER, State.CALLER_AND_AGENT, State.DONE}),
    State.CONSULTING: frozenset({State.CALLER_AND_DISPATCHER, State.CALLER_AND_AGENT, State.DONE}),
    State.CALLER_AND_DISPATCHER: frozenset({State.CALLER_REQUEUED, State.DONE}),
    State.FAILED_BACK_TO_AGENT: frozenset({State.CALLER_REQUEUED, State.DONE}),
    State.CALLER_AND_AGENT: frozenset({State.CALLER_REQUEUED, State.DONE}),
    State.CALLER_REQUEUED: frozenset(),
    State.DONE: frozenset(),
    State.ABORTED: frozenset(),
}
DIALLING_STATES = frozenset({State.DIALLING, State.ALTERNATE_DIALLING})


class Role(StrEnum):
    CALLER = "caller"
    AGENT = "agent"
    DISPATCHER = "dispatcher"


Origin = Literal["agent", "ivr"]
#: warm: the three talk together (the agent may leave); blind: the agent's leg is hung up
#: when the other side answers; consult: the caller waits on hold while the agent talks
#: with the other side, then is connected to them or returned to the agent.
Kind = Literal["warm", "blind", "consult"]
NORMAL_CLEARING = "16"  # Q.850 cause of a normal hang-up (AMI Hangup event, Cause)


class TransitionRefused(Exception):
    """A move the state machine does not allow (a bug or a stale event)."""

    def __init__(self, transfer_id: str, current: State, wanted: State) -> None:
        self.transfer_id, self.current, self.wanted = transfer_id, current, wanted
        super().__init__(
            f"transfer {transfer_id}: {current.value} -> {wanted.value} is not allowed"
        )


# ------------------------------------------------------------------ commands


@dataclass(frozen=True)
class Dial:
    """Originate the dispatcher leg of route ``attempt`` (1-based) into the bridge."""

    attempt: int


@dataclass(frozen=True)
class Watch:
    """(Re)arm the no-answer watchdog of ``attempt`` (after a controller restart)."""

    attempt: int


@dataclass(frozen=True)
class HangUp:
    """Hang up the channel of ``role`` (a dispatcher still ringing is cancelled)."""

    role: Role
    cause: int = 16


@dataclass(frozen=True)
class TellAgent:
    """Take the agent out of the bridge for the failure message, then back in."""


@dataclass(frozen=True)
class Requeue:
    """Send the caller to the apology and the default queue (hotline-failure)."""


@dataclass(frozen=True)
class JoinCaller:
    """Take the caller off hold into the transfer's bridge (consultation)."""


Command = Dial | Watch | HangUp | TellAgent | Requeue | JoinCaller


# ------------------------------------------------------------------ the record


@dataclass(frozen=True)
class RouteSpec:
    trunk: str
    number: str
    via: str = ""  # a department or centre: dialled through Local/<via>@hotline-handoff-dial

    @property
    def channel(self) -> str:
        if self.via:
            return f"Local/{self.via}@{cv.CTX_HANDOFF_DIAL}/n"  # /n: the leg stays one channel
        return f"PJSIP/{self.number}@{self.trunk}"


def new_transfer_id() -> str:
    """``x`` + 12 hex digits: a valid AMI ChannelId prefix and ConfBridge name."""
    return "x" + secrets.token_hex(6)


@dataclass
class Transfer:
    id: str
    line: str
    origin: Origin
    caller_uniqueid: str
    caller_channel: str
    routes: list[RouteSpec]
    answer_timeout: int
    caller_number: str = ""
    seat: str | None = None
    agent_uniqueid: str | None = None
    agent_channel: str | None = None
    requested_by: str = ""
    kind: str = "warm"  # Kind
    headers: dict[str, str] = field(default_factory=dict)  # checked values for the leg
    state: State = State.REQUESTED
    outcome: str = ""
    attempt: int = 0  # the route being (or last) dialled, 1-based; 0 = none yet
    dispatcher_channel: str | None = None
    answered_attempt: int = 0  # the route whose dispatcher joined; 0 = none
    present: set[Role] = field(default_factory=set)
    failures: list[dict[str, Any]] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    # -------------------------------------------------------------- derived
    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def dispatcher_uniqueid(self) -> str | None:
        return self.dispatcher_id(self.attempt) if self.attempt else None

    def dispatcher_id(self, attempt: int) -> str:
        """The originate id (= channel uniqueid) of route ``attempt``'s dispatcher leg."""
        return f"{self.id}-d{attempt}"

    def uniqueid_of(self, role: Role) -> str | None:
        return {
            Role.CALLER: self.caller_uniqueid,
            Role.AGENT: self.agent_uniqueid,
            Role.DISPATCHER: self.dispatcher_uniqueid,
        }[role]

    def role_of(self, uniqueid: str) -> Role | None:
        for role in Role:
            if uniqueid and self.uniqueid_of(role) == uniqueid:
                return role
        return None

    def mark(self, what: str, now: float) -> None:
        """Record the first time ``what`` happened (timings kept with the transfer)."""
        self.times.setdefault(what, now)

    # -------------------------------------------------------------- storage
    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        d["present"] = sorted(r.value for r in self.present)
        d["routes"] = [asdict(r) for r in self.routes]
        d["terminal"] = self.terminal
        d["timings"] = timings(self)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transfer:
        d = {k: v for k, v in d.items() if k not in ("terminal", "timings")}
        d["state"] = State(d["state"])
        d["present"] = {Role(r) for r in d.get("present", ())}
        d["routes"] = [RouteSpec(**r) for r in d["routes"]]
        return cls(**d)


def timings(t: Transfer) -> dict[str, float]:
    """The figures reports want, in seconds (only those that happened)."""
    out: dict[str, float] = {}
    tm = t.times
    for name, start, end in (
        ("request_to_ringing", "requested", "ringing"),
        ("request_to_dialled", "requested", "dialled"),
        ("ringing_to_answer", "ringing", "answered"),
        ("answer_to_dispatcher_joined", "answered", "dispatcher_joined"),
        ("answer_to_bridged", "answered", "bridged"),
        ("request_to_bridged", "requested", "bridged"),
        ("total", "requested", "ended"),
    ):
        if start in tm and end in tm:
            out[name] = round(tm[end] - tm[start], 3)
    return out


# ------------------------------------------------------------------ transitions


def transition(t: Transfer, to: State, reason: str, now: float) -> None:
    """Move ``t`` to ``to`` or raise :class:`TransitionRefused`; log and keep the move."""
    if to not in ALLOWED[t.state]:
        raise TransitionRefused(t.id, t.state, to)
    log.info(
        "[%s] transfer %s line %s: %s -> %s (%s)",
        t.caller_uniqueid,
        t.id,
        t.line,
        t.state.value,
        to.value,
        reason,
    )
    t.history.append({"at": now, "from": t.state.value, "to": to.value, "reason": reason})
    t.state = to
    if to in TERMINAL:
        t.mark("ended", now)
        if not t.outcome:
            t.outcome = reason


def start(t: Transfer, now: float) -> list[Command]:
    """The parties are in the bridge: caller_held, then dial the first route."""
    transition(
        t,
        State.CALLER_HELD,
        "caller and agent moved to the bridge"
        if Role.AGENT in t.present
        else "caller moved to the bridge",
        now,
    )
    t.mark("held", now)
    return dial_next(t, "first route", now)


def dial_next(t: Transfer, reason: str, now: float) -> list[Command]:
    """The current route failed (or none was tried): the next one, or give up."""
    if t.attempt < len(t.routes):
        t.attempt += 1
        t.dispatcher_channel = None
        to = State.DIALLING if t.attempt == 1 else State.ALTERNATE_DIALLING
        transition(t, to, f"{reason}: dialling {t.routes[t.attempt - 1].channel}", now)
        return [Dial(t.attempt)]
    if Role.AGENT in t.present:
        transition(t, State.FAILED_BACK_TO_AGENT, f"no route answered ({reason})", now)
        t.outcome = f"failed-back-to-agent: {reason}"
        return [TellAgent(), JoinCaller()] if t.kind == "consult" else [TellAgent()]
    transition(t, State.CALLER_REQUEUED, f"no route answered ({reason})", now)
    t.outcome = f"caller-requeued: {reason}"
    return [Requeue()]


def dial_failed(t: Transfer, attempt: int, reason: str, now: float) -> list[Command]:
    """Route ``attempt``'s dispatcher leg ended before joining the bridge."""
    if t.state not in DIALLING_STATES or attempt != t.attempt:
        return []  # a late event about an earlier attempt, or already handled
    t.failures.append(
        {"attempt": attempt, "route": t.routes[attempt - 1].channel, "reason": reason, "at": now}
    )
    if "(cause " in reason:  # from a Hangup event: the Q.850 cause is known
        t.failures[-1]["cause"] = reason.rsplit("(cause ", 1)[1].rstrip(")")
    return dial_next(t, f"route {attempt} {reason}", now)


def dispatcher_joined(t: Transfer, attempt: int, now: float) -> list[Command]:
    """Route ``attempt``'s dispatcher is in the bridge."""
    if t.state not in DIALLING_STATES or attempt != t.attempt:
        return []
    t.present.add(Role.DISPATCHER)
    t.answered_attempt = attempt
    t.mark("answered", now)
    t.mark(
        "dispatcher_joined", now
    )  # talking with the agent (the caller may still hear the message)
    t.outcome = "connected"
    if Role.AGENT in t.present and t.kind == "consult":
        transition(t, State.CONSULTING, f"route {attempt} answered: the agent consults", now)
        t.outcome = "consulting"
    elif Role.AGENT in t.present:
        transition(t, State.THREE_WAY, f"dispatcher of route {attempt} joined", now)
        if t.kind == "blind":
            return [HangUp(Role.AGENT)]  # blind: the agent is out once the other side answers
    else:
        transition(t, State.CALLER_AND_DISPATCHER, f"dispatcher of route {attempt} joined", now)
    return []


def connect(t: Transfer, now: float) -> list[Command]:
    """Consultation over: the caller talks with the other side; the agent's leg ends."""
    transition(t, State.CALLER_AND_DISPATCHER, "the agent connected the caller", now)
    t.outcome = "connected"
    t.mark("agent_left", now)
    return [JoinCaller(), HangUp(Role.AGENT)]


def give_back(t: Transfer, now: float) -> list[Command]:
    """Consultation over (or given up while ringing): the caller is back with the agent."""
    ringing = t.state in DIALLING_STATES
    transition(t, State.CALLER_AND_AGENT, "the agent took the caller back", now)
    t.outcome = "returned-to-agent"
    return (
        [HangUp(Role.DISPATCHER), JoinCaller()]
        if ringing or Role.DISPATCHER in t.present
        else [JoinCaller()]
    )


# ------------------------------------------------------------------ departures

Rule = Callable[[Transfer, str, float], list["Command"]]


def _caller_left(t: Transfer, cause: str, now: float) -> list[Command]:
    cmds: list[Command] = []
    if Role.AGENT in t.present:
        cmds.append(HangUp(Role.AGENT))
    if Role.DISPATCHER in t.present or t.state in DIALLING_STATES:
        cmds.append(HangUp(Role.DISPATCHER))  # cancels a dispatcher still ringing
    if t.state in (State.REQUESTED, State.CALLER_HELD, *DIALLING_STATES):
        t.outcome = "caller-hung-up-before-answer"
    t.present.clear()
    transition(t, State.DONE, f"caller hung up (cause {cause})", now)
    return cmds


def _agent_left_keep_caller(t: Transfer, cause: str, now: float) -> list[Command]:
    log.info(
        "[%s] transfer %s: agent left in %s (cause %s); the caller stays in the bridge",
        t.caller_uniqueid,
        t.id,
        t.state.value,
        cause,
    )
    t.mark("agent_left", now)
    return [JoinCaller()] if t.kind == "consult" else []  # off hold, to wait in the bridge


def _agent_left_consulting(t: Transfer, cause: str, now: float) -> list[Command]:
    t.mark("agent_left", now)
    transition(t, State.CALLER_AND_DISPATCHER, f"agent left the consultation (cause {cause})", now)
    t.outcome = "connected"
    return [JoinCaller()]


def _dispatcher_left_consulting(t: Transfer, cause: str, now: float) -> list[Command]:
    t.mark("dispatcher_left", now)
    transition(
        t, State.CALLER_AND_AGENT, f"the other side left the consultation (cause {cause})", now
    )
    t.outcome = "returned-to-agent"
    return [JoinCaller()]


def _agent_left_three_way(t: Transfer, cause: str, now: float) -> list[Command]:
    t.mark("agent_left", now)
    transition(
        t, State.CALLER_AND_DISPATCHER, f"agent left the three-way call (cause {cause})", now
    )
    return []


def _agent_left_caller_alone(t: Transfer, cause: str, now: float) -> list[Command]:
    t.mark("agent_left", now)
    transition(t, State.CALLER_REQUEUED, f"agent left, no dispatcher (cause {cause})", now)
    return [Requeue()]


def _dispatcher_left_three_way(t: Transfer, cause: str, now: float) -> list[Command]:
    t.mark("dispatcher_left", now)
    transition(
        t, State.CALLER_AND_AGENT, f"dispatcher left the three-way call (cause {cause})", now
    )
    return []


def _dispatcher_left_caller_alone(t: Transfer, cause: str, now: float) -> list[Command]:
    t.mark("dispatcher_left", now)
    if cause == NORMAL_CLEARING:
        transition(t, State.DONE, "dispatcher ended the call", now)
        return [HangUp(Role.CALLER)]
    transition(t, State.CALLER_REQUEUED, f"dispatcher leg lost (cause {cause})", now)
    t.outcome = f"caller-requeued: dispatcher leg lost (cause {cause})"
    return [Requeue()]


#: Q.850 causes of a dispatcher leg that ended before answering (AMI Hangup, Cause).
CAUSES = {
    "1": "unallocated number",
    "16": "hung up",
    "17": "busy",
    "18": "no answer",
    "19": "no answer",
    "21": "rejected",
    "27": "trunk down",
    "31": "failed",
    "34": "congestion",
    "38": "trunk down",
    "0": "failed",
}


def _dispatcher_gone_while_dialling(t: Transfer, cause: str, now: float) -> list[Command]:
    return dial_failed(t, t.attempt, f"{CAUSES.get(cause, 'failed')} (cause {cause})", now)


DEPARTURES: dict[tuple[State, Role], Rule] = {
    **{(s, Role.CALLER): _caller_left for s in ALLOWED if s not in TERMINAL},
    (State.REQUESTED, Role.AGENT): _agent_left_keep_caller,
    (State.CALLER_HELD, Role.AGENT): _agent_left_keep_caller,
    (State.DIALLING, Role.AGENT): _agent_left_keep_caller,
    (State.ALTERNATE_DIALLING, Role.AGENT): _agent_left_keep_caller,
    (State.THREE_WAY, Role.AGENT): _agent_left_three_way,
    (State.FAILED_BACK_TO_AGENT, Role.AGENT): _agent_left_caller_alone,
    (State.CALLER_AND_AGENT, Role.AGENT): _agent_left_caller_alone,
    (State.DIALLING, Role.DISPATCHER): _dispatcher_gone_while_dialling,
    (State.ALTERNATE_DIALLING, Role.DISPATCHER): _dispatcher_gone_while_dialling,
    (State.THREE_WAY, Role.DISPATCHER): _dispatcher_left_three_way,
    (State.CONSULTING, Role.AGENT): _agent_left_consulting,
    (State.CONSULTING, Role.DISPATCHER): _dispatcher_left_consulting,
    (State.CALLER_AND_DISPATCHER, Role.DISPATCHER): _dispatcher_left_caller_alone,
}


def left(t: Transfer, role: Role, cause: str, now: float) -> list[Command]:
    """``role``'s channel is gone (AMI Hangup, or absent after a restart)."""
    if t.terminal:
        return []
    was_present = role in t.present
    t.present.discard(role)
    rule = DEPARTURES.get((t.state, role))
    if rule is None or (not was_present and role is not Role.DISPATCHER):
        return []
    return rule(t, cause, now)


# ------------------------------------------------------------------ restart


@dataclass(frozen=True)
class Seen:
    """What Asterisk shows of one transfer after a controller restart."""

    alive: frozenset[Role]  # roles whose channel exists
    in_transfer: frozenset[Role]  # roles whose channel is in the bridge or our contexts
    dispatcher_in_bridge: bool


def reconcile(t: Transfer, seen: Seen, now: float) -> list[Command]:
    """Bring ``t`` in line with Asterisk after a controller restart; commands finish it.

    What happened while nobody watched is dated at the reconciliation (``times``
    keeps ``reconciled``): timings across a restart are upper bounds.
    """
    cmds: list[Command] = []
    t.times["reconciled"] = now
    if t.state is State.REQUESTED:
        if Role.CALLER in seen.alive and Role.CALLER in seen.in_transfer:
            t.present = {
                r
                for r in (Role.CALLER, Role.AGENT)
                if r in seen.alive and (r is Role.CALLER or r in seen.in_transfer)
            }
            return start(t, now)
        if Role.CALLER in seen.alive:
            t.present.clear()
            transition(t, State.ABORTED, "restart: the caller was never moved", now)
            return []
        if Role.AGENT in seen.in_transfer:
            cmds.append(HangUp(Role.AGENT))
        t.present.clear()
        transition(t, State.DONE, "restart: the caller is gone", now)
        return cmds
    for role in (Role.CALLER, Role.AGENT):
        if role in t.present and role not in seen.alive and not t.terminal:
            cmds += left(t, role, "gone during restart", now)
    if t.terminal:
        return cmds
    if t.state in DIALLING_STATES:
        if seen.dispatcher_in_bridge:
            cmds += dispatcher_joined(t, t.attempt, now)
        elif Role.DISPATCHER in seen.alive:
            cmds.append(Watch(t.attempt))
        else:
            cmds += dial_failed(t, t.attempt, "gone during restart", now)
    elif Role.DISPATCHER in t.present and Role.DISPATCHER not in seen.alive:
        cmds += left(t, Role.DISPATCHER, "gone during restart", now)
    return cmds
