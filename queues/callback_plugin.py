"""Wiring of the call-back service into the controller (no logic here)."""

from __future__ import annotations

from typing import Any

from .callback_service import WAKE_EVENTS, CallbackService
from .callback_store import CallbackStore
from .position import Arrivals


class CallbackPlugin:
    """Created with the controller's :class:`hotline.app.App`; ``attach`` to the AMI client."""

    def __init__(self, app: Any) -> None:
        self.arrivals = Arrivals()
        store = CallbackStore.open(app.config.storage.url, app.instance.state)
        audit = app.agents.audit if app.agents is not None else None
        self.service = CallbackService(
            config=lambda: app.config,
            ami=lambda: app.ami,
            store=store,
            queue_log=app.instance.host("log", "queue_log"),
            arrivals=self.arrivals,
            audit=audit,
        )
        app.arrivals = self.arrivals
        app.callbacks = self.service

    def attach(self, client: Any) -> None:
        """Look again on the queue events; reconcile on every boot/reconnect."""
        for name in WAKE_EVENTS:
            client.on(name, self.service.on_event)
        client.on_booted(self.service.asterisk_booted)

    async def start(self) -> None:
        await self.service.start()

    async def close(self) -> None:
        await self.service.stop()
