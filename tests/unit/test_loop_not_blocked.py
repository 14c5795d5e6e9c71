"""Database work stays off the event loop that also serves the callers' FastAGI sessions.

Each store's method under test is made slow (it sleeps :data:`SLOW` in whatever
thread runs it, as a PostgreSQL far away or a busy SQLite file would) while a task
ticks every 10 ms on the loop: the HTTP reads (surveys, recordings, transfers,
call-backs) and the saves of the transfer and call-back services take the slow
time, yet the ticking task is never held up for more than a fraction of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from dialplan.model import Config
from dialplan.validate import load_config
from hotline.auth import Principal
from queues import callback_http
from queues.agents import NotFound
from queues.callback import CallbackRequest, State
from queues.callback_service import CallbackService
from queues.callback_store import CallbackStore
from queues.position import Arrivals
from recordings import http as recordings_http
from recordings.service import RecordingService
from recordings.store import RecordingStore
from tests.unit.test_transfer_service import ZHANGWEI, Clock, FakeAmi
from transfer import http as transfer_http
from transfer.machine import Transfer
from transfer.services import TransferService
from transfer.store import TransferStore
from workorders import survey_http
from workorders.survey_service import SurveyService
from workorders.survey_store import SurveyStore

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
ADMIN = Principal("admin", "admin")
SLOW = 0.3  # s, each slowed store call
HELD = SLOW / 2  # the longest the ticking task may wait (it sleeps 10 ms)
T = TypeVar("T")
Route = tuple[str, str, Callable[[web.Request, Principal], Awaitable[web.Response]]]


def slowed(obj: Any, name: str, calls: list[str] | None = None) -> None:
    """``obj.name`` sleeps :data:`SLOW` first (in the thread that calls it)."""
    fn = getattr(obj, name)

    def slow(*args: Any, **kw: Any) -> Any:
        time.sleep(SLOW)
        out = fn(*args, **kw)
        if calls is not None:
            calls.append(name)
        return out

    setattr(obj, name, slow)


async def while_ticking(aw: Awaitable[T]) -> tuple[T, float, float]:
    """``aw``'s result, the longest a task ticking every 10 ms waited meanwhile, and
    how long ``aw`` took."""
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.02)
    start = time.monotonic()
    try:
        result = await aw
    finally:
        took = time.monotonic() - start
        await asyncio.sleep(0.03)  # the tick held up by a blocking ``aw`` is counted too
        ticker.cancel()
    return result, max(gaps), took


def error(status: int, error_id: str, message: str, **details: Any) -> web.Response:
    return web.json_response({"error_id": error_id, "message": message, **details},
                             status=status)


async def no_body(_request: web.Request) -> dict[str, Any]:
    return {}


async def get(routes: list[Route], pattern: str, url: str, **match: str) -> web.Response:
    """GET ``url`` through the handler of ``pattern``, timed against the ticking task."""
    handler = next(h for method, p, h in routes if method == "GET" and p == pattern)
    request = make_mocked_request("GET", url, match_info=match)
    resp, held, took = await while_ticking(handler(request, ADMIN))
    assert took >= SLOW, f"{url}: the slowed store was not used ({took:.3f} s)"
    assert held < HELD, f"{url}: the event loop was held {held:.3f} s"
    assert resp.status == 200, (url, resp.text)
    return resp


def config() -> Config:
    return load_config(SAMPLE)


async def test_survey_reads(tmp_path: Path) -> None:
    cfg = config()
    svc = SurveyService(config=lambda: cfg, ami=lambda: None,
                        store=SurveyStore(f"sqlite:///{tmp_path / 's.sqlite'}"))
    job = svc.schedule("GD-1", "13907910001", 1000.0, created_by="admin")
    await svc.saved()
    svc.open.clear()  # as a job done long ago: read from the store
    for name in ("recent", "get"):
        slowed(svc.store, name)
    routes = survey_http.routes(svc, error, no_body)
    listing = await get(routes, "/surveys", "/surveys?state=all")
    assert job.id in (listing.text or "")
    one = await get(routes, "/surveys/{id}", f"/surveys/{job.id}", id=job.id)
    assert '"order_ref": "GD-1"' in (one.text or "")
    await svc.stop()


async def test_recording_reads(tmp_path: Path) -> None:
    store = RecordingStore(f"sqlite:///{tmp_path / 'r.sqlite'}")
    rec = store.started(call_id="1764250000.9", kind="call", started_at=1000.0,
                        path="2026/11/27/1764250000.9-call.wav", uniqueid="1764250000.9")
    svc = RecordingService(store=store, root=lambda: tmp_path, ami=lambda: None,
                           audit=lambda *a, **k: asyncio.sleep(0))  # type: ignore[arg-type]
    for name in ("listing", "get"):
        slowed(store, name)
    routes = recordings_http.routes(svc, error)
    listing = await get(routes, "/recordings", "/recordings?call_id=1764250000.9")
    assert '"call_id": "1764250000.9"' in (listing.text or "")
    await get(routes, "/recordings/{id}", f"/recordings/{rec.id}", id=str(rec.id))
    await svc.close()


async def test_transfer_reads(tmp_path: Path) -> None:
    cfg = config()
    svc = TransferService(config=lambda: cfg, ami=lambda: None,
                          store=TransferStore(tmp_path / "t.sqlite"))
    svc.store.save(Transfer(id="tr-1", line="110", origin="agent", caller_uniqueid="1.1",
                            caller_channel="PJSIP/carrier-1", routes=[], answer_timeout=20),
                   1000.0)
    for name in ("recent", "get"):
        slowed(svc.store, name)
    routes = transfer_http.routes(svc, error, no_body)
    listing = await get(routes, "/transfers", "/transfers")
    assert '"id": "tr-1"' in (listing.text or "")
    one = await get(routes, "/transfers/{id}", "/transfers/tr-1", id="tr-1")
    assert '"transitions": []' in (one.text or "")
    await svc.close()


async def test_callback_reads(tmp_path: Path) -> None:
    cfg = config()
    svc = CallbackService(config=lambda: cfg, ami=lambda: None,
                          store=CallbackStore(f"sqlite:///{tmp_path / 'c.sqlite'}"),
                          queue_log=tmp_path / "queue_log", arrivals=Arrivals())
    svc.store.save(CallbackRequest(id="cb-1", queue="province", number="13907910001",
                                   first_queued=1000.0, uniqueid="1.2"))
    for name in ("recent", "get", "uniqueids"):
        slowed(svc.store, name)
    routes = callback_http.routes(svc, error, no_body)
    listing = await get(routes, "/callbacks", "/callbacks?state=all")
    assert '"id": "cb-1"' in (listing.text or "")
    await get(routes, "/callbacks/{id}", "/callbacks/cb-1", id="cb-1")
    await get(routes, "/callbacks/abandoned", "/callbacks/abandoned?since=0")
    await svc.stop()


async def test_callback_save_is_off_the_loop_and_written_before_the_answer(
    tmp_path: Path,
) -> None:
    cfg = config()
    svc = CallbackService(config=lambda: cfg, ami=lambda: None,
                          store=CallbackStore(f"sqlite:///{tmp_path / 'c.sqlite'}"),
                          queue_log=tmp_path / "queue_log", arrivals=Arrivals())
    saves: list[str] = []
    slowed(svc.store, "save", saves)
    r, held, took = await while_ticking(svc.request_from_offer(
        queue="province", number="13907910001", first_queued=1000.0, uniqueid="1.3"))
    assert saves == ["save"] and took >= SLOW and held < HELD, (held, took)
    got = svc.store.get(r.id)  # written before request_from_offer returned
    assert got is not None and got.state == State.PENDING
    done, held, took = await while_ticking(svc.cancel(ADMIN, r.id))
    assert saves == ["save", "save"] and took >= SLOW and held < HELD, (held, took)
    assert done["state"] == "cancelled" and r.id not in svc.open
    got = svc.store.get(r.id)
    assert got is not None and got.state == State.CANCELLED
    await svc.stop()


async def test_transfer_saves_are_off_the_loop_and_precede_the_originate(
    tmp_path: Path,
) -> None:
    cfg = config()
    order: list[str] = []

    class Ami(FakeAmi):
        async def originate(self, originate_id: str, channel: str, **kw: Any) -> None:
            order.append("Originate")
            await super().originate(originate_id, channel, **kw)

    ami = Ami()
    store = TransferStore(tmp_path / "t.sqlite")
    svc = TransferService(config=lambda: cfg, ami=lambda: ami, store=store, clock=Clock())
    slowed(store, "save", order)
    record, held, took = await while_ticking(svc.request(ZHANGWEI, "1001", "119"))
    assert held < HELD, f"the event loop was held {held:.3f} s"
    # requested (before the Redirect), caller held (the state machine's start), dialled
    assert order == ["save", "save", "save", "Originate"] and took >= 3 * SLOW
    assert [n for n, _ in ami.sent][:3] == ["Setvar", "Setvar", "Redirect"]
    stored = store.get(record["id"])
    assert stored is not None and stored.state.value == "dialling"
    assert "dialled_1" in stored.times  # the attempt was on record before the Originate
    await svc.close()


async def test_a_callers_hangup_while_the_request_is_saved_is_not_lost(tmp_path: Path) -> None:
    """The request's first save no longer holds the loop: an event of the caller that
    comes meanwhile finds the transfer (it waits for its lock) and is applied after."""
    cfg = config()
    ami = FakeAmi()
    store = TransferStore(tmp_path / "t.sqlite")
    svc = TransferService(config=lambda: cfg, ami=lambda: ami, store=store, clock=Clock())
    slowed(store, "save")
    caller = ami.channels[0]
    asked = asyncio.create_task(svc.request(ZHANGWEI, "1001", "119"))
    await asyncio.sleep(SLOW / 3)  # the request's first save is being written
    tid = svc.index.get(caller["Uniqueid"])
    assert tid is not None and svc.open[tid].state.value == "requested"
    gone = svc.on_event({"Event": "Hangup", "Uniqueid": caller["Uniqueid"], "Cause": "16",
                         "Channel": caller["Channel"]})
    assert gone is not None
    record = await asyncio.wait_for(asyncio.gather(asked, gone), 10 * SLOW)
    assert record[0]["state"] == "dialling"  # the request as it answered
    stored = store.get(tid)
    assert stored is not None and stored.state.value == "done" and not stored.present
    assert tid not in svc.open
    await svc.close()


async def test_two_supervisors_book_one_abandoned_call_once(tmp_path: Path) -> None:
    """Each reads the abandoned calls in a thread and the save is awaited: the call is
    still claimed before the first await, so the second is refused, not a duplicate."""
    cfg = config()
    log = tmp_path / "queue_log"
    log.write_text("1000|c9|province|NONE|ENTERQUEUE||13907910009|1\n"
                   "1030|c9|province|NONE|ABANDON|1|1|30\n")
    svc = CallbackService(config=lambda: cfg, ami=lambda: None,
                          store=CallbackStore(f"sqlite:///{tmp_path / 'c.sqlite'}"),
                          queue_log=log, arrivals=Arrivals())
    slowed(svc.store, "save")
    got = await asyncio.gather(svc.from_abandoned(ADMIN, "c9"), svc.from_abandoned(ADMIN, "c9"),
                               return_exceptions=True)
    made = [g for g in got if isinstance(g, dict)]
    refused = [g for g in got if isinstance(g, NotFound)]
    assert len(made) == 1 and len(refused) == 1, got
    assert [r.uniqueid for r in svc.store.recent(["pending"], {"province"}, 10)] == ["c9"]
    await svc.stop()


async def test_open_records_are_read_off_the_loop_when_loaded_late(tmp_path: Path) -> None:
    """What a service loads after its start (a reconnection to Asterisk, a scheduler look
    after a database outage) is read in a worker thread, then adopted on the loop."""
    cfg = config()
    transfers = TransferService(config=lambda: cfg, ami=lambda: None,
                                store=TransferStore(tmp_path / "t.sqlite"))
    transfers.store.save(Transfer(id="tr-2", line="110", origin="agent",
                                  caller_uniqueid="1.3", caller_channel="PJSIP/carrier-3",
                                  routes=[], answer_timeout=20), 1000.0)
    callbacks = CallbackService(config=lambda: cfg, ami=lambda: None,
                                store=CallbackStore(f"sqlite:///{tmp_path / 'c.sqlite'}"),
                                queue_log=tmp_path / "queue_log", arrivals=Arrivals())
    callbacks.store.save(CallbackRequest(id="cb-2", queue="province", number="13907910001",
                                         first_queued=1000.0, uniqueid="1.4"))
    surveys = SurveyService(config=lambda: cfg, ami=lambda: None,
                            store=SurveyStore(f"sqlite:///{tmp_path / 's.sqlite'}"))
    job = surveys.schedule("GD-2", "13907910001", 1000.0, created_by="admin")
    await surveys.saved()
    surveys.open.clear()
    slowed(transfers.store, "open_transfers")
    slowed(callbacks.store, "open_requests")
    slowed(surveys.store, "open_jobs")
    for service, loaded in ((transfers, "tr-2"), (callbacks, "cb-2"), (surveys, job.id)):
        ok, held, took = await while_ticking(service.reload())
        assert ok and loaded in service.open, type(service).__name__
        assert took >= SLOW and held < HELD, (type(service).__name__, held)
    await transfers.close()
    await callbacks.stop()
    await surveys.stop()
