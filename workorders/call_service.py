"""The call tracker at work: AMI events in, one ``CallFacts`` per call out to a sink (I/O shell).

The logic is :mod:`workorders.tracker` (pure). This module feeds it and
delivers what it finds:

* live: each AMI event of :data:`workorders.tracker.EVENTS` is folded in;
  when a call's last channel hangs up, the shell waits :data:`SETTLE` seconds
  (the transfer and call-back services save their records on the same
  events), reads the IVR path (Redis ``hotline:call:<uniqueid>``), the call's
  transfer records and a call-back request booked in it, builds the facts and
  hands them to the sink (``sink(facts)``, sync or async; the controller passes
  ``app.call_sink``: the work-order store's ``record_call``).
* restart: calls that ended while the controller was down are in Asterisk's
  ``cdr_csv`` file (``log/cdr-csv/Master.csv``; the inbound contexts mark the
  caller's records with ``CDR(userfield)=in:<number>``) and ``queue_log``. At
  start, after every ``FullyBooted`` (an AMI reconnection), when a call the
  tracker never saw start hangs up, and every :data:`SCAN_EVERY` seconds, the
  new part of ``Master.csv`` (from a byte offset kept in the state dir) is
  read, and each call found there that is neither in progress nor already
  delivered is delivered.
* exactly once: every delivered ``call_id`` is kept in ``state/calls.sqlite``
  (table ``calls_emitted``) before the offset moves past its records; a sink
  that fails leaves the call undelivered, and the next scan tries again. The
  sink is idempotent by ``call_id`` too (``WorkOrderStore.record_call``).

The last :data:`RECENT` facts stay in memory for ``GET /calls/recent``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Float, String, Text, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dialplan.model import Config
from hotline.amiproto import fields as _fields
from hotline.storage import open_engine, store_url
from queues.stats import read_events

from . import cdr as cdrfile
from .facts import CallFacts
from .tracker import (
    EVENTS,
    CallState,
    CallTracker,
    Extras,
    facts_of,
    facts_to_json,
    inbound_number,
    state_from_records,
)

log = logging.getLogger(__name__)

Sink = Callable[[CallFacts], Awaitable[Any] | None]
SETTLE = 1.0  # s after the last hangup before reading what other services stored
SCAN_EVERY = 30.0  # s between two looks at Master.csv (also a retry for a failed sink)
FRESH = 2.0  # s: records this new may be half written; left for the next scan
LOST_LEG_GRACE = 4 * 3600.0  # s after the caller left before a leg's missing Hangup is given up
KEEP_EMITTED = 30 * 86400.0  # s a delivered call_id is remembered
RECENT = 200
FACTS_FILE_ENV = "HOTLINE_CALL_FACTS_FILE"  # tests and admins: also append facts as JSON lines here


class Base(DeclarativeBase):
    pass


class EmittedRow(Base):
    __tablename__ = "calls_emitted"

    call_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    ended_at: Mapped[float] = mapped_column(Float, index=True)
    emitted_at: Mapped[float] = mapped_column(Float)
    via: Mapped[str] = mapped_column(String(8))  # ami or cdr


class MarkRow(Base):
    __tablename__ = "calls_mark"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class EmittedStore:
    """Which calls were delivered, and how far ``Master.csv`` has been read."""

    FILENAME = "calls.sqlite"

    def __init__(self, path: Path | str):
        self.engine: Engine = open_engine(f"sqlite:///{path}")
        Base.metadata.create_all(self.engine)

    def emitted(self, call_id: str) -> bool:
        with Session(self.engine) as s:
            return s.get(EmittedRow, call_id) is not None

    def mark_emitted(self, call_id: str, ended_at: float, via: str, now: float) -> None:
        with Session(self.engine) as s, s.begin():
            if s.get(EmittedRow, call_id) is None:
                s.add(EmittedRow(call_id=call_id, ended_at=ended_at, emitted_at=now, via=via))

    def prune(self, before: float) -> None:
        with Session(self.engine) as s, s.begin():
            s.execute(delete(EmittedRow).where(EmittedRow.ended_at < before))

    def cdr_mark(self) -> tuple[int | None, int] | None:
        """(inode, offset) of Master.csv read so far; None before the first scan."""
        with Session(self.engine) as s:
            row = s.get(MarkRow, "cdr")
            if row is None:
                return None
            d = json.loads(row.value)
            return d.get("inode"), int(d.get("offset", 0))

    def set_cdr_mark(self, inode: int | None, offset: int) -> None:
        value = json.dumps({"inode": inode, "offset": offset})
        with Session(self.engine) as s, s.begin():
            row = s.get(MarkRow, "cdr")
            if row is None:
                s.add(MarkRow(name="cdr", value=value))
            else:
                row.value = value

    def close(self) -> None:
        self.engine.dispose()


def log_sink(facts: CallFacts) -> None:
    """Every delivered call's facts in the log (and a JSON-lines file if asked), after the
    sink (the work orders) took them."""
    data = facts_to_json(facts)
    log.info("[%s] call facts: %s", facts.uniqueid, json.dumps(data, ensure_ascii=False))
    path = os.environ.get(FACTS_FILE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(data, ensure_ascii=False) + "\n")


class CallTrackerService:
    def __init__(
        self,
        *,
        config: Callable[[], Config],
        sink: Callable[[], Sink | None],
        redis: Callable[[], Any],
        store: EmittedStore,
        cdr_path: Path,
        queue_log: Path,
        transfers: Callable[[str], list[dict[str, Any]]] = lambda _uid: [],
        callback: Callable[[str], dict[str, Any] | None] = lambda _uid: None,
        ami: Callable[[], Any] = lambda: None,
        recording: Callable[[str], str | None] = lambda _call_id: None,
        clock: Callable[[], float] = time.time,
    ):
        self.config = config
        self.sink = sink
        self.redis = redis
        self.store = store
        self.cdr_path = cdr_path
        self.queue_log = queue_log
        self.transfers = transfers
        self.callback = callback
        self.ami = ami
        self.recording = recording
        self.clock = clock
        self.tracker = CallTracker(self._hotline_numbers())
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        # on_answer(call_id, agent): an agent answered (the work orders' assign_agent)
        self.on_answer: Callable[[str, str], Any] | None = None
        self._lock = asyncio.Lock()  # one delivery at a time: no call delivered twice
        self._scan_lock = asyncio.Lock()
        self._tasks: set[asyncio.Future[object]] = set()
        self._scan_soon: asyncio.TimerHandle | None = None
        self._loop_task: asyncio.Task[None] | None = None

    def _hotline_numbers(self) -> set[str]:
        return {n.number for n in self.config().numbers}

    # ------------------------------------------------------------ life
    async def start(self) -> None:
        await self.scan()
        self._loop_task = asyncio.create_task(self._every(), name="call-tracker-scan")

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
        if self._scan_soon is not None:
            self._scan_soon.cancel()
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.store.close()

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(SCAN_EVERY)
            for st in self.tracker.expire(self.clock(), LOST_LEG_GRACE):
                log.warning("[%s] a leg's Hangup never came; call closed", st.uniqueid)
                self._spawn(self._deliver_live(st))
            try:
                await self.scan()
            except Exception:
                log.exception("CDR scan failed; tried again in %.0f s", SCAN_EVERY)

    def _spawn(self, coro: Awaitable[object]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ live
    def attach(self, client: Any) -> None:
        for name in EVENTS:
            client.on(name, self.on_event)
        client.on_booted(self.asterisk_booted)

    def asterisk_booted(self, _event: Any = None) -> None:
        """Every (re)connection: calls that ended meanwhile are in the CDR."""
        self.tracker.hotline_numbers = frozenset(self._hotline_numbers())
        self._spawn(self.reconcile())

    async def reconcile(self) -> None:
        """Calls followed live whose channels are all gone (Hangups missed while AMI was
        away): from the CDR when Asterisk wrote it, else from what was seen live."""
        gone: list[CallState] = []
        ami = self.ami()
        if ami is not None and self.tracker.calls:
            try:
                rows = await ami.action_list("CoreShowChannels")
                gone = self.tracker.gone({_fields(r).get("Uniqueid", "") for r in rows})
            except Exception as e:  # noqa: BLE001 - the periodic scan and expiry still run
                log.warning("could not list the channels to reconcile the calls: %s", e)
        await self.scan()
        for st in gone:
            log.info("[%s] call ended while AMI was away; closed from what was seen", st.uniqueid)
            await self._deliver(st, "ami")

    def on_event(self, event: Any) -> None:
        ev = _fields(event)
        if ev.get("Event") == "Hangup":
            uid = ev.get("Uniqueid", "")
            if uid and uid == ev.get("Linkedid") and uid not in self.tracker.call_of:
                self._schedule_scan()  # a call that started before we were listening
        done = self.tracker.apply(ev, self.clock())
        if done is not None:
            self._spawn(self._deliver_live(done))
        elif ev.get("Event") == "AgentConnect" and self.on_answer is not None:
            st = self.tracker.calls.get(ev.get("Linkedid", ""))
            if st is not None and st.seat:
                seat = self.config().seats.get(st.seat)
                agent = (seat.agent if seat is not None else None) or st.seat
                self._spawn(self._answered(st.call_id, agent))

    async def _answered(self, call_id: str, agent: str) -> None:
        """The order opened at arrival becomes the answering agent's during the call."""
        assert self.on_answer is not None
        try:
            await asyncio.to_thread(self.on_answer, call_id, agent)
        except Exception as e:  # noqa: BLE001 - the call's facts still name the agent later
            log.warning("[%s] the order could not be given to %s yet: %s", call_id, agent, e)

    def _schedule_scan(self) -> None:
        if self._scan_soon is None:
            loop = asyncio.get_running_loop()
            self._scan_soon = loop.call_later(FRESH + 0.5, self._scan_now)

    def _scan_now(self) -> None:
        self._scan_soon = None
        self._spawn(self.scan())

    async def _deliver_live(self, st: CallState) -> None:
        await asyncio.sleep(SETTLE)
        await self._deliver(st, "ami")

    # ------------------------------------------------------------ delivery
    async def _ivr_path(self, uniqueid: str) -> Any:
        r = self.redis()
        if r is None:
            return None
        try:
            raw = await r.hget(f"hotline:call:{uniqueid}", "ivr")
            return json.loads(raw) if raw else None
        except Exception as e:  # noqa: BLE001 - the facts go out without the path
            log.warning("[%s] IVR path not readable: %s", uniqueid, e)
            return None

    async def _deliver(self, st: CallState, via: str) -> bool | None:
        """True: delivered now; None: delivered before; False: the sink failed.

        The database work (the lookups, the work order, the mark) runs in a worker
        thread: a few milliseconds per call that the event loop, which also serves
        the FastAGI sessions of callers, does not wait for."""
        async with self._lock:
            if await asyncio.to_thread(self.store.emitted, st.call_id):
                return None
            ivr = await self._ivr_path(st.uniqueid)
            sink = self.sink()
            cfg = self.config()

            def build_and_sink() -> tuple[CallFacts, Any]:
                extras = Extras(
                    ivr=ivr,
                    transfers=tuple(self.transfers(st.uniqueid)),
                    callback=self.callback(st.uniqueid),
                    recording=self.recording(st.uniqueid),
                )
                facts = facts_of(st, cfg, extras)
                return facts, (sink(facts) if sink is not None else None)

            try:
                facts, result = await asyncio.to_thread(build_and_sink)
                if inspect.isawaitable(result):
                    await result
                log_sink(facts)
            except Exception:
                log.exception(
                    "[%s] the call-facts sink failed; retried at the next scan", st.uniqueid
                )
                return False
            await asyncio.to_thread(
                self.store.mark_emitted, st.call_id, st.ended_at or self.clock(), via, self.clock()
            )
            self.recent.append(facts_to_json(facts))
            log.info(
                "[%s] call %s delivered (%s, via %s)",
                st.uniqueid,
                st.call_id,
                facts.outcome.value,
                via,
            )
            return True

    # ------------------------------------------------------------ restart
    async def scan(self) -> int:
        """Deliver the calls found in the new part of Master.csv; how many were delivered."""
        async with self._scan_lock:
            return await self._scan()

    async def _scan(self) -> int:
        mark = self.store.cdr_mark()
        try:
            stat = os.stat(self.cdr_path)
        except FileNotFoundError:
            if mark is None:
                self.store.set_cdr_mark(None, 0)  # calls from now on: the file starts empty
            return 0
        if mark is None:
            # The tracker's first start on an instance with history: that history is not
            # ticketed now; every call from here on is.
            log.info(
                "first scan of %s: starting at its end (%d bytes)", self.cdr_path, stat.st_size
            )
            self.store.set_cdr_mark(stat.st_ino, stat.st_size)
            return 0
        inode, offset = mark
        if inode is not None and (stat.st_ino != inode or stat.st_size < offset):
            log.info("%s was replaced or truncated; reading it from the start", self.cdr_path)
            offset = 0
        if stat.st_size <= offset:
            self.store.set_cdr_mark(stat.st_ino, offset)
            return 0
        with open(self.cdr_path, "rb") as f:  # noqa: ASYNC230 - local file, only the new bytes
            f.seek(offset)
            data = f.read()
        lines, span = cdrfile.split_lines(data)
        now = self.clock()
        calls: dict[str, list[cdrfile.CdrRow]] = {}
        first_at: dict[str, int] = {}
        stop = offset + span
        for pos, raw in lines:
            try:
                row = cdrfile.parse_line(raw)
            except cdrfile.CdrFormatError as e:
                log.warning("%s at byte %d: %s; skipped", self.cdr_path, offset + pos, e)
                continue
            if row.end > now - FRESH:
                stop = offset + pos  # may be half of a call's records: read again soon
                self._schedule_scan()
                break
            if inbound_number(row) is None:
                continue
            calls.setdefault(row.uniqueid, []).append(row)
            first_at.setdefault(row.uniqueid, offset + pos)
        delivered = 0
        queue_events = None
        for uid, rows in calls.items():
            if self.store.emitted(uid):
                continue
            if uid in self.tracker.calls:
                # Followed live, delivered when its last leg hangs up; the offset waits for it
                # (a restart in between finds the call here again).
                stop = min(stop, first_at[uid])
                continue
            if queue_events is None:
                queue_events = read_events(str(self.queue_log))
            st = state_from_records(rows, queue_events)
            done = await self._deliver(st, "cdr")
            if done:
                delivered += 1
            elif done is False:
                stop = min(stop, first_at[uid])
        self.store.set_cdr_mark(stat.st_ino, stop)
        if delivered:
            log.info(
                "%d call(s) that ended while the controller was away delivered from the CDR",
                delivered,
            )
        self.store.prune(now - KEEP_EMITTED)
        return delivered


