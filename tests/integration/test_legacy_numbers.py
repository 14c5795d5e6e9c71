"""Issue #5 item 2: retained legacy numbers, each mode with real calls.

* forward (保留号码、呼叫转移): 12333 over the carrier trunk → the department's greeting
  → the social queue, no menu; the origin is in Redis, in channel variables and in the
  agent's caller-ID name.
* centre (保留中心、在线转办): 12315 (and the menu choice legacy:12315 from 12345) →
  the market regulation centre's trunk (a SIPp UAS on 127.0.0.5) with the case
  reference, the caller's locality and the number dialled in SIP headers; a value that
  fails the check is not sent; a busy centre gives the caller a person.
* relay (完善中心、呼叫接转): the Ganzhou centre (SIPp on 127.0.0.6) hands a matter up to
  12345797 with its case reference and the caller's locality; the province hands a
  local matter down (menu choice legacy:12345797) with the headers.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from . import harness
from .harness import Hotline
from .sipp import Sipp, rejected_call_scenario
from .test_transfer import (
    AGENT_HZ,
    DISPATCHER_HZ,
    agent,
    agent_in_call,
    chans,
    citizen,
    dispatcher,
    done,
    hears,
)

CASE = "JX-2026-000123"


def hotline_config() -> dict[str, Any]:
    cfg = harness.test_config()
    cfg["menus"]["main"]["choices"] += [
        {"key": "5", "action": "legacy:12315"},
        {"key": "6", "action": "legacy:12345797"},
    ]
    return cfg


def origins(h: Hotline) -> dict[str, dict[str, Any]]:
    """The ``origin`` field of every call in Redis, by uniqueid."""
    import redis

    r = h.cfg["network"]["redis"]
    client = redis.Redis(host=r["bind"], port=r["port"], socket_timeout=2)
    try:
        out = {}
        for key in client.scan_iter("hotline:call:*"):
            raw = client.hget(key, "origin")
            if raw:
                out[key.decode().rsplit(":", 1)[-1]] = json.loads(raw)
        return out
    finally:
        client.close()


def new_origin(h: Hotline, before: dict[str, Any], number: str) -> tuple[str, dict[str, Any]]:
    def fresh() -> tuple[str, dict[str, Any]] | None:
        return next(
            ((k, v) for k, v in origins(h).items() if k not in before and v["number"] == number),
            None,
        )

    found: tuple[str, dict[str, Any]] = h.wait_for(fresh, 5, f"the origin of a call to {number}")
    return found


def invite(p: Any) -> str:
    """The first INVITE a SIPp party received (its message trace)."""
    text = p.sipp.messages_so_far()
    m = re.search(r"INVITE sip:.*?(?=\n\n|\r\n\r\n)", text, re.S)
    assert m, text[-2000:]
    return m.group(0)


def in_ivr_then(h: Hotline, c: Any, key: str, case: str | None = None) -> None:
    """Wait for the welcome, optionally give the call a case reference, press ``key``."""
    h.wait_for(lambda: c.media.remote is not None, 5, "the welcome prompt")
    if case is not None:
        chan = h.wait_for(
            lambda: re.search(r"^(PJSIP/carrier-\w+)!hotline-ivr!", chans(h), re.M), 5, "IVR"
        )[1]
        # what the work-order code does at call start (issue 6): the case reference
        h.cli(f"dialplan set chanvar {chan} HOTLINE_CASE_REF {case}")
    time.sleep(1.5)
    c.media.dtmf(key)


# ------------------------------------------------------------------ forward


def earlier_order(h: Hotline, caller: str) -> str:
    """An order of ``caller``'s from a minute ago, written where the controller keeps them."""
    from datetime import UTC, datetime, timedelta

    from workorders.facts import CallFacts, Outcome
    from workorders.store import WorkOrderStore

    store = WorkOrderStore.in_state_dir(h.instance.state)
    try:
        at = datetime.now(UTC) - timedelta(minutes=1)
        return store.record_call(CallFacts(
            call_id=f"earlier-{time.time_ns()}", uniqueid="earlier", caller=caller,
            called="12345", outcome=Outcome.ABANDONED, started_at=at,
            ended_at=at + timedelta(seconds=30), centre="province"))
    finally:
        store.close()


def ended_calls_of(h: Hotline, ref: str, count: int) -> dict[str, Any] | None:
    """Order ``ref`` once it has ``count`` calls, all of them ended."""
    status, order = h.api("GET", f"/orders/{ref}", "admin")
    assert status == 200, order
    calls = order["calls"]
    done = len(calls) == count and all(c["outcome"] != "in_progress" for c in calls)
    return order if done else None


