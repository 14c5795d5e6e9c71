"""Wiring of call recordings into the controller (no logic here)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from hotline.runtime import SetupError
from hotline.storage import store_url

from .retention import PurgeJob, purge
from .service import EVENTS, RecordingService
from .store import FILENAME, RecordingStore

log = logging.getLogger(__name__)


def open_store(cfg: Any, state: Path) -> RecordingStore:
    """The database of ``storage.url`` (the one the work orders use), else SQLite in the
    instance ``state`` folder."""
    return RecordingStore(store_url(cfg.storage.url, state, FILENAME))


class RecordingsPlugin:
    """Created with the controller's :class:`hotline.app.App`; ``attach`` to the AMI client."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.store = open_store(app.config, app.instance.state)
        self.service = RecordingService(store=self.store, root=self.root, ami=lambda: app.ami,
                                        audit=self._audit, config=lambda: app.config)
        self.service.load()
        self.purge = PurgeJob(self.purge_now, lambda: float(app.config.recordings.purge_every))

    def root(self) -> Path:
        """The recordings root as the host sees it (Asterisk sees /srv/hotline/NAME/ROOT)."""
        return self.app.instance.host(self.app.config.recordings.root)

    def prepare_root(self) -> None:
        """A configured root other than the instance's recordings/ is made writable for
        Asterisk's user (MixMonitor creates the dated folders below it)."""
        root = self.root()
        if root.is_dir():
            return
        root.mkdir(parents=True, exist_ok=True)
        try:
            uid, gid = self.app.instance.root.user_ids()
            os.chown(root, uid, gid)
        except (OSError, SetupError) as e:  # logged; MixMonitor's own error will follow
            log.error("could not hand %s to Asterisk's user: %s", root, e)

    def place_from_orders(self) -> int:
        """Recordings with no centre yet take their call's from the work orders: rows
        of an earlier release, files adopted after the call's facts were delivered.
        Returns how many were placed."""
        orders = getattr(self.app, "orders", None)
        if orders is None:
            return 0
        n = self.store.set_centres(orders.call_centres(self.store.unplaced_calls()))
        if n:
            log.info("recordings: %d placed in their call's centre from the work orders", n)
        return n

    def purge_now(self) -> list[Any]:
        self.service.adopt_files()  # files written while the controller was down
        self._place()
        r = self.app.config.recordings.retention
        return purge(self.store, self.root(), {"call": r.call, "survey": r.survey})

    async def _audit(self, who: Any, action: str, seat: str, **details: object) -> None:
        agents = self.app.agents
        if agents is None:
            log.info("audit (no agent service): %s %s %s %s", who.name, action, seat, details)
            return
        await agents.audit(who, action, seat, **details)

    def attach(self, client: Any) -> None:
        for name in EVENTS:
            client.on(name, self.service.on_event)
        client.on_booted(self.service.reconcile)

    def _place(self) -> None:
        try:
            self.place_from_orders()
        except SQLAlchemyError as e:  # the next purge round tries again
            log.error("recordings not placed from the work orders: %s", e)

    async def start(self) -> None:
        self.prepare_root()
        await asyncio.to_thread(self._place)
        self.purge.start()

    async def close(self) -> None:
        await self.purge.close()
        await self.service.close()


def placing_recordings(sink: Callable[[Any], Any], store: RecordingStore) -> Callable[[Any], Any]:
    """The call-facts sink ``sink`` (the work orders' ``record_calls``, a batch of calls),
    then each call's centre onto its recordings (:meth:`RecordingStore.set_centres`), so
    the supervisors of that centre see them. A recordings database that fails is logged
    and does not fail the delivery: the recording keeps the centre it had (unknown: fail
    closed)."""

    def deliver(batch: Any) -> Any:
        result = sink(batch)
        try:
            # on the store's writer thread: after the rows of these calls' recordings,
            # which the service hands to it when the recording starts
            store.db.submit(store.set_centres, {f.call_id: f.centre for f in batch}).result()
        except SQLAlchemyError as e:
            log.error("recordings of %d call(s) not placed in their centres: %s", len(batch), e)
        return result

    return deliver
