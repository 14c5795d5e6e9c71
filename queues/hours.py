"""Opening hours of a centre, from ``hours:`` in the YAML (pure, no I/O).

A centre is open when its hours are ``always``, or when ``now`` (in the
hotline's time zone) falls in one of the weekly spans of its weekday, unless
the date is a holiday; a *workday* (調休, a weekend day worked in exchange for
a holiday) is open with the Monday spans.
"""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from dialplan.model import DAYS, Config, Hours

DEFAULT_TZ = ZoneInfo("Asia/Shanghai")


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


def is_open(hours: Hours, now: datetime) -> bool:
    if hours.always:
        return True
    today = now.date()
    if today in hours.holidays:
        return False
    day = "mon" if today in hours.workdays else DAYS[today.weekday()]
    t = now.time()
    return any(start <= t < end for start, end in _spans(hours, day))


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
