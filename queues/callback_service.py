"""The call-back queue at work: requests, the scheduler, Asterisk (services, no HTTP).

One loop (:meth:`CallbackService.tick`, every second and at once on the AMI
events that can change the picture) does, in this order:

1. reads Asterisk's view: ``QueueStatus`` (members with pause state, calls,
   last call; waiting callers with their first arrival, :class:`Arrivals`) and,
   while call-backs are in flight, ``CoreShowChannels``;
2. reads the new lines of ``queue_log`` (after the channel list: a channel
   that is gone has written its lines) and folds the call-back lines of the
   open requests into their state machines (:func:`apply_log_event`);
3. concludes the in-flight requests whose agent leg no longer exists
   (:func:`settle_vanished`) -- on the first tick after a start or an Asterisk
   restart this is the reconciliation: nothing is re-sent before it;
4. carries out :func:`plan`: reserve agents (QueuePause, reason
   ``callback``), launch (Originate to the agent's seat into
   ``hotline-callback-dial``, ChannelId = the attempt id, never reused), give
   up reservations, give agents back (QueuePause false).

Every state is saved before the action it leads to. The launch is
idempotent: an attempt id is sent at most once (:meth:`AmiClient.originate`),
and after a restart an attempt whose outcome is unknown is checked against
the channels and queue_log before the request may be launched again, with a
new id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from dialplan.model import Config
from hotline import channel_vars as cv
from hotline.ami import AmiActionError, AmiError
from hotline.auth import Forbidden, Principal, may_act_on_queue
from hotline.record_store import LoadsOpenRecords

from .agents import BadRequest, NotFound, centres_under
from .callback import (
    IN_FLIGHT,
    STATE_GROUPS,
    Action,
    CallbackRequest,
    Launch,
    Member,
    Overflow,
    Policy,
    Release,
    Requeue,
    Reserve,
    Snapshot,
    State,
    Unpause,
    abandoned_calls,
    apply_log_event,
    attempt_id_for,
    normalize_number,
    plan,
    settle_vanished,
    transition,
)
from .callback_store import CallbackStore
from .position import Arrivals, fields
from .stats import QueueEvent, parse_line, read_events

log = logging.getLogger(__name__)

# AMI events after which the picture may have changed: run the loop at once.
WAKE_EVENTS = (
    "OriginateResponse",
    "AgentComplete",
    "AgentDump",
    "AgentConnect",
    "QueueMemberStatus",
    "QueueMemberPause",
    "QueueMemberAdded",
    "QueueMemberRemoved",
    "QueueCallerJoin",
    "QueueCallerLeave",
    "QueueCallerAbandon",
)
Audit = Callable[..., Awaitable[None]]


class QueueLogTail:
    """The lines Asterisk appended to ``queue_log`` since the last read.

    The first read returns the whole file (the restart reconciliation needs
    the outcome of attempts made while the controller was away). A file that
    was replaced or truncated is read again from the start.
    """

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.inode: int | None = None
        self._partial = b""

    def read_new(self) -> list[QueueEvent]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return []
        if st.st_ino != self.inode or st.st_size < self.offset:
            self.inode, self.offset, self._partial = st.st_ino, 0, b""
        if st.st_size == self.offset:
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        self.offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        out = []
        for raw in lines:
            ev = parse_line(raw.decode("utf-8", "replace"))
            if ev is not None:
                out.append(ev)
        return out


def member_from(item: Mapping[str, str]) -> Member:
    """A ``QueueMember`` item of QueueStatus (Asterisk 22 field names)."""
    iface = item.get("Location") or item.get("Interface") or item.get("StateInterface", "")
    try:
        last_call = float(item.get("LastCall", "0") or 0)
    except ValueError:
        last_call = 0.0
    return Member(
        queue=item.get("Queue", ""),
        seat=item.get("MemberName") or iface.partition("/")[2],
        interface=iface,
        paused=item.get("Paused") == "1",
        reason=item.get("PausedReason", ""),
        in_call=item.get("InCall") == "1",
        status=item.get("Status", "0"),
        last_call=last_call,
    )


class CallbackService(LoadsOpenRecords[CallbackRequest]):
    TICK = 1.0  # seconds between two looks when nothing happens
    MIN_GAP = 0.2  # at most five looks a second however many events arrive
    VANISH_GRACE = 3.0  # an Originate's channel exists within this after it was sent

    def __init__(
        self,
        config: Callable[[], Config],
        ami: Callable[[], Any],
        store: CallbackStore,
        queue_log: Path,
        arrivals: Arrivals,
        audit: Audit | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.config = config
        self.ami = ami
        self.store = store
        self.queue_log = queue_log
        self.arrivals = arrivals
        self.audit = audit
        self.clock = clock
        self.open: dict[str, CallbackRequest] = {}
        self.rest_until: dict[str, float] = {}
        self._tail = QueueLogTail(queue_log)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._reconcile = True
        self._booking: set[str] = set()  # abandoned calls whose call-back is being saved
        self.loaded = False  # the open requests of the store are in ``open``

    # ----------------------------------------------------------------- life cycle
    # load() / reload(): hotline.record_store.LoadsOpenRecords; the next look reconciles
    # the requests with Asterisk (nothing is launched before they are loaded).
    OPEN_WHAT = "open call-backs"

    def _open_records(self) -> list[CallbackRequest]:
        return self.store.open_requests()

    def _adopt(self, records: list[CallbackRequest]) -> None:
        for r in records:
            self.open.setdefault(r.id, r)  # one booked since is newer than its row
        self.loaded = True
        self._reconcile = True
        log.info("call-backs: %d open request(s) loaded from %s", len(self.open),
                 self.store.db.engine.url)

    async def start(self) -> None:
        self.load()
        self._task = asyncio.create_task(self._run(), name="callbacks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.store.close)  # the saves handed in are written first

    def asterisk_booted(self, _event: object = None) -> None:
        """(Re)connected to a booted Asterisk: reconcile before anything is sent."""
        self._reconcile = True
        self._wake.set()

    def on_event(self, _event: object) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.TICK):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.tick()
            except (AmiError, ConnectionError, TimeoutError) as e:
                log.warning(
                    "call-backs: Asterisk not reachable (%s); next look in %.0f s", e, self.TICK
                )
            except Exception:
                log.exception("call-backs: the scheduler failed; next look in %.0f s", self.TICK)
            await asyncio.sleep(self.MIN_GAP)

    # ----------------------------------------------------------------- the loop
    def _policy(self, cfg: Config) -> Policy:
        return Policy(
            max_attempts=1 + cfg.callbacks.retries, retry_delay=float(cfg.callbacks.retry_delay)
        )

    async def _save(self, r: CallbackRequest) -> None:
        """Write a copy of ``r`` (the loop goes on changing ``r``) on the store's writer
        thread, off the event loop, in the order handed in, and wait until it is written."""
        snapshot = CallbackRequest.from_dict(r.as_dict())
        await asyncio.wrap_future(self.store.db.submit(self.store.save, snapshot))
        if r.terminal:
            self.open.pop(r.id, None)

    def _rest(self, cfg: Config, seat: str, queue: str, now: float) -> None:
        """Wrap-up after a call-back conversation, as after a queue call."""
        q = cfg.queues.get(queue)
        if seat and q is not None:
            self.rest_until[seat] = now + q.wrapup

    async def tick(self) -> None:
        if not self.loaded and not await self.reload():
            return
        ami = self.ami()
        if ami is None or not ami.connected:
            return
        cfg = self.config()
        items = [fields(m) for m in await ami.action_list("QueueStatus")]
        members = tuple(member_from(it) for it in items if it.get("Event") == "QueueMember")
        waiting = await self.arrivals.from_items(ami, items)
        channels: set[str] | None = None
        if any(r.state in IN_FLIGHT for r in self.open.values()):
            chans = await ami.action_list("CoreShowChannels")
            channels = {fields(c).get("Uniqueid", "") for c in chans}
        now = self.clock()
        policy = self._policy(cfg)

        by_attempt = {r.attempt_id: r for r in self.open.values() if r.attempt_id}
        for ev in self._tail.read_new():
            if not ev.event.startswith("CALLBACK") or not ev.data:
                continue
            r = by_attempt.get(ev.data[0])
            if r is None:
                continue
            seat, queue = r.seat, r.queue
            if apply_log_event(r, ev, policy):
                if r.state == State.DONE:
                    self._rest(cfg, seat, queue, now)
                await self._save(r)

        if channels is not None:
            grace = 0.0 if self._reconcile else self.VANISH_GRACE
            for r in [r for r in self.open.values() if r.state in IN_FLIGHT]:
                if r.attempt_id in channels or now - r.launched_at < grace:
                    continue
                seat, queue = r.seat, r.queue
                settle_vanished(r, now, policy)
                if r.state == State.DONE:
                    self._rest(cfg, seat, queue, now)
                await self._save(r)
        self._reconcile = False

        snap = Snapshot(
            now=now,
            members=members,
            waiting={q: tuple(w.first_queued for w in ws) for q, ws in waiting.items()},
            wrapup={q: v.wrapup for q, v in cfg.queues.items()},
            rest_until=dict(self.rest_until),
            overflow={q: (v.overflow.after, v.overflow.to) for q, v in cfg.queues.items()
                      if v.overflow},
        )
        for action in plan(snap, list(self.open.values())):
            await self._carry_out(action, cfg, ami, now)
        for seat in [s for s, until in self.rest_until.items() if until < now]:
            del self.rest_until[seat]

    async def _carry_out(self, action: Action, cfg: Config, ami: Any, now: float) -> None:
        if isinstance(action, Unpause):
            log.info("call-backs: giving seat %s back to its queues", action.seat)
            await self._queue_pause(ami, action.interface, False)
            return
        r = self.open.get(action.request_id)
        if r is None:
            return
        if isinstance(action, Requeue):
            transition(r, State.PENDING, now, "retry delay over")
            await self._save(r)
        elif isinstance(action, Release):
            r.result = action.reason
            transition(r, State.PENDING, now, action.reason)
            await self._save(r)
        elif isinstance(action, Reserve):
            transition(r, State.RESERVED, now, f"oldest in {r.queue}; seat {action.seat} reserved")
            r.seat, r.interface = action.seat, action.interface
            await self._save(r)
            try:
                await self._queue_pause(ami, action.interface, True)
            except AmiError as e:
                log.warning(
                    "[%s] call-back %s: could not pause seat %s: %s",
                    r.uniqueid,
                    r.id,
                    action.seat,
                    e,
                )
                transition(r, State.PENDING, now, f"seat {action.seat} could not be paused")
                await self._save(r)
        elif isinstance(action, Launch):
            await self._launch(r, cfg, ami, now)
        elif isinstance(action, Overflow):
            await self._overflow(r, action, ami, now)

    async def _overflow(self, r: CallbackRequest, action: Overflow, ami: Any, now: float) -> None:
        """Move a pending request to ``action.to``; queue_log gets the OVERFLOW line a
        live caller's dialplan writes, so the statistics count it the same way."""
        old = r.queue
        r.history.append({"at": now, "from": r.state.value, "to": r.state.value,
                          "reason": f"overflow {old} -> {action.to} ({action.reason})"})
        r.queue, r.queue_since, r.updated_at = action.to, now, now
        await self._save(r)
        log.info("[%s] call-back %s overflows %s -> %s: %s", r.uniqueid, r.id, old, action.to,
                 action.reason)
        try:
            await ami.action("QueueLog", Queue=old, Event="OVERFLOW", Uniqueid=r.uniqueid,
                             Interface="NONE", Message=f"{action.to}|CALLBACK")
        except AmiError as e:
            log.warning("[%s] call-back %s: overflow not written to queue_log: %s",
                        r.uniqueid, r.id, e)
        self._wake.set()  # placed in the new queue at once

    async def _queue_pause(self, ami: Any, interface: str, paused: bool) -> None:
        await ami.action(
            "QueuePause",
            Interface=interface,
            Paused="true" if paused else "false",
            Reason=cv.PAUSE_REASON if paused else None,
        )

    async def _launch(self, r: CallbackRequest, cfg: Config, ami: Any, now: float) -> None:
        if normalize_number(r.number) != r.number:  # never dial what did not pass the check
            r.result = "BADNUMBER"
            transition(r, State.FAILED, now, "the stored number is not a callable number")
            await self._save(r)
            return
        aid = attempt_id_for(r)
        r.launches += 1
        r.attempt_id, r.launched_at = aid, now
        transition(r, State.CALLING_AGENT, now, f"ringing seat {r.seat} (attempt {aid})")
        await self._save(r)  # before the Originate: a restart checks the channel, never re-sends
        variables = {
            cv.CB_ATTEMPT: aid,
            cv.CB_NUMBER: r.number,
            cv.CB_CALLID: r.uniqueid,
            cv.CB_QUEUE: r.queue,
            cv.CB_SEAT: r.seat,
            cv.CB_FROM: r.service_number or hotline_number(cfg),
        }
        if r.queue in cfg.queues:  # inherited by the citizen's leg: its recording's centre
            variables[f"__{cv.CENTRE}"] = cfg.queues[r.queue].centre
        try:
            await ami.originate(
                aid,
                r.interface,
                context=cv.CTX_CALLBACK_DIAL,
                exten="s",
                priority=1,
                caller_id=f"回拨 <{r.number}>",
                variables=variables,
                timeout_ms=cfg.callbacks.ring_agent * 1000,
            )
        except AmiActionError as e:  # refused: nothing was created
            log.warning("[%s] call-back %s: Originate %s refused: %s", r.uniqueid, r.id, aid, e)
            r.result = "ORIGINATE-REFUSED"
            transition(r, State.PENDING, now, f"Originate refused: {e.message}")
            await self._save(r)
        except AmiError as e:  # outcome unknown: the channel check of the next looks decides
            log.warning(
                "[%s] call-back %s: Originate %s outcome unknown: %s", r.uniqueid, r.id, aid, e
            )

    # ----------------------------------------------------------------- requests
    async def _new_request(self, **kw: Any) -> CallbackRequest:
        now = self.clock()
        r = CallbackRequest(id="cb" + secrets.token_hex(5), created_at=now, updated_at=now, **kw)
        r.history.append(
            {
                "at": now,
                "from": "new",
                "to": r.state.value,
                "reason": f"requested ({r.source}) by {r.created_by}",
            }
        )
        await self._save(r)
        self.open[r.id] = r
        log.info(
            "[%s] call-back %s requested in %s for %s (first queued %.0f, %s)",
            r.uniqueid,
            r.id,
            r.queue,
            r.number,
            r.first_queued,
            r.source,
        )
        self._wake.set()
        return r

    async def request_from_offer(
        self,
        *,
        queue: str,
        number: str,
        first_queued: float,
        uniqueid: str,
        city: str = "",
        county: str = "",
        service_number: str = "",
        source: str = "offer",
    ) -> CallbackRequest:
        """The caller booked a call-back: accepted the offer in the queue (AGI
        callback-offer, ``source`` offer) or chose it in an IVR menu (``menu``)."""
        if normalize_number(number) != number:
            raise BadRequest(f"{number!r} is not a number to call back")
        for r in self.open.values():
            if r.uniqueid == uniqueid:  # pressed 1 again in the same call
                log.info("[%s] call-back %s already requested", uniqueid, r.id)
                return r
        return await self._new_request(
            queue=queue,
            number=number,
            first_queued=first_queued,
            uniqueid=uniqueid,
            city=city,
            county=county,
            service_number=service_number,
            source=source,
            created_by="caller",
        )

    # ----------------------------------------------------------------- supervisors
    def visible_queues(self, who: Principal) -> set[str]:
        if who.role not in ("supervisor", "admin"):
            raise Forbidden("call-backs are for supervisors and admins")
        cfg = self.config()
        under = centres_under(cfg)
        return {q for q, v in cfg.queues.items() if may_act_on_queue(who, v.centre, under)}

    def listing(
        self, who: Principal, group: str = "open", limit: int = 100
    ) -> list[dict[str, Any]]:
        if group not in STATE_GROUPS:
            raise BadRequest(f"state must be one of {', '.join(STATE_GROUPS)}")
        queues = self.visible_queues(who)
        states = [s.value for s in STATE_GROUPS[group]]
        return [r.as_dict() for r in self.store.recent(states, queues, limit)]

    def get(self, who: Principal, request_id: str) -> dict[str, Any]:
        r = self.store.get(request_id)
        if r is None or r.queue not in self.visible_queues(who):
            raise NotFound(f"no call-back {request_id!r}")
        return r.as_dict()

    async def cancel(self, who: Principal, request_id: str) -> dict[str, Any]:
        r = self.open.get(request_id)
        if r is None or r.queue not in self.visible_queues(who):
            raise NotFound(f"no open call-back {request_id!r}")
        if r.state in IN_FLIGHT:
            raise BadRequest(
                f"call-back {request_id} is {r.state.value}: it cannot be withdrawn now"
            )
        transition(r, State.CANCELLED, self.clock(), f"withdrawn by {who.name}")
        await self._save(r)
        await self._audit(who, "callback-cancel", r)
        self._wake.set()
        return r.as_dict()

    def _missed(self) -> list[dict[str, Any]]:
        return abandoned_calls(read_events(str(self.queue_log)), 0, None, self.store.uniqueids())

    def abandoned(self, who: Principal, since: float, until: float | None) -> list[dict[str, Any]]:
        """Calls abandoned in a queue, not answered, with no call-back yet (2025 rule)."""
        queues = self.visible_queues(who)
        rows = abandoned_calls(
            read_events(str(self.queue_log)), since, until, self.store.uniqueids()
        )
        return [row for row in rows if row["queue"] in queues]

    async def from_abandoned(
        self, who: Principal, uniqueid: str, number: str | None = None
    ) -> dict[str, Any]:
        queues = self.visible_queues(who)
        missed = await asyncio.to_thread(self._missed)
        row = next((m for m in missed if m["uniqueid"] == uniqueid), None)
        # checked and claimed without an await in between: two supervisors at once
        # (each read the store in a thread) cannot both book the same call
        if (row is None or row["queue"] not in queues or uniqueid in self._booking
                or any(r.uniqueid == uniqueid for r in self.open.values())):
            raise NotFound(f"no abandoned call {uniqueid!r} without a call-back")
        chosen = normalize_number(number) if number is not None else row["number"]
        if not chosen:
            raise BadRequest(
                f"no number to call back for {uniqueid} (caller ID {row['caller']!r}); "
                "give one: a mobile or a fixed line with its area code"
            )
        cfg = self.config()
        self._booking.add(uniqueid)
        try:
            r = await self._new_request(
                queue=row["queue"],
                number=chosen,
                first_queued=float(row["first_queued"]),
                uniqueid=uniqueid,
                source="abandoned",
                created_by=who.name,
                service_number=hotline_number(cfg),
            )
        finally:
            self._booking.discard(uniqueid)
        await self._audit(who, "callback-from-abandoned", r)
        return r.as_dict()

    async def _audit(self, who: Principal, action: str, r: CallbackRequest) -> None:
        if self.audit is not None:
            await self.audit(
                who, action, r.seat or "-", callback=r.id, queue=r.queue, uniqueid=r.uniqueid
            )


def hotline_number(cfg: Config) -> str:
    """The number shown to a citizen called back when the request does not say which."""
    return next((n.number for n in cfg.numbers if n.kind == "hotline"), "12345")
