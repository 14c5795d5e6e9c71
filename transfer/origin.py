"""Where a call came from, for reports and the agent: legacy and relay numbers (issue 5).

The dialplan of a legacy number (:mod:`dialplan.legacy`) raises the UserEvent
``HotlineOrigin`` (number, mode, department; for a relay: the city centre's case
reference and the caller's locality, already checked by the dialplan). This
module turns it into the ``origin`` field of the call's Redis hash
``hotline:call:<uniqueid>``, beside the IVR path, after checking every value
again against the live config: an event naming a number that is not a legacy
number of this config is logged and dropped.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dialplan.model import Config
from hotline import channel_vars as cv

log = logging.getLogger(__name__)

Record = Callable[..., Awaitable[None]]


def origin_record(cfg: Config, ev: dict[str, str], now: float) -> dict[str, Any] | None:
    """What to store for one ``HotlineOrigin`` event, or None if it is not ours (pure)."""
    if ev.get("Mode") == "emergency":  # transferred in by 110/119/... (from-emergency)
        frm = ev.get("From", "")
        return {"mode": "emergency", "from": frm, "at": now} if frm.isdigit() else None
    n = cfg.number(ev.get("Number", ""))
    if n is None or n.kind != "legacy":
        return None
    rec: dict[str, Any] = {"number": n.number, "mode": n.mode, "centre": n.centre, "at": now}
    if n.department:
        rec["department"] = n.department
        rec["department_name"] = cfg.departments[n.department].name
    if n.mode == "relay":
        rec["trunk"] = n.trunk
        case = ev.get("Case", "")
        rec["partner_case"] = case if re.fullmatch(cv.CASE_RE, case) else None
        city, _, county = ev.get("Locality", "").partition("/")
        if city in cfg.cities:
            rec["city"] = city
            if county in cfg.cities[city].counties:
                rec["county"] = county
    return rec


class OriginRecorder:
    def __init__(self, config: Callable[[], Config], record: Record) -> None:
        self.config, self.record = config, record

    def on_event(self, event: Any) -> Awaitable[None] | None:
        if (event.get("Event") or "") != "UserEvent" or event.get("UserEvent") != cv.EVENT_ORIGIN:
            return None
        from .services import fields

        return self._store(fields(event))

    async def _store(self, ev: dict[str, str]) -> None:
        uid = ev.get("Uniqueid", "")
        rec = origin_record(self.config(), ev, time.time())
        if rec is None or not uid:
            log.warning(
                "[%s] HotlineOrigin for %r ignored: not a legacy number", uid, ev.get("Number")
            )
            return
        log.info("[%s] call came in (%s): %s", uid, rec["mode"], rec)
        await self.record(uid, rec, field="origin")


async def read_origin(redis: Any, uniqueid: str) -> dict[str, Any] | None:
    """The stored origin of a call, or None (no Redis, nothing stored, Redis trouble)."""
    if redis is None:
        return None
    try:
        raw = await redis.hget(cv.call_key(uniqueid), "origin")
    except Exception as e:  # noqa: BLE001 - storage trouble only hides the origin
        log.warning("[%s] could not read the call's origin: %s", uniqueid, e)
        return None
    if not raw:
        return None
    rec: dict[str, Any] = json.loads(raw)
    return rec
