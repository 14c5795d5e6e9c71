"""Issue 6 item 3, the satisfaction survey (回访), with real calls on a real Asterisk.

The citizen is a SIPp UAS at the carrier trunk's address (127.0.0.2) with a
:class:`TonePeer` as its media: it hears the question (RTP from Asterisk) and
presses a key as RFC 4733 events. Each survey follows a real work order: a
call's order (written into the controller's store as the call tracker does)
is completed by the agent as a consultation answered on the call, which closes
it; the closed order schedules its survey, read back with ``GET /surveys``, and
the answer lands on the order (a dissatisfied one reopens it).

* The survey call goes to the stored number over the carrier trunk; the citizen
  presses 3: the result ``dissatisfied`` is stored and reported through the sink
  with the order's reference.
* A citizen who does not answer is called ``1 + retries`` times, then the job
  ends ``no_answer``.
* Busy (486) twice: two tries, then ``no_answer``; a citizen who answers and hangs
  up without choosing is recorded ``hung-up`` and not called again.
* The controller killed while the survey call rings: after the restart the call
  is neither repeated nor lost -- the citizen answers, the AGI session reaches
  the new controller, the answer is stored.
* An inbound call from the carrier cannot reach the survey context.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from workorders.facts import CallFacts, Outcome
from workorders.store import WorkOrderStore

from .harness import Hotline
from .harness import test_config as sample_config
from .sipp import Sipp, TonePeer, answering_party_scenario, rejected_call_scenario

CITIZEN_HZ = 700
RING_TIMEOUT = 14
RESTART_ANSWER_MS = 11000  # the citizen answers once the controller is back (about 3 s)


def hotline_config() -> dict[str, Any]:
    cfg = sample_config()
    cfg["survey"].update(delay=0, retries=1, retry_delay=5, ring_timeout=RING_TIMEOUT)
    return cfg


class Citizen:
    """The citizen's phone: a SIPp UAS at the carrier's address, a TonePeer for media."""

    def __init__(self, h: Hotline, wd: Path, name: str, mode: str = "answer", *,
                 answer_after_ms: int = 300, hangup_after_ms: int = 0, calls: int = 1) -> None:
        ip, port = h.trunk("carrier")
        self.media = TonePeer(ip, CITIZEN_HZ)
        scen = answering_party_scenario(mode, ip, self.media.port,
                                        answer_after_ms=answer_after_ms,
                                        hangup_after_ms=hangup_after_ms, wait_ms=60000,
                                        who="citizen")
        self.sipp = Sipp(wd, name, scen, local_ip=ip, local_port=port, target=h.sip_target,
                         calls=calls, timeout_s=90)
        time.sleep(0.3)  # listening before anything is dialled

    def invites(self) -> list[str]:
        """The number dialled in each distinct INVITE received, in order."""
        seen: dict[str, str] = {}
        for block in re.split(r"message received \[\d+\] bytes :", self.sipp.messages_so_far()):
            m = re.match(r"\s*INVITE sip:(\d+)@", block)
            cid = re.search(r"^Call-ID:\s*(\S+)", block, re.M | re.I)
            if m and cid and cid.group(1) not in seen:
                seen[cid.group(1)] = m.group(1)
        return list(seen.values())

    def hears_the_question(self, h: Hotline, timeout: float = 15) -> None:
        t0 = time.monotonic()
        h.wait_for(lambda: self.media.packets(t0) > 25, timeout, "the question's audio")

    def close(self) -> None:
        self.sipp.stop()
        self.media.close()


def closed_order(h: Hotline, number: str) -> tuple[str, dict[str, Any]]:
    """A call from ``number`` answered by agent zhangwei, its order closed by the agent
    (a consultation answered on the call): the order's reference and its survey job."""
    start = datetime.now(UTC) - timedelta(minutes=3)
    store = WorkOrderStore.in_state_dir(h.instance.state)
    try:
        ref = store.record_call(CallFacts(
            call_id=f"survey-{number}", uniqueid=f"survey-{number}", caller=number,
            called="12345", outcome=Outcome.ANSWERED, started_at=start,
            ended_at=start + timedelta(minutes=2), centre="province", agent="zhangwei"))
    finally:
        store.close()
    status, o = h.api("POST", f"/orders/{ref}/complete", "zhangwei",
                      {"content": "咨询社保卡补办", "category": "consultation", "answer": "已答复"})
    assert status == 200 and o["status"] == "closed", o
    status, body = h.api("GET", f"/surveys?state=all&order={ref}", "admin")
    assert status == 200 and len(body["surveys"]) == 1, body  # scheduled by the closing
    return ref, dict(body["surveys"][0])


