"""Waiting in a queue, pure parts: Mandarin numbers (say.conf), place in time, queue-entry.

The say.conf rules are run by a small model of what Asterisk does with them
(apps/app_playback.c ``do_say()``: the first rule whose ``ast_extension_match``
pattern matches ``num:N``, ``${SAY:i:1}`` substituted) and the files played are
read back as Mandarin; every number 0-9999 must read as written.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from agi_scripts.queue_entry import queue_entry
from dialplan.say import ANNOUNCEMENT_PROMPTS, NUMBER_PROMPTS, number_rules, say_conf
from hotline import channel_vars as cv
from hotline.ami import AmiDisconnected
from queues.position import Arrivals, Waiting, parse_epoch, position_for, waiting_from_status

SOUNDS = "/srv/hotline/t/current/sounds"
CHARS = dict(zip([f"num-{d}" for d in range(10)], "零一二三四五六七八九", strict=True))
CHARS |= {"num-10": "十", "num-100": "百", "num-1000": "千"}


# ------------------------------------------------------------------ say.conf


def _pattern(p: str) -> re.Pattern[str]:
    """An ast_extension_match pattern (the subset say.conf uses) as a regex."""
    assert p.startswith("_")
    out, i = "", 1
    while i < len(p):
        ch = p[i]
        if ch == "[":
            j = p.index("]", i)
            out += "[" + p[i + 1 : j] + "]"
            i = j + 1
            continue
        out += {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+"}.get(ch, re.escape(ch))
        i += 1
    return re.compile(out, re.I)


def _rules(conf: str) -> list[tuple[re.Pattern[str], list[str]]]:
    body = conf.split("[zh]", 1)[1]
    out = []
    for line in body.splitlines():
        if "=>" not in line or line.lstrip().startswith(";"):
            continue
        left, right = (s.strip() for s in line.split("=>", 1))
        out.append((_pattern(left), [c.strip() for c in right.split(",")]))
    return out


def say(conf: str, n: int) -> str:
    """What Asterisk plays for ast_say_number(n) with this say.conf, read as Mandarin."""
    value = f"num:{n}"
    for pat, parts in _rules(conf):
        if pat.fullmatch(value):
            said = ""
            for part in parts:
                name = re.sub(r"\$\{SAY:(\d+):1\}", lambda m: str(n)[int(m[1])], part)
                assert name.startswith(SOUNDS + "/"), name
                said += CHARS[name.rsplit("/", 1)[1]]
            return said
    return ""


@pytest.fixture(scope="module")
def conf() -> str:
    return say_conf(SOUNDS)


@pytest.mark.parametrize(
    ("n", "mandarin"),
    [
        (0, "零"),
        (1, "一"),
        (2, "二"),
        (9, "九"),
        (10, "十"),
        (11, "十一"),
        (15, "十五"),
        (20, "二十"),
        (25, "二十五"),
        (99, "九十九"),
        (100, "一百"),
        (101, "一百零一"),
        (110, "一百一十"),
        (115, "一百一十五"),
        (120, "一百二十"),
        (999, "九百九十九"),
        (1000, "一千"),
        (1001, "一千零一"),
        (1010, "一千零一十"),
        (1012, "一千零一十二"),
        (1100, "一千一百"),
        (1105, "一千一百零五"),
        (1234, "一千二百三十四"),
        (2050, "二千零五十"),
        (9999, "九千九百九十九"),
    ],
)
def test_numbers_read_in_mandarin(conf: str, n: int, mandarin: str) -> None:
    assert say(conf, n) == mandarin


def test_every_number_to_9999_has_exactly_one_reading(conf: str) -> None:
    rules = _rules(conf)
    for n in range(10000):
        matching = [p for p, _ in rules if p.fullmatch(f"num:{n}")]
        assert len(matching) == 1, (n, [p.pattern for p in matching])
        said = say(conf, n)
        assert (
            said == "零" if n == 0 else (said and not said.endswith("零") and "零零" not in said)
        ), n
    assert say(conf, 10000) == ""  # not said at all, rather than wrongly


def test_say_conf_switches_the_say_api_to_the_rules(conf: str) -> None:
    assert "[general]\nmode = new\n" in conf
    # the pattern character N (2-9) must not swallow the n of "num"
    assert all(line.startswith("_[n]um:") for line in conf.split("[zh]")[1].splitlines()[2:])
    # fn[128] in do_say(): every file name with a long instance path still fits
    long = say_conf("/srv/hotline/" + "x" * 40 + "/current/sounds")
    assert max(len(p) for line in long.splitlines() for p in line.split(", ")) < 128
    assert len(number_rules()) == 17


def test_prompts_the_rules_need_are_the_announcement_prompts(conf: str) -> None:
    used = set(re.findall(r"/(num-[0-9]+)\b", conf.replace("${SAY:0:1}", "0")))
    assert used <= set(NUMBER_PROMPTS)
    assert set(NUMBER_PROMPTS) <= set(ANNOUNCEMENT_PROMPTS)


# ------------------------------------------------------------------ place in time


def w(uid: str, pos: int, first: float) -> Waiting:
    return Waiting(uid, f"PJSIP/carrier-{uid}", pos, first)


def test_position_in_front_of_the_first_later_arrival() -> None:
    waiting = [w("a", 1, 100.0), w("b", 2, 130.0), w("c", 3, 160.0)]
    assert position_for(waiting, 90.0) == 1
    assert position_for(waiting, 120.0) == 2
    assert position_for(waiting, 150.0) == 3
    assert position_for(waiting, 200.0) is None  # the end of the line
    assert position_for([], 100.0) is None


def test_same_second_keeps_the_caller_already_waiting_in_front() -> None:
    assert position_for([w("a", 1, 100.0)], 100.0) is None


def test_asterisk_order_counts_not_the_list_order() -> None:
    # An entry that joined without a position (controller away) sits at the end
    # though it arrived early: the newcomer goes before the first later arrival.
    waiting = [w("late", 2, 500.0), w("early", 1, 100.0), w("old-tail", 3, 50.0)]
    assert position_for(waiting, 300.0) == 2


def test_parse_epoch() -> None:
    assert parse_epoch("1795779288") == 1795779288.0
    for bad in (None, "", "abc", "-5", "nan", "inf", "0"):
        assert parse_epoch(bad) is None


def test_waiting_from_status_uses_wait_when_first_arrival_unknown() -> None:
    items = [
        {"Event": "QueueParams", "Queue": "province"},
        {
            "Event": "QueueEntry",
            "Queue": "province",
            "Uniqueid": "u1",
            "Channel": "PJSIP/c-1",
            "Position": "1",
            "Wait": "40",
        },
        {
            "Event": "QueueEntry",
            "Queue": "province",
            "Uniqueid": "u2",
            "Channel": "PJSIP/c-2",
            "Position": "2",
            "Wait": "x",
        },
    ]
    got = waiting_from_status(items, {"u1": 900.0}, now=1000.0)
    assert got == [Waiting("u1", "PJSIP/c-1", 1, 900.0), Waiting("u2", "PJSIP/c-2", 2, 1000.0)]


class FakeAmi:
    """QueueStatus and Getvar only; anything else fails the test."""

    def __init__(self, entries: list[dict[str, str]], firsts: dict[str, str]) -> None:
        self.connected = True
        self.entries = entries
        self.firsts = firsts
        self.getvars: list[str] = []
        self.fail: Exception | None = None

    async def action_list(self, name: str, **fields: Any) -> list[dict[str, str]]:
        assert name == "QueueStatus", name
        if self.fail:
            raise self.fail
        q = fields.get("Queue")
        return [e for e in self.entries if q is None or e["Queue"] == q]

    async def getvar(self, name: str, channel: str | None = None) -> str | None:
        assert name == cv.FIRST_QUEUED and channel
        self.getvars.append(channel)
        return self.firsts.get(channel)


def entry(uid: str, pos: int, queue: str = "province", wait: int = 10) -> dict[str, str]:
    return {
        "Event": "QueueEntry",
        "Queue": queue,
        "Uniqueid": uid,
        "Channel": f"PJSIP/c-{uid}",
        "Position": str(pos),
        "Wait": str(wait),
    }


def test_arrivals_read_each_channel_once() -> None:
    ami = FakeAmi(
        [entry("a", 1), entry("b", 2), entry("z", 1, "social")],
        {"PJSIP/c-a": "100", "PJSIP/c-b": "200", "PJSIP/c-z": "50"},
    )
    arr = Arrivals()
    got = asyncio.run(arr.waiting(ami, "province"))
    assert [x.first_queued for x in got["province"]] == [100.0, 200.0] and "social" not in got
    asyncio.run(arr.waiting(ami))
    assert ami.getvars == ["PJSIP/c-a", "PJSIP/c-b", "PJSIP/c-z"]  # cached after the first read


# ------------------------------------------------------------------ the AGI step


class FakeChannel:
    def __init__(self, variables: dict[str, str], uniqueid: str = "me") -> None:
        self.vars = dict(variables)
        self.uniqueid = uniqueid
        self.log = __import__("logging").getLogger("test")

    async def get_variable(self, name: str) -> str | None:
        return self.vars.get(name)

    async def set_variable(self, name: str, value: str) -> None:
        self.vars[name] = value


class FakeApp:
    def __init__(self, ami: Any) -> None:
        from dialplan.validate import load_config

        self.config = load_config(Path(__file__).resolve().parents[2] / "config" / "hotline.yaml")
        self.ami = ami
        self.arrivals = Arrivals()


def test_queue_entry_sets_the_position() -> None:
    ami = FakeAmi([entry("a", 1), entry("b", 2)], {"PJSIP/c-a": "100", "PJSIP/c-b": "200"})
    ch = FakeChannel({cv.QUEUE: "province", cv.FIRST_QUEUED: "150"})
    app = FakeApp(ami)
    asyncio.run(queue_entry(ch, app))  # type: ignore[arg-type]
    assert ch.vars[cv.QUEUE_POSITION] == "2"
    assert app.arrivals.get("me") == 150.0


@pytest.mark.parametrize("trouble", ["down", "disconnected", "unknown-queue", "no-first"])
def test_queue_entry_never_keeps_a_caller_out(trouble: str) -> None:
    ami = FakeAmi([entry("a", 1)], {"PJSIP/c-a": "300"})
    variables = {cv.QUEUE: "province", cv.FIRST_QUEUED: "150"}
    if trouble == "down":
        ami.connected = False
    elif trouble == "disconnected":
        ami.fail = AmiDisconnected("connection lost")
    elif trouble == "unknown-queue":
        variables[cv.QUEUE] = "nowhere"
    else:
        del variables[cv.FIRST_QUEUED]
    ch = FakeChannel(variables)
    asyncio.run(queue_entry(ch, FakeApp(ami)))  # type: ignore[arg-type]
    assert cv.QUEUE_POSITION not in ch.vars  # Queue() without a position: the end of the line


def test_arrivals_remember_an_unset_variable_as_the_time_in_this_queue() -> None:
    ami = FakeAmi([entry("a", 1, wait=30)], {})
    arr = Arrivals()
    first = asyncio.run(arr.waiting(ami))["province"][0].first_queued
    asyncio.run(arr.waiting(ami))
    assert ami.getvars == ["PJSIP/c-a"]  # asked once, not on every look
    assert arr.get("a") == first
