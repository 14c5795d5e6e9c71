"""HTTP resources of the call-back queue (thin: parse, call the service, answer JSON).

Registered by :func:`hotline.http.start` behind ``authenticated()``; rights
(supervisors and admins, a supervisor on the queues of their centre and below)
are checked by the service. Errors keep the API's shape: status, ``error_id``,
``message``, ``details``.

* ``GET /callbacks?state=open|pending|active|done|failed|cancelled|all&limit=N``
* ``GET /callbacks/ID``, ``POST /callbacks/ID/cancel``
* ``GET /callbacks/abandoned?since=T&until=T``: calls abandoned in a queue, not
  answered and not yet called back (the 2025 rule to return missed calls)
* ``POST /callbacks/abandoned/UNIQUEID`` ``{"number": "..."}`` (optional):
  turn one into a call-back request; it keeps the call's first arrival
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hotline.auth import Principal

from .callback_service import CallbackService

Handler = Callable[[web.Request, Principal], Awaitable[web.Response]]
ErrorFn = Callable[..., web.Response]
ReadJson = Callable[[web.Request], Awaitable[dict[str, Any]]]


def routes(
    service: CallbackService, error: ErrorFn, read_json: ReadJson
) -> list[tuple[str, str, Handler]]:
    async def listing(request: web.Request, who: Principal) -> web.Response:
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            return error(
                400, "bad-request", "limit must be a number", limit=request.query.get("limit")
            )
        state = request.query.get("state", "open")
        found = await asyncio.to_thread(service.listing, who, state, limit)
        return web.json_response({"state": state, "callbacks": found})

    async def one(request: web.Request, who: Principal) -> web.Response:
        found = await asyncio.to_thread(service.get, who, request.match_info["id"])
        return web.json_response(found)

    async def cancel(request: web.Request, who: Principal) -> web.Response:
        return web.json_response(await service.cancel(who, request.match_info["id"]))

    async def abandoned(request: web.Request, who: Principal) -> web.Response:
        try:
            since = float(request.query.get("since", "0"))
            until = float(request.query["until"]) if "until" in request.query else None
        except ValueError:
            return error(
                400,
                "bad-period",
                "since and until are Unix times in seconds",
                since=request.query.get("since"),
                until=request.query.get("until"),
            )
        rows = await asyncio.to_thread(service.abandoned, who, since, until)
        return web.json_response({"since": since, "until": until, "abandoned": rows})

    async def from_abandoned(request: web.Request, who: Principal) -> web.Response:
        body = await read_json(request)
        number = body.get("number")
        if number is not None and not isinstance(number, str):
            return error(400, "bad-request", "number must be a string of digits")
        made = await service.from_abandoned(who, request.match_info["uniqueid"], number)
        return web.json_response(made, status=201)

    return [
        ("GET", "/callbacks", listing),
        ("GET", "/callbacks/abandoned", abandoned),
        ("POST", "/callbacks/abandoned/{uniqueid}", from_abandoned),
        ("GET", "/callbacks/{id}", one),
        ("POST", "/callbacks/{id}/cancel", cancel),
    ]
