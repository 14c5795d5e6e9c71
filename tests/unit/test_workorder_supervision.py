"""Supervision rounds with a frozen clock, notices POSTed to a local aiohttp server,
and the work-order config (time limits, units, unit users) with file:line errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from dialplan.loader import ConfigError
from dialplan.model import TimeLimit, parse_duration, parse_time_limit
from dialplan.validate import load_config, load_config_text
from hotline.auth import Principal
from workorders.facts import CallFacts, Outcome
from workorders.lifecycle import Policy, RequestError, deadline
from workorders.plugin import open_store, policy_of, settings_of
from workorders.supervision import Settings, Supervision, notice

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
SUP = Principal("sup-nanchang", "supervisor", centre="nanchang")


def facts(call_id: str) -> CallFacts:
    return CallFacts(
        call_id=call_id,
        uniqueid=call_id,
        caller="13900000003",
        called="12345",
        outcome=Outcome.ABANDONED,
        started_at=T0,
        ended_at=T0 + timedelta(minutes=1),
        centre="nanchang",
    )


@pytest.fixture
async def notices() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A local notice receiver (an SMS gateway's stand-in): its URL and what it got."""
    received: list[dict[str, Any]] = []

    async def post(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/notices", post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/notices", received
    finally:
        await runner.cleanup()


async def test_reminders_and_escalations_are_posted_once(
    tmp_path: Path, notices: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = notices
    cfg = load_config(SAMPLE)
    clock = [T0]
    store = open_store(lambda: cfg, tmp_path)
    store.clock = lambda: clock[0]
    ref = store.record_call(facts("s1"))
    store.act(
        ref,
        "complete",
        SUP,
        {"content": "燃气泄漏", "category": "help", "unit": "nc-water", "time_limit": "urgent"},
    )
    settings = Settings(every=60, notice_url=url, units=settings_of(cfg).units)
    sup = Supervision(store, lambda: settings, clock=lambda: clock[0])
    try:
        assert await sup.run_once(T0 + timedelta(minutes=30)) == []
        done = await sup.run_once(T0 + timedelta(minutes=61))
        assert [d.action for d in done] == ["reminded"]
        assert await sup.run_once(T0 + timedelta(minutes=90)) == []
        done = await sup.run_once(T0 + timedelta(hours=2, minutes=1))
        assert [d.action for d in done] == ["escalated"]
        assert await sup.run_once(T0 + timedelta(hours=5)) == []
    finally:
        await sup.stop()
        store.close()
    deadline = (T0 + timedelta(hours=2)).isoformat()
    assert received == [
        {
            "action": "reminded",
            "ref": ref,
            "unit": "nc-water",
            "unit_name": "南昌水务集团",
            "notice": "0791-00000001",
            "deadline": deadline,
        },
        {
            "action": "escalated",
            "ref": ref,
            "unit": "nc-water",
            "unit_name": "南昌水务集团",
            "notice": "0791-00000001",
            "deadline": deadline,
        },
    ]


async def test_a_repeat_call_s_urge_is_posted_with_the_next_round(
    tmp_path: Path, notices: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = notices
    cfg = load_config(SAMPLE)
    store = open_store(lambda: cfg, tmp_path)
    store.clock = lambda: T0
    ref = store.record_call(facts("u1"))
    store.act(ref, "complete", SUP, {"content": "路灯不亮", "category": "help",
                                     "unit": "nc-water", "time_limit": "utilities"})
    again = store.reserve("u2", "13900000003", "12345", T0 + timedelta(hours=1),
                          centre="nanchang")
    store.act(again, "repeat", SUP, {"of": ref})
    sup = Supervision(store, lambda: Settings(60, url, settings_of(cfg).units),
                      clock=lambda: T0 + timedelta(hours=1))
    try:
        done = await sup.run_once()
        assert [(d.ref, d.action) for d in done] == [(ref, "urged")]
        assert await sup.run_once() == []  # sent once
    finally:
        await sup.stop()
        store.close()
    assert received == [{
        "action": "urged", "ref": ref, "unit": "nc-water", "unit_name": "南昌水务集团",
        "notice": "0791-00000001", "deadline": (T0 + timedelta(hours=24)).isoformat(),
    }]


async def test_an_unreachable_notice_url_keeps_the_event(tmp_path: Path) -> None:
    cfg = load_config(SAMPLE)
    store = open_store(lambda: cfg, tmp_path)
    store.clock = lambda: T0
    ref = store.record_call(facts("s2"))
    store.act(
        ref,
        "complete",
        SUP,
        {"content": "x", "category": "help", "unit": "nc-water", "time_limit": "urgent"},
    )
    # port 9 (discard) on loopback: nobody listens, the POST fails fast
    sup = Supervision(store, lambda: Settings(60, "http://127.0.0.1:9/n", {}), clock=lambda: T0)
    done = await sup.run_once(T0 + timedelta(hours=3))
    await sup.stop()
    assert [d.action for d in done] == ["escalated"]
    assert store.get(ref)["escalated_at"] == T0 + timedelta(hours=3)
    store.close()


async def test_the_loop_runs_rounds(tmp_path: Path) -> None:
    import asyncio

    cfg = load_config(SAMPLE)
    store = open_store(lambda: cfg, tmp_path)
    now = [T0]
    store.clock = lambda: now[0]
    ref = store.record_call(facts("s3"))
    store.act(
        ref,
        "complete",
        SUP,
        {"content": "x", "category": "help", "unit": "nc-water", "time_limit": "urgent"},
    )
    now[0] = T0 + timedelta(hours=3)
    sup = Supervision(store, lambda: Settings(0.01, None, {}))
    sup.start()
    try:
        for _ in range(200):
            if store.get(ref)["escalated_at"] is not None:
                break
            await asyncio.sleep(0.01)
    finally:
        await sup.stop()
    assert store.get(ref)["escalated_at"] == T0 + timedelta(hours=3)
    store.close()


def test_notice_body_for_an_unknown_unit() -> None:
    from workorders.lifecycle import Due

    d = Due(1, "JX20261125000001", "reminded", "gone", T0)
    assert notice(d, {}) == {
        "action": "reminded",
        "ref": "JX20261125000001",
        "unit": "gone",
        "unit_name": None,
        "notice": None,
        "deadline": T0.isoformat(),
    }


# ------------------------------------------------------------------ config


def test_sample_policy() -> None:
    cfg = load_config(SAMPLE)
    p = policy_of(cfg)
    assert p.time_limits == {
        "urgent": TimeLimit(seconds=7200),
        "utilities": TimeLimit(seconds=86400),
        "general": TimeLimit(working_days=7),
        "complex": TimeLimit(working_days=15),
    }
    assert p.remind_before == {
        "urgent": TimeLimit(seconds=3600),
        "utilities": TimeLimit(seconds=4 * 3600),
        "general": TimeLimit(working_days=1),
        "complex": TimeLimit(working_days=2),
    }
    assert p.units["nc-water"] == "nanchang"
    assert cfg.users["water-desk"].unit == "nc-water"
    assert cfg.storage.url is None and cfg.workorders.notice_url is None


@pytest.mark.parametrize(
    "text, seconds",
    [(90, 90), ("90", 90), ("90s", 90), ("30m", 1800), ("2h", 7200), ("7d", 604800)],
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "2 weeks", "-1h", True, "1.5h"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


CST = ZoneInfo("Asia/Shanghai")


def test_sample_deadlines_count_working_days_of_the_office_calendar() -> None:
    """The sample's `general` is 7 working days of `office` (Mon-Fri, the National Day
    holidays of 2026, the 调休 Sunday 27 Sep and Saturday 10 Oct): the clock stops on
    the weekends and holidays and runs on the two make-up days."""
    p = policy_of(load_config(SAMPLE))

    def cst(month: int, day: int, hour: int, minute: int) -> datetime:
        return datetime(2026, month, day, hour, minute, tzinfo=CST)

    cases = [
        # Wednesday 25 Nov 15:00: the rest of Wed, Thu, Fri, (weekend), Mon-Thu, Fri to 15:00
        (cst(11, 25, 15, 0), "general", cst(12, 4, 15, 0)),
        # Friday 25 Sep 10:00, 7 working days: 25 (from 10:00), 27 (调休), 28, 29, 30,
        # (1-7 Oct: holidays and the weekend), 8, 9, 10 (调休) until 10:00
        (cst(9, 25, 10, 0), "general", cst(10, 10, 10, 0)),
        # Saturday 28 Nov: the clock starts on Monday 00:00; 15 working days end on a Friday night
        (cst(11, 28, 9, 30), "complex", cst(12, 19, 0, 0)),
        # Calendar limits ignore the calendar
        (cst(10, 1, 9, 0), "utilities", cst(10, 2, 9, 0)),
    ]
    for start, limit, due in cases:
        assert deadline(start.astimezone(UTC), limit, p) == due, (start, limit)
        assert deadline(start.astimezone(UTC), limit, p).tzinfo == UTC


@pytest.mark.parametrize(
    "text, limit",
    [("5wd", TimeLimit(working_days=5)), (" 1 wd", TimeLimit(working_days=1)),
     ("2h", TimeLimit(seconds=7200)), (90, TimeLimit(seconds=90))],
)
def test_time_limits(text: object, limit: TimeLimit) -> None:
    assert parse_time_limit(text) == limit


@pytest.mark.parametrize(
    "text, message",
    [("0wd", "working days must be 1 to 366"), ("367wd", "working days must be 1 to 366"),
     ("1.5wd", "is not a time limit"), ("wd", "is not a time limit"),
     ("5 working days", "is not a time limit"), (True, "expected a duration"),
     (0, "a duration must be positive"), ("0h", "a duration must be positive")],
)
def test_bad_time_limits(text: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_time_limit(text)


def test_a_calendar_that_stops_working_is_a_request_error() -> None:
    policy = Policy(time_limits={"long": TimeLimit(working_days=2)}, default_limit="long",
                    working_day=lambda day: day < date(2026, 12, 1))
    with pytest.raises(RequestError, match="time limit 'long' \\(2wd\\): no working day for 400"):
        deadline(datetime(2026, 11, 30, 12, 0, tzinfo=UTC), "long", policy)


def test_working_day_limits_need_a_calendar_that_works() -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    no_cal = text.replace("  calendar: office ", "  # calendar: office ")
    msgs = _errors(no_cal)
    assert any(
        m.startswith(
            f"hotline.yaml:{_line(no_cal, 'general: 7wd')}: workorders.time_limits.complex: "
            "time limit 'complex' counts working days: name the timetable"
        )
        for m in msgs
    ), msgs
    unknown = text.replace("  calendar: office ", "  calendar: school ")
    msgs = _errors(unknown)
    assert any("workorders.calendar: hours 'school' does not exist; known hours: office" in m
               for m in msgs), msgs
    never = text.replace('mon-fri: ["08:30-12:00", "14:00-18:00"]', "mon-fri: []")
    msgs = _errors(never)
    assert any("workorders.calendar: timetable 'office' has no working day in its week" in m
               for m in msgs), msgs
    bad = text.replace("general: 7wd", "general: 7 weeks")
    msgs = _errors(bad)
    assert any("workorders.time_limits.general: '7 weeks' is not a time limit such as 2h, 7d" in m
               for m in msgs), msgs
    # A calendar limit needs no calendar; `always` counts every day.
    calendar_only = no_cal.replace("7wd", "7d").replace("15wd", "15d")
    assert load_config_text(calendar_only.replace(SAMPLE_REMINDERS, "remind_before: 1h"),
                            "hotline.yaml")
    every = policy_of(load_config_text(text.replace("  calendar: office ", "  calendar: always "),
                                       "hotline.yaml"))
    start = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    assert deadline(start, "general", every) == start + timedelta(days=7)


SAMPLE_REMINDERS = "remind_before: {urgent: 1h, utilities: 4h, general: 1wd, complex: 2wd}"


def test_sample_reminders_per_class_count_working_days(tmp_path: Path) -> None:
    """`general` (7wd) is reminded 1 working day before its deadline, `urgent` (2h) 1 h
    before: one reminder time for both would remind an urgent order at once or a
    general one on a Sunday."""
    cfg = load_config(SAMPLE)
    store = open_store(lambda: cfg, tmp_path)

    def cst(day: int, hour: int, minute: int = 0) -> datetime:
        return datetime(2026, 12, day, hour, minute, tzinfo=CST).astimezone(UTC)

    thursday = datetime(2026, 11, 26, 15, 0, tzinfo=CST).astimezone(UTC)
    store.clock = lambda: thursday
    refs = {}
    for limit in ("general", "complex", "urgent"):
        refs[limit] = ref = store.record_call(facts(f"r-{limit}"))
        store.act(ref, "complete", SUP, {"content": "x", "category": "help",
                                         "unit": "nc-water", "time_limit": limit})
    # general: Thursday 15:00 + 7 working days = Monday 7 Dec 15:00; 1wd before it is
    # Friday 4 Dec 15:00. complex: 15wd = Thursday 17 Dec 15:00; 2wd before: Tuesday 15th.
    assert store.get(refs["general"])["deadline"] == cst(7, 15)
    assert store.get(refs["complex"])["deadline"] == cst(17, 15)

    def near(at: datetime) -> list[str]:
        return [o["ref"] for o in store.running_near(at)]

    def supervise(at: datetime) -> list[tuple[str, str]]:
        return [(d.ref, d.action) for d in store.supervise(at)]

    assert supervise(thursday + timedelta(minutes=59)) == []
    assert supervise(thursday + timedelta(hours=1, minutes=1)) == [(refs["urgent"], "reminded")]
    assert supervise(thursday + timedelta(hours=2, minutes=1)) == [(refs["urgent"], "escalated")]
    assert near(cst(4, 14, 59)) == [refs["urgent"]]  # overdue, and nothing else near yet
    assert near(cst(4, 15, 0)) == [refs["urgent"], refs["general"]]
    assert supervise(cst(4, 15, 1)) == [(refs["general"], "reminded")]
    # not again over the weekend; complex waits for its own 2 working days
    assert supervise(cst(6, 12)) == []
    assert near(cst(15, 14, 59)) == [refs["urgent"], refs["general"]]
    assert supervise(cst(15, 15)) == [(refs["general"], "escalated"), (refs["complex"], "reminded")]
    store.close()


def test_per_class_reminders_name_every_class_and_only_known_ones() -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    assert SAMPLE_REMINDERS in text
    missing = text.replace(SAMPLE_REMINDERS,
                           "remind_before: {urgent: 1h, general: 1wd, complex: 2wd}")
    msgs = _errors(missing)
    assert any(
        m.startswith(f"hotline.yaml:{_line(missing, 'remind_before:')}: workorders.remind_before: "
                     "no reminder time for time limit 'utilities': name every class")
        for m in msgs
    ), msgs
    unknown = text.replace(SAMPLE_REMINDERS, "remind_before: {urgent: 1h, utilities: 4h, "
                           "general: 1wd, complex: 2wd, weekly: 1d}")
    msgs = _errors(unknown)
    assert any("workorders.remind_before.weekly: time limit 'weekly' does not exist" in m
               for m in msgs), msgs
    bad = text.replace(SAMPLE_REMINDERS, "remind_before: {urgent: soon}")
    msgs = _errors(bad)
    assert any("workorders.remind_before: urgent: 'soon' is not a time limit" in m
               for m in msgs), msgs
    # Working days need the calendar, whichever form names them.
    no_cal = text.replace("  calendar: office ", "  # calendar: office ")
    no_cal = no_cal.replace("7wd", "7d").replace("15wd", "15d")
    msgs = _errors(no_cal)
    assert any("workorders.remind_before.complex: remind_before of 'complex' counts working "
               "days: name the timetable" in m for m in msgs), msgs
    msgs = _errors(no_cal.replace(SAMPLE_REMINDERS, "remind_before: 1wd"))
    assert any("workorders.remind_before: remind_before counts working days" in m
               for m in msgs), msgs
    one = load_config_text(no_cal.replace(SAMPLE_REMINDERS, "remind_before: 90m"), "hotline.yaml")
    assert policy_of(one).reminder("general") == TimeLimit(seconds=5400)


def test_a_class_gone_from_the_config_is_reminded_an_hour_ahead() -> None:
    p = Policy(remind_before={"general": TimeLimit(working_days=1)})
    assert p.reminder("general") == TimeLimit(working_days=1)
    assert p.reminder("removed") == p.reminder(None) == TimeLimit(seconds=3600)
    h = p.horizons(T0)
    assert h("removed") == T0 + timedelta(hours=1)
    assert h("general") == T0 + timedelta(days=1)  # every day works by default
    assert h.latest() == T0 + timedelta(days=1)
    # A calendar that stops working counts calendar days (deadlines refuse it, see above).
    stops = Policy(remind_before=TimeLimit(working_days=2), working_day=lambda day: False)
    assert stops.horizons(T0)("general") == T0 + timedelta(days=2)


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config_text(text, "hotline.yaml")
    return [str(i) for i in e.value.issues]


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_unknown_unit_and_time_limit_are_errors_with_lines() -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    text = text.replace("role: unit, unit: nc-water", "role: unit, unit: nc-gas")
    text = text.replace("category_limits: {help: general", "category_limits: {help: weekly")
    text = text.replace(
        "nc-housing: {name: 南昌市住房和城乡建设局, centre: nanchang}",
        "nc-housing: {name: 南昌市住房和城乡建设局, centre: jiujiang}",
    )
    msgs = _errors(text)
    assert (
        f"hotline.yaml:{_line(text, 'unit: nc-gas')}: users.water-desk.unit: "
        "unit 'nc-gas' does not exist" in " | ".join(msgs)
    ), msgs
    assert any(
        m.startswith(
            f"hotline.yaml:{_line(text, 'help: weekly')}: workorders.category_limits.help: "
            "time limit 'weekly' does not exist; known time_limits: complex, general, urgent, "
            "utilities"
        )
        for m in msgs
    ), msgs
    assert any("units.nc-housing.centre: centre 'jiujiang' does not exist" in m for m in msgs), msgs


def test_unit_user_needs_a_unit_and_durations_are_checked() -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    msgs = _errors(text.replace("role: unit, unit: nc-water,", "role: unit,"))
    assert any("users.water-desk: a unit user needs the unit they act for" in m for m in msgs), msgs
    msgs = _errors(text.replace("role: agent,", "role: agent, unit: nc-water,", 1))
    assert any("users.zhangwei.unit: only a user with role unit has a unit" in m for m in msgs), (
        msgs
    )
    text = text.replace("remind_before: {urgent: 1h, utilities: 4h, general: 1wd, complex: 2wd}",
                        "remind_before: soon")
    text = text.replace("url: null", "url: mysql://x")
    msgs = _errors(text)
    assert any("workorders.remind_before: 'soon' is not a time limit such as 2h" in m
               for m in msgs), msgs
    assert any("storage.url: storage.url must be a sqlite:/// or postgresql" in m for m in msgs), (
        msgs
    )


def test_the_live_policy_is_built_once_per_config() -> None:
    from workorders.plugin import live_policy

    first, second = load_config(SAMPLE), load_config(SAMPLE)
    live = [first]
    policy = live_policy(lambda: live[0])
    p = policy()
    assert policy() is p  # per request: the same object, no rebuilding
    live[0] = second  # an apply
    q = policy()
    assert q is not p and policy() is q
    assert (q.time_limits, q.remind_before) == (policy_of(second).time_limits,
                                                policy_of(second).remind_before)
