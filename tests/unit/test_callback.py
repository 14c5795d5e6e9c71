"""queues.callback: numbers, the state machine, queue_log outcomes, the planner, missed calls."""

from __future__ import annotations

import pytest

from queues.callback import (
    ALLOWED,
    CallbackRequest,
    Launch,
    Member,
    Overflow,
    Policy,
    Release,
    Requeue,
    Reserve,
    Snapshot,
    State,
    TransitionRefused,
    Unpause,
    abandoned_calls,
    apply_log_event,
    attempt_id_for,
    normalize_number,
    plan,
    settle_vanished,
    transition,
)
from queues.stats import parse_line

NOW = 1_800_000_000.0
POLICY = Policy(max_attempts=2, retry_delay=60.0)


# ------------------------------------------------------------------ numbers


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("13907910001", "13907910001"),
        ("+86 139 0791 0001", "13907910001"),
        ("008613907910001", "13907910001"),
        ("8613907910001", "13907910001"),
        ("079186001234", "079186001234"),  # Nanchang, 8-digit subscriber
        ("07918600123", "07918600123"),  # 7-digit subscriber
        ("01062345678", "01062345678"),  # Beijing 010
        ("021-6234-5678", "02162345678"),  # Shanghai 021
        ("0211234-5678", None),  # subscriber numbers start 2-9
        ("12345", None),
        ("110", None),
        ("12315", None),  # service numbers
        ("86001234", None),  # a fixed line without its area code
        ("10907910001", None),
        ("23907910001", None),  # no such mobile segment
        ("079106001234", None),  # a subscriber number cannot start with 0
        ("0044207946000", None),
        ("", None),
        ("13907910001#", None),
        ("１３９０７９１０００１", None),
    ],
)
def test_normalize_number(raw: str, want: str | None) -> None:
    assert normalize_number(raw) == want


# ------------------------------------------------------------------ state machine


def req(**kw: object) -> CallbackRequest:
    base: dict[str, object] = dict(
        id="cb1",
        queue="province",
        number="13907910001",
        first_queued=NOW - 300,
        uniqueid="1800.1",
        created_at=NOW - 200,
    )
    base.update(kw)
    return CallbackRequest(**base)  # type: ignore[arg-type]


def test_every_state_has_its_allowed_moves_and_terminal_ones_none() -> None:
    assert set(ALLOWED) == set(State)
    for s in (State.DONE, State.FAILED, State.CANCELLED):
        assert ALLOWED[s] == frozenset()


def test_transition_logs_history_and_refuses_the_rest() -> None:
    r = req(state=State.RESERVED, seat="1001", interface="PJSIP/1001")
    transition(r, State.PENDING, NOW, "seat gone")
    assert r.state == State.PENDING and r.seat == "" and r.interface == ""
    assert r.history[-1] == {"at": NOW, "from": "reserved", "to": "pending", "reason": "seat gone"}
    with pytest.raises(TransitionRefused, match="pending -> connected is not allowed"):
        transition(r, State.CONNECTED, NOW, "no")


def test_round_trip_through_a_dict() -> None:
    r = req(
        state=State.RETRY_WAIT,
        attempts=1,
        history=[{"at": 1.0, "from": "a", "to": "b", "reason": "c"}],
    )
    assert CallbackRequest.from_dict(r.as_dict()) == r


def test_attempt_ids_are_never_reused() -> None:
    r = req()
    ids = set()
    for _ in range(3):
        aid = attempt_id_for(r)
        r.launches += 1
        ids.add(aid)
    assert ids == {"cb1-1", "cb1-2", "cb1-3"}


def line(event: str, *data: str, t: int = int(NOW)) -> object:
    ev = parse_line("|".join([str(t), "1800.1", "province", "1001", event, *data]))
    assert ev is not None
    return ev


def in_flight(state: State = State.CALLING_AGENT, attempts: int = 0) -> CallbackRequest:
    return req(
        state=state,
        seat="1001",
        interface="PJSIP/1001",
        attempt_id="cb1-1",
        launches=1,
        attempts=attempts,
        launched_at=NOW - 5,
    )


