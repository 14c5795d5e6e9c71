"""Typed model of ``config/hotline.yaml``.

The YAML is parsed by :mod:`dialplan.loader` (which keeps line numbers), shaped
by these pydantic models (types, ranges, unknown keys) and then checked as a
whole by :func:`dialplan.validate.validate` (references between sections).
Every name that ends up in generated Asterisk configuration is an
:data:`Ident` (lower-case ASCII), so no admin- or caller-supplied text is ever
written into the dialplan unquoted.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import date, time
from typing import Annotated, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

IDENT_RE = r"^[a-z][a-z0-9_-]{0,38}$"
Ident = Annotated[str, Field(pattern=IDENT_RE)]
# SIP user parts of agent seats: digits or ASCII ids (they become PJSIP section names).
SeatId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,38}$")]
Digits = Annotated[str, Field(pattern=r"^[0-9]{1,20}$")]
DtmfKey = Annotated[str, Field(pattern=r"^[0-9*#]$")]
PromptName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Port = Annotated[int, Field(ge=1, le=65535)]


def _ipv4(v: str) -> str:
    """IPv4 only for now: the generated PJSIP and AMI ACL lines are IPv4 forms."""
    try:
        ipaddress.IPv4Address(v)
    except ValueError:
        raise ValueError(f"{v!r} is not an IPv4 address such as 127.0.0.1") from None
    return v


Word = Annotated[str, Field(min_length=1, max_length=40)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- actions

ACTION_KINDS: dict[str, str] = {
    # kind -> what its target names ("" = takes no target)
    "menu": "menus",
    "queue": "queues",
    "legacy": "numbers",
    "emergency": "emergency_lines",
    "callback": "",
    "play": "prompts",
    "hangup": "prompts",
    "operator": "",
}
# Actions that end with a person answering: what a menu must fall back to.
PERSON_KINDS = frozenset({"queue", "operator", "legacy"})


@dataclass(frozen=True)
class Action:
    """What a menu choice does, written ``kind:target`` in the YAML.

    ``menu:social``, ``queue:province``, ``legacy:12333``, ``emergency:120``,
    ``callback``, ``play:office-hours`` (play and return to the menu),
    ``hangup:goodbye`` (play and hang up), ``operator`` (the caller's
    local-first queue, the same as pressing 0).
    """

    kind: str
    target: str = ""

    @classmethod
    def parse(cls, text: str) -> Action:
        kind, _, target = text.partition(":")
        kind, target = kind.strip(), target.strip()
        if kind not in ACTION_KINDS:
            raise ValueError(
                f"unknown action {kind!r}; expected one of "
                + ", ".join(f"{k}:NAME" if v else k for k, v in ACTION_KINDS.items())
            )
        needs = ACTION_KINDS[kind]
        if needs and not target:
            raise ValueError(f"action {kind!r} needs a target: {kind}:NAME")
        if not needs and target:
            raise ValueError(f"action {kind!r} takes no target")
        if target and not re.match(r"^[a-z0-9][a-z0-9_-]{0,38}$", target):
            raise ValueError(f"action target {target!r} must be lower-case letters, digits, - or _")
        return cls(kind, target)

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}" if self.target else self.kind


def _parse_action(v: object) -> Action:
    if isinstance(v, Action):
        return v
    if not isinstance(v, str):
        raise ValueError("expected an action such as queue:province or menu:social")
    return Action.parse(v)


# --------------------------------------------------------------------------- sections


class Hotline(Strict):
    name: str
    language: Literal["zh"] = "zh"
    default_queue: Ident
    operator_keys: tuple[DtmfKey, ...] = ("0",)
    operator_words: tuple[Word, ...] = ("人工", "人工服务", "转人工")
    emergency_words: dict[Digits, tuple[Word, ...]] = Field(default_factory=dict)
    apology_prompt: PromptName = "apology"
    welcome_prompt: PromptName = "welcome"


class Endpoint(Strict):
    bind: str = "127.0.0.1"
    port: Port

    @field_validator("bind")
    @classmethod
    def _ip(cls, v: str) -> str:
        return _ipv4(v)


class RtpRange(Strict):
    start: Port = 10000
    end: Port = 10999

    @model_validator(mode="after")
    def _order(self) -> RtpRange:
        if self.end <= self.start:
            raise ValueError("rtp.end must be above rtp.start")
        return self


class Network(Strict):
    sip: Endpoint = Endpoint(port=5060)
    rtp: RtpRange = RtpRange()
    fastagi: Endpoint = Endpoint(port=4573)
    ami: Endpoint = Endpoint(port=5038)
    http: Endpoint = Endpoint(port=8080)
    redis: Endpoint = Endpoint(port=6379)
    # Where the controller takes AudioSocket() connections (speech menus).
    audiosocket: Endpoint = Endpoint(port=4574)
    # Longest time one AGI step may hold a channel before the dialplan takes
    # the call back (TIMEOUT(absolute) + the T extension).
    agi_timeout: Annotated[int, Field(ge=5, le=3600)] = 300


_SPAN = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Hours(Strict):
    """Weekly opening spans plus a holiday calendar; ``always`` is 24/7."""

    always: bool = False
    weekly: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    holidays: tuple[date, ...] = ()
    # Working days that fall on a weekend (調休): open with the weekday spans of mon.
    workdays: tuple[date, ...] = ()

    @field_validator("weekly")
    @classmethod
    def _weekly(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for days, spans in v.items():
            for d in cls.expand_days(days):
                if d not in DAYS:
                    raise ValueError(f"unknown day {d!r} in {days!r}; use mon..sun or mon-fri")
            for span in spans:
                m = _SPAN.match(span)
                if not m:
                    raise ValueError(f"span {span!r} must look like 08:30-12:00")
                a = time(int(m[1]), int(m[2]))
                b = time(int(m[3]) % 24, int(m[4])) if m[3] != "24" else time(23, 59, 59)
                if b <= a:
                    raise ValueError(f"span {span!r} ends before it starts")
        return v

    @staticmethod
    def expand_days(spec: str) -> list[str]:
        out: list[str] = []
        for part in spec.split(","):
            part = part.strip()
            if "-" in part:
                a, b = part.split("-", 1)
                if a in DAYS and b in DAYS:
                    i, j = DAYS.index(a), DAYS.index(b)
                    out.extend(DAYS[i : j + 1])
                    continue
            out.append(part)
        return out


class Centre(Strict):
    name: str
    level: Literal["province", "city", "county"]
    parent: Ident | None = None
    hours: Ident | Literal["always"] = "always"
    queue: Ident


class County(Strict):
    name: str
    # Remote county seats ring first for callers of this county (local first).
    queue: Ident | None = None
    # Caller-ID prefixes (fixed line number after the area code, or mobile segments)
    prefixes: tuple[Digits, ...] = ()


class City(Strict):
    name: str
    area_code: Annotated[str, Field(pattern=r"^0[0-9]{2,3}$")]
    centre: Ident | None = None
    counties: dict[Ident, County] = Field(default_factory=dict)


class Number(Strict):
    """A number the hotline answers: 12345 itself or a retained legacy number."""

    number: Digits
    centre: Ident
    kind: Literal["hotline", "legacy"] = "hotline"
    menu: Ident | None = None
    department: Ident | None = None
    mode: Literal["forward", "centre", "relay"] | None = None
    greeting: PromptName | None = None
    queue: Ident | None = None
    # mode centre: the call is handed to the department's centre blind (dialled straight
    # through) or warm (the caller held in a bridge while the centre rings; the transfer
    # service, see transfer/). Either way a centre that does not answer gives a person.
    handoff: Literal["blind", "warm"] = "blind"
    # mode relay: the city centre's trunk (matters handed up arrive from it, local matters
    # go back down over it) and the number dialled there to hand a matter down.
    trunk: Ident | None = None
    down_number: Digits = "12345"

    @model_validator(mode="after")
    def _shape(self) -> Number:
        if self.kind == "hotline" and not self.menu:
            raise ValueError("a hotline number needs a menu")
        if self.kind == "legacy":
            if not self.mode:
                raise ValueError("a legacy number needs a mode: forward, centre or relay")
            if self.mode == "relay" and not self.trunk:
                raise ValueError("a relay number needs the city centre's trunk")
            if self.mode != "relay" and not self.department:
                raise ValueError("a legacy number needs its department")
        return self


class Department(Strict):
    name: str
    queue: Ident | None = None
    trunk: Ident | None = None
    number: Digits | None = None
    # How long the department's centre rings before the caller is given back to a person.
    answer_timeout: Annotated[int, Field(ge=3, le=120)] = 20


class Choice(Strict):
    key: DtmfKey | None = None
    words: tuple[Word, ...] = ()
    action: str
    # Choosing this sets the caller's locality (a menu answer beats the caller ID):
    # e.g. "which city is your matter in?" for a mobile caller from elsewhere.
    city: Ident | None = None
    county: Ident | None = None
    # What kind of matter choosing this means (the work order's category, 诉求类型).
    category: Literal["consultation", "help", "complaint", "opinion", "suggestion"] | None = None

    @field_validator("action")
    @classmethod
    def _action(cls, v: str) -> str:
        _parse_action(v)
        return v

    @property
    def parsed(self) -> Action:
        return _parse_action(self.action)

    @model_validator(mode="after")
    def _reachable(self) -> Choice:
        if self.key is None and not self.words:
            raise ValueError("a choice needs a key, words, or both")
        return self


class Menu(Strict):
    prompt: PromptName
    timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    retries: Annotated[int, Field(ge=0, le=5)] = 2
    retry_prompt: PromptName = "menu-retry"
    after_retries: str = "operator"
    open_question: bool = False
    choices: tuple[Choice, ...]

    @field_validator("after_retries")
    @classmethod
    def _after(cls, v: str) -> str:
        a = _parse_action(v)
        if a.kind not in PERSON_KINDS:
            raise ValueError(
                f"after the last retry the caller must reach a person (queue:NAME, operator "
                f"or legacy:NUMBER), not {a.kind!r}"
            )
        return v

    @property
    def fallback(self) -> Action:
        return _parse_action(self.after_retries)


class Overflow(Strict):
    after: Annotated[int, Field(ge=0, le=3600)] = 60
    to: Ident


class Queue(Strict):
    centre: Ident
    name: str = ""
    strategy: Literal[
        "ringall", "leastrecent", "fewestcalls", "random", "rrmemory", "linear", "wrandom",
        "rrordered",
    ] = "rrmemory"
    ring_timeout: Annotated[int, Field(ge=3, le=120)] = 15
    wrapup: Annotated[int, Field(ge=0, le=600)] = 5
    # queues.conf `retry`: a caller whose turn came but who could be offered to nobody
    # (the free seat was just taken by another caller's offer, or the seat rang out)
    # waits this long, deaf to seats freed meanwhile, before looking again (README
    # "Performance", Queues).
    retry: Annotated[int, Field(strict=True)] = 1  # a whole number: not true, not 1.5
    max_wait: Annotated[int, Field(ge=10, le=7200)] = 600
    members: tuple[SeatId, ...] = ()
    overflow: Overflow | None = None
    priority: Annotated[int, Field(ge=0, le=10)] = 0
    # Waiting (issue 4): Asterisk announces the caller's position and expected wait in
    # Mandarin every announce_every seconds (0 = off); wait_message interrupts the music
    # every message_every seconds; after callback_after seconds of waiting the
    # caller is offered a call-back by pressing 1 (0 = off).
    announce_every: Annotated[int, Field(ge=0, le=600)] = 60
    wait_message: PromptName | None = None
    message_every: Annotated[int, Field(ge=10, le=600)] = 45
    callback_after: Annotated[int, Field(ge=0, le=3600)] = 0

    @field_validator("retry")
    @classmethod
    def _retry(cls, v: int) -> int:
        if not 1 <= v <= 10:
            # Asterisk itself would read 0 or less as its default, 5 s.
            raise ValueError("retry is 1-10 seconds")
        return v

    @field_validator("announce_every")
    @classmethod
    def _announce_every(cls, v: int) -> int:
        if 0 < v < 10:
            raise ValueError("announce_every is 0 (no announcements) or 10-600 seconds")
        return v


class Callbacks(Strict):
    """Call-backs (回拨): a waiting caller hangs up and is called back in turn.

    See queues/callback.py.
    """

    # Further tries after a first call-back the citizen did not answer (busy, no answer).
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_delay: Annotated[int, Field(ge=5, le=86400)] = 300
    # How long the reserved agent's seat rings, then the citizen's phone.
    ring_agent: Annotated[int, Field(ge=5, le=120)] = 20
    ring_citizen: Annotated[int, Field(ge=5, le=120)] = 30
    # The carrier trunk that calls citizens back; none = the first carrier trunk.
    trunk: Ident | None = None
    # What the caller hears: the offer (in the queue), the number read back, the choice
    # (1 this number, 2 another), entering a number, a wrong number, the confirmation.
    offer_prompt: PromptName = "callback-offer"
    confirm_prompt: PromptName = "callback-confirm"
    choice_prompt: PromptName = "callback-choice"
    enter_prompt: PromptName = "callback-enter"
    invalid_prompt: PromptName = "callback-invalid"
    accepted_prompt: PromptName = "callback-accepted"


SurveyResult = Literal["satisfied", "basic", "dissatisfied"]
SURVEY_RESULTS: tuple[SurveyResult, ...] = ("satisfied", "basic", "dissatisfied")


class SurveyChoice(Strict):
    """One answer of the satisfaction survey: a key and, with speech on, words."""

    key: DtmfKey
    words: tuple[Word, ...] = ()


def _survey_choices() -> dict[SurveyResult, SurveyChoice]:
    return {
        "satisfied": SurveyChoice(key="1", words=("满意", "非常满意")),
        "basic": SurveyChoice(key="2", words=("基本满意", "一般")),
        "dissatisfied": SurveyChoice(key="3", words=("不满意",)),
    }


class Survey(Strict):
    """The call-back satisfaction survey (100% 回访) after a work order is closed.

    See workorders/survey.py.
    """

    # An id under hours: (or always): survey calls are placed only while it is open.
    hours: Ident | Literal["always"] = "always"
    # Seconds between the order's closing and the first survey call.
    delay: Annotated[int, Field(ge=0, le=7 * 86400)] = 600
    # Further tries after a call the citizen did not answer (no answer, busy), retry_delay apart.
    retries: Annotated[int, Field(ge=0, le=10)] = 2
    retry_delay: Annotated[int, Field(ge=5, le=7 * 86400)] = 1800
    ring_timeout: Annotated[int, Field(ge=5, le=120)] = 30
    # Seconds the citizen has to answer after the question.
    answer_wait: Annotated[float, Field(gt=0, le=30)] = 6.0
    # Survey calls under way at once, at most (the carrier's lines are shared).
    max_parallel: Annotated[int, Field(ge=1, le=50)] = 4
    # The carrier trunk that places survey calls; none = the first carrier trunk.
    trunk: Ident | None = None
    question_prompt: PromptName = "survey-question"
    thanks_prompt: PromptName = "survey-thanks"
    invalid_prompt: PromptName = "survey-invalid"
    choices: dict[SurveyResult, SurveyChoice] = Field(
        default_factory=_survey_choices
    )

    @model_validator(mode="after")
    def _choices(self) -> Survey:
        missing = [r for r in SURVEY_RESULTS if r not in self.choices]
        if missing:
            raise ValueError(f"survey choices need every answer; missing {', '.join(missing)}")
        keys = [c.key for c in self.choices.values()]
        if len(set(keys)) != len(keys):
            raise ValueError("each survey answer needs its own key")
        return self


class Seat(Strict):
    """An agent seat: a SIP softphone that registers, or a number at a county site."""

    centre: Ident
    kind: Literal["softphone", "remote"] = "softphone"
    name: str = ""
    agent: Ident | None = None
    # Printable ASCII without ; " \ or spaces: it is written into pjsip.conf.
    password: Annotated[str, Field(pattern=r'^[!#-:<-\[\]-~]{8,64}$')] | None = None
    county: Ident | None = None
    trunk: Ident | None = None
    number: Digits | None = None

    @model_validator(mode="after")
    def _shape(self) -> Seat:
        if self.kind == "softphone" and not self.password:
            raise ValueError("a softphone seat needs a password (8-64 characters)")
        if self.kind == "remote" and not (self.trunk and self.number):
            raise ValueError("a remote seat needs the county site's trunk and the seat's number")
        return self


class Trunk(Strict):
    kind: Literal["carrier", "emergency", "county", "department", "centre"]
    address: str
    port: Port = 5060
    transport: Literal["udp", "tcp"] = "udp"
    name: str = ""
    # Seconds between SIP OPTIONS probes; 0 = off. A trunk that stops answering is
    # Unavailable, so queues skip its remote seats at once instead of ringing them.
    qualify: Annotated[int, Field(ge=0, le=3600)] = 30

    @field_validator("address")
    @classmethod
    def _ip(cls, v: str) -> str:
        return _ipv4(v)


class Route(Strict):
    trunk: Ident
    number: Digits


class EmergencyLine(Strict):
    name: str
    route: Route
    alternate: Route | None = None
    answer_timeout: Annotated[int, Field(ge=3, le=60)] = 8
    # Played to the caller before the line is dialled ("正在为您转接119，请不要挂机"); none = no message.
    prompt: PromptName | None = None


class Transfers(Strict):
    """Warm transfers to emergency lines (三方通话), see transfer/."""

    # What the agent hears when no route of the line answered (the caller is back with them).
    failed_prompt: PromptName = "transfer-failed"
    # Say the call's 12345 case reference (its digits, one by one, in Mandarin: num-0..9)
    # to the emergency dispatcher or department when they answer, before they join.
    announce_case: bool = False
    case_prompt: PromptName = "transfer-case"


class User(Strict):
    """A user of the HTTP API. Agents are linked to their seat by ``seats.X.agent``."""

    name: str = ""
    role: Literal["agent", "supervisor", "admin", "unit"]
    password_hash: str
    centre: Ident | None = None  # a supervisor's centre
    unit: Ident | None = None  # a unit user's unit (units:): acts on the work orders dispatched to it

    @field_validator("password_hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        from hotline.auth import check_hash_format

        check_hash_format(v)
        return v


class Agents(Strict):
    """Rules for agents at their seats."""

    # Pause reason codes an agent may give (code -> what it means).
    pause_reasons: dict[Ident, str] = Field(
        default_factory=lambda: {"break": "休息", "lunch": "就餐", "training": "培训", "meeting": "会议",
                                 "after-call": "话后处理"}
    )
    # After this many offers in a row not answered, the agent is paused (0 = never).
    max_missed_offers: Annotated[int, Field(ge=0, le=20)] = 3
    # What the softphone hears after a feature code (*21 log in, *22 log out, *23 pause, *24 resume).
    logged_in_prompt: PromptName = "agent-logged-in"
    logged_out_prompt: PromptName = "agent-logged-out"
    paused_prompt: PromptName = "agent-paused"
    resumed_prompt: PromptName = "agent-resumed"


class Speech(Strict):
    model: str | None = None  # a vosk model directory; None = speech off (DTMF menus)
    silence_ms: Annotated[int, Field(ge=200, le=3000)] = 700
    min_confidence: Annotated[float, Field(ge=0, le=1)] = 0.6
    server: str | None = None  # host:port of a remote recogniser service


# --------------------------------------------------------------------------- work orders

_DURATION = re.compile(r"^([0-9]+)\s*([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(v: object) -> int:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"2h"`` or ``"7d"``."""
    if isinstance(v, bool):
        raise ValueError("expected a duration such as 2h, 30m, 7d or seconds")
    if isinstance(v, int):
        seconds = v
    elif isinstance(v, str) and (m := _DURATION.match(v.strip())):
        seconds = int(m[1]) * _UNIT_SECONDS[m[2]]
    else:
        raise ValueError(f"{v!r} is not a duration such as 2h, 30m, 7d or a number of seconds")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Duration = Annotated[int, BeforeValidator(parse_duration)]

