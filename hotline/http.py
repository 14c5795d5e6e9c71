"""HTTP API of the controller (aiohttp), loopback by default.

Thin handlers only: they call the controller and turn results into JSON.
Errors carry an HTTP status, a stable ``error_id`` and ``details``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from hotline.ami import AmiError
from hotline.auth import (
    AuthError,
    Forbidden,
    Principal,
    centre_scope,
    hash_password,
    verify_password,
)
from hotline.storage import UNAVAILABLE, reason

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # bytes of a request body (the largest real one is a few hundred)
Handler = Callable[[web.Request, Principal], Awaitable[web.Response]]


def error(status: int, error_id: str, message: str, **details: Any) -> web.Response:
    return web.json_response(
        {"error_id": error_id, "message": message, "details": details}, status=status
    )


class Authenticator:
    """HTTP Basic against ``users:`` of the live config. PBKDF2 is slow on purpose,
    so a verified (user, password, hash) is remembered for a minute. The check runs in
    one thread of its own: never on the event loop that serves the callers' FastAGI
    sessions, and a flood of wrong passwords takes one core, not the stores' threads."""

    TTL = 60.0

    def __init__(self, app: Any):
        self.app = app
        self._ok: dict[str, float] = {}
        self._hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="http-auth")
        self._decoy = hash_password("", salt=b"hotline-no-user!")  # checked for unknown users

    async def __call__(self, request: web.Request) -> Principal:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            raise AuthError("HTTP Basic credentials required")
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed Basic credentials") from None
        cfg = self.app.config
        u = cfg.users.get(user)
        if u is None:  # as slow as a wrong password: the answer's time names no user
            await asyncio.get_running_loop().run_in_executor(
                self._hashing, verify_password, password, self._decoy)
            raise AuthError("unknown user or wrong password")
        key = hashlib.sha256(f"{user}\0{password}\0{u.password_hash}".encode()).hexdigest()
        now = time.monotonic()
        if self._ok.get(key, 0) < now:
            ok = await asyncio.get_running_loop().run_in_executor(
                self._hashing, verify_password, password, u.password_hash)
            if not ok:
                raise AuthError("unknown user or wrong password")
            self._ok[key] = now + self.TTL
        seat = next((sid for sid, s in cfg.seats.items() if s.agent == user), None)
        return Principal(user, u.role, seat=seat, centre=u.centre, unit=getattr(u, "unit", None))


