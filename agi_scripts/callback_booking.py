"""Booking a call-back on a live call: the flow shared by the queue's offer
(``callback-offer``, the caller pressed 1 while waiting) and the IVR menu action
``callback`` (the caller chose a call-back instead of waiting).

The caller ID is read back digit by digit ("我们将回拨以下号码…") and the caller
asked "确认请按1，使用其他号码请按2"; without a callable caller ID, or on 2, a
number is taken with GET DATA (ended by #) and validated as a Chinese mobile or
fixed line with its area code (:func:`queues.callback.normalize_number`). The
request is stored with the given first arrival -- the caller's place in line --
``HOTLINE_CALLBACK_ID`` is set and the confirmation played.

Anything else (no answer, two wrong numbers, the call-back service or its
database unavailable) books nothing and returns None: the caller goes on to a
person, never hung up on.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from hotline import channel_vars as cv
from hotline.app import App
from queues.agents import BadRequest
from queues.callback import normalize_number

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


async def book(ch: Any, app: App, *, queue: str, first_queued: float, source: str) -> str | None:
    """Confirm or take the number, store the request; its id, or None (nothing booked)."""
    svc = app.callbacks
    if svc is None:
        ch.log.warning("call-back asked without the call-back service")
        return None
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
            ch.log.info("call-back number not confirmed")
            return None
    if enter:
        chosen = await _enter(ch, app)
    if chosen is None:
        ch.log.info("no callable number for the call-back")
        return None

    try:
        req = await svc.request_from_offer(
            queue=queue,
            number=chosen,
            first_queued=first_queued,
            uniqueid=ch.uniqueid,
            city=await ch.get_variable(cv.CITY) or "",
            county=await ch.get_variable(cv.COUNTY) or "",
            service_number=await ch.get_variable(cv.NUMBER) or "",
            source=source,
        )
    except (SQLAlchemyError, OSError, BadRequest) as e:
        ch.log.error("could not store the call-back request: %s", e)
        return None
    await ch.set_variable(cv.CALLBACK_ID, req.id)
    ch.log.info("call-back %s (%s) stored for queue %s (first queued %.0f)", req.id, source, queue,
                first_queued)
    await _play(ch, app, app.config.callbacks.accepted_prompt)
    return str(req.id)
