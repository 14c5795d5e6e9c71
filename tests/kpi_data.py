"""A deterministic set of work orders and calls for the KPI tests, and the KPIs
counted by hand over it: plain Python over the generated records, written from
the README's definitions without looking at the SQL.

Records are dicts keyed by the column names of ``work_orders`` / ``order_calls``,
inserted as they are.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

CENTRES = ("province", "nanchang", "ganzhou")  # the sample config's centres
UNITS = ("water", "power", "police", "housing")
CATEGORIES = ("consultation", "help", "complaint", "opinion", "suggestion")
SURVEYS = ("satisfied", "basic", "dissatisfied", "no_answer")
T0 = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 90  # orders created over three months from T0

Record = dict[str, Any]


def generate(n_orders: int = 400, seed: int = 12345) -> tuple[list[Record], list[Record]]:
    """``n_orders`` orders (some merged, some never dispatched) and their calls."""
    rnd = random.Random(seed)
    orders: list[Record] = []
    calls: list[Record] = []
    for oid in range(1, n_orders + 1):
        created = T0 + timedelta(seconds=rnd.randrange(DAYS * 86400))
        o: Record = {
            "id": oid, "ref": f"JX{oid:08d}", "created_at": created, "status": "created",
            "caller": f"138{oid:08d}", "origin": "12345", "centre": rnd.choice(CENTRES),
            "category": rnd.choice((*CATEGORIES, None)), "unit": None,
            "dispatched_at": None, "deadline": None, "replied_at": None, "closed_at": None,
            "rehandled": 0, "returned": 0, "merged_into": None, "survey": None, "survey_at": None,
        }
        if rnd.random() < 0.7:  # dispatched to a unit
            o["unit"] = rnd.choice(UNITS)
            o["dispatched_at"] = created + timedelta(minutes=rnd.randrange(5, 600))
            o["deadline"] = o["dispatched_at"] + timedelta(hours=rnd.choice((2, 24, 168, 360)))
            o["status"] = "dispatched"
            if rnd.random() < 0.75:  # replied: mostly in time, some late, some right at it
                limit = (o["deadline"] - o["dispatched_at"]).total_seconds()
                late = rnd.random()
                if late < 0.05:
                    o["replied_at"] = o["deadline"]
                else:
                    factor = rnd.uniform(0.1, 0.95) if late < 0.75 else rnd.uniform(1.01, 2.5)
                    o["replied_at"] = o["dispatched_at"] + timedelta(seconds=limit * factor)
                o["status"] = "replied"
                o["rehandled"] = rnd.choice((0, 0, 0, 1, 2))
                if rnd.random() < 0.8:
                    o["closed_at"] = o["replied_at"] + timedelta(hours=rnd.randrange(1, 72))
                    o["status"] = "closed"
                elif rnd.random() < 0.5:  # sent back (發回重辦) and re-dispatched: a new
                    # deadline, the old reply stays until the unit replies again
                    o["status"] = rnd.choice(("dispatched", "accepted"))
                    o["rehandled"] += 1
                    o["deadline"] = o["replied_at"] + timedelta(hours=rnd.choice((24, 168)))
        elif rnd.random() < 0.5:  # answered on the call, closed at once
            o["closed_at"] = created + timedelta(minutes=rnd.randrange(2, 30))
            o["status"] = "closed"
        if o["closed_at"] is not None and rnd.random() < 0.85:
            o["survey"] = rnd.choice(SURVEYS)
            o["survey_at"] = o["closed_at"] + timedelta(hours=rnd.randrange(1, 48))
        if oid > 10 and rnd.random() < 0.08:  # a duplicate merged into an earlier order
            o["status"] = "merged"
            o["merged_into"] = rnd.randrange(1, oid - 5)
        orders.append(o)
        for k in range(rnd.choice((1, 1, 1, 2, 3))):
            started = created - timedelta(minutes=5) + timedelta(hours=k * rnd.randrange(0, 48))
            wait: float | None = None
            answered = None
            kind = rnd.random()
            if kind < 0.15:
                outcome = "ivr_hangup"  # never asked for a person
            else:
                wait = rnd.choice((0.0, 3.5, 15.0, 15.5, 40.0, rnd.uniform(0, 120)))
                if kind < 0.75:
                    outcome, answered = "answered", started + timedelta(seconds=30 + wait)
                else:
                    outcome = "abandoned"
            calls.append({
                "id": len(calls) + 1,
                # a merged order's calls moved to the order it was merged into
                "order_id": o["merged_into"] or oid,
                "call_id": f"linked-{oid}-{k}", "uniqueid": f"{oid}.{k}",
                "caller": o["caller"], "called": "12345", "outcome": outcome,
                "centre": o["centre"] if rnd.random() < 0.9 else rnd.choice(CENTRES),
                "started_at": started, "answered_at": answered,
                "ended_at": started + timedelta(seconds=200), "wait_seconds": wait,
                "ivr_path": [], "transfers": [],
            })
    return orders, calls


def _in(t: datetime | None, start: datetime, end: datetime) -> bool:
    return t is not None and start <= t < end


def _rate(num: int, den: int) -> dict[str, Any]:
    return {"numerator": num, "denominator": den, "rate": num / den if den else None}


def hand_count(
    orders: list[Record],
    calls: list[Record],
    start: datetime,
    end: datetime,
    centres: set[str] | None = None,
    unit: str | None = None,
    category: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The KPIs by the README's definitions, one record at a time."""
    due_end = end if now is None else min(end, now)

    def order_ok(o: Record) -> bool:
        return (
            o["status"] != "merged"
            and (centres is None or o["centre"] in centres)
            and (unit is None or o["unit"] == unit)
            and (category is None or o["category"] == category)
        )

    by_id = {o["id"]: o for o in orders}
    offered = answered = fast = 0
    for c in calls:
        o = by_id[c["order_id"]]
        if c["wait_seconds"] is None or not _in(c["started_at"], start, end):
            continue
        if centres is not None and c["centre"] not in centres:
            continue
        if unit is not None and o["unit"] != unit:
            continue
        if category is not None and o["category"] != category:
            continue
        offered += 1
        if c["answered_at"] is not None:
            answered += 1
            if c["wait_seconds"] <= 15:
                fast += 1
    on_time_n = on_time_d = fb_n = fb_d = re_n = re_d = sat_n = sat_d = no_answer = 0
    for o in orders:
        if not order_ok(o):
            continue
        dispatched = o["dispatched_at"] is not None
        # dispatched or accepted: the unit owes a reply, whatever an older one says
        waiting = o["status"] in ("dispatched", "accepted")
        replied = o["replied_at"] is not None and not waiting
        due = _in(o["deadline"], start, due_end)
        if dispatched and o["deadline"] is not None and (
            due or (replied and _in(o["replied_at"], start, end))
        ):
            on_time_d += 1
            if replied and o["replied_at"] <= o["deadline"]:
                on_time_n += 1
        if _in(o["dispatched_at"], start, end):
            fb_d += 1
            fb_n += o["replied_at"] is not None
        if dispatched and _in(o["closed_at"], start, end):
            re_d += 1
            re_n += o["rehandled"] > 0
        if _in(o["survey_at"], start, end):
            if o["survey"] == "no_answer":
                no_answer += 1
            else:
                sat_d += 1
                sat_n += o["survey"] in ("satisfied", "basic")
    sat = _rate(sat_n, sat_d)
    sat["no_answer"] = no_answer
    return {
        "connection": _rate(answered, offered),
        "connection_15s": _rate(fast, offered),
        "on_time": _rate(on_time_n, on_time_d),
        "feedback": _rate(fb_n, fb_d),
        "rehandling": _rate(re_n, re_d),
        "satisfaction": sat,
    }
