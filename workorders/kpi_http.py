"""HTTP resources of the KPIs (thin: parse, check rights, run workorders.kpi in a thread).

Registered by :func:`hotline.http.start` behind ``authenticated()`` (HTTP Basic).

* ``GET /kpis?from=T&to=T[&centre=C][&unit=U][&category=K][&group_by=G]``: JSON
* ``GET /kpis.csv?...``: the same as CSV (UTF-8, header row, one row per KPI,
  and per group with ``group_by=centre|unit|category``)

``from`` and ``to`` (required, the period ``[from, to)``) are ISO 8601 dates or
times (``2026-03-01``, ``2026-03-01T08:00:00+08:00``) or Unix seconds; a date
or time without an offset is China Standard Time (Asia/Shanghai). Rights:
supervisors see their centre and the centres below it (all of them when no
``centre`` is given), admins every centre; agents and units none. Every
request is audited (who, which filter, which format).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy.engine import Engine

from dialplan.model import IDENT_RE
from hotline.auth import Principal, centre_scope, require
from queues.agents import BadRequest, centres_under
from queues.hours import DEFAULT_TZ

from .facts import Category
from .kpi import GROUPS, KpiFilter, compute_grouped, csv_rows

Handler = Callable[[web.Request, Principal], Awaitable[web.Response]]
Audit = Callable[..., Awaitable[None]]


def parse_time(name: str, raw: str | None) -> datetime:
    if raw is None or not raw.strip():
        raise BadRequest(f"{name} is required (an ISO 8601 date or time, or Unix seconds)")
    raw = raw.strip()
    try:
        if raw.isdigit():
            return datetime.fromtimestamp(int(raw), UTC)
        t = datetime.fromisoformat(raw)
    except (ValueError, OverflowError, OSError):
        raise BadRequest(
            f"{name} must be an ISO 8601 date or time or Unix seconds, not {raw!r}"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=DEFAULT_TZ)


def parse_filter(query: Any, who: Principal, cfg: Any) -> tuple[KpiFilter, str | None]:
    """The filter and group a request asks for, within what ``who`` may see."""
    require(who.role in ("supervisor", "admin"), "KPIs are for supervisors and admins")
    start, end = parse_time("from", query.get("from")), parse_time("to", query.get("to"))
    centre, unit = query.get("centre") or None, query.get("unit") or None
    category, group_by = query.get("category") or None, query.get("group_by") or None
    if centre is not None and centre not in cfg.centres:
        raise BadRequest(f"no centre {centre!r} (known: {', '.join(sorted(cfg.centres))})")
    if unit is not None and not re.fullmatch(IDENT_RE, unit):
        # not checked against units: (a unit gone from the directory keeps its history)
        raise BadRequest(f"unit must be a unit id (lower-case letters, digits, - and _), not {unit!r}")
    if category is not None and category not in {c.value for c in Category}:
        raise BadRequest(
            f"category must be one of {', '.join(c.value for c in Category)}, not {category!r}"
        )
    if group_by is not None and group_by not in GROUPS:
        raise BadRequest(f"group_by must be one of {', '.join(GROUPS)}, not {group_by!r}")
    centres: frozenset[str] | None = None
    if who.role == "supervisor":
        require(who.centre is not None, f"supervisor {who.name} has no centre")
        mine = centre_scope(who, centres_under(cfg)).centres
        assert mine is not None  # a supervisor's are always named
        require(centre is None or centre in mine, f"{who.name} may not see centre {centre}")
        centres = mine
    if centre is not None:
        centres = frozenset({centre})
    try:
        flt = KpiFilter(start, end, centres=centres, unit=unit, category=category)
    except ValueError as e:
        raise BadRequest(str(e)) from None
    return flt, group_by


def routes(
    engine: Callable[[], Engine | None],
    config: Callable[[], Any],
    error: Callable[..., web.Response],
    audit: Audit | None = None,
    ensure: Callable[[], None] = lambda: None,
) -> list[tuple[str, str, Handler]]:
    """``ensure()``: the tables exist (created on the first use that reaches a database
    that was down at start; raises while it is still down: 503)."""
    async def report(
        request: web.Request, who: Principal, fmt: str
    ) -> tuple[Any, ...] | web.Response:
        flt, group_by = parse_filter(request.query, who, config())
        eng = engine()
        if eng is None:
            return error(503, "no-database", "work orders are not stored on this controller")
        if audit is not None:
            await audit(who, f"kpis-{fmt}", "-", start=flt.start.isoformat(),
                        end=flt.end.isoformat(), centres=sorted(flt.centres or []),
                        unit=flt.unit, category=flt.category, group_by=group_by)

        def run() -> dict[str | None, Any]:
            ensure()
            with eng.connect() as conn:
                return compute_grouped(conn, flt, group_by)

        return flt, group_by, await asyncio.to_thread(run)

    async def as_json(request: web.Request, who: Principal) -> web.Response:
        got = await report(request, who, "json")
        if isinstance(got, web.Response):
            return got
        flt, group_by, reports = got
        body: dict[str, Any] = {
            "from": flt.start.isoformat(), "to": flt.end.isoformat(),
            "centres": None if flt.centres is None else sorted(flt.centres),
            "unit": flt.unit, "category": flt.category,
        }
        if group_by is None:
            body["kpis"] = reports[None].as_dict()
        else:
            body["group_by"] = group_by
            body["groups"] = [
                {group_by: key, "kpis": reports[key].as_dict()}
                for key in sorted(reports, key=lambda k: (k is None, k or ""))
            ]
        return web.json_response(body, dumps=_dumps)

    async def as_csv(request: web.Request, who: Principal) -> web.Response:
        got = await report(request, who, "csv")
        if isinstance(got, web.Response):
            return got
        flt, group_by, reports = got
        out = io.StringIO()
        csv.writer(out, lineterminator="\r\n").writerows(csv_rows(reports, group_by))
        start, end = flt.start.astimezone(DEFAULT_TZ), flt.end.astimezone(DEFAULT_TZ)
        name = f"kpis-{start:%Y%m%d}-{end:%Y%m%d}.csv"  # China dates, [start, end)
        return web.Response(
            body=out.getvalue().encode("utf-8"),
            content_type="text/csv", charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return [("GET", "/kpis", as_json), ("GET", "/kpis.csv", as_csv)]


def _dumps(obj: Any) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False)
