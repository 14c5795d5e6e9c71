"""The expected wait announced on joining a queue (queues/estimate.py)."""

from __future__ import annotations

import pytest

from queues.estimate import DEFAULT_TALK_S, MAX_MINUTES, QueueNow, expected_minutes, queue_now


def member(
    status: str = "1", paused: str = "0", in_call: str = "0", queue: str = "q"
) -> dict[str, str]:
    return {"Event": "QueueMember", "Queue": queue, "Status": status, "Paused": paused,
            "InCall": in_call}


def params(talk: str, completed: str, queue: str = "q") -> dict[str, str]:
    return {"Event": "QueueParams", "Queue": queue, "TalkTime": talk, "Completed": completed}


def test_queue_now_counts_serving_and_free_members_and_reads_the_talk_time() -> None:
    items = [
        params("95", "12"),
        member(),  # free
        member(status="2", in_call="1"),  # on a call
        member(paused="1"),  # paused: not serving
        member(status="5"),  # unavailable: not serving
        member(queue="other"),
        params("10", "3", queue="other"),
    ]
    assert queue_now(items, "q") == QueueNow(serving=2, free=1, talk_s=95.0)


@pytest.mark.parametrize("talk, completed", [("0", "0"), ("40", "0"), ("x", "5"), ("nan", "5")])
def test_without_history_the_talk_time_is_the_default(talk: str, completed: str) -> None:
    assert queue_now([params(talk, completed), member()], "q").talk_s == DEFAULT_TALK_S


@pytest.mark.parametrize(
    "ahead, now, want",
    [
        (0, QueueNow(1, 0, 180.0), 3),  # one busy agent, 3 min calls: about 3 minutes
        (2, QueueNow(1, 0, 180.0), 9),
        (3, QueueNow(2, 0, 60.0), 2),  # 4 turns over 2 agents of 1 min
        (1, QueueNow(2, 1, 30.0), 1),  # rounded up to a whole minute
        (0, QueueNow(2, 1, 180.0), None),  # an agent is free: the call rings now
        (0, QueueNow(0, 0, 180.0), None),  # nobody serving: no figure to give
        (500, QueueNow(1, 0, 180.0), MAX_MINUTES),
    ],
)
def test_expected_minutes(ahead: int, now: QueueNow, want: int | None) -> None:
    assert expected_minutes(ahead, now) == want


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="callers ahead must be >= 0, not -1"):
        expected_minutes(-1, QueueNow(1, 0, 60.0))
