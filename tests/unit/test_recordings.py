"""Recordings without Asterisk: paths, retention (frozen clock), store, events, HTTP refusals."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from hotline.auth import Principal
from recordings.http import routes
from recordings.paths import (
    PathRefused,
    parse_recording_id,
    parse_rel,
    rel_path,
    resolve_inside,
    scan,
)
from recordings.retention import due_for_purge, purge
from recordings.service import RecordingService
from recordings.store import Recording, RecordingStore

DAY = 86400
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()  # the frozen clock
RETENTION = {"call": 180 * DAY, "survey": 90 * DAY}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = RecordingStore(f"sqlite:///{tmp_path / 'rec.sqlite'}")
    yield s
    s.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "recordings"
    r.mkdir()
    return r


def row(store: RecordingStore, rid: int) -> Recording:
    got = store.get(rid)
    assert got is not None, f"no recording {rid}"
    return got


def wav_file(root: Path, rel: str, data: bytes = b"RIFF....") -> Path:
    f = root / rel
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(data)
    return f


# ------------------------------------------------------------------ paths


def test_rel_path_shape() -> None:
    at = datetime(2026, 1, 2, 23, 59, tzinfo=UTC)
    assert rel_path("1764250000.12", "call", at) == "2026/01/02/1764250000.12-call.wav"
    p = parse_rel("2026/01/02/1764250000.12-survey.wav")
    assert (p.call_id, p.kind) == ("1764250000.12", "survey")
    assert p.day == datetime(2026, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize("path", [
    "../etc/passwd", "/etc/passwd", "2026/01/02/../../../etc/passwd-call.wav",
    "2026/01/02/..-call.wav", "2026/01/02/.-call.wav", "%2e%2e/%2e%2e/x-call.wav",
    "2026/01/02/1.1-call.mp3", "2026/13/40/1.1-call.wav", "2026/01/02/1.1-other.wav",
    "2026\\01\\02\\1.1-call.wav", "2026/01/02/1.1-call.wav\0", "", "2026/01/02/a/b-call.wav",
])
def test_foreign_paths_are_refused(root: Path, path: str) -> None:
    with pytest.raises(PathRefused):
        resolve_inside(root, path)


def test_resolve_stays_inside_and_refuses_a_symlink_pointing_out(root: Path,
                                                                 tmp_path: Path) -> None:
    f = wav_file(root, "2026/01/02/1.1-call.wav")
    assert resolve_inside(root, "2026/01/02/1.1-call.wav") == f.resolve()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "2.2-call.wav").write_bytes(b"secret")
    os.symlink(outside, root / "2026" / "01" / "03")  # a day folder pointing out
    with pytest.raises(PathRefused, match="outside the recordings root"):
        resolve_inside(root, "2026/01/03/2.2-call.wav")
    os.symlink(outside / "2.2-call.wav", root / "2026" / "01" / "02" / "3.3-call.wav")  # a file
    with pytest.raises(PathRefused, match="outside the recordings root"):
        resolve_inside(root, "2026/01/02/3.3-call.wav")


@pytest.mark.parametrize("text", ["..", "%2e%2e", "../1", "/etc/passwd", "0", "-1", "1e3", "", "01",
                                  "1/../2", "9" * 19])
def test_api_ids_are_numbers_only(text: str) -> None:
    with pytest.raises(PathRefused, match="is not a recording id"):
        parse_recording_id(text)
    assert parse_recording_id("42") == 42


def test_scan_finds_the_dated_layout_only(root: Path) -> None:
    wav_file(root, "2026/01/02/1.1-call.wav")
    wav_file(root, "2026/01/02/notes.wav")
    wav_file(root, "misc/1.2-call.wav")
    assert [p.path for p in scan(root)] == ["2026/01/02/1.1-call.wav"]
    assert scan(root / "absent") == []


# ------------------------------------------------------------------ retention (frozen clock)


def rec(i: int, kind: str, ended_days_ago: float | None, started_days_ago: float = 0,
        purged: bool = False) -> Recording:
    started = NOW - max(started_days_ago, ended_days_ago or 0) * DAY
    return Recording(id=i, call_id=f"{i}.0", kind=kind, path=f"2026/01/01/{i}.0-{kind}.wav",
                     started_at=started,
                     ended_at=None if ended_days_ago is None else NOW - ended_days_ago * DAY,
                     purged_at=NOW if purged else None)


def test_due_for_purge_per_kind_at_the_boundary() -> None:
    recs = [
        rec(1, "call", 180),  # exactly 180 days: due
        rec(2, "call", 179.99),  # not yet
        rec(3, "survey", 90),  # due
        rec(4, "survey", 89),  # not yet
        rec(5, "call", None, started_days_ago=181),  # never ended: counted from its start
        rec(6, "call", 400, purged=True),  # already purged
        rec(7, "call", 179, started_days_ago=200),  # counted from the end, not the start
    ]
    assert [r.id for r in due_for_purge(recs, RETENTION, NOW)] == [1, 3, 5]
    assert due_for_purge(recs, {"call": 1}, NOW) != []  # a kind missing in retention is kept
    assert [r.id for r in due_for_purge(recs, {"call": 1}, NOW)] == [1, 2, 5, 7]


def test_purge_deletes_file_and_row_together(store: RecordingStore, root: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    old = store.started(call_id="1.1", kind="call", path="2026/01/01/1.1-call.wav",
                        started_at=NOW - 200 * DAY)
    store.ended(old.id, NOW - 200 * DAY + 30, 8)
    f = wav_file(root, old.path)
    missing = store.started(call_id="1.2", kind="call", path="2026/01/01/1.2-call.wav",
                            started_at=NOW - 200 * DAY)
    young = store.started(call_id="1.3", kind="survey", path="2026/11/01/1.3-survey.wav",
                          started_at=NOW - 30 * DAY)
    g = wav_file(root, young.path)
    with caplog.at_level(logging.INFO, logger="recordings.retention"):
        gone = purge(store, root, RETENTION, NOW)
    assert [(p.id, p.file, p.bytes) for p in gone] == [(old.id, "deleted", 8),
                                                       (missing.id, "missing", 0)]
    assert not f.exists() and not (root / "2026" / "01").exists()  # emptied folders pruned
    assert g.exists() and root.exists()
    assert row(store, old.id).purged_at == NOW and row(store, missing.id).purged_at == NOW
    assert row(store, young.id).purged_at is None
    assert ("purged recording 1 of call 1.1 (call, 2026/01/01/1.1-call.wav, 8 bytes, "
            "file deleted)") in caplog.text
    assert purge(store, root, RETENTION, NOW) == []  # nothing twice
    assert [r.id for r in store.listing()] == [young.id]  # purged rows are not listed


def test_purge_keeps_the_row_when_the_file_cannot_be_deleted(store: RecordingStore,
                                                             root: Path) -> None:
    r = store.started(call_id="1.1", kind="call", path="2026/01/01/1.1-call.wav",
                      started_at=NOW - 200 * DAY)
    f = wav_file(root, r.path)
    f.unlink()
    f.mkdir()  # unlink() of a folder fails with an OSError other than "missing"
    assert purge(store, root, RETENTION, NOW) == []
    assert row(store, r.id).purged_at is None


@pytest.mark.parametrize("tampered", ["../outside.wav", "/tmp/x/outside.wav",
                                      "2026/01/01/../../../outside.wav"])
def test_purge_never_deletes_outside_the_root(store: RecordingStore, root: Path,
                                              tampered: str) -> None:
    """A row whose path was changed in the database (or written by something else) to
    point out of the recordings folder: the file is left alone, the row is closed."""
    from sqlalchemy import text

    outside = root.parent / "outside.wav"
    outside.write_bytes(b"keep me")
    r = store.started(call_id="1.1", kind="call", path="2026/01/01/1.1-call.wav",
                      started_at=NOW - 200 * DAY)
    if tampered.startswith("/tmp/x/"):
        tampered = str(outside)  # an absolute path to the very file
    with store.db.engine.begin() as c:
        c.execute(text("UPDATE recordings SET path = :p WHERE id = :i"), {"p": tampered, "i": r.id})
    gone = purge(store, root, RETENTION, NOW)
    assert [(p.id, p.file, p.bytes) for p in gone] == [(r.id, "refused", 0)]
    assert outside.read_bytes() == b"keep me"
    assert row(store, r.id).purged_at == NOW  # not tried again every round


# ------------------------------------------------------------------ store


def test_store_rows_pauses_and_lookup(store: RecordingStore) -> None:
    a = store.started(call_id="1.1", kind="call", path="2026/01/01/1.1-call.wav", started_at=NOW,
                      uniqueid="1.1", channel="PJSIP/carrier-0001")
    again = store.started(call_id="1.1", kind="call", path="2026/01/01/1.1-call.wav",
                          started_at=NOW + 5)
    assert again.id == a.id and again.started_at == NOW  # idempotent
    s = store.started(call_id="1.1", kind="survey", path="2026/01/02/1.1-survey.wav",
                      started_at=NOW)
    assert s.id != a.id
    store.add_pause(a.id, {"action": "pause", "at": NOW + 1, "by": "zhangwei"})
    r = store.add_pause(a.id, {"action": "resume", "at": NOW + 4, "by": "zhangwei"})
    assert [p["action"] for p in r.pauses] == ["pause", "resume"] and not r.paused
    store.set_seat("1.1", "1001")
    store.set_seat("1.1", "1002")  # the first seat that answered stays
    got = store.for_call("1.1")
    assert got is not None and got.seat == "1001" and got.path == "2026/01/01/1.1-call.wav"
    survey = store.for_call("1.1", "survey")
    assert survey is not None and survey.id == s.id and store.for_call("9.9") is None
    with pytest.raises(ValueError, match="unknown recording kind"):
        store.started(call_id="2", kind="music", path="x", started_at=NOW)
    assert [x.id for x in store.listing(since=NOW - 1, until=NOW + 1, kind="call")] == [a.id]
    assert store.listing(until=NOW - 1) == []


# ------------------------------------------------------------------ events


class Audit:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    async def __call__(self, who: Principal, action: str, seat: str, **details: Any) -> None:
        self.entries.append({"who": who.name, "action": action, "seat": seat, **details})


def service(store: RecordingStore, root: Path, clock: float = NOW) -> RecordingService:
    return RecordingService(store=store, root=lambda: root, ami=lambda: None, audit=Audit(),
                            clock=lambda: clock)


async def test_events_make_and_close_the_row(store: RecordingStore, root: Path) -> None:
    svc = service(store, root)
    start = {"Event": "UserEvent", "UserEvent": "HotlineRecording", "Kind": "call",
             "Path": "2026/11/27/1764250000.1-call.wav", "Uniqueid": "1764250000.1",
             "Linkedid": "1764250000.1", "Channel": "PJSIP/carrier-00000001"}
    written = svc.on_event(start)  # the row is written off the event loop
    assert written is not None
    await written
    r = store.for_call("1764250000.1")
    assert r is not None and r.started_at == NOW and r.uniqueid == "1764250000.1"
    seat = svc.on_event({"Event": "AgentConnect", "Interface": "PJSIP/1001", "MemberName": "1001",
                         "Linkedid": "1764250000.1"})
    assert seat is not None
    await seat
    wav_file(root, r.path, _tiny_wav())
    svc.clock = lambda: NOW + 9
    done = svc.on_event({"Event": "Hangup", "Uniqueid": "1764250000.1"})
    assert done is not None
    await done
    r = store.for_call("1764250000.1")
    assert r is not None
    assert r.ended_at == NOW + 9 and r.size == len(_tiny_wav()) and r.seat == "1001"
    # A path not of our shape is refused; no row, not even later: the rows are written
    # on the store's one writer thread in the order of the events, so once the next
    # event's row is there, a row of the refused one would be too.
    bad = dict(start, Path="../../etc/passwd", Uniqueid="2.2", Linkedid="2.2")
    assert svc.on_event(bad) is None
    nxt = dict(start, Path="2026/11/27/1764250000.3-call.wav", Uniqueid="1764250000.3",
               Linkedid="1764250000.3")
    written = svc.on_event(nxt)
    assert written is not None
    await written
    assert store.for_call("1764250000.3") is not None and store.for_call("2.2") is None


async def test_a_hangup_before_the_row_is_written_still_ends_it(store: RecordingStore,
                                                                  root: Path) -> None:
    """The rows are written on the store's one writer thread in the order of the events:
    a short call's Hangup (and its AgentConnect) may come before the row exists."""
    svc = service(store, root)
    start = {"Event": "UserEvent", "UserEvent": "HotlineRecording", "Kind": "call",
             "Path": "2026/11/27/1764250000.7-call.wav", "Uniqueid": "1764250000.7",
             "Linkedid": "1764250000.7", "Channel": "PJSIP/carrier-00000007"}
    wav_file(root, "2026/11/27/1764250000.7-call.wav", _tiny_wav())
    written = svc.on_event(start)
    seat = svc.on_event({"Event": "AgentConnect", "Interface": "PJSIP/1002",
                         "MemberName": "1002", "Linkedid": "1764250000.7"})
    svc.clock = lambda: NOW + 4
    done = svc.on_event({"Event": "Hangup", "Uniqueid": "1764250000.7"})
    assert written is not None and seat is not None and done is not None
    await asyncio.gather(done, seat, written)
    r = store.for_call("1764250000.7")
    assert r is not None and r.ended_at == NOW + 4 and r.seat == "1002"
    assert r.size == len(_tiny_wav())
    assert "1764250000.7" not in svc.live  # ended: nothing left to end at a reconcile


