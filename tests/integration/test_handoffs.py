"""Issue #5 item 3: hand-offs to departments and city centres from an agent's call.

The same transfer state machine as the emergency transfer (transfer/machine.py),
driven through ``POST /calls/{seat}/transfer {"to": ..., "kind": ...}``:

* blind: the caller stays with the agent while the other side rings; on its answer
  the agent's leg ends and caller and department talk;
* consult: the caller waits on hold (music) while the agent talks with the
  department, then ``/connect`` (caller ↔ department, the agent leaves) or
  ``/return`` (the department's leg ends, caller ↔ agent);
* a department that is busy: the caller is back with the agent, never dropped;
* a centre-mode legacy number with ``handoff: warm``: the caller is held in the
  bridge (no agent) while the centre rings.

Tones prove who hears whom (citizen 600 Hz, agent 1000 Hz, department 1400 Hz).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from . import test_transfer as base
from .harness import Hotline
from .test_transfer import (
    AGENT_HZ,
    CITIZEN_HZ,
    DISPATCHER_HZ,
    agent,
    agent_in_call,
    chans,
    citizen,
    dispatcher,
    done,
    hears,
    keep,
    record,
    started_transfer,
    wait_state,
)


def hotline_config() -> dict[str, Any]:
    cfg = base.hotline_config()
    cfg["numbers"].append(
        {
            "number": "12316",
            "kind": "legacy",
            "centre": "province",
            "department": "market",
            "mode": "centre",
            "handoff": "warm",
        }
    )
    cfg["departments"]["market"]["answer_timeout"] = 4
    cfg["transfers"] = {"announce_case": True}
    return cfg


def hand_off(h: Hotline, to: str, kind: str) -> str:
    status, body = h.api("POST", "/calls/1001/transfer", "zhangwei", {"to": to, "kind": kind})
    assert status == 202, body
    assert body["kind"] == kind, body
    return str(body["id"])


def agent_gone(h: Hotline) -> None:
    h.wait_for(lambda: "PJSIP/1001-" not in chans(h), 5, "the agent's leg to end")


def both_in_bridge(h: Hotline, tid: str, timeout: float) -> None:
    """Caller and agent are both in the transfer's bridge (the message over, off hold)."""

    def together() -> bool:
        listing = h.cli(f"confbridge list {tid}")
        return "PJSIP/carrier-" in listing and "PJSIP/1001-" in listing

    h.wait_for(together, timeout, "caller and agent together in the bridge")
    time.sleep(0.3)  # the first packets after a join


CASE = "JX-2026-000123"
# announce_case is on here: a leg that answers hears the case reference (JX + 14 digits,
# about half a second each) before it joins
ANNOUNCED = 20


