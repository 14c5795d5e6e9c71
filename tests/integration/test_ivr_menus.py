"""Issue #3's DTMF menu paths with real calls on a real Asterisk.

The module runs the sample hotline with shorter menu timeouts (so silence
tests take seconds, not a minute). Where a call went is read from Asterisk's
queue_log and from the path the controller stored in Redis.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from .harness import Hotline, test_config
from .sipp import Sipp, dtmf, pause
from .test_first_call import call, register_agent, stop_agent


def hotline_config() -> dict[str, Any]:
    cfg = test_config()
    for m in cfg["menus"].values():
        m["timeout"] = 1.5
        m["retries"] = 1
    return cfg


def test_two_menu_levels_by_dtmf_reach_the_queue(clean: Hotline, workdir: Path) -> None:
    h = clean
    agent = register_agent(h, workdir, seat="1003")
    try:
        before, paths = h.queue_log(), h.call_paths()
        # 1 during the welcome (barge-in) → 社保 menu; 2 during its prompt → queue social.
        res = call(h, workdir, pause(800) + dtmf("1", then_ms=1500) + dtmf("2", then_ms=4000)).wait(40)
        assert res.returncode == 0, res.explain()
        assert "|social|1003|CONNECT|" in h.queue_log()[len(before):], h.queue_log()[len(before):]
        (path,) = h.new_call_paths(paths)
        assert [(s["menu"], s["answer"], s["via"], s["decision"]) for s in path["steps"]] == [
            ("main", "1", "key", "menu:social"),
            ("social", "2", "key", "queue:social"),
        ]
        assert path["route"] == "queue" and path["target"] == "social"
        assert path["city"] == "nanchang" and path["locality_source"] == "mobile"
    finally:
        stop_agent(agent)


def test_barge_in_stops_the_welcome_prompt(clean: Hotline, workdir: Path) -> None:
    h = clean
    welcome = h.prompt_seconds("welcome")
    assert welcome > 2.0, welcome
    paths = h.call_paths()
    t0 = time.monotonic()
    res = call(h, workdir, pause(500) + dtmf("3", then_ms=300), name="barge").wait(30)
    assert res.returncode == 0, res.explain()
    (path,) = h.new_call_paths(paths)
    first = path["steps"][0]
    assert (first["menu"], first["answer"], first["decision"]) == ("main", "3", "operator")
    # The key was taken during the welcome, long before the prompt would have ended.
    assert first["at_ms"] < welcome * 1000 - 1000, (first, welcome)
    assert time.monotonic() - t0 < welcome + 5


def test_silence_ends_with_a_person_not_a_hangup(clean: Hotline, workdir: Path) -> None:
    h = clean
    agent = register_agent(h, workdir, seat="1001")
    try:
        before, paths = h.queue_log(), h.call_paths()
        waits = h.prompt_seconds("welcome") + h.prompt_seconds("main-menu") + 2 * h.prompt_seconds("menu-retry") + 2 * 1.5
        res = call(h, workdir, pause(int((waits + 4) * 1000)), name="silent", timeout_s=90).wait(90)
        assert res.returncode == 0, res.explain()
        (path,) = h.new_call_paths(paths)
        assert [s["decision"] for s in path["steps"]] == ["retry", "fallback operator"]
        assert [s["via"] for s in path["steps"]] == ["timeout", "timeout"]
        assert path["route"] == "queue" and path["reason"] == "operator"
        assert "|province|1001|CONNECT|" in h.queue_log()[len(before):]
    finally:
        stop_agent(agent)


def test_zero_from_a_submenu_reaches_a_person(clean: Hotline, workdir: Path) -> None:
    h = clean
    agent = register_agent(h, workdir, seat="1001")
    try:
        before, paths = h.queue_log(), h.call_paths()
        res = call(h, workdir, pause(800) + dtmf("1", then_ms=1200) + dtmf("0", then_ms=4000),
                   name="zero").wait(40)
        assert res.returncode == 0, res.explain()
        (path,) = h.new_call_paths(paths)
        assert [(s["menu"], s["answer"], s["decision"]) for s in path["steps"]] == [
            ("main", "1", "menu:social"), ("social", "0", "operator")]
        # Local first: the Nanchang caller's city queue has nobody logged in, so the
        # call overflowed at once to the province, where seat 1001 answered.
        assert path["target"] == "nanchang"
        assert "|province|1001|CONNECT|" in h.queue_log()[len(before):]
    finally:
        stop_agent(agent)


def test_local_first_county_caller_goes_to_the_county_queue(clean: Hotline, workdir: Path) -> None:
    """A 于都 (Yudu) fixed line: its remote county seat is rung first, over the county trunk."""
    h = clean
    ip, port = h.trunk("yudu-site")
    # The county site answers its remote seat 8001 (a SIPp UAS on the site's address).
    site = Sipp(workdir, "yudu-site", _uas_answer(), local_ip=ip, local_port=port,
                target=h.sip_target, timeout_s=40, extra=["-aa"])
    try:
        before, paths = h.queue_log(), h.call_paths()
        res = call(h, workdir, pause(800) + dtmf("0", then_ms=5000), name="yudu",
                   caller="07976212345").wait(40)
        assert res.returncode == 0, res.explain()
        (path,) = h.new_call_paths(paths)
        assert (path["city"], path["county"], path["target"]) == ("ganzhou", "yudu", "ganzhou-yudu")
        assert re.search(r"\|ganzhou-yudu\|yudu-01\|CONNECT\|", h.queue_log()[len(before):]), h.queue_log()
        site_res = site.wait(20)
        assert "INVITE sip:8001@" in site_res.messages, site_res.explain()
    finally:
        site.stop()


def test_hangup_during_a_prompt_ends_the_session(clean: Hotline, workdir: Path) -> None:
    h = clean
    res = call(h, workdir, pause(1200), name="early-bye").wait(20)
    assert res.returncode == 0, res.explain()
    h.wait_for(lambda: h.status()["fastagi"]["active_calls"] == 0, 5, "the AGI session to end")
    assert "Traceback" not in h.controller_log()
    assert h.wait_no_channels() == 0


def test_controller_killed_mid_call_still_reaches_a_person(clean: Hotline, workdir: Path) -> None:
    h = clean
    agent = register_agent(h, workdir, seat="1001")
    try:
        before = h.queue_log()
        caller = call(h, workdir, pause(12000), name="killed")
        h.wait_for(lambda: h.status()["fastagi"]["active_calls"] == 1, 10, "the caller in the IVR")
        h.kill_controller()
        res = caller.wait(40)
        assert res.returncode == 0, res.explain()
        assert "|province|1001|CONNECT|" in h.queue_log()[len(before):], h.queue_log()[len(before):]
    finally:
        stop_agent(agent)
        h.start_controller()


def _uas_answer() -> str:
    from .sipp import agent_answer_scenario

    return agent_answer_scenario(answer_after_ms=200)


def test_queue_stats_match_the_calls_made(clean: Hotline, workdir: Path) -> None:
    """One call answered by an agent, one abandoned in the queue: the HTTP figures agree."""
    h = clean
    since = int(time.time())
    agent = register_agent(h, workdir, seat="1001")
    try:
        res = call(h, workdir, pause(800) + dtmf("2", then_ms=3000), name="answered").wait(40)
        assert res.returncode == 0, res.explain()
    finally:
        stop_agent(agent)
    h.logout_seat("1001")
    h.wait_for(lambda: "PJSIP/1001" not in h.cli("queue show province"), 10, "seat 1001 logged out")
    res = call(h, workdir, pause(800) + dtmf("2", then_ms=3000), name="abandoned").wait(40)
    assert res.returncode == 0, res.explain()
    status, stats = h.api("GET", f"/stats/queues?since={since}", "sup-province")
    assert status == 200, stats
    total = stats["total"]
    assert (total["offered"], total["answered"], total["abandoned"]) == (2, 1, 1), stats
    assert total["connection_rate"] == 0.5
    assert total["answered_within_15s"] == 1
    assert stats["by_queue"]["province"]["offered"] == 2
    assert stats["by_centre"]["province"]["answered"] == 1