def test_files_without_rows_are_adopted(store: RecordingStore, root: Path) -> None:
    f = wav_file(root, "2026/11/27/1764250000.5-survey.wav", _tiny_wav())
    os.utime(f, (NOW, NOW))
    svc = service(store, root)
    assert svc.adopt_files() == 1 and svc.adopt_files() == 0
    r = store.for_call("1764250000.5", "survey")
    assert r is not None and r.ended_at == NOW and r.started_at == pytest.approx(NOW - 0.5)


def _tiny_wav() -> bytes:
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 4000)  # 0.5 s
    return buf.getvalue()


# ------------------------------------------------------------------ HTTP


PEOPLE = {
    "admin": Principal("admin", "admin"),
    "zhangwei": Principal("zhangwei", "agent", seat="1001"),
    "liuyang": Principal("liuyang", "agent", seat="1002"),
}


async def client_for(svc: RecordingService) -> TestClient:
    from hotline.http import error

    def auth(handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            user = base64.b64decode(request.headers["Authorization"][6:]).decode().split(":")[0]
            return await handler(request, PEOPLE[user])
        return wrapped

    app = web.Application()
    for method, path, fn in routes(svc, error):
        app.router.add_route(method, path, auth(fn))

    async def not_found(request: web.Request) -> web.Response:  # as hotline/http.py
        return error(404, "not-found", f"no such resource: {request.path}")

    app.router.add_route("*", "/{tail:.*}", not_found)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


def as_user(name: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:x".encode()).decode()}


async def test_http_download_is_audited_and_path_tricks_refused(store: RecordingStore, root: Path,
                                                                tmp_path: Path) -> None:
    svc = service(store, root)
    r = store.started(call_id="1.1", kind="call", path="2026/11/27/1.1-call.wav", started_at=NOW)
    store.set_seat("1.1", "1001")
    wav_file(root, r.path, _tiny_wav())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "2.2-call.wav").write_bytes(b"secret")
    os.symlink(outside, root / "2026" / "11" / "28")
    evil = store.started(call_id="2.2", kind="call", path="2026/11/28/2.2-call.wav", started_at=NOW)
    client = await client_for(svc)
    try:
        resp = await client.get(f"/recordings/{r.id}/audio", headers=as_user("admin"))
        assert resp.status == 200 and resp.headers["Content-Type"] == "audio/wav"
        assert await resp.read() == _tiny_wav()
        audit = svc.audit.entries  # type: ignore[attr-defined]
        assert audit[-1] == {"who": "admin", "action": "recording-download", "seat": "1001",
                             "recording": r.id, "call_id": "1.1", "path": r.path}
        resp = await client.get(f"/recordings/{r.id}/audio", headers=as_user("zhangwei"))
        assert resp.status == 200  # the agent who answered
        resp = await client.get(f"/recordings/{r.id}/audio", headers=as_user("liuyang"))
        assert resp.status == 404
        n = len(audit)
        for bad in ("..", "%2e%2e", "..%252F..%252Fetc", "-1", "1.5", "%2Fetc%2Fpasswd"):
            resp = await client.get(f"/recordings/{bad}/audio", headers=as_user("admin"))
            assert resp.status in (400, 404), bad
            body = await resp.json()
            assert body["error_id"] in ("bad-recording-id", "not-found"), body
        # sent as written (the client would otherwise decode and normalize the dots)
        raw = URL(str(client.make_url("/")) + "recordings/%2e%2e/audio", encoded=True)
        resp = await client.session.get(raw, headers=as_user("admin"))
        assert resp.status == 400 and (await resp.json())["error_id"] == "bad-recording-id"
        resp = await client.get(f"/recordings/{evil.id}/audio", headers=as_user("admin"))
        body = await resp.json()
        assert resp.status == 404 and "outside the recordings root" in body["message"], body
        assert len(audit) == n  # refused downloads are not served, so not "played"
        resp = await client.get("/recordings?call_id=../x", headers=as_user("admin"))
        assert resp.status == 400
        resp = await client.get("/recordings", headers=as_user("liuyang"))
        assert json.loads(await resp.text()) == []
        resp = await client.get("/recordings", headers=as_user("zhangwei"))
        assert [x["id"] for x in await resp.json()] == [r.id]
    finally:
        await client.close()


def test_the_store_follows_storage_url(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from recordings.plugin import open_store

    state = tmp_path / "state"
    state.mkdir()
    s = open_store(SimpleNamespace(storage=SimpleNamespace(url=None)), state)  # SQLite in state/
    assert s.url == f"sqlite:///{state / 'recordings.sqlite'}"
    s.close()
    url = f"sqlite:///{tmp_path / 'shared.sqlite'}"
    s = open_store(SimpleNamespace(storage=SimpleNamespace(url=url)), state)
    assert s.url == url and (tmp_path / "shared.sqlite").exists()
    s.close()
