"""Issue #4, waiting in the queue and the call-back queue, on a real Asterisk.

* A caller who overflowed from the Nanchang queue keeps their place in time:
  in the province queue they are put in front of a caller who arrived after
  them, and are answered first.
* The position announcement is heard: Asterisk plays the Mandarin prompts
  and number files (say.conf) to the waiting caller (verbose log), and the
  caller's RTP at that moment carries audio.
* A call-back accepted (press 1, confirm the number, Asterisk hangs up), the
  agent reserved and freed, the citizen -- a SIPp UAS on the carrier trunk's
  address -- called back and bridged with the agent; the stats count it.
* Two call-backs and one live caller are served in original arrival order.
* The controller killed and started again with call-backs pending and one in
  progress: none lost, none doubled (INVITEs the carrier received).
* A call-back the citizen does not answer is retried, then recorded failed.
* An abandoned call is listed and turned into a call-back request.
* The expected wait is announced on joining a queue whose agents are all busy
  (queue-holdtime, the number, queue-minutes), the figure the controller logged.
* A call-back chosen in the IVR menu (action ``callback``): the number confirmed,
  Asterisk hangs up, the local agent called first, then the citizen, bridged.
* A call-back in a queue nobody serves, or waiting there past the queue's
  overflow time, moves on to the province queue like a live caller, keeping
  its arrival; queue_log records the overflow.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import Hotline
from .harness import test_config as sample_config
from .sipp import (
    Keypad,
    Sipp,
    answering_party_scenario,
    caller_scenario,
    dtmf,
    free_media_port,
    pause,
    until_answered,
)
from .test_first_call import call

RING_CITIZEN = 6


def hotline_config() -> dict[str, Any]:
    cfg = sample_config()
    q = cfg["queues"]
    q["province"].update(
        ring_timeout=3, wrapup=1, announce_every=10, callback_after=4, message_every=20
    )
    q["nanchang"].update(ring_timeout=3, overflow={"after": 6, "to": "province"})
    cfg["callbacks"].update(retries=1, retry_delay=5, ring_agent=8, ring_citizen=RING_CITIZEN)
    # 7 in the main menu: a call-back instead of waiting (the menu action "callback")
    cfg["menus"]["main"]["choices"].append({"key": "7", "words": ["回电"], "action": "callback"})
    return cfg


# ------------------------------------------------------------------ SIP parties


class Carrier:
    """The carrier's side of call-backs: a SIPp UAS at the carrier trunk's address."""

    def __init__(
        self, h: Hotline, workdir: Path, name: str, answer: bool = True, talk_ms: int = 2000
    ):
        ip, port = h.trunk("carrier")
        media = free_media_port(ip)
        self.sipp = Sipp(
            workdir,
            name,
            answering_party_scenario(
                "answer" if answer else "busy", ip, media, answer_after_ms=300,
                hangup_after_ms=talk_ms, who="citizen"),
            local_ip=ip,
            local_port=port,
            media_port=media,
            target=h.sip_target,
            calls=100,
            timeout_s=170,
        )
        time.sleep(0.3)  # listening before anything is dialled

    def invites(self) -> list[tuple[str, str]]:
        """(number dialled, Call-ID) of each distinct INVITE received, in order."""
        seen: dict[str, str] = {}
        for block in re.split(r"message received \[\d+\] bytes :", self.sipp.messages_so_far()):
            m = re.match(r"\s*INVITE sip:(\d+)@", block)
            cid = re.search(r"^Call-ID:\s*(\S+)", block, re.M | re.I)
            if m and cid and cid.group(1) not in seen:
                seen[cid.group(1)] = m.group(1)
        return [(num, cid) for cid, num in seen.items()]

    def stop(self) -> None:
        self.sipp.stop()


def register(h: Hotline, workdir: Path, seat: str, hold_ms: int = 170_000) -> Sipp:
    return h.register_seat(workdir, seat, hold_ms=hold_ms, name=f"agent-{seat}")


def member_line(h: Hotline, queue: str, seat: str) -> str:
    return next(
        (ln for ln in h.cli(f"queue show {queue}").splitlines() if f"(PJSIP/{seat}" in ln), ""
    )


def waiting_channels(h: Hotline, queue: str) -> list[str]:
    """Channels waiting in ``queue``, in Asterisk's order."""
    out = h.cli(f"queue show {queue}")
    return re.findall(r"^\s+\d+\. (PJSIP/\S+)", out, re.M)


