from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from dialplan.validate import load_config_text
from ivr.locality import Locality, local_queue
from queues.hours import (
    DEFAULT_TZ,
    add_working_days,
    centre_open,
    is_open,
    is_working_day,
    open_centre,
    working_calendar,
)

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
CFG = load_config_text(SAMPLE.read_text(encoding="utf-8"), "hotline.yaml")


def at(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=DEFAULT_TZ)


@pytest.mark.parametrize(
    ("when", "open_"),
    [
        (at(2026, 11, 25, 8, 29), False),  # Wednesday before opening
        (at(2026, 11, 25, 8, 30), True),
        (at(2026, 11, 25, 12, 0), False),  # lunch break
        (at(2026, 11, 25, 14, 0), True),
        (at(2026, 11, 25, 17, 59), True),
        (at(2026, 11, 25, 18, 0), False),
        (at(2026, 11, 28, 10, 0), False),  # Saturday
        (at(2026, 10, 1, 10, 0), False),  # National Day (a Thursday) is a holiday
        (at(2026, 10, 10, 10, 0), True),  # Saturday worked instead (調休)
    ],
)
def test_office_hours(when: datetime, open_: bool) -> None:
    assert is_open(CFG.hours["office"], when) is open_


def test_province_is_always_open() -> None:
    assert centre_open(CFG, "province", at(2026, 10, 1, 3, 0))


def test_a_closed_city_hands_its_callers_to_the_province() -> None:
    night = at(2026, 11, 25, 22, 0)
    assert open_centre(CFG, "ganzhou", night) == "province"
    assert local_queue(CFG, Locality("ganzhou", "yudu"), night) == "province"
    day = at(2026, 11, 25, 10, 0)
    assert local_queue(CFG, Locality("ganzhou", "yudu"), day) == "ganzhou-yudu"
    assert local_queue(CFG, Locality("ganzhou", None), day) == "ganzhou"


def test_utc_times_are_read_in_china_time() -> None:
    # 02:00 UTC is 10:00 in Nanchang.
    assert centre_open(CFG, "nanchang", datetime(2026, 11, 25, 2, 0, tzinfo=UTC))


# ------------------------------------------------------------ working days


def _weekdays_only(day: date) -> bool:
    return day.weekday() < 5


@pytest.mark.parametrize(
    "start, days, due",
    [
        # Friday 15:00 + 1: the clock stops at Friday midnight and runs again on Monday.
        (datetime(2026, 11, 27, 15, 0), 1, datetime(2026, 11, 30, 15, 0)),
        # Saturday 10:00 + 1: nothing runs before Monday 00:00; Monday is the whole day.
        (datetime(2026, 11, 28, 10, 0), 1, datetime(2026, 12, 1, 0, 0)),
        # Monday 00:00 + 5: the whole week, ending at Friday midnight.
        (datetime(2026, 11, 30, 0, 0), 5, datetime(2026, 12, 5, 0, 0)),
        # Tuesday 23:59 + 2: one minute of Tuesday, Wednesday, then Thursday to 23:59.
        (datetime(2026, 12, 1, 23, 59), 2, datetime(2026, 12, 3, 23, 59)),
    ],
)
def test_add_working_days_stops_the_clock_on_rest_days(
    start: datetime, days: int, due: datetime
) -> None:
    got = add_working_days(start.replace(tzinfo=DEFAULT_TZ), days, _weekdays_only)
    assert got == due.replace(tzinfo=DEFAULT_TZ)


def test_add_working_days_counts_china_dates_and_keeps_the_start_zone() -> None:
    # Friday 23:30 UTC is Saturday 07:30 in China: a rest day, so the clock starts on Monday.
    start = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)
    got = add_working_days(start, 1, _weekdays_only)
    assert got == datetime(2026, 12, 1, 0, 0, tzinfo=DEFAULT_TZ)
    assert got.tzinfo == UTC


def test_holidays_and_workdays_decide_the_working_days() -> None:
    cfg = load_config_text(SAMPLE.read_text(encoding="utf-8"), "hotline.yaml")
    office = cfg.hours["office"]
    assert is_working_day(office, date(2026, 11, 27))  # a Friday
    assert not is_working_day(office, date(2026, 11, 28))  # a Saturday
    assert not is_working_day(office, date(2026, 10, 1))  # National Day
    assert is_working_day(office, date(2026, 9, 27))  # the 调休 Sunday
    assert is_working_day(None, date(2026, 10, 1))  # always
    working = working_calendar(cfg)
    assert working(date(2026, 10, 10)) and not working(date(2026, 10, 2))


def test_a_one_day_week_counts_a_year_of_working_days() -> None:
    start = datetime(2026, 1, 1, tzinfo=DEFAULT_TZ)  # a Thursday
    due = add_working_days(start, 366, lambda day: day.weekday() == 5)  # Saturdays only
    # The first Saturday is 3 Jan 2026; the 366th, 365 weeks later, is 1 Jan 2033.
    assert due == datetime(2033, 1, 2, 0, 0, tzinfo=DEFAULT_TZ)
    assert due - start > timedelta(days=7 * 365)


def test_add_working_days_refuses_a_calendar_that_never_works() -> None:
    with pytest.raises(ValueError, match="no working day for 400 days from 2026-01-01"):
        add_working_days(datetime(2026, 1, 1, tzinfo=DEFAULT_TZ), 3, lambda _day: False)
    with pytest.raises(ValueError, match="timezone-aware"):
        add_working_days(datetime(2026, 1, 1), 1, _weekdays_only)
