"""The queues right now (实时监控), for a supervisor's wallboard or an agent's desktop.

One AMI ``QueueStatus`` answers it: a ``QueueParams`` item per queue (Asterisk's
counters since it started or the queue was reset), a ``QueueMember`` per seat
logged in to it and a ``QueueEntry`` per caller waiting, in the order they will be
served. :func:`live` turns those items into the view; it does no I/O.

Per queue: the callers waiting and the longest wait, the seats logged in by what
they are doing (free, on a call or ringing, paused, unreachable), and what
Asterisk counted (answered, abandoned) since it last started. Waiting callers are
listed with their position and wait; their numbers are shown masked
(``139****0001``) and only to supervisors and admins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .estimate import FREE, UNREACHABLE


def mask(number: str) -> str:
    """Enough of a number to recognise a caller, not to dial them: a mobile or a landline
    with its area code (11 or more digits) keeps its first 3 and last 4
    (``139****0001``); a shorter one only its last quarter (``86123456`` ->
    ``******56``)."""
    digits = number.strip()
    if len(digits) >= 11:
        return f"{digits[:3]}{'*' * (len(digits) - 7)}{digits[-4:]}"
    tail = len(digits) // 4
    return "*" * (len(digits) - tail) + (digits[-tail:] if tail else "")


def _int(value: str | None) -> int:
    try:
        return int(float(value or 0))
    except ValueError:
        return 0


def _member_state(item: Mapping[str, str]) -> str:
    if item.get("Paused") == "1":
        return "paused"
    status = item.get("Status", "0")
    if status in UNREACHABLE:
        return "unreachable"
    if status in FREE and item.get("InCall") != "1":
        return "free"
    return "busy"  # on a call, ringing, or on hold


def live(
    items: Iterable[Mapping[str, str]],
    names: Mapping[str, tuple[str, str]],
    *,
    callers: bool,
) -> dict[str, dict[str, Any]]:
    """The view of the queues in ``names`` (queue id -> (name, centre)); others'
    items are ignored. ``callers``: list the waiting callers' masked numbers."""
    out: dict[str, dict[str, Any]] = {}
    for qid, (name, centre) in names.items():
        out[qid] = {
            "name": name,
            "centre": centre,
            "waiting": 0,
            "longest_wait_s": 0,
            "callers": [],
            "seats": {"free": 0, "busy": 0, "paused": 0, "unreachable": 0},
            "paused_reasons": {},
            "since_start": {"answered": 0, "abandoned": 0},
        }
    for it in items:
        q = out.get(it.get("Queue", ""))
        if q is None:
            continue
        event = it.get("Event")
        if event == "QueueParams":
            q["since_start"] = {"answered": _int(it.get("Completed")),
                                "abandoned": _int(it.get("Abandoned"))}
        elif event == "QueueMember":
            state = _member_state(it)
            q["seats"][state] += 1
            if state == "paused":
                reason = it.get("PausedReason") or "-"
                q["paused_reasons"][reason] = q["paused_reasons"].get(reason, 0) + 1
        elif event == "QueueEntry":
            wait = _int(it.get("Wait"))
            q["waiting"] += 1
            q["longest_wait_s"] = max(q["longest_wait_s"], wait)
            entry: dict[str, Any] = {"position": _int(it.get("Position")), "wait_s": wait}
            if callers:
                entry["caller"] = mask(it.get("CallerIDNum") or "")
            q["callers"].append(entry)
    for q in out.values():
        q["callers"].sort(key=lambda c: c["position"])
    return out
