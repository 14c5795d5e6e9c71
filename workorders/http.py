"""HTTP resources of work orders (thin: parse, call the store, shape JSON).

* ``GET /orders?status=&unit=&centre=&agent=&category=&caller=&call_id=&since=&until=&limit=``:
  orders the user may see, newest first (``since``/``until``: ISO times or Unix seconds;
  ``call_id``: the order of a call, e.g. the agent's current call, to read its reference).
* ``GET /orders/{ref}``: one order with its calls and events.
* ``POST /orders/{ref}/{action}`` with a JSON body, action one of
  ``complete`` ``{"content", "category", "answer"}`` or ``{"content", "category", "unit",
  "time_limit"?}``; ``dispatch`` (re-dispatch a returned order) ``{"unit", "time_limit"?}``;
  ``accept``; ``reply`` ``{"reply"}``; ``return`` ``{"reason"}``; ``close``;
  ``reopen`` (发回重办) ``{"reason"}``; ``dismiss`` ``{"reason"}``;
  ``merge`` (并单) ``{"into": REF}``.
  Every body may carry a ``note``.
* ``GET /supervision``: running orders near (``remind_before``) or past their deadline.

Who may act: agents on the orders of calls they answered, supervisors on their
centre's (and the centres below), units on the orders dispatched to them, admins
on all. An order the user may not see answers 404; a transition the status does
not allow answers 409 with the reason; a role that may never do it 403.

The store's transactions run in worker threads (``asyncio.to_thread``), never on
the event loop that also serves the callers' FastAGI sessions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from hotline.auth import Principal
from queues.hours import DEFAULT_TZ

from . import lifecycle as lc
from .store import OrderNotFound, WorkOrderStore

Handler = Callable[[web.Request, Principal], Awaitable[web.Response]]
ErrorFn = Callable[..., web.Response]
ReadJson = Callable[[web.Request], Awaitable[dict[str, Any]]]
Audit = Callable[..., Awaitable[None]]

ACTIONS = tuple(sorted(lc.TRANSITIONS))
FILTERS = ("status", "unit", "centre", "agent", "category", "caller", "time_limit", "call_id")


def jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    return v


def parse_time(text: str) -> datetime:
    """ISO 8601 (a time without an offset is China time, as in GET /kpis) or Unix seconds."""
    try:
        if text.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), UTC)
        dt = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"{text!r} is neither an ISO time nor Unix seconds") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=DEFAULT_TZ)


def routes(
    store: WorkOrderStore,
    error: ErrorFn,
    read_json: ReadJson,
    audit: Audit | None = None,
) -> list[tuple[str, str, Handler]]:
    def failed(e: lc.TransitionError | OrderNotFound) -> web.Response:
        details = {k: v for k, v in e.details.items() if not isinstance(v, dict)}
        return error(e.status, e.error_id, str(e), **details)

    async def many(request: web.Request, who: Principal) -> web.Response:
        q = request.query
        filters: dict[str, Any] = {k: q[k] for k in FILTERS if k in q}
        try:
            limit = max(1, min(1000, int(q.get("limit", "100"))))
            for key in ("since", "until"):
                if key in q:
                    filters[key] = parse_time(q[key])
        except ValueError as e:
            return error(400, "bad-request", f"bad query: {e}")
        orders = await asyncio.to_thread(store.find, who, limit=limit, **filters)
        return web.json_response(jsonable(orders))

    async def one(request: web.Request, who: Principal) -> web.Response:
        try:
            order = await asyncio.to_thread(store.get, request.match_info["ref"], who)
            return web.json_response(jsonable(order))
        except OrderNotFound as e:
            return failed(e)

    async def act(request: web.Request, who: Principal) -> web.Response:
        ref, action = request.match_info["ref"], request.match_info["action"]
        if action not in lc.TRANSITIONS:
            return error(404, "not-found", f"no such action {action!r}", known=list(ACTIONS))
        body = await read_json(request)
        try:
            order = await asyncio.to_thread(store.act, ref, action, who, body)
        except (lc.TransitionError, OrderNotFound) as e:
            return failed(e)
        if audit is not None:
            await audit(
                who, f"order-{action}", "-", order=ref, status=order["status"], unit=order["unit"]
            )
        return web.json_response(jsonable(order))

    async def supervision(request: web.Request, who: Principal) -> web.Response:
        if who.role not in ("supervisor", "admin", "unit"):
            return error(403, "forbidden", "supervision is for supervisors, units and admins")
        now = datetime.now(UTC)
        near: list[dict[str, Any]] = []
        overdue: list[dict[str, Any]] = []
        running = await asyncio.to_thread(store.running_near, now)
        for o in running:
            if store.may_see(who, o):
                (overdue if o["deadline"] <= now else near).append(o)
        return web.json_response(jsonable({"at": now, "near_deadline": near, "overdue": overdue}))

    return [
        ("GET", "/orders", many),
        ("GET", "/orders/{ref}", one),
        ("POST", "/orders/{ref}/{action}", act),
        ("GET", "/supervision", supervision),
    ]
