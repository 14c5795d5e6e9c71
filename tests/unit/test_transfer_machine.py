"""The emergency transfer state machine (transfer.machine): pure, no Asterisk."""

from __future__ import annotations

import itertools
import logging

import pytest

from transfer import machine as m
from transfer.machine import (
    ALLOWED,
    DEPARTURES,
    TERMINAL,
    Dial,
    HangUp,
    JoinCaller,
    Requeue,
    Role,
    RouteSpec,
    Seen,
    State,
    TellAgent,
    Transfer,
    TransitionRefused,
    Watch,
)

NOW = 1_000_000.0
PRIMARY = RouteSpec("emergency", "119")
ALTERNATE = RouteSpec("carrier", "119")


def transfer(
    *, agent: bool = True, alternate: bool = False, state: State = State.REQUESTED
) -> Transfer:
    t = Transfer(
        id="xabc",
        line="119",
        origin="agent" if agent else "ivr",
        caller_uniqueid="1.1",
        caller_channel="PJSIP/carrier-00000001",
        routes=[PRIMARY, ALTERNATE] if alternate else [PRIMARY],
        answer_timeout=8,
        agent_uniqueid="1.2" if agent else None,
        agent_channel="PJSIP/1001-00000002" if agent else None,
        seat="1001" if agent else None,
    )
    t.present = {Role.CALLER, Role.AGENT} if agent else {Role.CALLER}
    t.state = state
    return t


# ------------------------------------------------------------------ the table


@pytest.mark.parametrize(("frm", "to"), list(itertools.product(State, State)))
def test_every_transition_is_allowed_or_refused_as_the_table_says(frm: State, to: State) -> None:
    t = transfer(state=frm)
    if to in ALLOWED[frm]:
        m.transition(t, to, "test", NOW)
        assert t.state is to
        assert t.history[-1] == {"at": NOW, "from": frm.value, "to": to.value, "reason": "test"}
    else:
        with pytest.raises(TransitionRefused) as e:
            m.transition(t, to, "test", NOW)
        assert str(e.value) == f"transfer xabc: {frm.value} -> {to.value} is not allowed"
        assert t.state is frm and t.history == []


def test_table_covers_every_state_and_terminal_states_go_nowhere() -> None:
    assert set(ALLOWED) == set(State)
    assert all(ALLOWED[s] == frozenset() for s in TERMINAL)
    assert all(ALLOWED[s] for s in State if s not in TERMINAL)
    # every non-terminal state can end (the caller may hang up at any time)
    assert all(State.DONE in ALLOWED[s] for s in State if s not in TERMINAL)


def test_each_transition_is_logged_with_the_ids(caplog: pytest.LogCaptureFixture) -> None:
    t = transfer()
    with caplog.at_level(logging.INFO, logger="transfer.machine"):
        m.transition(t, State.CALLER_HELD, "moved", NOW)
    assert "[1.1] transfer xabc line 119: requested -> caller_held (moved)" in caplog.text


def test_terminal_transition_stamps_the_end_and_an_outcome() -> None:
    t = transfer()
    m.transition(t, State.ABORTED, "call moved", NOW)
    assert t.terminal and t.times["ended"] == NOW and t.outcome == "call moved"


# ------------------------------------------------------------------ dialling


def test_start_holds_the_caller_and_dials_the_first_route() -> None:
    t = transfer()
    assert m.start(t, NOW) == [Dial(1)]
    assert [h["to"] for h in t.history] == ["caller_held", "dialling"]
    assert t.state is State.DIALLING and t.attempt == 1 and t.dispatcher_uniqueid == "xabc-d1"
    assert t.times["held"] == NOW


def test_a_failed_route_tries_the_alternate_then_returns_to_the_agent() -> None:
    t = transfer(alternate=True)
    m.start(t, NOW)
    assert m.dial_failed(t, 1, "busy", NOW + 1) == [Dial(2)]
    assert t.state is State.ALTERNATE_DIALLING and t.dispatcher_uniqueid == "xabc-d2"
    assert m.dial_failed(t, 2, "no answer", NOW + 9) == [TellAgent()]
    assert t.state is State.FAILED_BACK_TO_AGENT
    assert [f["reason"] for f in t.failures] == ["busy", "no answer"]
    assert [f["route"] for f in t.failures] == ["PJSIP/119@emergency", "PJSIP/119@carrier"]
    assert t.outcome == "failed-back-to-agent: route 2 no answer"


