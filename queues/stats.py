"""Queue statistics from Asterisk's ``queue_log`` (pure: lines in, figures out).

``queue_log`` is written by app_queue for every queue event, survives a
controller restart and is the record Asterisk itself keeps, so the figures are
computed from it, never from the controller's memory. Line format
(https://docs.asterisk.org/Operation/Logging/Queue-Logs/)::

    time|callid|queue|agent|event|data1|data2|...

The dialplan adds one event of ours with ``QueueLog()``: ``OVERFLOW|to|status``
when a caller leaves a queue for the next one up (local first).

Figures per queue and per hour, and for the whole hotline over any period:

* offered: calls that entered the queue (ENTERQUEUE); a call that overflows is
  offered to each queue it enters, but counted once for the hotline;
* answered: CONNECT; *answered within 15 s* measures from the moment the call
  first entered any queue, so overflow does not reset the clock;
* abandoned (ABANDON, with how long the caller waited), overflowed (OVERFLOW),
  timed out (EXITWITHTIMEOUT), called back (CALLBACK: written by the call-back
  dialplan under the ORIGINAL call's uniqueid when the citizen answers the call-back,
  see queues/callback.py; a caller who left the queue for a call-back is EXITWITHKEY);
* connection rate = answered / offered (the national standard's 电话接通率).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

SERVICE_LEVEL_S = 15


@dataclass(frozen=True)
class QueueEvent:
    time: int
    callid: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...]


def parse_line(line: str) -> QueueEvent | None:
    """One queue_log line, or None for a line that is not an event (blank, torn)."""
    parts = line.rstrip("\r\n").split("|")
    if len(parts) < 5 or not parts[0].isdigit():
        return None
    return QueueEvent(int(parts[0]), parts[1], parts[2], parts[3], parts[4], tuple(parts[5:]))


@dataclass
class Figures:
    offered: int = 0
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    abandon_waits: list[int] = field(default_factory=list)
    overflowed: int = 0
    timed_out: int = 0
    called_back: int = 0

    @property
    def connection_rate(self) -> float | None:
        return self.answered / self.offered if self.offered else None

    @property
    def service_level(self) -> float | None:
        return self.answered_in_sl / self.offered if self.offered else None

    def as_dict(self) -> dict[str, object]:
        return {
            "offered": self.offered,
            "answered": self.answered,
            "answered_within_15s": self.answered_in_sl,
            "abandoned": self.abandoned,
            "abandoned_after_s": sorted(self.abandon_waits),
            "overflowed": self.overflowed,
            "timed_out": self.timed_out,
            "called_back": self.called_back,
            "connection_rate": None if self.connection_rate is None else round(self.connection_rate, 4),
            "answered_within_15s_rate": None if self.service_level is None else round(self.service_level, 4),
        }


@dataclass
class Report:
    total: Figures = field(default_factory=Figures)
    by_queue: dict[str, Figures] = field(default_factory=lambda: defaultdict(Figures))
    by_hour: dict[str, Figures] = field(default_factory=lambda: defaultdict(Figures))
    by_centre: dict[str, Figures] = field(default_factory=lambda: defaultdict(Figures))

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.total.as_dict(),
            "by_queue": {k: v.as_dict() for k, v in sorted(self.by_queue.items())},
            "by_centre": {k: v.as_dict() for k, v in sorted(self.by_centre.items())},
            "by_hour": {k: v.as_dict() for k, v in sorted(self.by_hour.items())},
        }


def hour_of(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:00Z")


def compute(
    events: Iterable[QueueEvent],
    since: int = 0,
    until: int | None = None,
    centre_of: dict[str, str] | None = None,
) -> Report:
    """Figures for calls that first entered a queue in ``[since, until)``."""
    centre_of = centre_of or {}
    rep = Report()
    first_enter: dict[str, int] = {}
    counted: set[str] = set()
    answered_calls: set[str] = set()
    for ev in sorted(events, key=lambda e: e.time):
        if ev.callid in ("NONE", ""):
            continue
        if ev.event in ("ENTERQUEUE", "OVERFLOW"):  # OVERFLOW: refused at the door (joinempty)
            first_enter.setdefault(ev.callid, ev.time)
        start = first_enter.get(ev.callid)
        if start is None or start < since or (until is not None and start >= until):
            continue
        targets = [rep.by_queue[ev.queue], rep.by_hour[hour_of(start)]]
        if ev.queue in centre_of:
            targets.append(rep.by_centre[centre_of[ev.queue]])
        if ev.event == "ENTERQUEUE":
            rep.by_queue[ev.queue].offered += 1
            if ev.queue in centre_of:
                rep.by_centre[centre_of[ev.queue]].offered += 1
            if ev.callid not in counted:
                counted.add(ev.callid)
                rep.total.offered += 1
                rep.by_hour[hour_of(start)].offered += 1
        elif ev.event == "CONNECT":
            in_sl = ev.time - start <= SERVICE_LEVEL_S
            for f in targets:
                f.answered += 1
                f.answered_in_sl += in_sl
            if ev.callid not in answered_calls:
                answered_calls.add(ev.callid)
                rep.total.answered += 1
                rep.total.answered_in_sl += in_sl
        elif ev.event == "ABANDON":
            wait = _int(ev.data, 2)
            for f in [*targets, rep.total]:
                f.abandoned += 1
                f.abandon_waits.append(wait)
        elif ev.event == "OVERFLOW":
            for f in [*targets, rep.total]:
                f.overflowed += 1
        elif ev.event == "EXITWITHTIMEOUT":
            for f in targets:
                f.timed_out += 1
        elif ev.event == "CALLBACK":
            for f in [*targets, rep.total]:
                f.called_back += 1
    return rep


def _int(data: tuple[str, ...], i: int) -> int:
    try:
        return int(data[i])
    except (IndexError, ValueError):
        return 0


def read_events(path: str) -> list[QueueEvent]:
    out: list[QueueEvent] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                ev = parse_line(line)
                if ev is not None:
                    out.append(ev)
    except FileNotFoundError:
        pass
    return out
