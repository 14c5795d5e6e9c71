"""Issue #6 end to end: what a newcomer sees after `make run`, on SQLite.

One citizen's call goes round the whole loop on a real Asterisk: the citizen
(SIPp on the carrier's address, 600 Hz) calls a retained number forwarded to the
province queue; seat 1001 (SIPp, 1000 Hz) answers; the citizen hangs up. Then,
through the HTTP API only, as the README shows: the call's work order (opened by
the call tracker), its recording (both voices in the file), the agent closing the
order as a consultation answered on the call, the satisfaction survey call to the
citizen's number (the citizen presses 1), the answer on the order, and the KPIs
counting the call and the survey.

test_closed_loop_pg.py runs the same test with every store on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .harness import Hotline
from .test_recordings import AGENT_HZ, CITIZEN_HZ, HEARD, agent, agent_in_call, citizen, fetch
from .test_recordings import hotline_config as recordings_config
from .test_survey import Citizen
from .wavtone import Wav

CALLER = "13907910001"  # the number test_recordings' citizen calls from


def hotline_config() -> dict[str, Any]:
    cfg = recordings_config()
    cfg["survey"].update(delay=0, retries=0, ring_timeout=20)
    return cfg


def api(h: Hotline, method: str, path: str, user: str = "admin", body: Any = None) -> Any:
    status, out = h.api(method, path, user, body)
    assert status in (200, 201), (method, path, status, out)
    return out


def test_a_call_goes_round_the_loop(clean: Hotline, workdir: Path) -> None:
    h = clean
    since = datetime.now(UTC) - timedelta(minutes=1)
    seat = agent(h, workdir)
    caller = citizen(h, workdir, hold_ms=5000)
    try:
        agent_in_call(h)
        # during the call the agent finds its work order (and its case reference)
        during = h.wait_for(lambda: api(h, "GET", f"/orders?caller={CALLER}", "zhangwei"), 5,
                            "the call's order given to the answering agent")
        res = caller.sipp.wait(30)
        assert res.returncode == 0, res.explain()
    finally:
        caller.close()
        seat.close()

    # 1. The work order of the call: opened (status intake, with its case reference) when
    #    the call arrived, completed from the call's facts when it ended.
    orders = h.wait_for(
        lambda: [o for o in api(h, "GET", f"/orders?caller={CALLER}") if o["status"] != "intake"],
        20, "the work order completed from the call")
    assert len(orders) == 1 and len(api(h, "GET", f"/orders?caller={CALLER}")) == 1, orders
    order = api(h, "GET", f"/orders/{orders[0]['ref']}")
    ref = order["ref"]
    assert [o["ref"] for o in during] == [ref], during  # the same order, opened at arrival
    assert order["status"] == "open" and order["agent"] == "zhangwei", order
    assert order["origin"] == "12399" and order["department"] == "housing", order
    (call,) = order["calls"]
    assert call["outcome"] == "answered" and call["queue"] == "province", call
    assert call["recording"], call  # linked to the recording

    # 2. The recording: the file has both voices.
    rows = h.wait_for(lambda: [r for r in api(h, "GET", f"/recordings?call_id={call['call_id']}")
                               if r["size"]], 10, "the recording closed")
    assert rows[0]["path"] == call["recording"], (rows, call)
    status, audio, headers = fetch(h, f"/recordings/{rows[0]['id']}/audio", "sup-province")
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    wav_path = workdir / "call.wav"
    wav_path.write_bytes(audio)
    wav = Wav.read(wav_path)
    talk = (wav.seconds - 3.0, wav.seconds - 0.5)  # the end of the call: both talking
    heard = (wav.level(CITIZEN_HZ, *talk), wav.level(AGENT_HZ, *talk))
    assert min(heard) > HEARD, heard

    # 3. The agent closes it: a consultation answered on the call. That schedules the
    #    survey call to the citizen's number, who presses 1.
    phone = Citizen(h, workdir, "citizen-survey")
    try:
        closed = api(h, "POST", f"/orders/{ref}/complete", "zhangwei",
                     {"content": "咨询房屋维修资金", "category": "consultation",
                      "answer": "已告知办理流程"})
        assert closed["status"] == "closed", closed
        h.wait_for(lambda: phone.invites(), 15, "the survey call reaches the citizen")
        assert phone.invites() == [CALLER]  # the number on the order, nowhere else
        phone.hears_the_question(h)
        phone.media.dtmf("1")
        surveyed = h.wait_for(lambda: (o := api(h, "GET", f"/orders/{ref}"))["survey"] and o,
                              20, "the survey's answer on the order")
    finally:
        phone.close()
    assert surveyed["survey"] == "satisfied" and surveyed["status"] == "closed", surveyed
    assert [e["action"] for e in surveyed["events"]].count("surveyed") == 1, surveyed["events"]

    # 4. The KPIs count the call and the survey.
    until = datetime.now(UTC) + timedelta(minutes=1)
    kpis = api(h, "GET", f"/kpis?from={since.isoformat()}&to={until.isoformat()}"
               .replace("+", "%2B"))["kpis"]
    assert kpis["connection"] == {"numerator": 1, "denominator": 1, "rate": 1.0}, kpis
    assert kpis["satisfaction"]["numerator"] == 1 and kpis["satisfaction"]["denominator"] == 1
    # a call answered at once: within 15 s
    assert kpis["connection_15s"]["numerator"] == 1, kpis