def authenticated(auth: Authenticator, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def wrapped(request: web.Request) -> web.Response:
        from queues.agents import BadRequest, NotFound

        try:
            who = await auth(request)
        except AuthError as e:
            return web.json_response({"error_id": "unauthorized", "message": str(e), "details": {}},
                                     status=401, headers={"WWW-Authenticate": 'Basic realm="hotline"'})
        try:
            return await handler(request, who)
        except Forbidden as e:
            log.warning("refused %s %s for %s: %s", request.method, request.path, who.name, e)
            return error(403, "forbidden", str(e))
        except NotFound as e:
            return error(404, "not-found", str(e))
        except BadRequest as e:
            return error(400, "bad-request", str(e))
        except web.HTTPRequestEntityTooLarge as e:  # the body passed client_max_size
            return error(413, "too-large", f"the body is larger than {MAX_BODY} bytes",
                         limit=MAX_BODY, size=getattr(e, "actual_size", None))
        except ConnectionError as e:
            return error(503, "asterisk-unavailable", str(e))
        except AmiError as e:
            log.warning("Asterisk refused %s %s for %s: %s", request.method, request.path, who.name, e)
            return error(502, "asterisk-refused", str(e))
        except UNAVAILABLE as e:  # a store's database is down (hotline.storage.Tables)
            log.error("database unavailable for %s %s: %s", request.method, request.path, reason(e))
            return error(503, "database-unavailable",
                         "the database is unavailable; try again later", reason=reason(e))
    return wrapped


class _NotJsonNumber(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJsonNumber(f"{name} is not a JSON number")


def _strict_loads(text: str) -> Any:
    """JSON as RFC 8259 has it: Python's NaN, Infinity and -Infinity are refused (a time
    or a number of NaN reached the stores and their schedulers); nesting deeper than
    Python's recursion limit is refused too (RecursionError is no ValueError)."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


async def _json(request: web.Request) -> dict[str, Any]:
    from queues.agents import BadRequest

    if not request.can_read_body:
        return {}
    try:
        body = await request.json(loads=_strict_loads)
    except _NotJsonNumber as e:
        raise BadRequest(f"the body must be JSON: {e}") from None
    except ValueError:
        raise BadRequest("the body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


async def start(app: Any, controller: Any, host: str, port: int) -> web.AppRunner:
    web_app = web.Application(client_max_size=MAX_BODY)
    auth = Authenticator(app)

    async def stop_hashing(_: web.Application) -> None:
        auth._hashing.shutdown(wait=False)

    web_app.on_cleanup.append(stop_hashing)

    async def health(_: web.Request) -> web.Response:
        st = await controller.status()
        return web.json_response({"ok": st["ok"]}, status=200 if st["ok"] else 503)

    async def status(_: web.Request) -> web.Response:
        return web.json_response(await controller.status())

    async def config(_: web.Request, __: Principal) -> web.Response:  # any user
        cfg = app.config
        return web.json_response(
            {
                "version": app.version,
                "numbers": [n.number for n in cfg.numbers],
                "queues": sorted(cfg.queues),
                "seats": sorted(cfg.seats),
            }
        )

    async def queue_stats(request: web.Request, who: Principal) -> web.Response:
        """Queue figures from Asterisk's queue_log for calls first queued in [since, until).

        Supervisors and admins only (a supervisor sees every queue: the national
        figures are the hotline's)."""
        if who.role not in ("supervisor", "admin"):
            raise Forbidden("queue statistics are for supervisors and admins")
        from queues.stats import compute, read_events

        try:
            since = int(request.query.get("since", "0"))
            until = int(request.query["until"]) if "until" in request.query else None
        except ValueError:
            return error(400, "bad-period", "since and until are Unix times in seconds",
                         since=request.query.get("since"), until=request.query.get("until"))
        cfg = app.config
        centre_of = {qid: q.centre for qid, q in cfg.queues.items()}
        path = str(app.instance.host("log", "queue_log"))
        report = compute(read_events(path), since=since, until=until, centre_of=centre_of)
        return web.json_response({"since": since, "until": until, **report.as_dict()})

    async def queues_live(_: web.Request, who: Principal) -> web.Response:
        """The queues right now (queues/live.py), with the waiting callers' masked
        numbers: a supervisor the queues of their centres (hotline.auth.centre_scope),
        an admin every queue; an agent the queues of their seat, without numbers."""
        from hotline.amiproto import fields
        from queues.agents import centres_under
        from queues.live import live

        cfg = app.config
        if who.role in ("supervisor", "admin"):
            scope = centre_scope(who, centres_under(cfg))
            shown = [qid for qid, q in cfg.queues.items() if scope.sees(q.centre)]
        elif who.role == "agent" and who.seat is not None:
            shown = [qid for qid, q in cfg.queues.items() if who.seat in q.members]
        else:
            raise Forbidden("the live queues are for supervisors, admins and agents")
        ami = app.ami
        if ami is None or not ami.connected:
            raise ConnectionError("Asterisk is not connected")
        items = [fields(m) for m in await ami.action_list("QueueStatus")]
        names = {qid: (cfg.queues[qid].name or qid, cfg.queues[qid].centre) for qid in shown}
        view = live(items, names, callers=who.role != "agent")
        return web.json_response({"at": time.time(), "queues": view})

    async def not_found(request: web.Request) -> web.Response:
        return error(404, "not-found", f"no such resource: {request.path}")

    web_app.router.add_get("/health", health)
    web_app.router.add_get("/status", status)
    web_app.router.add_get("/config", authenticated(auth, config))
    web_app.router.add_get("/stats/queues", authenticated(auth, queue_stats))
    web_app.router.add_get("/queues/live", authenticated(auth, queues_live))
    from workorders.kpi_http import routes as kpi_routes  # the five KPIs, JSON and CSV

    def orders_ready() -> None:  # in the KPI worker thread, before the query
        db = getattr(getattr(app, "orders", None), "db", None)
        if db is not None:
            db.ensure()

    for method, path, kpi_handler in kpi_routes(
        lambda: getattr(getattr(app, "orders", None), "engine", None), lambda: app.config, error,
        app.agents.audit if app.agents is not None else None, ensure=orders_ready,
    ):
        web_app.router.add_route(method, path, authenticated(auth, kpi_handler))

    # ----------------------------------------------------------- seats and agents
    agents = app.agents

    async def seats(_: web.Request, who: Principal) -> web.Response:
        return web.json_response({s: agents.state_of(s) for s in agents.visible_seats(who)})

    async def seat(request: web.Request, who: Principal) -> web.Response:
        sid = request.match_info["seat"]
        agents.check_seat(who, sid)
        return web.json_response(agents.state_of(sid))

    async def login(request: web.Request, who: Principal) -> web.Response:
        body = await _json(request)
        queues = body.get("queues")
        if queues is not None and not (isinstance(queues, list) and all(isinstance(q, str) for q in queues)):
            return error(400, "bad-request", "queues must be a list of queue ids")
        done = await agents.login(who, request.match_info["seat"], queues)
        return web.json_response({"seat": request.match_info["seat"], "queues": done})

    async def logout(request: web.Request, who: Principal) -> web.Response:
        await agents.logout(who, request.match_info["seat"])
        return web.json_response({"seat": request.match_info["seat"], "logged_in": False})

    async def pause(request: web.Request, who: Principal) -> web.Response:
        body = await _json(request)
        reason = body.get("reason")
        if not isinstance(reason, str):
            return error(400, "bad-request", "a pause needs a reason code",
                         known=sorted(app.config.agents.pause_reasons))
        await agents.pause(who, request.match_info["seat"], reason)
        return web.json_response({"seat": request.match_info["seat"], "paused": True, "reason": reason})

    async def resume(request: web.Request, who: Principal) -> web.Response:
        await agents.resume(who, request.match_info["seat"])
        return web.json_response({"seat": request.match_info["seat"], "paused": False})

    async def spy(request: web.Request, who: Principal) -> web.Response:
        body = await _json(request)
        mode, from_seat = body.get("mode", "listen"), body.get("from_seat")
        if not isinstance(mode, str) or not isinstance(from_seat, str):
            return error(400, "bad-request", "give mode (listen, whisper, barge) and from_seat")
        oid = await agents.spy(who, request.match_info["seat"], mode, from_seat)
        return web.json_response({"seat": request.match_info["seat"], "mode": mode, "originate_id": oid})

    async def audit(request: web.Request, who: Principal) -> web.Response:
        if who.role != "admin":
            raise Forbidden("only admins read the audit log")
        try:
            limit = min(1000, int(request.query.get("limit", "100")))
        except ValueError:
            return error(400, "bad-request", "limit must be a number")
        return web.json_response(await agents.audit_log(limit))

    if agents is not None:
        for method, path, fn in (
            ("GET", "/seats", seats), ("GET", "/seats/{seat}", seat),
            ("POST", "/seats/{seat}/login", login), ("POST", "/seats/{seat}/logout", logout),
            ("POST", "/seats/{seat}/pause", pause), ("POST", "/seats/{seat}/resume", resume),
            ("POST", "/seats/{seat}/spy", spy), ("GET", "/audit", audit),
        ):
            web_app.router.add_route(method, path, authenticated(auth, fn))
    if getattr(app, "transfers", None) is not None:
        from transfer.http import routes as transfer_routes

        for method, path, xfer_handler in transfer_routes(app.transfers, error, _json):
            web_app.router.add_route(method, path, authenticated(auth, xfer_handler))
    if getattr(app, "callbacks", None) is not None:
        from queues.callback_http import routes as callback_routes

        for method, path, cb_handler in callback_routes(app.callbacks, error, _json):
            web_app.router.add_route(method, path, authenticated(auth, cb_handler))
    if getattr(app, "orders", None) is not None:
        from workorders.http import routes as order_routes

        for method, path, wo_handler in order_routes(
            app.orders, error, _json, audit=agents.audit if agents is not None else None
        ):
            web_app.router.add_route(method, path, authenticated(auth, wo_handler))
    if getattr(app, "surveys", None) is not None:
        from workorders.survey_http import routes as survey_routes

        for method, path, sv_handler in survey_routes(app.surveys, error, _json):
            web_app.router.add_route(method, path, authenticated(auth, sv_handler))
    if getattr(app, "recordings", None) is not None:
        from recordings.http import routes as recording_routes

        for method, path, rec_handler in recording_routes(app.recordings, error):
            web_app.router.add_route(method, path, authenticated(auth, rec_handler))
    if getattr(app, "calls", None) is not None:
        from workorders.call_http import routes as call_routes

        for method, path, call_handler in call_routes(app.calls, error):
            web_app.router.add_route(method, path, authenticated(auth, call_handler))
    web_app.router.add_route("*", "/{tail:.*}", not_found)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
