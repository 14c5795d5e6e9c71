"""Issue #6 item 1: call recordings on a real Asterisk.

The citizen (SIPp on the carrier's address, its media a :class:`TonePeer`
sending 600 Hz) calls a retained number forwarded to the province queue; seat
1001 (SIPp, media sending 1000 Hz) answers. The recording must exist in the
dated folder, last as long as the call and carry BOTH tones (the caller's
channel is recorded in both directions); a pause through the API leaves a
silent stretch in the file and its who/when in the row; listing, download (with
audit), refused path tricks and the retention purge (file and row together,
across a controller restart) are checked on the same hotline. A warm transfer
to 119 gives a recording where the citizen, the agent and the dispatcher
(1400 Hz) are all heard.
"""

from __future__ import annotations

import base64
import os
import re
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from recordings.paths import parse_rel
from recordings.store import RecordingStore

from . import harness
from .harness import Hotline
from .sipp import Sipp, TonePeer, answering_party_scenario, citizen_call_scenario
from .wavtone import Wav

CITIZEN_HZ, AGENT_HZ, DISPATCHER_HZ = 600, 1000, 1400
HEARD, SILENT = 1000, 150  # mean Goertzel amplitude (of 32767); the tones are sent at 6000


def hotline_config() -> dict[str, Any]:
    cfg = harness.test_config()
    cfg["numbers"].append({"number": "12399", "kind": "legacy", "centre": "province",
                           "department": "housing", "mode": "forward"})  # straight to the queue
    cfg["emergency_lines"]["119"].update(answer_timeout=5, prompt=None)
    return cfg


# ------------------------------------------------------------------ parties and helpers


class Party:
    def __init__(self, sipp: Sipp, media: TonePeer):
        self.sipp, self.media = sipp, media

    def close(self) -> None:
        self.sipp.stop()
        self.media.close()


def agent(h: Hotline, wd: Path) -> Party:
    media = TonePeer("127.0.0.1", AGENT_HZ)
    ooc = answering_party_scenario("answer", "127.0.0.1", media.port, answer_after_ms=100,
                                   who="agent")
    sipp = h.register_seat(wd, "1001", ooc_scenario=ooc, hold_ms=60000, name="agent-1001")
    h.login_seat("1001")
    h.wait_for(lambda: re.search(r"\(PJSIP/1001\).*Not in use", h.cli("queue show province")),
               10, "seat 1001 available")
    return Party(sipp, media)


def citizen(h: Hotline, wd: Path, hold_ms: int) -> Party:
    ip, _ = h.trunk("carrier")
    media = TonePeer(ip, CITIZEN_HZ)
    scen = citizen_call_scenario("12399", "13907910001", ip, media.port, hold_ms)
    return Party(Sipp(wd, "citizen", scen, local_ip=ip, target=h.sip_target, timeout_s=60), media)


def dispatcher(h: Hotline, wd: Path) -> Party:
    ip, port = h.trunk("emergency")
    media = TonePeer(ip, DISPATCHER_HZ)
    scen = answering_party_scenario("answer", ip, media.port, answer_after_ms=300)
    return Party(Sipp(wd, "dispatcher", scen, local_ip=ip, local_port=port, target=h.sip_target,
                      timeout_s=60), media)


def agent_in_call(h: Hotline) -> None:
    h.wait_for(lambda: re.search(r"^PJSIP/1001-\w+!.*!Up!", h.cli("core show channels concise"),
                                 re.M), 15, "seat 1001 talking with the citizen")


def root(h: Hotline) -> Path:
    return h.instance.host("recordings")


def store(h: Hotline) -> RecordingStore:
    return RecordingStore.in_state_dir(h.instance.state)


def ended_row(h: Hotline, call_id: str, timeout: float = 10) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        status, rows = h.api("GET", f"/recordings?call_id={call_id}", "admin")
        assert status == 200, rows
        return rows[0] if rows and rows[0]["size"] else None
    return h.wait_for(ready, timeout, f"the recording of call {call_id} closed")