def test_without_an_agent_a_failed_line_requeues_the_caller() -> None:
    t = transfer(agent=False)
    m.start(t, NOW)
    assert m.dial_failed(t, 1, "busy", NOW) == [Requeue()]
    assert t.state is State.CALLER_REQUEUED and t.terminal


def test_agent_gone_before_answer_then_line_fails_requeues_the_caller() -> None:
    t = transfer()
    m.start(t, NOW)
    assert m.left(t, Role.AGENT, "16", NOW) == []
    assert t.state is State.DIALLING and t.present == {Role.CALLER}
    assert m.dial_failed(t, 1, "no answer", NOW) == [Requeue()]
    assert t.state is State.CALLER_REQUEUED


def test_late_events_about_an_earlier_attempt_are_ignored() -> None:
    t = transfer(alternate=True)
    m.start(t, NOW)
    m.dial_failed(t, 1, "busy", NOW)
    assert m.dial_failed(t, 1, "busy again", NOW) == []
    assert m.dispatcher_joined(t, 1, NOW) == []
    assert t.state is State.ALTERNATE_DIALLING and t.attempt == 2


def test_dispatcher_joining_makes_three_way_or_caller_and_dispatcher() -> None:
    t = transfer()
    m.start(t, NOW)
    assert m.dispatcher_joined(t, 1, NOW + 2) == []
    assert t.state is State.THREE_WAY and t.present == set(Role) and t.answered_attempt == 1
    assert t.outcome == "connected"
    ivr = transfer(agent=False)
    m.start(ivr, NOW)
    m.dispatcher_joined(ivr, 1, NOW)
    assert ivr.state is State.CALLER_AND_DISPATCHER


# ------------------------------------------------------------------ departures

DEPARTURE_CASES = [
    # state, role, agent present, expected state, expected commands
    (State.REQUESTED, Role.CALLER, True, State.DONE, [HangUp(Role.AGENT)]),
    (State.CALLER_HELD, Role.CALLER, True, State.DONE, [HangUp(Role.AGENT)]),
    (State.DIALLING, Role.CALLER, True, State.DONE, [HangUp(Role.AGENT), HangUp(Role.DISPATCHER)]),
    (State.ALTERNATE_DIALLING, Role.CALLER, False, State.DONE, [HangUp(Role.DISPATCHER)]),
    (State.THREE_WAY, Role.CALLER, True, State.DONE, [HangUp(Role.AGENT), HangUp(Role.DISPATCHER)]),
    (State.CALLER_AND_DISPATCHER, Role.CALLER, False, State.DONE, [HangUp(Role.DISPATCHER)]),
    (State.FAILED_BACK_TO_AGENT, Role.CALLER, True, State.DONE, [HangUp(Role.AGENT)]),
    (State.CALLER_AND_AGENT, Role.CALLER, True, State.DONE, [HangUp(Role.AGENT)]),
    (State.REQUESTED, Role.AGENT, True, State.REQUESTED, []),
    (State.CALLER_HELD, Role.AGENT, True, State.CALLER_HELD, []),
    (State.DIALLING, Role.AGENT, True, State.DIALLING, []),
    (State.ALTERNATE_DIALLING, Role.AGENT, True, State.ALTERNATE_DIALLING, []),
    (State.THREE_WAY, Role.AGENT, True, State.CALLER_AND_DISPATCHER, []),
    (State.FAILED_BACK_TO_AGENT, Role.AGENT, True, State.CALLER_REQUEUED, [Requeue()]),
    (State.CALLER_AND_AGENT, Role.AGENT, True, State.CALLER_REQUEUED, [Requeue()]),
    (State.THREE_WAY, Role.DISPATCHER, True, State.CALLER_AND_AGENT, []),
    (State.CALLER_AND_DISPATCHER, Role.DISPATCHER, False, State.DONE, [HangUp(Role.CALLER)]),
    # consultation: the caller on hold, agent and department talking
    (State.CONSULTING, Role.CALLER, True, State.DONE, [HangUp(Role.AGENT), HangUp(Role.DISPATCHER)]),
    (State.CONSULTING, Role.AGENT, True, State.CALLER_AND_DISPATCHER, [JoinCaller()]),
    (State.CONSULTING, Role.DISPATCHER, True, State.CALLER_AND_AGENT, [JoinCaller()]),
]