def callbacks(h: Hotline, state: str = "all") -> list[dict[str, Any]]:
    status, body = h.api("GET", f"/callbacks?state={state}", "admin")
    assert status == 200, body
    return list(body["callbacks"])


def callback_for(h: Hotline, number: str) -> dict[str, Any] | None:
    return next((c for c in callbacks(h) if c["number"] == number), None)


def offer_and_accept(
    h: Hotline, workdir: Path, caller: str, name: str, press_at_ms: int = 7000
) -> Sipp:
    """A caller queues in the province (key 2), presses 1 for a call-back after the
    offer, confirms the caller ID with 1 and waits for Asterisk to hang up."""
    keys = Keypad(workdir, name)
    steps = pause(800) + keys.press("2", then_ms=press_at_ms - 800) + keys.press("1", then_ms=1500)
    steps += keys.press("1")
    ip, _ = h.trunk("carrier")
    return Sipp(
        workdir,
        name,
        caller_scenario(steps, caller=caller, hangs_up=False),
        local_ip=ip,
        target=h.sip_target,
        timeout_s=60,
    )


@pytest.fixture
def fresh(clean: Hotline) -> Iterator[Hotline]:
    """No call-back request left open by another test; verbose log on for this one."""
    h = clean
    h.cli("logger add channel verbose.log notice,warning,error,verbose(3)")
    yield h
    for c in callbacks(h, "open"):
        h.api("POST", f"/callbacks/{c['id']}/cancel", "admin")


def verbose_log(h: Hotline) -> str:
    p = h.instance.host("log", "verbose.log")
    return p.read_text(errors="replace") if p.exists() else ""


# ------------------------------------------------------------------ tests


