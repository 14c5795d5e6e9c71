"""``callback-offer``: a waiting caller pressed 1 for a call-back (回拨).

Dialplan: queues.conf ``context = hotline-callback`` takes the caller out of
the queue on the digit 1; ``exten 1`` runs this script. It

1. checks the queue offers call-backs and the caller has waited
   ``callback_after`` seconds since the first arrival (an early 1 changes
   nothing: back in line);
2. books the call-back with :func:`agi_scripts.callback_booking.book`: the
   number confirmed or entered, the request stored with the ORIGINAL first
   arrival, ``HOTLINE_CALLBACK_ID`` set, the confirmation played; the dialplan
   then hangs up.

Anything else -- no answer, two wrong numbers, the call-back service or its
database unavailable -- returns without ``HOTLINE_CALLBACK_ID``: the dialplan
puts the caller back in the queue, in their place (the first arrival is
kept), never hangs up on them.
"""

from __future__ import annotations

import time
from typing import Any

from agi_scripts import ROUTES
from agi_scripts.callback_booking import book
from hotline import channel_vars as cv
from hotline.app import App
from queues.position import parse_epoch


@ROUTES.register(cv.SCRIPT_CALLBACK_OFFER)
async def callback_offer(ch: Any, app: App) -> None:
    cfg = app.config
    svc = app.callbacks
    queue = await ch.get_variable(cv.QUEUE) or ""
    first = parse_epoch(await ch.get_variable(cv.FIRST_QUEUED))
    q = cfg.queues.get(queue)
    if svc is None or q is None or not q.callback_after or first is None:
        ch.log.warning(
            "call-back asked in %r without the call-back service, the offer or a first "
            "arrival; back in line",
            queue,
        )
        return
    waited = time.time() - first
    if waited < q.callback_after:
        ch.log.info(
            "pressed 1 after %.0f s in %s, before the offer (%d s); back in line",
            waited,
            queue,
            q.callback_after,
        )
        return
    if await book(ch, app, queue=queue, first_queued=first, source="offer") is None:
        ch.log.info("no call-back booked; back in line")
