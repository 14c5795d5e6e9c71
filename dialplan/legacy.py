"""Dialplan of the retained legacy numbers and of hand-offs to other centres (issue 5).

The three integration modes of the provincial plan, one per legacy number in the YAML:

* ``forward`` (保留号码、呼叫转移): the legacy number rings into 12345; the caller
  hears the department's own greeting and goes straight to its skill queue (no
  generic menu). The origin (the legacy number, the department) is kept in
  ``HOTLINE_ORIGIN``/``HOTLINE_NUMBER``/``HOTLINE_DEPARTMENT`` (inherited by the
  agent's leg), shown in the agent's caller-ID name and announced to the
  controller (UserEvent ``HotlineOrigin``), which stores it with the call path.
* ``centre`` (保留中心、在线转办): the call is handed to the department's centre over
  its trunk, with the case reference, the caller's locality and the number dialled
  in SIP headers; ``handoff: blind`` dials straight through, ``warm`` asks the
  transfer service to hold the caller in a bridge while the centre rings
  (UserEvent ``HotlineHandoff``; the dialplan dials blind itself if the controller
  does not take the caller within a moment). No answer: a person at 12345.
* ``relay`` (完善中心、呼叫接转): a city centre with its own system hands
  province-level or cross-city matters up to this number over its trunk, with its
  case reference and the caller's locality in headers (read, checked, recorded); a
  menu choice ``legacy:NUMBER`` hands a local matter back down over the same trunk.

Header values are checked on the caller's channel with ``REGEX`` before they are
copied into the ``HOTLINE_HDR_*`` variables the outgoing leg inherits; only those
checked copies are written into headers by the pre-dial handler (Dial ``b()``),
see https://docs.asterisk.org/Asterisk_22_Documentation/API_Documentation/Dialplan_Functions/PJSIP_HEADER/
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from hotline import channel_vars as cv

from .model import Number
from .sanitize import text

if TYPE_CHECKING:
    from .compile import Compiler


def entry(c: Compiler, n: Number, *, inbound: bool, partner: bool = False) -> str:
    """The extension of legacy number ``n``.

    ``inbound``: the number dialled from outside (carrier, or a city centre's trunk
    with ``partner``); otherwise the ``hotline-legacy`` entry a menu choice reaches.
    """
    if n.mode == "relay":
        if not inbound:
            return _relay_down(c, n)
        return _relay_up(c, n) if partner else ""
    lines = [f"exten => {n.number},1,NoOp(legacy number {n.number} mode {n.mode})"]
    dept = c.cfg.departments[n.department] if n.department else None
    if inbound:
        lines += [
            f" same => n,Set(CDR(userfield)={cv.CDR_INBOUND}{n.number})",
            f" same => n,Set(__{cv.NUMBER}={n.number})",
            f" same => n,Set(__{cv.CENTRE}={n.centre})",
            f" same => n,Set(__{cv.ORIGIN}=legacy)",
            f" same => n,Set(__{cv.DEPARTMENT}={n.department})",
            f" same => n,Set(CALLERID(name)={n.number} "
            f"{text(dept.name if dept else '', 40, argument=True)})",
            f" same => n,UserEvent({cv.EVENT_ORIGIN},Number: {n.number},Mode: {n.mode},"
            f"Department: {n.department})",
        ]
        if n.mode == "forward":  # shown to the agent: headers of the queue's call to the seat
            lines += [
                f" same => n,Set({_inherit(cv.SIP_ORIGIN)}={n.number})",
                f" same => n,Set({_inherit(cv.SIP_DEPARTMENT)}={n.department})",
            ]
    else:
        lines.append(f" same => n,Set(__{cv.DEPARTMENT}={n.department})")
    lines.append(" same => n,Answer()")
    lines.append(f" same => n,{c.record('call')}")  # a no-op if the IVR's call is recorded
    if inbound and n.greeting:
        lines.append(f" same => n,Playback({c.prompt(n.greeting)})")
    if n.mode == "centre" and dept is not None and dept.trunk:
        if n.handoff == "warm":
            lines += [
                f" same => n,UserEvent({cv.EVENT_HANDOFF},Target: {n.department})",
                f" same => n,Wait({cv.XFER_IVR_HANDOFF_WAIT})",
            ]
        lines += _dial(f"PJSIP/{dept.number or n.number}@{dept.trunk}", dept.answer_timeout,
                       f"centre-{n.department}")
    else:
        queue = n.queue or (dept.queue if dept else None) or c.cfg.hotline.default_queue
        lines.append(f" same => n,Goto({cv.CTX_QUEUE},{queue},1)")
    return "\n".join(lines) + "\n"


def _inherit(header: str) -> str:
    """A header the caller's channel hands to the legs it dials (the agent's seat):
    PJSIP_INHERITABLE_HEADER, Asterisk 22.9 and later. Values are config ids, digits or
    checked copies only."""
    return f"PJSIP_INHERITABLE_HEADER(add,{header})"


def _dial(channel: str, timeout: int, what: str) -> list[str]:
    """Blind hand-off: headers on the leg; anything but an answer gives a person."""
    return [
        f" same => n,Gosub({cv.CTX_HANDOFF_VARS},s,1)",
        f" same => n,Dial({channel},{timeout},b({cv.CTX_HANDOFF_HEADERS}^s^1))",
        ' same => n,GotoIf($["${DIALSTATUS}" = "ANSWER"]?hotline-done,s,1)',
        f" same => n,Set({cv.ABORT_REASON}={what}-${{DIALSTATUS}})",
        f" same => n,Goto({cv.CTX_FAILURE},s,1)",
    ]


def _relay_up(c: Compiler, n: Number) -> str:
    """A city centre hands a matter up: only from its trunk; its headers checked."""
    queue = n.queue or c.cfg.hotline.default_queue
    case, loc = f"${{{cv.PARTNER_CASE}}}", f"${{{cv.HDR_LOCALITY}}}"
    return "\n".join([
        f"exten => {n.number},1,NoOp(relay from city centre trunk {n.trunk})",
        f' same => n,GotoIf($["${{CHANNEL(endpoint)}}" = "{n.trunk}"]?from_centre)',
        " same => n,Hangup(21)",
        f" same => n(from_centre),Set(CDR(userfield)={cv.CDR_INBOUND}{n.number})",
        f" same => n,Set(__{cv.NUMBER}={n.number})",
        f" same => n,Set(__{cv.CENTRE}={n.centre})",
        f" same => n,Set(__{cv.ORIGIN}=relay)",
        f" same => n,Set(__{cv.PARTNER_CASE}=)",
        f" same => n,Set(__{cv.HDR_LOCALITY}=)",
        f" same => n,Set(HOTLINE_RAW=${{PJSIP_HEADER(read,{cv.SIP_CASE})}})",
        f' same => n,GotoIf($[${{REGEX("{cv.CASE_RE}" ${{HOTLINE_RAW}})}}]?case_ok:locality)',
        f" same => n(case_ok),Set(__{cv.PARTNER_CASE}=${{HOTLINE_RAW}})",
        f" same => n(locality),Set(HOTLINE_RAW=${{PJSIP_HEADER(read,{cv.SIP_LOCALITY})}})",
        f' same => n,GotoIf($[${{REGEX("{cv.LOCALITY_RE}" ${{HOTLINE_RAW}})}}]?loc_ok:known)',
        f" same => n(loc_ok),Set(__{cv.HDR_LOCALITY}=${{HOTLINE_RAW}})",
        " same => n(known),Set(HOTLINE_RAW=)",
        f" same => n,Set(CALLERID(name)=转办 {case})",
        f" same => n,Set({_inherit(cv.SIP_ORIGIN)}={n.number})",
        f" same => n,GotoIf($[\"{case}\" = \"\"]?no_case)",
        f" same => n,Set({_inherit(cv.SIP_CASE)}={case})",
        f" same => n(no_case),NoOp(relay case {case})",
        f" same => n,UserEvent({cv.EVENT_ORIGIN},Number: {n.number},Mode: relay,"
        f"Trunk: {n.trunk},Case: {case},Locality: {loc})",
        " same => n,Answer()",
        f" same => n,{c.record('call')}",
        f" same => n,Goto({cv.CTX_QUEUE},{queue},1)",
    ]) + "\n"


def _relay_down(c: Compiler, n: Number) -> str:
    """A menu choice hands a local matter back down to the city centre."""
    return "\n".join([
        f"exten => {n.number},1,NoOp(hand a local matter down to city centre trunk {n.trunk})",
        " same => n,Answer()",
        f" same => n,{c.record('call')}",
        *_dial(f"PJSIP/{n.down_number}@{n.trunk}", 20, f"relay-{n.trunk}"),
    ]) + "\n"


def handoff_contexts() -> str:
    """The caller-side check (Gosub) and the leg-side headers (Dial b())."""
    return f"""
