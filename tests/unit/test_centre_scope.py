"""Supervisors see their centre and the centres below it, in the recordings and survey
APIs as in the work orders: the rule (hotline.auth.centre_scope), the recordings'
centre column (its migration on SQLite and PostgreSQL, where it comes from), and both
APIs as mounted by hotline.http.start over real HTTP on 127.0.0.1 (no Asterisk)."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from dialplan.model import Config, User
from dialplan.validate import load_config
from hotline import http
from hotline.auth import Principal, centre_scope, hash_password
from recordings.plugin import placing_recordings
from recordings.service import RecordingService
from recordings.store import RecordingStore
from workorders.facts import CallFacts, Outcome
from workorders.plugin import open_store
from workorders.store import WorkOrderStore
from workorders.survey_plugin import connect
from workorders.survey_service import SurveyService
from workorders.survey_store import SurveyStore

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
UNDER = {"province": {"province", "nanchang", "ganzhou"}, "nanchang": {"nanchang"},
         "ganzhou": {"ganzhou"}}
ADMIN = Principal("admin", "admin")
PROVINCE = Principal("sup-province", "supervisor", centre="province")
NANCHANG = Principal("sup-nanchang", "supervisor", centre="nanchang")
GANZHOU = Principal("sup-ganzhou", "supervisor", centre="ganzhou")
NOW = datetime.now(UTC).timestamp()
WAV = b"RIFF$\x00\x00\x00WAVEfmt "  # what is served is the file's bytes, whatever they are


# ------------------------------------------------------------------ the rule


@pytest.mark.parametrize("who, nanchang, ganzhou, unplaced", [
    (ADMIN, True, True, True),
    (PROVINCE, True, True, True),  # over every centre: also what is not placed yet
    (NANCHANG, True, False, False),
    (GANZHOU, False, True, False),
    (Principal("x", "supervisor"), False, False, False),  # a supervisor of no centre
    (Principal("zhangwei", "agent", seat="1001"), False, False, False),
    (Principal("water-desk", "unit", unit="nc-water"), False, False, False),
])
def test_centre_scope(who: Principal, nanchang: bool, ganzhou: bool, unplaced: bool) -> None:
    scope = centre_scope(who, UNDER)
    assert (scope.sees("nanchang"), scope.sees("ganzhou"), scope.sees(None)) == (
        nanchang, ganzhou, unplaced)


def test_a_county_supervisor_does_not_see_the_city_above() -> None:
    under = {**UNDER, "nanchang": {"nanchang", "jinxian"}, "jinxian": {"jinxian"}}
    county = centre_scope(Principal("j", "supervisor", centre="jinxian"), under)
    city = centre_scope(NANCHANG, under)
    assert county.sees("jinxian") and not county.sees("nanchang")
    assert city.sees("jinxian") and city.sees("nanchang") and not city.unplaced


# ------------------------------------------------------------------ the recordings' centre


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordingStore]:
    s = RecordingStore(f"sqlite:///{tmp_path / 'rec.sqlite'}")
    yield s
    s.close()


OLD_TABLE = """CREATE TABLE recordings (
    id INTEGER PRIMARY KEY, call_id VARCHAR(64) NOT NULL, kind VARCHAR(10) NOT NULL,
    uniqueid VARCHAR(64) NOT NULL, channel VARCHAR(160) NOT NULL,
    path VARCHAR(255) NOT NULL UNIQUE, seat VARCHAR(40), started_at FLOAT NOT NULL,
    ended_at FLOAT, size INTEGER, pauses JSON NOT NULL, purged_at FLOAT)"""


@pytest.fixture(params=["sqlite", "postgresql"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with the recordings table of the first release (no centre) and a row."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.sqlite'}"
        admin = None
    else:
        base = request.getfixturevalue("pg_url")
        name = f"rec_{uuid.uuid4().hex[:8]}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        url = base.rsplit("/", 1)[0] + f"/{name}"
    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text(OLD_TABLE.replace("INTEGER PRIMARY KEY", "SERIAL PRIMARY KEY")
                       if request.param == "postgresql" else OLD_TABLE))
        c.execute(text("INSERT INTO recordings (call_id, kind, uniqueid, channel, path, "
                       "started_at, pauses) VALUES ('1.1', 'call', '', '', "
                       "'2026/11/27/1.1-call.wav', 1, '[]')"))
    eng.dispose()
    yield url
    if admin is not None:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
        admin.dispose()


def test_an_older_table_gets_the_centre_column(old_database: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="hotline.storage"):
        s = RecordingStore(old_database)
    assert "column recordings.centre added" in caplog.text
    (old,) = s.listing()
    assert old.call_id == "1.1" and old.centre is None  # placed in no centre: fail closed
    assert s.set_centres({"1.1": "nanchang"}) == 1
    new = s.started(call_id="2.2", kind="call", path="2026/11/27/2.2-call.wav", started_at=2,
                    centre="ganzhou")
    assert [(r.id, r.centre) for r in s.listing()] == [(new.id, "ganzhou"), (old.id, "nanchang")]
    s.close()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hotline.storage"):
        again = RecordingStore(old_database)  # the second start: nothing to add
    assert "added" not in caplog.text and again.get(old.id).centre == "nanchang"  # type: ignore[union-attr]
    again.close()


def test_the_centre_column_is_added_when_the_database_comes_up_late(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The migration runs with the tables, on the first use that reaches the database."""
    folder = tmp_path / "later"
    url = f"sqlite:///{folder / 'old.sqlite'}"
    s = RecordingStore(url)  # the folder is not there yet: down at start
    with pytest.raises(OperationalError):
        s.listing()
    folder.mkdir()
    eng = create_engine(url)
    with eng.begin() as c:  # an older release's table appears meanwhile
        c.execute(text(OLD_TABLE))
        c.execute(text("INSERT INTO recordings (call_id, kind, uniqueid, channel, path, "
                       "started_at, pauses) VALUES ('1.1', 'call', '', '', "
                       "'2026/11/27/1.1-call.wav', 1, '[]')"))
    eng.dispose()
    with caplog.at_level(logging.INFO, logger="hotline.storage"):
        assert s.set_centres({"1.1": "nanchang"}) == 1
    assert "column recordings.centre added" in caplog.text
    assert [(r.call_id, r.centre) for r in s.listing()] == [("1.1", "nanchang")]
    s.close()


