"""Wiring of the survey service into the controller (no logic here).

After the work orders are merged, the wiring is one line in the controller::

    orders.on_closed(surveys.service.schedule); surveys.service.on_result = orders.record_survey
"""

from __future__ import annotations

from typing import Any

from .survey_service import EVENTS, SurveyService, log_result
from .survey_store import SurveyStore


class SurveyPlugin:
    """Created with the controller's :class:`hotline.app.App`; ``attach`` to the AMI client."""

    def __init__(self, app: Any) -> None:
        store = SurveyStore.in_state_dir(app.instance.state)
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
