"""The case reference of a call in progress (受理编号), for the caller's channel.

The IVR (first thing) and the queue entry (calls that skip the IVR: legacy
numbers forwarded in, transfers in from 110, a city centre's relay) open the
call's work order as soon as the call arrives -- ``WorkOrderStore.reserve``,
idempotent by call id -- and put its reference in ``HOTLINE_CASE_REF``
(inherited by the legs the call dials). Hand-offs send it in ``X-Hotline-Case``,
a warm transfer can announce it, the agent reads it with ``GET /orders?call_id=``.
The order is completed from the call's facts when the call ends.

Nothing here may hold up a caller: a database that does not answer is logged and
the call goes on without a reference.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from hotline import channel_vars as cv

log = logging.getLogger(__name__)

BUDGET = 1.0  # seconds the store may take before the call goes on without a reference


async def open_case(ch: Any, app: Any, budget: float = BUDGET) -> str | None:
    """Reserve the work order of ``ch``'s call and set ``HOTLINE_CASE_REF``; its reference."""
    orders = getattr(app, "orders", None)
    if orders is None:
        return None
    env = ch.env
    number = env.dnid if env.dnid.isdigit() else ""
    centre = next((n.centre for n in app.config.numbers if n.number == number), None)
    try:
        ref = await asyncio.wait_for(
            asyncio.to_thread(
                orders.reserve, env.uniqueid, env.callerid or "", number, datetime.now(UTC),
                origin=number or "12345", centre=centre,
            ),
            budget,
        )
    except Exception as e:  # noqa: BLE001 - the caller never waits for the paperwork
        ch.log.warning("no case reference for this call: %s", e or type(e).__name__)
        return None
    await ch.set_variable(f"__{cv.CASE_REF}", ref)
    return str(ref)
