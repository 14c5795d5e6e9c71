"""HTTP resources of recordings (thin: parse, call the service, shape JSON).

* ``GET /recordings?since=&until=&call_id=&kind=&limit=``: the latest recordings
  (Unix times; admins see all, a supervisor those of their centre and the centres
  below it -- one whose call is not placed in a centre yet only when over every
  centre --, an agent those of their seat).
* ``GET /recordings/{id}``: one recording's row (with its ``centre``); a recording
  the user may not listen to answers 404, as one that does not exist.
* ``GET /recordings/{id}/audio``: the WAV (``audio/wav``, streamed), audited.
* ``POST /recordings/calls/{call_id}/pause`` and ``.../resume``: mute or unmute
  the recording of a live call (the agent on the call, a supervisor of the call's
  centre or of a seat on it, admins); ``POST /seats/{seat}/recording/pause`` and
  ``.../resume`` do it for the seat's current call (its agent, a supervisor of
  the seat's centre, admins).

Only ids come from the caller: the file served is always the row's path,
resolved and checked to stay inside the recordings root. A path-like id
(``..``, ``/etc``, ``%2e%2e``) is refused with 400; a row whose file would
lead outside the root is 404.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web

from hotline.auth import Principal

from .paths import PathRefused, parse_recording_id
from .service import NoLiveCall, NotFound, RecordingService

Handler = Callable[[web.Request, Principal], Awaitable[web.Response]]
ErrorFn = Callable[..., web.Response]
CALL_ID = re.compile(r"^[0-9A-Za-z._-]{1,64}$")
CHUNK = 64 * 1024
BAD_CALL_ID = "call_id is an Asterisk linkedid such as 1764250000.12"


def routes(service: RecordingService, error: ErrorFn) -> list[tuple[str, str, Handler]]:
    def number(request: web.Request, name: str) -> float | None:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return None
        try:
            return float(raw)
        except ValueError:
            raise web.HTTPBadRequest() from None

    async def many(request: web.Request, who: Principal) -> web.Response:
        q = request.query
        try:
            since, until = number(request, "since"), number(request, "until")
            limit = max(1, min(1000, int(q.get("limit", "100"))))
        except (web.HTTPBadRequest, ValueError):
            return error(400, "bad-request", "since and until are Unix times, limit a number")
        call_id, kind = q.get("call_id"), q.get("kind")
        if call_id is not None and not CALL_ID.match(call_id):
            return error(400, "bad-request", BAD_CALL_ID)
        if kind is not None and kind not in ("call", "survey"):
            return error(400, "bad-request", "kind is call or survey")
        recs = await asyncio.to_thread(service.listing, who, since=since, until=until,
                                       call_id=call_id, kind=kind, limit=limit)
        return web.json_response([r.as_dict() for r in recs])

    def rec_id(request: web.Request) -> int:
        return parse_recording_id(request.match_info["id"])

    async def one(request: web.Request, who: Principal) -> web.Response:
        try:
            rec = await asyncio.to_thread(service.one, who, rec_id(request))
        except PathRefused as e:
            return error(400, "bad-recording-id", str(e))
        except NotFound as e:
            return error(404, "not-found", str(e))
        return web.json_response(rec.as_dict())

    async def audio(request: web.Request, who: Principal) -> web.Response:
        try:
            rid = rec_id(request)
        except PathRefused as e:
            return error(400, "bad-recording-id", str(e))
        try:
            rec, path = await service.open_for_download(who, rid)
        except (NotFound, PathRefused) as e:
            return error(404, "not-found", str(e))
        resp = web.StreamResponse(headers={
            "Content-Type": "audio/wav",
            "Content-Disposition": f'attachment; filename="{rec.call_id}-{rec.kind}.wav"',
            "Cache-Control": "no-store",
        })
        resp.content_length = path.stat().st_size
        await resp.prepare(request)
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                await resp.write(chunk)
        await resp.write_eof()
        return cast(web.Response, resp)  # aiohttp takes any prepared StreamResponse

    async def _pause(who: Principal, call_id: str, paused: bool) -> web.Response:
        if not CALL_ID.match(call_id):
            return error(400, "bad-request", BAD_CALL_ID)
        try:
            rec = await service.set_paused(who, call_id, paused)
        except NotFound as e:
            return error(404, "not-found", str(e))
        except NoLiveCall as e:
            return error(409, "no-live-call", str(e))
        return web.json_response(rec.as_dict())

    async def pause_call(request: web.Request, who: Principal) -> web.Response:
        return await _pause(who, request.match_info["call_id"], True)

    async def resume_call(request: web.Request, who: Principal) -> web.Response:
        return await _pause(who, request.match_info["call_id"], False)

    async def _seat(request: web.Request, who: Principal, paused: bool) -> web.Response:
        seat = request.match_info["seat"]
        if not service.may_act_on_seat(who, seat):
            return error(403, "forbidden", f"{who.name} may not act on seat {seat}")
        try:
            call_id = await service.seat_call(seat)
        except NoLiveCall as e:
            return error(409, "no-live-call", str(e))
        return await _pause(who, call_id, paused)

    async def pause_seat(request: web.Request, who: Principal) -> web.Response:
        return await _seat(request, who, True)

    async def resume_seat(request: web.Request, who: Principal) -> web.Response:
        return await _seat(request, who, False)

    return [
        ("GET", "/recordings", many),
        ("GET", "/recordings/{id}", one),
        ("GET", "/recordings/{id}/audio", audio),
        ("POST", "/recordings/calls/{call_id}/pause", pause_call),
        ("POST", "/recordings/calls/{call_id}/resume", resume_call),
        ("POST", "/seats/{seat}/recording/pause", pause_seat),
        ("POST", "/seats/{seat}/recording/resume", resume_seat),
    ]
