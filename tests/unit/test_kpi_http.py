"""GET /kpis and /kpis.csv through the real HTTP API (hotline.http.start on loopback),
with the sample config's users, over the generated orders on SQLite."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine

from dialplan.validate import load_config_text
from hotline import http
from hotline.storage import open_engine
from queues.hours import DEFAULT_TZ
from tests.kpi_data import T0, generate, hand_count
from workorders.kpi import KPI_LABELS, KPI_NAMES
from workorders.schema import Base
from workorders.store import CALLS as CALLS_TABLE
from workorders.store import ORDERS as ORDERS_TABLE

ORDERS, CALLS = generate()
SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
USERS = {  # the sample passwords listed in config/hotline.yaml
    "admin": "admin-pw", "sup-nanchang": "sup-nanchang-pw",
    "sup-province": "sup-province-pw", "zhangwei": "agent-1001",
}
START, END = datetime(2026, 3, 1, tzinfo=DEFAULT_TZ), datetime(2026, 5, 1, tzinfo=DEFAULT_TZ)
PERIOD = {"from": "2026-03-01", "to": "2026-05-01"}  # dates without an offset: China time


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    eng = open_engine(f"sqlite:///{tmp_path_factory.mktemp('kpihttp')}/orders.db")
    Base.metadata.create_all(eng)
    with eng.begin() as conn:
        conn.execute(insert(ORDERS_TABLE), ORDERS)
        conn.execute(insert(CALLS_TABLE), CALLS)
    yield eng
    eng.dispose()


class Api:
    def __init__(self, base: str, session: aiohttp.ClientSession, audited: list[Any]) -> None:
        self.base, self.session, self.audited = base, session, audited

    async def get(self, user: str | None, path: str, **params: str) -> tuple[int, Any, str]:
        headers = {}
        if user is not None:
            token = base64.b64encode(f"{user}:{USERS[user]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        async with self.session.get(self.base + path, params=params, headers=headers) as r:
            raw = await r.read()
            ctype = r.headers.get("Content-Type", "")
            body = await r.json() if ctype.startswith("application/json") else None
            return r.status, body, raw.decode("utf-8") if body is None else ctype


@pytest.fixture
async def api(engine: Engine) -> AsyncIterator[Api]:
    cfg = load_config_text(SAMPLE.read_text(encoding="utf-8"), "hotline.yaml")
    audited: list[Any] = []

    async def audit(who: Any, action: str, seat: str, **details: object) -> None:
        audited.append((who.name, action, details))

    app = SimpleNamespace(config=cfg, agents=SimpleNamespace(audit=audit),
                          orders=SimpleNamespace(engine=engine))
    runner = await http.start(app, SimpleNamespace(), "127.0.0.1", 0)
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as session:
        yield Api(f"http://127.0.0.1:{port}", session, audited)
    await runner.cleanup()


async def test_admin_gets_every_kpi(api: Api) -> None:
    status, body, _ = await api.get("admin", "/kpis", **PERIOD)
    assert status == 200, body
    assert body["kpis"] == hand_count(ORDERS, CALLS, START, END)
    assert body["from"] == "2026-02-28T16:00:00+00:00" and body["centres"] is None
    assert api.audited[-1][:2] == ("admin", "kpis-json")


async def test_filters(api: Api) -> None:
    status, body, _ = await api.get("admin", "/kpis", centre="ganzhou", unit="water",
                                    category="complaint", **PERIOD)
    assert status == 200, body
    assert body["kpis"] == hand_count(ORDERS, CALLS, START, END, {"ganzhou"}, "water", "complaint")
    # an ISO time with its offset, and Unix seconds
    t1 = T0 + timedelta(days=10)
    status, body, _ = await api.get("admin", "/kpis", **{"from": T0.isoformat(),
                                                          "to": str(int(t1.timestamp()))})
    assert status == 200 and body["kpis"] == hand_count(ORDERS, CALLS, T0, t1)


async def test_supervisor_sees_their_centre_only(api: Api) -> None:
    status, body, _ = await api.get("sup-nanchang", "/kpis", **PERIOD)
    assert status == 200 and body["centres"] == ["nanchang"]
    assert body["kpis"] == hand_count(ORDERS, CALLS, START, END, {"nanchang"})
    status, body, _ = await api.get("sup-nanchang", "/kpis", centre="ganzhou", **PERIOD)
    assert status == 403 and body["error_id"] == "forbidden"
    status, body, _ = await api.get("sup-nanchang", "/kpis.csv", centre="province", **PERIOD)
    assert status == 403
    # the province supervisor sees the cities below it
    status, body, _ = await api.get("sup-province", "/kpis", centre="ganzhou", **PERIOD)
    assert status == 200
    assert body["kpis"] == hand_count(ORDERS, CALLS, START, END, {"ganzhou"})
    status, body, _ = await api.get("sup-province", "/kpis", **PERIOD)
    assert body["centres"] == ["ganzhou", "nanchang", "province"]


async def test_agents_and_strangers_are_refused(api: Api) -> None:
    status, body, _ = await api.get("zhangwei", "/kpis", **PERIOD)
    assert status == 403 and "supervisors and admins" in body["message"]
    status, body, _ = await api.get(None, "/kpis.csv", **PERIOD)
    assert status == 401


@pytest.mark.parametrize("params,message", [
    ({}, "from is required"),
    ({"from": "2026-03-01"}, "to is required"),
    ({"from": "yesterday", "to": "2026-05-01"}, "from must be an ISO 8601 date or time"),
    ({"from": "2026-05-01", "to": "2026-03-01"}, "end must be after start"),
    ({**PERIOD, "centre": "shanghai"}, "no centre 'shanghai'"),
    ({**PERIOD, "category": "praise"}, "category must be one of consultation"),
    ({**PERIOD, "unit": "water' OR 1=1"}, "unit must be a unit id"),
    ({**PERIOD, "group_by": "agent"}, "group_by must be one of centre, unit, category"),
])
async def test_bad_input_is_a_clear_400(api: Api, params: dict[str, str], message: str) -> None:
    status, body, _ = await api.get("admin", "/kpis", **params)
    assert status == 400 and body["error_id"] == "bad-request"
    assert message in body["message"]


async def test_csv_export(api: Api) -> None:
    status, _, text = await api.get("admin", "/kpis.csv", **PERIOD)
    assert status == 200
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["kpi", "label", "numerator", "denominator", "rate"]
    want = hand_count(ORDERS, CALLS, START, END)
    assert [r[0] for r in rows[1:]] == list(KPI_NAMES)
    for name, label, num, den, rate in rows[1:]:
        assert label == KPI_LABELS[name]
        w = want[name]
        assert (int(num), int(den)) == (w["numerator"], w["denominator"])
        assert rate == f"{w['rate']:.4f}"
    assert rows[1][1] == "电话接通率"
    assert api.audited[-1][:2] == ("admin", "kpis-csv")


async def test_csv_by_centre_for_a_supervisor(api: Api) -> None:
    status, _, text = await api.get("sup-province", "/kpis.csv", group_by="centre", **PERIOD)
    assert status == 200
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["centre"] for r in rows} == {"province", "nanchang", "ganzhou"}
    assert len(rows) == 3 * len(KPI_NAMES)
    for r in rows:
        w = hand_count(ORDERS, CALLS, START, END, {r["centre"]})[r["kpi"]]
        assert (int(r["numerator"]), int(r["denominator"])) == (w["numerator"], w["denominator"])
    status, body, _ = await api.get("sup-province", "/kpis", group_by="category", **PERIOD)
    assert status == 200 and body["group_by"] == "category"
    groups = {g["category"]: g["kpis"] for g in body["groups"]}
    assert groups["help"] == hand_count(ORDERS, CALLS, START, END, category="help")


async def test_csv_headers(api: Api) -> None:
    async with api.session.get(api.base + "/kpis.csv", params=PERIOD, headers={
        "Authorization": "Basic " + base64.b64encode(b"admin:admin-pw").decode()}) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
        name = "kpis-20260301-20260501.csv"
        assert r.headers["Content-Disposition"] == f'attachment; filename="{name}"'
        body = (await r.read()).decode("utf-8")
        assert body.startswith("kpi,label,numerator,denominator,rate\r\n")


async def test_without_a_work_order_store_the_answer_is_503() -> None:
    cfg = load_config_text(SAMPLE.read_text(encoding="utf-8"), "hotline.yaml")
    runner = await http.start(SimpleNamespace(config=cfg, agents=None), SimpleNamespace(),
                              "127.0.0.1", 0)
    try:
        api = f"http://127.0.0.1:{runner.addresses[0][1]}"
        token = base64.b64encode(b"admin:admin-pw").decode()
        async with aiohttp.ClientSession() as session, session.get(
            api + "/kpis", params=PERIOD, headers={"Authorization": f"Basic {token}"}
        ) as r:
            assert r.status == 503 and (await r.json())["error_id"] == "no-database"
    finally:
        await runner.cleanup()
