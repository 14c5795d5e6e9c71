"""GET /calls/recent: who sees which calls (workorders.call_http.visible)."""

from typing import Any

from hotline.auth import Principal
from workorders.call_http import visible

UNDER = {"province": {"province", "nanchang", "ganzhou"}, "nanchang": {"nanchang"},
         "ganzhou": {"ganzhou"}}
CALLS: list[dict[str, Any]] = [
    {"call_id": "1", "centre": "nanchang"}, {"call_id": "2", "centre": "ganzhou"},
    {"call_id": "3", "centre": "province"}, {"call_id": "4", "centre": None},
]


def ids(who: Principal) -> list[str]:
    return [c["call_id"] for c in visible(CALLS, who, UNDER)]


def test_admins_see_every_call() -> None:
    assert ids(Principal("root", "admin")) == ["1", "2", "3", "4"]


def test_supervisors_see_their_centre_and_below() -> None:
    assert ids(Principal("li", "supervisor", centre="province")) == ["1", "2", "3", "4"]
    assert ids(Principal("wang", "supervisor", centre="nanchang")) == ["1"]
    assert ids(Principal("chen", "supervisor", centre="ganzhou")) == ["2"]


def test_agents_units_and_centreless_supervisors_see_none() -> None:
    assert ids(Principal("zhang", "agent", seat="1001")) == []
    assert ids(Principal("w", "unit", unit="water")) == []
    assert ids(Principal("x", "supervisor")) == []