def order(h: Hotline, ref: str) -> dict[str, Any]:
    status, o = h.api("GET", f"/orders/{ref}", "admin")
    assert status == 200, o
    return dict(o)


def survey(h: Hotline, job_id: str) -> dict[str, Any]:
    status, body = h.api("GET", f"/surveys/{job_id}", "sup-province")
    assert status == 200, body
    return dict(body)


def reported(h: Hotline, job_id: str) -> dict[str, Any] | None:
    j = survey(h, job_id)
    return j if j["reported_at"] else None


# ------------------------------------------------------------------ tests


def test_citizen_presses_3_and_dissatisfied_is_reported(clean: Hotline, workdir: Path) -> None:
    h = clean
    citizen = Citizen(h, workdir, "citizen-3")
    try:
        ref, job = closed_order(h, "13907910061")
        h.wait_for(lambda: citizen.invites(), 10, "the survey call reaches the carrier")
        assert citizen.invites() == ["13907910061"]
        assert 'From: "12345" <sip:12345@' in citizen.sipp.messages_so_far()  # the hotline calls
        citizen.hears_the_question(h)
        citizen.media.dtmf("3")
        done = h.wait_for(lambda: reported(h, job["id"]), 20, "the result reported")
        assert done["state"] == "answered" and done["result"] == "dissatisfied", done
        (attempt,) = done["attempts"]
        assert attempt["id"] == f"{job['id']}-1" and attempt["outcome"] == "answered"
        assert attempt["answered_at"] and attempt["detail"] == "by key"
        # the answer is on the order, once, and (reopen_on_dissatisfied) sends it back
        o = order(h, ref)
        assert o["survey"] == "dissatisfied" and o["rehandled"] == 1, o
        assert [e["action"] for e in o["events"]].count("surveyed") == 1, o["events"]
        # the thanks is played, then Asterisk hangs up (the UAS got a BYE)
        res = citizen.sipp.wait(20)
        assert res.returncode == 0, res.explain()
        listed = h.api("GET", f"/surveys?state=answered&order={ref}", "admin")[1]["surveys"]
        assert [j["id"] for j in listed] == [job["id"]]
        # a province order: its survey and the survey call's recording are the province's
        assert done["centre"] == "province", done
        assert h.api("GET", f"/surveys/{job['id']}", "sup-nanchang")[0] == 404
        assert h.api("GET", f"/surveys?state=all&order={ref}", "sup-nanchang")[1]["surveys"] == []
        recs = h.api("GET", f"/recordings?kind=survey&call_id={attempt['id']}", "admin")[1]
        assert [r["centre"] for r in recs] == ["province"], recs
        assert h.api("GET", f"/recordings?call_id={attempt['id']}", "sup-nanchang")[1] == []
        assert h.api("GET", "/surveys", "zhangwei")[0] == 403  # agents may not
        assert h.api("POST", "/surveys", "sup-province",
                     {"order": "GD-T-9", "number": "13907910061"})[0] == 403  # admins only
        bad = h.api("POST", "/surveys", "admin", {"order": "GD-T-9", "number": "110"})
        assert bad[0] == 400 and "is not a number to call" in bad[1]["message"], bad
    finally:
        citizen.close()