def test_the_tracker_s_centre_replaces_the_dialled_number_s(store: RecordingStore) -> None:
    a = store.started(call_id="1.1", kind="call", path="2026/11/27/1.1-call.wav",
                      started_at=NOW, centre="province")
    b = store.started(call_id="2.2", kind="call", path="2026/11/27/2.2-call.wav", started_at=NOW)
    # the same start told twice (reconcile) keeps the first centre
    assert store.started(call_id="1.1", kind="call", path=a.path, started_at=NOW,
                         centre="ganzhou").centre == "province"
    assert store.set_centres({"1.1": "nanchang", "2.2": None, "9.9": "ganzhou"}) == 1
    assert store.set_centres({"1.1": "nanchang"}) == 0  # idempotent
    assert (store.get(a.id).centre, store.get(b.id).centre) == ("nanchang", None)  # type: ignore[union-attr]
    assert [r.id for r in store.listing(centres={"nanchang"}, unplaced=False)] == [a.id]
    assert {r.id for r in store.listing(centres={"ganzhou"}, unplaced=True)} == {b.id}
    assert [r.id for r in store.listing(centres=None, unplaced=False)] == [a.id]


def recording_service(store: RecordingStore, root: Path, cfg: Config | None,
                      ami: Any = None) -> RecordingService:
    async def audit(who: Principal, action: str, seat: str, **details: Any) -> None:
        pass

    return RecordingService(store=store, root=lambda: root, ami=lambda: ami, audit=audit,
                            clock=lambda: NOW, config=(lambda: cfg) if cfg else None)


def user_event(uid: str, path: str, centre: str | None) -> dict[str, str]:
    ev = {"Event": "UserEvent", "UserEvent": "HotlineRecording", "Uniqueid": uid,
          "Linkedid": uid, "Channel": "PJSIP/carrier-00000001", "Kind": "call", "Path": path}
    if centre is not None:
        ev["Centre"] = centre
    return ev


