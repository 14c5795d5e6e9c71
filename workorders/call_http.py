"""HTTP resources of the call tracker (thin).

* ``GET /calls/recent?limit=N`` (supervisors and admins): the facts of the last
  calls delivered since the controller started, newest first (at most 200 kept).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hotline.auth import Forbidden, Principal

Handler = Callable[[web.Request, Principal], Awaitable[web.Response]]


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
        calls = list(reversed(service.recent))[:limit]
        return web.json_response({"calls": calls})

    return [("GET", "/calls/recent", recent)]