@pytest.mark.parametrize(("state", "role", "agent", "expected", "cmds"), DEPARTURE_CASES)
def test_departures(
    state: State, role: Role, agent: bool, expected: State, cmds: list[m.Command]
) -> None:
    t = transfer(agent=agent, state=state)
    t.attempt = 1
    if state in (State.THREE_WAY, State.CALLER_AND_DISPATCHER, State.CONSULTING):
        t.present.add(Role.DISPATCHER)
    if state is State.CONSULTING:
        t.kind = "consult"
    assert m.left(t, role, "16", NOW) == cmds
    assert t.state is expected
    assert role not in t.present


def test_departure_table_has_a_rule_for_every_case_listed() -> None:
    listed = {(s, r) for s, r, *_ in DEPARTURE_CASES}
    assert set(DEPARTURES) - listed == {
        (State.DIALLING, Role.DISPATCHER),
        (State.ALTERNATE_DIALLING, Role.DISPATCHER),
    }


def test_dispatcher_leg_lost_requeues_a_lone_caller() -> None:
    t = transfer(agent=False, state=State.CALLER_AND_DISPATCHER)
    t.present.add(Role.DISPATCHER)
    assert m.left(t, Role.DISPATCHER, "38", NOW) == [Requeue()]
    assert t.state is State.CALLER_REQUEUED
    assert t.outcome == "caller-requeued: dispatcher leg lost (cause 38)"


def test_dispatcher_hanging_up_while_ringing_is_a_failed_route() -> None:
    t = transfer()
    m.start(t, NOW)
    assert m.left(t, Role.DISPATCHER, "17", NOW) == [TellAgent()]
    assert t.failures[0]["reason"] == "busy (cause 17)"
    assert t.state is State.FAILED_BACK_TO_AGENT


def test_caller_hanging_up_before_answer_is_the_outcome() -> None:
    t = transfer()
    m.start(t, NOW)
    m.left(t, Role.CALLER, "16", NOW + 3)
    assert t.outcome == "caller-hung-up-before-answer" and t.times["ended"] == NOW + 3


def test_events_after_the_end_change_nothing() -> None:
    t = transfer(state=State.DONE)
    assert m.left(t, Role.AGENT, "16", NOW) == []
    assert t.state is State.DONE


# ------------------------------------------------------------------ restart


def seen(alive: set[Role], inside: set[Role] | None = None, in_bridge: bool = False) -> Seen:
    return Seen(frozenset(alive), frozenset(alive if inside is None else inside), in_bridge)


def test_reconcile_requested_with_the_caller_moved_goes_on_dialling() -> None:
    t = transfer()
    assert m.reconcile(t, seen({Role.CALLER, Role.AGENT}), NOW) == [Dial(1)]
    assert t.state is State.DIALLING and t.present == {Role.CALLER, Role.AGENT}


def test_reconcile_requested_with_the_caller_not_moved_aborts() -> None:
    t = transfer()
    assert m.reconcile(t, seen({Role.CALLER, Role.AGENT}, inside=set()), NOW) == []
    assert t.state is State.ABORTED


def test_reconcile_requested_with_the_caller_gone_hangs_up_the_moved_agent() -> None:
    t = transfer()
    assert m.reconcile(t, seen({Role.AGENT}), NOW) == [HangUp(Role.AGENT)]
    assert t.state is State.DONE


def test_reconcile_dialling_answered_meanwhile_is_three_way() -> None:
    t = transfer()
    m.start(t, NOW)
    assert m.reconcile(t, seen(set(Role), in_bridge=True), NOW) == []
    assert t.state is State.THREE_WAY


def test_reconcile_dialling_still_ringing_rearms_the_watchdog() -> None:
    t = transfer()
    m.start(t, NOW)
    assert m.reconcile(t, seen(set(Role)), NOW) == [Watch(1)]
    assert t.state is State.DIALLING


def test_reconcile_dialling_leg_gone_tries_the_next_route() -> None:
    t = transfer(alternate=True)
    m.start(t, NOW)
    assert m.reconcile(t, seen({Role.CALLER, Role.AGENT}), NOW) == [Dial(2)]
    assert t.state is State.ALTERNATE_DIALLING


def test_reconcile_agent_gone_from_three_way_and_dispatcher_kept() -> None:
    t = transfer()
    m.start(t, NOW)
    m.dispatcher_joined(t, 1, NOW)
    assert m.reconcile(t, seen({Role.CALLER, Role.DISPATCHER}, in_bridge=True), NOW) == []
    assert t.state is State.CALLER_AND_DISPATCHER


