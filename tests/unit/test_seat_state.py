"""The seat-state reducer against AMI events shaped as Asterisk 22 sends them."""

from __future__ import annotations

from queues.state import AutoPause, SeatState, apply_event, seat_of


def ev(name: str, **fields: str) -> dict[str, str]:
    return {"Event": name, **fields}


def test_seat_of() -> None:
    assert seat_of("PJSIP/1001") == "1001"
    assert seat_of("PJSIP/8001@yudu-site") is None
    assert seat_of("garbage") is None


def test_login_ring_answer_complete_wrapup() -> None:
    seats: dict[str, SeatState] = {}
    apply_event(seats, ev("QueueMemberAdded", Queue="province", Interface="PJSIP/1001", MemberName="1001",
                          Status="1", Paused="0", InCall="0"), now=100)
    assert seats["1001"].summary(100) == "available" and seats["1001"].queues == {"province"}
    apply_event(seats, ev("AgentCalled", Queue="province", Interface="PJSIP/1001", MemberName="1001"), now=101)
    assert seats["1001"].summary(101) == "ringing"
    apply_event(seats, ev("AgentConnect", Queue="province", Interface="PJSIP/1001", MemberName="1001"), now=102)
    assert seats["1001"].summary(102) == "on-call"
    apply_event(seats, ev("AgentComplete", Queue="province", Interface="PJSIP/1001", MemberName="1001"),
                wrapup_of={"province": 5}, now=110)
    assert seats["1001"].summary(112) == "wrap-up"
    assert seats["1001"].summary(116) == "available"
    apply_event(seats, ev("QueueMemberRemoved", Queue="province", Interface="PJSIP/1001", MemberName="1001"), now=120)
    assert seats["1001"].summary(120) == "logged-out"


def test_pause_with_reason_and_resume() -> None:
    seats: dict[str, SeatState] = {}
    apply_event(seats, ev("QueueMemberPause", Queue="province", Interface="PJSIP/1002", MemberName="1002",
                          Paused="1", PausedReason="lunch"))
    assert (seats["1002"].paused, seats["1002"].pause_reason, seats["1002"].summary()) == (True, "lunch", "paused")
    apply_event(seats, ev("QueueMemberPause", Queue="province", Interface="PJSIP/1002", MemberName="1002", Paused="0"))
    assert not seats["1002"].paused and seats["1002"].pause_reason == ""


def test_missed_offers_in_a_row_pause_the_agent_once() -> None:
    seats: dict[str, SeatState] = {}
    apply_event(seats, ev("QueueMemberAdded", Queue="province", Interface="PJSIP/1001", MemberName="1001", Paused="0"))
    noanswer = ev("AgentRingNoAnswer", Queue="province", Interface="PJSIP/1001", MemberName="1001", RingTime="15")
    assert apply_event(seats, noanswer, max_missed=3)[1] == []
    # An answered call in between resets the count.
    apply_event(seats, ev("AgentConnect", Queue="province", Interface="PJSIP/1001", MemberName="1001"))
    assert seats["1001"].missed_in_a_row == 0
    for _ in range(2):
        assert apply_event(seats, noanswer, max_missed=3)[1] == []
    assert apply_event(seats, noanswer, max_missed=3)[1] == [AutoPause("1001", 3)]
    apply_event(seats, ev("QueueMemberPause", Queue="province", Interface="PJSIP/1001", MemberName="1001",
                          Paused="1", PausedReason="missed-offers"))
    assert apply_event(seats, noanswer, max_missed=3)[1] == []  # already paused


def test_remote_seat_is_named_by_member_name_and_unknown_events_ignored() -> None:
    seats: dict[str, SeatState] = {}
    changed, _ = apply_event(seats, ev("QueueMember", Queue="ganzhou-yudu", Location="PJSIP/8001@yudu-site",
                                       Name="yudu-01", Status="1", Paused="0", InCall="0", CallsTaken="4"))
    assert changed == "yudu-01" and seats["yudu-01"].calls_taken == 4
    assert apply_event(seats, ev("Newchannel", Channel="PJSIP/1001-0001")) == (None, [])


def test_status_events_between_missed_offers_do_not_reset_the_count() -> None:
    """Asterisk sends QueueMemberStatus (Paused: 0) after every ring; the count must survive it."""
    seats: dict[str, SeatState] = {}
    member = {"Queue": "province", "Interface": "PJSIP/1001", "MemberName": "1001"}
    commands = []
    for _ in range(2):
        apply_event(seats, ev("AgentCalled", **member))
        apply_event(seats, ev("QueueMemberStatus", Paused="0", Status="6", **member))
        commands += apply_event(seats, ev("AgentRingNoAnswer", RingTime="3", **member), max_missed=2)[1]
        apply_event(seats, ev("QueueMemberStatus", Paused="0", Status="1", **member))
    assert commands == [AutoPause("1001", 2)]