# ------------------------------------------------------------------ wiring


def _store_engine(url: str | None, state_dir: Path, filename: str) -> Any:
    return open_engine(store_url(url, state_dir, filename))


def _transfer_lookup(url: str | None, state_dir: Path) -> Callable[[str], list[dict[str, Any]]]:
    from transfer.store import FILENAME, TransferRow

    engine = _store_engine(url, state_dir, FILENAME)

    def lookup(uniqueid: str) -> list[dict[str, Any]]:
        try:
            with Session(engine) as s:
                rows = s.scalars(
                    select(TransferRow)
                    .where(TransferRow.caller_uniqueid == uniqueid)
                    .order_by(TransferRow.requested_at)
                ).all()
                return [json.loads(r.record) for r in rows]
        except SQLAlchemyError as e:  # the facts go out without the transfers
            log.warning("[%s] transfer records not readable: %s", uniqueid, e)
            return []

    return lookup


def _callback_lookup(url: str | None, state_dir: Path) -> Callable[[str], dict[str, Any] | None]:
    from queues.callback_store import FILENAME, CallbackRow

    engine = _store_engine(url, state_dir, FILENAME)

    def lookup(uniqueid: str) -> dict[str, Any] | None:
        try:
            with Session(engine) as s:
                rows = s.scalars(select(CallbackRow).where(CallbackRow.uniqueid == uniqueid)).all()
                records = [json.loads(r.record) for r in rows]
        except SQLAlchemyError as e:
            log.warning("[%s] call-back requests not readable: %s", uniqueid, e)
            return None
        # Booked by the caller in this call; one made later from the missed-call list is not.
        return next((d for d in records if d.get("source") == "offer"), None)

    return lookup