_WORKING_DAYS = re.compile(r"^([0-9]+)\s*wd$")


@dataclass(frozen=True)
class TimeLimit:
    """A time limit (办理时限): calendar time, or whole working days.

    Working days are counted on ``workorders.calendar``: the clock runs on working
    days and stops on the others (weekends, holidays), so 1 working day from a
    Friday 15:00 ends on Monday 15:00.
    """

    seconds: int = 0  # calendar time
    working_days: int = 0  # or this many working days (seconds is then 0)

    def __str__(self) -> str:
        return f"{self.working_days}wd" if self.working_days else f"{self.seconds}s"


def parse_time_limit(v: object) -> TimeLimit:
    """``TimeLimit`` from a duration (``2h``, ``7d``, seconds) or working days (``5wd``)."""
    if isinstance(v, TimeLimit):
        return v
    if isinstance(v, str) and (m := _WORKING_DAYS.match(v.strip())):
        days = int(m[1])
        if not 1 <= days <= 366:
            raise ValueError(f"{v!r}: working days must be 1 to 366")
        return TimeLimit(working_days=days)
    if isinstance(v, int) or (isinstance(v, str) and _DURATION.match(v.strip())):
        return TimeLimit(seconds=parse_duration(v))  # its own message, e.g. "must be positive"
    raise ValueError(
        f"{v!r} is not a time limit such as 2h, 7d, a number of seconds, or 5wd (working days)"
    )


