"""Issue #4: agents at their seats, on a real Asterisk with SIPp softphones.

Log in and out, pause and resume from the softphone (feature codes) and from
the HTTP API with its rights; a paused agent gets no call; an agent who lets
offers ring out is paused; seat state follows Asterisk and survives a
controller restart; a supervisor listens to a call.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .harness import Hotline, test_config
from .sipp import (
    Sipp,
    agent_answer_scenario,
    agent_no_answer_scenario,
    dtmf,
    pause,
    seat_dial_scenario,
)
from .test_first_call import call


def hotline_config() -> dict[str, Any]:
    cfg = test_config()
    cfg["queues"]["province"]["ring_timeout"] = 3
    cfg["agents"]["max_missed_offers"] = 2
    return cfg


def register(h: Hotline, workdir: Path, seat: str, answer: bool = True, hold_ms: int = 60000) -> Sipp:
    ooc = agent_answer_scenario() if answer else agent_no_answer_scenario()
    return h.register_seat(workdir, seat, ooc_scenario=ooc, hold_ms=hold_ms)


def member_line(h: Hotline, queue: str, seat: str) -> str:
    for line in h.cli(f"queue show {queue}").splitlines():
        if f"(PJSIP/{seat}" in line:
            return line
    return ""


def feature(h: Hotline, workdir: Path, seat: str, code: str) -> None:
    s = Sipp(workdir, f"feature-{seat}-{code.strip('*')}", seat_dial_scenario(seat, h.seat_password(seat), code),
             local_ip="127.0.0.1", target=h.sip_target, timeout_s=20)
    res = s.wait(30)
    assert res.returncode == 0, res.explain()


def test_feature_codes_log_in_pause_resume_log_out(clean: Hotline, workdir: Path) -> None:
    h = clean
    agent = register(h, workdir, "1003")
    try:
        assert member_line(h, "social", "1003") == ""
        feature(h, workdir, "1003", "*21")
        # 1003 is listed in the social queue only: it joined exactly that one.
        assert member_line(h, "social", "1003") and member_line(h, "province", "1003") == ""
        h.wait_for(lambda: h.api("GET", "/seats/1003", "wangfang")[1].get("state") == "available", 5,
                   "seat state available")
        feature(h, workdir, "1003", "*23")
        assert "paused:break" in member_line(h, "social", "1003")
        h.wait_for(lambda: h.api("GET", "/seats/1003", "wangfang")[1].get("state") == "paused", 5, "paused")
        feature(h, workdir, "1003", "*24")
        assert "paused" not in member_line(h, "social", "1003")
        feature(h, workdir, "1003", "*22")
        assert member_line(h, "social", "1003") == ""
        h.wait_for(lambda: h.api("GET", "/seats/1003", "wangfang")[1].get("state") == "logged-out", 5,
                   "logged out")
    finally:
        agent.stop()


def test_http_api_rights_and_audit(clean: Hotline) -> None:
    h = clean
    assert h.api("GET", "/seats", "zhangwei", password="wrong")[0] == 401
    assert h.api("GET", "/seats")[0] == 401
    # An agent acts on their own seat only.
    assert h.api("POST", "/seats/1001/login", "zhangwei")[0] == 200
    status, body = h.api("POST", "/seats/1002/login", "zhangwei")
    assert status == 403 and body["error_id"] == "forbidden"
    assert list(h.api("GET", "/seats", "zhangwei")[1]) == ["1001"]
    # A city supervisor acts on their centre only; the province supervisor on all below it.
    status, body = h.api("POST", "/seats/2001/pause", "sup-nanchang", {"reason": "training"})
    assert status == 400 and body["message"] == "seat 2001 is not logged in to any queue"
    assert h.api("POST", "/seats/2001/login", "sup-nanchang")[0] == 200
    assert h.api("POST", "/seats/2001/pause", "sup-nanchang", {"reason": "training"})[0] == 200
    assert h.api("POST", "/seats/1001/pause", "sup-nanchang", {"reason": "training"})[0] == 403
    assert h.api("POST", "/seats/3001/login", "sup-province")[0] == 200
    # Bad input gets a clear error.
    status, body = h.api("POST", "/seats/1001/pause", "zhangwei", {"reason": "nap"})
    assert status == 400 and "unknown pause reason 'nap'" in body["message"]
    assert h.api("POST", "/seats/9999/login", "admin")[0] == 404
    status, body = h.api("GET", "/stats/queues?since=yesterday", "admin")
    assert status == 400 and body["error_id"] == "bad-period"
    assert h.api("GET", "/audit", "zhangwei")[0] == 403
    # Every action is in the audit log with who did it.
    audit = h.api("GET", "/audit?limit=20", "admin")[1]
    done = [(a["who"], a["action"], a["seat"]) for a in audit]
    for entry in [("zhangwei", "login", "1001"), ("sup-nanchang", "pause", "2001"), ("sup-province", "login", "3001")]:
        assert entry in done, done


def test_a_paused_agent_gets_no_call(clean: Hotline, workdir: Path) -> None:
    h = clean
    a1, a2 = register(h, workdir, "1001"), register(h, workdir, "1002")
    try:
        h.login_seat("1001")
        h.login_seat("1002")
        assert h.api("POST", "/seats/1001/pause", "zhangwei", {"reason": "lunch"})[0] == 200
        h.wait_for(lambda: "Not in use" in member_line(h, "province", "1002"), 10, "1002 available")
        before = h.queue_log()
        for i in range(2):
            # The caller waits until 1002's wrap-up after the first call is over.
            res = call(h, workdir, pause(800) + dtmf("2", then_ms=9000), name=f"paused-{i}").wait(40)
            assert res.returncode == 0, res.explain()
        new = h.queue_log()[len(before):]
        assert new.count("|province|1002|CONNECT|") == 2, new
        assert "|1001|" not in new
        assert "INVITE sip:" not in a1.messages_so_far()
        assert h.api("GET", "/seats/1001", "zhangwei")[1]["pause_reason"] == "lunch"
    finally:
        a1.stop()
        a2.stop()


def test_missed_offers_pause_the_agent(clean: Hotline, workdir: Path) -> None:
    h = clean
    lazy, good = register(h, workdir, "1001", answer=False), register(h, workdir, "1002")
    try:
        h.login_seat("1001")
        h.wait_for(lambda: "Not in use" in member_line(h, "province", "1001"), 10, "1001 available")
        before = h.queue_log()  # the module's hotline: earlier tests' calls are in it too
        # 1001 alone: the caller rings it twice (3 s each) without an answer...
        caller = call(h, workdir, pause(800) + dtmf("2", then_ms=12000), name="missed")
        h.wait_for(lambda: "paused:missed-offers" in member_line(h, "province", "1001"), 20,
                   "1001 paused after 2 missed offers")
        # ...then 1002 logs in and takes the waiting caller.
        h.login_seat("1002")
        res = caller.wait(40)
        assert res.returncode == 0, res.explain()
        new = h.queue_log()[len(before):]
        assert "|province|1002|CONNECT|" in new, new
        audit = h.api("GET", "/audit?limit=50", "admin")[1]
        assert any(a["action"] == "auto-pause" and a["seat"] == "1001" and a["who"] == "system" for a in audit)
        assert h.api("GET", "/seats/1001", "zhangwei")[1]["state"] == "paused"
    finally:
        lazy.stop()
        good.stop()


def test_seat_state_survives_a_controller_restart(clean: Hotline, workdir: Path) -> None:
    h = clean
    h.login_seat("1001")
    assert h.api("POST", "/seats/1001/pause", "zhangwei", {"reason": "meeting"})[0] == 200
    h.wait_for(lambda: h.api("GET", "/seats/1001", "zhangwei")[1]["pause_reason"] == "meeting", 5, "paused")
    h.kill_controller()
    h.start_controller()
    # Rebuilt from Asterisk's QueueStatus, not invented.
    state = h.wait_for(lambda: (s := h.api("GET", "/seats/1001", "zhangwei")[1]).get("queues") and s, 10,
                       "state rebuilt")
    assert state["queues"] == ["province"] and state["paused"] and state["pause_reason"] == "meeting"


def test_supervisor_listens_to_a_call(clean: Hotline, workdir: Path) -> None:
    h = clean
    agent, sup = register(h, workdir, "1001"), register(h, workdir, "1002")
    try:
        h.login_seat("1001")
        h.wait_for(lambda: "Not in use" in member_line(h, "province", "1001"), 10, "1001 available")
        before = h.queue_log()
        caller = call(h, workdir, pause(800) + dtmf("2", then_ms=9000), name="spied")
        h.wait_for(lambda: "|province|1001|CONNECT|" in h.queue_log()[len(before):], 15, "agent answered")
        assert h.api("POST", "/seats/1001/spy", "sup-nanchang", {"mode": "listen", "from_seat": "1002"})[0] == 403
        status, body = h.api("POST", "/seats/1001/spy", "sup-province", {"mode": "whisper", "from_seat": "1002"})
        assert status == 200, body
        h.wait_for(lambda: re.search(r"^PJSIP/1002-\w+!.*!ChanSpy!PJSIP/1001-,qwE!", h.cli("core show channels concise"),
                                     re.M), 10, "the supervisor's seat whispering")
        assert "INVITE sip:" in sup.messages_so_far()
        res = caller.wait(40)
        assert res.returncode == 0, res.explain()
        audit = h.api("GET", "/audit?limit=20", "admin")[1]
        assert any(a["action"] == "spy-whisper" and a["who"] == "sup-province" for a in audit)
    finally:
        agent.stop()
        sup.stop()
