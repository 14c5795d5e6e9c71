"""A caller keeps their place in time across queues (issue 4, "keeping place in time").

The first time a call reaches any queue the dialplan stores the time in the
inherited channel variable ``HOTLINE_FIRST_QUEUED`` (``${EPOCH}``). Before each
``Queue()`` the AGI step ``queue-entry`` asks Asterisk who is waiting in the
target queue (AMI ``QueueStatus``: one ``QueueEntry`` per caller, with Channel,
Uniqueid, Position, Wait), reads each one's first arrival (AMI ``Getvar``) and
enters the caller in front of the first of them who arrived later: a caller who
waited 60 s in the county queue is not put behind callers who came to the
province queue after them. Asterisk's own rules still apply on top: callers of
a higher priority (QUEUE_PRIO) stay in front (app_queue ``join_queue()``).

:func:`position_for` is the pure rule; :class:`Arrivals` does the look-up and
caches each channel's first arrival (it never changes), which the call-back
scheduler reuses on every tick.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hotline.amiproto import fields
from hotline.channel_vars import FIRST_QUEUED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Waiting:
    """A live caller waiting in a queue, as Asterisk lists them."""

    uniqueid: str
    channel: str
    position: int  # Asterisk's position, 1 = head of the line
    first_queued: float  # epoch of the first arrival at any queue


def parse_epoch(value: str | None) -> float | None:
    """``HOTLINE_FIRST_QUEUED`` as a number, or None when unset or not a time."""
    if not value:
        return None
    try:
        t = float(value)
    except ValueError:
        return None
    return t if math.isfinite(t) and t > 0 else None


def position_for(waiting: Iterable[Waiting], first_queued: float) -> int | None:
    """Queue()'s ``position`` argument for a caller who first queued at ``first_queued``.

    The caller goes in front of the first waiting caller, in Asterisk's order,
    who arrived later; a caller who arrived in the same second stays in front
    (they are already waiting). None means the end of the line, which is where
    Queue() puts a caller without a position anyway.
    """
    ordered = sorted(waiting, key=lambda w: w.position)
    for i, w in enumerate(ordered):
        if w.first_queued > first_queued:
            return i + 1
    return None


def waiting_from_status(
    items: Iterable[Mapping[str, str]], first_of: Mapping[str, float], now: float
) -> list[Waiting]:
    """The ``QueueEntry`` items of a QueueStatus answer as :class:`Waiting`.

    ``first_of`` maps uniqueid to first arrival; a caller missing from it (its
    variable could not be read) counts from when it entered this queue
    (``now - Wait``), which is never later than its real first arrival.
    """
    out: list[Waiting] = []
    for it in items:
        if it.get("Event") != "QueueEntry":
            continue
        uid = it.get("Uniqueid", "")
        try:
            pos = int(it.get("Position", "0"))
        except ValueError:
            pos = 0
        try:
            wait = float(it.get("Wait", "0"))
        except ValueError:
            wait = 0.0
        first = first_of.get(uid, now - wait)
        out.append(Waiting(uid, it.get("Channel", ""), pos, first))
    return out


class Arrivals:
    """First arrivals of waiting callers, read once per channel over AMI and cached."""

    MAX = 20_000  # entries kept; callers leave, so the oldest are dropped first

    def __init__(self) -> None:
        self._first: dict[str, float] = {}

    def remember(self, uniqueid: str, first_queued: float) -> None:
        self._first[uniqueid] = first_queued
        if len(self._first) > self.MAX:
            for uid in list(self._first)[: len(self._first) - self.MAX]:
                del self._first[uid]

    def get(self, uniqueid: str) -> float | None:
        return self._first.get(uniqueid)

    async def waiting(self, ami: Any, queue: str | None = None) -> dict[str, list[Waiting]]:
        """Live callers per queue (``queue`` alone when given), with their first arrival."""
        kwargs = {"Queue": queue} if queue else {}
        items = [fields(m) for m in await ami.action_list("QueueStatus", **kwargs)]
        return await self.from_items(ami, items)

    async def from_items(
        self, ami: Any, items: Iterable[Mapping[str, str]]
    ) -> dict[str, list[Waiting]]:
        """Live callers per queue from QueueStatus items already read; Getvar for new ones."""
        entries = [it for it in items if it.get("Event") == "QueueEntry"]
        unknown = [it for it in entries if it.get("Uniqueid", "") not in self._first]
        if unknown:
            values = await asyncio.gather(
                *(ami.getvar(FIRST_QUEUED, it.get("Channel", "")) for it in unknown),
                return_exceptions=True,
            )
            now = time.time()
            for it, value in zip(unknown, values, strict=True):
                uid = it.get("Uniqueid", "")
                if isinstance(value, asyncio.CancelledError):
                    raise value
                if isinstance(value, BaseException):  # transient: asked again next time
                    log.info("[%s] no %s on %s: %s", uid, FIRST_QUEUED, it.get("Channel"), value)
                    continue
                first = parse_epoch(value)
                if first is None:  # not set (not through the queue step): its time in this queue
                    log.info("[%s] %s unset on %s", uid, FIRST_QUEUED, it.get("Channel"))
                    first = waiting_from_status([it], {}, now)[0].first_queued
                self.remember(uid, first)
        now = time.time()
        by_queue: dict[str, list[Mapping[str, str]]] = {}
        for it in entries:
            by_queue.setdefault(it.get("Queue", ""), []).append(it)
        return {q: waiting_from_status(its, self._first, now) for q, its in by_queue.items()}


def oldest(waiting: Sequence[Waiting]) -> float | None:
    return min((w.first_queued for w in waiting), default=None)