TimeLimitValue = Annotated[TimeLimit, BeforeValidator(parse_time_limit)]

# workorders: defaults (also the work-order lifecycle's, workorders.lifecycle.Policy)
DEFAULT_TIME_LIMITS: Final = {
    "urgent": TimeLimit(seconds=2 * 3600),  # a risk to people or property
    "utilities": TimeLimit(seconds=24 * 3600),  # water, power, gas, heat (水电气暖)
    "general": TimeLimit(seconds=7 * 86400),
    "complex": TimeLimit(seconds=15 * 86400),
}
DEFAULT_REMINDER: Final = TimeLimit(seconds=3600)


def parse_remind_before(v: object) -> TimeLimit | dict[str, TimeLimit]:
    """One reminder time for every class (``1h``, ``1wd``), or one per time limit."""
    if not isinstance(v, dict):
        return parse_time_limit(v)
    if not v:
        raise ValueError("give one time for every class (e.g. 1h), or one per time limit")
    out: dict[str, TimeLimit] = {}
    for k, x in v.items():
        if not isinstance(k, str) or not re.match(IDENT_RE, k):
            raise ValueError(f"{k!r} is not a time-limit id")
        try:
            out[k] = parse_time_limit(x)
        except ValueError as e:
            raise ValueError(f"{k}: {e}") from None
    return out