def test_unanswered_survey_is_retried_then_no_answer(clean: Hotline, workdir: Path) -> None:
    h = clean
    citizen = Citizen(h, workdir, "citizen-silent", mode="silent", calls=2)
    try:
        ref, job = closed_order(h, "13907910062")
        done = h.wait_for(lambda: reported(h, job["id"]), 2 * RING_TIMEOUT + 25,
                          "no_answer after every try")
        assert done["state"] == "no_answer" and done["result"] == "no_answer", done
        assert [a["outcome"] for a in done["attempts"]] == ["no-answer", "no-answer"], done
        assert [a["id"] for a in done["attempts"]] == [f"{job['id']}-1", f"{job['id']}-2"]
        gap = done["attempts"][1]["started_at"] - done["attempts"][0]["ended_at"]
        assert gap >= 5, done  # retry_delay
        assert citizen.invites() == ["13907910062", "13907910062"]
        assert order(h, ref)["survey"] == "no_answer"
    finally:
        citizen.close()


def test_busy_twice_and_hung_up_without_choosing(clean: Hotline, workdir: Path) -> None:
    h = clean
    busy = Citizen(h, workdir, "citizen-busy", mode="busy", calls=2)
    try:
        ref, job = closed_order(h, "13907910064")
        done = h.wait_for(lambda: reported(h, job["id"]), 25, "no_answer after two busy tries")
        assert [a["outcome"] for a in done["attempts"]] == ["busy", "busy"], done
        assert done["state"] == "no_answer" and busy.invites() == ["13907910064"] * 2
    finally:
        busy.close()
    gone = Citizen(h, workdir, "citizen-hangs-up", hangup_after_ms=2000)
    try:
        ref, job = closed_order(h, "13907910065")
        done = h.wait_for(lambda: reported(h, job["id"]), 20, "the survey concluded")
        (attempt,) = done["attempts"]  # reached: not called again
        assert attempt["outcome"] == "hung-up" and attempt["answered_at"], done
        assert done["state"] == "no_answer" and done["result"] == "no_answer", done
    finally:
        gone.close()


def test_controller_restart_while_ringing_neither_loses_nor_doubles(
    clean: Hotline, workdir: Path
) -> None:
    h = clean
    citizen = Citizen(h, workdir, "citizen-restart", answer_after_ms=RESTART_ANSWER_MS, calls=2)
    try:
        ref, job = closed_order(h, "13907910063")
        h.wait_for(lambda: citizen.invites(), 10, "the survey call rings")
        t0 = time.monotonic()
        h.kill_controller()
        h.start_controller()
        back = time.monotonic() - t0
        assert back < RESTART_ANSWER_MS / 1000 - 1, f"controller took {back:.1f} s to restart"
        assert survey(h, job["id"])["state"] == "calling"
        citizen.hears_the_question(h, timeout=RING_TIMEOUT + 10)
        citizen.media.dtmf("1")
        done = h.wait_for(lambda: reported(h, job["id"]), 20, "the result reported")
        assert done["state"] == "answered" and done["result"] == "satisfied", done
        assert len(done["attempts"]) == 1, done
        assert citizen.invites() == ["13907910063"]  # one call, not two
    finally:
        citizen.close()


def test_an_inbound_call_cannot_reach_the_survey_context(clean: Hotline, workdir: Path) -> None:
    h = clean
    ip, _ = h.trunk("carrier")
    for target in ("s", "hotline-survey"):
        res = Sipp(workdir, f"inbound-{target}", rejected_call_scenario(target, "404"),
                   local_ip=ip, target=h.sip_target, timeout_s=15).wait(20)
        assert res.returncode == 0, res.explain()
    status, body = h.api("GET", "/surveys?state=calling", "admin")
    assert status == 200 and body["surveys"] == [], body
