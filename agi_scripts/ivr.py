"""``ivr``: the welcome prompt and the menus of the dialled number.

Dialplan: ``AGI(agi://HOST:PORT/ivr)`` with ``HOTLINE_MENU`` naming the entry
menu. Sets ``HOTLINE_ROUTE``/``HOTLINE_TARGET`` for ``hotline-route`` (only ids
from the config, never caller text), ``HOTLINE_CITY``/``HOTLINE_COUNTY`` for
the queue step, and stores the caller's path for the work order.

Each menu question goes through :func:`ivr.listen.ask`: keys or speech with
barge-in when speech is on (AudioSocket), keys only when it is off.  The
grammar of a question is the menu's keywords plus the operator and emergency
words, so 人工 and 救命 work in every menu; an ``open_question`` menu is
recognised as free text and matched against the keywords by the menu engine.
"""

from __future__ import annotations

import time
from typing import Any

from agi_scripts import ROUTES, Abort
from agi_scripts.callback_booking import book
from dialplan.model import Config, Menu
from hotline import channel_vars as cv
from hotline.app import App
from ivr.agi import AgiCommandError, AgiError, ChannelHungUp
from ivr.listen import ALL_KEYS, Heard, ask
from ivr.locality import locate
from ivr.menu import Answer, MenuEngine, Step
from workorders.intake import open_case

MAX_STEPS = 40  # a caller who keeps choosing menus still ends with a person


def menu_words(cfg: Config, menu: Menu) -> list[str]:
    """The grammar of a question in ``menu``; ``[]`` (free text) for an open question."""
    if menu.open_question:
        return []
    h = cfg.hotline
    words = [w for c in menu.choices for w in c.words]
    words += h.operator_words
    words += [w for line in h.emergency_words.values() for w in line]
    return list(dict.fromkeys(words))


async def _alive(ch: Any) -> bool:
    """Whether the channel is still there after a failed command."""
    try:
        await ch.get_variable(cv.MENU)
    except ChannelHungUp:
        return False
    except AgiError:
        return True
    return True


@ROUTES.register("ivr")
async def ivr(ch: Any, app: App) -> None:
    cfg = app.config
    t0 = time.monotonic()
    menu_id = await ch.get_variable(cv.MENU)
    if not menu_id or menu_id not in cfg.menus:
        raise Abort(f"unknown menu {menu_id!r}")
    loc = locate(cfg, ch.env.callerid)
    if loc.city:
        await ch.set_variable(f"__{cv.CITY}", loc.city)
    if loc.county:
        await ch.set_variable(f"__{cv.COUNTY}", loc.county)
    engine = MenuEngine(cfg, menu_id, loc)
    await open_case(ch, app)  # the work order exists from now on: HOTLINE_CASE_REF

    heard: list[Heard] = []
    try:
        welcome = cfg.hotline.welcome_prompt
        digit = await ch.stream_file(
            app.prompt(welcome), ALL_KEYS, max_wait=app.prompt_wait(welcome)
        )
        answer: Answer | None = Answer(digit=digit) if digit else None
        step: Step = engine.enter()
        for _ in range(MAX_STEPS):
            if step.kind == "route":
                break
            asked = len(heard)
            if answer is None:
                assert step.prompt is not None
                words = menu_words(cfg, engine.menu)
                timeout = engine.menu.timeout
                if step.reason == "play":
                    # Information, then the menu again: both can be interrupted.
                    answer = await ask(ch, app, step.prompt, words, 0.0, trace=heard)
                    if answer.empty:
                        answer = await ask(ch, app, engine.menu.prompt, words, timeout, trace=heard)
                else:
                    answer = await ask(ch, app, step.prompt, words, timeout, trace=heard)
            step = engine.answer(answer)
            if len(heard) > asked:
                heard[-1].decided()
            answer = None
        else:
            step = engine.resolve(engine.menu.fallback)
    except (ChannelHungUp, AgiCommandError) as exc:
        # The caller left in the menus (a prompt cut by a hangup fails with result=-1):
        # keep how far they got, for the work order and reports.
        gone = isinstance(exc, ChannelHungUp) or not await _alive(ch)
        await app.record_call_path(ch.uniqueid, {
            "city": loc.city, "county": loc.county, "locality_source": loc.source,
            "route": None, "target": None,
            "reason": "caller-hung-up" if gone else f"ivr-error: {exc}",
            "ivr_ms": int((time.monotonic() - t0) * 1000),
            "steps": [vars(e) for e in engine.path], "questions": [h.record() for h in heard],
        })
        raise

    booked = None
    if step.route == "callback":
        # The caller's place is the time they chose the call-back, as if they had
        # joined the queue then: interleaved with live callers by that time.
        booked = await book(ch, app, queue=step.target or cfg.hotline.default_queue,
                            first_queued=time.time(), source="menu")
        step = Step("route", route="hangup" if booked else "queue", target=step.target,
                    reason="callback" if booked else "callback-not-booked")
    if step.route == "hangup" and step.prompt:
        await ch.stream_file(app.prompt(step.prompt), "", max_wait=app.prompt_wait(step.prompt))
    if engine.locality.source == "menu":  # the caller told us where the matter is
        loc = engine.locality
        await ch.set_variable(f"__{cv.CITY}", loc.city or "")
        await ch.set_variable(f"__{cv.COUNTY}", loc.county or "")
    await ch.set_variable(cv.ROUTE, step.route or "queue")
    await ch.set_variable(cv.TARGET, step.target or cfg.hotline.default_queue)
    await app.record_call_path(
        ch.uniqueid,
        {
            "number": await ch.get_variable(cv.NUMBER),
            "city": loc.city,
            "county": loc.county,
            "locality_source": loc.source,
            "route": step.route,
            "target": step.target,
            "reason": step.reason,
            "callback": booked,
            "ivr_ms": int((time.monotonic() - t0) * 1000),
            "steps": [vars(e) for e in engine.path],
            "questions": [h.record() for h in heard],
        },
    )
    ch.log.info("route %s:%s (%s) after %d steps", step.route, step.target, step.reason,
                len(engine.path))