def test_reconcile_caller_gone_hangs_up_the_rest() -> None:
    t = transfer()
    m.start(t, NOW)
    m.dispatcher_joined(t, 1, NOW)
    assert m.reconcile(t, seen({Role.AGENT, Role.DISPATCHER}, in_bridge=True), NOW) == [
        HangUp(Role.AGENT),
        HangUp(Role.DISPATCHER),
    ]
    assert t.state is State.DONE


def test_reconcile_dispatcher_gone_from_a_lone_caller_requeues() -> None:
    t = transfer(agent=False)
    m.start(t, NOW)
    m.dispatcher_joined(t, 1, NOW)
    assert m.reconcile(t, seen({Role.CALLER}), NOW) == [Requeue()]
    assert t.state is State.CALLER_REQUEUED


# ------------------------------------------------------------------ record


def test_record_round_trips_and_reports_timings() -> None:
    t = transfer(alternate=True)
    t.mark("requested", NOW)
    m.start(t, NOW + 0.01)
    t.mark("ringing", NOW + 0.05)
    t.mark("answered", NOW + 2.0)
    t.mark("bridged", NOW + 2.02)
    back = Transfer.from_dict(t.as_dict())
    assert back == t
    assert t.as_dict()["timings"] == {
        "request_to_ringing": 0.05,
        "ringing_to_answer": 1.95,
        "answer_to_bridged": 0.02,
        "request_to_bridged": 2.02,
    }
    assert t.as_dict()["present"] == ["agent", "caller"]


def test_transfer_ids_are_valid_channel_ids() -> None:
    import re

    ids = {m.new_transfer_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"x[0-9a-f]{12}", i) for i in ids)


# ------------------------------------------------------------------ hand-offs


def test_blind_hand_off_hangs_up_the_agent_when_the_other_side_answers() -> None:
    t = transfer()
    t.kind = "blind"
    m.start(t, NOW)
    assert m.dispatcher_joined(t, 1, NOW) == [HangUp(Role.AGENT)]
    assert t.state is State.THREE_WAY
    assert m.left(t, Role.AGENT, "16", NOW) == []
    assert t.state is State.CALLER_AND_DISPATCHER


def test_consultation_connect_and_return() -> None:
    for action, state, cmds in (
        (m.connect, State.CALLER_AND_DISPATCHER, [JoinCaller(), HangUp(Role.AGENT)]),
        (m.give_back, State.CALLER_AND_AGENT, [HangUp(Role.DISPATCHER), JoinCaller()]),
    ):
        t = transfer()
        t.kind = "consult"
        m.start(t, NOW)
        assert m.dispatcher_joined(t, 1, NOW) == []
        assert t.state is State.CONSULTING
        assert action(t, NOW) == cmds
        assert t.state is state


def test_consultation_refused_takes_the_caller_off_hold_back_to_the_agent() -> None:
    t = transfer()
    t.kind = "consult"
    m.start(t, NOW)
    assert m.left(t, Role.DISPATCHER, "17", NOW) == [TellAgent(), JoinCaller()]
    assert t.state is State.FAILED_BACK_TO_AGENT


def test_agent_leaving_a_consultation_while_it_rings_keeps_the_caller() -> None:
    t = transfer()
    t.kind = "consult"
    m.start(t, NOW)
    assert m.left(t, Role.AGENT, "16", NOW) == [JoinCaller()]
    assert t.state is State.DIALLING
    assert m.dispatcher_joined(t, 1, NOW) == []
    assert t.state is State.CALLER_AND_DISPATCHER


def test_a_record_without_the_new_fields_still_loads() -> None:
    d = transfer().as_dict()
    for k in ("kind", "headers"):
        del d[k]
    for r in d["routes"]:
        del r["via"]
    t = Transfer.from_dict(d)
    assert t.kind == "warm" and t.headers == {} and t.routes[0].via == ""


def test_restart_during_a_consultation_with_the_department_gone_returns_the_caller() -> None:
    t = transfer(state=State.CONSULTING)
    t.kind, t.attempt = "consult", 1
    t.present.add(Role.DISPATCHER)
    seen = Seen(frozenset({Role.CALLER, Role.AGENT}), frozenset({Role.CALLER, Role.AGENT}), False)
    assert m.reconcile(t, seen, NOW) == [JoinCaller()]
    assert t.state is State.CALLER_AND_AGENT
