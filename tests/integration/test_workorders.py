"""Issue #6 item 2: work orders in the running controller.

The controller opens the store in the instance's state folder, serves the order
API with the config's users (agents, supervisors, unit desks) and runs the
supervision job, whose escalation is POSTed to a notice URL on 127.0.0.1. Orders
are written from this process into the same SQLite file, as the call tracker in
the controller does from CallFacts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dialplan.validate import load_config
from queues.hours import add_working_days, working_calendar
from workorders.facts import CallFacts, Outcome
from workorders.store import WorkOrderStore

from .harness import Hotline
from .harness import test_config as sample_config
from .sipp import free_port

UNIT_PASSWORDS = {"water-desk": "unit-water-pw", "housing-desk": "unit-housing-pw"}
NOTICE_PORT = free_port()
received: list[dict[str, Any]] = []


def hotline_config() -> dict[str, Any]:
    cfg = sample_config()
    # The harness opens every timetable always (calls must not depend on the clock);
    # the orders' working days need a real week.
    cfg["hours"]["workweek"] = {"weekly": {"mon-fri": ["08:30-18:00"]}}
    cfg["workorders"] = {
        **cfg["workorders"],
        "calendar": "workweek",
        "time_limits": {**cfg["workorders"]["time_limits"], "urgent": "3s"},
        "remind_before": "1s",
        "supervise_every": 5,
        "notice_url": f"http://127.0.0.1:{NOTICE_PORT}/notices",
    }
    return cfg


class Notices(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def notices() -> Iterator[list[dict[str, Any]]]:
    server = ThreadingHTTPServer(("127.0.0.1", NOTICE_PORT), Notices)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield received
    server.shutdown()
    server.server_close()


def api(h: Hotline, user: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return h.api(method, path, user, body, password=UNIT_PASSWORDS.get(user))


def facts(call_id: str, agent: str | None, centre: str) -> CallFacts:
    start = datetime.now(UTC) - timedelta(minutes=3)
    return CallFacts(
        call_id=call_id, uniqueid=call_id, caller="13900000009", called="12345",
        outcome=Outcome.ANSWERED if agent else Outcome.ABANDONED, started_at=start,
        ended_at=start + timedelta(minutes=2), centre=centre, agent=agent,
    )


def test_orders_through_the_controller(clean: Hotline, notices: list[dict[str, Any]]) -> None:
    h = clean
    store = WorkOrderStore.in_state_dir(h.instance.state)
    try:
        ref = store.record_call(facts("it-1", "zhangwei", "province"))
        st, o = api(h, "zhangwei", "POST", f"/orders/{ref}/complete",
                    {"content": "路面塌陷", "category": "help", "unit": "nc-housing"})
        assert st == 200 and o["status"] == "dispatched", o
        # help -> general: 7 working days (Mon-Fri) of the calendar, in the controller
        assert o["time_limit"] == "general"
        working = working_calendar(load_config(h.config_file))
        dispatched = datetime.fromisoformat(o["dispatched_at"])
        due = datetime.fromisoformat(o["deadline"])
        assert due == add_working_days(dispatched, 7, working)
        # Seven working days always span a weekend: at least 9 calendar days, not 7.
        assert due - dispatched >= timedelta(days=9), (dispatched, due)
        st, rows = api(h, "water-desk", "GET", "/orders")
        assert st == 200 and rows == []
        st, o = api(h, "housing-desk", "POST", f"/orders/{ref}/return", {"reason": "属市政"})
        assert st == 200 and o["status"] == "returned"
        st, o = api(h, "sup-province", "POST", f"/orders/{ref}/dispatch",
                    {"unit": "nc-water", "time_limit": "urgent"})
        assert st == 200 and o["unit"] == "nc-water"
        st, o = api(h, "water-desk", "POST", f"/orders/{ref}/accept")
        assert st == 200 and o["status"] == "accepted"

        # the controller's supervision job escalates it (urgent is 3 s here) and posts the notice
        def escalated() -> bool:
            return any(n["ref"] == ref and n["action"] == "escalated" for n in notices)

        h.wait_for(escalated, 20, "escalation notice")
        st, o = api(h, "sup-nanchang", "GET", f"/orders/{ref}")
        assert st == 200 and "escalated" in [e["action"] for e in o["events"]]
        assert next(n for n in notices if n["ref"] == ref)["unit_name"] == "南昌水务集团"
        st, sup = api(h, "water-desk", "GET", "/supervision")
        assert st == 200 and ref in [x["ref"] for x in sup["overdue"]]

        st, o = api(h, "water-desk", "POST", f"/orders/{ref}/reply", {"reply": "已处置"})
        assert st == 200
        st, o = api(h, "sup-province", "POST", f"/orders/{ref}/close")
        assert st == 200 and o["status"] == "closed"
        st, body = api(h, "sup-province", "POST", f"/orders/{ref}/close")
        assert st == 409 and body["error_id"] == "invalid-transition"
    finally:
        store.close()