def _recording_lookup(app: Any) -> Callable[[str], str | None]:
    """The path of the call's recording, from the recordings service when one is wired
    (``app.recordings.store.for_call(call_id)``; the caller's uniqueid is the call id)."""

    def lookup(call_id: str) -> str | None:
        store = getattr(getattr(app, "recordings", None), "store", None)
        if store is None:
            return None
        try:
            rec = store.for_call(call_id)
        except SQLAlchemyError as e:
            log.warning("[%s] recording not readable: %s", call_id, e)
            return None
        path = getattr(rec, "path", None)
        return path if isinstance(path, str) else None

    return lookup


class CallTrackerPlugin:
    """Created with the controller's :class:`hotline.app.App`; ``attach`` to the AMI client."""

    def __init__(self, app: Any) -> None:
        state = app.instance.state
        self.service = CallTrackerService(
            config=lambda: app.config,
            sink=lambda: getattr(app, "call_sink", None),
            redis=lambda: app.redis,
            store=EmittedStore(state / EmittedStore.FILENAME),
            cdr_path=app.instance.host("log", "cdr-csv", "Master.csv"),
            queue_log=app.instance.host("log", "queue_log"),
            transfers=_transfer_lookup(app.config.storage.url, state),
            callback=_callback_lookup(app.config.storage.url, state),
            ami=lambda: app.ami,
            recording=_recording_lookup(app),
        )
        app.calls = self.service

    def attach(self, client: Any) -> None:
        self.service.attach(client)

    async def start(self) -> None:
        await self.service.start()

    async def close(self) -> None:
        await self.service.close()