def test_a_call_back_that_reaches_the_citizen() -> None:
    r = in_flight()
    assert apply_log_event(r, line("CALLBACKDIAL", "cb1-1"), POLICY)  # type: ignore[arg-type]
    assert r.state == State.CALLING_CITIZEN and r.attempts == 1
    assert apply_log_event(r, line("CALLBACK", "cb1-1"), POLICY)  # type: ignore[arg-type]
    assert r.state == State.CONNECTED and r.seat == "1001"
    assert apply_log_event(r, line("CALLBACKEND", "cb1-1", "42"), POLICY)  # type: ignore[arg-type]
    assert r.state == State.DONE and r.history[-1]["reason"] == "call-back over after 42 s"


def test_lines_of_another_attempt_change_nothing() -> None:
    r = in_flight()
    assert not apply_log_event(r, line("CALLBACKDIAL", "cb1-0"), POLICY)  # type: ignore[arg-type]
    assert not apply_log_event(r, line("ENTERQUEUE", "", "139"), POLICY)  # type: ignore[arg-type]
    assert r.state == State.CALLING_AGENT


def test_unanswered_is_retried_then_failed() -> None:
    r = in_flight(State.CALLING_CITIZEN, attempts=1)
    apply_log_event(r, line("CALLBACKFAIL", "cb1-1", "BUSY", t=int(NOW)), POLICY)  # type: ignore[arg-type]
    assert r.state == State.RETRY_WAIT and r.not_before == NOW + 60 and r.result == "BUSY"
    transition(r, State.PENDING, NOW + 60, "retry delay over")
    r.state, r.attempt_id, r.attempts = State.CALLING_CITIZEN, "cb1-2", 2
    apply_log_event(r, line("CALLBACKFAIL", "cb1-2", "NOANSWER"), POLICY)  # type: ignore[arg-type]
    assert r.state == State.FAILED and r.result == "NOANSWER"


def test_a_bad_number_fails_at_once() -> None:
    r = in_flight()
    apply_log_event(r, line("CALLBACKFAIL", "cb1-1", "BADNUMBER"), POLICY)  # type: ignore[arg-type]
    assert r.state == State.FAILED and r.attempts == 0


def test_end_without_the_answer_line_still_ends() -> None:
    r = in_flight(State.CALLING_CITIZEN, attempts=1)
    apply_log_event(r, line("CALLBACKEND", "cb1-1", "10"), POLICY)  # type: ignore[arg-type]
    assert [h["to"] for h in r.history] == ["connected", "done"]


def test_vanished_agent_leg_never_redials_a_citizen_on_a_guess() -> None:
    r = in_flight(State.CALLING_AGENT)
    settle_vanished(r, NOW, POLICY)
    assert r.state == State.PENDING and r.avoid_seat == "1001" and r.avoid_until == NOW + 60
    assert r.attempts == 0  # nobody called the citizen
    r = in_flight(State.CALLING_CITIZEN, attempts=1)
    settle_vanished(r, NOW, POLICY)
    assert r.state == State.RETRY_WAIT and r.result == "UNKNOWN"  # an unknown outcome is a try
    r = in_flight(State.CONNECTED, attempts=1)
    settle_vanished(r, NOW, POLICY)
    assert r.state == State.DONE


# ------------------------------------------------------------------ planner


def m(seat: str, queue: str = "province", **kw: object) -> Member:
    return Member(queue=queue, seat=seat, interface=f"PJSIP/{seat}", **kw)  # type: ignore[arg-type]


def snap(
    *members: Member, waiting: tuple[float, ...] = (), rest: dict[str, float] | None = None
) -> Snapshot:
    return Snapshot(
        now=NOW,
        members=members,
        waiting={"province": waiting},
        wrapup={"province": 5},
        rest_until=rest or {},
    )


def test_the_oldest_call_back_gets_a_free_agent() -> None:
    assert plan(snap(m("1001")), [req()]) == [Reserve("cb1", "1001", "PJSIP/1001")]


def test_a_live_caller_who_came_first_is_served_first() -> None:
    assert plan(snap(m("1001"), waiting=(NOW - 400,)), [req()]) == []
    # ... but a call-back older than every live caller is not kept waiting
    assert plan(snap(m("1001"), waiting=(NOW - 100,)), [req()]) == [
        Reserve("cb1", "1001", "PJSIP/1001")
    ]


