"""The work-order state machine, pure: every action from every status, roles, deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dialplan.model import TimeLimit
from workorders import lifecycle as lc
from workorders.facts import Outcome

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
POLICY = lc.Policy(
    units={"water": "province", "housing": "nanchang"},
    category_limits={"help": "utilities", "complaint": "general"},
    default_limit="general",
    remind_before=TimeLimit(seconds=3600),
)

# parameters that make each action complete, so only the status and role decide
GOOD: dict[str, dict[str, Any]] = {
    "complete": {"content": "停水", "category": "help", "unit": "water"},
    "dispatch": {"unit": "water"},
    "accept": {},
    "reply": {"reply": "已修复"},
    "return": {"reason": "不属本单位"},
    "close": {},
    "reopen": {"reason": "未解决"},
    "dismiss": {"reason": "回呼无诉求"},
    "merge": {"into": {"id": 99, "ref": "JX20261125000099", "status": "open"}},
    "repeat": {"of": {"id": 98, "ref": "JX20261120000098", "status": "dispatched",
                      "caller": "13800000001"}},
}
ROLE = {
    "complete": "agent",
    "dispatch": "supervisor",
    "accept": "unit",
    "reply": "unit",
    "return": "unit",
    "close": "supervisor",
    "reopen": "supervisor",
    "dismiss": "agent",
    "merge": "supervisor",
    "repeat": "agent",
}


def order(status: str, **kw: Any) -> dict[str, Any]:
    base = {
        "id": 1,
        "ref": "JX20261125000001",
        "status": status,
        "caller": "13800000001",
        "category": "help",
        "unit": None,
        "time_limit": None,
        "dispatched_at": None,
        "rehandled": 0,
        "returned": 0,
    }
    base.update(kw)
    return base


@pytest.mark.parametrize("action", sorted(lc.TRANSITIONS))
@pytest.mark.parametrize("status", lc.STATUSES)
def test_every_action_from_every_status(action: str, status: str) -> None:
    o = order(status, unit="water" if status in (lc.REPLIED, lc.CLOSED, *lc.RUNNING) else None)
    allowed = status in lc.TRANSITIONS[action].sources
    if allowed:
        ch = lc.plan(o, action, ROLE[action], GOOD[action], NOW, POLICY)
        assert ch.from_status == status and ch.to_status in lc.STATUSES
    else:
        with pytest.raises(lc.TransitionError) as e:
            lc.plan(o, action, ROLE[action], GOOD[action], NOW, POLICY)
        assert e.value.status == 409
        assert str(e.value) == f"cannot {action} order JX20261125000001: it is {status}"
        assert e.value.details["allowed_from"] == sorted(lc.TRANSITIONS[action].sources)


@pytest.mark.parametrize(
    "action, role",
    [
        ("accept", "agent"),
        ("reply", "supervisor"),
        ("close", "unit"),
        ("dispatch", "agent"),
        ("merge", "agent"),
        ("reopen", "unit"),
        ("complete", "unit"),
        ("repeat", "unit"),
    ],
)
def test_roles(action: str, role: str) -> None:
    src = next(iter(lc.TRANSITIONS[action].sources))
    with pytest.raises(lc.NotAllowed) as e:
        lc.plan(order(src, unit="water"), action, role, GOOD[action], NOW, POLICY)
    assert e.value.status == 403 and str(e.value) == f"a {role} may not {action} an order"


def test_complete_with_dispatch_sets_deadline_from_category_limit() -> None:
    ch = lc.plan(order(lc.OPEN), "complete", "agent", GOOD["complete"], NOW, POLICY)
    assert ch.to_status == lc.DISPATCHED and ch.unit == "water"
    assert ch.updates["time_limit"] == "utilities"
    assert ch.updates["deadline"] == NOW + timedelta(hours=24)
    assert ch.updates["dispatched_at"] == NOW


@pytest.mark.parametrize(
    "limit, hours",
    [("urgent", 2), ("utilities", 24), ("general", 7 * 24), ("complex", 15 * 24)],
)
def test_default_time_limits(limit: str, hours: int) -> None:
    params = {**GOOD["complete"], "time_limit": limit}
    ch = lc.plan(order(lc.OPEN), "complete", "agent", params, NOW, POLICY)
    assert ch.updates["deadline"] - NOW == timedelta(hours=hours)


def test_configured_time_limits_and_category_without_mapping() -> None:
    policy = lc.Policy(
        time_limits={"fast": TimeLimit(seconds=600), "slow": TimeLimit(seconds=86400)},
        default_limit="slow",
        units={"w": "p"},
    )
    ch = lc.plan(
        order(lc.OPEN),
        "complete",
        "agent",
        {"content": "x", "category": "opinion", "unit": "w"},
        NOW,
        policy,
    )
    assert (ch.updates["time_limit"], ch.updates["deadline"]) == ("slow", NOW + timedelta(days=1))
    with pytest.raises(lc.RequestError, match="unknown time limit 'urgent'"):
        lc.plan(
            order(lc.OPEN),
            "complete",
            "agent",
            {"content": "x", "category": "opinion", "unit": "w", "time_limit": "urgent"},
            NOW,
            policy,
        )


def test_redispatch_keeps_first_dispatch_time() -> None:
    first = NOW - timedelta(days=1)
    ch = lc.plan(
        order(lc.RETURNED, dispatched_at=first),
        "dispatch",
        "supervisor",
        {"unit": "housing"},
        NOW,
        POLICY,
    )
    assert "dispatched_at" not in ch.updates and ch.updates["unit"] == "housing"


@pytest.mark.parametrize(
    "action, params, message",
    [
        ("complete", {"category": "help", "unit": "water"}, "the matter's content is required"),
        (
            "complete",
            {"content": "x", "category": "nonsense", "unit": "water"},
            "unknown category 'nonsense'",
        ),
        ("complete", {"content": "x", "category": "help"}, "complete needs an answer"),
        (
            "complete",
            {"content": "x", "category": "help", "unit": "nowhere"},
            "unknown unit 'nowhere'",
        ),
        ("return", {}, "the reason for returning is required"),
        ("return", {"reason": "  "}, "the reason for returning is required"),
        ("reply", {}, "the unit's reply is required"),
        ("nonsense", {}, "unknown action 'nonsense'"),
    ],
)
def test_bad_requests(action: str, params: dict[str, Any], message: str) -> None:
    status = lc.ACCEPTED if action in ("return", "reply") else lc.OPEN
    with pytest.raises(lc.RequestError, match=message) as e:
        lc.plan(order(status, unit="water"), action, ROLE.get(action, "admin"), params, NOW, POLICY)
    assert e.value.status == 400


def test_only_consultations_close_on_the_call() -> None:
    ch = lc.plan(
        order(lc.OPEN),
        "complete",
        "agent",
        {"content": "q", "category": "consultation", "answer": "a"},
        NOW,
        POLICY,
    )
    assert ch.to_status == lc.CLOSED and ch.updates["closed_at"] == NOW
    with pytest.raises(lc.TransitionError, match="only a consultation is closed on the call"):
        lc.plan(
            order(lc.OPEN),
            "complete",
            "agent",
            {"content": "q", "category": "complaint", "answer": "a"},
            NOW,
            POLICY,
        )


def test_return_clears_unit_and_counts() -> None:
    ch = lc.plan(
        order(lc.ACCEPTED, unit="water", returned=1), "return", "unit", {"reason": "r"}, NOW, POLICY
    )
    assert ch.updates["unit"] is None and ch.updates["returned"] == 2 and ch.unit == "water"
    assert ch.note == "r"


def test_reopen_goes_back_to_the_unit_or_to_the_agent() -> None:
    ch = lc.plan(
        order(lc.CLOSED, unit="water", time_limit="urgent"),
        "reopen",
        "survey",
        {"reason": "dissatisfied"},
        NOW,
        POLICY,
    )
    assert ch.to_status == lc.DISPATCHED and ch.updates["rehandled"] == 1
    assert ch.updates["deadline"] == NOW + timedelta(hours=2) and ch.updates["reminded_at"] is None
    ch = lc.plan(
        order(lc.CLOSED, category="consultation"),
        "reopen",
        "supervisor",
        {"reason": "wrong"},
        NOW,
        POLICY,
    )
    assert ch.to_status == lc.OPEN and ch.updates["closed_at"] is None


def test_merge_rules() -> None:
    with pytest.raises(lc.TransitionError, match="into itself"):
        lc.plan(
            order(lc.OPEN),
            "merge",
            "supervisor",
            {"into": {"id": 1, "ref": "x", "status": "open"}},
            NOW,
            POLICY,
        )
    with pytest.raises(lc.TransitionError, match="it is merged"):
        lc.plan(
            order(lc.OPEN),
            "merge",
            "supervisor",
            {"into": {"id": 2, "ref": "x", "status": "merged"}},
            NOW,
            POLICY,
        )
    ch = lc.plan(order(lc.OPEN), "merge", "admin", GOOD["merge"], NOW, POLICY)
    assert ch.updates == {"merged_into": 99} and ch.note == "merged into JX20261125000099"


def test_every_outcome_has_an_initial_status() -> None:
    assert set(lc.INITIAL_STATUS) == set(Outcome)


@pytest.mark.parametrize(
    "role, who, expected",
    [
        (("admin", "root", None, None, None), {}, True),
        (("agent", "zhang", "1001", "province", None), {"agent": "zhang"}, True),
        (("agent", "zhang", "1001", "province", None), {"agent": "1001"}, True),
        (("agent", "zhang", "1001", "province", None), {"agent": "wang"}, False),
        (("agent", "zhang", "1001", "province", None), {"agent": None}, False),
        (("supervisor", "li", None, "province", None), {"centre": "nanchang"}, True),
        (("supervisor", "li", None, "nanchang", None), {"centre": "province"}, False),
        # an order not placed in a centre yet: only the supervisors over every centre
        (("supervisor", "li", None, "province", None), {"centre": None}, True),
        (("supervisor", "li", None, "nanchang", None), {"centre": None}, False),
        (("unit", "w", None, None, "water"), {"unit": "water"}, True),
        (("unit", "w", None, None, "water"), {"unit": "housing"}, False),
        (("unit", "w", None, None, None), {"unit": None}, False),
    ],
)
def test_may_see(role: tuple[Any, ...], who: dict[str, Any], expected: bool) -> None:
    under = {"province": {"province", "nanchang"}, "nanchang": {"nanchang"}}
    r, name, seat, centre, unit = role
    assert lc.may_see(r, name, seat, centre, unit, order(lc.OPEN, **who), under) is expected


def test_due_with_a_frozen_clock() -> None:
    dl = NOW + timedelta(hours=2)
    rows = [
        order(
            lc.DISPATCHED,
            id=1,
            ref="a",
            deadline=dl,
            reminded_at=None,
            escalated_at=None,
            unit="water",
        ),
        order(
            lc.ACCEPTED,
            id=2,
            ref="b",
            deadline=NOW + timedelta(minutes=30),
            reminded_at=None,
            escalated_at=None,
            unit="water",
        ),
        order(
            lc.ACCEPTED,
            id=3,
            ref="c",
            deadline=NOW + timedelta(minutes=30),
            reminded_at=NOW,
            escalated_at=None,
        ),
        order(
            lc.DISPATCHED,
            id=4,
            ref="d",
            deadline=NOW - timedelta(seconds=1),
            reminded_at=None,
            escalated_at=None,
        ),
        order(
            lc.DISPATCHED,
            id=5,
            ref="e",
            deadline=NOW - timedelta(hours=1),
            reminded_at=NOW,
            escalated_at=NOW,
        ),
        order(
            lc.REPLIED,
            id=6,
            ref="f",
            deadline=NOW - timedelta(hours=1),
            reminded_at=None,
            escalated_at=None,
        ),
        order(lc.DISPATCHED, id=7, ref="g", deadline=NOW, reminded_at=None, escalated_at=None),
    ]
    assert [(d.ref, d.action) for d in lc.due(rows, POLICY.horizons(NOW))] == [
        ("b", "reminded"),
        ("d", "escalated"),
        ("g", "escalated"),
    ]
    assert [(d.ref, d.action) for d in lc.due(rows, POLICY.horizons(NOW + timedelta(hours=1)))] == [
        ("a", "reminded"),
        ("b", "escalated"),
        ("c", "escalated"),
        ("d", "escalated"),
        ("g", "escalated"),
    ]


def test_a_repeat_call_joins_an_earlier_order_of_the_same_caller_only() -> None:
    earlier = dict(GOOD["repeat"]["of"])
    ch = lc.plan(order(lc.INTAKE), "repeat", "agent", {"of": earlier}, NOW, POLICY)
    assert (ch.to_status, ch.updates) == (lc.MERGED, {"merged_into": 98})
    assert ch.note == "repeat call about JX20261120000098"
    assert lc.urges(earlier)  # dispatched: the unit is urged (催办)
    assert not lc.urges({**earlier, "status": lc.CLOSED})
    with pytest.raises(lc.RequestError, match="is not an order of this call's caller"):
        lc.plan(order(lc.OPEN), "repeat", "agent", {"of": {**earlier, "caller": "139"}}, NOW,
                POLICY)
    with pytest.raises(lc.RequestError, match="is not an order of this call's caller"):
        lc.plan(order(lc.OPEN, caller="anonymous"), "repeat", "agent",
                {"of": {**earlier, "caller": "anonymous"}}, NOW, POLICY)
    with pytest.raises(lc.TransitionError, match="cannot join order JX20261120000098: it is merged"):
        lc.plan(order(lc.OPEN), "repeat", "agent", {"of": {**earlier, "status": lc.MERGED}}, NOW,
                POLICY)
    with pytest.raises(lc.TransitionError, match="cannot repeat its own order"):
        lc.plan(order(lc.OPEN), "repeat", "agent", {"of": order(lc.OPEN)}, NOW, POLICY)
    with pytest.raises(lc.RequestError, match="repeat needs 'of'"):
        lc.plan(order(lc.OPEN), "repeat", "agent", {}, NOW, POLICY)
