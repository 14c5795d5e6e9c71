"""``ivr``: the welcome prompt and the menus of the dialled number.

Dialplan: ``AGI(agi://HOST:PORT/ivr)`` with ``HOTLINE_MENU`` naming the entry
menu. Sets ``HOTLINE_ROUTE``/``HOTLINE_TARGET`` for ``hotline-route`` (only ids
from the config, never caller text), ``HOTLINE_CITY``/``HOTLINE_COUNTY`` for
the queue step, and stores the caller's path for the work order.
"""

from __future__ import annotations

import time
from typing import Any

from agi_scripts import ROUTES, Abort
from hotline import channel_vars as cv
from hotline.app import App
from ivr.locality import locate
from ivr.menu import NOTHING, Answer, MenuEngine, Step

ALL_KEYS = "0123456789*#"
MAX_STEPS = 40  # a caller who keeps choosing menus still ends with a person


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

    digit = await ch.stream_file(
        app.prompt(cfg.hotline.welcome_prompt), ALL_KEYS, max_wait=app.prompt_wait(cfg.hotline.welcome_prompt)
    )
    step: Step = engine.enter()
    for _ in range(MAX_STEPS):
        if step.kind == "route":
            break
        if digit is None:
            assert step.prompt is not None
            digit = await ch.stream_file(app.prompt(step.prompt), ALL_KEYS, max_wait=app.prompt_wait(step.prompt))
            if digit is None and step.reason == "play":
                digit = await ch.stream_file(
                    app.prompt(engine.menu.prompt), ALL_KEYS, max_wait=app.prompt_wait(engine.menu.prompt)
                )
            if digit is None:
                digit = await ch.wait_for_digit(int(engine.menu.timeout * 1000))
        step = engine.answer(Answer(digit=digit) if digit else NOTHING)
        digit = None
    else:
        step = engine._resolve(engine.menu.fallback)

    if step.route == "hangup" and step.prompt:
        await ch.stream_file(app.prompt(step.prompt), "", max_wait=app.prompt_wait(step.prompt))
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
            "ivr_ms": int((time.monotonic() - t0) * 1000),
            "steps": [vars(e) for e in engine.path],
        },
    )
    ch.log.info("route %s:%s (%s) after %d steps", step.route, step.target, step.reason, len(engine.path))