def test_one_agent_per_call_back() -> None:
    older, newer = req(id="a", first_queued=NOW - 500), req(id="b", first_queued=NOW - 100)
    assert plan(snap(m("1001")), [newer, older]) == [Reserve("a", "1001", "PJSIP/1001")]
    # the agent idle longest first
    two = plan(snap(m("1001", last_call=NOW - 100), m("1002", last_call=NOW - 900)), [newer, older])
    assert two == [Reserve("a", "1002", "PJSIP/1002"), Reserve("b", "1001", "PJSIP/1001")]


def test_which_agent_free_then_wrap_up_then_on_a_call() -> None:
    on_call = m("1001", in_call=True, status="2")
    resting = m("1002", last_call=NOW - 2)  # wrap-up 5 s
    free = m("1003")
    assert plan(snap(on_call, resting, free), [req()])[0] == Reserve("cb1", "1003", "PJSIP/1003")
    assert plan(snap(on_call, resting), [req()])[0] == Reserve("cb1", "1002", "PJSIP/1002")
    # An agent on a call is reserved ahead only when live callers would take them first.
    assert plan(snap(on_call), [req()]) == []
    assert plan(snap(on_call, waiting=(NOW - 10,)), [req()]) == [
        Reserve("cb1", "1001", "PJSIP/1001")
    ]


def test_paused_unreachable_elsewhere_and_avoided_agents_are_not_taken() -> None:
    paused = m("1001", paused=True, reason="lunch")
    gone = m("1002", status="5")
    other_queue = m("1003", queue="social")
    assert plan(snap(paused, gone, other_queue), [req()]) == []
    avoid = req(avoid_seat="1004", avoid_until=NOW + 10)
    assert plan(snap(m("1004")), [avoid]) == []
    assert plan(snap(m("1004")), [req(avoid_seat="1004", avoid_until=NOW - 1)]) != []


def test_reserved_is_launched_once_the_agent_is_free() -> None:
    r = req(state=State.RESERVED, seat="1001", interface="PJSIP/1001")
    ours = m("1001", paused=True, reason="callback")
    assert plan(snap(ours), [r]) == [Launch("cb1")]
    on_call = m("1001", paused=True, reason="callback", in_call=True, status="2")
    assert plan(snap(on_call), [r]) == []
    wrap_up = m("1001", paused=True, reason="callback", last_call=NOW - 1)
    assert plan(snap(wrap_up), [r]) == []
    assert plan(snap(ours, rest={"1001": NOW + 3}), [r]) == []  # rest after a call-back


def test_reservations_given_up_when_the_agent_goes() -> None:
    r = req(state=State.RESERVED, seat="1001", interface="PJSIP/1001")
    # resumed by the agent or a supervisor: the request waits for the next agent
    assert plan(snap(m("1001")), [r]) == [
        Release("cb1", "seat 1001 is no longer paused for call-backs")
    ]
    assert plan(snap(), [r]) == [Release("cb1", "seat 1001 left queue province")]
    gone = plan(snap(m("1001", paused=True, reason="callback", status="5")), [r])
    assert Release("cb1", "seat 1001 is unreachable") in gone


def test_agents_paused_for_nobody_are_given_back_after_their_rest() -> None:
    ours = m("1001", paused=True, reason="callback")
    assert plan(snap(ours), []) == [Unpause("1001", "PJSIP/1001")]
    assert plan(snap(ours, rest={"1001": NOW + 2}), []) == []
    held = req(state=State.CONNECTED, seat="1001", interface="PJSIP/1001")
    assert plan(snap(ours), [held]) == []
    # an agent paused for call-backs is the first choice for the next one
    assert plan(snap(ours, m("1002")), [req()]) == [Reserve("cb1", "1001", "PJSIP/1001")]


def test_retry_wait_comes_back_when_due() -> None:
    later = req(state=State.RETRY_WAIT, not_before=NOW + 1)
    due = req(id="cb2", state=State.RETRY_WAIT, not_before=NOW)
    assert plan(snap(), [later, due]) == [Requeue("cb2")]


# ------------------------------------------------------------------ missed calls


