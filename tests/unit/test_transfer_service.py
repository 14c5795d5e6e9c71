"""The transfer service against a fake AMI (no Asterisk): actions sent, events followed,
state persisted and reconciled after a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from dialplan.model import Config
from dialplan.validate import load_config_text
from hotline import channel_vars as cv
from hotline.ami import AmiActionError
from hotline.amiproto import AmiMessage
from hotline.auth import Principal
from transfer import services as services_mod
from transfer.exceptions import CallMoved, NoCall, NotAllowed, TransferInProgress, UnknownLine
from transfer.machine import State
from transfer.services import TransferService
from transfer.store import TransferStore

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
ZHANGWEI = Principal("zhangwei", "agent", seat="1001")
CALLER = {
    "Channel": "PJSIP/carrier-00000001",
    "Uniqueid": "1700.1",
    "CallerIDNum": "13907910001",
    "BridgeId": "b-1",
    "Application": "Queue",
    "Context": "hotline-queue",
}
AGENT = {
    "Channel": "PJSIP/1001-00000002",
    "Uniqueid": "1700.2",
    "CallerIDNum": "1001",
    "BridgeId": "b-1",
    "Application": "AppQueue",
    "Context": "from-seat",
}


def error(message: str) -> AmiActionError:
    return AmiActionError("x", AmiMessage([("Response", "Error"), ("Message", message)]))


class FakeAmi:
    """Knows exactly the actions the service may send; anything else fails the test."""

    KNOWN = {"Setvar", "Redirect", "Hangup"}

    def __init__(self) -> None:
        self.connected = True
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.channels: list[dict[str, str]] = [dict(CALLER), dict(AGENT)]
        self.refuse: dict[str, AmiActionError] = {}

    async def action(self, name: str, **fields: Any) -> AmiMessage:
        assert name in self.KNOWN, f"unexpected AMI action {name}"
        await asyncio.sleep(0)  # a real client yields while Asterisk answers
        self.sent.append((name, fields))
        if name in self.refuse:
            raise self.refuse.pop(name)
        return AmiMessage([("Response", "Success")])

    async def action_list(self, name: str, **fields: Any) -> list[dict[str, str]]:
        assert name == "CoreShowChannels", f"unexpected AMI list action {name}"
        await asyncio.sleep(0)
        return [dict(c) for c in self.channels]

    variables: dict[tuple[str, str], str] = {}  # (channel, name) -> value, read by getvar

    async def getvar(self, name: str, channel: str | None = None) -> str | None:
        await asyncio.sleep(0)
        return self.variables.get((channel or "", name))

    async def originate(self, originate_id: str, channel: str, **kw: Any) -> None:
        self.sent.append(("Originate", {"id": originate_id, "channel": channel, **kw}))
        if "Originate" in self.refuse:
            raise self.refuse.pop("Originate")

    def names(self) -> list[str]:
        return [n for n, _ in self.sent]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, s: float) -> float:
        self.now += s
        return self.now


@pytest.fixture
def cfg() -> Config:
    text = SAMPLE.read_text(encoding="utf-8").replace(
        '"120": {name: 急救, route: {trunk: emergency, number: "120"}, prompt: transfer-120}',
        '"120": {name: 急救, route: {trunk: emergency, number: "120"}, prompt: transfer-120,'
        ' alternate: {trunk: carrier, number: "120"}, answer_timeout: 5}',
    )
    assert "alternate: {trunk: carrier" in text
    return load_config_text(text, "hotline.yaml")


@pytest.fixture
def ami() -> FakeAmi:
    return FakeAmi()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def service(cfg: Config, ami: FakeAmi, tmp_path: Path, clock: Clock) -> TransferService:
    return TransferService(
        config=lambda: cfg, ami=lambda: ami, store=TransferStore(tmp_path / "t.sqlite"), clock=clock
    )


@pytest.fixture
def svc(cfg: Config, ami: FakeAmi, tmp_path: Path, clock: Clock) -> TransferService:
    return service(cfg, ami, tmp_path, clock)


async def event(svc: TransferService, **fields: str) -> None:
    pending = svc.on_event(fields)
    if pending is not None:
        await pending


# ------------------------------------------------------------------ requests


async def test_request_moves_both_parties_then_dials(svc: TransferService, ami: FakeAmi) -> None:
    record = await svc.request(ZHANGWEI, "1001", "119")
    tid = record["id"]
    assert record["state"] == "dialling" and record["seat"] == "1001"
    assert ami.sent == [
        ("Setvar", {"Channel": CALLER["Channel"], "Variable": "HOTLINE_XFER", "Value": tid}),
        ("Setvar", {"Channel": AGENT["Channel"], "Variable": "HOTLINE_XFER", "Value": tid}),
        (
            "Redirect",
            {
                "Channel": CALLER["Channel"],
                "Context": "hotline-xfer-caller",
                "Exten": "119",
                "Priority": "1",
                "ExtraChannel": AGENT["Channel"],
                "ExtraContext": "hotline-xfer-agent",
                "ExtraExten": "s",
                "ExtraPriority": "1",
            },
        ),
        (
            "Originate",
            {
                "id": f"{tid}-d1",
                "channel": "PJSIP/119@emergency",
                "context": "hotline-xfer-dispatcher",
                "exten": "s",
                "priority": 1,
                "caller_id": "12345 <13907910001>",
                "variables": {"HOTLINE_XFER": tid},
                "timeout_ms": 8000,
            },
        ),
    ]
    assert [(h["from"], h["to"]) for h in svc.store.transitions(tid)] == [
        ("requested", "caller_held"),
        ("caller_held", "dialling"),
    ]
    assert svc.index == {"1700.1": tid, "1700.2": tid, f"{tid}-d1": tid}
    await svc.close()


async def test_request_rights_and_errors(svc: TransferService, ami: FakeAmi) -> None:
    with pytest.raises(NotAllowed):
        await svc.request(Principal("liuyang", "agent", seat="1002"), "1001", "119")
    with pytest.raises(UnknownLine) as e:
        await svc.request(ZHANGWEI, "1001", "999")
    assert e.value.details == {"known": ["110", "119", "120", "122", "ganzhou-centre", "market"]}
    ami.channels = [dict(CALLER)]
    with pytest.raises(NoCall, match="seat 1001 has no call in progress"):
        await svc.request(ZHANGWEI, "1001", "119")
    assert ami.sent == []
    # a supervisor of the seat's centre may transfer it too
    ami.channels = [dict(CALLER), dict(AGENT)]
    record = await svc.request(
        Principal("sup-province", "supervisor", centre="province"), "1001", "110"
    )
    assert record["requested_by"] == "sup-province (HTTP)"
    with pytest.raises(TransferInProgress):
        await svc.request(ZHANGWEI, "1001", "119")
    await svc.close()


async def test_two_requests_for_one_call_start_one_transfer(
    svc: TransferService, ami: FakeAmi
) -> None:
    results = await asyncio.gather(
        svc.request(ZHANGWEI, "1001", "119"),
        svc.request(ZHANGWEI, "1001", "110"),
        return_exceptions=True,
    )
    assert sum(isinstance(r, dict) for r in results) == 1
    assert sum(isinstance(r, TransferInProgress) for r in results) == 1
    assert ami.names().count("Redirect") == 1 and len(svc.open) == 1
    await svc.close()


async def test_a_refused_redirect_aborts_and_leaves_the_call_alone(
    svc: TransferService, ami: FakeAmi
) -> None:
    ami.refuse["Redirect"] = error("Channel not found")
    with pytest.raises(CallMoved, match="Channel not found"):
        await svc.request(ZHANGWEI, "1001", "119")
    assert "Originate" not in ami.names()
    (row,) = svc.store.recent()
    assert row["state"] == "aborted" and svc.open == {} and svc.index == {}


# ------------------------------------------------------------------ following the call


async def test_three_way_then_agent_leaves_then_caller_ends(
    svc: TransferService, ami: FakeAmi, clock: Clock
) -> None:
    tid = (await svc.request(ZHANGWEI, "1001", "119"))["id"]
    d1 = f"{tid}-d1"
    clock.tick(0.05)
    await event(
        svc, Event="Newstate", Uniqueid=d1, Channel="PJSIP/emergency-00000003", ChannelState="5"
    )
    await event(svc, Event="ConfbridgeJoin", Conference=tid, Uniqueid="1700.1")
    clock.tick(2)
    await event(
        svc, Event="Newstate", Uniqueid=d1, Channel="PJSIP/emergency-00000003", ChannelState="6"
    )
    clock.tick(0.02)
    await event(svc, Event="ConfbridgeJoin", Conference=tid, Uniqueid=d1)
    t = svc.open[tid]
    assert t.state is State.THREE_WAY
    assert t.as_dict()["timings"]["request_to_ringing"] == 0.05
    assert t.as_dict()["timings"]["answer_to_bridged"] == 0.02
    await event(svc, Event="Hangup", Uniqueid="1700.2", Cause="16")
    assert t.state is State.CALLER_AND_DISPATCHER
    ami.sent.clear()
    await event(svc, Event="Hangup", Uniqueid="1700.1", Cause="16")
    assert ami.sent == [("Hangup", {"Channel": "PJSIP/emergency-00000003", "Cause": "16"})]
    record = svc.get(tid)
    assert record is not None and record["state"] == "done" and record["outcome"] == "connected"
    assert [x["to"] for x in record["transitions"]] == [
        "caller_held",
        "dialling",
        "three_way",
        "caller_and_dispatcher",
        "done",
    ]
    assert svc.open == {} and svc.index == {}


async def test_busy_tries_the_alternate_then_returns_to_the_agent(
    svc: TransferService, ami: FakeAmi
) -> None:
    tid = (await svc.request(ZHANGWEI, "1001", "120"))["id"]
    ami.sent.clear()
    await event(svc, Event="Hangup", Uniqueid=f"{tid}-d1", Cause="17")
    assert ami.sent == [
        (
            "Originate",
            {
                "id": f"{tid}-d2",
                "channel": "PJSIP/120@carrier",
                "context": "hotline-xfer-dispatcher",
                "exten": "s",
                "priority": 1,
                "caller_id": "12345 <13907910001>",
                "variables": {"HOTLINE_XFER": tid},
                "timeout_ms": 5000,
            },
        )
    ]
    # the late OriginateResponse of the first leg changes nothing
    await event(
        svc, Event="OriginateResponse", Uniqueid=f"{tid}-d1", Response="Failure", Reason="5"
    )
    assert svc.open[tid].state is State.ALTERNATE_DIALLING
    ami.sent.clear()
    await event(
        svc, Event="OriginateResponse", Uniqueid=f"{tid}-d2", Response="Failure", Reason="3"
    )
    assert ami.sent == [
        (
            "Redirect",
            {
                "Channel": AGENT["Channel"],
                "Context": "hotline-xfer-agent",
                "Exten": "failed",
                "Priority": "1",
            },
        )
    ]
    t = svc.open[tid]
    assert t.state is State.FAILED_BACK_TO_AGENT
    assert [f["reason"] for f in t.failures] == ["busy (cause 17)", "no answer"]
    # the agent hangs up: the caller is not left alone
    ami.sent.clear()
    await event(svc, Event="Hangup", Uniqueid="1700.2", Cause="16")
    assert ami.sent == [
        (
            "Setvar",
            {
                "Channel": CALLER["Channel"],
                "Variable": "HOTLINE_ABORT_REASON",
                "Value": f"transfer-{tid}",
            },
        ),
        (
            "Redirect",
            {
                "Channel": CALLER["Channel"],
                "Context": "hotline-failure",
                "Exten": "s",
                "Priority": "1",
            },
        ),
    ]
    assert svc.get(tid)["state"] == "caller_requeued"  # type: ignore[index]


async def test_a_leg_with_a_channel_is_decided_by_its_hangup_cause(
    svc: TransferService, ami: FakeAmi
) -> None:
    tid = (await svc.request(ZHANGWEI, "1001", "119"))["id"]
    d1 = f"{tid}-d1"
    await event(svc, Event="Newchannel", Uniqueid=d1, Channel="PJSIP/emergency-00000003")
    # Asterisk reports a 486 as Reason 0 first: wait for the Hangup's cause.
    await event(svc, Event="OriginateResponse", Uniqueid=d1, Response="Failure", Reason="0")
    assert svc.open[tid].state is State.DIALLING
    await event(svc, Event="Hangup", Uniqueid=d1, Cause="17")
    t = svc.open[tid]
    assert t.state is State.FAILED_BACK_TO_AGENT
    assert t.failures[0]["reason"] == "busy (cause 17)" and t.failures[0]["cause"] == "17"
    assert t.outcome == "failed-back-to-agent: route 1 busy (cause 17)"
    await svc.close()


async def test_an_originate_refused_by_asterisk_is_a_failed_route(
    svc: TransferService, ami: FakeAmi
) -> None:
    ami.refuse["Originate"] = error("Originate failed")
    tid = (await svc.request(ZHANGWEI, "1001", "119"))["id"]
    t = svc.get(tid)
    assert t is not None and t["state"] == "failed_back_to_agent"
    assert t["failures"][0]["reason"] == "refused by Asterisk: Originate failed"


async def test_the_agent_may_retry_after_a_failure(svc: TransferService, ami: FakeAmi) -> None:
    old = (await svc.request(ZHANGWEI, "1001", "119"))["id"]
    await event(svc, Event="Hangup", Uniqueid=f"{old}-d1", Cause="17")
    assert svc.open[old].state is State.FAILED_BACK_TO_AGENT
    # both now sit in the old transfer's bridge
    ami.channels = [
        dict(CALLER, BridgeId="b-2", Application="ConfBridge"),
        dict(AGENT, BridgeId="b-2", Application="ConfBridge"),
    ]
    new = (await svc.request(ZHANGWEI, "1001", "110"))["id"]
    assert svc.get(old)["state"] == "done"  # type: ignore[index]
    assert svc.get(old)["outcome"] == "failed-back-to-agent: route 1 busy (cause 17)"  # type: ignore[index]
    assert svc.open[new].state is State.DIALLING and svc.index["1700.1"] == new


async def test_watchdog_gives_up_on_a_silent_leg(
    svc: TransferService, ami: FakeAmi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services_mod, "WATCHDOG_GRACE", -7.95)  # fires 50 ms after the dial
    tid = (await svc.request(ZHANGWEI, "1001", "119"))["id"]
    ami.channels.append({"Channel": "PJSIP/emergency-00000009", "Uniqueid": f"{tid}-d1"})
    await asyncio.sleep(0.2)
    assert ("Hangup", {"Channel": "PJSIP/emergency-00000009", "Cause": "16"}) in ami.sent
    assert svc.open[tid].state is State.FAILED_BACK_TO_AGENT
    assert svc.open[tid].failures[0]["reason"] == "no answer (watchdog)"
    await svc.close()


# ------------------------------------------------------------------ user events


async def test_feature_code_starts_a_transfer(svc: TransferService, ami: FakeAmi) -> None:
    await event(
        svc,
        Event="UserEvent",
        UserEvent=cv.EVENT_XFER_REQUEST,
        Channel=AGENT["Channel"],
        Uniqueid=AGENT["Uniqueid"],
        Line="122",
    )
    (t,) = svc.open.values()
    assert t.line == "122" and t.seat == "1001" and t.requested_by == "seat 1001 (feature code)"
    assert t.state is State.DIALLING
    await svc.close()


async def test_feature_code_from_a_non_seat_is_ignored(svc: TransferService, ami: FakeAmi) -> None:
    await event(
        svc,
        Event="UserEvent",
        UserEvent=cv.EVENT_XFER_REQUEST,
        Channel=CALLER["Channel"],
        Uniqueid=CALLER["Uniqueid"],
        Line="119",
    )
    assert svc.open == {} and ami.sent == []


async def test_ivr_offer_transfers_the_caller_alone(svc: TransferService, ami: FakeAmi) -> None:
    await event(
        svc,
        Event="UserEvent",
        UserEvent=cv.EVENT_EMERGENCY,
        Channel=CALLER["Channel"],
        Uniqueid=CALLER["Uniqueid"],
        CallerIDNum="13907910001",
        Context="hotline-emergency",
        Line="120",
    )
    (t,) = svc.open.values()
    assert t.origin == "ivr" and t.agent_uniqueid is None
    assert ami.sent[1] == (
        "Redirect",
        {
            "Channel": CALLER["Channel"],
            "Context": "hotline-xfer-caller",
            "Exten": "120",
            "Priority": "1",
        },
    )
    await event(
        svc,
        Event="UserEvent",
        UserEvent=cv.EVENT_EMERGENCY,
        Channel="PJSIP/x-1",
        Uniqueid="9.9",
        Context="from-carrier",
        Line="120",
    )
    assert len(svc.open) == 1
    await svc.close()


async def test_unrelated_events_cost_nothing(svc: TransferService) -> None:
    assert svc.on_event({"Event": "Hangup", "Uniqueid": "42.1"}) is None
    assert svc.on_event({"Event": "UserEvent", "UserEvent": "Other"}) is None


# ------------------------------------------------------------------ restart


async def test_a_restarted_service_finishes_what_it_finds(
    cfg: Config, ami: FakeAmi, tmp_path: Path, clock: Clock
) -> None:
    first = service(cfg, ami, tmp_path, clock)
    tid = (await first.request(ZHANGWEI, "1001", "119"))["id"]
    await first.close()  # the controller dies while the line rings
    # Meanwhile the dispatcher answered and the agent hung up.
    ami.channels = [
        dict(CALLER, Application="ConfBridge", ApplicationData=f"{tid},hotline-xfer"),
        {
            "Channel": "PJSIP/emergency-00000004",
            "Uniqueid": f"{tid}-d1",
            "Application": "ConfBridge",
            "ApplicationData": f"{tid},hotline-xfer",
        },
    ]
    second = service(cfg, ami, tmp_path, clock)
    second.load()
    assert list(second.open) == [tid]
    await second.reconcile_all()
    t = second.open[tid]
    assert t.state is State.CALLER_AND_DISPATCHER
    # and it keeps following the call
    ami.sent.clear()
    await event(second, Event="Hangup", Uniqueid=f"{tid}-d1", Cause="16")
    assert ami.sent == [("Hangup", {"Channel": CALLER["Channel"], "Cause": "16"})]
    assert second.get(tid)["state"] == "done"  # type: ignore[index]
    await second.close()


async def test_restart_with_everyone_gone_closes_the_transfer(
    cfg: Config, ami: FakeAmi, tmp_path: Path, clock: Clock
) -> None:
    first = service(cfg, ami, tmp_path, clock)
    tid = (await first.request(ZHANGWEI, "1001", "119"))["id"]
    await first.close()
    ami.channels = []  # e.g. Asterisk restarted too
    second = service(cfg, ami, tmp_path, clock)
    second.load()
    ami.sent.clear()
    await second.reconcile_all()
    assert second.get(tid)["state"] == "done" and second.open == {}  # type: ignore[index]


async def test_the_case_reference_goes_to_the_leg_checked_and_as_digits(
    cfg: Config, ami: FakeAmi, tmp_path: Path, clock: Clock
) -> None:
    """announce_case: the last six digits for the announcement; a hand-off also passes
    the checked header values; a bad value is dropped."""
    on = cfg.model_copy(update={"transfers": cfg.transfers.model_copy(update={"announce_case": True})})
    svc = service(on, ami, tmp_path, clock)
    ami.variables = {
        (CALLER["Channel"], "HOTLINE_CASE_REF"): "JX-2026-0042",
        (CALLER["Channel"], "HOTLINE_CITY"): "nanchang",
        (CALLER["Channel"], "HOTLINE_COUNTY"): "bad county!",
        (CALLER["Channel"], "HOTLINE_NUMBER"): "12345",
    }
    await svc.request(ZHANGWEI, "1001", "119")
    leg = next(f for n, f in ami.sent if n == "Originate")
    assert leg["variables"]["HOTLINE_XFER_ANNOUNCE"] == "260042"  # the last six digits
    assert not any(k.startswith("__") for k in leg["variables"])  # an emergency line: no headers
    await svc.close()


async def test_a_hand_off_leg_carries_the_checked_header_values(
    svc: TransferService, ami: FakeAmi
) -> None:
    ami.variables = {
        (CALLER["Channel"], "HOTLINE_CASE_REF"): "JX-1,Hangup()",
        (CALLER["Channel"], "HOTLINE_CITY"): "nanchang",
        (CALLER["Channel"], "HOTLINE_NUMBER"): "12345",
    }
    t = await svc.request(ZHANGWEI, "1001", "market", "blind")
    assert t["kind"] == "blind"
    leg = next(f for n, f in ami.sent if n == "Originate")
    assert leg["channel"] == "Local/market@hotline-handoff-dial/n"
    assert leg["variables"] == {
        "HOTLINE_XFER": t["id"],
        "__HOTLINE_HDR_LOCALITY": "nanchang",
        "__HOTLINE_HDR_ORIGIN": "12345",
    }
    await svc.close()


# ------------------------------------------------------------------ the agent's screen


async def test_the_seat_call_shows_the_case_the_place_and_the_caller_s_history(
    svc: TransferService, ami: FakeAmi
) -> None:
    ami.channels[1]["ConnectedLineNum"] = "07977001234"  # a 赣州 landline (area code 0797)
    asked: list[tuple[str, str | None]] = []

    async def history_of(number: str, case: str | None) -> list[dict[str, Any]] | None:
        asked.append((number, case))
        return [{"ref": "JX20261120000007", "status": "dispatched"}]

    svc.history_of = history_of
    # the IVR placed the call by the caller's choice: the call's variables win over the number
    ami.variables = {
        (AGENT["Channel"], cv.CASE_REF): "JX20261127000042",
        (AGENT["Channel"], cv.CITY): "nanchang",
        (AGENT["Channel"], cv.COUNTY): "jinxian",
    }
    call = await svc.seat_call(ZHANGWEI, "1001")
    assert call["case"] == "JX20261127000042"
    assert call["locality"] == {"city": "nanchang", "county": "jinxian", "source": "call"}
    assert call["history"] == [{"ref": "JX20261120000007", "status": "dispatched"}]
    assert asked == [("07977001234", "JX20261127000042")]

    # nothing on the call (it skipped the IVR, no order yet): the number tells the city
    ami.variables = {}
    svc.history_of = None
    call = await svc.seat_call(ZHANGWEI, "1001")
    assert call["case"] is None and "history" not in call
    assert call["locality"] == {"city": "ganzhou", "county": None, "source": "area-code"}


async def test_the_screen_does_not_wait_for_a_slow_or_absent_history() -> None:
    import time
    from datetime import UTC, datetime

    from sqlalchemy.exc import OperationalError

    from transfer.plugin import read_history

    class Orders:
        def __init__(self, delay: float = 0.0, down: bool = False) -> None:
            self.delay, self.down = delay, down

        def caller_history(self, number: str, exclude: str | None) -> list[dict[str, Any]]:
            if self.down:
                raise OperationalError("SELECT", {}, ConnectionRefusedError("refused"))
            time.sleep(self.delay)
            return [{"ref": "JX1", "created_at": datetime(2026, 11, 27, tzinfo=UTC),
                     "exclude": exclude}]

    assert await read_history(Orders(), "13907910001", "JX2") == [
        {"ref": "JX1", "created_at": "2026-11-27T00:00:00+00:00", "exclude": "JX2"}]
    started = time.monotonic()
    assert await read_history(Orders(delay=1.0), "13907910001", None, budget=0.1) is None
    assert time.monotonic() - started < 0.5
    assert await read_history(Orders(down=True), "13907910001", None) is None
    assert await read_history(None, "13907910001", None) is None
