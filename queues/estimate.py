"""The expected wait a caller hears on joining a queue (预计等待约N分钟).

Asterisk's own hold-time announcement (``announce-holdtime``) says a figure only
from its running average of past waits, which starts at zero after every
restart, grows slowly (each answered call moves it a quarter of the way) and is
rounded to whole minutes with 30 s added: for the first callers of the day it
says nothing, and a caller in a queue whose agents are all busy hears no
estimate at all. A caller expects one when joining. So the queue step
(``queue-entry``) estimates it from what Asterisk knows now (QueueStatus):

    wait = (callers ahead + 1 - free agents) x talk time / agents serving

* agents serving: logged in, not paused, reachable; none: no estimate (the
  overflow rules move the caller on);
* free agents: serving and not on a call; if one is free for this caller, no
  estimate (the call rings now);
* talk time: the queue's average talk time (QueueParams ``TalkTime``) once it
  has answered calls, else :data:`DEFAULT_TALK_S`.

The figure is rounded up to whole minutes (at most :data:`MAX_MINUTES`); the
dialplan plays ``queue-holdtime``, the number, ``queue-minutes``. Asterisk's
periodic announcements then keep the caller told of the position.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEFAULT_TALK_S = 180.0  # a 12345 call before the queue has history: about 3 minutes
MAX_MINUTES = 60
UNREACHABLE = frozenset({"4", "5"})  # AST_DEVICE_INVALID, AST_DEVICE_UNAVAILABLE
FREE = frozenset({"1"})  # AST_DEVICE_NOT_INUSE


@dataclass(frozen=True)
class QueueNow:
    """What QueueStatus says about one queue, for the estimate."""

    serving: int  # members logged in, not paused, reachable
    free: int  # of those, not on a call
    talk_s: float  # average talk time, DEFAULT_TALK_S without history


def queue_now(items: Iterable[Mapping[str, str]], queue: str) -> QueueNow:
    serving = free = 0
    talk = DEFAULT_TALK_S
    for it in items:
        if it.get("Queue") != queue:
            continue
        if it.get("Event") == "QueueParams":
            if _num(it.get("Completed")) > 0 and _num(it.get("TalkTime")) > 0:
                talk = _num(it.get("TalkTime"))
        elif it.get("Event") == "QueueMember":
            status = it.get("Status", "0")
            if it.get("Paused") == "1" or status in UNREACHABLE:
                continue
            serving += 1
            if status in FREE and it.get("InCall") != "1":
                free += 1
    return QueueNow(serving, free, talk)


def expected_minutes(ahead: int, now: QueueNow) -> int | None:
    """Whole minutes to announce to a caller with ``ahead`` callers in front, or None."""
    if ahead < 0:
        raise ValueError(f"callers ahead must be >= 0, not {ahead}")
    if now.serving <= 0:
        return None
    turns = ahead + 1 - now.free
    if turns <= 0:
        return None
    return min(MAX_MINUTES, max(1, math.ceil(turns * now.talk_s / now.serving / 60)))


def _num(value: str | None) -> float:
    try:
        x = float(value or 0)
    except ValueError:
        return 0.0
    return x if math.isfinite(x) else 0.0