def test_overflowed_caller_keeps_place_and_hears_position(fresh: Hotline, workdir: Path) -> None:
    h = fresh
    agent, city_agent = register(h, workdir, "1001"), register(h, workdir, "2001")
    try:
        # Nanchang's seat is logged in but paused: the caller waits there until overflow.
        h.login_seat("2001")
        assert h.api("POST", "/seats/2001/pause", "chenjing", {"reason": "meeting"})[0] == 200
        before_log, before_q = len(verbose_log(h)), len(h.queue_log())
        # X: a Nanchang fixed line presses 0 (local first: the Nanchang queue) ...
        x = call(
            h,
            workdir,
            pause(800) + dtmf("0", then_ms=30000),
            name="x-nanchang",
            caller="079186001234",
        )
        time.sleep(3)
        # ... Y, a newer caller, goes straight to the province queue (key 2) and waits there.
        y = call(
            h,
            workdir,
            pause(800) + dtmf("2", then_ms=30000),
            name="y-province",
            caller="13907910002",
        )
        h.wait_for(
            lambda: len(waiting_channels(h, "province")) == 1, 10, "Y waiting in the province"
        )
        y_chan = waiting_channels(h, "province")[0]
        # X overflows after 6 s in Nanchang and is put in front of Y.
        h.wait_for(
            lambda: len(waiting_channels(h, "province")) == 2, 15, "X overflowed to the province"
        )
        order = waiting_channels(h, "province")
        assert order[1] == y_chan, order
        # Y's position changed to 2: Asterisk tells Y in Mandarin
        # (queue-thereare, num-2, queue-callswaiting) at its next announcement. Waited for
        # by what Y hears: app_queue logs "Told ... (which was N)" with the position at
        # the end of an announcement, so a "you are next" cut across by X's arrival is
        # logged as "which was 2" too.
        two = ["queue-thereare.slin", "num-2.slin", "queue-callswaiting.slin"]

        def y_heard() -> tuple[list[str], list[str]]:
            log = verbose_log(h)[before_log:]
            lines = [ln for ln in log.splitlines() if f"<{y_chan}>" in ln and "Playing" in ln]
            files = [re.search(r"Playing '([^']+)'", ln).group(1).rsplit("/", 1)[-1]  # type: ignore[union-attr]
                     for ln in lines]
            return lines, files

        def told_two() -> bool:
            files = y_heard()[1]
            return any(files[i : i + 3] == two for i in range(len(files)))

        h.wait_for(told_two, 25, "Y told position 2")
        told = rf"Told {re.escape(y_chan)} in province their queue position \(which was 2\)"
        h.wait_for(lambda: re.search(told, verbose_log(h)[before_log:]), 10, "'Told' logged")
        lines, files = y_heard()
        assert all("(language 'zh')" in ln for ln in lines if "num-" in ln), lines
        # the wallboard (GET /queues/live) shows the same: X first, Y second, masked
        status, board = h.api("GET", "/queues/live", "sup-province")
        assert status == 200, board
        province, nanchang = board["queues"]["province"], board["queues"]["nanchang"]
        assert province["waiting"] == 2 and province["longest_wait_s"] >= 1, province
        assert [(c["position"], c["caller"]) for c in province["callers"]] == [
            (1, "079*****1234"), (2, "139****0002")], province
        assert nanchang["waiting"] == 0 and nanchang["seats"]["paused"] == 1, nanchang
        assert nanchang["paused_reasons"] == {"meeting": 1}, nanchang
        # a city supervisor sees the city's queues only; the province's sees them all
        assert set(board["queues"]) == {"province", "nanchang", "ganzhou", "ganzhou-yudu",
                                        "social"}, board
        status, city = h.api("GET", "/queues/live", "sup-nanchang")
        assert status == 200 and set(city["queues"]) == {"nanchang"}, city
        # the Nanchang agent sees the queues of the seat, without the callers' numbers
        status, seat_view = h.api("GET", "/queues/live", "chenjing")
        assert status == 200 and set(seat_view["queues"]) == {"nanchang"}, seat_view
        # The agent comes: X (first arrival) is answered before Y.
        h.login_seat("1001")
        rx, ry = x.wait(60), y.wait(60)
        assert rx.returncode == 0, rx.explain()
        assert ry.returncode == 0, ry.explain()
        new = h.queue_log()[before_q:]
        connects = [ln.split("|")[1] for ln in new.splitlines() if "|province|1001|CONNECT|" in ln]
        x_id = next(
            ln.split("|")[1] for ln in new.splitlines() if "|nanchang|" in ln and "ENTERQUEUE" in ln
        )
        assert connects and connects[0] == x_id, new
        assert "|nanchang|NONE|OVERFLOW|province|" in new
    finally:
        agent.stop()
        city_agent.stop()


def test_callback_accepted_agent_reserved_citizen_called_back(
    fresh: Hotline, workdir: Path
) -> None:
    h = fresh
    t0 = int(time.time())
    carrier = Carrier(h, workdir, "carrier-accept")
    agent = register(h, workdir, "1001")
    try:
        before_q = len(h.queue_log())
        # Nobody logged in: the caller waits, is offered the call-back, presses 1, confirms.
        res = offer_and_accept(h, workdir, "13907910021", "accept").wait(60)
        assert res.returncode == 0, res.explain()  # Asterisk hung up after the confirmation
        req = callback_for(h, "13907910021")
        assert req is not None and req["state"] == "pending" and req["queue"] == "province", req
        new = h.queue_log()[before_q:]
        enter = next(ln for ln in new.splitlines() if "|province|" in ln and "ENTERQUEUE" in ln)
        assert req["uniqueid"] == enter.split("|")[1]
        assert abs(req["first_queued"] - int(enter.split("|")[0])) <= 1
        assert "|EXITWITHKEY|1|" in new
        assert carrier.invites() == []
        # The agent logs in: reserved (paused, reason callback), rung, then the citizen is called.
        h.login_seat("1001")
        h.wait_for(lambda: carrier.invites(), 20, "the carrier receives the call-back INVITE")
        assert [n for n, _ in carrier.invites()] == ["13907910021"]
        assert "paused:callback" in member_line(h, "province", "1001")
        h.wait_for(
            lambda: (callback_for(h, "13907910021") or {}).get("state") == "done", 20, "done"
        )
        done = callback_for(h, "13907910021")
        assert done is not None
        assert [t["to"] for t in done["history"]] == [
            "pending",
            "reserved",
            "calling-agent",
            "calling-citizen",
            "connected",
            "done",
        ]
        assert done["attempts"] == 1
        log = h.queue_log()[before_q:]
        assert re.search(
            rf"\|{req['uniqueid']}\|province\|1001\|CALLBACK\|{done['attempt_id']}$", log, re.M
        ), log
        # The agent is freed after the wrap-up and takes queue calls again.
        h.wait_for(lambda: "paused" not in member_line(h, "province", "1001"), 10, "1001 unpaused")
        # Stats: the call was called back.
        status, stats = h.api("GET", f"/stats/queues?since={t0}", "admin")
        assert status == 200, stats
        assert (
            stats["total"]["called_back"] == 1 and stats["by_queue"]["province"]["called_back"] == 1
        )
        assert [n for n, _ in carrier.invites()] == ["13907910021"]  # once
        # The citizen's leg is recorded, placed in the queue's centre (who may listen).
        recs = h.wait_for(lambda: h.api("GET", f"/recordings?call_id={done['attempt_id']}",
                                        "admin")[1], 10, "the call-back's recording row")
        assert [r["centre"] for r in recs] == ["province"], recs
    finally:
        agent.stop()
        carrier.stop()