async def test_the_start_event_places_the_recording(store: RecordingStore, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    svc = recording_service(store, tmp_path, None)
    for ev in (user_event("1.1", "2026/11/27/1.1-call.wav", "province"),
               user_event("2.2", "2026/11/27/2.2-call.wav", ""),  # 110 transfers: unknown
               user_event("3.3", "2026/11/27/3.3-call.wav", "x\r\nAction: Hangup")):
        written = svc.on_event(ev)  # the row is written off the event loop
        assert written is not None
        await written
    assert [(r.call_id, r.centre) for r in store.listing()] == [
        ("3.3", None), ("2.2", None), ("1.1", "province")]
    assert "strange centre 'x\\r\\nAction: Hangup': not placed" in caplog.text


def facts(call_id: str, centre: str | None) -> CallFacts:
    t = datetime.now(UTC) - timedelta(minutes=5)
    return CallFacts(call_id=call_id, uniqueid=call_id, caller="13900000002", called="12345",
                     outcome=Outcome.ANSWERED, started_at=t, ended_at=t + timedelta(minutes=2),
                     centre=centre, agent="zhangwei")


def test_the_call_sink_places_the_recordings_after_the_work_order(
        store: RecordingStore, caplog: pytest.LogCaptureFixture) -> None:
    rec = store.started(call_id="1.1", kind="call", path="2026/11/27/1.1-call.wav",
                        started_at=NOW, centre="province")
    taken: list[str] = []

    def orders(batch: list[CallFacts]) -> list[str]:
        if any(f.call_id == "bad" for f in batch):
            raise ConnectionError("work orders down")
        taken.extend(f.call_id for f in batch)
        return ["GD-1"] * len(batch)

    sink = placing_recordings(orders, store)
    assert sink([facts("1.1", "ganzhou")]) == ["GD-1"] and taken == ["1.1"]
    assert store.get(rec.id).centre == "ganzhou"  # type: ignore[union-attr]
    pending = store.started(call_id="bad", kind="call", path="2026/11/27/bad-call.wav",
                            started_at=NOW)
    with pytest.raises(ConnectionError):  # the delivery is retried: nothing placed yet
        sink([facts("bad", "nanchang")])
    assert store.get(pending.id).centre is None  # type: ignore[union-attr]
    store.engine.dispose()
    broken = RecordingStore("sqlite:////nonexistent/dir/x.sqlite")  # down: each use fails
    assert placing_recordings(orders, broken)([facts("2.2", "nanchang")]) == ["GD-1"]
    assert "recordings of 1 call(s) not placed in their centres" in caplog.text
    with pytest.raises(OperationalError):  # what the sink logged
        broken.set_centres({"2.2": "nanchang"})
    broken.close()


# ------------------------------------------------------------------ both APIs over HTTP


PASSWORDS = {"admin": "admin-pw", "sup-province": "sup-province-pw",
             "sup-nanchang": "sup-nanchang-pw", "sup-ganzhou": "sup-ganzhou-pw",
             "zhangwei": "agent-1001", "chenjing": "agent-2001"}


class FakeAmi:
    """CoreShowChannels from a list; MixMonitorMute recorded."""

    connected = True

    def __init__(self) -> None:
        self.channels: list[dict[str, str]] = []
        self.actions: list[dict[str, Any]] = []

    async def action_list(self, name: str, **kw: Any) -> list[dict[str, str]]:
        assert name == "CoreShowChannels", f"unexpected AMI list action {name}"
        return [{"Event": "CoreShowChannel", **c} for c in self.channels]

    async def action(self, name: str, **kw: Any) -> dict[str, str]:
        assert name == "MixMonitorMute", f"unexpected AMI action {name}"
        self.actions.append(kw)
        return {"Response": "Success"}


@dataclass
class FakeApp:
    config: Config
    orders: WorkOrderStore
    surveys: SurveyService
    recordings: RecordingService
    agents: Any = None
    version: str = "test"
    transfers: Any = None
    callbacks: Any = None


@dataclass
class World:
    base: str
    session: aiohttp.ClientSession
    orders: WorkOrderStore
    recs: RecordingStore
    surveys: SurveyService
    root: Path
    ami: FakeAmi

    async def call(self, user: str, method: str, path: str) -> tuple[int, Any]:
        token = base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()
        async with self.session.request(method, self.base + path,
                                        headers={"Authorization": f"Basic {token}"}) as r:
            body = await r.read()
            if r.content_type == "application/json":
                return r.status, await r.json()
            return r.status, body

    def recording(self, call_id: str, centre: str | None, seat: str | None = None) -> int:
        rel = f"2026/11/27/{call_id}-call.wav"
        (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.root / rel).write_bytes(WAV)
        rec = self.recs.started(call_id=call_id, kind="call", path=rel, started_at=NOW,
                                uniqueid=call_id, centre=centre)
        if seat is not None:
            self.recs.set_seat(call_id, seat)
        return rec.id


def with_ganzhou_supervisor(cfg: Config) -> Config:
    gz = User(name="赣州班长", role="supervisor", centre="ganzhou",
              password_hash=hash_password(PASSWORDS["sup-ganzhou"], iterations=1000))
    return cfg.model_copy(update={"users": {**cfg.users, "sup-ganzhou": gz}})


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    cfg = with_ganzhou_supervisor(load_config(SAMPLE))
    orders = open_store(lambda: cfg, tmp_path / "state")  # separate SQLite files, as by default
    surveys = SurveyService(config=lambda: cfg, ami=lambda: None,
                            store=SurveyStore(f"sqlite:///{tmp_path / 'surveys.sqlite'}"))
    connect(orders, surveys)  # as the controller does
    recs = RecordingStore(f"sqlite:///{tmp_path / 'recordings.sqlite'}")
    root = tmp_path / "recordings"
    ami = FakeAmi()
    app = FakeApp(cfg, orders, surveys, recording_service(recs, root, cfg, ami))
    runner = await http.start(app, controller=None, host="127.0.0.1", port=0)
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession() as s:
        yield World(f"http://127.0.0.1:{port}", s, orders, recs, surveys, root, ami)
    await runner.cleanup()
    orders.close()
    surveys.store.close()
    recs.close()


async def test_recordings_by_centre(world: World) -> None:
    w = world
    nc = w.recording("1.1", "nanchang")
    gz = w.recording("2.2", "ganzhou")
    unknown = w.recording("3.3", None, seat="1001")  # e.g. transferred in from 110, still on

    async def listed(user: str) -> set[int]:
        st, rows = await w.call(user, "GET", "/recordings")
        assert st == 200, rows
        return {r["id"] for r in rows}

    assert await listed("sup-ganzhou") == {gz}
    assert await listed("sup-nanchang") == {nc}
    assert await listed("sup-province") == {nc, gz, unknown}
    assert await listed("admin") == {nc, gz, unknown}
    assert await listed("zhangwei") == {unknown}  # agents: their seat's calls, as before
    st, body = await w.call("sup-ganzhou", "GET", "/recordings?call_id=1.1")
    assert (st, body) == (200, [])
    for path in (f"/recordings/{nc}", f"/recordings/{nc}/audio", f"/recordings/{unknown}/audio"):
        st, body = await w.call("sup-ganzhou", "GET", path)
        assert st == 404 and body["error_id"] == "not-found", (path, body)
    st, body = await w.call("sup-nanchang", "GET", f"/recordings/{nc}")
    assert st == 200 and body["centre"] == "nanchang"
    st, wav = await w.call("sup-nanchang", "GET", f"/recordings/{nc}/audio")
    assert (st, wav) == (200, WAV)
    for rid in (nc, gz, unknown):
        st, wav = await w.call("sup-province", "GET", f"/recordings/{rid}/audio")
        assert (st, wav) == (200, WAV)
    # once the call tracker places the call, its centre's supervisor sees it
    w.recs.set_centres({"3.3": "ganzhou"})
    assert await listed("sup-ganzhou") == {gz, unknown}
    assert await listed("sup-nanchang") == {nc}


async def test_pausing_another_centre_s_call_is_refused(world: World) -> None:
    w = world
    w.recording("1.1", "nanchang")
    w.recording("2.2", None)  # not placed yet, but a Ganzhou seat answered it
    w.ami.channels = [
        {"Channel": "PJSIP/carrier-00000001", "Uniqueid": "1.1", "Linkedid": "1.1"},
        {"Channel": "PJSIP/2001-0000000a", "Uniqueid": "1.2", "Linkedid": "1.1"},
        {"Channel": "PJSIP/carrier-00000002", "Uniqueid": "2.2", "Linkedid": "2.2"},
        {"Channel": "PJSIP/3001-0000000b", "Uniqueid": "2.3", "Linkedid": "2.2"},
    ]
    st, body = await w.call("sup-ganzhou", "POST", "/recordings/calls/1.1/pause")
    assert st == 403 and body["message"] == "call 1.1 is not of a centre of sup-ganzhou"
    st, body = await w.call("sup-ganzhou", "POST", "/seats/2001/recording/pause")
    assert st == 403 and body["message"] == "sup-ganzhou may not act on seat 2001"
    assert w.ami.actions == []
    st, body = await w.call("sup-nanchang", "POST", "/seats/2001/recording/pause")
    assert st == 200 and body["paused"] is True
    st, body = await w.call("sup-ganzhou", "POST", "/recordings/calls/2.2/pause")  # its seat
    assert st == 200 and body["paused"] is True
    st, body = await w.call("sup-nanchang", "POST", "/recordings/calls/2.2/resume")
    assert st == 403
    st, body = await w.call("chenjing", "POST", "/recordings/calls/1.1/resume")  # the agent
    assert st == 200 and body["paused"] is False
    assert [a["State"] for a in w.ami.actions] == ["1", "1", "0"]


async def test_surveys_by_the_centre_of_their_order(world: World) -> None:
    w = world
    nc_ref = w.orders.record_call(facts("1.1", "nanchang"))
    gz_ref = w.orders.record_call(facts("2.2", "ganzhou"))
    nc = w.surveys.schedule(nc_ref, "13907910001", NOW).id
    gz = w.surveys.schedule(gz_ref, "13907970002", NOW).id
    orphan = w.surveys.schedule("GD-HAND-1", "13907910003", NOW).id  # by hand, for no order

    async def listed(user: str, query: str = "") -> set[str]:
        st, body = await w.call(user, "GET", "/surveys?state=all" + query)
        assert st == 200, body
        return {j["id"] for j in body["surveys"]}

    assert await listed("sup-ganzhou") == {gz}
    assert await listed("sup-nanchang") == {nc}
    assert await listed("sup-province") == {nc, gz, orphan}
    assert await listed("admin") == {nc, gz, orphan}
    assert await listed("sup-ganzhou", f"&order={nc_ref}") == set()
    st, body = await w.call("sup-ganzhou", "GET", f"/surveys/{nc}")
    assert st == 404 and "13907910001" not in str(body)  # the citizen's number stays hidden
    st, body = await w.call("sup-ganzhou", "GET", f"/surveys/{gz}")
    assert st == 200 and body["number"] == "13907970002"
    st, body = await w.call("sup-nanchang", "GET", f"/surveys/{orphan}")
    assert st == 404
    st, body = await w.call("zhangwei", "GET", "/surveys")
    assert st == 403  # agents never read surveys, as before


async def test_a_supervisor_s_survey_list_fills_its_limit_past_other_centres(
        world: World) -> None:
    w = world
    gz_ref = w.orders.record_call(facts("2.2", "ganzhou"))
    now = [NOW - 3600]
    w.surveys.clock = lambda: now[0]
    gz = w.surveys.schedule(gz_ref, "13907970002", NOW).id  # the oldest
    for i in range(250):  # newer surveys of another centre, more than a page
        now[0] = NOW + i
        ref = w.orders.record_call(facts(f"9.{i}", "nanchang"))
        w.surveys.schedule(ref, "13907910001", NOW)
    st, body = await w.call("sup-ganzhou", "GET", "/surveys?state=all&limit=5")
    assert st == 200 and [j["id"] for j in body["surveys"]] == [gz]
    st, body = await w.call("sup-nanchang", "GET", "/surveys?state=all&limit=5")
    assert st == 200 and len(body["surveys"]) == 5 and gz not in {j["id"] for j in body["surveys"]}


def test_recordings_without_a_centre_take_their_call_s_from_the_work_orders(
        store: RecordingStore, tmp_path: Path) -> None:
    """Rows of an earlier release (or adopted after the facts were delivered) are placed
    when the controller starts and at each purge round."""
    from types import SimpleNamespace

    from recordings.plugin import RecordingsPlugin

    cfg = load_config(SAMPLE)
    orders = open_store(lambda: cfg, tmp_path / "state")
    orders.record_call(facts("1.1", "nanchang"))
    old = store.started(call_id="1.1", kind="call", path="2026/11/27/1.1-call.wav",
                        started_at=NOW)
    alone = store.started(call_id="2.2", kind="call", path="2026/11/27/2.2-call.wav",
                          started_at=NOW)  # no work order (yet)
    plugin = RecordingsPlugin.__new__(RecordingsPlugin)
    plugin.app, plugin.store = SimpleNamespace(orders=orders), store
    assert store.unplaced_calls() == ["1.1", "2.2"]
    assert plugin.place_from_orders() == 1
    assert (store.get(old.id).centre, store.get(alone.id).centre) == ("nanchang", None)  # type: ignore[union-attr]
    assert plugin.place_from_orders() == 0 and store.unplaced_calls() == ["2.2"]
    plugin.app = SimpleNamespace(orders=None)  # no work orders on this controller
    assert plugin.place_from_orders() == 0
    orders.close()
