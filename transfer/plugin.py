"""Wiring of the transfer service into the controller (no logic here)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from hotline.storage import UNAVAILABLE
from workorders.http import jsonable

from .origin import OriginRecorder, read_origin
from .services import EVENTS, TransferService
from .store import TransferStore

log = logging.getLogger(__name__)

HISTORY_BUDGET = 1.0  # seconds the caller's history may take on the agent's screen


class TransferPlugin:
    """Created with the controller's :class:`hotline.app.App`; ``attach`` to the AMI client."""

    def __init__(self, app: Any) -> None:
        store = TransferStore.open(app.config.storage.url, app.instance.state)
        self.service = TransferService(config=lambda: app.config, ami=lambda: app.ami, store=store)
        self.service.load()
        self.origins = OriginRecorder(lambda: app.config, app.record_call_path)

        async def origin_of(uniqueid: str) -> dict[str, Any] | None:
            return await read_origin(app.redis, uniqueid)

        self.service.origin_of = origin_of

        async def history_of(number: str, case: str | None) -> list[dict[str, Any]] | None:
            return await read_history(getattr(app, "orders", None), number, case)

        self.service.history_of = history_of

    def attach(self, client: Any) -> None:
        """Follow the transfer events; reconcile open transfers on every boot/reconnect."""
        for name in EVENTS:
            client.on(name, self.service.on_event)
        client.on("UserEvent", self.origins.on_event)
        client.on_booted(self.service.reconcile_all)

    async def close(self) -> None:
        await self.service.close()


async def read_history(
    orders: Any, number: str, case: str | None, budget: float | None = None
) -> list[dict[str, Any]] | None:
    """The caller's last orders for the agent's screen, as JSON; None without a store,
    with its database down, or slower than ``budget`` (the screen shows the call
    without them rather than wait)."""
    if orders is None:
        return None
    try:
        history = await asyncio.wait_for(
            asyncio.to_thread(orders.caller_history, number, exclude=case),
            HISTORY_BUDGET if budget is None else budget)
    except (*UNAVAILABLE, TimeoutError) as e:
        log.warning("caller history not read: %s", str(e) or "the database took too long")
        return None
    return cast(list[dict[str, Any]], jsonable(history))
