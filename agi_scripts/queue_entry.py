"""``queue-entry``: the position that keeps a caller's place in time (queues/position.py).

Dialplan: ``Gosub(hotline-queue-position,s,1)`` before each ``Queue()``, which
sets ``HOTLINE_FIRST_QUEUED`` (first arrival at any queue), runs this script
under ``TIMEOUT(absolute)=3`` and passes ``HOTLINE_QUEUE_POSITION`` to Queue().
Nothing here may keep a caller from the queue: when Asterisk cannot be asked
(AMI down, slow) the script logs why and returns without a position, and the
caller joins at the end of the line as without the controller.

It also sets ``HOTLINE_WAIT_MINUTES``, the expected wait the dialplan announces
on entry (:mod:`queues.estimate`: why our own figure rather than Asterisk's).
"""

from __future__ import annotations

import asyncio
from typing import Any

from agi_scripts import ROUTES
from hotline import channel_vars as cv
from hotline.ami import AmiError
from hotline.app import App
from queues.estimate import expected_minutes, queue_now
from queues.position import Arrivals, fields, parse_epoch, position_for
from workorders.intake import open_case

LOOKUP_BUDGET = 1.5  # seconds for QueueStatus + Getvars; the dialplan allows 3
CASE_BUDGET = 0.5  # seconds for the work order's reference (workorders.intake)


@ROUTES.register(cv.SCRIPT_QUEUE_ENTRY)
async def queue_entry(ch: Any, app: App) -> None:
    # Calls that skipped the IVR (legacy numbers, transfers in) get their case here.
    await open_case(ch, app, budget=CASE_BUDGET)
    queue = await ch.get_variable(cv.QUEUE)
    first = parse_epoch(await ch.get_variable(cv.FIRST_QUEUED))
    if not queue or queue not in app.config.queues or first is None:
        ch.log.warning(
            "queue-entry without a known queue (%r) or first arrival; no position", queue
        )
        return
    arrivals: Arrivals = app.arrivals if app.arrivals is not None else Arrivals()
    arrivals.remember(ch.uniqueid, first)
    ami = app.ami
    if ami is None or not ami.connected:
        ch.log.info("queue %s: AMI not connected, joining at the end of the line", queue)
        return
    try:
        async with asyncio.timeout(LOOKUP_BUDGET):
            items = [fields(m) for m in await ami.action_list("QueueStatus", Queue=queue)]
            waiting = (await arrivals.from_items(ami, items)).get(queue, [])
    except (AmiError, ConnectionError, TimeoutError) as e:
        ch.log.warning("queue %s: could not list the waiting callers (%s); no position", queue, e)
        return
    others = [w for w in waiting if w.uniqueid != ch.uniqueid]
    pos = position_for(others, first)
    now = queue_now(items, queue)
    minutes = expected_minutes(pos - 1 if pos else len(others), now)
    if minutes is not None:
        await ch.set_variable(cv.WAIT_MINUTES, str(minutes))
        ch.log.info("queue %s: expected wait about %d min (%d serving, %d free, talk %.0f s)",
                    queue, minutes, now.serving, now.free, now.talk_s)
    if pos is None:
        ch.log.info(
            "queue %s: first queued %.0f, %d waiting, joins at the end", queue, first, len(others)
        )
        return
    await ch.set_variable(cv.QUEUE_POSITION, str(pos))
    ch.log.info(
        "queue %s: first queued %.0f, enters at position %d of %d",
        queue,
        first,
        pos,
        len(others) + 1,
    )
