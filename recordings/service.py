"""Call recordings: rows from Asterisk's events, pause and resume, rights (no HTTP).

How a recording is followed (AMI, user ``hotline``: read ``call`` and ``user``):

* The generated ``hotline-record`` context starts ``MixMonitor`` on the
  caller's channel and raises ``UserEvent(HotlineRecording, Kind, Path)``.
  Asterisk 22's own ``MixMonitorStart`` event carries no file name, so the
  UserEvent is what the row is made from: ``call_id`` = the event's
  ``Linkedid``, the recorded channel's ``Uniqueid`` and name, the path (only
  accepted in the dated shape of :mod:`recordings.paths`).
* ``Hangup`` of that channel ends it: ``ended_at`` and, once MixMonitor has
  closed the file, its size.
* The UserEvent's ``Centre`` (the dialled number's ``HOTLINE_CENTRE``; empty when
  the dialplan does not know it, e.g. a call transferred in from 110) is the
  recording's first centre; the call tracker's, when the call's facts are
  delivered, replaces it (:meth:`recordings.store.RecordingStore.set_centres`).
* ``AgentConnect`` (app_queue) names the seat that answered (who may listen).
* The rows are written on the store's one writer thread
  (:meth:`hotline.storage.Tables.submit`), off the event loop that serves the
  callers' FastAGI sessions, in the order of the events: a row exists before
  its seat or its end is written, also when the Hangup comes first.
* After a controller restart (every AMI connection to a booted Asterisk):
  files in the dated folders without a row get one (call id, kind and date
  from the name, times from the file), and rows whose channel is gone are
  closed from the file.

Who may listen (list, read, download): admins every recording; a supervisor
those of their centre and the centres below it (:func:`hotline.auth.centre_scope`:
a recording not placed in a centre yet only when over every centre); an agent
those of the calls their seat answered. Pause and resume: admins; a supervisor
on a call of their centres or with a seat of their centres on it; an agent on
their own call.

Pause and resume (a caller reading a card number): AMI ``MixMonitorMute``
with ``Direction: both`` and ``State: 1``/``0`` on the recorded channel, so
the file gets silence for the stretch, and the row keeps who and when.
https://docs.asterisk.org/Asterisk_22_Documentation/API_Documentation/AMI_Actions/MixMonitorMute/
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import wave
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dialplan.model import IDENT_RE
from hotline import channel_vars as cv
from hotline.amiproto import fields
from hotline.auth import CentreScope, Forbidden, Principal, centre_scope, may_act_on_seat
from hotline.storage import read_while_up
from queues.agents import centres_under

from .paths import PathRefused, parse_rel, resolve_inside, scan
from .store import Recording, RecordingStore

log = logging.getLogger(__name__)
T = TypeVar("T")

EVENTS = ("UserEvent", "Hangup", "AgentConnect")
SETTLE_S = 0.2  # MixMonitor closes the file in its own thread just after the hang-up
SETTLE_MAX_S = 5.0


class NotFound(LookupError):
    pass


class NoLiveCall(Exception):
    """The call is over (or not recorded on a live channel): nothing to pause."""


def wav_seconds(path: Path) -> float | None:
    try:
        with wave.open(str(path)) as w:
            return w.getnframes() / max(1, w.getframerate())
    except (OSError, wave.Error, EOFError):
        return None


Audit = Callable[..., Awaitable[None]]


@dataclass
class RecordingService:
    store: RecordingStore
    root: Callable[[], Path]  # the recordings root as the host sees it
    ami: Callable[[], Any]
    audit: Audit  # audit(who, action, seat, **details)
    clock: Callable[[], float] = time.time
    config: Callable[[], Any] | None = None  # the live dialplan.model.Config (centres, seats)
    live: dict[str, int] = field(default_factory=dict)  # recorded uniqueid -> row id
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # recorded uniqueid -> its row being written (until then a Hangup waits for it)
    _starting: dict[str, asyncio.Future[Recording]] = field(default_factory=dict)

    def load(self) -> bool:
        """The recordings still open (controller start). A database that is down does not
        stop the start: ``False``; the reconcile of every AMI (re)connection reads them."""
        rows = read_while_up(self.store.db, self.store.open_rows, "open recordings not loaded")
        if rows is None:
            return False
        for r in rows:
            if r.uniqueid:
                self.live[r.uniqueid] = r.id
        return True

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.to_thread(self.store.close)  # the rows handed in are written first

    def _write(self, fn: Callable[..., T], *args: Any, **kw: Any) -> asyncio.Future[T]:
        """``fn`` on the store's writer thread, off the event loop, after every write
        handed in before it: a row exists before its seat or its end is written."""
        return asyncio.wrap_future(self.store.db.submit(fn, *args, **kw))

    # ------------------------------------------------------------ events
    def on_event(self, event: Any) -> Awaitable[None] | None:
        name = event.get("Event") or ""
        if name == "UserEvent":
            if (event.get("UserEvent") or "") == cv.EVENT_RECORDING:
                return self._started(fields(event))
            return None
        if name == "Hangup":
            uid = event.get("Uniqueid") or ""
            starting = self._starting.pop(uid, None)
            if starting is not None:  # its row is still being written
                return self._finish_started(starting, self.clock())
            rid = self.live.pop(uid, None)
            if rid is not None:
                return self._finish(rid, self.clock())
            return None
        if name == "AgentConnect":
            ev = fields(event)
            seat = (ev.get("Interface") or "").removeprefix("PJSIP/")
            call_id = ev.get("Linkedid") or ""
            if seat and "@" not in seat and call_id:
                return self._write(self.store.set_seat, call_id, ev.get("MemberName") or seat)
        return None

    def _started(self, ev: dict[str, str]) -> Awaitable[None] | None:
        uid, call_id = ev.get("Uniqueid", ""), ev.get("Linkedid", "")
        try:
            rel = parse_rel(ev.get("Path", ""))
        except PathRefused as e:
            log.error("[%s] recording event refused: %s", uid, e)
            return None
        centre = ev.get("Centre") or None
        if centre is not None and not re.fullmatch(IDENT_RE, centre):
            log.warning("[%s] recording event with a strange centre %r: not placed", uid, centre)
            centre = None
        row = self._write(self.store.started, call_id=call_id or rel.call_id, kind=rel.kind,
                          path=rel.path, started_at=self.clock(), uniqueid=uid,
                          channel=ev.get("Channel", ""), centre=centre)
        self._starting[uid] = row
        return self._note_started(uid, row)

    async def _note_started(self, uid: str, row: asyncio.Future[Recording]) -> None:
        try:
            rec = await row
        finally:
            mine = self._starting.get(uid) is row  # else its Hangup took it over
            if mine:
                del self._starting[uid]
        if mine:
            self.live[uid] = rec.id
        log.info("[%s] recording %s started: call %s (centre %s), %s", uid, rec.id, rec.call_id,
                 rec.centre, rec.path)

    async def _finish_started(self, row: asyncio.Future[Recording], ended_at: float) -> None:
        rec = await row
        await self._finish(rec.id, ended_at)

    async def _finish(self, rid: int, ended_at: float) -> None:
        rec = await self._write(self.store.get, rid)
        if rec is None:
            return
        size = await self._settled_size(rec)
        await self._write(self.store.ended, rid, ended_at, size)
        log.info("recording %s of call %s ended: %s bytes", rid, rec.call_id, size)

    async def _settled_size(self, rec: Recording) -> int | None:
        """The file's size once MixMonitor stopped writing it (same size twice)."""
        try:
            f = resolve_inside(self.root(), rec.path)
        except PathRefused:
            return None
        last, deadline = -1, time.monotonic() + SETTLE_MAX_S
        while time.monotonic() < deadline:
            try:
                size = f.stat().st_size
            except FileNotFoundError:
                size = -2
            if size == last and size >= 0 and wav_seconds(f) is not None:
                return size
            last = size
            await asyncio.sleep(SETTLE_S)
        return last if last >= 0 else None

    # ------------------------------------------------------------ restart
    async def reconcile(self, _event: Any = None) -> None:
        """Rows for files that have none; close rows whose channel is gone."""
        try:
            added = await asyncio.to_thread(self.adopt_files)
            if added:
                log.info("recordings: %d file(s) without a row adopted", added)
            ami = self.ami()
            if ami is None or not ami.connected:
                return
            up = {fields(c).get("Uniqueid", "") for c in await ami.action_list("CoreShowChannels")}
            for r in await self._write(self.store.open_rows):
                if r.uniqueid in up:
                    self.live[r.uniqueid] = r.id
                    continue
                self.live.pop(r.uniqueid, None)
                f = self._file(r)
                ended = f.stat().st_mtime if f is not None and f.exists() else self.clock()
                await self._finish(r.id, ended)
        except Exception as e:  # noqa: BLE001 - the next reconnect or purge retries
            log.error("recordings reconcile failed: %s", e)

    def adopt_files(self) -> int:
        """Rows for recordings found on disk without one (written while we were down)."""
        root = self.root()
        known = self.store.known_paths()
        n = 0
        for rel in scan(root):
            if rel.path in known:
                continue
            f = root / rel.path
            st = f.stat()
            secs = wav_seconds(f) or 0.0
            rec = self.store.started(call_id=rel.call_id, kind=rel.kind, path=rel.path,
                                     started_at=st.st_mtime - secs)
            self.store.ended(rec.id, st.st_mtime, st.st_size)
            n += 1
        return n

    def _file(self, r: Recording) -> Path | None:
        try:
            return resolve_inside(self.root(), r.path)
        except PathRefused:
            return None

    # ------------------------------------------------------------ rights
    def _under(self) -> Mapping[str, set[str]]:
        cfg = self.config() if self.config is not None else None
        return centres_under(cfg) if cfg is not None else {}

    def scope(self, who: Principal) -> CentreScope | None:
        """The centres whose recordings ``who`` may list; None: not by centre (agents)."""
        if who.role not in ("supervisor", "admin"):
            return None
        return centre_scope(who, self._under())

    def may_listen(self, who: Principal, rec: Recording) -> bool:
        """Admins; supervisors for the calls of their centres; an agent for the calls
        their seat answered."""
        scope = self.scope(who)
        return ((scope is not None and scope.sees(rec.centre))
                or (who.seat is not None and rec.seat == who.seat))

    def may_act_on_seat(self, who: Principal, seat: str) -> bool:
        cfg = self.config() if self.config is not None else None
        seat_cfg = cfg.seats.get(seat) if cfg is not None else None
        if seat_cfg is None:  # a seat we do not know: admins only (the call lookup says 409)
            return who.role == "admin" or (who.role == "agent" and who.seat == seat)
        return may_act_on_seat(who, seat, seat_cfg.centre, dict(self._under()))

    def _may_pause(self, who: Principal, rec: Recording, chans: list[dict[str, str]]) -> bool:
        on_call = [c.get("Channel", "") for c in chans if c.get("Linkedid") == rec.call_id]
        scope = self.scope(who)
        if scope is None:  # an agent: on the call
            return who.seat is not None and any(cv.is_seat_channel(ch, who.seat)
                                                for ch in on_call)
        if scope.sees(rec.centre):
            return True
        cfg = self.config() if self.config is not None else None
        seats = cfg.seats.items() if cfg is not None else ()
        return any(scope.sees(s.centre) and any(cv.is_seat_channel(ch, sid) for ch in on_call)
                   for sid, s in seats)

    async def _channels(self) -> list[dict[str, str]]:
        ami = self.ami()
        if ami is None or not ami.connected:
            raise ConnectionError("Asterisk is not reachable over AMI right now")
        return [fields(c) for c in await ami.action_list("CoreShowChannels")]

    async def seat_call(self, seat: str) -> str:
        """The call id (linkedid) of the seat's current call."""
        for c in cv.seat_legs(await self._channels(), seat):
            if c.get("Linkedid"):
                return c["Linkedid"]
        raise NoLiveCall(f"seat {seat} has no call in progress")

    # ------------------------------------------------------------ pause / resume
    async def set_paused(self, who: Principal, call_id: str, paused: bool) -> Recording:
        """Mute (``paused``) or unmute the recording of a live call, both directions."""
        rec = await self._write(self.store.for_call, call_id)
        if rec is None:
            raise NotFound(f"no recording for call {call_id!r}")
        chans = await self._channels()
        if not self._may_pause(who, rec, chans):
            raise Forbidden(f"{who.name} is not on call {call_id}" if self.scope(who) is None
                            else f"call {call_id} is not of a centre of {who.name}")
        chan = next((c for c in chans if c.get("Uniqueid") == rec.uniqueid), None)
        if chan is None or rec.ended_at is not None:
            raise NoLiveCall(f"call {call_id} is over: its recording can no longer be paused")
        if rec.paused == paused:
            return rec  # already so: nothing to do, nothing to record
        await self.ami().action("MixMonitorMute", Channel=chan["Channel"], Direction="both",
                                State="1" if paused else "0")
        action = "pause" if paused else "resume"
        rec = await self._write(self.store.add_pause, rec.id, {
            "action": action, "at": self.clock(), "by": who.name, "role": who.role})
        await self.audit(who, f"recording-{action}", who.seat or "", call_id=call_id,
                         recording=rec.id)
        log.info("[%s] recording %s %sd by %s", rec.uniqueid, rec.id, action, who.name)
        return rec

    # ------------------------------------------------------------ listening
    def listing(self, who: Principal, **filters: Any) -> list[Recording]:
        scope = self.scope(who)
        if scope is None:
            if who.seat is None:
                raise Forbidden(f"{who.name} has no seat and may not list recordings")
            filters["seat"] = who.seat
        else:
            filters["centres"], filters["unplaced"] = scope.centres, scope.unplaced
        return self.store.listing(**filters)

    def one(self, who: Principal, rec_id: int) -> Recording:
        rec = self.store.get(rec_id)
        if rec is None or not self.may_listen(who, rec):
            raise NotFound(f"no recording {rec_id}")
        return rec

    async def open_for_download(self, who: Principal, rec_id: int) -> tuple[Recording, Path]:
        """The row and its file (always resolved from the row, inside the root); audited."""
        rec = await asyncio.to_thread(self.one, who, rec_id)
        if rec.purged_at is not None:
            raise NotFound(f"recording {rec_id} was purged (retention)")
        f = resolve_inside(self.root(), rec.path)  # PathRefused: the caller answers 404
        if not f.is_file():
            raise NotFound(f"the file of recording {rec_id} is missing")
        await self.audit(who, "recording-download", rec.seat or "", recording=rec.id,
                         call_id=rec.call_id, path=rec.path)
        return rec, f