def queue_log_lines(h: Hotline, since: int) -> list[list[str]]:
    return [ln.split("|") for ln in h.queue_log()[since:].splitlines() if ln]


def test_two_callbacks_and_a_live_caller_served_in_arrival_order(
    fresh: Hotline, workdir: Path
) -> None:
    h = fresh
    carrier = Carrier(h, workdir, "carrier-order")
    agent = register(h, workdir, "1001")
    try:
        before_q = len(h.queue_log())
        a = offer_and_accept(h, workdir, "13907910031", "a")  # first
        time.sleep(1.5)
        c = call(
            h, workdir, pause(800) + dtmf("2", then_ms=34000), name="c-live", caller="13907910032"
        )
        time.sleep(1.5)
        b = offer_and_accept(h, workdir, "13907910033", "b")  # last
        for name, p in (("a", a), ("b", b)):
            res = p.wait(60)
            assert res.returncode == 0, f"{name}: {res.explain()}"
        ra, rb = callback_for(h, "13907910031"), callback_for(h, "13907910033")
        assert ra is not None and rb is not None and ra["first_queued"] <= rb["first_queued"]
        h.login_seat("1001")
        res = c.wait(60)
        assert res.returncode == 0, res.explain()
        h.wait_for(
            lambda: (callback_for(h, "13907910033") or {}).get("state") == "done",
            30,
            "B called back",
        )
        lines = queue_log_lines(h, before_q)
        events = [(ln[1], ln[4]) for ln in lines if ln[4] in ("CALLBACK", "CONNECT")]
        c_id = next(ln[1] for ln in lines if ln[4] == "ENTERQUEUE" and ln[6] == "13907910032")
        assert events == [
            (ra["uniqueid"], "CALLBACK"),
            (c_id, "CONNECT"),
            (rb["uniqueid"], "CALLBACK"),
        ], lines
        assert [n for n, _ in carrier.invites()] == ["13907910031", "13907910033"]
    finally:
        agent.stop()
        carrier.stop()


