"""The work-order HTTP API as mounted by hotline.http.start (no Asterisk): roles and unit
isolation, over real HTTP on 127.0.0.1 with the sample config's users."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dialplan.model import Config
from dialplan.validate import load_config
from hotline import http
from workorders.facts import CallFacts, Outcome
from workorders.plugin import open_store
from workorders.store import WorkOrderStore

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
T0 = datetime.now(UTC) - timedelta(minutes=5)
PASSWORDS = {
    "zhangwei": "agent-1001",
    "liuyang": "agent-1002",
    "sup-nanchang": "sup-nanchang-pw",
    "sup-province": "sup-province-pw",
    "admin": "admin-pw",
    "water-desk": "unit-water-pw",
    "housing-desk": "unit-housing-pw",
}


class Audit:
    """Stands in for AgentService.audit (the Redis audit log): records the entries."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, dict[str, Any]]] = []

    async def audit(self, who: Any, action: str, seat: str, **details: Any) -> None:
        self.entries.append((who.name, action, details))


@dataclass
class FakeApp:
    config: Config
    orders: WorkOrderStore
    version: str = "test"
    agents: Any = None
    transfers: Any = None
    callbacks: Any = None


class Api:
    def __init__(self, base: str, session: aiohttp.ClientSession, audit: Audit) -> None:
        self.base, self.session, self.audit = base, session, audit

    async def call(self, user: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
        headers = {"Authorization": f"Basic {token}"}
        async with self.session.request(method, self.base + path, json=body, headers=headers) as r:
            return r.status, await r.json()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Api, WorkOrderStore]]:
    cfg = load_config(SAMPLE)
    store = open_store(lambda: cfg, tmp_path / "state")
    app = FakeApp(cfg, store, agents=Audit())
    runner = await http.start(app, controller=None, host="127.0.0.1", port=0)
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as s:
        yield Api(f"http://127.0.0.1:{port}", s, app.agents), store
    await runner.cleanup()
    store.close()


def facts(call_id: str, agent: str | None = "zhangwei", centre: str = "province") -> CallFacts:
    return CallFacts(
        call_id=call_id,
        uniqueid=call_id,
        caller="13900000002",
        called="12345",
        outcome=Outcome.ANSWERED if agent else Outcome.ABANDONED,
        started_at=T0,
        ended_at=T0 + timedelta(minutes=2),
        centre=centre,
        agent=agent,
    )


async def test_full_loop_and_unit_isolation(api: tuple[Api, WorkOrderStore]) -> None:
    client, store = api
    ref = store.record_call(facts("c1"))
    other = store.record_call(facts("c2", agent="liuyang"))

    # the agent sees only the orders of calls they answered
    st, rows = await client.call("zhangwei", "GET", "/orders")
    assert st == 200 and [o["ref"] for o in rows] == [ref]
    st, body = await client.call("zhangwei", "GET", f"/orders/{other}")
    assert st == 404 and body["error_id"] == "not-found"

    st, o = await client.call(
        "zhangwei",
        "POST",
        f"/orders/{ref}/complete",
        {"content": "小区停水", "category": "help", "unit": "nc-water", "time_limit": "utilities"},
    )
    assert st == 200 and o["status"] == "dispatched" and o["unit"] == "nc-water"
    deadline = datetime.fromisoformat(o["deadline"])
    assert timedelta(hours=23, minutes=59) < deadline - datetime.now(UTC) <= timedelta(hours=24)

    # another unit neither sees nor touches it
    st, rows = await client.call("housing-desk", "GET", "/orders")
    assert st == 200 and rows == []
    st, body = await client.call("housing-desk", "POST", f"/orders/{ref}/accept")
    assert st == 404
    # the right unit does; an agent may not accept (403), a unit may not close (403)
    st, body = await client.call("zhangwei", "POST", f"/orders/{ref}/accept")
    assert st == 403 and body["message"] == "a agent may not accept an order"
    st, o = await client.call("water-desk", "POST", f"/orders/{ref}/return", {"reason": "属住建局"})
    assert st == 200 and o["status"] == "returned" and o["unit"] is None
    st, body = await client.call("water-desk", "POST", f"/orders/{ref}/reply", {"reply": "x"})
    assert st == 404  # returned: no longer the unit's

    # the dispatcher (supervisor of the province centre) re-dispatches
    st, o = await client.call(
        "sup-province", "POST", f"/orders/{ref}/dispatch", {"unit": "nc-housing"}
    )
    assert st == 200 and o["status"] == "dispatched" and o["unit"] == "nc-housing"
    st, body = await client.call("housing-desk", "POST", f"/orders/{ref}/close")
    assert st == 403
    st, o = await client.call("housing-desk", "POST", f"/orders/{ref}/accept")
    assert st == 200 and o["status"] == "accepted"
    st, body = await client.call("sup-province", "POST", f"/orders/{ref}/close")
    assert st == 409 and body["error_id"] == "invalid-transition"
    assert body["message"] == f"cannot close order {ref}: it is accepted"
    assert body["details"]["allowed_from"] == ["replied"]
    st, body = await client.call("housing-desk", "POST", f"/orders/{ref}/reply", {})
    assert st == 400 and "reply is required" in body["message"]
    st, o = await client.call(
        "housing-desk", "POST", f"/orders/{ref}/reply", {"reply": "已恢复供水"}
    )
    assert st == 200 and o["status"] == "replied"
    st, o = await client.call("sup-province", "POST", f"/orders/{ref}/close")
    assert st == 200 and o["status"] == "closed"
    st, o = await client.call(
        "sup-province", "POST", f"/orders/{ref}/reopen", {"reason": "群众不满意"}
    )
    assert st == 200 and (o["status"], o["rehandled"], o["unit"]) == ("dispatched", 1, "nc-housing")

    assert client.audit.entries[:2] == [
        ("zhangwei", "order-complete", {"order": ref, "status": "dispatched", "unit": "nc-water"}),
        ("water-desk", "order-return", {"order": ref, "status": "returned", "unit": None}),
    ]
    assert len(client.audit.entries) == 7  # every successful action, no refused one
    st, o = await client.call("admin", "GET", f"/orders/{ref}")
    assert [e["action"] for e in o["events"]] == [
        "created",
        "complete",
        "return",
        "dispatch",
        "accept",
        "reply",
        "close",
        "reopen",
    ]
    assert [e["actor"] for e in o["events"]][1:4] == ["zhangwei", "water-desk", "sup-province"]
    assert o["calls"][0]["call_id"] == "c1"