[{cv.CTX_HANDOFF_VARS}]
; Gosub on the caller before a hand-off: copy the case reference, the caller's locality
; and the number dialled into the inherited HOTLINE_HDR_* only when they pass the check
; (a value from outside is never written into a header or an argument unchecked)
exten => s,1,Set(__{cv.HDR_CASE}=)
 same => n,Set(__{cv.HDR_ORIGIN}=)
 same => n,Set(HOTLINE_RAW=${{{cv.CASE_REF}}})
 same => n,GotoIf($[${{REGEX("{cv.CASE_RE}" ${{HOTLINE_RAW}})}}]?case_ok:locality)
 same => n(case_ok),Set(__{cv.HDR_CASE}=${{HOTLINE_RAW}})
 same => n(locality),GotoIf($["${{{cv.HDR_LOCALITY}}}" != ""]?origin)
 same => n,Set(HOTLINE_RAW=${{{cv.CITY}}})
 same => n,GotoIf($["${{{cv.COUNTY}}}" = ""]?check_locality)
 same => n,Set(HOTLINE_RAW=${{HOTLINE_RAW}}/${{{cv.COUNTY}}})
 same => n(check_locality),GotoIf($[${{REGEX("{cv.LOCALITY_RE}" ${{HOTLINE_RAW}})}}]?loc_ok:origin)
 same => n(loc_ok),Set(__{cv.HDR_LOCALITY}=${{HOTLINE_RAW}})
 same => n(origin),Set(HOTLINE_RAW=${{{cv.NUMBER}}})
 same => n,GotoIf($[${{REGEX("{cv.ORIGIN_RE}" ${{HOTLINE_RAW}})}}]?origin_ok:done)
 same => n(origin_ok),Set(__{cv.HDR_ORIGIN}=${{HOTLINE_RAW}})
 same => n(done),Set(HOTLINE_RAW=)
 same => n,Return()

