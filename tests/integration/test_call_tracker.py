"""Issue #6 item 2 (intake): every call that reaches the hotline becomes one CallFacts.

Real calls on a real Asterisk: answered by a SIPp seat, abandoned in the queue,
hung up in the IVR, handed to 119 from the IVR (a SIPp dispatcher answers),
a call-back booked, a legacy number answered by its department's seat, and a
call that ends while the controller is killed (its facts come from the CDR and
queue_log when it starts again, exactly once). The controller's default sink
appends each delivered CallFacts to a JSON-lines file (HOTLINE_CALL_FACTS_FILE),
and ``GET /calls/recent`` lists them; each call has exactly one work order
(``GET /orders?call_id=``) opened as its ending says.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from workorders.call_service import FACTS_FILE_ENV

from . import harness
from .harness import Hotline
from .sipp import Sipp, TonePeer, caller_scenario, citizen_call_scenario, dtmf, pause
from .test_first_call import call
from .test_queue_waiting import offer_and_accept
from .test_transfer import (
    DISPATCHER_HZ,
    Party,
    agent_in_call,
    dispatcher,
    transfer,
    wait_state,
)
from .test_transfer import agent as transfer_agent

FACTS_FILE: Path | None = None


def hotline_config() -> dict[str, Any]:
    global FACTS_FILE
    cfg = harness.test_config()
    cfg["queues"]["province"].update(
        ring_timeout=3, wrapup=1, announce_every=10, callback_after=4, message_every=20
    )
    cfg["emergency_lines"]["119"].update(answer_timeout=3, prompt=None)
    cfg["menus"]["main"]["choices"].append({"key": "7", "action": "emergency:119"})
    # The controller started for this module appends every CallFacts here.
    FACTS_FILE = (
        Path(os.environ.get("TMPDIR", "/tmp")) / f"call-facts-{os.getpid()}-{time.time_ns()}.jsonl"
    )
    os.environ[FACTS_FILE_ENV] = str(FACTS_FILE)
    return cfg


@pytest.fixture(scope="module", autouse=True)
def _facts_env() -> Iterator[None]:
    yield
    os.environ.pop(FACTS_FILE_ENV, None)
    if FACTS_FILE is not None and FACTS_FILE.exists():
        FACTS_FILE.unlink()


def file_facts() -> list[dict[str, Any]]:
    assert FACTS_FILE is not None
    if not FACTS_FILE.exists():
        return []
    return [
        json.loads(line) for line in FACTS_FILE.read_text(encoding="utf-8").splitlines() if line
    ]


def recent(h: Hotline) -> list[dict[str, Any]]:
    status, body = h.api("GET", "/calls/recent?limit=200", "admin")
    assert status == 200, body
    return list(body["calls"])


def facts_for(h: Hotline, caller: str, timeout: float = 15) -> dict[str, Any]:
    """The one CallFacts of ``caller``'s call, once delivered (file and API agree)."""
    got = h.wait_for(
        lambda: [f for f in file_facts() if f["caller"] == caller],
        timeout,
        f"the call facts of {caller}",
    )
    assert len(got) == 1, got
    listed = [f for f in recent(h) if f["caller"] == caller]
    assert listed == got, (listed, got)
    check_order(h, got[0])
    return got[0]


# How each way a call ends opens its work order (workorders/store.py).
FIRST_STATUS = {"answered": "open", "transferred": "open", "abandoned": "callback",
                "callback": "callback", "failed": "callback", "ivr_hangup": "void",
                "emergency": "closed"}


def check_order(h: Hotline, f: dict[str, Any]) -> None:
    """The call has exactly one work order, holding its facts."""
    status, rows = h.api("GET", f"/orders?call_id={f['call_id']}", "admin")
    assert status == 200 and len(rows) == 1, rows
    status, o = h.api("GET", f"/orders/{rows[0]['ref']}", "admin")
    assert status == 200, o
    assert o["status"] == FIRST_STATUS[f["outcome"]], (o, f)
    assert o["caller"] == f["caller"] and o["origin"] == f["origin"], (o, f)
    assert [c["call_id"] for c in o["calls"]] == [f["call_id"]], o
    assert o["calls"][0]["outcome"] == f["outcome"], o


def t(iso: str | None) -> float:
    assert iso is not None
    return datetime.fromisoformat(iso).timestamp()


def check_times(f: dict[str, Any], t0: float, t1: float) -> None:
    """Started after the test placed the call, ended before it finished; answer between."""
    assert t0 - 1 <= t(f["started_at"]) <= t(f["ended_at"]) <= t1 + 1, f
    if f["answered_at"] is not None:
        assert t(f["started_at"]) <= t(f["answered_at"]) <= t(f["ended_at"]), f


def ok(s: Sipp, timeout: float = 60) -> None:
    res = s.wait(timeout)
    assert res.returncode == 0, res.explain()