def test_forward_rings_the_department_queue_with_the_origin(clean: Hotline, workdir: Path) -> None:
    h = clean
    before = origins(h)
    earlier = earlier_order(h, "13907910001")  # the citizen's number
    a = agent(h, workdir, seat="1003", queue="social")
    c = citizen(
        h, workdir, hold_ms=9000 + int(h.prompt_seconds("legacy-12333") * 1000), service="12333"
    )
    try:
        # no menu: the department's greeting, then the social queue
        agent_in_call(h, "1003", h.prompt_seconds("legacy-12333") + 10)
        uid, origin = new_origin(h, before, "12333")
        assert origin["mode"] == "forward" and origin["department"] == "social", origin
        assert origin["department_name"] == "人力资源和社会保障厅"
        assert "ivr" not in json.dumps(h.call_paths().get(uid, {}))  # the menu was skipped
        # shown to the agent: the caller-ID name of the call offered to the seat
        assert re.search(r'^From: "12333 人力资源和社会保障厅"', invite(a), re.M), invite(a)
        assert re.search(r"^X-Hotline-Origin: 12333\s*$", invite(a), re.M), invite(a)
        assert re.search(r"^X-Hotline-Department: social\s*$", invite(a), re.M), invite(a)
        listing = chans(h)
        seat_chan = re.search(r"^(PJSIP/1003-\w+)!", listing, re.M)
        assert seat_chan, listing
        seen = h.cli(f"core show channel {seat_chan[1]}")
        assert "HOTLINE_ORIGIN=legacy" in seen and "HOTLINE_NUMBER=12333" in seen, seen
        assert "HOTLINE_DEPARTMENT=social" in seen, seen
        # and in the seat's call served by the HTTP API to its agent
        status, call = h.api("GET", "/calls/1003", "wangfang")
        assert status == 200, call
        assert (call["origin"], call["number"], call["department"]) == ("legacy", "12333", "social")
        assert call["caller"]["name"] == "12333 人力资源和社会保障厅", call
        assert call["origin_record"]["department_name"] == "人力资源和社会保障厅", call
        # the screen pop: this call's work order, where the caller is, what they asked before
        assert re.fullmatch(r"JX[0-9]{14}", call["case"] or ""), call
        status, order = h.api("GET", f"/orders/{call['case']}", "admin")
        assert status == 200 and order["status"] == "intake" and order["origin"] == "12333", order
        # a forwarded call skips the IVR: its place comes from the number (a 南昌 mobile)
        assert call["locality"] == {"city": "nanchang", "county": None, "source": "mobile"}, call
        history = call["history"]
        assert history[0]["ref"] == earlier and history[0]["status"] == "callback", history
        assert call["case"] not in [o["ref"] for o in history] and len(history) <= 5, history
        # the caller asks about it again (重复来电): the agent joins this call to that order
        status, joined = h.api("POST", f"/orders/{call['case']}/repeat", "wangfang",
                               {"of": earlier})
        assert status == 200 and joined["merged_into_ref"] == earlier, joined
        assert h.api("GET", "/calls/1003", "zhangwei")[0] == 403  # another seat's agent
        hears(a, (600,), (AGENT_HZ,))
        done(c)
        # the call's facts, when it ends, land on the order it joined
        kept = h.wait_for(lambda: ended_calls_of(h, earlier, 2), 15, "the call's facts")
        assert any(e["action"] == "repeat-call" for e in kept["events"]), kept["events"]
        assert "answered" in [c["outcome"] for c in kept["calls"]], kept["calls"]
    finally:
        for p in (a, c):
            p.close()


# ------------------------------------------------------------------ centre


def test_centre_number_is_handed_to_the_centre_trunk(clean: Hotline, workdir: Path) -> None:
    h = clean
    before = origins(h)
    d = dispatcher(
        h, workdir, "answer", trunk="market-centre", expect_headers=("X-Hotline-Origin",)
    )
    c = citizen(h, workdir, hold_ms=6000, service="12315")
    try:
        h.wait_for(lambda: "INVITE sip:12315@" in d.sipp.messages_so_far(), 8, "the centre rung")
        inv = invite(d)
        assert re.search(r"^X-Hotline-Origin: 12315\s*$", inv, re.M), inv
        assert "X-Hotline-Case" not in inv, inv  # no case reference yet: none sent
        hears(c, (DISPATCHER_HZ,), (AGENT_HZ,))
        _, origin = new_origin(h, before, "12315")
        assert origin["mode"] == "centre" and origin["department"] == "market"
        done(c)
        done(d)
    finally:
        for p in (d, c):
            p.close()