RemindBefore = Annotated[TimeLimit | dict[str, TimeLimit], BeforeValidator(parse_remind_before)]
CategoryName = Literal["consultation", "help", "complaint", "opinion", "suggestion"]


CpuList = Annotated[
    tuple[Annotated[int, Field(ge=0, le=4095)], ...], Field(min_length=1, max_length=4096)
]


class Cpus(Strict):
    # CPU numbers (as `nproc`/`taskset` count them) each part may run on; none: any.
    asterisk: CpuList | None = None
    controller: CpuList | None = None  # the controller, and the Redis `hotline up` starts

    @field_validator("asterisk", "controller")
    @classmethod
    def _unique(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("a CPU is listed twice")
        return v


class Storage(Strict):
    # SQLAlchemy URL of the work-order database; none = SQLite in the instance state folder.
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^(sqlite|postgresql)(\+[a-z0-9_]+)?://", v):
            raise ValueError("storage.url must be a sqlite:/// or postgresql+psycopg:// URL")
        return v


class Unit(Strict):
    """A responsible unit (承办单位) that work orders are dispatched to."""

    name: str
    centre: Ident  # the centre whose supervisors oversee it
    notice: str | None = None  # a contact for reminders (phone, mail, duty desk), shown in notices


class WorkOrders(Strict):
    """Work orders (工单): time limits, supervision (督办), the survey's effect. See workorders/."""

    time_limits: dict[Ident, TimeLimitValue] = Field(
        default_factory=lambda: dict(DEFAULT_TIME_LIMITS)
    )
    # The timetable (under hours:) whose working days the `wd` time limits count.
    calendar: Ident | Literal["always"] | None = None
    category_limits: dict[CategoryName, Ident] = Field(default_factory=dict)
    default_limit: Ident = "general"
    # Remind this long before the deadline: a duration or working days (1wd), for every
    # class, or per class ({urgent: 30m, general: 1wd}, naming each of time_limits).
    remind_before: RemindBefore = DEFAULT_REMINDER
    supervise_every: Annotated[int, Field(ge=5, le=86400)] = 60
    reopen_on_dissatisfied: bool = True
    notice_url: str | None = None

    @field_validator("notice_url")
    @classmethod
    def _notice_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", v):
            raise ValueError("notice_url must be an http:// or https:// URL")
        return v


class RecordingRetention(Strict):
    """How long recordings are kept, per kind, before the purge deletes them."""

    call: Duration = 180 * 86400
    survey: Duration = 90 * 86400


class Recordings(Strict):
    """Call recordings (录音), see recordings/."""

    # Folder inside the instance (Asterisk writes there as its own user): a plain
    # relative path, never absolute, never with "..".
    root: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,38}(/[a-z0-9][a-z0-9_-]{0,38}){0,3}$")] = "recordings"
    retention: RecordingRetention = RecordingRetention()
    purge_every: Annotated[Duration, Field(ge=60, le=7 * 86400)] = 3600