def test_abandoned_calls_not_answered_nor_called_back() -> None:
    log = [
        "1000|c1|nanchang|NONE|ENTERQUEUE||079186001234|1",
        "1010|c1|nanchang|NONE|OVERFLOW|province|TIMEOUT",
        "1010|c1|province|NONE|ENTERQUEUE||079186001234|1",
        "1030|c1|province|NONE|ABANDON|1|1|20",
        "1100|c2|province|NONE|ENTERQUEUE||13907910001|1",
        "1105|c2|province|1001|CONNECT|5|x|0",
        "1200|c3|province|NONE|ENTERQUEUE||anonymous|1",
        "1210|c3|province|NONE|ABANDON|1|1|10",
        "1300|c4|province|NONE|ENTERQUEUE||13907910004|1",
        "1310|c4|province|NONE|ABANDON|1|1|10",
        "1400|c5|province|NONE|ENTERQUEUE||13907910005|1",
        "1405|c5|province|NONE|ABANDON|1|1|5",
        "1500|c5|province|1001|CALLBACK|cbx-1",
    ]
    events = [e for e in map(parse_line, log) if e is not None]
    got = abandoned_calls(events, since=0, until=None, handled={"c4"})
    assert [g["uniqueid"] for g in got] == ["c1", "c3"]
    assert got[0] == {
        "uniqueid": "c1",
        "queue": "province",
        "abandoned_at": 1030,
        "first_queued": 1000,
        "waited_s": 20,
        "caller": "079186001234",
        "number": "079186001234",
    }
    assert got[1]["number"] == ""  # cannot be called back without a number
    assert [
        g["uniqueid"] for g in abandoned_calls(events, since=1100, until=None, handled=set())
    ] == ["c3", "c4"]
    assert abandoned_calls(events, since=0, until=1030, handled=set()) == []


# ------------------------------------------------------------------ overflow of call-backs


def chain_snap(*members: Member, now: float = NOW) -> Snapshot:
    """yudu -> ganzhou -> province, as in the sample (30 s, 60 s)."""
    return Snapshot(
        now=now,
        members=members,
        waiting={},
        wrapup={},
        overflow={"ganzhou-yudu": (30, "ganzhou"), "ganzhou": (60, "province")},
    )


def test_a_call_back_in_a_queue_nobody_serves_follows_the_overflow_chain() -> None:
    r = req(queue="ganzhou-yudu", first_queued=NOW - 5)
    # nobody in the county nor the city: straight to the province, like a live caller
    assert plan(chain_snap(m("1001")), [r]) == [
        Overflow("cb1", "province", "nobody in ganzhou-yudu; nobody in ganzhou")
    ]
    # somebody in the city: it stops there
    assert plan(chain_snap(m("3001", queue="ganzhou")), [r]) == [
        Overflow("cb1", "ganzhou", "nobody in ganzhou-yudu")
    ]
    # an unreachable county seat serves nobody
    gone = m("yudu-01", queue="ganzhou-yudu", status="5")
    assert plan(chain_snap(gone, m("3001", queue="ganzhou")), [r])[0].to == "ganzhou"  # type: ignore[union-attr]


def test_a_call_back_overflows_after_the_queues_wait_and_keeps_its_arrival() -> None:
    busy = m("yudu-01", queue="ganzhou-yudu", in_call=True, status="2")
    r = req(queue="ganzhou-yudu", first_queued=NOW - 10)
    assert plan(chain_snap(busy), [r]) == []  # 10 s < 30 s: waits for the county seat
    r = req(queue="ganzhou-yudu", first_queued=NOW - 31)
    city = m("3001", queue="ganzhou", in_call=True, status="2")
    assert plan(chain_snap(busy, city), [r]) == [Overflow("cb1", "ganzhou", "31 s in ganzhou-yudu")]
    # in the city queue, the wait counts from the move, not from the first arrival
    moved = req(queue="ganzhou", first_queued=NOW - 31, queue_since=NOW - 1)
    assert plan(chain_snap(busy, city), [moved]) == []
    assert plan(chain_snap(busy, city, now=NOW + 60), [moved]) == [
        Overflow("cb1", "province", "61 s in ganzhou")
    ]


def test_the_top_of_the_chain_keeps_its_call_backs() -> None:
    assert plan(chain_snap(), [req(queue="province")]) == []
