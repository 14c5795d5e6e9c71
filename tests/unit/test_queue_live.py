"""The live queue view from QueueStatus items (queues/live.py), no Asterisk."""

from __future__ import annotations

import pytest

from queues.live import live, mask

# What QueueStatus lists, as hotline.amiproto.fields() gives each item (app_queue.c
# manager_queues_status: QueueParams, then QueueMember per member, QueueEntry per caller).
ITEMS = [
    {"Event": "QueueParams", "Queue": "province", "Calls": "2", "Completed": "17",
     "Abandoned": "3", "TalkTime": "140"},
    {"Event": "QueueMember", "Queue": "province", "Name": "1001", "Status": "1",
     "InCall": "0", "Paused": "0", "PausedReason": ""},
    {"Event": "QueueMember", "Queue": "province", "Name": "1002", "Status": "2",
     "InCall": "1", "Paused": "0", "PausedReason": ""},
    {"Event": "QueueMember", "Queue": "province", "Name": "1003", "Status": "1",
     "InCall": "0", "Paused": "1", "PausedReason": "lunch"},
    {"Event": "QueueMember", "Queue": "province", "Name": "1004", "Status": "5",
     "InCall": "0", "Paused": "0", "PausedReason": ""},
    {"Event": "QueueMember", "Queue": "province", "Name": "1005", "Status": "6",
     "InCall": "0", "Paused": "0", "PausedReason": ""},  # ringing
    {"Event": "QueueEntry", "Queue": "province", "Position": "2", "Wait": "41",
     "CallerIDNum": "13907910002"},
    {"Event": "QueueEntry", "Queue": "province", "Position": "1", "Wait": "95",
     "CallerIDNum": "079186001234"},
    {"Event": "QueueEntry", "Queue": "ganzhou", "Position": "1", "Wait": "300",
     "CallerIDNum": "15979700000"},
    {"Event": "QueueStatusComplete", "EventList": "Complete", "ListItems": "9"},
]
NAMES = {"province": ("省中心", "province"), "nanchang": ("南昌市中心", "nanchang")}


def test_supervisor_view() -> None:
    view = live(ITEMS, NAMES, callers=True)
    assert set(view) == {"province", "nanchang"}  # ganzhou was not asked for
    p = view["province"]
    assert (p["name"], p["centre"], p["waiting"], p["longest_wait_s"]) == (
        "省中心", "province", 2, 95)
    assert p["callers"] == [{"position": 1, "wait_s": 95, "caller": "079*****1234"},
                            {"position": 2, "wait_s": 41, "caller": "139****0002"}]
    assert p["seats"] == {"free": 1, "busy": 2, "paused": 1, "unreachable": 1}
    assert p["paused_reasons"] == {"lunch": 1}
    assert p["since_start"] == {"answered": 17, "abandoned": 3}
    assert view["nanchang"]["waiting"] == 0 and view["nanchang"]["callers"] == []


def test_agent_view_has_no_numbers() -> None:
    p = live(ITEMS, NAMES, callers=False)["province"]
    assert p["callers"] == [{"position": 1, "wait_s": 95}, {"position": 2, "wait_s": 41}]


@pytest.mark.parametrize("number, shown", [
    ("13907910001", "139****0001"), ("079186001234", "079*****1234"),
    ("86123456", "******56"), ("8612345", "******5"), ("0791861234", "********34"),
    ("110", "***"), ("", ""), ("anonymous", "*******us")])
def test_mask(number: str, shown: str) -> None:
    assert mask(number) == shown
    hidden = shown.count("*")
    # the usual 139****0001 for full numbers; shorter ones keep at most a quarter
    assert hidden >= (4 if len(number) >= 11 else len(number) - len(number) // 4)
