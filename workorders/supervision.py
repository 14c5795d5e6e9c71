"""Supervision (督办): every ``workorders.supervise_every`` seconds, remind the unit of
running orders near their deadline and escalate overdue ones, each once per dispatch;
and pass on the urges (催办) of repeat calls (``repeat``, see the store).

The selection is pure (:func:`workorders.lifecycle.due`); the store marks each order
and writes the ``reminded`` / ``escalated`` event in one transaction, so two rounds
(or two controllers on one PostgreSQL) never remind twice. Each act is then POSTed
as JSON to ``workorders.notice_url`` when configured (a failed POST is logged; the
event on the order stays the record).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from hotline.storage import UNAVAILABLE, reason

from .lifecycle import Due
from .store import WorkOrderStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    every: float  # seconds between rounds
    notice_url: str | None
    units: Mapping[str, tuple[str, str | None]]  # unit id -> (name, notice contact)


def notice(d: Due, units: Mapping[str, tuple[str, str | None]]) -> dict[str, Any]:
    """The JSON body POSTed for one reminder or escalation."""
    name, contact = units.get(d.unit or "", (None, None))
    return {
        "action": d.action,
        "ref": d.ref,
        "unit": d.unit,
        "unit_name": name,
        "notice": contact,
        "deadline": d.deadline.isoformat(),
    }


class Supervision:
    def __init__(
        self,
        store: WorkOrderStore,
        settings: Callable[[], Settings],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock or store.clock
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def run_once(self, now: datetime | None = None) -> list[Due]:
        """One round: mark what is due (reminders, escalations, and the urges (催办) of
        repeat calls since the last round), then send the notices."""
        # the transaction runs in a worker thread, off the loop of the FastAGI sessions
        done = await asyncio.to_thread(self.store.supervise, now or self.clock())
        s = self.settings()
        for d in done:
            log.info("order %s %s (unit %s, deadline %s)", d.ref, d.action, d.unit, d.deadline)
            if s.notice_url:
                await self._post(s.notice_url, notice(d, s.units))
        return done

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            async with self._session.post(url, json=body) as r:
                if r.status >= 300:
                    log.warning("notice for %s refused by %s: HTTP %s", body["ref"], url, r.status)
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("could not send the notice for %s to %s: %s", body["ref"], url, e)

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except UNAVAILABLE as e:
                log.warning("supervision: database unavailable (%s); next round in %.0f s",
                            reason(e), self.settings().every)
            except Exception:  # noqa: BLE001 - a bad round must not stop supervision
                log.exception("supervision round failed")
            await asyncio.sleep(self.settings().every)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="order-supervision")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