def test_controller_restart_loses_and_doubles_no_callback(fresh: Hotline, workdir: Path) -> None:
    h = fresh
    carrier = Carrier(h, workdir, "carrier-restart", talk_ms=4000)
    agent = register(h, workdir, "1001")
    try:
        for p in (
            offer_and_accept(h, workdir, "13907910041", "r1"),
            offer_and_accept(h, workdir, "13907910042", "r2"),
        ):
            res = p.wait(60)
            assert res.returncode == 0, res.explain()
        pending = {c["number"]: c for c in callbacks(h, "pending")}
        assert set(pending) == {"13907910041", "13907910042"}
        # Killed with two call-backs pending: both are still there after the restart.
        h.kill_controller()
        h.start_controller()
        assert {c["number"] for c in callbacks(h, "pending")} == set(pending)
        h.login_seat("1001")
        # Killed again while the first call-back is under way (the citizen talking).
        h.wait_for(lambda: carrier.invites(), 20, "the first call-back reaches the carrier")
        h.kill_controller()
        h.start_controller()
        h.wait_for(
            lambda: all((callback_for(h, n) or {}).get("state") == "done" for n in pending),
            40,
            "both call-backs done",
        )
        # Each citizen called exactly once (they queued in the same second: either order).
        assert sorted(n for n, _ in carrier.invites()) == ["13907910041", "13907910042"], (
            carrier.invites()
        )
        for n in pending:
            done = callback_for(h, n)
            assert done is not None and done["attempts"] == 1 and done["launches"] == 1, done
        h.wait_for(lambda: "paused" not in member_line(h, "province", "1001"), 10, "1001 unpaused")
    finally:
        agent.stop()
        carrier.stop()


def test_unanswered_callback_is_retried_then_failed(fresh: Hotline, workdir: Path) -> None:
    h = fresh
    carrier = Carrier(h, workdir, "carrier-busy", answer=False)
    agent = register(h, workdir, "1001")
    try:
        res = offer_and_accept(h, workdir, "13907910051", "busy").wait(60)
        assert res.returncode == 0, res.explain()
        h.login_seat("1001")
        h.wait_for(
            lambda: (callback_for(h, "13907910051") or {}).get("state") == "failed", 40, "failed"
        )
        failed = callback_for(h, "13907910051")
        assert failed is not None and failed["attempts"] == 2 and failed["result"] == "BUSY", failed
        states = [t["to"] for t in failed["history"]]
        assert states.count("retry-wait") == 1 and states[-1] == "failed", states
        assert [n for n, _ in carrier.invites()] == ["13907910051", "13907910051"]
        assert callbacks(h, "failed")[0]["id"] == failed["id"]
        h.wait_for(lambda: "paused" not in member_line(h, "province", "1001"), 10, "1001 unpaused")
    finally:
        agent.stop()
        carrier.stop()


def test_abandoned_call_listed_and_turned_into_a_callback(fresh: Hotline, workdir: Path) -> None:
    h = fresh
    t0 = int(time.time())
    res = call(
        h, workdir, pause(800) + dtmf("2", then_ms=3000), name="gave-up", caller="13907910061"
    ).wait(30)
    assert res.returncode == 0, res.explain()
    assert h.api("GET", "/callbacks/abandoned", "zhangwei")[0] == 403  # agents may not
    status, body = h.api("GET", f"/callbacks/abandoned?since={t0}", "sup-province")
    assert status == 200, body
    (missed,) = [m for m in body["abandoned"] if m["number"] == "13907910061"]
    assert missed["queue"] == "province" and missed["waited_s"] >= 1
    status, made = h.api("POST", f"/callbacks/abandoned/{missed['uniqueid']}", "sup-province")
    assert status == 201, made
    assert (
        made["source"] == "abandoned"
        and made["state"] == "pending"
        and made["created_by"] == "sup-province"
    )
    assert made["first_queued"] == missed["first_queued"] and made["number"] == "13907910061"
    # Listed once: now it has a call-back.
    body = h.api("GET", f"/callbacks/abandoned?since={t0}", "sup-province")[1]
    assert missed["uniqueid"] not in [m["uniqueid"] for m in body["abandoned"]]
    status, again = h.api("POST", f"/callbacks/abandoned/{missed['uniqueid']}", "sup-province")
    assert status == 404 and again["error_id"] == "not-found", again
    status, one = h.api("GET", f"/callbacks/{made['id']}", "sup-province")
    assert status == 200 and one["id"] == made["id"], one
    assert h.api("GET", f"/callbacks/{made['id']}", "sup-nanchang")[0] == 404  # not their queue
    status, bad = h.api("GET", "/callbacks?state=sleeping", "admin")
    assert status == 400 and bad["error_id"] == "bad-request", bad
    status, cancelled = h.api("POST", f"/callbacks/{made['id']}/cancel", "sup-province")
    assert status == 200 and cancelled["state"] == "cancelled", cancelled


