"""A PostgreSQL (``storage.url``) that is down when the controller starts.

The controller's own wiring of the five stores (the plugins of
hotline/controller.py, without Asterisk, Redis and FastAGI) and its HTTP API
are started against a real PostgreSQL that is stopped: everything starts, each
store logs that its database is unreachable, the features answer 503
``database-unavailable`` with the reason. The server is started again on the
same port: the same objects, without a restart, create their tables, load what
is open and read and write.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from dialplan.model import Storage
from dialplan.validate import load_config
from hotline import http
from hotline.app import App
from hotline.runtime import AsteriskRoot, Instance
from queues.callback import CallbackRequest
from queues.callback_plugin import CallbackPlugin
from recordings.plugin import RecordingsPlugin
from tests.conftest import need
from tests.postgres import TempPostgres, _have_driver, find_bindir
from transfer.machine import Transfer
from transfer.plugin import TransferPlugin
from workorders.facts import CallFacts, Outcome
from workorders.plugin import WorkOrderPlugin
from workorders.survey_plugin import SurveyPlugin, connect

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
ADMIN = "Basic " + base64.b64encode(b"admin:admin-pw").decode()
# /kpis first: after the outage it is the first use of the work-order tables
LISTINGS = ("/kpis?from=2026-11-01&to=2026-12-01", "/orders", "/callbacks", "/transfers",
            "/surveys", "/recordings")
FEATURES = ("transfer", "call-back", "work-order", "survey", "recording")


@pytest.fixture
def pg() -> Iterator[TempPostgres]:
    need("PostgreSQL server (initdb, pg_ctl)", find_bindir() is not None, "make deps")
    need("psycopg (PostgreSQL driver)", _have_driver(), "make venv")
    server = TempPostgres().start()
    try:
        yield server
    finally:
        server.stop()


async def get(s: aiohttp.ClientSession, base: str, path: str) -> tuple[int, Any]:
    async with s.get(base + path, headers={"Authorization": ADMIN}) as r:
        return r.status, await r.json()


async def test_stores_start_with_postgresql_down_and_work_once_it_is_back(
    pg: TempPostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load_config(SAMPLE)
    cfg = cfg.model_copy(update={"storage": Storage(url=pg.url)})
    pg.halt()
    caplog.set_level(logging.DEBUG, logger="hotline.storage")

    # hotline/controller.py's wiring of the stores
    app = App(instance=Instance(AsteriskRoot(tmp_path / "root"), "outage"), config=cfg,
              version="test")
    transfers = TransferPlugin(app)
    app.transfers = transfers.service
    callbacks = CallbackPlugin(app)
    orders = WorkOrderPlugin(app)
    surveys = SurveyPlugin(app)
    connect(orders.store, surveys.service)
    recordings = RecordingsPlugin(app)
    app.recordings = recordings.service
    for plugin in (callbacks, orders, surveys, recordings):
        await plugin.start()
    runner = await http.start(app, SimpleNamespace(), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        unreachable = [r.getMessage() for r in caplog.records
                       if r.levelno == logging.ERROR and "unreachable" in r.getMessage()]
        for feature in FEATURES:  # one line each, naming the database without its password
            assert sum(m.startswith(f"{feature} database ") for m in unreachable) == 1, unreachable
        assert not (transfers.service.loaded or callbacks.service.loaded
                    or surveys.service.loaded)

        async with aiohttp.ClientSession() as s:
            for path in LISTINGS:
                status, body = await get(s, base, path)
                assert status == 503, (path, body)
                assert body["error_id"] == "database-unavailable", (path, body)
                assert "refused" in body["details"]["reason"].lower(), (path, body)
            await callbacks.service.tick()  # a scheduler look while down: no harm, no load
            assert not callbacks.service.loaded

            pg.resume()  # the same URL; nothing is restarted on our side

            for path in LISTINGS:
                status, body = await get(s, base, path)
                assert status == 200, (path, body)

            # every store reads and writes; the open records are loaded once it is back
            ref = await asyncio.to_thread(orders.store.record_call, facts("pg-1"))
            status, got = await get(s, base, f"/orders/{ref}")
            assert status == 200 and got["calls"][0]["call_id"] == "pg-1"

            callbacks.service.store.save(CallbackRequest(
                id="cb-pg", queue="province", number="13907910001", first_queued=1000.0,
                uniqueid="pg-2"))
            await callbacks.service.tick()
            assert callbacks.service.loaded and "cb-pg" in callbacks.service.open
            status, got = await get(s, base, "/callbacks/cb-pg")
            assert status == 200 and got["number"] == "13907910001"

            transfers.service.store.save(Transfer(
                id="tr-pg", line="110", origin="agent", caller_uniqueid="pg-3",
                caller_channel="PJSIP/carrier-1", routes=[], answer_timeout=20), 1000.0)
            await transfers.service.reconcile_all()  # what every AMI (re)connection does
            assert transfers.service.loaded and "tr-pg" in transfers.service.open

            async with s.post(base + "/surveys", headers={"Authorization": ADMIN},
                              json={"order": ref, "number": "13907910001"}) as r:
                assert r.status == 201, await r.text()
                job = (await r.json())["id"]
            status, got = await get(s, base, f"/surveys/{job}")
            assert status == 200 and got["order_ref"] == ref
            assert surveys.service.store.get(job) is not None

            started = recordings.service.on_event({
                "Event": "UserEvent", "UserEvent": "HotlineRecording", "Kind": "call",
                "Path": "2026/11/27/1764250000.9-call.wav", "Uniqueid": "1764250000.9",
                "Linkedid": "1764250000.9", "Channel": "PJSIP/carrier-00000009"})
            assert started is not None
            await started
            status, rows = await get(s, base, "/recordings?call_id=1764250000.9")
            assert status == 200 and [r["path"] for r in rows] == [
                "2026/11/27/1764250000.9-call.wav"]
        assert any("reachable again" in r.getMessage() for r in caplog.records)
    finally:
        await runner.cleanup()
        await transfers.close()
        for plugin in (callbacks, orders, surveys, recordings):
            await plugin.close()


def facts(call_id: str) -> CallFacts:
    t0 = datetime.now(UTC) - timedelta(minutes=3)
    return CallFacts(call_id=call_id, uniqueid=call_id, caller="13900000002", called="12345",
                     outcome=Outcome.ANSWERED, started_at=t0, ended_at=t0 + timedelta(minutes=2),
                     centre="province", agent="zhangwei")


def test_a_server_that_does_not_answer_costs_seconds_not_minutes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A "server" that takes the TCP connection and never says a word (a hung host): the
    connection attempt gives up after CONNECT_TIMEOUT, unless the URL sets its own."""
    import socket
    import time as _time

    from sqlalchemy.exc import OperationalError

    from hotline import storage

    need("psycopg (PostgreSQL driver)", _have_driver(), "make venv")
    monkeypatch.setattr(storage, "CONNECT_TIMEOUT", 1)
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)  # the kernel completes the handshake; nobody ever answers
    try:
        url = f"postgresql+psycopg://hotline@127.0.0.1:{mute.getsockname()[1]}/hotline"
        engine = storage.open_engine(url)
        started = _time.monotonic()
        with pytest.raises(OperationalError, match="timeout"):
            engine.connect()
        assert _time.monotonic() - started < 5
        engine.dispose()
        # the URL's own connect_timeout wins (libpq waits at least 2 s whatever it says)
        engine = storage.open_engine(url + "?connect_timeout=4")
        started = _time.monotonic()
        with pytest.raises(OperationalError, match="timeout"):
            engine.connect()
        assert 3.5 < _time.monotonic() - started < 8
        engine.dispose()
    finally:
        mute.close()