async def test_supervisor_scope_merge_and_supervision(api: tuple[Api, WorkOrderStore]) -> None:
    client, store = api
    a = store.record_call(facts("n1", agent=None, centre="nanchang"))
    b = store.record_call(facts("n2", agent=None, centre="nanchang"))
    p = store.record_call(facts("p1", agent=None, centre="province"))
    # a Nanchang supervisor sees Nanchang's orders, not the province's
    st, rows = await client.call("sup-nanchang", "GET", "/orders?status=callback")
    assert st == 200 and sorted(o["ref"] for o in rows) == sorted([a, b])
    st, _ = await client.call("sup-nanchang", "POST", f"/orders/{p}/merge", {"into": a})
    assert st == 404
    st, o = await client.call("sup-nanchang", "POST", f"/orders/{b}/merge", {"into": a})
    assert st == 200 and o["status"] == "merged" and o["merged_into_ref"] == a
    st, o = await client.call("sup-nanchang", "GET", f"/orders/{a}")
    assert sorted(c["call_id"] for c in o["calls"]) == ["n1", "n2"]
    st, body = await client.call("sup-nanchang", "POST", f"/orders/{a}/fly")
    assert st == 404 and "fly" in body["message"]

    st, o = await client.call(
        "sup-nanchang",
        "POST",
        f"/orders/{a}/complete",
        {"content": "路灯不亮", "category": "help", "unit": "nc-housing", "time_limit": "urgent"},
    )
    assert st == 200
    # urgent (2h) with remind_before 1h: not yet near; the store's clock moves on
    st, sup = await client.call("sup-nanchang", "GET", "/supervision")
    assert st == 200 and sup["near_deadline"] == [] and sup["overdue"] == []
    store.supervise(datetime.now(UTC) + timedelta(hours=3))
    with store.engine.begin() as c:  # make it overdue in real time for GET /supervision
        from sqlalchemy import update

        from workorders.schema import OrderRow

        c.execute(
            update(OrderRow)
            .where(OrderRow.ref == a)
            .values(deadline=datetime.now(UTC) - timedelta(minutes=1))
        )
    st, sup = await client.call("housing-desk", "GET", "/supervision")
    assert st == 200 and [o["ref"] for o in sup["overdue"]] == [a]
    st, sup = await client.call("water-desk", "GET", "/supervision")
    assert st == 200 and sup["overdue"] == []
    st, _ = await client.call("zhangwei", "GET", "/supervision")
    assert st == 403
    st, o = await client.call("admin", "GET", f"/orders/{a}")
    assert [e["action"] for e in o["events"]][-1] == "escalated"


async def test_bad_query_and_unauthenticated(api: tuple[Api, WorkOrderStore]) -> None:
    client, _ = api
    st, body = await client.call("admin", "GET", "/orders?since=yesterday")
    assert st == 400 and "yesterday" in body["message"]
    async with client.session.get(client.base + "/orders") as r:
        assert r.status == 401