# ------------------------------------------------------------------ call-backs from the menu


def book_from_menu(h: Hotline, workdir: Path, caller: str, name: str) -> Sipp:
    """A caller presses 7 (call-back) in the main menu, confirms the caller ID with 1
    during the read-back, and waits for Asterisk to hang up."""
    keys = Keypad(workdir, name)
    steps = pause(800) + keys.press("7", then_ms=2500) + keys.press("1")
    ip, _ = h.trunk("carrier")
    scenario = caller_scenario(steps, caller=caller, hangs_up=False, bye_timeout_ms=30000)
    return Sipp(workdir, name, scenario, local_ip=ip, target=h.sip_target, timeout_s=60)


CALLED_BACK = ["pending", "reserved", "calling-agent", "calling-citizen", "connected", "done"]


def test_callback_chosen_in_the_menu_is_booked_and_called_back(
    fresh: Hotline, workdir: Path
) -> None:
    h = fresh
    carrier = Carrier(h, workdir, "carrier-menu")
    agent = register(h, workdir, "2001")
    try:
        h.login_seat("2001")  # Nanchang's seat, free: the local queue serves at once
        before_q, chose = len(h.queue_log()), time.time()
        res = book_from_menu(h, workdir, "13907910041", "menu-cb").wait(60)
        assert res.returncode == 0, res.explain()  # hung up after the confirmation
        req = callback_for(h, "13907910041")
        assert req is not None and req["source"] == "menu" and req["queue"] == "nanchang", req
        # Its place in line: the moment the caller chose the call-back in the menu.
        assert chose < req["first_queued"] < chose + 5, (chose, req)
        h.wait_for(lambda: carrier.invites(), 20, "the carrier receives the call-back INVITE")
        assert [n for n, _ in carrier.invites()] == ["13907910041"]
        h.wait_for(
            lambda: (callback_for(h, "13907910041") or {}).get("state") == "done", 20, "done"
        )
        done = callback_for(h, "13907910041")
        assert done is not None and [t["to"] for t in done["history"]] == CALLED_BACK
        log = h.queue_log()[before_q:]
        assert re.search(
            rf"\|{req['uniqueid']}\|nanchang\|2001\|CALLBACK\|{done['attempt_id']}$", log, re.M
        ), log
        assert "ENTERQUEUE" not in log  # the caller never waited on the line
    finally:
        agent.stop()
        carrier.stop()


@pytest.mark.parametrize("local", ["nobody", "paused"])
def test_callback_in_a_queue_nobody_serves_overflows_keeping_its_arrival(
    fresh: Hotline, workdir: Path, local: str
) -> None:
    h = fresh
    number = {"nobody": "13907910051", "paused": "13907910052"}[local]
    carrier = Carrier(h, workdir, f"carrier-{local}")
    agents = [register(h, workdir, "1001"), register(h, workdir, "2001")]
    try:
        if local == "paused":  # someone in Nanchang, not serving: the 6 s overflow applies
            h.login_seat("2001")
            assert h.api("POST", "/seats/2001/pause", "chenjing", {"reason": "meeting"})[0] == 200
        before_q = len(h.queue_log())
        res = book_from_menu(h, workdir, number, f"menu-{local}").wait(60)
        assert res.returncode == 0, res.explain()
        req = callback_for(h, number)
        assert req is not None, callbacks(h)
        first = req["first_queued"]
        h.wait_for(
            lambda: (callback_for(h, number) or {}).get("queue") == "province",
            20,
            "the call-back moved to the province queue",
        )
        moved = callback_for(h, number)
        assert moved is not None and moved["first_queued"] == first  # its place kept
        why = [t["reason"] for t in moved["history"] if t["reason"].startswith("overflow")]
        expect = "nobody in nanchang" if local == "nobody" else "s in nanchang"
        assert len(why) == 1 and "nanchang -> province" in why[0] and expect in why[0], why
        if local == "paused":
            assert moved["queue_since"] - first >= 6, moved
        h.wait_for(
            lambda: "|nanchang|NONE|OVERFLOW|province|CALLBACK" in h.queue_log()[before_q:],
            10,
            "OVERFLOW in queue_log",
        )
        # The province's seat logs in and the citizen is called back from there.
        h.login_seat("1001")
        h.wait_for(lambda: (callback_for(h, number) or {}).get("state") == "done", 30, "done")
        log = h.queue_log()[before_q:]
        assert re.search(rf"\|{req['uniqueid']}\|province\|1001\|CALLBACK\|", log), log
        assert [n for n, _ in carrier.invites()] == [number]
    finally:
        for a in agents:
            a.stop()
        carrier.stop()


