"""HTTP resources of transfers (thin: parse, call the service, shape JSON).

* ``POST /calls/{seat}/transfer`` ``{"line": "119"}``: the agent of the seat (or a
  supervisor of its centre, or an admin) transfers the seat's call; 202 with the
  transfer record (its ``state`` is ``dialling`` when the line rings).
  ``{"to": "market", "kind": "blind"}``: a hand-off to a department or a city centre
  (``to`` as ``line``), ``kind`` ``warm`` (three-way, the default), ``blind`` (the agent's
  leg ends when the other side answers) or ``consult`` (the caller on hold while the
  agent talks with the other side).
* ``POST /transfers/{id}/connect`` and ``/return``: end a consultation by connecting the
  caller with the other side, or by taking the caller back.
* ``GET /calls/{seat}``: the seat's call in progress as shown to the agent (来电弹屏):
  its origin (legacy number, department, relay case, transfer in from 110...), its
  work order (``case``), where the caller is (``locality``) and the caller's last
  orders (``history``, for a repeat call).
* ``GET /transfers/{id}``: one transfer with its transitions, outcome and timings.
* ``GET /transfers?limit=N&seat=S``: the latest transfers (agents: their seat only;
  supervisors: the seats of their centre and the centres below it, and transfers of no
  seat only when over every centre, as :func:`hotline.auth.centre_scope`; the same for
  ``GET /transfers/{id}``, where another's answers 404).

Errors carry an HTTP status, a stable ``error_id`` and ``details``, as every route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hotline.auth import CentreScope, Principal, centre_scope
from queues.agents import centres_under

from .exceptions import TransferError
from .services import TransferService

Handler = Callable[[web.Request, Principal], Awaitable[web.Response]]
ErrorFn = Callable[..., web.Response]
ReadJson = Callable[[web.Request], Awaitable[dict[str, Any]]]


def routes(
    service: TransferService, error: ErrorFn, read_json: ReadJson
) -> list[tuple[str, str, Handler]]:
    def failed(e: TransferError) -> web.Response:
        return error(e.status, e.error_id, str(e), **e.details)

    async def start(request: web.Request, who: Principal) -> web.Response:
        body = await read_json(request)
        line = body.get("line", body.get("to"))
        kind = body.get("kind", "warm")
        if not isinstance(line, str) or not isinstance(kind, str):
            return error(
                400,
                "bad-request",
                'give where to transfer to, e.g. {"line": "119"} or '
                '{"to": "market", "kind": "consult"}',
            )
        try:
            record = await service.request(who, request.match_info["seat"], line, kind)  # type: ignore[arg-type]
        except TransferError as e:
            return failed(e)
        return web.json_response(record, status=202)

    async def seat_call(request: web.Request, who: Principal) -> web.Response:
        try:
            return web.json_response(await service.seat_call(who, request.match_info["seat"]))
        except TransferError as e:
            return failed(e)

    def consultation(action: str) -> Handler:
        async def finish(request: web.Request, who: Principal) -> web.Response:
            try:
                record = await service.finish_consultation(who, request.match_info["id"], action)
            except TransferError as e:
                return failed(e)
            return web.json_response(record)

        return finish

    def scope(who: Principal) -> tuple[CentreScope, dict[str, str]]:
        """Who sees what by centre (admins every centre, a supervisor theirs and those
        below), and each seat's centre."""
        cfg = service.config()
        return centre_scope(who, centres_under(cfg)), {s: v.centre for s, v in cfg.seats.items()}

    def visible(who: Principal, record: dict[str, Any]) -> bool:
        if who.role in ("admin", "supervisor"):
            sees, centre_of = scope(who)
            return sees.sees(centre_of.get(record.get("seat") or ""))
        return who.seat is not None and record.get("seat") == who.seat

    async def one(request: web.Request, who: Principal) -> web.Response:
        record = await service.read(request.match_info["id"])
        if record is None or not visible(who, record):
            return error(404, "not-found", f"no transfer {request.match_info['id']!r}")
        return web.json_response(record)

    async def many(request: web.Request, who: Principal) -> web.Response:
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            return error(400, "bad-request", "limit must be a number")
        seat = request.query.get("seat")
        seats = None  # every seat's, and those of no seat
        if who.role not in ("admin", "supervisor"):
            if who.seat is None:
                return error(403, "forbidden", f"{who.name} has no seat")
            seat = who.seat
        else:
            sees, centre_of = scope(who)
            if not sees.unplaced:  # not over every centre: the seats of their centres
                seats = [s for s, centre in centre_of.items() if sees.sees(centre)]
        return web.json_response(await asyncio.to_thread(service.recent, limit, seat, seats))

    return [
        ("POST", "/calls/{seat}/transfer", start),
        ("GET", "/calls/{seat}", seat_call),
        ("POST", "/transfers/{id}/connect", consultation("connect")),
        ("POST", "/transfers/{id}/return", consultation("return")),
        ("GET", "/transfers/{id}", one),
        ("GET", "/transfers", many),
    ]
