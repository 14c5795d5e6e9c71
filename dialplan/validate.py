"""Whole-config checks: every reference resolves, nothing is defined twice.

:func:`load_config` is the one entry point: YAML (with line numbers) → pydantic
model → cross-reference checks. It returns a :class:`Config` or raises
:class:`ConfigError` listing every issue with file, line and key.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from .loader import ConfigError, ConfigIssue, SourceMap, load_yaml, load_yaml_text
from .model import Config
from .say import ANNOUNCEMENT_PROMPTS, NUMBER_PROMPTS

Ref = tuple[str | int, ...]

# Extensions of hotline-xfer-caller besides the destinations (a department with a trunk
# is one): a department may not take their names.
RESERVED_EXTENS = frozenset({"join", "i", "h", "s", "t", "failed"})


def load_config(path: Path, prompt_dirs: Iterable[Path] = ()) -> Config:
    data, source = load_yaml(path)
    return build_config(data, source, prompt_dirs)


def load_config_text(text: str, name: str = "<string>", prompt_dirs: Iterable[Path] = ()) -> Config:
    data, source = load_yaml_text(text, name)
    return build_config(data, source, prompt_dirs)


def build_config(data: object, source: SourceMap, prompt_dirs: Iterable[Path] = ()) -> Config:
    if not isinstance(data, dict):
        raise ConfigError([source.issue((), "the file must be a mapping of sections (hotline:, centres:, ...)")])
    try:
        cfg = Config.model_validate(data)
    except ValidationError as e:
        issues = []
        seen_paths: set[Ref] = set()
        for err in e.errors():
            loc = _data_path(data, err["loc"])
            if loc in seen_paths:
                continue  # the other branches of a union (Ident | "always") say the same
            seen_paths.add(loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (see config/README.md for the keys this section takes)"
            elif err["type"] == "missing":
                msg = "required key is missing"
            elif err["type"] == "string_pattern_mismatch":
                msg = f"{err['input']!r} does not match the expected form {err['ctx']['pattern']}"
            issues.append(source.issue(loc, msg))
        raise ConfigError(issues) from None
    issues = cross_check(cfg, source, list(prompt_dirs))
    if issues:
        raise ConfigError(issues)
    return cfg


def _data_path(data: object, loc: Iterable[str | int]) -> Ref:
    """The part of a pydantic error location that names keys and items of the YAML.

    pydantic adds steps of its own: ``[key]`` when a mapping key is wrong, and the
    branch of a union (``constrained-str``, ``literal['always']``) or validator
    (``function-after[...]``). Those are no key the admin wrote, so they are dropped.
    """
    out: list[str | int] = []
    cur: object = data
    for part in loc:
        if isinstance(cur, dict):
            if part == "[key]":
                break  # the key itself is at fault: name the entry
            out.append(part)
            cur = cur.get(part)
        elif isinstance(cur, list | tuple) and isinstance(part, int):
            out.append(part)
            cur = cur[part] if 0 <= part < len(cur) else None
        # otherwise a step of pydantic's own, below the value the admin wrote
    return tuple(out)


_SINGULAR = {"counties": "county", "hours": "hours", "time_limits": "time limit"}


def _ref(issues: list[ConfigIssue], source: SourceMap, where: Ref, kind: str, name: str, known: Iterable[str]) -> None:
    known = list(known)
    if name not in known:
        hint = f"; known {kind}: {', '.join(sorted(known))}" if known else f"; no {kind} are defined"
        one = _SINGULAR.get(kind, kind.removesuffix("s"))
        issues.append(source.issue(where, f"{one} {name!r} does not exist{hint}"))


def cross_check(cfg: Config, src: SourceMap, prompt_dirs: list[Path]) -> list[ConfigIssue]:  # noqa: C901
    out: list[ConfigIssue] = []
    numbers = [n.number for n in cfg.numbers]
    hours = [*cfg.hours, "always"]

    _ref(out, src, ("hotline", "default_queue"), "queues", cfg.hotline.default_queue, cfg.queues)
    out.extend(_reserved_names(cfg, src))
    for line in cfg.hotline.emergency_words:
        _ref(out, src, ("hotline", "emergency_words", line), "emergency_lines", line, cfg.emergency_lines)

    for cid, c in cfg.centres.items():
        if c.parent is not None:
            _ref(out, src, ("centres", cid, "parent"), "centres", c.parent, cfg.centres)
        _ref(out, src, ("centres", cid, "hours"), "hours", c.hours, hours)
        _ref(out, src, ("centres", cid, "queue"), "queues", c.queue, cfg.queues)
    if not any(c.level == "province" and c.hours == "always" for c in cfg.centres.values()):
        out.append(src.issue(("centres",), "one centre must be the province (level: province) open always (hours: always)"))

    area_codes: dict[str, str] = {}
    for cid, city in cfg.cities.items():
        if city.centre:
            _ref(out, src, ("cities", cid, "centre"), "centres", city.centre, cfg.centres)
        if city.area_code in area_codes:
            out.append(src.issue(("cities", cid, "area_code"), f"area code {city.area_code} is already used by city {area_codes[city.area_code]!r}"))
        area_codes[city.area_code] = cid
        for kid, county in city.counties.items():
            if county.queue:
                _ref(out, src, ("cities", cid, "counties", kid, "queue"), "queues", county.queue, cfg.queues)

    seen_numbers: dict[str, int] = {}
    for i, n in enumerate(cfg.numbers):
        where: Ref = ("numbers", i)
        if n.number in seen_numbers:
            out.append(src.issue((*where, "number"), f"number {n.number} is defined twice (also numbers[{seen_numbers[n.number]}])"))
        seen_numbers[n.number] = i
        _ref(out, src, (*where, "centre"), "centres", n.centre, cfg.centres)
        if n.menu:
            _ref(out, src, (*where, "menu"), "menus", n.menu, cfg.menus)
        if n.department:
            _ref(out, src, (*where, "department"), "departments", n.department, cfg.departments)
        if n.queue:
            _ref(out, src, (*where, "queue"), "queues", n.queue, cfg.queues)
        if n.kind == "legacy" and n.mode == "forward" and not (n.queue or (n.department and cfg.departments.get(n.department) and cfg.departments[n.department].queue)):
            out.append(src.issue(where, "a forwarded legacy number needs a queue (here or on its department)"))
        if n.trunk:
            _ref(out, src, (*where, "trunk"), "trunks", n.trunk, cfg.trunks)
        if n.kind == "legacy" and n.mode == "relay" and n.trunk in cfg.trunks and cfg.trunks[n.trunk].kind != "centre":
            out.append(src.issue((*where, "trunk"), f"mode 'relay' needs a city centre's trunk (kind centre), not {cfg.trunks[n.trunk].kind!r}"))
        if n.kind == "legacy" and n.mode == "centre" and n.department in cfg.departments and not cfg.departments[n.department].trunk:
            out.append(src.issue((*where, "mode"), f"mode 'centre' transfers to the department's centre, but department {n.department!r} has no trunk"))

    for did, d in cfg.departments.items():
        if did in RESERVED_EXTENS and d.trunk:
            out.append(src.issue(("departments", did), f"{did!r} is a name the transfer dialplan uses itself; choose another"))
        if d.queue:
            _ref(out, src, ("departments", did, "queue"), "queues", d.queue, cfg.queues)
        if d.trunk:
            _ref(out, src, ("departments", did, "trunk"), "trunks", d.trunk, cfg.trunks)

    targets = {
        "menus": list(cfg.menus),
        "queues": list(cfg.queues),
        "numbers": numbers,
        "emergency_lines": list(cfg.emergency_lines),
        "prompts": None,  # checked as prompts below
    }
    from .model import ACTION_KINDS

    for mid, m in cfg.menus.items():
        keys: dict[str, int] = {}
        for i, ch in enumerate(m.choices):
            where = ("menus", mid, "choices", i)
            if ch.key is not None:
                if ch.key in keys:
                    out.append(src.issue((*where, "key"), f"key {ch.key} is already used by choices[{keys[ch.key]}] of this menu"))
                if ch.key in cfg.hotline.operator_keys:
                    out.append(src.issue((*where, "key"), f"key {ch.key} is reserved: it reaches a person from every menu (hotline.operator_keys)"))
                keys[ch.key] = i
            if ch.city is not None:
                _ref(out, src, (*where, "city"), "cities", ch.city, cfg.cities)
                if ch.county is not None and ch.city in cfg.cities:
                    _ref(out, src, (*where, "county"), "counties", ch.county, cfg.cities[ch.city].counties)
            elif ch.county is not None:
                out.append(src.issue((*where, "county"), "a county needs its city: add city: to this choice"))
            a = ch.parsed
            kind_targets = ACTION_KINDS[a.kind]
            if kind_targets and kind_targets != "prompts":
                _ref(out, src, (*where, "action"), kind_targets, a.target, targets[kind_targets] or [])
            if a.kind == "menu" and a.target == mid:
                out.append(src.issue((*where, "action"), "a menu cannot lead to itself; use play:PROMPT to repeat information"))
            if a.kind == "legacy" and _is_hotline_number(cfg, seen_numbers, a.target):
                out.append(src.issue((*where, "action"), f"{a.target} is not a legacy number"))
        fb = m.fallback
        fb_targets = ACTION_KINDS[fb.kind]
        if fb_targets:
            _ref(out, src, ("menus", mid, "after_retries"), fb_targets, fb.target, targets[fb_targets] or [])
        if fb.kind == "legacy" and _is_hotline_number(cfg, seen_numbers, fb.target):
            where_fb = ("menus", mid, "after_retries")
            out.append(src.issue(where_fb, f"{fb.target} is not a legacy number"))

    seats_of_agent: dict[str, str] = {}
    for sid, s in cfg.seats.items():
        _ref(out, src, ("seats", sid, "centre"), "centres", s.centre, cfg.centres)
        if s.trunk:
            _ref(out, src, ("seats", sid, "trunk"), "trunks", s.trunk, cfg.trunks)
        if s.county:
            counties = [k for city in cfg.cities.values() for k in city.counties]
            _ref(out, src, ("seats", sid, "county"), "counties", s.county, counties)
        if s.agent:
            if s.agent in seats_of_agent:
                out.append(src.issue(("seats", sid, "agent"), f"agent {s.agent!r} already sits at seat {seats_of_agent[s.agent]!r}; one seat per agent"))
            seats_of_agent[s.agent] = sid
        if sid in cfg.trunks:
            out.append(src.issue(("seats", sid), f"seat {sid!r} has the same name as a trunk"))
        # ChanSpy picks channels by name prefix: listening to seat "nc" (PJSIP/nc-...)
        # would also hear seat "nc-01" (PJSIP/nc-01-...)
        if shadow := next((o for o in cfg.seats if sid.startswith(f"{o}-")), None):
            out.append(src.issue(("seats", sid), f"seat id {sid!r} starts with seat {shadow!r} "
                                 "and '-': listening to that seat would hear this one too "
                                 "(channel names PJSIP/<seat>-...); rename one of them"))

    for uid, u in cfg.users.items():
        if u.role == "supervisor":
            if u.centre is None:
                out.append(src.issue(("users", uid), "a supervisor needs the centre they supervise: centre: ID"))
            else:
                _ref(out, src, ("users", uid, "centre"), "centres", u.centre, cfg.centres)
    if cfg.users:
        for sid, s in cfg.seats.items():
            if s.agent and (s.agent not in cfg.users or cfg.users[s.agent].role != "agent"):
                out.append(src.issue(("seats", sid, "agent"), f"{s.agent!r} is not a user with role agent under users:"))

    for qid, q in cfg.queues.items():
        _ref(out, src, ("queues", qid, "centre"), "centres", q.centre, cfg.centres)
        for i, mem in enumerate(q.members):
            _ref(out, src, ("queues", qid, "members", i), "seats", mem, cfg.seats)
        if len(set(q.members)) != len(q.members):
            out.append(src.issue(("queues", qid, "members"), "a seat is listed twice"))
        if q.overflow:
            _ref(out, src, ("queues", qid, "overflow", "to"), "queues", q.overflow.to, cfg.queues)
    # Overflow chains must end (no A -> B -> A). Each loop is reported once, at the
    # queue of the loop written first; queues that merely lead into it are not.
    reported: set[frozenset[str]] = set()
    for qid in cfg.queues:
        seen = [qid]
        cur = cfg.queues[qid].overflow
        while cur and cur.to in cfg.queues:
            if cur.to in seen:
                loop = frozenset(seen[seen.index(cur.to):])
                if cur.to == qid and loop not in reported:
                    reported.add(loop)
                    out.append(src.issue(
                        ("queues", qid, "overflow", "to"),
                        "overflow loops: " + " -> ".join([*seen, cur.to]),
                    ))
                break
            seen.append(cur.to)
            cur = cfg.queues[cur.to].overflow

    # pjsip.conf identifies a trunk by `match = ADDRESS`, without the port: two
    # trunks at one address (even on different ports) cannot be told apart.
    addresses: dict[str, str] = {}
    for tid, t in cfg.trunks.items():
        key = str(ipaddress.ip_address(t.address))
        if key in addresses:
            msg = (
                f"{t.address} is already trunk {addresses[key]!r}; "
                "PJSIP identifies trunks by address"
            )
            out.append(src.issue(("trunks", tid, "address"), msg))
        addresses[key] = tid
        if t.address == cfg.network.sip.bind and t.port == cfg.network.sip.port:
            out.append(src.issue(("trunks", tid, "address"), "a trunk cannot be the hotline's own SIP address"))
    if not any(t.kind == "carrier" for t in cfg.trunks.values()):
        out.append(src.issue(("trunks",), "no carrier trunk: the hotline would receive no calls"))

    cb_trunk = cfg.callbacks.trunk
    if cb_trunk is not None:
        _ref(out, src, ("callbacks", "trunk"), "trunks", cb_trunk, cfg.trunks)
        if cb_trunk in cfg.trunks and cfg.trunks[cb_trunk].kind != "carrier":
            out.append(src.issue(("callbacks", "trunk"), f"trunk {cb_trunk!r} is a {cfg.trunks[cb_trunk].kind} trunk; "
                                 "citizens are called back over a carrier trunk"))

    sv = cfg.survey  # the satisfaction survey (issue 6): calling hours, carrier trunk only
    if sv.hours != "always":
        _ref(out, src, ("survey", "hours"), "hours", sv.hours, cfg.hours)
    if sv.trunk is not None:
        _ref(out, src, ("survey", "trunk"), "trunks", sv.trunk, cfg.trunks)
        if sv.trunk in cfg.trunks and cfg.trunks[sv.trunk].kind != "carrier":
            out.append(src.issue(("survey", "trunk"), f"trunk {sv.trunk!r} is a {cfg.trunks[sv.trunk].kind} trunk; "
                                 "survey calls go to citizens over a carrier trunk"))

    for line, e in cfg.emergency_lines.items():
        _ref(out, src, ("emergency_lines", line, "route", "trunk"), "trunks", e.route.trunk, cfg.trunks)
        if e.alternate:
            _ref(out, src, ("emergency_lines", line, "alternate", "trunk"), "trunks", e.alternate.trunk, cfg.trunks)

    out.extend(_workorder_refs(cfg, src))

    ports: dict[tuple[str, int], str] = {}
    for name in ("sip", "fastagi", "ami", "http", "redis", "audiosocket"):
        ep = getattr(cfg.network, name)
        if (ep.bind, ep.port) in ports:
            out.append(src.issue(("network", name, "port"), f"port {ep.port} is already used by network.{ports[(ep.bind, ep.port)]}"))
        ports[(ep.bind, ep.port)] = name

    out.extend(check_prompts(cfg, src, prompt_dirs))
    return out


def _workorder_refs(cfg: Config, src: SourceMap) -> list[ConfigIssue]:
    """Units, unit users and time-limit names of work orders (workorders/)."""
    out: list[ConfigIssue] = []
    for uid, unit in cfg.units.items():
        _ref(out, src, ("units", uid, "centre"), "centres", unit.centre, cfg.centres)
    for uid, u in cfg.users.items():
        if u.role == "unit":
            if u.unit is None:
                out.append(src.issue(("users", uid), "a unit user needs the unit they act for: unit: ID"))
            else:
                _ref(out, src, ("users", uid, "unit"), "units", u.unit, cfg.units)
        elif u.unit is not None:
            out.append(src.issue(("users", uid, "unit"), "only a user with role unit has a unit"))
    wo = cfg.workorders
    _ref(out, src, ("workorders", "default_limit"), "time_limits", wo.default_limit, wo.time_limits)
    for cat, limit in wo.category_limits.items():
        _ref(out, src, ("workorders", "category_limits", cat), "time_limits", limit, wo.time_limits)
    if isinstance(wo.remind_before, dict):
        for limit in wo.remind_before:
            _ref(out, src, ("workorders", "remind_before", limit), "time_limits", limit,
                 wo.time_limits)
        if missing := sorted(set(wo.time_limits) - set(wo.remind_before)):
            out.append(src.issue(
                ("workorders", "remind_before"),
                f"no reminder time for time limit {missing[0]!r}: name every class of "
                "time_limits here, or give one time for all (e.g. 1h)"))
    out.extend(_calendar_issues(cfg, src))
    return out


def _calendar_issues(cfg: Config, src: SourceMap) -> list[ConfigIssue]:
    """Time limits and ``remind_before`` in working days (``5wd``) count the days of
    ``workorders.calendar``."""
    wo, out = cfg.workorders, []
    in_days: list[tuple[tuple[str, ...], str]] = [
        (("workorders", "time_limits", name), f"time limit {name!r}")
        for name, tl in sorted(wo.time_limits.items()) if tl.working_days
    ]
    reminders = wo.remind_before
    if isinstance(reminders, dict):
        in_days += [
            (("workorders", "remind_before", name), f"remind_before of {name!r}")
            for name, tl in sorted(reminders.items()) if tl.working_days
        ]
    elif reminders.working_days:
        in_days.append((("workorders", "remind_before"), "remind_before"))
    if wo.calendar is None:
        if in_days:
            where, what = in_days[0]
            out.append(src.issue(
                where,
                f"{what} counts working days: name the timetable whose "
                "working days count as workorders.calendar (an id under hours:, or always)"))
    elif wo.calendar != "always":
        _ref(out, src, ("workorders", "calendar"), "hours", wo.calendar, cfg.hours)
        cal = cfg.hours.get(wo.calendar)
        if cal is not None and not cal.always and not any(cal.weekly.values()):
            out.append(src.issue(
                ("workorders", "calendar"),
                f"timetable {wo.calendar!r} has no working day in its week (weekly: is empty)"))
    return out


def _is_hotline_number(cfg: Config, index: dict[str, int], number: str) -> bool:
    """``number`` is defined, but as the hotline itself rather than a legacy number."""
    return number in index and cfg.numbers[index[number]].kind != "legacy"


# Names the compiler itself uses: a queue called "i" would be the dialplan's
# invalid-extension handler, a trunk called "global" the PJSIP global section.
RESERVED_EXTENSIONS = frozenset({"i", "s", "t", "h", "T", "e", "o", "a", "fax", "talk"})
RESERVED_SECTIONS = frozenset({"global", "system", "media", "transport-udp", "transport-tcp", "general"})


def _reserved_names(cfg: Config, src: SourceMap) -> list[ConfigIssue]:
    out: list[ConfigIssue] = []
    for qid in cfg.queues:
        if qid in RESERVED_EXTENSIONS or qid in RESERVED_SECTIONS:
            out.append(src.issue(("queues", qid), f"{qid!r} is reserved by the generated dialplan; choose another queue id"))
    seat_sections = set(cfg.seats) | {f"{s}-auth" for s in cfg.seats}
    for section, ids in (("trunks", set(cfg.trunks)), ("seats", set(cfg.seats))):
        for name in sorted(ids):
            if name in RESERVED_SECTIONS:
                out.append(src.issue((section, name), f"{name!r} is reserved in pjsip.conf; choose another id"))
    for tid in cfg.trunks:
        if tid in seat_sections and tid not in cfg.seats:
            out.append(src.issue(("trunks", tid), f"{tid!r} clashes with the auth section of a seat in pjsip.conf"))
    return out


def referenced_prompts(cfg: Config) -> dict[str, Ref]:
    """Every prompt name the config plays, with the first place that names it."""
    refs: dict[str, Ref] = {}
    refs.setdefault(cfg.hotline.welcome_prompt, ("hotline", "welcome_prompt"))
    refs.setdefault(cfg.hotline.apology_prompt, ("hotline", "apology_prompt"))
    if cfg.softphone_seats():
        for key in ("logged_in_prompt", "logged_out_prompt", "paused_prompt", "resumed_prompt"):
            refs.setdefault(getattr(cfg.agents, key), ("agents", key))
    for i, n in enumerate(cfg.numbers):
        if n.greeting:
            refs.setdefault(n.greeting, ("numbers", i, "greeting"))
    for line, e in cfg.emergency_lines.items():
        if e.prompt:
            refs.setdefault(e.prompt, ("emergency_lines", line, "prompt"))
    if cfg.emergency_lines and cfg.softphone_seats():
        refs.setdefault(cfg.transfers.failed_prompt, ("transfers", "failed_prompt"))
    for qid, q in cfg.queues.items():  # waiting in a queue (issue 4)
        if q.announce_every:
            for name in ANNOUNCEMENT_PROMPTS:
                refs.setdefault(name, ("queues", qid, "announce_every"))
        if q.wait_message:
            refs.setdefault(q.wait_message, ("queues", qid, "wait_message"))
        if q.callback_after:
            for key in ("offer_prompt", "confirm_prompt", "choice_prompt", "enter_prompt",
                        "invalid_prompt", "accepted_prompt"):
                refs.setdefault(getattr(cfg.callbacks, key), ("callbacks", key))
            for name in NUMBER_PROMPTS[:10]:  # the number is read back digit by digit
                refs.setdefault(name, ("queues", qid, "callback_after"))
    for key in ("question_prompt", "thanks_prompt", "invalid_prompt"):  # the survey call
        refs.setdefault(getattr(cfg.survey, key), ("survey", key))
    if cfg.transfers.announce_case:  # the case reference, digit by digit (transfer/)
        refs.setdefault(cfg.transfers.case_prompt, ("transfers", "case_prompt"))
        for name in NUMBER_PROMPTS[:10]:
            refs.setdefault(name, ("transfers", "announce_case"))
    for mid, m in cfg.menus.items():
        refs.setdefault(m.prompt, ("menus", mid, "prompt"))
        refs.setdefault(m.retry_prompt, ("menus", mid, "retry_prompt"))
        for i, ch in enumerate(m.choices):
            a = ch.parsed
            if a.kind in ("play", "hangup"):
                refs.setdefault(a.target, ("menus", mid, "choices", i, "action"))
    return refs


PROMPT_EXTENSIONS = (".wav", ".sln", ".ulaw", ".alaw", ".gsm", ".g722")


def find_prompt(name: str, prompt_dirs: Iterable[Path]) -> Path | None:
    """First recorded file for ``name``: an admin's recording wins over a generated one."""
    for d in prompt_dirs:
        for ext in PROMPT_EXTENSIONS:
            p = d / f"{name}{ext}"
            if p.is_file():
                return p
    return None


def check_prompts(cfg: Config, src: SourceMap, prompt_dirs: list[Path]) -> list[ConfigIssue]:
    out: list[ConfigIssue] = []
    for name, where in referenced_prompts(cfg).items():
        if name in cfg.prompts:
            if prompt_dirs and find_prompt(name, prompt_dirs) is None:
                out.append(src.issue(where, f"prompt {name!r} has text but no sound file yet: run `hotline prompts` (or `make prompts`)"))
            continue
        if prompt_dirs and find_prompt(name, prompt_dirs) is not None:
            continue
        where_dirs = ", ".join(str(d) for d in prompt_dirs) or "the prompt folders"
        out.append(src.issue(where, f"prompt {name!r} is missing: give its text under prompts: or record {name}.wav in {where_dirs}"))
    return out