class Config(Strict):
    version: Literal[1] = 1
    hotline: Hotline
    network: Network = Network()
    speech: Speech = Speech()
    hours: dict[Ident, Hours] = Field(default_factory=dict)
    centres: dict[Ident, Centre]
    cities: dict[Ident, City] = Field(default_factory=dict)
    numbers: tuple[Number, ...]
    departments: dict[Ident, Department] = Field(default_factory=dict)
    prompts: dict[PromptName, str] = Field(default_factory=dict)
    menus: dict[Ident, Menu] = Field(default_factory=dict)
    queues: dict[Ident, Queue]
    seats: dict[SeatId, Seat] = Field(default_factory=dict)
    trunks: dict[Ident, Trunk] = Field(default_factory=dict)
    emergency_lines: dict[Digits, EmergencyLine] = Field(default_factory=dict)
    users: dict[Ident, User] = Field(default_factory=dict)
    agents: Agents = Agents()
    transfers: Transfers = Transfers()
    callbacks: Callbacks = Callbacks()
    storage: Storage = Storage()
    cpus: Cpus = Cpus()
    units: dict[Ident, Unit] = Field(default_factory=dict)
    workorders: WorkOrders = WorkOrders()
    survey: Survey = Survey()
    recordings: Recordings = Recordings()

    def number(self, digits: str) -> Number | None:
        return next((n for n in self.numbers if n.number == digits), None)

    def softphone_seats(self) -> dict[str, Seat]:
        return {k: s for k, s in self.seats.items() if s.kind == "softphone"}
