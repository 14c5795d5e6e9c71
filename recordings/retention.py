"""Retention of recordings: which are due (pure) and the purge job that deletes them.

``recordings.retention`` gives a period per kind (``call: 180d``, ``survey:
90d``). A recording is due when its end (its start, if it never ended) is
older than its kind's period. The purge deletes the file and marks the row
(``purged_at``) in the same step, one recording at a time: a row is never
marked while its file stays, and a file already missing does not stop the
purge (the row is marked and the absence logged). Every removal is logged.
The controller runs the job every ``recordings.purge_every``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .paths import PathRefused, resolve_inside
from .store import Recording, RecordingStore

log = logging.getLogger(__name__)


def due_for_purge(recordings: Iterable[Recording], retention: Mapping[str, int],
                  now: float) -> list[Recording]:
    """The recordings whose kind's retention period has passed at ``now`` (pure)."""
    out = []
    for r in recordings:
        if r.purged_at is not None or r.kind not in retention:
            continue
        end = r.ended_at if r.ended_at is not None else r.started_at
        if end + retention[r.kind] <= now:
            out.append(r)
    return out


@dataclass(frozen=True)
class Purged:
    id: int
    call_id: str
    kind: str
    path: str
    bytes: int
    file: str  # "deleted", "missing" or "refused"


def purge(store: RecordingStore, root: Path, retention: Mapping[str, int],
          now: float | None = None) -> list[Purged]:
    """Delete every recording due at ``now``: file and row together; returns what went."""
    now = time.time() if now is None else now
    out: list[Purged] = []
    for r in due_for_purge(store.kept(), retention, now):
        size, state = 0, "deleted"
        try:
            f = resolve_inside(root, r.path)
            try:
                size = f.stat().st_size
                f.unlink()
            except FileNotFoundError:
                state = "missing"
            else:
                _prune_empty_dirs(f.parent, root)
        except PathRefused as e:
            state = "refused"
            log.error("recording %s: stored path refused, file left alone: %s", r.id, e)
        except OSError as e:  # permissions, I/O: keep the row, try again next time
            log.error("recording %s (%s): could not delete %s: %s", r.id, r.call_id, r.path, e)
            continue
        store.mark_purged(r.id, now)
        p = Purged(r.id, r.call_id, r.kind, r.path, size, state)
        log.info("purged recording %s of call %s (%s, %s, %d bytes, file %s)",
                 p.id, p.call_id, p.kind, p.path, p.bytes, p.file)
        out.append(p)
    return out


def _prune_empty_dirs(folder: Path, root: Path) -> None:
    """Remove the emptied day/month/year folders, never the root."""
    base = root.resolve()
    cur = folder.resolve()
    while cur != base and cur.is_relative_to(base):
        try:
            cur.rmdir()
        except OSError:
            return
        cur = cur.parent


class PurgeJob:
    """Runs :func:`purge` every ``every()`` seconds until closed (controller task)."""

    def __init__(self, run: Callable[[], list[Purged]], every: Callable[[], float]):
        self.run = run
        self.every = every
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop(), name="recordings-purge")

    async def once(self) -> list[Purged]:
        return await asyncio.to_thread(self.run)

    async def _loop(self) -> None:
        while True:
            try:
                gone = await self.once()
                if gone:
                    log.info("recordings purge: %d removed", len(gone))
            except Exception as e:  # noqa: BLE001 - a failed run is retried next period
                log.error("recordings purge failed: %s", e)
            await asyncio.sleep(self.every())

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