def fetch(h: Hotline, path: str, user: str) -> tuple[int, bytes, dict[str, str]]:
    """A raw GET (the API helper parses JSON; audio is not)."""
    net = h.cfg["network"]["http"]
    req = urllib.request.Request(f"http://{net['bind']}:{net['port']}{path}")
    cred = base64.b64encode(f"{user}:{h.password_of(user)}".encode()).decode()
    req.add_header("Authorization", f"Basic {cred}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def audit(h: Hotline, action: str) -> list[dict[str, Any]]:
    status, entries = h.api("GET", "/audit?limit=200", "admin")
    assert status == 200, entries
    return [e for e in entries if e["action"] == action]


# ------------------------------------------------------------------ tests


def test_queue_call_recorded_with_both_parties_and_a_pause(clean: Hotline, workdir: Path) -> None:
    h = clean
    a = agent(h, workdir)
    t_call = time.monotonic()
    c = citizen(h, workdir, hold_ms=9000)
    try:
        agent_in_call(h)
        time.sleep(2.0)  # both talking
        status, rec = h.api("POST", "/seats/1001/recording/pause", "zhangwei")
        assert status == 200, rec
        call_id = rec["call_id"]
        assert rec["paused"] is True and rec["pauses"][0]["by"] == "zhangwei", rec
        # Placed in the dialled number's centre from the start (the call is still on).
        assert rec["centre"] == "province", rec
        status, body = h.api("POST", f"/recordings/calls/{call_id}/pause", "sup-nanchang")
        assert status == 403, body
        # The caller reads a card number: nothing of it in the file.
        time.sleep(2.5)
        status, rec = h.api("POST", f"/recordings/calls/{call_id}/resume", "zhangwei")
        assert status == 200, rec
        assert [p["action"] for p in rec["pauses"]] == ["pause", "resume"], rec
        # Pausing twice is no second entry; another agent may not pause this call.
        status, body = h.api("POST", f"/recordings/calls/{call_id}/resume", "zhangwei")
        assert status == 200 and len(body["pauses"]) == 2, body
        status, body = h.api("POST", f"/recordings/calls/{call_id}/pause", "liuyang")
        assert status == 403, body
        res = c.sipp.wait(40)
        assert res.returncode == 0, res.explain()
        call_seconds = time.monotonic() - t_call
    finally:
        c.close()
        a.close()

    row = ended_row(h, call_id)
    assert row["kind"] == "call" and row["seat"] == "1001", row
    assert re.fullmatch(rf"\d{{4}}/\d\d/\d\d/{re.escape(call_id)}-call\.wav", row["path"]), row
    assert row["path"].startswith(time.strftime("%Y/%m/%d", time.gmtime(row["started_at"])))
    f = root(h) / row["path"]
    assert f.is_file() and f.stat().st_size == row["size"]
    wav = Wav.read(f)
    # From the answer to the hang-up: as long as the call (SIPp's whole call minus setup).
    assert abs(wav.seconds - row["duration"]) < 1.0, (wav.seconds, row)
    assert call_seconds - 2.5 < wav.seconds <= call_seconds + 0.5, (wav.seconds, call_seconds)
    # File time 0 = start of the row (the answer); the pause's times are in the row.
    t0 = row["started_at"]
    paused_at, resumed_at = (p["at"] - t0 for p in row["pauses"])
    before = (paused_at - 1.5, paused_at - 0.2)
    during = (paused_at + 0.4, resumed_at - 0.3)
    after = (resumed_at + 0.4, min(resumed_at + 2.5, wav.seconds - 0.3))
    levels = {name: {hz: round(wav.level(hz, *span)) for hz in (CITIZEN_HZ, AGENT_HZ)}
              for name, span in (("before", before), ("during", during), ("after", after))}
    assert levels["before"][CITIZEN_HZ] > HEARD and levels["before"][AGENT_HZ] > HEARD, levels
    assert levels["during"][CITIZEN_HZ] < SILENT and levels["during"][AGENT_HZ] < SILENT, levels
    assert wav.rms(*during) < 100, (wav.rms(*during), levels)
    assert levels["after"][CITIZEN_HZ] > HEARD and levels["after"][AGENT_HZ] > HEARD, levels
    print("queue call recording:", {"wav_s": round(wav.seconds, 2),
                                     "call_s": round(call_seconds, 2),
                                     "row_s": row["duration"], "levels": levels})
    # Pause and resume are audited with who did them.
    assert any(e["who"] == "zhangwei" and e["call_id"] == call_id
               for e in audit(h, "recording-pause"))
    assert any(e["call_id"] == call_id for e in audit(h, "recording-resume"))
    # The tracker's lookup.
    s = store(h)
    try:
        got = s.for_call(call_id)
        assert got is not None and got.path == row["path"] and got.seat == "1001"
    finally:
        s.close()


def test_list_and_download_audited_with_rights(clean: Hotline) -> None:
    h = clean
    status, rows = h.api("GET", "/recordings", "sup-province")
    assert status == 200 and rows, rows
    row = next(r for r in rows if r["seat"] == "1001" and r["size"])
    f = root(h) / row["path"]
    # Date range filters.
    t = row["started_at"]
    status, got = h.api("GET", f"/recordings?since={t - 1}&until={t + 1}", "admin")
    assert status == 200 and row["id"] in [r["id"] for r in got], got
    status, got = h.api("GET", f"/recordings?until={row['started_at'] - 3600}", "admin")
    assert status == 200 and row["id"] not in [r["id"] for r in got], got
    status, got = h.api("GET", "/recordings?since=yesterday", "admin")
    assert status == 400, got
    # The supervisor downloads it: the same bytes, as audio/wav, and the audit says so.
    status, body, headers = fetch(h, f"/recordings/{row['id']}/audio", "sup-province")
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    assert body == f.read_bytes()
    entry = next(e for e in audit(h, "recording-download") if e["recording"] == row["id"])
    assert entry["who"] == "sup-province" and entry["path"] == row["path"] and entry["at"] > 0
    # The agent who answered may listen; another agent does not even see it.
    status, body, _ = fetch(h, f"/recordings/{row['id']}/audio", "zhangwei")
    assert status == 200 and body[:4] == b"RIFF"
    status, body, _ = fetch(h, f"/recordings/{row['id']}/audio", "liuyang")
    assert status == 404, body
    status, got = h.api("GET", "/recordings", "liuyang")
    assert status == 200 and row["id"] not in [r["id"] for r in got]
    # A call to a province number answered by the province queue: placed in the province
    # (the dialplan's UserEvent, then the call tracker); Nanchang's supervisor sees nothing.
    assert row["centre"] == "province", row
    status, got = h.api("GET", "/recordings", "sup-nanchang")
    assert status == 200 and row["id"] not in [r["id"] for r in got], got
    status, body, _ = fetch(h, f"/recordings/{row['id']}/audio", "sup-nanchang")
    assert status == 404, body


def test_path_tricks_are_refused(clean: Hotline, tmp_path: Path) -> None:
    h = clean
    for path, expect in (
        ("/recordings/..%2F..%2Fstate%2Frecordings.sqlite/audio", (400, 404)),
        ("/recordings/%2e%2e/audio", (400,)),
        ("/recordings/..%252f..%252fetc%252fpasswd/audio", (400,)),
        ("/recordings/-1/audio", (400,)),
        ("/recordings/%2Fetc%2Fpasswd/audio", (400, 404)),
        ("/recordings/1e3/audio", (400,)),
    ):
        status, body, _ = fetch(h, path, "admin")
        assert status in expect, (path, status, body)
        assert b"root:" not in body and b"SQLite" not in body
    # A row whose dated folder is a symlink pointing out of the root is never served.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "1.1-call.wav").write_bytes(b"RIFF-secret")
    (root(h) / "2020" / "01").mkdir(parents=True, exist_ok=True)
    os.symlink(outside, root(h) / "2020" / "01" / "01")
    s = store(h)
    try:
        rec = s.started(call_id="1.1", kind="call", path="2020/01/01/1.1-call.wav",
                        started_at=time.time())
        s.ended(rec.id, time.time(), 11)
    finally:
        s.close()
    status, body, _ = fetch(h, f"/recordings/{rec.id}/audio", "admin")
    assert status == 404 and b"secret" not in body, body
    assert b"outside the recordings root" in body
    (root(h) / "2020" / "01" / "01").unlink()


def test_purge_removes_file_and_row_together_across_a_restart(clean: Hotline) -> None:
    h = clean
    day = "2020/02/03"
    folder = root(h) / day
    folder.mkdir(parents=True, exist_ok=True)
    old = folder / "1580000000.1-call.wav"
    old.write_bytes(b"RIFF" + b"\0" * 100)
    # (not today's folder: that one must stay Asterisk's to create)
    other_dir = root(h) / "2021/05/06"
    other_dir.mkdir(parents=True, exist_ok=True)
    orphan = other_dir / "1580000009.9-survey.wav"  # written while the controller was down
    orphan.write_bytes(b"RIFF" + b"\0" * 40)
    long_ago = time.time() - 200 * 86400
    s = store(h)
    try:
        kept = s.started(call_id="1580000000.1", kind="call", path=f"{day}/1580000000.1-call.wav",
                         started_at=long_ago)
        s.ended(kept.id, long_ago + 60, 104)
        gone = s.started(call_id="1580000000.2", kind="call", path=f"{day}/1580000000.2-call.wav",
                         started_at=long_ago)  # its file is already missing
        young = s.started(call_id="1580000000.3", kind="survey",
                          path=f"{day}/1580000000.3-survey.wav",
                          started_at=time.time() - 10 * 86400)
    finally:
        s.close()
    h.stop_controller()
    h.start_controller()  # the purge runs at start, after adopting files without a row
    s = store(h)
    try:
        h.wait_for(lambda: (r := s.get(kept.id)) is not None and r.purged_at is not None, 15,
                   "the back-dated recording purged")
        assert not old.exists()
        assert getattr(s.get(gone.id), "purged_at", None) is not None  # a missing file did not stop the purge
        young_row = s.get(young.id)
        assert young_row is not None and young_row.purged_at is None  # 10 days < 90 days of survey retention
        adopted = s.by_path(orphan.relative_to(root(h)).as_posix())
        assert adopted is not None and adopted.kind == "survey"
        assert adopted.call_id == "1580000009.9"
        assert orphan.exists() and adopted.purged_at is None
    finally:
        s.close()
    log = h.controller_log()
    assert re.search(rf"purged recording {kept.id} of call 1580000000.1 .*file deleted",
                     log), log[-2000:]
    assert re.search(rf"purged recording {gone.id} .*file missing", log), log[-2000:]
    status, rows = h.api("GET", "/recordings?call_id=1580000000.1", "admin")
    assert status == 200 and rows == [], rows  # purged rows are not listed
    orphan.unlink()
    db = sqlite3.connect(h.instance.state / "recordings.sqlite")
    try:
        db.execute("DELETE FROM recordings WHERE id IN (?, ?, ?, ?)",
                   (kept.id, gone.id, young.id, adopted.id))
        db.commit()
    finally:
        db.close()


def test_a_call_ending_while_the_controller_is_down_keeps_its_row(clean: Hotline,
                                                                  workdir: Path) -> None:
    h = clean
    a = agent(h, workdir)
    c = citizen(h, workdir, hold_ms=4000)
    try:
        agent_in_call(h)
        status, rows = h.api("GET", "/recordings?limit=1", "admin")
        assert status == 200 and rows and rows[0]["ended_at"] is None, rows
        call_id = rows[0]["call_id"]
        h.kill_controller()  # SIGKILL: no goodbye; the call goes on without it
        res = c.sipp.wait(40)
        assert res.returncode == 0, res.explain()
    finally:
        c.close()
        a.close()
    assert h.wait_no_channels(10) == 0
    h.start_controller()  # reconciles on the AMI connection: the channel is gone
    row = ended_row(h, call_id, 15)
    f = root(h) / row["path"]
    assert row["size"] == f.stat().st_size
    assert abs(row["ended_at"] - f.stat().st_mtime) < 0.01
    assert 3.0 < Wav.read(f).seconds < 6.0


def test_a_second_pass_through_the_subroutine_records_nothing_twice(clean: Hotline,
                                                                     workdir: Path) -> None:
    """12345 with the controller down: the IVR step fails, the failure path answers and
    runs the subroutine again (after hotline-ivr did): one MixMonitor, one file."""
    h = clean
    h.kill_controller()
    ip, _ = h.trunk("carrier")
    media = TonePeer(ip, CITIZEN_HZ)
    scen = citizen_call_scenario("12345", "13907910002", ip, media.port, 12000)
    c = Party(Sipp(workdir, "citizen-12345", scen, local_ip=ip, target=h.sip_target, timeout_s=60),
              media)
    try:
        chan = h.wait_for(lambda: re.search(r"^(PJSIP/carrier-\w+)!hotline-queue!",
                                            h.cli("core show channels concise"), re.M),
                          20, "the caller queued after the apology")[1]
        listing = h.cli(f"mixmonitor list {chan}")
        # one line per MixMonitor, its file named without the extension
        files = [f + ".wav" for f in re.findall(r"/recordings/(\S+-call)\b", listing)]
        assert len(files) == 1, listing
        res = c.sipp.wait(40)
        assert res.returncode == 0, res.explain()
    finally:
        c.close()
    h.start_controller()  # adopts the file written while it was down
    rel = parse_rel(files[0])
    row = ended_row(h, rel.call_id, 15)
    assert row["path"] == files[0] and row["kind"] == "call"
    assert len(list((root(h) / rel.path).parent.glob(f"{rel.call_id}-*.wav"))) == 1


def test_three_way_transfer_recording_has_all_three(clean: Hotline, workdir: Path) -> None:
    h = clean
    a = agent(h, workdir)
    d = dispatcher(h, workdir)
    c = citizen(h, workdir, hold_ms=12000)
    try:
        agent_in_call(h)
        time.sleep(0.5)
        status, body = h.api("POST", "/calls/1001/transfer", "zhangwei", {"line": "119"})
        assert status == 202, body
        tid = body["id"]
        h.wait_for(lambda: h.api("GET", f"/transfers/{tid}", "admin")[1]
                   .get("times", {}).get("bridged"), 15, "all three in the bridge")
        t_bridged = time.time()
        time.sleep(3.0)
        res = c.sipp.wait(40)
        assert res.returncode == 0, res.explain()
    finally:
        for p in (c, d, a):
            p.close()
    status, rows = h.api("GET", "/recordings?limit=1", "admin")
    assert status == 200 and rows, rows
    row = ended_row(h, rows[0]["call_id"])
    wav = Wav.read(root(h) / row["path"])
    start = t_bridged - row["started_at"] + 0.3
    levels = {hz: round(wav.level(hz, start, start + 2.0))
              for hz in (CITIZEN_HZ, AGENT_HZ, DISPATCHER_HZ)}
    assert all(v > HEARD for v in levels.values()), levels
    print("three-way recording levels:", levels)