def test_centre_from_the_menu_passes_case_and_locality(clean: Hotline, workdir: Path) -> None:
    h = clean
    d = dispatcher(
        h,
        workdir,
        "answer",
        trunk="market-centre",
        expect_headers=("X-Hotline-Case", "X-Hotline-Locality", "X-Hotline-Origin"),
    )
    c = citizen(h, workdir, hold_ms=16000, service="12345", caller="079188880000")
    try:
        in_ivr_then(h, c, "5")  # the IVR opened the call's work order: its reference
        h.wait_for(lambda: "INVITE sip:12315@" in d.sipp.messages_so_far(), 8, "the centre rung")
        inv = invite(d)
        m = re.search(r"^X-Hotline-Case: (JX[0-9]{14})\s*$", inv, re.M)
        assert m, inv
        status, order = h.api("GET", f"/orders/{m[1]}", "admin")
        assert status == 200 and order["caller"] == "079188880000", order
        assert order["status"] == "intake", order  # the call is still going on
        assert re.search(r"^X-Hotline-Locality: nanchang\s*$", inv, re.M), inv
        assert re.search(r"^X-Hotline-Origin: 12345\s*$", inv, re.M), inv
        hears(c, (DISPATCHER_HZ,), (AGENT_HZ,))
        done(c)
        done(d)
    finally:
        for p in (d, c):
            p.close()


def test_a_case_reference_that_fails_the_check_is_not_sent(clean: Hotline, workdir: Path) -> None:
    h = clean
    d = dispatcher(h, workdir, "answer", trunk="market-centre")
    c = citizen(h, workdir, hold_ms=14000, service="12345", caller="079188880000")
    try:
        in_ivr_then(h, c, "5", case="JX-1;x=1,Hangup()")
        h.wait_for(lambda: "INVITE sip:12315@" in d.sipp.messages_so_far(), 8, "the centre rung")
        inv = invite(d)
        assert "X-Hotline-Case" not in inv and "Hangup" not in inv, inv
        assert re.search(r"^X-Hotline-Origin: 12345\s*$", inv, re.M), inv
        done(c)  # the call itself goes on
        done(d)
    finally:
        for p in (d, c):
            p.close()


def test_a_busy_centre_gives_the_caller_a_person(clean: Hotline, workdir: Path) -> None:
    h = clean
    d = dispatcher(h, workdir, "busy", trunk="market-centre")
    c = citizen(h, workdir, hold_ms=12000, service="12315")
    try:
        h.wait_for(
            lambda: re.search(r"^PJSIP/carrier-\w+!hotline-failure!", chans(h), re.M),
            8,
            "the caller hearing the apology",
        )
        h.wait_for(
            lambda: re.search(r"^PJSIP/carrier-\w+!hotline-queue!.*!Queue!", chans(h), re.M),
            12,
            "the caller in the default queue",
        )
        done(c)
        done(d, 5)
    finally:
        for p in (d, c):
            p.close()


# ------------------------------------------------------------------ relay


def test_relay_up_from_the_city_centre_records_case_and_locality(
    clean: Hotline, workdir: Path
) -> None:
    h = clean
    before = origins(h)
    a = agent(h, workdir)
    c = citizen(
        h,
        workdir,
        hold_ms=8000,
        service="12345797",
        trunk="ganzhou-centre",
        caller="07976201234",
        headers=("X-Hotline-Case: GZ-2026-0042", "X-Hotline-Locality: ganzhou/yudu"),
    )
    try:
        agent_in_call(h)
        _, origin = new_origin(h, before, "12345797")
        assert origin["mode"] == "relay" and origin["trunk"] == "ganzhou-centre", origin
        assert origin["partner_case"] == "GZ-2026-0042", origin
        assert (origin["city"], origin["county"]) == ("ganzhou", "yudu"), origin
        assert re.search(r'^From: "转办 GZ-2026-0042"', invite(a), re.M), invite(a)
        assert re.search(r"^X-Hotline-Case: GZ-2026-0042\s*$", invite(a), re.M), invite(a)
        done(c)
    finally:
        for p in (a, c):
            p.close()


def test_relay_number_is_refused_from_the_carrier(clean: Hotline, workdir: Path) -> None:
    h = clean
    ip, _ = h.trunk("carrier")
    s = Sipp(
        workdir,
        "relay-from-carrier",
        rejected_call_scenario("12345797", "404"),
        local_ip=ip,
        target=h.sip_target,
        timeout_s=15,
    )
    res = s.wait(15)
    assert res.returncode == 0, res.explain()


def test_relay_down_hands_a_local_matter_to_the_city_centre(clean: Hotline, workdir: Path) -> None:
    h = clean
    d = dispatcher(
        h, workdir, "answer", trunk="ganzhou-centre", expect_headers=("X-Hotline-Locality",)
    )
    c = citizen(h, workdir, hold_ms=14000, service="12345", caller="07976201234")
    try:
        in_ivr_then(h, c, "6", case=CASE)
        h.wait_for(lambda: "INVITE sip:12345@" in d.sipp.messages_so_far(), 8, "the city centre")
        inv = invite(d)
        assert re.search(r"^X-Hotline-Locality: ganzhou/yudu\s*$", inv, re.M), inv
        assert re.search(rf"^X-Hotline-Case: {CASE}\s*$", inv, re.M), inv
        hears(c, (DISPATCHER_HZ,), (AGENT_HZ,))
        done(c)
        done(d)
    finally:
        for p in (d, c):
            p.close()
