"""Security checks of the HTTP API as mounted by hotline.http.start, over real HTTP on
127.0.0.1 (no Asterisk): what a user of one role or centre may not do, and bad input
that must get a 4xx with a message, never a 500 or a stalled event loop."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from dialplan.model import User
from dialplan.validate import load_config
from hotline import http
from hotline.app import App
from hotline.auth import hash_password
from hotline.runtime import AsteriskRoot, Instance
from tests.unit.test_loop_not_blocked import while_ticking
from tests.unit.test_workorder_http import PASSWORDS, facts
from workorders.plugin import WorkOrderPlugin
from workorders.survey_plugin import SurveyPlugin, connect

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
SLOW_ITERATIONS = 3_000_000  # a password check of ~0.5 s or more


class Client:
    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base, self.session = base, session
        self.orders: Any = None  # the work-order store behind the API, when there is one

    async def call(self, user: str | None, method: str, path: str, body: bytes | None = None,
                   password: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if user is not None:
            pw = PASSWORDS.get(user, "") if password is None else password
            headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
        async with self.session.request(method, self.base + path, data=body, headers=headers) as r:
            text = await r.text()
            try:
                return r.status, await r.json(content_type=None)
            except ValueError:
                return r.status, text


async def serve(app: Any) -> AsyncIterator[Client]:
    runner = await http.start(app, SimpleNamespace(), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as s:
            yield Client(f"http://127.0.0.1:{runner.addresses[0][1]}", s)
    finally:
        await runner.cleanup()


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Client]:
    """The work-order and survey stores wired as hotline/controller.py does."""
    cfg = load_config(SAMPLE)
    app = App(instance=Instance(AsteriskRoot(tmp_path / "root"), "sec"), config=cfg, version="t")
    orders, surveys = WorkOrderPlugin(app), SurveyPlugin(app)
    connect(orders.store, surveys.service)
    for plugin in (orders, surveys):
        await plugin.start()
    try:
        async for client in serve(app):
            client.orders = orders.store
            yield client
    finally:
        await surveys.close()
        await orders.close()


async def test_a_wrong_password_is_checked_off_the_event_loop(tmp_path: Path) -> None:
    """PBKDF2 is slow on purpose; run on the loop, every wrong password would hold up
    the FastAGI sessions of every caller for as long (a flood of them: no IVR at all)."""
    cfg = load_config(SAMPLE)
    slow = User(name="slow", role="admin",
                password_hash=hash_password("right-password", iterations=SLOW_ITERATIONS))
    cfg = cfg.model_copy(update={"users": {**cfg.users, "slow": slow}})
    app = SimpleNamespace(config=cfg, version="t", agents=None)
    async for client in serve(app):
        (status, body), held, took = await while_ticking(
            client.call("slow", "GET", "/stats/queues", password="wrong-password"))
        assert status == 401 and body["error_id"] == "unauthorized"
        assert took > 0.2, f"the check took {took:.3f} s: not the slow hash"
        assert held < 0.15, f"the event loop was held {held:.3f} s by a password check"


@pytest.mark.parametrize("body", [
    {"content": "小区停水", "category": ["help"], "answer": "已答复"},
    {"content": "小区停水", "category": {"help": 1}, "unit": "nc-water"},
    {"content": "小区停水", "category": "help", "unit": "nc-water", "time_limit": ["urgent"]},
    {"content": "小区停水", "category": "help", "unit": "nc-water", "time_limit": {}},
])
async def test_a_work_order_field_of_the_wrong_json_type_is_a_400(
    stores: Client, body: dict[str, Any]
) -> None:
    ref = await asyncio.to_thread(stores.orders.record_call, facts("wrong-type"))
    status, answer = await stores.call("zhangwei", "POST", f"/orders/{ref}/complete",
                                       json.dumps(body).encode())
    assert status == 400, answer
    assert answer["error_id"] == "bad-request"
    field = "time_limit" if "time_limit" in body else "category"
    assert field.replace("_", " ") in answer["message"], answer["message"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_not_json(stores: Client, constant: str) -> None:
    """Python's json reads them, RFC 8259 does not: a survey closed at NaN was a 500
    (a NOT NULL column), one closed at Infinity a job never due, answered as
    invalid JSON."""
    body = f'{{"order": "JX20261127000001", "number": "13907910001", "closed_at": {constant}}}'
    status, answer = await stores.call("admin", "POST", "/surveys", body.encode())
    assert status == 400, answer
    assert answer["error_id"] == "bad-request"
    assert constant in answer["message"]
    status, listing = await stores.call("admin", "GET", "/surveys")
    assert status == 200 and listing["surveys"] == []  # nothing was scheduled


async def test_a_supervisor_reads_the_transfers_of_their_centres_only(tmp_path: Path) -> None:
    """Transfers carry the caller's number: like orders, recordings and surveys, a city
    supervisor sees those of their centre's seats (and the centres below), not the
    province's; what has no seat (an IVR transfer) only one over every centre."""
    from transfer.machine import Transfer
    from transfer.services import TransferService
    from transfer.store import TransferStore

    cfg = load_config(SAMPLE)
    svc = TransferService(config=lambda: cfg, ami=lambda: None,
                          store=TransferStore(tmp_path / "t.sqlite"))
    for tid, seat, at in (("x-province", "1001", 1000.0), ("x-nanchang", "2001", 1001.0),
                          ("x-ivr", None, 1002.0)):
        svc.store.save(Transfer(id=tid, line="110", origin="agent" if seat else "ivr",
                                caller_uniqueid=tid, caller_channel="PJSIP/carrier-1",
                                caller_number="13907910001", seat=seat, routes=[],
                                answer_timeout=20), at)
    app = SimpleNamespace(config=cfg, version="t", agents=None, transfers=svc)
    try:
        async for client in serve(app):
            seen = {}
            for user in ("sup-nanchang", "sup-province", "admin", "zhangwei"):
                status, rows = await client.call(user, "GET", "/transfers")
                assert status == 200, rows
                seen[user] = [r["id"] for r in rows]
            assert seen == {
                "sup-nanchang": ["x-nanchang"],
                "sup-province": ["x-ivr", "x-nanchang", "x-province"],
                "admin": ["x-ivr", "x-nanchang", "x-province"],
                "zhangwei": ["x-province"],
            }
            status, rows = await client.call("sup-nanchang", "GET", "/transfers?seat=1001")
            assert (status, rows) == (200, [])
            for tid, want in (("x-nanchang", 200), ("x-province", 404), ("x-ivr", 404)):
                status, body = await client.call("sup-nanchang", "GET", f"/transfers/{tid}")
                assert status == want, (tid, body)
            status, body = await client.call("sup-province", "GET", "/transfers/x-ivr")
            assert status == 200 and body["caller_number"] == "13907910001"
    finally:
        await svc.close()


