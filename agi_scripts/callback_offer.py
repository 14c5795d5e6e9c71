"""``callback-offer``: a waiting caller pressed 1 for a call-back (回拨).

Dialplan: queues.conf ``context = hotline-callback`` takes the caller out of
the queue on the digit 1; ``exten 1`` runs this script. It

1. checks the queue offers call-backs and the caller has waited
   ``callback_after`` seconds since the first arrival (an early 1 changes
   nothing: back in line);
2. reads the caller ID back digit by digit ("我们将回拨以下号码…") and asks
   "确认请按1，使用其他号码请按2"; or, without a callable caller ID, or on 2,
   takes a number with GET DATA (ended by #), validated as a Chinese mobile or
   fixed line with its area code (:func:`queues.callback.normalize_number`);
3. stores the request with the ORIGINAL first arrival, the queue and the
   caller's locality, sets ``HOTLINE_CALLBACK_ID`` and plays the
   confirmation; the dialplan then hangs up.

Anything else -- no answer, two wrong numbers, the call-back service or its
database unavailable -- returns without ``HOTLINE_CALLBACK_ID``: the dialplan
puts the caller back in the queue, in their place (the first arrival is
kept), never hangs up on them.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from agi_scripts import ROUTES
from hotline import channel_vars as cv
from hotline.app import App
from queues.agents import BadRequest
from queues.callback import normalize_number
from queues.position import parse_epoch

TRIES = 2
CHOICE_WAIT_MS = 5000
ENTER_WAIT_MS = 8000
MAX_DIGITS = 12  # 0 + 3-digit area code + 8 digits; mobiles have 11


async def _play(ch: Any, app: App, name: str, escape: str = "") -> str | None:
    return await ch.stream_file(app.prompt(name), escape, max_wait=app.prompt_wait(name))  # type: ignore[no-any-return]


async def _confirm(ch: Any, app: App, number: str) -> str | None:
    """Read ``number`` back and ask 1 (this number) or 2 (another); the key, or None."""
    cb = app.config.callbacks
    key = await _play(ch, app, cb.confirm_prompt, "12")
    for d in number:
        if key:
            break
        key = await _play(ch, app, f"num-{d}", "12")
    if not key:
        key = await _play(ch, app, cb.choice_prompt, "12")
    if not key:
        key = await ch.wait_for_digit(CHOICE_WAIT_MS)
    return key if key in ("1", "2") else None


async def _enter(ch: Any, app: App) -> str | None:
    cb = app.config.callbacks
    for _ in range(TRIES):
        typed = await ch.get_data(
            app.prompt(cb.enter_prompt),
            ENTER_WAIT_MS,
            MAX_DIGITS,
            max_wait=app.prompt_wait(cb.enter_prompt) + ENTER_WAIT_MS / 1000 * 2,
        )
        number = normalize_number(typed)
        if number:
            return number
        ch.log.info("call-back number entered is not callable (%d digits)", len(typed))
        await _play(ch, app, cb.invalid_prompt)
    return None


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

    caller = normalize_number(ch.env.callerid or "")
    chosen: str | None = None
    enter = caller is None
    if caller is not None:
        for _ in range(TRIES):
            key = await _confirm(ch, app, caller)
            if key == "1":
                chosen = caller
                break
            if key == "2":
                enter = True
                break
        else:
            ch.log.info("call-back offer not confirmed; back in line")
            return
    if enter:
        chosen = await _enter(ch, app)
    if chosen is None:
        ch.log.info("no callable number for the call-back; back in line")
        return

    try:
        req = svc.request_from_offer(
            queue=queue,
            number=chosen,
            first_queued=first,
            uniqueid=ch.uniqueid,
            city=await ch.get_variable(cv.CITY) or "",
            county=await ch.get_variable(cv.COUNTY) or "",
            service_number=await ch.get_variable(cv.NUMBER) or "",
        )
    except (SQLAlchemyError, OSError, BadRequest) as e:
        ch.log.error("could not store the call-back request: %s; back in line", e)
        return
    await ch.set_variable(cv.CALLBACK_ID, req.id)
    ch.log.info("call-back %s stored for queue %s (first queued %.0f)", req.id, queue, first)
    await _play(ch, app, cfg.callbacks.accepted_prompt)
