"""The satisfaction survey at work: jobs, the scheduler, Asterisk (services, no HTTP).

The work orders call :meth:`SurveyService.schedule` when an order is closed
(one line of wiring: ``orders.on_closed(surveys.schedule)``); results go back
through the sink ``on_result(order_ref, result, at)`` (``orders.record_survey``),
called once per job -- again after a restart until it returns without an error.

One loop (:meth:`SurveyService.tick`, every second and at once on the AMI
events of a survey call) does, in this order:

1. hands finished jobs' results to the sink;
2. while calls are under way, reads ``CoreShowChannels`` and concludes each
   attempt whose channel is gone, from what AMI said about it
   (``OriginateResponse`` Reason, ``Hangup`` Cause; :func:`outcome_of`) --
   after a start or an Asterisk restart this is the reconciliation, done before
   anything is sent: an attempt whose channel still exists is left to finish
   (its AGI session reaches the new controller), one whose channel is gone and
   whose outcome nobody saw counts as a try that did not reach the citizen;
3. launches the jobs :func:`due` names (calling hours, one call per order,
   ``max_parallel``): Originate ``PJSIP/<stored number>@<carrier trunk>`` into
   ``hotline-survey`` with ChannelId = the attempt id, saved *before* it is sent
   and never reused, so a restart neither loses nor doubles a call.

The answer itself comes from the AGI script (:mod:`agi_scripts.survey`), in
this process: :meth:`answered` and :meth:`finish`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Collection
from concurrent.futures import Future
from datetime import datetime
from typing import Any

from dialplan.model import IDENT_RE, Config
from hotline import channel_vars as cv
from hotline.ami import AmiActionError, AmiError
from hotline.auth import Forbidden, Principal
from hotline.record_store import LoadsOpenRecords
from hotline.storage import UNAVAILABLE, reason
from queues.agents import BadRequest, NotFound
from queues.callback import normalize_number
from queues.callback_service import hotline_number
from queues.hours import current_time
from queues.position import fields

from . import survey_names as sn
from .survey import (
    STATE_GROUPS,
    Outcome,
    State,
    SurveyJob,
    calling_open,
    due,
    fail_unscheduled,
    finish_attempt,
    mark_answered,
    new_job,
    outcome_of,
    policy_of,
    start_attempt,
    unreachable_job,
)
from .survey_store import SurveyStore

log = logging.getLogger(__name__)

#: AMI events of a survey call the service follows (read class ``call``).
EVENTS = ("OriginateResponse", "Hangup")
Sink = Callable[[str, str, float], Awaitable[None] | None]
#: visible(who, order refs) -> the refs ``who`` may see (``WorkOrderStore.visible_refs``)
Visible = Callable[[Principal, Collection[str]], set[str]]
PAGE = 200  # jobs read at a time while a supervisor's listing is filtered


def survey_trunk(cfg: Config) -> str:
    """The carrier trunk survey calls go out on (validated to be a carrier trunk)."""
    return cfg.survey.trunk or next(t for t, v in cfg.trunks.items() if v.kind == "carrier")


def log_result(order_ref: str, result: str, at: float) -> None:
    """The sink until the work orders take the results: the log."""
    log.info("survey result for order %s: %s (at %.0f)", order_ref, result, at)


class SurveyService(LoadsOpenRecords[SurveyJob]):
    TICK = 1.0  # seconds between two looks when nothing happens
    MIN_GAP = 0.2  # at most five looks a second however many events arrive
    VANISH_GRACE = 3.0  # after this, a gone channel with no word on how it ended is settled

    def __init__(
        self,
        config: Callable[[], Config],
        ami: Callable[[], Any],
        store: SurveyStore,
        on_result: Sink | None = None,
        clock: Callable[[], float] = time.time,
        wallclock: Callable[[], datetime] = current_time,
    ):
        self.config = config
        self.ami = ami
        self.store = store
        self.on_result = on_result
        self.clock = clock
        self.wallclock = wallclock
        #: which orders a supervisor may see: set by ``survey_plugin.connect``; while it
        #: is unset a supervisor sees no survey (the order decides, fail closed)
        self.visible_orders: Visible | None = None
        self.open: dict[str, SurveyJob] = {}
        self._facts: dict[str, dict[str, Any]] = {}  # attempt id -> what AMI said
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writes: list[Future[None]] = []  # saves handed to the store's writer thread
        self.loaded = False  # the open jobs of the store are in ``open``

    # ----------------------------------------------------------------- life cycle
    # load() / reload(): hotline.record_store.LoadsOpenRecords; the next look reconciles
    # the jobs with Asterisk (nothing is called before they are loaded).
    OPEN_WHAT = "open surveys"

    def _open_records(self) -> list[SurveyJob]:
        return self.store.open_jobs()

    def _adopt(self, records: list[SurveyJob]) -> None:
        for j in records:
            if not (j.terminal and self.on_result is None):
                self.open.setdefault(j.id, j)  # one scheduled since is newer than its row
        self.loaded = True
        log.info("surveys: %d open job(s) loaded from %s", len(self.open), self.store.engine.url)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.load()
        self._task = asyncio.create_task(self._run(), name="surveys")

    def soon(self, fn: Callable[..., object], *args: Any) -> None:
        """``fn(*args)`` on the service's event loop: at once when called on it, else
        (from a worker thread, e.g. a work-order transition) as soon as the loop can."""
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if self._loop is None or here is self._loop or self._loop.is_closed():
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self.store.close)  # the saves handed in are written first

    def asterisk_booted(self, _event: object = None) -> None:
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
                log.warning("surveys: Asterisk not reachable (%s); next look in %.0f s", e,
                            self.TICK)
            except UNAVAILABLE as e:
                log.warning("surveys: database unavailable (%s); next look in %.0f s", reason(e),
                            self.TICK)
            except Exception:
                log.exception("surveys: the scheduler failed; next look in %.0f s", self.TICK)
            await asyncio.sleep(self.MIN_GAP)

    # ----------------------------------------------------------------- AMI events
    def _calling(self, attempt_id: str) -> SurveyJob | None:
        if not attempt_id:
            return None
        return next((j for j in self.open.values() if j.attempt_id == attempt_id), None)

    def on_originate_response(self, event: Any) -> None:
        ev = fields(event)
        aid = ev.get("Uniqueid", "")
        j = self._calling(aid)
        if j is None:
            return
        if ev.get("Response", "").lower() == "success":
            if mark_answered(j, aid, self.clock()):
                self._save(j)
            return
        self._facts.setdefault(aid, {})["reason"] = ev.get("Reason", "")
        self._wake.set()

    def on_hangup(self, event: Any) -> None:
        ev = fields(event)
        aid = ev.get("Uniqueid", "")
        if self._calling(aid) is None:
            return
        facts = self._facts.setdefault(aid, {})
        facts["cause"], facts["gone_at"] = ev.get("Cause", ""), self.clock()
        self._wake.set()

    # ----------------------------------------------------------------- the loop
    def _save(self, j: SurveyJob) -> None:
        """Hand a copy of ``j`` to the store's writer thread (saves run in the order
        handed in, off the event loop); :meth:`saved` waits for them."""
        self._writes.append(self.store.db.submit(self.store.save, SurveyJob.from_dict(j.as_dict())))
        if j.terminal and (j.reported_at or self.on_result is None):
            self.open.pop(j.id, None)

    async def saved(self) -> None:
        """Wait until every save handed in so far is written (also those another task
        waits for); the first that failed is raised."""
        pending = list(self._writes)
        if not pending:
            return
        await asyncio.wait([asyncio.wrap_future(w) for w in pending])
        self._writes = [w for w in self._writes if w not in pending]  # handed in meanwhile
        failed = next((e for e in (w.exception() for w in pending) if e is not None), None)
        if failed is not None:
            raise failed

    async def tick(self) -> None:
        try:
            await self._tick()
        finally:
            await self.saved()

    async def _tick(self) -> None:
        if not self.loaded and not await self.reload():
            return
        await self._report()
        ami = self.ami()
        if ami is None or not ami.connected:
            return
        cfg = self.config()
        policy = policy_of(cfg)
        calling = [j for j in self.open.values() if j.state == State.CALLING]
        if calling:
            chans = await ami.action_list("CoreShowChannels")
            live = {fields(c).get("Uniqueid", "") for c in chans}
            now = self.clock()
            for j in calling:
                a = j.current
                aid = j.attempt_id
                if a is None or aid in live:
                    continue
                facts = self._facts.get(aid, {})
                if a["answered_at"]:
                    # the AGI session (in this process) reports how the survey ended
                    if now - facts.get("gone_at", a["answered_at"]) < self.VANISH_GRACE:
                        continue
                elif "cause" not in facts and facts.get("reason") not in ("3", "5", "8"):
                    if now - a["started_at"] < self.VANISH_GRACE:
                        continue  # just sent, or the Hangup event is on its way
                if a["answered_at"]:
                    outcome, detail = Outcome.UNKNOWN, "answered; the survey did not run to its end"
                else:
                    outcome = outcome_of(facts.get("reason"), facts.get("cause"))
                    detail = f"Reason {facts.get('reason', '?')}, Cause {facts.get('cause', '?')}"
                if finish_attempt(j, aid, outcome, now, policy, detail=detail):
                    self._facts.pop(aid, None)
                    self._save(j)

        now = self.clock()
        open_now = calling_open(cfg, self.wallclock())
        for job_id in due(self.open.values(), now, open_now, cfg.survey.max_parallel):
            await self._launch(self.open[job_id], cfg, ami, now)
        await self._report()

    async def _launch(self, j: SurveyJob, cfg: Config, ami: Any, now: float) -> None:
        if normalize_number(j.number) != j.number:  # never dial what did not pass the check
            fail_unscheduled(j, now, "the stored number is not a callable number")
            self._save(j)
            return
        aid = start_attempt(j, now)
        self._save(j)  # before the Originate: a restart checks the channel, never re-sends
        await self.saved()
        sv = cfg.survey
        shown = hotline_number(cfg)
        try:
            await ami.originate(
                aid,
                f"PJSIP/{j.number}@{survey_trunk(cfg)}",
                context=sn.CTX_SURVEY,
                exten="s",
                priority=1,
                caller_id=f"{shown} <{shown}>",
                variables=self._variables(j),
                timeout_ms=sv.ring_timeout * 1000,
            )
        except AmiActionError as e:  # refused: nothing was created
            log.warning("survey %s: Originate %s refused: %s", j.id, aid, e)
            finish_attempt(j, aid, Outcome.REFUSED, self.clock(), policy_of(cfg),
                           detail=e.message)
            self._save(j)
        except AmiError as e:  # outcome unknown: the channel check of the next looks decides
            log.warning("survey %s: Originate %s outcome unknown: %s", j.id, aid, e)

    @staticmethod
    def _variables(j: SurveyJob) -> dict[str, str]:
        """The survey channel's variables; the order's centre as the dialled number's
        would be (the recording of the call is placed there: who may listen)."""
        out = {sn.JOB: j.id, sn.ORDER: j.order_ref}
        if j.centre and re.fullmatch(IDENT_RE, j.centre):
            out[cv.CENTRE] = j.centre
        return out

    async def _report(self) -> None:
        """Hand each finished job's result to the sink, once it takes it."""
        if self.on_result is None:
            return
        for j in [j for j in self.open.values() if j.terminal and not j.reported_at]:
            try:
                done = self.on_result(j.order_ref, j.result, j.result_at)
                if inspect.isawaitable(done):
                    await done
            except Exception:
                log.exception("survey %s: the work orders did not take result %s of order %s; "
                              "trying again", j.id, j.result, j.order_ref)
                continue
            j.reported_at = self.clock()
            log.info("survey %s: result %s of order %s reported", j.id, j.result, j.order_ref)
            self._save(j)

    # ----------------------------------------------------------------- the work orders
    def schedule(self, order_ref: str, number: str, closed_at: float,
                 created_by: str = "work-orders", centre: str | None = None) -> SurveyJob:
        """A survey for a closed order (the on_closed listener); one open job per order.

        An order reference that is not plain text is refused (:class:`BadRequest`).
        A number that cannot be called is refused when an admin gives it by hand; from
        the work orders it makes a failed job whose ``no_answer`` goes back to them.
        """
        for j in self.open.values():
            if j.order_ref == order_ref and not j.terminal:
                log.info("survey %s already scheduled for order %s", j.id, order_ref)
                return j
        now = self.clock()
        jid = "sv" + secrets.token_hex(5)
        try:
            j = new_job(jid, order_ref, number, closed_at, now, self.config().survey.delay,
                        created_by)
        except ValueError as e:
            if created_by != "work-orders" or "order reference" in str(e):
                raise BadRequest(str(e)) from None
            log.warning("survey for order %s: %s; recorded as not reachable", order_ref, e)
            j = unreachable_job(jid, order_ref, number, closed_at, now, created_by)
        j.centre = centre
        self._save(j)
        self.open[j.id] = j
        log.info("survey %s scheduled for order %s (not before %.0f)", j.id, order_ref,
                 j.not_before)
        self._wake.set()
        return j

    # ----------------------------------------------------------------- the AGI script
    def job_of(self, attempt_id: str) -> SurveyJob | None:
        """The job whose call under way is ``attempt_id`` (the AGI channel's uniqueid)."""
        return self._calling(attempt_id)

    def answered(self, attempt_id: str) -> SurveyJob | None:
        j = self._calling(attempt_id)
        if j is not None and mark_answered(j, attempt_id, self.clock()):
            self._save(j)
        return j

    def finish(self, attempt_id: str, outcome: Outcome, result: str = "",
               detail: str = "") -> bool:
        j = self._calling(attempt_id)
        if j is None:
            return False
        if not finish_attempt(j, attempt_id, outcome, self.clock(), policy_of(self.config()),
                              result=result, detail=detail):
            return False
        self._save(j)
        self._facts.pop(attempt_id, None)
        self._wake.set()
        return True

    # ----------------------------------------------------------------- HTTP
    def _check(self, who: Principal, admin: bool = False) -> None:
        if admin and who.role != "admin":
            raise Forbidden("only admins schedule surveys by hand")
        if who.role not in ("supervisor", "admin"):
            raise Forbidden("surveys are for supervisors and admins")

    def _visible(self, who: Principal, refs: Collection[str]) -> set[str]:
        """The order refs whose surveys ``who`` may read: admins all; a supervisor
        those of the orders they may see (their centre and the centres below it)."""
        if who.role == "admin":
            return set(refs)
        return set() if self.visible_orders is None else self.visible_orders(who, refs)

    def listing(self, who: Principal, group: str = "open", limit: int = 100,
                order_ref: str | None = None) -> list[dict[str, Any]]:
        self._check(who)
        if group not in STATE_GROUPS:
            raise BadRequest(f"state must be one of {', '.join(STATE_GROUPS)}")
        states = [s.value for s in STATE_GROUPS[group]]
        if who.role == "admin":
            return [j.as_dict() for j in self.store.recent(states, limit, order_ref)]
        out: list[dict[str, Any]] = []
        offset = 0
        while len(out) < limit:  # newest first, a page at a time, until enough are visible
            jobs = self.store.recent(states, PAGE, order_ref, offset)
            mine = self._visible(who, {j.order_ref for j in jobs}) if jobs else set()
            out += [j.as_dict() for j in jobs if j.order_ref in mine][:limit - len(out)]
            if len(jobs) < PAGE:
                break
            offset += PAGE
        return out

    def get(self, who: Principal, job_id: str) -> dict[str, Any]:
        self._check(who)
        return self._readable(who, job_id, self.open.get(job_id))

    async def _written(self) -> None:
        """Until the saves handed in so far have run (written or failed: :meth:`saved`
        reports those), so that a read after it sees them."""
        await asyncio.wrap_future(self.store.db.submit(lambda: None))

    async def read_listing(self, who: Principal, group: str = "open", limit: int = 100,
                           order_ref: str | None = None) -> list[dict[str, Any]]:
        """:meth:`listing` for the event loop: after the saves handed in, in a worker
        thread."""
        self._check(who)
        await self._written()
        return await asyncio.to_thread(self.listing, who, group, limit, order_ref)

    async def read(self, who: Principal, job_id: str) -> dict[str, Any]:
        """:meth:`get` for the event loop: after the saves handed in; an open job is
        copied on the loop (where it changes), the databases are read in a worker thread."""
        self._check(who)
        await self._written()
        j = self.open.get(job_id)
        copy = None if j is None else SurveyJob.from_dict(j.as_dict())
        return await asyncio.to_thread(self._readable, who, job_id, copy)

    def _readable(self, who: Principal, job_id: str, j: SurveyJob | None) -> dict[str, Any]:
        """``j`` (else the stored job), if ``who`` may read it."""
        j = j or self.store.get(job_id)
        if j is None or j.order_ref not in self._visible(who, {j.order_ref}):
            raise NotFound(f"no survey {job_id!r}")
        return j.as_dict()

    def create(self, who: Principal, order_ref: Any, number: Any,
               closed_at: Any = None) -> dict[str, Any]:
        self._check(who, admin=True)
        if closed_at is None:
            closed_at = self.clock()
        if not isinstance(closed_at, (int, float)) or isinstance(closed_at, bool):
            raise BadRequest("closed_at must be a Unix time in seconds")
        return self.schedule(order_ref, number, float(closed_at), created_by=who.name).as_dict()