class OriginateAmi:
    """The AMI client as AgentService uses it for ChanSpy: records each Originate."""

    connected = True

    def __init__(self) -> None:
        self.originated: list[tuple[str, str, str | None]] = []

    async def originate(self, originate_id: str, channel: str, **kw: Any) -> None:
        self.originated.append((originate_id, channel, kw.get("data")))


async def test_a_supervisor_rings_a_seat_of_their_centres_only_to_listen(tmp_path: Path) -> None:
    """The seat that rings to listen to (whisper to, barge into) a call is one the
    supervisor may act on: a Nanchang supervisor could make a province agent's phone
    ring and join a Nanchang call."""
    from queues.agents import AgentService

    cfg = load_config(SAMPLE)
    ami = OriginateAmi()
    agents = AgentService(config=lambda: cfg, ami=lambda: ami, redis=lambda: None)
    app = SimpleNamespace(config=cfg, version="t", agents=agents)
    async for client in serve(app):
        status, body = await client.call("sup-nanchang", "POST", "/seats/2001/spy",
                                         b'{"mode": "barge", "from_seat": "1001"}')
        assert status == 403 and body["error_id"] == "forbidden", body
        assert "1001" in body["message"]
        assert ami.originated == []
        status, body = await client.call("sup-province", "POST", "/seats/2001/spy",
                                         b'{"mode": "listen", "from_seat": "1001"}')
        assert status == 200, body
        assert [(c, d) for _, c, d in ami.originated] == [("PJSIP/1001", "PJSIP/2001-,qE")]


async def test_every_route_but_health_and_status_asks_who_you_are(stores: Client) -> None:
    """/health and /status answer monitoring without credentials (no names, no numbers);
    /config lists the numbers, queues and seats: only for users."""
    for path in ("/config", "/orders", "/surveys", "/kpis", "/stats/queues"):
        status, body = await stores.call(None, "GET", path)
        assert status == 401 and body["error_id"] == "unauthorized", path
    status, body = await stores.call("water-desk", "GET", "/config")
    assert status == 200 and "1001" in body["seats"] and "12345" in body["numbers"]