def test_answered_by_an_agent(clean: Hotline, workdir: Path) -> None:
    h = clean
    agent = h.register_seat(workdir, "1001")
    try:
        h.login_seat("1001")
        h.wait_for(
            lambda: re.search(r"\(PJSIP/1001\).*Not in use", h.cli("queue show province")),
            10,
            "seat 1001 available",
        )
        t0 = time.time()
        ok(call(h, workdir, pause(800) + dtmf("2", then_ms=5000), caller="13907910101"))
        f = facts_for(h, "13907910101")
        check_times(f, t0, time.time())
    finally:
        agent.stop()
    assert f["outcome"] == "answered" and f["origin"] == "12345" and f["called"] == "12345"
    assert f["queue"] == "province" and f["centre"] == "province" and f["agent"] == "zhangwei"
    assert f["call_id"] == f["uniqueid"] and f["category"] == "complaint"  # key 2 in the sample
    assert 0 <= f["wait_seconds"] < 4, f  # an agent was free: answered at once
    assert [s["answer"] for s in f["ivr_path"]] == ["2"]
    assert f["city"] == "nanchang"  # the caller's mobile segment


def test_abandoned_in_the_queue(clean: Hotline, workdir: Path) -> None:
    h = clean  # nobody logged in: the province queue waits
    t0 = time.time()
    ok(call(h, workdir, pause(800) + dtmf("2", then_ms=4000), caller="13907910102"))
    f = facts_for(h, "13907910102")
    check_times(f, t0, time.time())
    assert f["outcome"] == "abandoned" and f["queue"] == "province" and f["agent"] is None
    assert f["answered_at"] is None and 2.5 <= f["wait_seconds"] <= 6, f


def test_hung_up_in_the_ivr(clean: Hotline, workdir: Path) -> None:
    h = clean
    t0 = time.time()
    ok(call(h, workdir, pause(1500), caller="13907910103"))
    f = facts_for(h, "13907910103")
    check_times(f, t0, time.time())
    assert f["outcome"] == "ivr_hangup" and f["queue"] is None and f["wait_seconds"] is None
    assert f["answered_at"] is None and f["ivr_path"] == []
    # The IVR kept how far the caller got, for the work order.
    assert h.call_paths()[f["uniqueid"]]["reason"] == "caller-hung-up"


def test_emergency_from_the_ivr(clean: Hotline, workdir: Path) -> None:
    h = clean
    d = dispatcher(h, workdir, "answer")
    ip, _ = h.trunk("carrier")
    media = TonePeer(ip, 600)
    scen = citizen_call_scenario("12345", "13907910104", ip, media.port, 9000)
    c = Party(
        Sipp(workdir, "citizen-119", scen, local_ip=ip, target=h.sip_target, timeout_s=40), media
    )
    t0 = time.time()
    try:
        h.wait_for(lambda: c.media.remote is not None, 5, "the welcome prompt")
        time.sleep(1.0)
        c.media.dtmf("7")  # emergency:119
        h.wait_for(
            lambda: c.media.amplitude(DISPATCHER_HZ, time.monotonic() - 1) > 1500,
            12,
            "the citizen hears the dispatcher",
        )
        ok(c.sipp)
        f = facts_for(h, "13907910104")
        check_times(f, t0, time.time())
    finally:
        for p in (c, d):
            p.close()
    assert f["outcome"] == "emergency" and f["queue"] is None, f
    assert [(x["line"], x["origin"]) for x in f["transfers"]] == [("119", "ivr")], f["transfers"]
    assert f["ivr_path"][-1]["decision"] == "emergency:119"


def test_agent_transfers_the_call_to_119(clean: Hotline, workdir: Path) -> None:
    """Answered by seat 1001, then a warm transfer to 119 that connects: emergency."""
    h = clean
    a = transfer_agent(h, workdir)
    d = dispatcher(h, workdir, "answer")
    ip, _ = h.trunk("carrier")
    media = TonePeer(ip, 600)
    scen = citizen_call_scenario("12345", "13907910109", ip, media.port, 16000)
    c = Party(
        Sipp(workdir, "citizen-xfer", scen, local_ip=ip, target=h.sip_target, timeout_s=40), media
    )
    t0 = time.time()
    try:
        h.wait_for(lambda: c.media.remote is not None, 5, "the welcome prompt")
        time.sleep(1.0)
        c.media.dtmf("2")  # queue:province
        agent_in_call(h)
        tid, _ = transfer(h, "119")
        wait_state(h, tid, "three_way", 10)
        ok(c.sipp)  # the citizen hangs up; the transfer service clears the other legs
        f = facts_for(h, "13907910109")
        check_times(f, t0, time.time())
    finally:
        for p in (c, d, a):
            p.close()
    assert f["outcome"] == "emergency" and f["agent"] == "zhangwei" and f["queue"] == "province"
    assert f["answered_at"] is not None and f["wait_seconds"] < 4, f
    assert [(x["line"], x["origin"], x["outcome"]) for x in f["transfers"]] == [
        ("119", "agent", "connected")
    ], f["transfers"]