# ------------------------------------------------------------------ expected wait


def test_expected_wait_announced_when_every_agent_is_busy(fresh: Hotline, workdir: Path) -> None:
    h = fresh
    agent = register(h, workdir, "1001")
    try:
        h.login_seat("1001")
        before_log, before_ctl = len(verbose_log(h)), len(h.controller_log())
        # A goes to the province queue (key 2), is answered by 1001 and talks 15 s.
        a = call(h, workdir, pause(800) + dtmf("2") + until_answered(15000), name="a-talks",
                 caller="13907910061")
        h.wait_for(lambda: "(in call)" in member_line(h, "province", "1001"), 20, "1001 on A")
        # B joins while the only agent is busy: B hears the estimate, then waits.
        b = call(h, workdir, pause(800) + dtmf("2", then_ms=12000), name="b-waits",
                 caller="13907910062")
        said = re.compile(r"Playing '[^']*/queue-minutes")
        h.wait_for(lambda: said.search(verbose_log(h)[before_log:]), 20, "the estimate said")
        logged = re.search(r"queue province: expected wait about (\d+) min \(1 serving, 0 free",
                           h.controller_log()[before_ctl:])
        assert logged, h.controller_log()[before_ctl:][-3000:]
        log = verbose_log(h)[before_log:]
        told = {m.group(1) for m in re.finditer(r"<(PJSIP/[^>]+)>.*Playing '[^']*/queue-holdtime",
                                                log)}
        assert len(told) == 1, told  # B only: A had a free agent
        (b_chan,) = told
        files = [
            m.group(1).rsplit("/", 1)[-1]
            for ln in log.splitlines()
            if f"<{b_chan}>" in ln and (m := re.search(r"Playing '([^']+)'", ln))
        ]
        i = files.index("queue-holdtime.slin")
        assert files[i : i + 3] == [
            "queue-holdtime.slin", f"num-{logged.group(1)}.slin", "queue-minutes.slin"
        ], files
        for p, who in ((b, "B"), (a, "A")):
            res = p.wait(60)
            assert res.returncode == 0, f"{who}: {res.explain()}"
    finally:
        agent.stop()


def test_the_callback_dial_checks_the_stored_number_again(fresh: Hotline) -> None:
    """Defence in depth: the controller only ever stores digits, but the call-back
    context checks the number once more before Dial(). A number with a dial string in
    it, originated straight into that context over AMI, is never dialled."""
    import asyncio

    from hotline import channel_vars as cv
    from hotline.ami import AmiClient

    h = fresh
    net = h.cfg["network"]["ami"]
    attempt = f"cbbad-{int(time.time() * 1000)}"

    async def go() -> None:
        async with AmiClient(net["bind"], net["port"], "hotline", h.ami_secret()) as ami:
            await ami.originate(
                attempt, f"Local/s@{cv.CTX_CALLBACK_DIAL}", application="Wait", data="2",
                variables={cv.CB_NUMBER: "110&PJSIP/110@emergency", cv.CB_ATTEMPT: attempt,
                           cv.CB_FROM: "12345", cv.CB_QUEUE: "province",
                           cv.CB_CALLID: attempt, cv.CB_SEAT: "1001"})

    asyncio.run(go())
    h.wait_for(lambda: f"{cv.EV_FAIL}|{attempt}|BADNUMBER" in h.queue_log(), 10, "BADNUMBER")
    # CALLBACKDIAL is logged on the step before Dial(): never reached
    assert f"{cv.EV_DIAL}|{attempt}" not in h.queue_log(), h.queue_log()
    assert h.wait_no_channels(10) == 0
    assert h.status()["ok"], h.status()  # the controller shrugged off an attempt it never made
