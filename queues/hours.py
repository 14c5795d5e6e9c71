"""Timetables from ``hours:`` in the YAML: opening hours and working days (pure, no I/O).

A centre is open when its hours are ``always``, or when ``now`` (in the
hotline's time zone) falls in one of the weekly spans of its weekday, unless
the date is a holiday; a *workday* (調休, a weekend day worked in exchange for
a holiday) is open with the Monday spans.

A *working day* of a timetable is a day it opens at all (every day for
``always``): one rule, :func:`_day_spans`, decides both.  Work-order time
limits in working days run on those days only (:func:`add_working_days`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dialplan.model import DAYS, Config, Hours

DEFAULT_TZ = ZoneInfo("Asia/Shanghai")
MAX_REST_DAYS = 400  # a calendar without a working day for longer never works


def current_time() -> datetime:
    """The hotline's clock (China Standard Time); tests replace it."""
    return datetime.now(DEFAULT_TZ)


def _spans(hours: Hours, day: str) -> list[tuple[time, time]]:
    out: list[tuple[time, time]] = []
    for days, spans in hours.weekly.items():
        if day in Hours.expand_days(days):
            for span in spans:
                a, b = span.split("-")
                start = time(int(a[:2]), int(a[3:]))
                end = time(23, 59, 59, 999999) if b == "24:00" else time(int(b[:2]), int(b[3:]))
                out.append((start, end))
    return out


def _day_spans(hours: Hours, day: date) -> list[tuple[time, time]]:
    """The spans ``hours`` opens on the local date ``day`` (not ``always``): none on a
    holiday, Monday's on a workday (调休), else its weekday's."""
    if day in hours.holidays:
        return []
    return _spans(hours, "mon" if day in hours.workdays else DAYS[day.weekday()])


def is_open(hours: Hours, now: datetime) -> bool:
    if hours.always:
        return True
    t = now.time()
    return any(start <= t < end for start, end in _day_spans(hours, now.date()))


def is_working_day(hours: Hours | None, day: date) -> bool:
    """``day`` (a local date) is a day ``hours`` opens at all (``None``: ``always``)."""
    return hours is None or hours.always or bool(_day_spans(hours, day))


def add_working_days(start: datetime, days: int, working: Callable[[date], bool]) -> datetime:
    """When ``days`` x 24 h have run on a clock that runs on working days only.

    Days are China's dates (:data:`DEFAULT_TZ`, no daylight saving: every day is
    24 h); the clock stops at midnight before a rest day and starts again at the
    midnight that begins the next working day.  So one working day from Friday
    15:00 ends on Monday 15:00, and from Saturday 10:00 at the end of Monday.
    The result is in ``start``'s time zone.  Raises
    ``ValueError`` after more than a year in a row without a working day (a
    calendar that never works; validation refuses those).
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if days <= 0:
        return start
    t = start.astimezone(DEFAULT_TZ)
    left = timedelta(days=days)
    day = t.date()
    resting = 0  # days in a row without work
    while resting <= MAX_REST_DAYS:
        midnight = datetime.combine(day + timedelta(days=1), time(0), DEFAULT_TZ)
        if working(day):
            resting = 0
            if left <= midnight - t:
                return (t + left).astimezone(start.tzinfo)
            left -= midnight - t
        else:
            resting += 1
        t, day = midnight, day + timedelta(days=1)
    since = day - timedelta(days=resting)
    raise ValueError(f"no working day for {MAX_REST_DAYS} days from {since}")


def working_calendar(cfg: Config) -> Callable[[date], bool]:
    """The working-day test of ``workorders.calendar`` (every day: unset or ``always``)."""
    name = cfg.workorders.calendar
    hours = cfg.hours.get(name) if name not in (None, "always") else None

    def working(day: date) -> bool:
        return is_working_day(hours, day)

    return working


def centre_open(cfg: Config, centre_id: str, now: datetime | None = None) -> bool:
    centre = cfg.centres[centre_id]
    if centre.hours == "always":
        return True
    now = now or current_time()
    return is_open(cfg.hours[centre.hours], now.astimezone(DEFAULT_TZ))


def open_centre(cfg: Config, centre_id: str, now: datetime | None = None) -> str:
    """The centre itself when open, else the nearest open parent (the province is 24/7)."""
    seen: set[str] = set()
    cur: str | None = centre_id
    while cur is not None and cur not in seen:
        if centre_open(cfg, cur, now):
            return cur
        seen.add(cur)
        cur = cfg.centres[cur].parent
    return next(cid for cid, c in cfg.centres.items() if c.level == "province")