def announcements(h: Hotline, tid: str, timeout: float) -> list[str]:
    """The prompts the answering leg plays until it joins (polled), consecutive repeats once."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for f in re.findall(
            r"^Local/\w+@hotline-handoff-dial-\w+;1!hotline-xfer-dispatcher!.*!Playback!.*/([\w-]+)!",
            chans(h),
            re.M,
        ):
            if not seen or seen[-1] != f:
                seen.append(f)
        if any(x["to"] == "consulting" for x in record(h, tid)["transitions"]):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"transfer {tid} not consulting after {timeout} s; played {seen}")


def is_subsequence(part: list[str], whole: list[str]) -> bool:
    it = iter(whole)
    return all(x in it for x in part)


def finish(h: Hotline, tid: str, action: str) -> dict[str, Any]:
    status, body = h.api("POST", f"/transfers/{tid}/{action}", "zhangwei")
    assert status == 200, body
    return body


def test_blind_hand_off_to_the_city_centre(clean: Hotline, workdir: Path) -> None:
    h = clean
    a = agent(h, workdir)
    d = dispatcher(
        h, workdir, "answer", trunk="ganzhou-centre", expect_headers=("X-Hotline-Origin",)
    )
    c = citizen(h, workdir, hold_ms=14000)
    try:
        agent_in_call(h)
        tid = hand_off(h, "ganzhou-centre", "blind")
        rec = wait_state(h, tid, "caller_and_dispatcher", ANNOUNCED)
        messages = d.sipp.messages_so_far()
        assert "INVITE sip:12345@" in messages and "X-Hotline-Origin: 12399" in messages
        agent_gone(h)  # the agent's leg was ended by the hotline
        hears(c, (DISPATCHER_HZ,), (AGENT_HZ, CITIZEN_HZ))
        hears(d, (CITIZEN_HZ,), (AGENT_HZ, DISPATCHER_HZ))
        done(c)
        done(d)
        rec = wait_state(h, tid, "done")
        assert [x["to"] for x in rec["transitions"]] == [
            "caller_held",
            "dialling",
            "three_way",
            "caller_and_dispatcher",
            "done",
        ]
        assert rec["outcome"] == "connected"
        keep(rec, "blind-hand-off")
    finally:
        for p in (a, d, c):
            p.close()


def test_consult_then_connect_with_the_case_reference_announced(
    clean: Hotline, workdir: Path
) -> None:
    h = clean
    a = agent(h, workdir)
    d = dispatcher(
        h,
        workdir,
        "answer",
        trunk="market-centre",
        expect_headers=("X-Hotline-Origin", "X-Hotline-Case"),
    )
    c = citizen(h, workdir, hold_ms=26000)
    try:
        agent_in_call(h)
        carrier = re.search(r"^(PJSIP/carrier-\w+)!", chans(h), re.M)
        assert carrier, chans(h)
        h.cli(f"dialplan set chanvar {carrier[1]} HOTLINE_CASE_REF {CASE}")  # the work order's
        tid = hand_off(h, "market", "consult")
        # transfers.announce_case: the department hears the digits before it joins
        said = announcements(h, tid, 15)
        assert said[0] == "transfer-case", said
        digits = [x.removeprefix("num-") for x in said[1:]]
        assert is_subsequence(digits, [d for d in CASE if d.isdigit()]) and len(set(digits)) >= 3, (
            said
        )
        assert f"X-Hotline-Case: {CASE}" in d.sipp.messages_so_far()
        # agent and department talk; the caller hears neither (music on hold)
        hears(a, (DISPATCHER_HZ,), (CITIZEN_HZ, AGENT_HZ))
        hears(d, (AGENT_HZ,), (CITIZEN_HZ, DISPATCHER_HZ))
        hears(c, (), (AGENT_HZ, DISPATCHER_HZ))
        rec = finish(h, tid, "connect")
        assert rec["state"] == "caller_and_dispatcher", rec
        agent_gone(h)
        hears(c, (DISPATCHER_HZ,), (AGENT_HZ, CITIZEN_HZ))
        hears(d, (CITIZEN_HZ,), (AGENT_HZ, DISPATCHER_HZ))
        done(c)
        done(d)
        rec = wait_state(h, tid, "done")
        assert [x["to"] for x in rec["transitions"]][-3:] == [
            "consulting",
            "caller_and_dispatcher",
            "done",
        ]
        keep(rec, "consult-connect")
    finally:
        for p in (a, d, c):
            p.close()


def test_consult_then_return_to_the_caller(clean: Hotline, workdir: Path) -> None:
    h = clean
    a = agent(h, workdir)
    d = dispatcher(h, workdir, "answer", trunk="market-centre")
    c = citizen(h, workdir, hold_ms=14000)
    try:
        agent_in_call(h)
        tid = hand_off(h, "market", "consult")
        wait_state(h, tid, "consulting", ANNOUNCED)
        hears(a, (DISPATCHER_HZ,), (CITIZEN_HZ,))
        rec = finish(h, tid, "return")
        assert rec["state"] == "caller_and_agent", rec
        done(d, 5)  # the department's leg ended
        both_in_bridge(h, tid, 5)
        hears(c, (AGENT_HZ,), (DISPATCHER_HZ, CITIZEN_HZ))
        hears(a, (CITIZEN_HZ,), (DISPATCHER_HZ, AGENT_HZ))
        done(c)
        rec = wait_state(h, tid, "done")
        assert rec["outcome"] == "returned-to-agent", rec
        keep(rec, "consult-return")
    finally:
        for p in (a, d, c):
            p.close()


def test_busy_department_gives_the_caller_back_to_the_agent(clean: Hotline, workdir: Path) -> None:
    h = clean
    a = agent(h, workdir)
    d = dispatcher(h, workdir, "busy", trunk="market-centre")
    c = citizen(h, workdir, hold_ms=14000)
    try:
        agent_in_call(h)
        tid = hand_off(h, "market", "consult")
        rec = wait_state(h, tid, "failed_back_to_agent", 5)
        assert rec["failures"][0]["reason"] == "busy (cause 17)", rec["failures"]
        # the agent hears the message, then talks with the caller again (off hold)
        both_in_bridge(h, tid, h.prompt_seconds("transfer-failed") + 12)  # a loaded CI machine
        hears(c, (AGENT_HZ,), (CITIZEN_HZ, DISPATCHER_HZ))
        hears(a, (CITIZEN_HZ,), (AGENT_HZ, DISPATCHER_HZ))
        done(c)
        done(d, 5)
        keep(wait_state(h, tid, "done"), "department-busy")
    finally:
        for p in (a, d, c):
            p.close()


def test_warm_legacy_number_holds_the_caller_while_the_centre_rings(
    clean: Hotline, workdir: Path
) -> None:
    h = clean
    d = dispatcher(
        h,
        workdir,
        "answer",
        trunk="market-centre",
        answer_after_ms=1500,
        expect_headers=("X-Hotline-Origin",),
    )
    c = citizen(h, workdir, hold_ms=10000, service="12316")
    try:
        tid = started_transfer(h, "market", 6, "the warm hand-off to start")
        rec = wait_state(h, tid, "caller_and_dispatcher", ANNOUNCED)
        assert rec["origin"] == "ivr" and rec["kind"] == "warm", rec
        assert "X-Hotline-Origin: 12316" in d.sipp.messages_so_far()
        h.wait_for(lambda: "bridged" in record(h, tid)["times"], 5, "caller and centre bridged")
        hears(c, (DISPATCHER_HZ,), (CITIZEN_HZ, AGENT_HZ))
        hears(d, (CITIZEN_HZ,), (DISPATCHER_HZ, AGENT_HZ))
        done(c)
        done(d)
        keep(wait_state(h, tid, "done"), "warm-legacy")
    finally:
        for p in (d, c):
            p.close()


def test_warm_legacy_number_with_the_controller_down_is_dialled_by_the_dialplan(
    clean: Hotline, workdir: Path
) -> None:
    h = clean
    h.kill_controller()  # nobody takes the caller into a bridge: the dialplan dials blind
    d = dispatcher(
        h, workdir, "answer", trunk="market-centre", expect_headers=("X-Hotline-Origin",)
    )
    c = citizen(h, workdir, hold_ms=8000, service="12316")
    try:
        h.wait_for(lambda: "INVITE sip:12315@" in d.sipp.messages_so_far(), 8, "the centre")
        assert "X-Hotline-Origin: 12316" in d.sipp.messages_so_far()
        hears(c, (DISPATCHER_HZ,), (CITIZEN_HZ, AGENT_HZ))
        done(c)
        done(d)
    finally:
        for p in (d, c):
            p.close()
        h.start_controller()


def test_controller_restart_during_a_consultation_returns_the_caller(
    clean: Hotline, workdir: Path
) -> None:
    """The department hangs up while the controller is down: after the restart the
    transfer is reconciled and the caller, on hold meanwhile, is back with the agent."""
    h = clean
    a = agent(h, workdir)
    # it hangs up 12 s after answering: past the case announcement (about 7 s here)
    d = dispatcher(h, workdir, "answer", trunk="market-centre", hangup_after_ms=12000)
    c = citizen(h, workdir, hold_ms=32000)
    try:
        agent_in_call(h)
        tid = hand_off(h, "market", "consult")
        wait_state(h, tid, "consulting", ANNOUNCED)
        log_from = len(h.controller_log())  # the module's log: earlier restarts are in it
        h.kill_controller()
        done(d, 10)  # the department hung up; nobody watched
        h.wait_for(lambda: "Local/market@" not in chans(h), 5, "the department's leg gone")
        assert re.search(r"^PJSIP/carrier-\w+!hotline-xfer-hold!", chans(h), re.M), chans(h)
        h.start_controller()
        rec = wait_state(h, tid, "caller_and_agent", 8)
        assert f"reconciling transfer {tid}" in h.controller_log()[log_from:]
        both_in_bridge(h, tid, 5)
        hears(c, (AGENT_HZ,), (DISPATCHER_HZ, CITIZEN_HZ))
        hears(a, (CITIZEN_HZ,), (DISPATCHER_HZ, AGENT_HZ))
        done(c)
        rec = wait_state(h, tid, "done")
        assert rec["outcome"] == "returned-to-agent", rec
        keep(rec, "consult-restart")
    finally:
        for p in (a, d, c):
            p.close()
