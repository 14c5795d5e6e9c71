"""Issue #5 item 1: the emergency warm transfer (三方通話) on a real Asterisk.

Parties are SIPp processes for the signalling and :class:`TonePeer` sockets for
the media: each party sends its own tone (citizen 600 Hz, agent 1000 Hz,
dispatcher 1400 Hz) and measures the tones it receives. A party that hears the
other two tones and not its own proves the three-way mix really carries audio
between all three; after the agent leaves, the citizen and the dispatcher
still hear each other. The emergency centre is a SIPp UAS on the emergency
trunk's address (127.0.0.3) that answers, refuses (486), stays silent, or is
absent; an alternate route goes over the carrier trunk (127.0.0.2).

The citizen reaches seat 1001 through a retained number (12399, forwarded to
the province queue) so that no test waits for the IVR; one test uses the IVR's
emergency offer (menu key 7).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from . import harness
from .harness import Hotline
from .sipp import (
    Sipp,
    TonePeer,
    answering_party_scenario,
    citizen_call_scenario,
)

CITIZEN_HZ, AGENT_HZ, DISPATCHER_HZ = 600, 1000, 1400
ANSWER_TIMEOUT = 3  # the shortest the config allows: keeps the failure tests short
SLOW_LINE_TIMEOUT = 8  # line 122: the dispatcher answers after a few seconds

TIMINGS: list[dict[str, Any]] = []  # every transfer's figures, printed at the end of the module


def hotline_config() -> dict[str, Any]:
    cfg = harness.test_config()
    cfg["numbers"].append(
        {
            "number": "12399",
            "kind": "legacy",
            "centre": "province",
            "department": "housing",
            "mode": "forward",
        }
    )  # straight to the queue
    lines = cfg["emergency_lines"]
    lines["119"].update(answer_timeout=ANSWER_TIMEOUT)  # with the caller's message
    lines["110"].update(answer_timeout=ANSWER_TIMEOUT, prompt=None)
    lines["120"].update(
        answer_timeout=ANSWER_TIMEOUT, alternate={"trunk": "carrier", "number": "120"}
    )
    lines["122"].update(answer_timeout=SLOW_LINE_TIMEOUT, prompt=None)
    cfg["menus"]["main"]["choices"].append({"key": "7", "action": "emergency:120"})
    return cfg


# ------------------------------------------------------------------ parties


class Party:
    def __init__(self, sipp: Sipp, media: TonePeer):
        self.sipp, self.media = sipp, media

    def close(self) -> None:
        self.sipp.stop()
        self.media.close()


def agent(
    h: Hotline, wd: Path, *, hangup_after_ms: int = 0, seat: str = "1001", queue: str = "province"
) -> Party:
    """A seat registered, logged in and free; answers (and maybe hangs up) one call."""
    media = TonePeer("127.0.0.1", AGENT_HZ)
    ooc = answering_party_scenario(
        "answer",
        "127.0.0.1",
        media.port,
        answer_after_ms=100,
        hangup_after_ms=hangup_after_ms,
        who="agent",
    )
    sipp = h.register_seat(wd, seat, ooc_scenario=ooc, hold_ms=60000, name=f"agent-{seat}")
    h.login_seat(seat)
    h.wait_for(
        lambda: re.search(rf"\(PJSIP/{seat}\).*Not in use", h.cli(f"queue show {queue}")),
        10,
        f"seat {seat} available",
    )
    return Party(sipp, media)


def dispatcher(
    h: Hotline,
    wd: Path,
    mode: str,
    *,
    trunk: str = "emergency",
    answer_after_ms: int = 300,
    hangup_after_ms: int = 0,
    expect_headers: tuple[str, ...] = (),
) -> Party:
    ip, port = h.trunk(trunk)
    media = TonePeer(ip, DISPATCHER_HZ)
    scen = answering_party_scenario(
        mode,
        ip,
        media.port,
        answer_after_ms=answer_after_ms,
        hangup_after_ms=hangup_after_ms,
        expect_headers=expect_headers,
    )
    return Party(
        Sipp(
            wd,
            f"dispatcher-{trunk}-{mode}",
            scen,
            local_ip=ip,
            local_port=port,
            target=h.sip_target,
            timeout_s=60,
        ),
        media,
    )


def citizen(
    h: Hotline,
    wd: Path,
    hold_ms: int,
    *,
    service: str = "12399",
    hangs_up: bool = True,
    caller: str = "13907910001",
    trunk: str = "carrier",
    headers: tuple[str, ...] = (),
) -> Party:
    ip, _ = h.trunk(trunk)
    media = TonePeer(ip, CITIZEN_HZ)
    scen = citizen_call_scenario(service, caller, ip, media.port, hold_ms, hangs_up, headers)
    return Party(Sipp(wd, "citizen", scen, local_ip=ip, target=h.sip_target, timeout_s=60), media)


def agent_in_call(h: Hotline, seat: str = "1001", timeout: float = 15) -> None:
    h.wait_for(
        lambda: re.search(rf"^PJSIP/{seat}-\w+!.*!Up!", h.cli("core show channels concise"), re.M),
        timeout,
        f"seat {seat} talking with the citizen",
    )
    time.sleep(0.5)


def chans(h: Hotline) -> str:
    return h.cli("core show channels concise")


def record(h: Hotline, tid: str) -> dict[str, Any]:
    status, body = h.api("GET", f"/transfers/{tid}", "admin")
    assert status == 200, body
    return body


def wait_state(h: Hotline, tid: str, state: str, timeout: float = 10) -> dict[str, Any]:
    """Wait until the transfer has reached ``state`` (it may have moved on since)."""
    got: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = record(h, tid)
        if any(x["to"] == state for x in got["transitions"]):
            return got
        time.sleep(0.05)
    raise AssertionError(
        f"transfer {tid} did not reach {state} in {timeout} s: {got.get('transitions')}"
    )


def reached_at(rec: dict[str, Any], state: str) -> float:
    """Seconds from the request to the transition into ``state``."""
    at = next(x["at"] for x in rec["transitions"] if x["to"] == state)
    return float(at - rec["times"]["requested"])


def transfer(h: Hotline, line: str) -> tuple[str, float]:
    t0 = time.monotonic()
    status, body = h.api("POST", "/calls/1001/transfer", "zhangwei", {"line": line})
    assert status == 202, body
    return body["id"], t0


def started_transfer(h: Hotline, line: str, timeout: float, what: str) -> str:
    """The id of the open transfer to ``line`` that something other than the test started."""

    def latest() -> str | None:
        rows = h.api("GET", "/transfers?limit=1", "admin")[1]
        return next((r["id"] for r in rows if r["line"] == line and not r["terminal"]), None)

    return str(h.wait_for(latest, timeout, what))


def hears(
    p: Party, present: tuple[int, ...], absent: tuple[int, ...], seconds: float = 1.5
) -> dict[int, int]:
    """Measure what ``p`` receives for ``seconds`` from now; assert who it hears."""
    since = time.monotonic()
    time.sleep(seconds)
    levels = {f: round(p.media.amplitude(f, since)) for f in (CITIZEN_HZ, AGENT_HZ, DISPATCHER_HZ)}
    assert all(levels[f] > 1500 for f in present), levels
    assert all(levels[f] < 400 for f in absent), levels
    return levels


def done(party: Party, timeout: float = 40) -> None:
    res = party.sipp.wait(timeout)
    assert res.returncode == 0, res.explain()


def keep(rec: dict[str, Any], name: str) -> None:
    TIMINGS.append({"test": name, "outcome": rec["outcome"], **rec["timings"]})


@pytest.fixture(scope="module", autouse=True)
def report() -> Any:
    yield
    for t in TIMINGS:
        print("transfer timings:", t)


# ------------------------------------------------------------------ tests


def test_three_way_with_media_then_the_agent_leaves(clean: Hotline, workdir: Path) -> None:
    h = clean
    a = agent(h, workdir, hangup_after_ms=14000)
    d = dispatcher(h, workdir, "answer", answer_after_ms=300)
    c = citizen(h, workdir, hold_ms=20000)
    try:
        agent_in_call(h)
        tid, t0 = transfer(h, "119")
        assert time.monotonic() - t0 < 1.0
        # The citizen hears the message (5 s), the dispatcher answers meanwhile.
        rec = wait_state(h, tid, "three_way", 5)
        assert "INVITE sip:119@" in d.sipp.messages_so_far()
        h.wait_for(lambda: "bridged" in record(h, tid)["times"], 10, "all three in the bridge")
        assert re.search(rf"^{tid}\s+3\s", h.cli("confbridge list"), re.M)
        # Everybody hears the two others, nobody hears themselves.
        hears(c, (AGENT_HZ, DISPATCHER_HZ), (CITIZEN_HZ,))
        hears(a, (CITIZEN_HZ, DISPATCHER_HZ), (AGENT_HZ,))
        hears(d, (CITIZEN_HZ, AGENT_HZ), (DISPATCHER_HZ,))
        assert record(h, tid)["state"] == "three_way"
        # The agent hangs up (SIP BYE): citizen and dispatcher stay connected.
        rec = wait_state(h, tid, "caller_and_dispatcher", 12)
        hears(c, (DISPATCHER_HZ,), (AGENT_HZ, CITIZEN_HZ))
        hears(d, (CITIZEN_HZ,), (AGENT_HZ, DISPATCHER_HZ))
        assert re.search(rf"^{tid}\s+2\s", h.cli("confbridge list"), re.M)
        done(c)  # the citizen hangs up; the dispatcher's leg is cleared
        done(d)
        rec = wait_state(h, tid, "done")
        assert rec["outcome"] == "connected" and rec["requested_by"] == "zhangwei (HTTP)"
        assert [x["to"] for x in rec["transitions"]] == [
            "caller_held",
            "dialling",
            "three_way",
            "caller_and_dispatcher",
            "done",
        ]
        timings = rec["timings"]
        assert timings["request_to_ringing"] < 1.0, timings
        assert timings["answer_to_dispatcher_joined"] < 1.0, timings
        keep(rec, "three-way")
    finally:
        for p in (a, d, c):
            p.close()


def test_busy_returns_the_caller_to_the_agent_by_feature_code(
    clean: Hotline, workdir: Path
) -> None:
    h = clean
    a = agent(h, workdir, hangup_after_ms=13500)
    d = dispatcher(h, workdir, "busy")
    c = citizen(h, workdir, hold_ms=28000)  # long enough for the apology (7.6 s) and the queue
    try:
        agent_in_call(h)
        a.media.dtmf("**110")  # the softphone's feature code, RFC 4733
        tid = started_transfer(h, "110", 5, "the feature code to start a transfer")
        rec = wait_state(h, tid, "failed_back_to_agent", 3)
        assert rec["requested_by"] == "seat 1001 (feature code)"
        assert rec["failures"][0]["reason"] == "busy (cause 17)", rec["failures"]
        assert reached_at(rec, "failed_back_to_agent") < 1.5, rec["transitions"]
        # The agent hears the message, then talks with the citizen again.
        time.sleep(h.prompt_seconds("transfer-failed") + 0.5)
        hears(c, (AGENT_HZ,), (CITIZEN_HZ, DISPATCHER_HZ))
        hears(a, (CITIZEN_HZ,), (AGENT_HZ, DISPATCHER_HZ))
        # The agent hangs up: the citizen is not dropped but queued again with the apology.
        rec = wait_state(h, tid, "caller_requeued", 15)
        h.wait_for(
            lambda: re.search(r"^PJSIP/carrier-\w+!hotline-failure!", chans(h), re.M),
            3,
            "the citizen hearing the apology",
        )
        h.wait_for(
            lambda: re.search(r"^PJSIP/carrier-\w+!hotline-queue!.*!Queue!", chans(h), re.M),
            10,
            "the citizen back in the default queue",
        )
        done(c)
        done(d, 5)
        keep(rec, "busy")
    finally:
        for p in (a, d, c):
            p.close()


def test_no_answer_then_alternate_busy_returns_within_the_answer_timeout(
    clean: Hotline, workdir: Path
) -> None:
    h = clean
    a = agent(h, workdir)
    d = dispatcher(h, workdir, "silent")
    alt = dispatcher(h, workdir, "busy", trunk="carrier")
    c = citizen(h, workdir, hold_ms=12000)
    try:
        agent_in_call(h)
        tid, _ = transfer(h, "120")
        rec = wait_state(h, tid, "failed_back_to_agent", ANSWER_TIMEOUT + 4)
        # The first route rang for answer_timeout, the alternate refused at once.
        assert (
            ANSWER_TIMEOUT - 0.3 < reached_at(rec, "alternate_dialling") < ANSWER_TIMEOUT + 1.5
        ), rec
        assert reached_at(rec, "failed_back_to_agent") < ANSWER_TIMEOUT + 2, rec
        assert [f["route"] for f in rec["failures"]] == ["PJSIP/120@emergency", "PJSIP/120@carrier"]
        assert "INVITE sip:120@" in alt.sipp.messages_so_far()
        done(c)  # the citizen hangs up: the agent's leg is cleared too
        done(d, 5)
        done(alt, 5)
        rec = wait_state(h, tid, "done")
        assert rec["outcome"].startswith("failed-back-to-agent"), rec["outcome"]
        keep(rec, "no-answer+alternate-busy")
    finally:
        for p in (a, d, alt, c):
            p.close()


def test_trunk_down_returns_the_caller_to_the_agent(clean: Hotline, workdir: Path) -> None:
    h = clean
    a = agent(h, workdir)
    c = citizen(h, workdir, hold_ms=9000)  # nobody listens on the emergency trunk
    try:
        agent_in_call(h)
        tid, _ = transfer(h, "110")
        rec = wait_state(h, tid, "failed_back_to_agent", ANSWER_TIMEOUT + 4)
        assert reached_at(rec, "failed_back_to_agent") < ANSWER_TIMEOUT + 2, rec["transitions"]
        done(c)
        rec = wait_state(h, tid, "done")
        keep(rec, "trunk-down")
    finally:
        for p in (a, c):
            p.close()


def test_agent_hangs_up_before_the_dispatcher_answers(clean: Hotline, workdir: Path) -> None:
    h = clean
    a = agent(h, workdir, hangup_after_ms=3000)
    d = dispatcher(h, workdir, "answer", answer_after_ms=6000, hangup_after_ms=4000)
    c = citizen(h, workdir, hold_ms=30000, hangs_up=False)  # the hotline ends the call
    try:
        agent_in_call(h)
        tid, _ = transfer(h, "122")
        wait_state(h, tid, "dialling", 2)
        h.wait_for(lambda: "agent_left" in record(h, tid)["times"], 5, "the agent to hang up")
        assert record(h, tid)["state"] == "dialling"
        # Alone in the bridge, the citizen hears music on hold (not silence, not the agent);
        # the opsound tracks fade in over the first second.
        time.sleep(1.0)
        since = time.monotonic()
        time.sleep(2.0)
        moh = [round(c.media.amplitude(f, since)) for f in (AGENT_HZ, DISPATCHER_HZ)]
        assert c.media.packets(since) > 80 and max(moh) < 400, moh
        assert rms(c.media, since) > 300, rms(c.media, since)
        assert record(h, tid)["state"] == "dialling"
        # The dispatcher answers: the citizen, kept, is connected.
        rec = wait_state(h, tid, "caller_and_dispatcher", 8)
        hears(c, (DISPATCHER_HZ,), (AGENT_HZ, CITIZEN_HZ))
        hears(d, (CITIZEN_HZ,), (AGENT_HZ, DISPATCHER_HZ))
        # The dispatcher ends the call: so does the hotline for the citizen.
        done(d)
        done(c)
        rec = wait_state(h, tid, "done")
        assert rec["outcome"] == "connected"
        keep(rec, "agent-left-before-answer")
    finally:
        for p in (a, d, c):
            p.close()


def rms(media: TonePeer, since: float) -> int:
    import audioop

    with media._lock:
        pcm = b"".join(p for at, p in media.received if at >= since)
    return audioop.rms(pcm, 2) if pcm else 0


def test_controller_restart_mid_transfer(clean: Hotline, workdir: Path) -> None:
    h = clean
    a = agent(h, workdir, hangup_after_ms=15000)
    d = dispatcher(h, workdir, "answer", answer_after_ms=2500)
    c = citizen(h, workdir, hold_ms=22000)
    try:
        agent_in_call(h)
        tid, _ = transfer(h, "122")
        assert record(h, tid)["state"] == "dialling"
        h.kill_controller()  # mid-transfer: the line rings, nobody follows the call
        # The dispatcher answers while the controller is down: the dialplan puts them in the bridge.
        h.wait_for(
            lambda: re.search(rf"^{tid}\s+3\s", h.cli("confbridge list"), re.M),
            8,
            "the dispatcher in the bridge",
        )
        h.start_controller()
        rec = wait_state(h, tid, "three_way", 5)
        assert "reconciling transfer" in h.controller_log()
        hears(c, (AGENT_HZ, DISPATCHER_HZ), (CITIZEN_HZ,))
        hears(d, (CITIZEN_HZ, AGENT_HZ), (DISPATCHER_HZ,))
        # The restarted controller keeps following the call.
        wait_state(h, tid, "caller_and_dispatcher", 15)
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
        keep(rec, "restart")
    finally:
        for p in (a, d, c):
            p.close()


def test_ivr_emergency_offer_uses_the_same_transfer(clean: Hotline, workdir: Path) -> None:
    h = clean
    d = dispatcher(h, workdir, "silent")
    alt = dispatcher(h, workdir, "answer", trunk="carrier", answer_after_ms=300)
    c = citizen(h, workdir, hold_ms=16000, service="12345")
    try:
        h.wait_for(lambda: c.media.remote is not None, 5, "the welcome prompt")
        time.sleep(1.5)
        c.media.dtmf("7")  # main menu: 7 = emergency:120
        tid = started_transfer(h, "120", 8, "the IVR to hand the caller to the transfer service")
        rec = wait_state(h, tid, "caller_and_dispatcher", 12)
        assert rec["origin"] == "ivr" and rec["seat"] is None and rec["answered_attempt"] == 2
        h.wait_for(
            lambda: "bridged" in record(h, tid)["times"], 8, "citizen and dispatcher bridged"
        )
        hears(c, (DISPATCHER_HZ,), (CITIZEN_HZ, AGENT_HZ))
        hears(alt, (CITIZEN_HZ,), (DISPATCHER_HZ, AGENT_HZ))
        done(c)
        done(alt)
        done(d, 5)
        rec = wait_state(h, tid, "done")
        keep(rec, "ivr")
    finally:
        for p in (d, alt, c):
            p.close()


def test_a_call_from_110_skips_the_ivr_for_the_priority_queue(
    clean: Hotline, workdir: Path
) -> None:
    """The other way: an emergency centre hands a non-emergency matter to 12345."""
    h = clean
    a = agent(h, workdir)
    ip, _ = h.trunk("emergency")
    media = TonePeer(ip, DISPATCHER_HZ)
    scen = citizen_call_scenario("12345", "110", ip, media.port, 9000)
    c = Party(
        Sipp(workdir, "from-110", scen, local_ip=ip, target=h.sip_target, timeout_s=30), media
    )
    try:
        agent_in_call(h)  # no menu: straight to the queue, answered by the seat
        hears(a, (DISPATCHER_HZ,), (AGENT_HZ,))
        hears(c, (AGENT_HZ,), (DISPATCHER_HZ,))
        listing = chans(h)
        agent_chan = re.search(r"^(PJSIP/1001-\w+)!", listing, re.M)
        centre_chan = re.search(r"^(PJSIP/emergency-\w+)!hotline-queue!province!", listing, re.M)
        assert agent_chan and centre_chan, listing
        assert "QUEUE_PRIO=10" in h.cli(f"core show channel {centre_chan[1]}")
        assert "HOTLINE_ORIGIN=emergency" in h.cli(f"core show channel {agent_chan[1]}")
        # the origin shown to the agent (caller-ID name) and recorded with the call
        assert re.search(r'^From: "110 转办"', a.sipp.messages_so_far(), re.M)
        assert re.search(r"^X-Hotline-Origin: 110\s*$", a.sipp.messages_so_far(), re.M)
        import redis

        r = h.cfg["network"]["redis"]
        client = redis.Redis(host=r["bind"], port=r["port"], socket_timeout=2)
        try:
            found = [client.hget(k, "origin") for k in client.scan_iter("hotline:call:*")]
        finally:
            client.close()
        assert any(b'"mode": "emergency", "from": "110"' in (x or b"") for x in found), found
        status, call = h.api("GET", "/calls/1001", "zhangwei")
        assert status == 200 and call["origin"] == "emergency", call
        assert call["caller"]["name"] == "110 转办", call
        assert call["origin_record"]["from"] == "110", call
        done(c)
    finally:
        for p in (a, c):
            p.close()