def test_centre_mode_legacy_number_handed_to_its_centre(clean: Hotline, workdir: Path) -> None:
    """12315 keeps its own centre: the call is dialled over its trunk and answered there."""
    h = clean
    centre = dispatcher(h, workdir, "answer", trunk="market-centre")
    t0 = time.time()
    try:
        ok(call(h, workdir, pause(4000), caller="13907910110", service="12315"))
        f = facts_for(h, "13907910110")
        check_times(f, t0, time.time())
    finally:
        centre.close()
    assert (f["outcome"], f["origin"], f["department"], f["queue"]) == (
        "transferred",
        "12315",
        "market",
        None,
    ), f


def test_a_call_handed_over_by_110(clean: Hotline, workdir: Path) -> None:
    """An emergency centre hands a matter to 12345: origin is the line; it waits, gives up."""
    h = clean
    ip, _ = h.trunk("emergency")
    t0 = time.time()
    ok(
        Sipp(
            workdir,
            "from-110",
            caller_scenario(pause(3000), service="12345", caller="110"),
            local_ip=ip,
            target=h.sip_target,
            timeout_s=30,
        )
    )
    f = h.wait_for(lambda: [x for x in file_facts() if x["caller"] == "110"], 15, "the facts")[0]
    check_times(f, t0, time.time())
    assert (f["outcome"], f["origin"], f["called"], f["queue"]) == (
        "abandoned",
        "110",
        "12345",
        "province",
    ), f


def test_callback_booked(clean: Hotline, workdir: Path) -> None:
    h = clean
    t0 = time.time()
    ok(offer_and_accept(h, workdir, "13907910105", "cb-caller"))
    f = facts_for(h, "13907910105")
    check_times(f, t0, time.time())
    assert f["outcome"] == "callback" and f["queue"] == "province" and f["agent"] is None, f
    assert 5 <= f["wait_seconds"] <= 9, f  # pressed 1 about 6 s after joining
    for c in h.api("GET", "/callbacks?state=open", "admin")[1]["callbacks"]:
        h.api("POST", f"/callbacks/{c['id']}/cancel", "admin")


def test_legacy_number_answered_by_its_department_seat(clean: Hotline, workdir: Path) -> None:
    h = clean
    agent = h.register_seat(workdir, "1003")
    try:
        h.login_seat("1003")
        h.wait_for(
            lambda: re.search(r"\(PJSIP/1003\).*Not in use", h.cli("queue show social")),
            10,
            "seat 1003 available",
        )
        t0 = time.time()
        # The greeting alone is about 10 s; then the social queue rings seat 1003.
        ok(call(h, workdir, pause(16000), caller="13907910106", service="12333"))
        f = facts_for(h, "13907910106")
        check_times(f, t0, time.time())
    finally:
        agent.stop()
    assert f["outcome"] == "answered" and f["origin"] == "12333" and f["department"] == "social"
    assert f["queue"] == "social" and f["agent"] == "wangfang" and f["ivr_path"] == []


def test_calls_ending_while_the_controller_is_down_or_after_its_restart(
    clean: Hotline, workdir: Path
) -> None:
    """Killed with two callers waiting: one gives up while it is down, the other after
    it is back (a call it never saw start). Each gets its facts once, from the CDR."""
    h = clean
    t0 = time.time()
    down = call(h, workdir, pause(800) + dtmf("2", then_ms=6000), caller="13907910107", name="down")
    after = call(
        h, workdir, pause(800) + dtmf("2", then_ms=18000), caller="13907910108", name="after"
    )
    h.wait_for(
        lambda: h.cli("queue show province").count("PJSIP/carrier-") == 2,
        10,
        "both callers waiting",
    )
    h.kill_controller()
    ok(down)  # gives up while the controller is down
    assert not [f for f in file_facts() if f["caller"] in ("13907910107", "13907910108")]
    h.start_controller()
    f = facts_for(h, "13907910107")
    check_times(f, t0, time.time())
    assert f["outcome"] == "abandoned" and f["queue"] == "province", f
    # In the queue from joining (after the IVR, slower on a loaded machine) to hanging up
    # 6 s after the key; queue_log counts whole seconds.
    assert 2 <= f["wait_seconds"] <= 8, f
    assert f["category"] == "complaint" and f["ivr_path"][0]["answer"] == "2"  # path from Redis
    ok(after)  # gives up once the controller is back
    g = facts_for(h, "13907910108")
    check_times(g, t0, time.time())
    assert g["outcome"] == "abandoned" and 14 <= g["wait_seconds"] <= 20, g
    assert h.wait_no_channels(10) == 0
    # Another start, and an Asterisk reconnection, deliver nothing again.
    h.stop_controller()
    h.start_controller()
    time.sleep(3)
    for caller in ("13907910107", "13907910108"):
        assert len([f for f in file_facts() if f["caller"] == caller]) == 1
    assert len({f["call_id"] for f in file_facts()}) == len(file_facts())
    # Only the citizens' calls: no transfer or call-back leg was taken for one.
    assert {f["caller"] for f in file_facts()} <= {f"139079101{i:02d}" for i in range(1, 11)} | {
        "110"
    }
    assert all(re.fullmatch(r"\d+\.\d+", f["call_id"]) for f in file_facts())
