"""The call tracker's pure half: AMI events (dicts as the codec yields them) → CallFacts.

The event fixtures are trimmed copies of what Asterisk 22.10.1 sent for real
calls of the sample hotline (tests/integration/test_call_tracker.py places
them); odd orders (a leg hanging up after the caller, overflow between
queues, a transfer leg linked in later) are built from the same shapes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dialplan.model import Config
from dialplan.validate import load_config_text
from queues.stats import parse_line as parse_queue_line
from workorders.facts import Category, Outcome
from workorders.tracker import (
    CallTracker,
    Extras,
    endpoint_of,
    facts_of,
    facts_to_json,
    state_from_records,
)

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
CALLER = "PJSIP/carrier-00000000"


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config_text(SAMPLE.read_text(encoding="utf-8"), str(SAMPLE), [])


def chan(
    event: str,
    channel: str,
    uid: str,
    linked: str,
    context: str,
    exten: str,
    state: str = "6",
    caller: str = "13907910001",
    **more: str,
) -> dict[str, str]:
    return {
        "Event": event,
        "Privilege": "call,all",
        "Channel": channel,
        "ChannelState": state,
        "CallerIDNum": caller,
        "CallerIDName": "citizen",
        "Context": context,
        "Exten": exten,
        "Priority": "1",
        "Uniqueid": uid,
        "Linkedid": linked,
        **more,
    }


# The answered call, in the order Asterisk sent it (seat 1001 in the province queue).
ANSWERED = [
    chan("Newchannel", CALLER, "1795785824.0", "1795785824.0", "from-carrier", "12345", state="4"),
    chan(
        "QueueCallerJoin",
        CALLER,
        "1795785824.0",
        "1795785824.0",
        "hotline-queue",
        "province",
        Queue="province",
        Position="1",
        Count="1",
    ),
    chan(
        "Newchannel",
        "PJSIP/1001-00000001",
        "1795785825.1",
        "1795785824.0",
        "from-seat",
        "s",
        state="0",
        caller="1001",
    ),
    chan(
        "DialEnd",
        CALLER,
        "1795785824.0",
        "1795785824.0",
        "hotline-queue",
        "province",
        DestChannel="PJSIP/1001-00000001",
        DestContext="from-seat",
        DestExten="province",
        DestUniqueid="1795785825.1",
        DestLinkedid="1795785824.0",
        DialStatus="ANSWER",
    ),
    chan(
        "QueueCallerLeave",
        CALLER,
        "1795785824.0",
        "1795785824.0",
        "hotline-queue",
        "province",
        Queue="province",
        Position="1",
        Count="0",
    ),
    chan(
        "AgentConnect",
        CALLER,
        "1795785824.0",
        "1795785824.0",
        "hotline-queue",
        "province",
        DestChannel="PJSIP/1001-00000001",
        DestUniqueid="1795785825.1",
        Queue="province",
        Interface="PJSIP/1001",
        MemberName="1001",
        HoldTime="0",
        RingTime="0",
    ),
    chan(
        "Hangup",
        CALLER,
        "1795785824.0",
        "1795785824.0",
        "hotline-queue",
        "province",
        Cause="16",
        **{"Cause-txt": "Normal Clearing"},
    ),
    chan(
        "Hangup",
        "PJSIP/1001-00000001",
        "1795785825.1",
        "1795785824.0",
        "from-seat",
        "province",
        caller="1001",
        Cause="16",
        **{"Cause-txt": "Normal Clearing"},
    ),
]


def run(
    events: list[dict[str, str]],
    t0: float = 1000.0,
    step: float = 1.0,
    numbers: tuple[str, ...] = ("12345", "12333", "12315"),
) -> list[Any]:
    tracker = CallTracker(numbers)
    done = []
    for i, ev in enumerate(events):
        st = tracker.apply(ev, t0 + i * step)
        if st is not None:
            done.append(st)
    assert not tracker.calls and not tracker.call_of, "a finished call left state behind"
    return done


def test_answered_call_in_the_order_asterisk_sent_it(cfg: Config) -> None:
    (st,) = run(ANSWERED)
    f = facts_of(st, cfg)
    assert f.call_id == f.uniqueid == "1795785824.0"
    assert (f.outcome, f.origin, f.called, f.caller) == (
        Outcome.ANSWERED,
        "12345",
        "12345",
        "13907910001",
    )
    assert (f.queue, f.agent, f.centre) == ("province", "zhangwei", "province")
    # joined at t=1001, AgentConnect at t=1005, last hangup at t=1007
    assert f.wait_seconds == 4.0
    assert f.started_at.timestamp() == 1000 and f.answered_at is not None
    assert f.answered_at.timestamp() == 1005 and f.ended_at.timestamp() == 1007
    assert f.city == "nanchang"  # from the caller ID when the IVR path says nothing
    d = facts_to_json(f)
    assert d["outcome"] == "answered" and d["started_at"] == "1970-01-01T00:16:40+00:00"


def test_the_call_ends_with_its_last_channel_whatever_the_order() -> None:
    # The seat's leg hangs up first, then the caller.
    events = ANSWERED[:-2] + [ANSWERED[-1], ANSWERED[-2]]
    (st,) = run(events)
    assert st.ended_at == 1007 and st.seat == "1001"
    # The caller's Hangup alone does not end a call whose seat leg is still up.
    tracker = CallTracker(["12345"])
    for i, ev in enumerate(ANSWERED[:-1]):
        assert tracker.apply(ev, 1000 + i) is None
    assert "1795785824.0" in tracker.calls
    assert [s.call_id for s in tracker.expire(1000 + 7 + 61, grace=60)] == ["1795785824.0"]


def test_abandoned_after_overflow_waits_from_the_first_queue(cfg: Config) -> None:
    uid = "1795785836.2"
    ev = [
        chan("Newchannel", CALLER, uid, uid, "from-carrier", "12345", state="4"),
        chan(
            "QueueCallerJoin",
            CALLER,
            uid,
            uid,
            "hotline-queue",
            "nanchang",
            Queue="nanchang",
            Count="1",
        ),
        chan(
            "QueueCallerLeave",
            CALLER,
            uid,
            uid,
            "hotline-queue",
            "nanchang",
            Queue="nanchang",
            Count="0",
        ),
        chan(
            "QueueCallerJoin",
            CALLER,
            uid,
            uid,
            "hotline-queue",
            "province",
            Queue="province",
            Count="1",
        ),
        chan(
            "QueueCallerAbandon",
            CALLER,
            uid,
            uid,
            "hotline-queue",
            "province",
            Queue="province",
            Position="1",
            OriginalPosition="1",
            HoldTime="3",
        ),
        chan(
            "QueueCallerLeave",
            CALLER,
            uid,
            uid,
            "hotline-queue",
            "province",
            Queue="province",
            Count="0",
        ),
        chan("Hangup", CALLER, uid, uid, "hotline-queue", "province", Cause="0"),
    ]
    (st,) = run(ev, step=10)
    f = facts_of(st, cfg)
    assert (f.outcome, f.queue, f.agent, f.answered_at) == (
        Outcome.ABANDONED,
        "province",
        None,
        None,
    )
    assert f.wait_seconds == 30.0  # first join t=1010 → abandon t=1040
    assert f.centre == "province"


def test_hung_up_in_the_ivr_with_the_path_and_category(cfg: Config) -> None:
    uid = "1795785841.3"
    ev = [
        chan("Newchannel", CALLER, uid, uid, "from-carrier", "12345", state="4"),
        chan("Hangup", CALLER, uid, uid, "hotline-ivr", "s", Cause="0"),
    ]
    (st,) = run(ev)
    path = {
        "city": "ganzhou",
        "county": "yudu",
        "route": None,
        "reason": "caller-hung-up",
        "steps": [
            {
                "menu": "main",
                "answer": "2",
                "via": "key",
                "decision": "queue:province",
                "category": "complaint",
            }
        ],
    }
    f = facts_of(st, cfg, Extras(ivr=path))
    assert (f.outcome, f.queue, f.wait_seconds) == (Outcome.IVR_HANGUP, None, None)
    assert (f.city, f.county, f.category) == ("ganzhou", "yudu", Category.COMPLAINT)
    assert f.ivr_path == path["steps"]


def test_never_answered_is_failed(cfg: Config) -> None:
    uid = "1795785900.9"
    ev = [
        chan("Newchannel", CALLER, uid, uid, "from-carrier", "12345", state="4"),
        chan("Hangup", CALLER, uid, uid, "from-carrier", "12345", state="4", Cause="34"),
    ]
    (st,) = run(ev)
    assert facts_of(st, cfg).outcome is Outcome.FAILED


def test_legacy_number_and_its_department(cfg: Config) -> None:
    uid = "1795785843.4"
    ev = [
        chan("Newchannel", "PJSIP/carrier-00000004", uid, uid, "from-carrier", "12333", state="4"),
        chan(
            "QueueCallerJoin",
            "PJSIP/carrier-00000004",
            uid,
            uid,
            "hotline-queue",
            "social",
            Queue="social",
        ),
        chan(
            "AgentConnect",
            "PJSIP/carrier-00000004",
            uid,
            uid,
            "hotline-queue",
            "social",
            Queue="social",
            MemberName="1003",
            DestChannel="PJSIP/1003-00000005",
        ),
        chan("Hangup", "PJSIP/carrier-00000004", uid, uid, "hotline-queue", "social", Cause="16"),
    ]
    f = facts_of(run(ev)[0], cfg)
    assert (f.outcome, f.origin, f.department, f.queue, f.agent) == (
        Outcome.ANSWERED,
        "12333",
        "social",
        "social",
        "wangfang",
    )


def test_centre_mode_legacy_number_answered_by_its_centre_is_transferred(cfg: Config) -> None:
    uid = "1795786000.1"
    c = "PJSIP/carrier-0000000a"
    ev = [
        chan("Newchannel", c, uid, uid, "from-carrier", "12315", state="4"),
        chan(
            "Newchannel",
            "PJSIP/market-centre-0000000b",
            "1795786000.2",
            uid,
            "from-partner",
            "s",
            state="0",
            caller="12315",
        ),
        chan(
            "DialEnd",
            c,
            uid,
            uid,
            "from-carrier",
            "12315",
            DestChannel="PJSIP/market-centre-0000000b",
            DestContext="from-partner",
            DialStatus="ANSWER",
        ),
        chan("Hangup", c, uid, uid, "from-carrier", "12315", Cause="16"),
        chan(
            "Hangup",
            "PJSIP/market-centre-0000000b",
            "1795786000.2",
            uid,
            "from-partner",
            "s",
            caller="12315",
            Cause="16",
        ),
    ]
    f = facts_of(run(ev)[0], cfg)
    assert (f.outcome, f.origin, f.department, f.queue) == (
        Outcome.TRANSFERRED,
        "12315",
        "market",
        None,
    )


def test_emergency_from_the_ivr_and_a_leg_linked_in_later(cfg: Config) -> None:
    uid = "1795786100.3"
    disp = "x0123456789ab-d1"
    ev = [
        chan("Newchannel", CALLER, uid, uid, "from-carrier", "12345", state="4"),
        # The originated dispatcher leg starts as its own call: not a caller, not tracked ...
        chan(
            "Newchannel",
            "PJSIP/emergency-0000000c",
            disp,
            disp,
            "hotline-xfer-dispatcher",
            "join",
            state="0",
            caller="119",
        ),
        # ... until bridged with the caller, when Asterisk gives it the caller's Linkedid.
        chan("Hangup", CALLER, uid, uid, "hotline-xfer-caller", "join", Cause="16"),
        chan(
            "Hangup",
            "PJSIP/emergency-0000000c",
            disp,
            uid,
            "hotline-xfer-dispatcher",
            "join",
            caller="119",
            Cause="16",
        ),
    ]
    (st,) = run(ev)
    assert st.ended_at == 1002  # the caller's Hangup: the leg was never seen as part of the call
    transfer = {
        "id": "x0123456789ab",
        "line": "119",
        "origin": "ivr",
        "state": "done",
        "outcome": "connected",
        "seat": None,
        "answered_attempt": 1,
        "times": {"requested": 1001.5, "dispatcher_joined": 1002.0},
        "timings": {"request_to_bridged": 0.5},
    }
    path = {
        "route": "emergency",
        "target": "119",
        "steps": [{"menu": "main", "answer": "7", "via": "key", "decision": "emergency:119"}],
    }
    f = facts_of(st, cfg, Extras(ivr=path, transfers=(transfer,)))
    assert f.outcome is Outcome.EMERGENCY
    assert f.transfers == [
        {
            "id": "x0123456789ab",
            "line": "119",
            "origin": "ivr",
            "state": "done",
            "outcome": "connected",
            "seat": None,
            "answered_attempt": 1,
            "timings": {"request_to_bridged": 0.5},
            "requested_at": 1001.5,
        }
    ]
    # The same transfer that reached nobody, the caller gone before a person: failed.
    lost = dict(
        transfer,
        answered_attempt=0,
        times={"requested": 1001.5},
        outcome="caller-hung-up-before-answer",
    )
    assert facts_of(st, cfg, Extras(ivr=path, transfers=(lost,))).outcome is Outcome.FAILED


def test_a_linked_leg_keeps_the_call_open_until_it_hangs_up() -> None:
    uid, leg = "1795786200.1", "1795786200.2"
    ev = [
        chan("Newchannel", CALLER, uid, uid, "from-carrier", "12345", state="4"),
        chan("DialEnd", "PJSIP/1001-0000000d", leg, uid, "from-seat", "s", DialStatus="ANSWER"),
        chan("Hangup", CALLER, uid, uid, "hotline-queue", "province", Cause="16"),
        chan("Hangup", "PJSIP/1001-0000000d", leg, uid, "from-seat", "s", Cause="16"),
    ]
    (st,) = run(ev)
    assert st.ended_at == 1003


def test_from_an_emergency_centre_origin_is_the_line(cfg: Config) -> None:
    uid = "1795786300.1"
    c = "PJSIP/emergency-00000010"
    ev = [
        chan("Newchannel", c, uid, uid, "from-emergency", "12345", state="4", caller="110"),
        chan(
            "QueueCallerJoin",
            c,
            uid,
            uid,
            "hotline-queue",
            "province",
            caller="110",
            Queue="province",
        ),
        chan(
            "QueueCallerAbandon",
            c,
            uid,
            uid,
            "hotline-queue",
            "province",
            caller="110",
            Queue="province",
        ),
        chan("Hangup", c, uid, uid, "hotline-queue", "province", caller="110", Cause="16"),
    ]
    f = facts_of(run(ev)[0], cfg)
    assert (f.origin, f.outcome, f.caller) == ("110", Outcome.ABANDONED, "110")


def test_callback_booked_in_the_queue(cfg: Config) -> None:
    uid = "1795786400.1"
    ev = [
        chan("Newchannel", CALLER, uid, uid, "from-carrier", "12345", state="4"),
        chan("QueueCallerJoin", CALLER, uid, uid, "hotline-queue", "province", Queue="province"),
        chan("QueueCallerLeave", CALLER, uid, uid, "hotline-queue", "province", Queue="province"),
        chan("Hangup", CALLER, uid, uid, "hotline-callback", "1", Cause="16"),
    ]
    (st,) = run(ev, step=3)
    f = facts_of(st, cfg, Extras(callback={"id": "cb0011223344", "source": "offer"}))
    assert (f.outcome, f.queue, f.wait_seconds) == (Outcome.CALLBACK, "province", 3.0)
    # Without the request (the caller hung up in the offer): abandoned, waited until then.
    g = facts_of(st, cfg)
    assert (g.outcome, g.wait_seconds) == (Outcome.ABANDONED, 3.0)


def test_only_inbound_callers_start_calls() -> None:
    t = CallTracker(["12345"])
    # A transfer's dispatcher leg (Originate on the emergency trunk: the trunk's context).
    t.apply(
        chan(
            "Newchannel",
            "PJSIP/emergency-0000001f",
            "x81b5e0ff78c5-d1",
            "x81b5e0ff78c5-d1",
            "from-emergency",
            "s",
            state="0",
            caller="119",
        ),
        1,
    )
    # An Originate (call-back agent leg), a seat's feature code, a seat testing 12345.
    cb = chan("Newchannel", "PJSIP/1001-00000020", "cb1-a1", "cb1-a1", "hotline-callback-dial", "s")
    t.apply(dict(cb, ChannelState="4"), 1)  # not inbound: its Uniqueid is ours, context too
    t.apply(
        chan(
            "Newchannel",
            "PJSIP/1001-00000021",
            "1795786500.1",
            "1795786500.1",
            "from-seat",
            "*21",
            state="4",
        ),
        1,
    )
    t.apply(
        chan(
            "Newchannel",
            "PJSIP/1001-00000022",
            "1795786500.2",
            "1795786500.2",
            "from-seat",
            "12345",
            state="4",
        ),
        1,
    )
    assert list(t.calls) == ["1795786500.2"]
    # Events of channels nobody tracks change nothing.
    assert t.apply(chan("Hangup", "PJSIP/1001-00000020", "cb1-a1", "cb1-a1", "x", "s"), 2) is None
    assert list(t.calls) == ["1795786500.2"]


def test_endpoint_of() -> None:
    assert endpoint_of("PJSIP/carrier-00000000") == "carrier"
    assert endpoint_of("PJSIP/market-centre-0000000b") == "market-centre"
    assert endpoint_of("Local/1001@x-00000001;1") is None
    assert endpoint_of("") is None


def test_facts_need_an_ended_call(cfg: Config) -> None:
    t = CallTracker(["12345"])
    t.apply(ANSWERED[0], 1)
    with pytest.raises(ValueError, match="has not ended"):
        facts_of(t.calls["1795785824.0"], cfg)


# ------------------------------------------------------------------ from CDR and queue_log

QUEUE_LOG = b"""\
1795785817|NONE|NONE|NONE|QUEUESTART|
1795785822|MANAGER|province|1001|ADDMEMBER|
1795785825|1795785824.0|province|NONE|ENTERQUEUE||13907910001|1
1795785825|1795785824.0|province|1001|CONNECT|0|1795785825.1|0
1795785829|1795785824.0|province|1001|COMPLETECALLER|0|4|1
1795785837|1795785836.2|province|NONE|ENTERQUEUE||13907910001|1
1795785840|1795785836.2|province|NONE|ABANDON|1|1|3
"""


def test_state_from_cdr_and_queue_log(cfg: Config) -> None:
    from workorders.cdr import parse_line

    rows = [
        parse_line(
            b'"","13907910001","province","hotline-queue","""citizen"" <13907910001>",'
            b'"PJSIP/carrier-00000000","PJSIP/1001-00000001","Queue","province,,,,600,,,,",'
            b'"2026-11-27 13:23:44","2026-11-27 13:23:44","2026-11-27 13:23:49",4,4,'
            b'"ANSWERED","DOCUMENTATION","1795785824.0","in:12345"'
        )
    ]
    events = [e for e in map(parse_queue_line, QUEUE_LOG.decode().splitlines()) if e is not None]
    st = state_from_records(rows, events)
    f = facts_of(st, cfg)
    assert (f.call_id, f.called, f.outcome, f.queue, f.agent) == (
        "1795785824.0",
        "12345",
        Outcome.ANSWERED,
        "province",
        "zhangwei",
    )
    assert f.wait_seconds == 0.0 and f.answered_at is not None
    assert f.started_at.isoformat() == "2026-11-27T13:23:44+00:00"
    assert f.ended_at.isoformat() == "2026-11-27T13:23:49+00:00"
    with pytest.raises(ValueError, match="at least one CDR record"):
        state_from_records([], events)


