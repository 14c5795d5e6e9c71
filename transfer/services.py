"""The emergency transfer service (三方通话): logic only, no HTTP.

How a transfer runs on Asterisk (the generated dialplan is in
:meth:`dialplan.compile.Compiler.transfer_contexts`, the profiles in
``confbridge.conf``):

1. The agent asks (HTTP ``POST /calls/{seat}/transfer``, or the softphone
   feature code ``**<line>``, which raises the UserEvent ``HotlineTransfer``
   from ``features.conf [applicationmap]``); the IVR's emergency offer raises
   ``HotlineEmergency`` from ``hotline-emergency``. The service finds the
   caller (the agent's bridge peer in ``CoreShowChannels``), records the
   transfer (state ``requested``) and moves both channels at once with AMI
   ``Redirect`` + ``ExtraChannel`` into a ConfBridge named after the transfer
   id: the caller first hears the line's message (``hotline-xfer-caller``),
   the agent joins straight away (``hotline-xfer-agent``).
2. It originates the dispatcher leg over the line's route with AMI
   ``Originate`` (``ChannelId`` = ``<transfer id>-d<attempt>``, ``Timeout`` =
   ``answer_timeout``); answered, the leg runs ``hotline-xfer-dispatcher`` and
   joins the same ConfBridge: the three talk together.
3. It follows the call through AMI events keyed by the channels' uniqueids:
   ``Newstate`` (ringing, answered), ``OriginateResponse`` (busy, no answer,
   trunk down), ``ConfbridgeJoin`` (in the bridge) and ``Hangup`` (who left,
   with the Q.850 cause). What each event means is decided by the pure state
   machine (:mod:`transfer.machine`); the record is saved before the
   commands it returns are carried out.
4. After a controller restart (and after every AMI reconnection to a booted
   Asterisk) each open transfer is compared with ``CoreShowChannels`` and
   finished (:func:`transfer.machine.reconcile`).

AMI rights used (user ``hotline``): ``Redirect``, ``Setvar``, ``Hangup``
(write ``call``), ``Originate`` (``originate``), ``CoreShowChannels``
(read ``reporting``); events ``call`` and ``user``.
See https://docs.asterisk.org/Asterisk_22_Documentation/API_Documentation/AMI_Actions/Redirect/
and .../Dialplan_Applications/ConfBridge/.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Collection
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from dialplan.model import Config
from hotline import channel_vars as cv
from hotline.ami import AmiActionError, AmiError
from hotline.amiproto import fields
from hotline.auth import Principal, may_act_on_seat
from hotline.record_store import LoadsOpenRecords
from ivr.locality import locate
from queues.agents import centres_under

from . import machine as m
from .destinations import Destination, destinations
from .exceptions import (
    AsteriskUnavailable,
    BadRequest,
    CallMoved,
    NoCall,
    NotAllowed,
    NotFound,
    TransferInProgress,
    UnknownLine,
    UnknownSeat,
)
from .machine import Role, State, Transfer
from .store import TransferStore

log = logging.getLogger(__name__)

ANNOUNCE_DIGITS = 6  # digits of the case reference said to the answering side

#: AMI events the service follows (all read class ``call`` but UserEvent: ``user``).
EVENTS = ("Newchannel", "Hangup", "Newstate", "OriginateResponse", "ConfbridgeJoin", "UserEvent")
#: OriginateResponse ``Reason`` (the last AST_CONTROL_* frame seen, main/manager.c).
ORIGINATE_REASONS = {
    "0": "failed",
    "1": "hung up",
    "3": "no answer",
    "5": "busy",
    "8": "congestion",
}
#: Seconds past answer_timeout after which the service gives up on a leg itself
#: (Asterisk's Originate Timeout normally ends it first).
WATCHDOG_GRACE = 3.0
#: Seconds an answered leg may take to join the bridge (the case reference is said to
#: it first with transfers.announce_case) before the service gives up on it.
ANSWERED_GRACE = 60.0
#: States in which the agent may start a new transfer of the same call.
RETRY_STATES = frozenset({State.FAILED_BACK_TO_AGENT, State.CALLER_AND_AGENT})
_SEAT_CHANNEL = re.compile(r"^PJSIP/(?P<seat>[A-Za-z0-9_-]+)-[0-9a-f]+$")


@dataclass(frozen=True)
class Party:
    uniqueid: str
    channel: str
    number: str = ""


@dataclass
class TransferService(LoadsOpenRecords[Transfer]):
    config: Callable[[], Config]
    ami: Callable[[], Any]  # the hotline.ami.AmiClient, or None
    store: TransferStore
    clock: Callable[[], float] = time.time
    # the origin record of a call (Redis hotline:call:<uniqueid> field origin), if any
    origin_of: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None
    #: The caller's earlier work orders (number, the call's own case to leave out);
    #: None when they cannot be read now.
    history_of: Callable[[str, str | None], Awaitable[list[dict[str, Any]] | None]] | None = None
    open: dict[str, Transfer] = field(default_factory=dict)
    index: dict[str, str] = field(default_factory=dict)  # uniqueid -> transfer id
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _watchdogs: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _channels: dict[str, str] = field(default_factory=dict)  # uniqueid -> channel name
    _starting: set[str] = field(default_factory=set)  # callers whose transfer is being set up
    loaded: bool = False  # the open transfers of the store are in ``open``

    # ------------------------------------------------------------ life
    # load() / reload(): hotline.record_store.LoadsOpenRecords; reconciled once AMI is
    # up, and loaded again at every AMI (re)connection while the database was down.
    OPEN_WHAT = "open transfers"

    def _open_records(self) -> list[Transfer]:
        return self.store.open_transfers()

    def _adopt(self, records: list[Transfer]) -> None:
        for t in records:
            if t.id not in self.open:  # one started since is newer than its row
                self._track(t)
        self.loaded = True
        if self.open:
            log.info("%d open transfer(s) to reconcile: %s", len(self.open), ", ".join(self.open))

    async def close(self) -> None:
        tasks = list(self._watchdogs.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(self.store.close)  # the saves handed in are written first

    def _track(self, t: Transfer) -> None:
        self.open[t.id] = t
        for uid in (
            t.caller_uniqueid,
            t.agent_uniqueid,
            *(t.dispatcher_id(a) for a in range(1, t.attempt + 1)),
        ):
            if uid:
                self.index[uid] = t.id
        self._channels[t.caller_uniqueid] = t.caller_channel
        if t.agent_uniqueid and t.agent_channel:
            self._channels[t.agent_uniqueid] = t.agent_channel

    def _untrack(self, t: Transfer) -> None:
        if self.open.get(t.id) is t:
            del self.open[t.id]
        for uid, tid in list(self.index.items()):
            if tid == t.id:
                del self.index[uid]
                self._channels.pop(uid, None)
        wd = self._watchdogs.pop(t.id, None)
        if wd is not None and wd is not asyncio.current_task():
            wd.cancel()
        self._locks.pop(t.id, None)

    def _lock(self, tid: str) -> asyncio.Lock:
        return self._locks.setdefault(tid, asyncio.Lock())

    def _ami(self) -> Any:
        ami = self.ami()
        if ami is None or not ami.connected:
            raise AsteriskUnavailable("Asterisk is not reachable over AMI right now")
        return ami

    def _hand_in(self, t: Transfer, now: float) -> Future[None]:
        """A copy of ``t`` (the loop goes on changing ``t``) saved on the store's writer
        thread, off the event loop, after every save handed in before it."""
        return self.store.db.submit(self.store.save, Transfer.from_dict(t.as_dict()), now)

    async def _write(self, t: Transfer, now: float) -> None:
        """Save ``t`` off the event loop and wait until it is written (or raise)."""
        await asyncio.wrap_future(self._hand_in(t, now))

    def _write_soon(self, t: Transfer, now: float) -> None:
        """Save ``t`` off the event loop without waiting (from an event handler that
        cannot wait; the awaited save of :meth:`_apply` that follows it keeps the
        order and reports a database that is down)."""
        def failed(f: Future[None]) -> None:
            if (e := f.exception()) is not None:
                log.error("[%s] transfer %s not saved: %s", t.caller_uniqueid, t.id, e)

        self._hand_in(t, now).add_done_callback(failed)

    async def _save(self, t: Transfer) -> None:
        await self._write(t, self.clock())
        if t.terminal:
            log.info(
                "[%s] transfer %s line %s finished: %s; outcome %s; timings %s",
                t.caller_uniqueid,
                t.id,
                t.line,
                t.state.value,
                t.outcome,
                m.timings(t),
            )
            self._untrack(t)
        else:
            self._track(t)

    # ------------------------------------------------------------ requests
    async def request(
        self, who: Principal, seat: str, line: str, kind: m.Kind = "warm"
    ) -> dict[str, Any]:
        """HTTP: the agent of ``seat`` (or their supervisor) transfers the seat's call to
        ``line`` (an emergency line, a department or a city centre), ``kind`` warm,
        blind or consult."""
        cfg = self.config()
        if seat not in cfg.seats:
            raise UnknownSeat(f"no seat {seat!r}")
        if not may_act_on_seat(who, seat, cfg.seats[seat].centre, centres_under(cfg)):
            raise NotAllowed(f"{who.name} may not transfer the calls of seat {seat}")
        self._line(line)
        if kind not in ("warm", "blind", "consult"):
            raise BadRequest(f"kind must be warm, blind or consult, not {kind!r}")
        if cfg.seats[seat].kind != "softphone":
            raise NoCall(f"seat {seat} is a remote seat: its calls are bridged at the county site")
        agent, caller, old = await self._seat_call(seat)
        t = await self._start("agent", line, caller, agent, seat, f"{who.name} (HTTP)", old, kind)
        return t.as_dict()

    async def finish_consultation(self, who: Principal, tid: str, action: str) -> dict[str, Any]:
        """HTTP: ``connect`` the caller with the consulted side, or ``return`` them."""
        t = self.open.get(tid)
        cfg = self.config()
        if t is None or t.seat is None or t.seat not in cfg.seats:
            raise NotFound(f"no open transfer {tid!r} of a seat")
        if not may_act_on_seat(who, t.seat, cfg.seats[t.seat].centre, centres_under(cfg)):
            raise NotAllowed(f"{who.name} may not act on the calls of seat {t.seat}")
        async with self._lock(tid):
            if t.kind != "consult":
                raise BadRequest(f"transfer {tid} is not a consultation")
            if action == "connect" and t.state is State.CONSULTING:
                cmds = m.connect(t, self.clock())
            elif action == "return" and (
                t.state is State.CONSULTING or t.state in m.DIALLING_STATES
            ):
                cmds = m.give_back(t, self.clock())
            else:
                raise TransferInProgress(
                    f"transfer {tid} cannot {action} in state {t.state.value}", state=t.state.value
                )
            await self._apply(t, cmds)
        return t.as_dict()

    async def seat_call(self, who: Principal, seat: str) -> dict[str, Any]:
        """HTTP: the seat's call in progress and where it came from (shown to the agent)."""
        cfg = self.config()
        if seat not in cfg.seats:
            raise UnknownSeat(f"no seat {seat!r}")
        if not may_act_on_seat(who, seat, cfg.seats[seat].centre, centres_under(cfg)):
            raise NotAllowed(f"{who.name} may not see the calls of seat {seat}")
        ami = self._ami()
        rows = [fields(c) for c in await ami.action_list("CoreShowChannels")]
        mine = cv.seat_legs(rows, seat)
        bridged = [r for r in mine if r.get("BridgeId")]
        if not bridged:
            raise NoCall(f"seat {seat} has no call in progress")
        a = bridged[0]
        peer = next(
            (r for r in rows if r.get("BridgeId") == a["BridgeId"] and r is not a), None
        )
        out: dict[str, Any] = {"seat": seat, "channel": a["Channel"]}
        for key, name in (
            ("origin", cv.ORIGIN),
            ("number", cv.NUMBER),
            ("department", cv.DEPARTMENT),
            ("partner_case", cv.PARTNER_CASE),
        ):
            out[key] = await ami.getvar(name, a["Channel"])
        out["caller"] = {
            "number": a.get("ConnectedLineNum", ""),
            "name": a.get("ConnectedLineName", ""),
        }
        # the call's work order (reserved at arrival) and where the caller is: what the
        # call carries (the IVR, a centre's hand-off), else what the number tells
        out["case"] = await ami.getvar(cv.CASE_REF, a["Channel"])
        city = await ami.getvar(cv.CITY, a["Channel"])
        if city:
            county = await ami.getvar(cv.COUNTY, a["Channel"])
            out["locality"] = {"city": city, "county": county, "source": "call"}
        else:
            loc = locate(cfg, out["caller"]["number"])
            out["locality"] = {"city": loc.city, "county": loc.county, "source": loc.source}
        if self.history_of is not None:
            out["history"] = await self.history_of(out["caller"]["number"], out["case"])
        transfer = self.index.get(peer["Uniqueid"]) if peer else None
        out["transfer"] = transfer
        if peer is not None and self.origin_of is not None:
            out["origin_record"] = await self.origin_of(peer["Uniqueid"])
        return out

    def _line(self, line: str) -> Destination:
        known = destinations(self.config())
        if line not in known:
            raise UnknownLine(f"no transfer destination {line!r}", known=sorted(known))
        return known[line]

    async def _seat_call(
        self, seat: str, agent_uid: str | None = None
    ) -> tuple[Party, Party, Transfer | None]:
        """The seat's channel, its caller, and the transfer it may retry."""
        rows = [fields(c) for c in await self._ami().action_list("CoreShowChannels")]
        by_uid = {r.get("Uniqueid", ""): r for r in rows}
        if agent_uid is not None:
            mine = [by_uid[agent_uid]] if agent_uid in by_uid else []
        else:
            mine = cv.seat_legs(rows, seat)
        bridged = [r for r in mine if r.get("BridgeId")]
        if not bridged:
            raise NoCall(f"seat {seat} has no call in progress")
        a = bridged[0]
        agent = Party(a["Uniqueid"], a["Channel"], a.get("CallerIDNum", ""))
        tid = self.index.get(agent.uniqueid)
        if tid is not None:
            old = self.open[tid]
            c = by_uid.get(old.caller_uniqueid)
            if old.state in RETRY_STATES and old.agent_uniqueid == agent.uniqueid and c:
                return agent, Party(c["Uniqueid"], c["Channel"], c.get("CallerIDNum", "")), old
            raise TransferInProgress(
                f"seat {seat}'s call is already being transferred ({old.state.value})",
                transfer=old.id,
                state=old.state.value,
            )
        peers = [r for r in rows if r.get("BridgeId") == a["BridgeId"] and r is not a]
        if len(peers) != 1:
            raise NoCall(f"seat {seat} is not in a two-party call ({len(peers) + 1} in its bridge)")
        c = peers[0]
        if c["Uniqueid"] in self.index:
            raise TransferInProgress(
                "the caller is already being transferred", transfer=self.index[c["Uniqueid"]]
            )
        return agent, Party(c["Uniqueid"], c["Channel"], c.get("CallerIDNum", "")), None

    async def _start(
        self,
        origin: m.Origin,
        line: str,
        caller: Party,
        agent: Party | None,
        seat: str | None,
        requested_by: str,
        supersede: Transfer | None = None,
        kind: m.Kind = "warm",
    ) -> Transfer:
        # Checked and claimed without an await in between: two requests for one call
        # (HTTP and the feature code, say) cannot both start a transfer.
        current = self.index.get(caller.uniqueid)
        if caller.uniqueid in self._starting or (
            current is not None and (supersede is None or current != supersede.id)
        ):
            raise TransferInProgress("the caller is already being transferred", transfer=current)
        self._starting.add(caller.uniqueid)
        try:
            return await self._begin(
                origin, line, caller, agent, seat, requested_by, supersede, kind
            )
        finally:
            self._starting.discard(caller.uniqueid)

    async def _begin(
        self,
        origin: m.Origin,
        line: str,
        caller: Party,
        agent: Party | None,
        seat: str | None,
        requested_by: str,
        supersede: Transfer | None,
        kind: m.Kind = "warm",
    ) -> Transfer:
        el = self._line(line)
        ami = self._ami()
        routes = list(el.routes)
        announce = self.config().transfers.announce_case
        headers = await self._header_values(caller) if el.kind != "emergency" or announce else {}
        now = self.clock()
        t = Transfer(
            id=m.new_transfer_id(),
            line=line,
            origin=origin,
            caller_uniqueid=caller.uniqueid,
            caller_channel=caller.channel,
            caller_number=caller.number,
            routes=routes,
            answer_timeout=el.answer_timeout,
            kind=kind if agent is not None else "warm",
            headers=headers,
            seat=seat,
            requested_by=requested_by,
            agent_uniqueid=agent.uniqueid if agent else None,
            agent_channel=agent.channel if agent else None,
        )
        t.present = {Role.CALLER} | ({Role.AGENT} if agent else set())
        t.mark("requested", now)
        log.info(
            "[%s] transfer %s to %s requested by %s (agent channel %s)",
            caller.uniqueid,
            t.id,
            line,
            requested_by,
            agent.channel if agent else "-",
        )
        async with self._lock(t.id):
            if supersede is None:
                self._track(t)  # before the save's wait: the caller's events find it
            try:
                await self._write(t, now)  # requested: recorded before anything moves
            except BaseException:
                if supersede is None:
                    self._untrack(t)
                raise
            try:
                await ami.action("Setvar", Channel=caller.channel, Variable=cv.XFER, Value=t.id)
                redirect = {
                    "Channel": caller.channel,
                    "Context": cv.CTX_XFER_CALLER,
                    "Exten": line,
                    "Priority": "1",
                }
                if t.kind == "consult":  # the caller waits on hold, away from the bridge
                    redirect |= {"Context": cv.CTX_XFER_HOLD, "Exten": "s"}
                if agent is not None:
                    await ami.action("Setvar", Channel=agent.channel, Variable=cv.XFER, Value=t.id)
                    redirect |= {
                        "ExtraChannel": agent.channel,
                        "ExtraContext": cv.CTX_XFER_AGENT,
                        "ExtraExten": cv.XFER_EXTEN_JOIN,
                        "ExtraPriority": "1",
                    }
                await ami.action("Redirect", **redirect)
            except AmiActionError as e:
                if agent is not None and "secondary" in e.message.lower():
                    # The caller moved, the agent did not (they hung up meanwhile).
                    log.warning(
                        "[%s] transfer %s: agent not moved (%s); caller kept",
                        caller.uniqueid,
                        t.id,
                        e.message,
                    )
                    t.present.discard(Role.AGENT)
                else:
                    m.transition(
                        t,
                        State.ABORTED,
                        f"Asterisk refused to move the call: {e.message}",
                        self.clock(),
                    )
                    await self._save(t)
                    raise CallMoved(
                        f"the call could not be moved: {e.message}", transfer=t.id
                    ) from None
            except (AmiError, ConnectionError) as e:
                # Unknown whether the Redirect ran: reconcile decides from what Asterisk shows.
                log.error(
                    "[%s] transfer %s: Redirect outcome unknown (%s); reconciling",
                    caller.uniqueid,
                    t.id,
                    e,
                )
                self._track(t)
                await self._reconcile_locked(t)
                return t
            if supersede is not None:
                async with self._lock(supersede.id):
                    supersede.present.clear()
                    m.transition(
                        supersede, State.DONE, f"superseded by transfer {t.id}", self.clock()
                    )
                    await self._save(supersede)
                self._track(t)
            await self._apply(t, m.start(t, self.clock()))
        return t

    async def _feature_code(self, ev: dict[str, str]) -> None:
        """UserEvent HotlineTransfer: an agent pressed **<line> during a call."""
        chan, uid, line = ev.get("Channel", ""), ev.get("Uniqueid", ""), ev.get("Line", "")
        match = _SEAT_CHANNEL.match(chan)
        seat = match["seat"] if match else ""
        if seat not in self.config().softphone_seats():
            log.warning(
                "[%s] transfer feature code from %s: not a seat's channel; ignored", uid, chan
            )
            return
        try:
            agent, caller, old = await self._seat_call(seat, agent_uid=uid)
            await self._start(
                "agent", line, caller, agent, seat, f"seat {seat} (feature code)", old
            )
        except Exception as e:  # noqa: BLE001 - refused requests are logged; the call goes on
            log.warning(
                "[%s] transfer to %s by feature code from seat %s refused: %s", uid, line, seat, e
            )

    async def _header_values(self, caller: Party) -> dict[str, str]:
        """The case reference, locality and origin of the caller's call, checked, for the
        SIP headers of a hand-off leg (the dialplan's HOTLINE_HDR_* variables)."""
        ami = self._ami()
        got = {}
        for name in (cv.CASE_REF, cv.HDR_LOCALITY, cv.CITY, cv.COUNTY, cv.NUMBER):
            try:
                got[name] = await ami.getvar(name, caller.channel) or ""
            except (AmiError, ConnectionError) as e:
                log.warning("[%s] could not read %s: %s", caller.uniqueid, name, e)
                got[name] = ""
        locality = got[cv.HDR_LOCALITY] or "/".join(x for x in (got[cv.CITY], got[cv.COUNTY]) if x)
        out = {}
        for var, value, pattern in (
            (cv.HDR_CASE, got[cv.CASE_REF], cv.CASE_RE),
            (cv.HDR_LOCALITY, locality, cv.LOCALITY_RE),
            (cv.HDR_ORIGIN, got[cv.NUMBER], cv.ORIGIN_RE),
        ):
            if value and re.fullmatch(pattern, value):
                out[var] = value
        return out

    async def _handoff_offer(self, ev: dict[str, str]) -> None:
        """UserEvent HotlineHandoff: a legacy number in centre mode, handoff warm."""
        uid, target = ev.get("Uniqueid", ""), ev.get("Target", "")
        if ev.get("Context") not in ("from-carrier", "hotline-legacy") or uid in self.index:
            log.warning("[%s] HotlineHandoff from context %s ignored", uid, ev.get("Context"))
            return
        caller = Party(uid, ev.get("Channel", ""), ev.get("CallerIDNum", ""))
        try:
            await self._start("ivr", target, caller, None, None, "legacy number (warm hand-off)")
        except Exception as e:  # noqa: BLE001 - the dialplan dials the centre itself after its wait
            log.warning("[%s] warm hand-off to %s not started: %s", uid, target, e)

    async def _ivr_offer(self, ev: dict[str, str]) -> None:
        """UserEvent HotlineEmergency: the IVR sends a caller to an emergency line."""
        uid, line = ev.get("Uniqueid", ""), ev.get("Line", "")
        if ev.get("Context") != cv.CTX_EMERGENCY or uid in self.index:
            log.warning("[%s] HotlineEmergency from context %s ignored", uid, ev.get("Context"))
            return
        caller = Party(uid, ev.get("Channel", ""), ev.get("CallerIDNum", ""))
        try:
            await self._start("ivr", line, caller, None, None, "IVR emergency offer")
        except Exception as e:  # noqa: BLE001 - the dialplan dials the line itself after its wait
            log.warning("[%s] IVR emergency transfer to %s not started: %s", uid, line, e)

    # ------------------------------------------------------------ events
    def on_event(self, event: Any) -> Awaitable[None] | None:
        """AMI callback: cheap filter in the reader, a task only for our channels."""
        name = event.get("Event") or ""
        if name == "UserEvent":
            kind = event.get("UserEvent") or ""
            if kind == cv.EVENT_XFER_REQUEST:
                return self._feature_code(fields(event))
            if kind == cv.EVENT_EMERGENCY:
                return self._ivr_offer(fields(event))
            if kind == cv.EVENT_HANDOFF:
                return self._handoff_offer(fields(event))
            return None
        tid = self.index.get(event.get("Uniqueid") or "")
        if tid is None:
            return None
        handler = self._handlers.get(name)
        return None if handler is None else self._handle(tid, handler, fields(event))

    async def _handle(
        self,
        tid: str,
        handler: Callable[[Transfer, dict[str, str]], list[m.Command]],
        ev: dict[str, str],
    ) -> None:
        async with self._lock(tid):
            t = self.open.get(tid)
            if t is None:
                return
            await self._apply(t, handler(t, ev))

    def _on_hangup(self, t: Transfer, ev: dict[str, str]) -> list[m.Command]:
        uid, cause = ev["Uniqueid"], ev.get("Cause", "")
        # A leg already counted as failed (OriginateResponse came first): keep its Q.850 cause.
        for f in t.failures:
            if t.dispatcher_id(f["attempt"]) == uid and "cause" not in f:
                f["cause"] = cause
                f["cause_text"] = m.CAUSES.get(cause, ev.get("Cause-txt", ""))
        role = t.role_of(uid)
        if role is None:
            return []
        return m.left(t, role, cause, self.clock())

    def _on_newchannel(self, t: Transfer, ev: dict[str, str]) -> list[m.Command]:
        """The dispatcher leg exists: its Hangup (with the Q.850 cause) will end it."""
        self._channels[ev["Uniqueid"]] = ev.get("Channel", "")
        if t.role_of(ev["Uniqueid"]) is Role.DISPATCHER:
            t.dispatcher_channel = ev.get("Channel") or t.dispatcher_channel
        return []

    def _on_newstate(self, t: Transfer, ev: dict[str, str]) -> list[m.Command]:
        uid = ev["Uniqueid"]
        self._channels[uid] = ev.get("Channel", "")
        if t.role_of(uid) is Role.DISPATCHER:
            t.dispatcher_channel = ev.get("Channel") or t.dispatcher_channel
            state = ev.get("ChannelState", "")
            if state == "5":  # AST_STATE_RINGING: the dispatcher's phone rings (180)
                t.mark("ringing", self.clock())
            elif state == "6":  # AST_STATE_UP: answered (200)
                t.mark("answered", self.clock())
                self._answered(t, uid)
            self._write_soon(t, self.clock())
        return []

    def _on_originate_response(self, t: Transfer, ev: dict[str, str]) -> list[m.Command]:
        uid = ev["Uniqueid"]
        attempt = next((a for a in range(1, t.attempt + 1) if t.dispatcher_id(a) == uid), 0)
        if ev.get("Response", "").lower() == "success":
            t.mark("answered", self.clock())
            self._answered(t, uid)
            return []
        if uid in self._channels:
            # The leg had a channel: its Hangup follows with the precise cause (a 486 is
            # OriginateResponse Reason 0 but Hangup Cause 17) and decides; the watchdog
            # stays armed in case it never comes.
            return []
        reason = ORIGINATE_REASONS.get(ev.get("Reason", ""), f"failed (reason {ev.get('Reason')})")
        return m.dial_failed(t, attempt, reason, self.clock())

    def _answered(self, t: Transfer, uid: str) -> None:
        """The leg answered: it joins once any announcement is over; watch for that."""
        if t.state in m.DIALLING_STATES and uid == t.dispatcher_uniqueid:
            self._arm(t, t.attempt, ANSWERED_GRACE)

    def _on_confbridge_join(self, t: Transfer, ev: dict[str, str]) -> list[m.Command]:
        role = t.role_of(ev["Uniqueid"])
        now = self.clock()
        if ev.get("Conference") != t.id or role is None:
            return []
        if role is Role.CALLER:
            t.mark("caller_joined", now)
            if Role.DISPATCHER in t.present:
                t.mark("bridged", now)
            self._write_soon(t, now)
            return []
        if role is Role.DISPATCHER:
            cmds = m.dispatcher_joined(t, t.attempt, now)
            if "caller_joined" in t.times:
                t.mark("bridged", now)
            wd = self._watchdogs.pop(t.id, None)
            if wd is not None:
                wd.cancel()
            return cmds
        return []

    @property
    def _handlers(self) -> dict[str, Callable[[Transfer, dict[str, str]], list[m.Command]]]:
        return {
            "Newchannel": self._on_newchannel,
            "Hangup": self._on_hangup,
            "Newstate": self._on_newstate,
            "OriginateResponse": self._on_originate_response,
            "ConfbridgeJoin": self._on_confbridge_join,
        }

    # ------------------------------------------------------------ restart
    async def reconcile_all(self, _event: Any = None) -> None:
        """After (re)connecting to a booted Asterisk: finish every open transfer."""
        if not self.open or not self.loaded:
            await self.reload()
        for tid in list(self.open):
            t = self.open.get(tid)
            if t is None:
                continue
            try:
                await self._reconcile_one(t)
            except Exception:
                log.exception(
                    "[%s] transfer %s could not be reconciled; retried at the next reconnect",
                    t.caller_uniqueid,
                    t.id,
                )

    async def _reconcile_one(self, t: Transfer) -> None:
        async with self._lock(t.id):
            await self._reconcile_locked(t)

    async def _reconcile_locked(self, t: Transfer) -> None:
        """Compare ``t`` with ``CoreShowChannels`` and finish it (caller holds its lock)."""
        if t.terminal:
            return
        rows = {
            r.get("Uniqueid", ""): r
            for r in map(fields, await self._ami().action_list("CoreShowChannels"))
        }
        alive, inside = set(), set()
        for role in Role:
            row = rows.get(t.uniqueid_of(role) or "")
            if row is None:
                continue
            alive.add(role)
            self._channels[row["Uniqueid"]] = row.get("Channel", "")
            in_bridge = row.get("Application") == "ConfBridge" and row.get(
                "ApplicationData", ""
            ).startswith(t.id)
            if in_bridge or row.get("Context") in (
                cv.CTX_XFER_HOLD,
                cv.CTX_XFER_CALLER,
                cv.CTX_XFER_AGENT,
                cv.CTX_XFER_DISPATCHER,
            ):
                inside.add(role)
        d = rows.get(t.dispatcher_uniqueid or "")
        seen = m.Seen(
            frozenset(alive),
            frozenset(inside),
            d is not None and d.get("Application") == "ConfBridge",
        )
        log.info(
            "[%s] reconciling transfer %s (%s): alive %s, in transfer %s, dispatcher in bridge %s",
            t.caller_uniqueid,
            t.id,
            t.state.value,
            sorted(alive),
            sorted(inside),
            seen.dispatcher_in_bridge,
        )
        await self._apply(t, m.reconcile(t, seen, self.clock()))

    # ------------------------------------------------------------ commands
    async def _apply(self, t: Transfer, cmds: list[m.Command]) -> None:
        """Save ``t`` (its new state), then carry out ``cmds``; failures feed back in."""
        await self._save(t)
        for cmd in cmds:
            more = await self._run(t, cmd)
            if more:
                await self._apply(t, more)

    async def _run(self, t: Transfer, cmd: m.Command) -> list[m.Command]:
        try:
            match cmd:
                case m.Dial(attempt=attempt):
                    return await self._dial(t, attempt)
                case m.Watch(attempt=attempt):
                    started = t.times.get(f"dialled_{attempt}", self.clock())
                    left = max(0.5, started + t.answer_timeout + WATCHDOG_GRACE - self.clock())
                    self._arm(t, attempt, left)
                case m.HangUp(role=role, cause=cause):
                    await self._hangup(t, role, cause)
                case m.TellAgent():
                    if t.agent_channel:
                        await self._ami().action(
                            "Redirect",
                            Channel=t.agent_channel,
                            Context=cv.CTX_XFER_AGENT,
                            Exten=cv.XFER_EXTEN_AGENT_FAILED,
                            Priority="1",
                        )
                case m.JoinCaller():
                    await self._ami().action(
                        "Redirect",
                        Channel=t.caller_channel,
                        Context=cv.CTX_XFER_CALLER,
                        Exten="join",
                        Priority="1",
                    )
                case m.Requeue():
                    ami = self._ami()
                    await ami.action(
                        "Setvar",
                        Channel=t.caller_channel,
                        Variable=cv.ABORT_REASON,
                        Value=f"transfer-{t.id}",
                    )
                    await ami.action(
                        "Redirect",
                        Channel=t.caller_channel,
                        Context=cv.CTX_FAILURE,
                        Exten="s",
                        Priority="1",
                    )
        except (AmiError, ConnectionError, AsteriskUnavailable) as e:
            # The channel may be gone (its Hangup event follows) or AMI down (reconcile
            # at the next connection finishes the transfer).
            log.error("[%s] transfer %s: %s failed: %s", t.caller_uniqueid, t.id, cmd, e)
        return []

    async def _dial(self, t: Transfer, attempt: int) -> list[m.Command]:
        route = t.routes[attempt - 1]
        oid = t.dispatcher_id(attempt)
        self.index[oid] = t.id
        number = t.caller_number if t.caller_number.isdigit() else ""
        now = self.clock()
        t.mark("dialled", now)
        t.times[f"dialled_{attempt}"] = now
        await self._write(t, now)  # before the Originate: a restart checks the channel
        try:
            await self._ami().originate(
                oid,
                route.channel,
                context=cv.CTX_XFER_DISPATCHER,
                exten=cv.XFER_EXTEN_JOIN,
                priority=1,
                caller_id=f"12345 <{number}>" if number else "12345 <12345>",
                variables=self._leg_variables(t),
                timeout_ms=t.answer_timeout * 1000,
            )
        except AmiActionError as e:
            return m.dial_failed(t, attempt, f"refused by Asterisk: {e.message}", self.clock())
        except (AmiError, ConnectionError) as e:
            log.error(
                "[%s] transfer %s: originate %s outcome unknown: %s",
                t.caller_uniqueid,
                t.id,
                oid,
                e,
            )
        log.info(
            "[%s] transfer %s: dispatcher leg %s on %s ringing for up to %d s",
            t.caller_uniqueid,
            t.id,
            oid,
            route.channel,
            t.answer_timeout,
        )
        self._arm(t, attempt, t.answer_timeout + WATCHDOG_GRACE)
        return []

    def _leg_variables(self, t: Transfer) -> dict[str, str]:
        """The answering side's leg: the transfer id; for a hand-off the checked header
        values (inherited by the Local channel's dialled leg); with announce_case the
        case reference's last :data:`ANNOUNCE_DIGITS` digits (a work order's daily
        sequence number; the whole reference travels in X-Hotline-Case), said to them
        before they join: a few seconds, not the seven that all fourteen would take."""
        out = {cv.XFER: t.id}
        if any(r.via for r in t.routes):
            out |= {f"__{k}": v for k, v in t.headers.items()}
        digits = "".join(ch for ch in t.headers.get(cv.HDR_CASE, "") if ch.isdigit())
        if digits and self.config().transfers.announce_case:
            out[cv.XFER_ANNOUNCE] = digits[-ANNOUNCE_DIGITS:]
        return out

    def _arm(self, t: Transfer, attempt: int, delay: float) -> None:
        old = self._watchdogs.pop(t.id, None)
        if old is not None:
            old.cancel()
        self._watchdogs[t.id] = asyncio.create_task(
            self._watchdog(t.id, attempt, delay), name=f"transfer-{t.id}-watchdog"
        )

    async def _watchdog(self, tid: str, attempt: int, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock(tid):
            t = self.open.get(tid)
            if t is None or t.state not in m.DIALLING_STATES or t.attempt != attempt:
                return
            self._watchdogs.pop(tid, None)
            log.warning(
                "[%s] transfer %s: no outcome for route %d after %.0f s; giving up on it",
                t.caller_uniqueid,
                t.id,
                attempt,
                delay,
            )
            with contextlib.suppress(AmiError, ConnectionError, AsteriskUnavailable):
                await self._hangup(t, Role.DISPATCHER, 16)
            await self._apply(t, m.dial_failed(t, attempt, "no answer (watchdog)", self.clock()))

    async def _hangup(self, t: Transfer, role: Role, cause: int) -> None:
        uid = t.uniqueid_of(role)
        if not uid:
            return
        channel = (
            self._channels.get(uid)
            or {
                Role.CALLER: t.caller_channel,
                Role.AGENT: t.agent_channel,
                Role.DISPATCHER: t.dispatcher_channel,
            }[role]
        )
        ami = self._ami()
        if not channel:
            rows = [fields(r) for r in await ami.action_list("CoreShowChannels")]
            channel = next((r.get("Channel", "") for r in rows if r.get("Uniqueid") == uid), "")
        if not channel:
            log.info(
                "[%s] transfer %s: no %s channel to hang up", t.caller_uniqueid, t.id, role.value
            )
            return
        log.info(
            "[%s] transfer %s: hanging up the %s (%s)", t.caller_uniqueid, t.id, role.value, channel
        )
        try:
            await ami.action("Hangup", Channel=channel, Cause=str(cause))
        except AmiActionError as e:
            log.info(
                "[%s] transfer %s: %s already gone (%s)",
                t.caller_uniqueid,
                t.id,
                channel,
                e.message,
            )

    # ------------------------------------------------------------ reading
    def get(self, transfer_id: str) -> dict[str, Any] | None:
        t = self.open.get(transfer_id)
        return self._stored(transfer_id, None if t is None else t.as_dict())

    async def read(self, transfer_id: str) -> dict[str, Any] | None:
        """:meth:`get` for the event loop: an open transfer is copied on the loop (where
        it changes), the store is read in a worker thread."""
        t = self.open.get(transfer_id)
        return await asyncio.to_thread(self._stored, transfer_id,
                                       None if t is None else t.as_dict())

    def _stored(self, transfer_id: str, record: dict[str, Any] | None) -> dict[str, Any] | None:
        """``record`` (else the stored one) with its transitions from the store."""
        if record is None:
            t = self.store.get(transfer_id)
            if t is None:
                return None
            record = t.as_dict()
        return {**record, "transitions": self.store.transitions(transfer_id)}

    def recent(self, limit: int = 100, seat: str | None = None,
               seats: Collection[str] | None = None) -> list[dict[str, Any]]:
        return self.store.recent(limit, seat, seats)
