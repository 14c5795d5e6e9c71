"""HTTP resources of the satisfaction survey (thin: parse, call the service, answer JSON).

Registered by :func:`hotline.http.start` behind ``authenticated()``; rights are
checked by the service (admins read all and schedule; a supervisor reads the
surveys of the orders they may see: of their centre and the centres below it,
as ``GET /orders``; another's survey answers 404).

* ``GET /surveys?state=open|scheduled|calling|answered|no_answer|failed|all&order=REF&limit=N``
* ``GET /surveys/ID``: one job with its attempts and their outcomes
* ``POST /surveys`` ``{"order": "REF", "number": "13907910001", "closed_at": T}``
  (``closed_at`` optional: now): schedule a survey by hand, as a closed order does
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hotline.auth import Principal

from .survey_service import SurveyService

Handler = Callable[[web.Request, Principal], Awaitable[web.Response]]
ErrorFn = Callable[..., web.Response]
ReadJson = Callable[[web.Request], Awaitable[dict[str, Any]]]


def routes(
    service: SurveyService, error: ErrorFn, read_json: ReadJson
) -> list[tuple[str, str, Handler]]:
    async def listing(request: web.Request, who: Principal) -> web.Response:
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            return error(400, "bad-request", "limit must be a number",
                         limit=request.query.get("limit"))
        state = request.query.get("state", "all")
        jobs = await service.read_listing(who, state, limit, request.query.get("order"))
        return web.json_response({"state": state, "surveys": jobs})

    async def one(request: web.Request, who: Principal) -> web.Response:
        return web.json_response(await service.read(who, request.match_info["id"]))

    async def create(request: web.Request, who: Principal) -> web.Response:
        body = await read_json(request)
        made = service.create(who, body.get("order"), body.get("number"), body.get("closed_at"))
        await service.saved()  # written (off the event loop) before it is confirmed
        return web.json_response(made, status=201)

    return [
        ("GET", "/surveys", listing),
        ("POST", "/surveys", create),
        ("GET", "/surveys/{id}", one),
    ]
