"""queues.callback_service with a fake Asterisk: the scheduler, persistence, restarts, rights,
and the callback-offer AGI script with a fake channel.

The fake AMI knows exactly the actions the service may send (anything else
fails the test) and behaves like Asterisk where the service relies on it:
QueuePause changes the member's pause state, an Originate creates a channel
whose uniqueid is the ChannelId. Outcomes are appended to a real queue_log
file in the lines the dialplan writes.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from agi_scripts.callback_booking import book
from agi_scripts.callback_offer import callback_offer
from dialplan.model import Config
from dialplan.validate import load_config
from hotline import channel_vars as cv
from hotline.ami import AmiActionError
from hotline.amiproto import AmiMessage
from hotline.auth import Forbidden, Principal
from queues.agents import BadRequest, NotFound
from queues.callback import State
from queues.callback_service import CallbackService, QueueLogTail, member_from
from queues.callback_store import CallbackStore
from queues.position import Arrivals

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
ADMIN = Principal("admin", "admin")
SUP_PROVINCE = Principal("sup-province", "supervisor", centre="province")
SUP_NANCHANG = Principal("sup-nanchang", "supervisor", centre="nanchang")
AGENT = Principal("zhangwei", "agent", seat="1001")


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(SAMPLE)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeAmi:
    KNOWN = {"QueuePause"}

    def __init__(self) -> None:
        self.connected = True
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.members: dict[str, dict[str, str]] = {}
        self.entries: list[dict[str, str]] = []
        self.channels: set[str] = set()
        self.refuse_originate = False

    def seat(self, seat: str, **kw: str) -> None:
        row = {
            "Event": "QueueMember",
            "Queue": "province",
            "MemberName": seat,
            "Location": f"PJSIP/{seat}",
            "Paused": "0",
            "PausedReason": "",
            "InCall": "0",
            "Status": "1",
            "LastCall": "0",
        }
        row.update(kw)
        self.members[seat] = row

    async def action(self, name: str, **fields: Any) -> AmiMessage:
        assert name in self.KNOWN, f"unexpected AMI action {name}"
        self.sent.append((name, fields))
        seat = fields["Interface"].split("/", 1)[1]
        self.members[seat]["Paused"] = "1" if fields["Paused"] == "true" else "0"
        self.members[seat]["PausedReason"] = fields.get("Reason") or ""
        return AmiMessage([("Response", "Success")])

    async def action_list(self, name: str, **fields: Any) -> list[dict[str, str]]:
        if name == "QueueStatus":
            return [dict(m) for m in self.members.values()] + [dict(e) for e in self.entries]
        assert name == "CoreShowChannels", f"unexpected AMI list action {name}"
        return [{"Event": "CoreShowChannel", "Uniqueid": u} for u in self.channels]

    async def getvar(self, name: str, channel: str | None = None) -> str | None:
        return next((e["_first"] for e in self.entries if e["Channel"] == channel), None)

    async def originate(self, originate_id: str, channel: str, **kw: Any) -> None:
        self.sent.append(("Originate", {"id": originate_id, "channel": channel, **kw}))
        if self.refuse_originate:
            raise AmiActionError(
                "Originate", AmiMessage([("Response", "Error"), ("Message", "no")])
            )
        self.channels.add(originate_id)

    def names(self) -> list[str]:
        return [n for n, _ in self.sent]


class World:
    def __init__(self, tmp: Path, cfg: Config) -> None:
        self.cfg = cfg
        self.ami = FakeAmi()
        self.clock = Clock()
        self.db = f"sqlite:///{tmp / 'callbacks.sqlite'}"
        self.log_path = tmp / "queue_log"
        self.log_path.write_text("")
        self.audited: list[tuple[str, str]] = []
        self.svc = self.service()

    def service(self) -> CallbackService:
        async def audit(who: Principal, action: str, seat: str, **_: object) -> None:
            self.audited.append((who.name, action))

        svc = CallbackService(
            config=lambda: self.cfg,
            ami=lambda: self.ami,
            store=CallbackStore(self.db),
            queue_log=self.log_path,
            arrivals=Arrivals(),
            audit=audit,
            clock=self.clock,
        )
        svc.load()
        return svc

    def restart(self) -> CallbackService:
        self.svc.store.close()
        self.svc = self.service()
        return self.svc

    def log(self, event: str, *data: str, callid: str = "1800.1") -> None:
        with open(self.log_path, "a") as f:
            f.write(
                "|".join([str(int(self.clock.now)), callid, "province", "1001", event, *data])
                + "\n"
            )

    def tick(self, seconds: float = 0.0) -> None:
        self.clock.now += seconds
        asyncio.run(self.svc.tick())

    def request(
        self, number: str = "13907910001", uniqueid: str = "1800.1", first: float = -300.0
    ) -> str:
        r = asyncio.run(self.svc.request_from_offer(
            queue="province",
            number=number,
            first_queued=self.clock.now + first,
            uniqueid=uniqueid,
            city="nanchang",
            service_number="12345",
        ))
        return r.id

    def state(self, rid: str) -> State:
        r = self.svc.store.get(rid)
        assert r is not None
        return r.state


@pytest.fixture
def world(tmp_path: Path, cfg: Config) -> World:
    return World(tmp_path, cfg)


def test_offer_to_done_reserves_launches_and_frees_the_agent(world: World) -> None:
    w = world
    w.ami.seat("1001")
    rid = w.request()
    w.tick()
    assert w.ami.sent == [
        ("QueuePause", {"Interface": "PJSIP/1001", "Paused": "true", "Reason": "callback"})
    ]
    assert w.state(rid) == State.RESERVED
    w.tick(0.2)
    name, orig = w.ami.sent[-1]
    assert name == "Originate" and orig["id"] == f"{rid}-1" and orig["channel"] == "PJSIP/1001"
    assert (
        orig["context"] == cv.CTX_CALLBACK_DIAL and orig["exten"] == "s" and orig["priority"] == 1
    )
    assert orig["variables"] == {
        cv.CB_ATTEMPT: f"{rid}-1",
        cv.CB_NUMBER: "13907910001",
        cv.CB_CALLID: "1800.1",
        cv.CB_QUEUE: "province",
        cv.CB_SEAT: "1001",
        cv.CB_FROM: "12345",
        f"__{cv.CENTRE}": "province",  # the queue's: the citizen leg's recording is placed there
    }
    assert orig["timeout_ms"] == w.cfg.callbacks.ring_agent * 1000
    assert w.state(rid) == State.CALLING_AGENT
    w.ami.members["1001"].update(InCall="1", Status="2")
    w.log("CALLBACKDIAL", f"{rid}-1")
    w.log("CALLBACK", f"{rid}-1")
    w.tick(1)
    assert w.state(rid) == State.CONNECTED
    w.ami.channels.clear()
    w.ami.members["1001"].update(InCall="0", Status="1")
    w.log("CALLBACKEND", f"{rid}-1", "30")
    w.tick(30)
    assert w.state(rid) == State.DONE and rid not in w.svc.open
    assert w.ami.names().count("QueuePause") == 1  # still paused: wrap-up after the call-back
    w.tick(w.cfg.queues["province"].wrapup + 0.1)
    assert w.ami.sent[-1] == (
        "QueuePause",
        {"Interface": "PJSIP/1001", "Paused": "false", "Reason": None},
    )
    history = [h["to"] for h in w.svc.store.transitions(rid)]
    assert history == [
        "pending",
        "reserved",
        "calling-agent",
        "calling-citizen",
        "connected",
        "done",
    ]


def test_live_caller_first_then_the_call_back(world: World) -> None:
    w = world
    w.ami.seat("1001", InCall="1", Status="2")
    w.ami.entries = [
        {
            "Event": "QueueEntry",
            "Queue": "province",
            "Uniqueid": "live",
            "Channel": "PJSIP/c-1",
            "Position": "1",
            "Wait": "100",
            "_first": str(w.clock.now - 400),
        }
    ]
    rid = w.request(first=-300)
    w.tick()
    assert w.ami.sent == [] and w.state(rid) == State.PENDING  # the live caller came first
    w.ami.entries = []
    w.tick(1)  # the live caller was answered; the agent is on that call
    assert w.ami.sent == [] and w.state(rid) == State.PENDING
    w.ami.members["1001"].update(InCall="0", Status="1", LastCall=str(int(w.clock.now)))
    w.tick(1)  # in wrap-up: reserved now, before the queue can offer it a live call
    assert w.state(rid) == State.RESERVED and w.ami.names() == ["QueuePause"]
    w.tick(1)
    assert w.ami.names() == ["QueuePause"]  # not launched during the wrap-up
    w.tick(w.cfg.queues["province"].wrapup)
    assert w.ami.names() == ["QueuePause", "Originate"]


def test_a_restart_checks_channels_and_queue_log_before_sending_again(world: World) -> None:
    w = world
    w.ami.seat("1001")
    rid = w.request()
    w.tick()
    w.tick(0.2)
    assert w.ami.names() == ["QueuePause", "Originate"]
    # The controller dies while the agent's seat rings; it comes back.
    svc = w.restart()
    assert svc.open[rid].state == State.CALLING_AGENT
    w.tick(1)
    assert w.ami.names() == ["QueuePause", "Originate"]  # the channel exists: nothing sent again
    # The agent answers, the citizen talks, the call ends -- all while the controller is away.
    w.log("CALLBACKDIAL", f"{rid}-1")
    w.log("CALLBACK", f"{rid}-1")
    w.log("CALLBACKEND", f"{rid}-1", "12")
    w.ami.channels.clear()
    w.restart()
    w.tick(20)
    assert w.state(rid) == State.DONE
    assert w.ami.names().count("Originate") == 1


def test_an_originate_that_never_got_to_asterisk_is_sent_again_with_a_new_id(world: World) -> None:
    w = world
    w.ami.seat("1001")
    w.ami.seat("1002")
    rid = w.request()
    w.tick()
    w.tick(0.2)
    first = w.ami.sent[-1][1]["id"]
    seat = w.ami.sent[-1][1]["channel"]
    w.ami.channels.clear()  # e.g. killed between saving calling-agent and the Originate
    w.restart()
    w.tick(1)
    # No CALLBACKDIAL line: the citizen was never called. Pending again, and at once given
    # the other agent (the seat that did not answer is left alone a while, and given back).
    r = w.svc.store.get(rid)
    assert r is not None and r.attempts == 0 and r.history[-2]["to"] == "pending"
    assert r.state == State.RESERVED and r.seat == "1002"
    assert (
        "QueuePause",
        {"Interface": "PJSIP/1001", "Paused": "false", "Reason": None},
    ) in w.ami.sent
    w.tick(1)
    again = [f for n, f in w.ami.sent if n == "Originate"]
    assert [o["id"] for o in again] == [first, f"{rid}-2"]
    assert again[1]["channel"] != seat  # the seat that did not answer is left alone a while


def test_unknown_outcome_after_dialling_counts_as_a_try(world: World) -> None:
    w = world
    w.ami.seat("1001")
    rid = w.request()
    w.tick()
    w.tick(0.2)
    w.log("CALLBACKDIAL", f"{rid}-1")
    w.tick(1)
    assert w.state(rid) == State.CALLING_CITIZEN
    w.ami.channels.clear()  # Asterisk crashed mid-call: no outcome line
    w.tick(5)
    r = w.svc.store.get(rid)
    assert (
        r is not None and r.state == State.RETRY_WAIT and r.attempts == 1 and r.result == "UNKNOWN"
    )
    w.tick(1)
    assert w.ami.names().count("Originate") == 1  # not before retry_delay


def test_an_originate_refused_puts_the_request_back(world: World) -> None:
    w = world
    w.ami.seat("1001")
    w.ami.refuse_originate = True
    rid = w.request()
    w.tick()
    w.tick(0.2)
    r = w.svc.store.get(rid)
    assert r is not None and r.state == State.PENDING and r.result == "ORIGINATE-REFUSED"


def test_requests_are_persistent_and_idempotent_per_call(world: World) -> None:
    w = world
    rid = w.request()
    assert w.request() == rid  # pressed 1 again in the same call
    w.request(number="13907910002", uniqueid="1800.2")
    svc = w.restart()
    assert sorted(r.number for r in svc.open.values()) == ["13907910001", "13907910002"]
    with pytest.raises(BadRequest):
        asyncio.run(svc.request_from_offer(queue="province", number="110", first_queued=1.0,
                                           uniqueid="x"))


def test_rights_listing_and_cancel(world: World) -> None:
    w = world
    rid = w.request()
    with pytest.raises(Forbidden):
        w.svc.listing(AGENT)
    assert [c["id"] for c in w.svc.listing(SUP_PROVINCE, "pending")] == [rid]
    assert w.svc.listing(SUP_NANCHANG) == []  # the province queue is not a Nanchang queue
    with pytest.raises(BadRequest):
        w.svc.listing(ADMIN, "sleeping")
    with pytest.raises(NotFound):
        asyncio.run(w.svc.cancel(SUP_NANCHANG, rid))
    assert asyncio.run(w.svc.cancel(SUP_PROVINCE, rid))["state"] == "cancelled"
    assert w.svc.listing(ADMIN, "cancelled")[0]["id"] == rid
    assert w.audited == [("sup-province", "callback-cancel")]


def test_a_request_under_way_cannot_be_withdrawn(world: World) -> None:
    w = world
    w.ami.seat("1001")
    rid = w.request()
    w.tick()
    w.tick(0.2)
    with pytest.raises(BadRequest, match="calling-agent"):
        asyncio.run(w.svc.cancel(ADMIN, rid))


def test_abandoned_calls_become_requests(world: World) -> None:
    w = world
    t = int(w.clock.now)
    w.log_path.write_text(
        f"{t - 60}|c9|province|NONE|ENTERQUEUE||13907910009|1\n"
        f"{t - 30}|c9|province|NONE|ABANDON|1|1|30\n"
        f"{t - 20}|c8|province|NONE|ENTERQUEUE||anonymous|1\n"
        f"{t - 10}|c8|province|NONE|ABANDON|1|1|10\n"
    )
    assert [m["uniqueid"] for m in w.svc.abandoned(SUP_PROVINCE, 0, None)] == ["c9", "c8"]
    assert w.svc.abandoned(SUP_NANCHANG, 0, None) == []
    made = asyncio.run(w.svc.from_abandoned(SUP_PROVINCE, "c9"))
    assert (
        made["first_queued"] == t - 60
        and made["source"] == "abandoned"
        and made["number"] == "13907910009"
    )
    assert [m["uniqueid"] for m in w.svc.abandoned(SUP_PROVINCE, 0, None)] == ["c8"]
    with pytest.raises(NotFound):
        asyncio.run(w.svc.from_abandoned(SUP_PROVINCE, "c9"))
    with pytest.raises(BadRequest, match="no number to call back"):
        asyncio.run(w.svc.from_abandoned(SUP_PROVINCE, "c8"))
    assert (
        asyncio.run(w.svc.from_abandoned(SUP_PROVINCE, "c8", "0791-86001234"))["number"]
        == "079186001234"
    )


def test_queue_log_tail_reads_new_complete_lines_and_survives_rotation(tmp_path: Path) -> None:
    p = tmp_path / "queue_log"
    p.write_text("1|a|q|NONE|ENTERQUEUE||1|1\n2|a|q|NONE|ABAN")
    tail = QueueLogTail(p)
    assert [e.event for e in tail.read_new()] == ["ENTERQUEUE"]
    with open(p, "a") as f:
        f.write("DON|1|1|5\n")
    assert [e.event for e in tail.read_new()] == ["ABANDON"]
    assert tail.read_new() == []
    p.unlink()
    p.write_text("3|b|q|NONE|ENTERQUEUE||1|1\n")
    assert [e.callid for e in tail.read_new()] == ["b"]


def test_member_from_queue_status() -> None:
    m = member_from(
        {
            "Queue": "ganzhou-yudu",
            "MemberName": "yudu-01",
            "Location": "PJSIP/8001@yudu-site",
            "Paused": "1",
            "PausedReason": "callback",
            "InCall": "0",
            "Status": "1",
            "LastCall": "x",
        }
    )
    assert (m.seat, m.interface, m.paused, m.reason, m.last_call) == (
        "yudu-01",
        "PJSIP/8001@yudu-site",
        True,
        "callback",
        0.0,
    )


# ------------------------------------------------------------------ the AGI script


class FakeChannel:
    """The facade the AGI script sees; key presses come from a script of answers."""

    def __init__(
        self,
        variables: dict[str, str],
        callerid: str,
        keys: list[str | None],
        typed: list[str] | None = None,
    ) -> None:
        self.vars = dict(variables)
        self.env = type("Env", (), {"callerid": callerid})()
        self.uniqueid = "1800.7"
        self.log = logging.getLogger("test")
        self.keys = list(keys)
        self.typed = list(typed or [])
        self.played: list[str] = []

    async def get_variable(self, name: str) -> str | None:
        return self.vars.get(name)

    async def set_variable(self, name: str, value: str) -> None:
        self.vars[name] = value

    async def stream_file(
        self, name: str, escape_digits: str = "", *, max_wait: float | None = None
    ) -> str | None:
        self.played.append(name.rsplit("/", 1)[-1])
        return self.keys.pop(0) if escape_digits and self.keys else None

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return self.keys.pop(0) if self.keys else None

    async def get_data(
        self, prompt: str, timeout_ms: int, max_digits: int, *, max_wait: float | None = None
    ) -> str:
        self.played.append(prompt.rsplit("/", 1)[-1])
        return self.typed.pop(0) if self.typed else ""


class FakeApp:
    def __init__(self, cfg: Config, svc: CallbackService | None) -> None:
        self.config = cfg
        self.callbacks = svc

    def prompt(self, name: str) -> str:
        return f"/sounds/{name}"

    def prompt_wait(self, name: str, margin: float = 5.0) -> float:
        return margin


def waited(world: World, seconds: float) -> dict[str, str]:
    import time

    return {
        cv.QUEUE: "province",
        cv.FIRST_QUEUED: str(int(time.time() - seconds)),
        cv.CITY: "nanchang",
        cv.NUMBER: "12345",
    }


def test_offer_confirmed_with_1_is_stored(world: World) -> None:
    # The caller ID is read back (confirm prompt, then 11 digits); 1 during the digits confirms.
    ch = FakeChannel(waited(world, 200), "13907910001", [None, None, None, "1"])
    asyncio.run(callback_offer(ch, FakeApp(world.cfg, world.svc)))  # type: ignore[arg-type]
    assert ch.played[:4] == ["callback-confirm", "num-1", "num-3", "num-9"]
    assert ch.played[-1] == "callback-accepted"
    (r,) = world.svc.open.values()
    assert ch.vars[cv.CALLBACK_ID] == r.id
    assert (r.number, r.queue, r.city, r.uniqueid, r.service_number) == (
        "13907910001",
        "province",
        "nanchang",
        "1800.7",
        "12345",
    )
    assert r.first_queued == float(ch.vars[cv.FIRST_QUEUED])  # the ORIGINAL first arrival


def test_offer_with_another_number_keyed_in(world: World) -> None:
    keys: list[str | None] = [None] * 13  # the whole number read back ...
    keys.append("2")  # ... then 2: another number
    ch = FakeChannel(waited(world, 200), "13907910001", keys, typed=["12345", "079186001234"])
    asyncio.run(callback_offer(ch, FakeApp(world.cfg, world.svc)))  # type: ignore[arg-type]
    assert ch.played.count("callback-enter") == 2 and "callback-invalid" in ch.played
    (r,) = world.svc.open.values()
    assert r.number == "079186001234"


def test_offer_without_a_callable_caller_id_asks_for_a_number(world: World) -> None:
    ch = FakeChannel(waited(world, 200), "anonymous", [], typed=["13907910005"])
    asyncio.run(callback_offer(ch, FakeApp(world.cfg, world.svc)))  # type: ignore[arg-type]
    assert ch.played[0] == "callback-enter"
    assert [r.number for r in world.svc.open.values()] == ["13907910005"]


@pytest.mark.parametrize(
    "case", ["early", "no-answer", "two-wrong-numbers", "no-service", "no-offer"]
)
def test_offer_declined_or_impossible_leaves_the_caller_in_line(world: World, case: str) -> None:
    variables = waited(world, 200)
    keys: list[str | None] = []
    typed: list[str] = []
    svc: CallbackService | None = world.svc
    if case == "early":
        variables = waited(world, 10)  # callback_after is 120 in the sample
    elif case == "two-wrong-numbers":
        keys, typed = ["2"], ["1", "2"]
    elif case == "no-service":
        svc = None
    elif case == "no-offer":
        variables[cv.QUEUE] = "nanchang"
    ch = FakeChannel(variables, "13907910001", keys, typed)
    asyncio.run(callback_offer(ch, FakeApp(world.cfg, svc)))  # type: ignore[arg-type]
    assert cv.CALLBACK_ID not in ch.vars  # the dialplan puts them back in the queue
    assert world.svc.open == {}


def test_a_call_back_booked_from_the_menu_keeps_the_time_of_the_choice(world: World) -> None:
    ch = FakeChannel({cv.CITY: "nanchang", cv.NUMBER: "12345"}, "13907910001", ["1"])
    app = FakeApp(world.cfg, world.svc)
    booked = asyncio.run(
        book(ch, app, queue="nanchang", first_queued=1_800_000_000.0, source="menu")  # type: ignore[arg-type]
    )
    (r,) = world.svc.open.values()
    assert booked == r.id == ch.vars[cv.CALLBACK_ID]
    assert (r.source, r.queue, r.first_queued, r.number) == (
        "menu", "nanchang", 1_800_000_000.0, "13907910001"
    )
    assert ch.played[0] == "callback-confirm" and ch.played[-1] == "callback-accepted"
    # Not confirmed (no key twice): nothing booked, the IVR sends the caller to a person.
    ch = FakeChannel({}, "13907910002", [])
    assert asyncio.run(book(ch, app, queue="nanchang", first_queued=1.0, source="menu")) is None  # type: ignore[arg-type]
    assert len(world.svc.open) == 1