def test_calls_whose_channels_are_gone_after_a_reconnection(cfg: Config) -> None:
    t = CallTracker(["12345"])
    for i, ev in enumerate(ANSWERED[:6]):  # answered; both Hangups missed while AMI was away
        t.apply(ev, 1000 + i)
    assert t.gone({"1795785824.0", "1795785825.1"}) == []  # both still up
    assert t.gone({"1795785825.1"}) == []  # the caller left, the seat's leg is still up
    assert t.calls["1795785824.0"].live == {"1795785825.1"}
    assert t.calls["1795785824.0"].caller_left_at == 1005
    (st,) = t.gone(set())
    assert not t.calls and not t.call_of
    f = facts_of(st, cfg)
    assert f.outcome is Outcome.ANSWERED and f.ended_at.timestamp() == 1005  # last event seen


def test_a_menu_choice_says_the_category(cfg: Config) -> None:
    from dialplan.loader import ConfigError
    from ivr.menu import Answer, MenuEngine

    engine = MenuEngine(cfg, "main")
    engine.answer(Answer(digit="2"))  # 投诉 → queue:province, category complaint
    assert engine.path[-1].category == "complaint"
    engine = MenuEngine(cfg, "main")
    engine.answer(Answer(digit="1"))  # a sub-menu: no category
    assert engine.path[-1].category is None
    text = SAMPLE.read_text(encoding="utf-8").replace("category: complaint", "category: gossip")
    with pytest.raises(ConfigError) as e:
        load_config_text(text, "hotline.yaml", [])
    assert (
        "menus.main.choices[1].category: Input should be 'consultation', 'help', "
        "'complaint', 'opinion' or 'suggestion'"
    ) in str(e.value)
