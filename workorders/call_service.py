"""The call tracker at work: AMI events in, one ``CallFacts`` per call out to a sink (I/O shell).

The logic is :mod:`workorders.tracker` (pure). This module feeds it and
delivers what it finds:

* live: each AMI event of :data:`workorders.tracker.EVENTS` is folded in;
  when a call's last channel hangs up, the shell waits :data:`SETTLE` seconds
  (the transfer and call-back services save their records on the same
  events), reads the IVR path (Redis ``hotline:call:<uniqueid>``), the call's
  transfer records and a call-back request booked in it, builds the facts and
  hands them to the sink (``sink(list of facts)``, sync or async; the controller
  passes ``app.call_sink``: the work-order store's ``record_calls``). Calls that
  end within :data:`COALESCE` of each other go together: one Redis round trip,
  one query per other service and one work-order transaction for the lot.
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
  sink is idempotent by ``call_id`` too (``WorkOrderStore.record_calls``).

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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Float, String, Text, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dialplan.model import Config
from hotline import channel_vars as cv
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

T = TypeVar("T")
#: sink(facts of several calls), sync or async: the work-order store's record_calls.
Sink = Callable[[list[CallFacts]], Awaitable[Any] | Any]
#: lookup(uniqueids) -> what another service stored, for the calls that have something.
Lookup = Callable[[Sequence[str]], Mapping[str, T]]
SETTLE = 1.0  # s after the last hangup before reading what other services stored
COALESCE = 0.25  # s: calls ending this close together are delivered together
BATCH = 200  # calls per delivery at most (one transaction, IN lists well under limits)
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
        return bool(self.emitted_among([call_id]))

    def emitted_among(self, call_ids: Sequence[str]) -> set[str]:
        """Which of these calls were delivered before (one query)."""
        if not call_ids:
            return set()
        with Session(self.engine) as s:
            return set(
                s.scalars(select(EmittedRow.call_id).where(EmittedRow.call_id.in_(list(call_ids))))
            )

    def mark_emitted(self, call_id: str, ended_at: float, via: str, now: float) -> None:
        self.mark_emitted_many([(call_id, ended_at)], via, now)

    def mark_emitted_many(self, calls: Sequence[tuple[str, float]], via: str, now: float) -> None:
        """(call id, ended at) of delivered calls, in one transaction."""
        if not calls:
            return
        with Session(self.engine) as s, s.begin():
            known = set(
                s.scalars(
                    select(EmittedRow.call_id).where(
                        EmittedRow.call_id.in_([cid for cid, _ in calls])
                    )
                )
            )
            for cid, ended_at in dict(calls).items():
                if cid not in known:
                    s.add(EmittedRow(call_id=cid, ended_at=ended_at, emitted_at=now, via=via))

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


def log_facts(facts: CallFacts, data: dict[str, Any], via: str) -> None:
    """Every delivered call's facts in the log (and a JSON-lines file if asked), after the
    sink (the work orders) took them."""
    text = json.dumps(data, ensure_ascii=False)
    log.info("[%s] call %s delivered via %s: %s", facts.uniqueid, facts.call_id, via, text)
    path = os.environ.get(FACTS_FILE_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text + "\n")


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
        transfers: Lookup[list[dict[str, Any]]] = lambda _uids: {},
        callback: Lookup[dict[str, Any]] = lambda _uids: {},
        ami: Callable[[], Any] = lambda: None,
        recording: Lookup[str] = lambda _call_ids: {},
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
        # Calls that ended, waiting SETTLE seconds: (when they are due, the call).
        self._settling: deque[tuple[float, CallState]] = deque()
        self._flusher: asyncio.Task[None] | None = None

    def _hotline_numbers(self) -> set[str]:
        return {n.number for n in self.config().numbers}

    # ------------------------------------------------------------ life
    async def start(self) -> None:
        await self.scan()
        self._loop_task = asyncio.create_task(self._every(), name="call-tracker-scan")

    async def close(self) -> None:
        """Stop. Calls still settling are not lost: they are in the CDR, which the next
        start reads."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        if self._scan_soon is not None:
            self._scan_soon.cancel()
        tasks = [t for t in (self._loop_task, self._flusher, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.store.close()

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(SCAN_EVERY)
            lost = self.tracker.expire(self.clock(), LOST_LEG_GRACE)
            for st in lost:
                log.warning("[%s] a leg's Hangup never came; call closed", st.uniqueid)
            if lost:
                self._spawn(self._deliver(lost, "ami"))
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
        if gone:
            await self._deliver(gone, "ami")

    def on_event(self, event: Any) -> None:
        ev = _fields(event)
        if ev.get("Event") == "Hangup":
            uid = ev.get("Uniqueid", "")
            if uid and uid == ev.get("Linkedid") and uid not in self.tracker.call_of:
                self._schedule_scan()  # a call that started before we were listening
        done = self.tracker.apply(ev, self.clock())
        if done is not None:
            self._settle(done)
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

    def _settle(self, st: CallState) -> None:
        """A call ended: delivered after SETTLE seconds, with the others ending meanwhile."""
        loop = asyncio.get_running_loop()
        self._settling.append((loop.time() + SETTLE, st))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush(), name="call-tracker-deliver")

    async def _flush(self) -> None:
        """Deliver the settled calls in batches: those due within COALESCE of the first go
        together (one transaction for a busy moment's calls, not one per call)."""
        loop = asyncio.get_running_loop()
        try:
            while self._settling:
                await asyncio.sleep(max(0.0, self._settling[0][0] + COALESCE - loop.time()))
                now = loop.time()
                batch: list[CallState] = []
                while self._settling and self._settling[0][0] <= now and len(batch) < BATCH:
                    batch.append(self._settling.popleft()[1])
                try:
                    await self._deliver(batch, "ami")
                except Exception:  # e.g. calls.sqlite unreadable: the CDR scan has them
                    log.exception("%d ended call(s) not delivered now; left to the CDR scan",
                                  len(batch))
        finally:
            self._flusher = None

    # ------------------------------------------------------------ delivery
    async def _ivr_paths(self, uniqueids: Sequence[str]) -> dict[str, Any]:
        """The IVR path of each call from Redis, in one round trip."""
        r = self.redis()
        if r is None or not uniqueids:
            return {}
        try:
            async with r.pipeline(transaction=False) as pipe:
                for uid in uniqueids:
                    pipe.hget(cv.call_key(uid), "ivr")
                raws = await pipe.execute()
        except Exception as e:  # noqa: BLE001 - the facts go out without the paths
            log.warning("IVR paths of %d call(s) not readable: %s", len(uniqueids), e)
            return {}
        out: dict[str, Any] = {}
        for uid, raw in zip(uniqueids, raws, strict=True):
            try:
                out[uid] = json.loads(raw) if raw else None
            except ValueError as e:
                log.warning("[%s] IVR path not readable: %s", uid, e)
        return out

    def _facts(self, calls: Sequence[CallState], ivr: Mapping[str, Any]) -> list[CallFacts]:
        """The facts of ended calls, with what the other services stored about them
        (a query per kind for the whole batch). Runs in a worker thread."""
        cfg = self.config()
        uids = [st.uniqueid for st in calls]
        transfers = self.transfers(uids)
        callbacks = self.callback(uids)
        recordings = self.recording(uids)  # the caller's uniqueid is the call id
        return [
            facts_of(
                st,
                cfg,
                Extras(
                    ivr=ivr.get(st.uniqueid),
                    transfers=tuple(transfers.get(st.uniqueid, ())),
                    callback=callbacks.get(st.uniqueid),
                    recording=recordings.get(st.uniqueid),
                ),
            )
            for st in calls
        ]

    async def _deliver(self, calls: Sequence[CallState], via: str) -> dict[str, bool | None]:
        """Deliver ended calls; per call id: True delivered now, None delivered before,
        False the sink refused it (the next CDR scan tries again).

        The database work (the lookups, the work orders, the marks) runs in worker
        threads, a few statements per batch: the event loop also serves the FastAGI
        sessions of callers."""
        async with self._lock:
            fresh = list({st.call_id: st for st in calls}.values())
            before = await asyncio.to_thread(
                self.store.emitted_among, [st.call_id for st in fresh]
            )
            out: dict[str, bool | None] = dict.fromkeys(before)
            fresh = [st for st in fresh if st.call_id not in before]
            if not fresh:
                return out
            ivr = await self._ivr_paths([st.uniqueid for st in fresh])
            facts = await asyncio.to_thread(self._facts, fresh, ivr)
            taken = await self._sink_all(facts)
            out.update((f.call_id, f.call_id in taken) for f in facts)
            ended = {st.call_id: st.ended_at or self.clock() for st in fresh}
            try:
                await asyncio.to_thread(
                    self.store.mark_emitted_many,
                    [(cid, ended[cid]) for cid in ended if cid in taken],
                    via,
                    self.clock(),
                )
            except Exception:  # the sink is idempotent: a call delivered again changes nothing
                log.exception("delivered calls not marked; the next scan may deliver them again")
            for f in facts:
                if f.call_id in taken:
                    data = facts_to_json(f)
                    self.recent.append(data)
                    log_facts(f, data, via)
            return out

    async def _sink_all(self, facts: list[CallFacts]) -> set[str]:
        """Hand the facts to the sink, all at once; if that fails, one by one (one bad call
        does not hold back the others). The call ids the sink took."""
        sink = self.sink()
        if sink is None:  # no work orders wired: the facts are logged only
            return {f.call_id for f in facts}
        try:
            await _call(sink, facts)
            return {f.call_id for f in facts}
        except Exception as e:
            if len(facts) > 1:
                log.warning("%d calls could not be delivered together (%s); one by one",
                            len(facts), e)
            else:
                log.exception("[%s] the call-facts sink failed; retried at the next scan",
                              facts[0].uniqueid)
                return set()
        taken: set[str] = set()
        for f in facts:
            try:
                await _call(sink, [f])
                taken.add(f.call_id)
            except Exception:
                log.exception("[%s] the call-facts sink failed; retried at the next scan",
                              f.uniqueid)
        return taken

    # ------------------------------------------------------------ restart
    async def scan(self) -> int:
        """Deliver the calls found in the new part of Master.csv; how many were delivered."""
        async with self._scan_lock:
            return await self._scan()

    async def _scan(self) -> int:
        plan = await asyncio.to_thread(self._read_cdr)
        if plan is None:
            return 0
        if plan.fresh_left:
            self._schedule_scan()
        stop = plan.stop
        todo: list[CallState] = []
        for uid, st in plan.calls.items():
            if uid in self.tracker.calls:
                # Followed live, delivered when its last leg hangs up; the offset waits for it
                # (a restart in between finds the call here again).
                stop = min(stop, plan.first_at[uid])
            else:
                todo.append(st)
        delivered = 0
        for i in range(0, len(todo), BATCH):
            done = await self._deliver(todo[i : i + BATCH], "cdr")
            for cid, ok in done.items():
                if ok:
                    delivered += 1
                elif ok is False:
                    stop = min(stop, plan.first_at[cid])
        now = self.clock()

        def finish() -> None:
            self.store.set_cdr_mark(plan.inode, stop)
            self.store.prune(now - KEEP_EMITTED)

        await asyncio.to_thread(finish)
        if delivered:
            log.info(
                "%d call(s) that ended while the controller was away delivered from the CDR",
                delivered,
            )
        return delivered

    def _read_cdr(self) -> CdrPlan | None:
        """The calls in the new part of Master.csv not delivered yet (a worker thread)."""
        mark = self.store.cdr_mark()
        try:
            stat = os.stat(self.cdr_path)
        except FileNotFoundError:
            if mark is None:
                self.store.set_cdr_mark(None, 0)  # calls from now on: the file starts empty
            return None
        if mark is None:
            # The tracker's first start on an instance with history: that history is not
            # ticketed now; every call from here on is.
            log.info(
                "first scan of %s: starting at its end (%d bytes)", self.cdr_path, stat.st_size
            )
            self.store.set_cdr_mark(stat.st_ino, stat.st_size)
            return None
        inode, offset = mark
        if inode is not None and (stat.st_ino != inode or stat.st_size < offset):
            log.info("%s was replaced or truncated; reading it from the start", self.cdr_path)
            offset = 0
        if stat.st_size <= offset:
            self.store.set_cdr_mark(stat.st_ino, offset)
            return None
        with open(self.cdr_path, "rb") as f:
            f.seek(offset)
            data = f.read()
        lines, span = cdrfile.split_lines(data)
        now = self.clock()
        rows_of: dict[str, list[cdrfile.CdrRow]] = {}
        first_at: dict[str, int] = {}
        stop = offset + span
        fresh_left = False
        for pos, raw in lines:
            try:
                row = cdrfile.parse_line(raw)
            except cdrfile.CdrFormatError as e:
                log.warning("%s at byte %d: %s; skipped", self.cdr_path, offset + pos, e)
                continue
            if row.end > now - FRESH:
                stop = offset + pos  # may be half of a call's records: read again soon
                fresh_left = True
                break
            if inbound_number(row) is None:
                continue
            rows_of.setdefault(row.uniqueid, []).append(row)
            first_at.setdefault(row.uniqueid, offset + pos)
        done = self.store.emitted_among(list(rows_of))
        rows_of = {uid: rows for uid, rows in rows_of.items() if uid not in done}
        queue_events = read_events(str(self.queue_log)) if rows_of else []
        calls = {uid: state_from_records(rows, queue_events) for uid, rows in rows_of.items()}
        return CdrPlan(stat.st_ino, stop, fresh_left, calls, first_at)


@dataclass(frozen=True)
class CdrPlan:
    """What a look at Master.csv found: calls to deliver, and how far it may be marked read."""

    inode: int
    stop: int  # byte offset read up to, unless a call below holds it back
    fresh_left: bool  # records too new to read stopped it: look again soon
    calls: dict[str, CallState]  # uniqueid -> the call, not delivered yet
    first_at: dict[str, int]  # uniqueid -> offset of its first record


async def _call(sink: Sink, facts: list[CallFacts]) -> None:
    """The sink in a worker thread (the work-order store is synchronous); a coroutine
    function's result is awaited here."""
    result = await asyncio.to_thread(sink, facts)
    if inspect.isawaitable(result):
        await result


# ------------------------------------------------------------------ wiring


def _store_engine(url: str | None, state_dir: Path, filename: str) -> Any:
    return open_engine(store_url(url, state_dir, filename))


def _transfer_lookup(url: str | None, state_dir: Path) -> Lookup[list[dict[str, Any]]]:
    from transfer.store import FILENAME, TransferRow

    engine = _store_engine(url, state_dir, FILENAME)

    def lookup(uniqueids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        try:
            with Session(engine) as s:
                for r in s.scalars(
                    select(TransferRow)
                    .where(TransferRow.caller_uniqueid.in_(list(uniqueids)))
                    .order_by(TransferRow.requested_at)
                ):
                    out.setdefault(r.caller_uniqueid, []).append(json.loads(r.record))
        except SQLAlchemyError as e:  # the facts go out without the transfers
            log.warning("transfer records of %d call(s) not readable: %s", len(uniqueids), e)
            return {}
        return out

    return lookup


def _callback_lookup(url: str | None, state_dir: Path) -> Lookup[dict[str, Any]]:
    from queues.callback_store import FILENAME, CallbackRow

    engine = _store_engine(url, state_dir, FILENAME)

    def lookup(uniqueids: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        try:
            with Session(engine) as s:
                for r in s.scalars(
                    select(CallbackRow).where(CallbackRow.uniqueid.in_(list(uniqueids)))
                ):
                    d = json.loads(r.record)
                    # Booked by the caller in this call; one made later from the
                    # missed-call list is not.
                    if d.get("source") == "offer":
                        out.setdefault(r.uniqueid, d)
        except SQLAlchemyError as e:
            log.warning("call-back requests of %d call(s) not readable: %s", len(uniqueids), e)
            return {}
        return out

    return lookup


def _recording_lookup(app: Any) -> Lookup[str]:
    """The path of each call's recording, from the recordings service when one is wired
    (``app.recordings.store``; the caller's uniqueid is the call id)."""

    def lookup(call_ids: Sequence[str]) -> dict[str, str]:
        store = getattr(getattr(app, "recordings", None), "store", None)
        if store is None:
            return {}
        try:
            found = store.paths_for_calls(call_ids)
        except SQLAlchemyError as e:
            log.warning("recordings of %d call(s) not readable: %s", len(call_ids), e)
            return {}
        return {cid: p for cid, p in found.items() if isinstance(p, str)}

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
