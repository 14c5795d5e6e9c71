from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dialplan.validate import load_config_text
from ivr.locality import Locality, local_queue
from queues.hours import DEFAULT_TZ, centre_open, is_open, open_centre

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
    from datetime import timezone

    # 02:00 UTC is 10:00 in Nanchang.
    assert centre_open(CFG, "nanchang", datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
