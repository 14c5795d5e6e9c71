"""Wiring of the survey service into the controller (no logic here).

:func:`connect` ties it to the work orders: a closed order schedules its survey,
and the survey's answer is stored with the order (which may reopen it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from datetime import UTC, datetime
from typing import Any

from hotline.storage import store_url

from .store import OrderNotFound
from .survey_service import EVENTS, SurveyService, log_result
from .survey_store import FILENAME, SurveyStore

log = logging.getLogger(__name__)


class SurveyPlugin:
    """Created with the controller's :class:`hotline.app.App`; ``attach`` to the AMI client."""

    def __init__(self, app: Any) -> None:
        store = SurveyStore(store_url(app.config.storage.url, app.instance.state, FILENAME))
        self.service = SurveyService(
            config=lambda: app.config, ami=lambda: app.ami, store=store, on_result=log_result
        )
        app.surveys = self.service

    def attach(self, client: Any) -> None:
        """Follow the survey calls' events; reconcile on every boot/reconnect."""
        client.on(EVENTS[0], self.service.on_originate_response)
        client.on(EVENTS[1], self.service.on_hangup)
        client.on_booted(self.service.asterisk_booted)

    async def start(self) -> None:
        await self.service.start()

    async def close(self) -> None:
        await self.service.stop()


def connect(orders: Any, service: SurveyService) -> None:
    """Closed orders → survey jobs; survey results → the orders (``record_survey``);
    a supervisor reads the surveys of the orders they may see (``visible_refs``)."""

    def closed(order: dict[str, Any]) -> None:
        # called where the transition ran: a worker thread of the HTTP handler
        at = order.get("closed_at")
        service.soon(functools.partial(service.schedule, centre=order.get("centre")),
                     order["ref"], order["caller"], at.timestamp() if at else time.time())

    async def result(ref: str, outcome: str, at: float) -> None:
        try:
            await asyncio.to_thread(orders.record_survey, ref, outcome,
                                    datetime.fromtimestamp(at or time.time(), UTC))
        except OrderNotFound:  # a survey an admin scheduled by hand for no order: done
            log.warning("survey result %s for order %s: no such work order", outcome, ref)

    orders.on_closed(closed)
    service.on_result = result
    service.visible_orders = orders.visible_refs
