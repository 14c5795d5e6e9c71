from __future__ import annotations

from datetime import datetime

import pytest

from queues import hours

# A Wednesday morning in Nanchang: every centre of the sample is open.
OFFICE_HOURS = datetime(2026, 11, 25, 10, 0, tzinfo=hours.DEFAULT_TZ)


@pytest.fixture(autouse=True)
def _office_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests run at a fixed time, never at whatever the wall clock says."""
    monkeypatch.setattr(hours, "current_time", lambda: OFFICE_HOURS)