[{cv.CTX_HANDOFF_HEADERS}]
; Dial b(): runs on the outgoing leg before it is called; the values were checked above
exten => s,1,ExecIf($["${{{cv.HDR_CASE}}}" != ""]?Set(PJSIP_HEADER(add,{cv.SIP_CASE})=${{{cv.HDR_CASE}}}))
 same => n,ExecIf($["${{{cv.HDR_LOCALITY}}}" != ""]?Set(PJSIP_HEADER(add,{cv.SIP_LOCALITY})=${{{cv.HDR_LOCALITY}}}))
 same => n,ExecIf($["${{{cv.HDR_ORIGIN}}}" != ""]?Set(PJSIP_HEADER(add,{cv.SIP_ORIGIN})=${{{cv.HDR_ORIGIN}}}))
 same => n,Return()
"""


def handoff_dial_contexts(c: Compiler, dests: Iterable[Any]) -> str:
    """Hand-offs the transfer service drives (transfer/destinations.py): the controller
    originates ``Local/<name>@hotline-handoff-dial/n``; here the department's or city
    centre's trunk is dialled (only the number in the YAML) with the checked headers,
    and a failure ends the leg with its Q.850 cause for the transfer's state machine.
    The caller waits on hold in ``hotline-xfer-hold`` while an agent consults."""
    out = [f"""
[{cv.CTX_XFER_HOLD}]
; a consultation: the caller waits with music until the agent connects or returns them
exten => s,1,MusicOnHold(default)
 same => n,Goto({cv.CTX_FAILURE},s,1)

[{cv.CTX_HANDOFF_DIAL}]
; reachable only through a Local channel the controller originates
"""]
    for d in dests:
        if d.kind == "emergency":
            continue
        r = d.routes[0]
        out.append(
            f"exten => {d.name},1,Dial(PJSIP/{r.number}@{r.trunk},{d.answer_timeout},"
            f"b({cv.CTX_HANDOFF_HEADERS}^s^1))\n"
            f" same => n,Goto({cv.CTX_HANDOFF_END},${{DIALSTATUS}},1)\n"
        )
    out.append(f"""
[{cv.CTX_HANDOFF_END}]
; the hand-off leg ends with the cause the transfer's state machine reads (AMI Hangup)
exten => BUSY,1,Hangup(17)
exten => NOANSWER,1,Hangup(19)
exten => CHANUNAVAIL,1,Hangup(27)
exten => CONGESTION,1,Hangup(34)
exten => i,1,Hangup(16)
""")
    return "".join(out)


def announce_case(c: Compiler) -> str:
    """transfers.announce_case: the answering side hears the case reference's digits one
    by one (num-0..num-9) before it joins the bridge. The controller sets
    HOTLINE_XFER_ANNOUNCE (digits only) on the leg; checked again here."""
    if not c.cfg.transfers.announce_case:
        return ""
    digits = f"${{{cv.XFER_ANNOUNCE}}}"
    return "\n".join([
        f' same => n,GotoIf($[${{REGEX("^[0-9]{{1,40}}$" {digits})}}]?:join)',
        f" same => n,Playback({c.prompt(c.cfg.transfers.case_prompt)})",
        " same => n,Set(HOTLINE_I=0)",
        f" same => n(digit),GotoIf($[${{HOTLINE_I}} >= ${{LEN({digits})}}]?join)",
        f" same => n,Playback({c.prompt('num-')}${{{cv.XFER_ANNOUNCE}:${{HOTLINE_I}}:1}})",
        " same => n,Set(HOTLINE_I=$[${HOTLINE_I} + 1])",
        " same => n,Goto(digit)",
    ]) + "\n"


def emergency_origin() -> str:
    """A call transferred in from 110/119/...: the centre's number (digits only) is the
    origin, shown to the agent as the caller's name and recorded with the call."""
    return "\n".join([
        " same => n,Set(HOTLINE_RAW=${FILTER(0-9,${CALLERID(num)})})",
        " same => n,Set(HOTLINE_RAW=${HOTLINE_RAW:0:20})",
        " same => n,Set(CALLERID(name)=${HOTLINE_RAW} 转办)",
        f" same => n,Set({_inherit(cv.SIP_ORIGIN)}=${{HOTLINE_RAW}})",
        f" same => n,UserEvent({cv.EVENT_ORIGIN},Mode: emergency,From: ${{HOTLINE_RAW}})",
    ]) + "\n"
