"""HTTP resources of the call tracker (thin).

* ``GET /calls/recent?limit=N`` (supervisors and admins): the facts of the last
  calls delivered since the controller started, newest first (at most 200 kept);
  a supervisor sees the calls of their centre and the centres below it (a call not
  placed in any centre: only the supervisors over every centre).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hotline.auth import Forbidden, Principal, centre_scope
from queues.agents import centres_under

Handler = Callable[[web.Request, Principal], Awaitable[web.Response]]


def visible(calls: list[dict[str, Any]], who: Principal, under: dict[str, set[str]]) -> list[
        dict[str, Any]]:
    """The calls ``who`` may see (admins all; supervisors their centres; nobody else)."""
    scope = centre_scope(who, under)
    return [c for c in calls if scope.sees(c.get("centre") or None)]


def routes(service: Any, error: Callable[..., web.Response]) -> list[tuple[str, str, Handler]]:
    async def recent(request: web.Request, who: Principal) -> web.Response:
        if who.role not in ("supervisor", "admin"):
            raise Forbidden("the call list is for supervisors and admins")
        try:
            limit = max(0, min(1000, int(request.query.get("limit", "50"))))
        except ValueError:
            return error(
                400, "bad-request", "limit must be a number", limit=request.query.get("limit")
            )
        calls = visible(list(reversed(service.recent)), who, centres_under(service.config()))
        calls = calls[:limit]
        return web.json_response({"calls": calls})

    return [("GET", "/calls/recent", recent)]