async def test_a_deeply_nested_body_is_a_400(stores: Client) -> None:
    """64 KiB is room for 30000 nested arrays: past Python's recursion limit."""
    body = b"[" * 30000 + b"]" * 30000
    status, answer = await stores.call("admin", "POST", "/surveys", body)
    assert status == 400, answer
    assert answer["error_id"] == "bad-request" and "JSON" in answer["message"]


async def test_a_body_over_the_limit_is_a_413_in_the_api_s_error_shape(stores: Client) -> None:
    body = json.dumps({"order": "JX", "number": "13900000000", "pad": "x" * http.MAX_BODY})
    status, answer = await stores.call("admin", "POST", "/surveys", body.encode())
    assert status == 413, answer
    assert answer["error_id"] == "too-large" and answer["details"]["limit"] == http.MAX_BODY
    assert "larger than 65536 bytes" in answer["message"]


async def test_the_live_queues_are_not_for_units_and_need_asterisk(stores: Client) -> None:
    status, answer = await stores.call("water-desk", "GET", "/queues/live")
    assert status == 403 and answer["error_id"] == "forbidden", answer
    status, answer = await stores.call("admin", "GET", "/queues/live")  # no AMI here
    assert status == 503 and answer["error_id"] == "asterisk-unavailable", answer


async def test_a_negative_limit_is_one_row_not_every_row(tmp_path: Path) -> None:
    """``limit=-1`` went to the database as ``LIMIT -1``: every row on SQLite (the whole
    table in one answer), an error (500) on PostgreSQL. As for /orders: at least one."""
    from queues.callback import CallbackRequest
    from queues.callback_plugin import CallbackPlugin
    from recordings.plugin import RecordingsPlugin
    from transfer.machine import Transfer
    from transfer.plugin import TransferPlugin

    cfg = load_config(SAMPLE)
    app = App(instance=Instance(AsteriskRoot(tmp_path / "root"), "sec"), config=cfg, version="t")
    transfers = TransferPlugin(app)
    app.transfers = transfers.service
    callbacks, orders, surveys = CallbackPlugin(app), WorkOrderPlugin(app), SurveyPlugin(app)
    recordings = RecordingsPlugin(app)
    app.recordings = recordings.service
    for plugin in (callbacks, orders, surveys, recordings):
        await plugin.start()
    for i in (1, 2):
        transfers.service.store.save(Transfer(
            id=f"x{i}", line="110", origin="agent", caller_uniqueid=f"t{i}",
            caller_channel="PJSIP/carrier-1", seat="1001", routes=[], answer_timeout=20),
            1000.0 + i)
        callbacks.service.store.save(CallbackRequest(
            id=f"cb{i}", queue="province", number="13907910001", first_queued=1000.0,
            uniqueid=f"c{i}"))
        recordings.store.started(call_id=f"r{i}", kind="call", path=f"2026/11/27/r{i}-call.wav",
                                 started_at=time.time() - 60 + i, centre="province")
        surveys.service.schedule(f"JX2026112700000{i}", "13907910001", 1000.0 + i)
    await surveys.service.saved()
    try:
        async for client in serve(app):
            for path, rows in (("/transfers", None), ("/callbacks?state=all", "callbacks"),
                               ("/recordings", None), ("/surveys", "surveys")):
                sep = "&" if "?" in path else "?"
                status, body = await client.call("admin", "GET", path)
                assert status == 200 and len(body[rows] if rows else body) == 2, (path, body)
                status, body = await client.call("admin", "GET", f"{path}{sep}limit=-1")
                assert status == 200, (path, body)
                assert len(body[rows] if rows else body) == 1, path
    finally:
        for plugin in (callbacks, orders, surveys, recordings):
            await plugin.close()
        await transfers.service.close()


async def test_an_unknown_user_costs_a_password_check_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Answering an unknown name at once and a known one after PBKDF2 (~50 ms) told
    anyone who may connect which user names exist (agents' names: zhangwei...)."""
    checked: list[str] = []

    def verify(password: str, stored: str) -> bool:
        checked.append(password)
        return False

    monkeypatch.setattr(http, "verify_password", verify)
    app = SimpleNamespace(config=load_config(SAMPLE), version="t", agents=None)
    async for client in serve(app):
        for user in ("zhangwei", "nobody"):
            status, body = await client.call(user, "GET", "/stats/queues", password=f"{user}-x")
            assert status == 401 and body["message"] == "unknown user or wrong password"
    assert checked == ["zhangwei-x", "nobody-x"]
