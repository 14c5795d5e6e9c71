"""bench/queue_bench.py: which events make an "agent free -> next offer" sample."""

from __future__ import annotations

import pytest

from bench.queue_bench import QueueWatch

A, B = "PJSIP/1001", "PJSIP/1002"


def watch(*events: tuple[float, str, str, str]) -> dict[str, list[float]]:
    w = QueueWatch()
    w.events.extend(events)
    return w.free_to_ring()


def test_call_end_and_resume_while_a_caller_waits() -> None:
    out = watch(
        (0.0, "QueueCallerJoin", "", "1"),
        (1.0, "AgentComplete", A, ""),
        (1.4, "AgentCalled", A, ""),
        (2.0, "QueueMemberPause", B, "0"),
        (2.9, "AgentCalled", B, ""),
    )
    assert out["call_end"] == [pytest.approx(0.4)]
    assert out["unpause"] == [pytest.approx(0.9)]


def test_nobody_waiting_is_no_sample() -> None:
    out = watch((1.0, "AgentComplete", A, ""), (5.0, "QueueCallerJoin", "", "1"),
                (5.1, "AgentCalled", A, ""))
    assert out == {"call_end": [], "unpause": []}


def test_a_call_ending_while_its_agent_is_paused_frees_nobody_until_the_resume() -> None:
    out = watch(
        (0.0, "QueueCallerJoin", "", "2"),
        (1.0, "QueueMemberPause", B, "1"),  # paused during the call
        (1.3, "AgentComplete", B, ""),  # not free: paused
        (3.0, "QueueMemberPause", B, "0"),  # free now
        (3.7, "AgentCalled", B, ""),
    )
    assert out["call_end"] == []
    assert out["unpause"] == [pytest.approx(0.7)]


def test_paused_again_before_an_offer_is_no_sample() -> None:
    out = watch(
        (0.0, "QueueCallerJoin", "", "1"),
        (1.0, "AgentComplete", A, ""),
        (1.5, "QueueMemberPause", A, "1"),
        (4.0, "QueueMemberPause", A, "0"),
        (4.2, "AgentCalled", A, ""),
    )
    assert out["call_end"] == []
    assert out["unpause"] == [pytest.approx(0.2)]


def test_a_resume_during_a_call_is_no_sample_the_call_end_is() -> None:
    out = watch(
        (0.0, "QueueCallerJoin", "", "2"),
        (0.5, "AgentConnect", B, ""),
        (1.0, "QueueMemberPause", B, "1"),
        (2.0, "QueueMemberPause", B, "0"),  # resumed while still talking: not free
        (4.0, "AgentComplete", B, ""),  # free now
        (4.6, "AgentCalled", B, ""),
    )
    assert out["unpause"] == []
    assert out["call_end"] == [pytest.approx(0.6)]
