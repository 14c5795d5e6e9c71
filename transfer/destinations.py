"""Where a call can be transferred to, from the config (pure).

* an emergency line (``110``...): its route and alternate, dialled directly;
* a department with its own centre (``market``): its trunk and number;
* a city centre in front of the province (its trunk id, ``ganzhou-centre``): the
  relay number's ``down_number`` over that trunk.

Departments and centres are dialled through ``Local/<name>@hotline-handoff-dial/n``
(no optimisation, so the leg the transfer follows stays the same channel): the
dialplan there dials the trunk with the pre-dial handler that writes the checked
case reference, locality and origin into SIP headers (:mod:`dialplan.legacy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dialplan.model import Config

from .machine import RouteSpec

Kind = Literal["emergency", "department", "centre"]
#: How long a city centre rings when a matter is handed down (seconds).
CENTRE_ANSWER_TIMEOUT = 20


@dataclass(frozen=True)
class Destination:
    name: str
    kind: Kind
    routes: tuple[RouteSpec, ...]
    answer_timeout: int
    title: str = ""


def destinations(cfg: Config) -> dict[str, Destination]:
    out: dict[str, Destination] = {}
    for line, e in cfg.emergency_lines.items():
        routes = [RouteSpec(e.route.trunk, e.route.number)]
        if e.alternate is not None:
            routes.append(RouteSpec(e.alternate.trunk, e.alternate.number))
        out[line] = Destination(line, "emergency", tuple(routes), e.answer_timeout, e.name)
    for did, d in cfg.departments.items():
        if not d.trunk:
            continue
        number = d.number or next(
            (n.number for n in cfg.numbers if n.department == did and n.kind == "legacy"), "12345"
        )
        route = RouteSpec(d.trunk, number, via=did)
        out[did] = Destination(did, "department", (route,), d.answer_timeout, d.name)
    for n in cfg.numbers:
        if n.mode == "relay" and n.trunk and n.trunk not in out:
            route = RouteSpec(n.trunk, n.down_number, via=n.trunk)
            title = cfg.trunks[n.trunk].name if n.trunk in cfg.trunks else n.trunk
            out[n.trunk] = Destination(n.trunk, "centre", (route,), CENTRE_ANSWER_TIMEOUT, title)
    return out
