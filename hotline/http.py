"""HTTP API of the controller (aiohttp), loopback by default.

Thin handlers only: they call the controller and turn results into JSON.
Errors carry an HTTP status, a stable ``error_id`` and ``details``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


def error(status: int, error_id: str, message: str, **details: Any) -> web.Response:
    return web.json_response(
        {"error_id": error_id, "message": message, "details": details}, status=status
    )


async def start(app: Any, controller: Any, host: str, port: int) -> web.AppRunner:
    web_app = web.Application()

    async def health(_: web.Request) -> web.Response:
        st = await controller.status()
        return web.json_response({"ok": st["ok"]}, status=200 if st["ok"] else 503)

    async def status(_: web.Request) -> web.Response:
        return web.json_response(await controller.status())

    async def config(_: web.Request) -> web.Response:
        cfg = app.config
        return web.json_response(
            {
                "version": app.version,
                "numbers": [n.number for n in cfg.numbers],
                "queues": sorted(cfg.queues),
                "seats": sorted(cfg.seats),
            }
        )

    async def queue_stats(request: web.Request) -> web.Response:
        """Queue figures from Asterisk's queue_log for calls first queued in [since, until)."""
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

    async def not_found(request: web.Request) -> web.Response:
        return error(404, "not-found", f"no such resource: {request.path}")

    web_app.router.add_get("/health", health)
    web_app.router.add_get("/status", status)
    web_app.router.add_get("/config", config)
    web_app.router.add_get("/stats/queues", queue_stats)
    web_app.router.add_route("*", "/{tail:.*}", not_found)
    runner = web.AppRunner(web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
