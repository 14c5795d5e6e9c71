"""Names shared by the generated dialplan and the Python controllers.

Every channel variable, context and AGI script name that both sides use is a
constant here, so that a rename cannot leave the dialplan and the code apart.
"""

import re
from collections.abc import Iterable, Mapping
from typing import Final, TypeVar

# Contexts written by dialplan.compile
CTX_FAILURE: Final = "hotline-failure"  # where an aborted AGI step lands
CTX_ROUTE: Final = "hotline-route"  # exten = route kind, reads HOTLINE_TARGET
CTX_QUEUE: Final = "hotline-queue"  # exten = queue name

# Channel variables
ABORT_REASON: Final = "HOTLINE_ABORT_REASON"  # set before a Goto to CTX_FAILURE
ROUTE: Final = "HOTLINE_ROUTE"  # what the IVR decided: queue, hangup, ...
TARGET: Final = "HOTLINE_TARGET"  # the route's target name (validated id)
NUMBER: Final = "HOTLINE_NUMBER"  # the number the caller dialled (12345 or legacy)
# centre id that owns the dialled number (a call-back: its queue's; a survey call: its
# order's); the recording is placed there (recordings/service.py)
CENTRE: Final = "HOTLINE_CENTRE"
MENU: Final = "HOTLINE_MENU"  # entry menu id for the IVR script
CITY: Final = "HOTLINE_CITY"
COUNTY: Final = "HOTLINE_COUNTY"
ORIGINATE_ID: Final = "HOTLINE_ORIGINATE_ID"

# Call recordings (recordings/): Gosub(CTX_RECORD,s,1(kind)) right after Answer()
CTX_RECORD: Final = "hotline-record"
RECORDING: Final = "HOTLINE_RECORDING"  # the recording's path relative to the recordings root
EVENT_RECORDING: Final = "HotlineRecording"  # UserEvent raised when a recording starts
# Waiting callers and call-backs (issue 4): queues, agi_scripts, dialplan.compile
# Contexts of queue waiting and call-backs
CTX_POSITION: Final = "hotline-queue-position"  # Gosub before each Queue(): place in time
CTX_CALLBACK_OFFER: Final = "hotline-callback"  # queues.conf context=: the caller pressed 1
CTX_CALLBACK_DIAL: Final = "hotline-callback-dial"  # the reserved agent's leg of a call-back
CTX_CALLBACK_ANSWERED: Final = "hotline-callback-answered"  # Dial U(): the citizen answered

# AGI scripts
SCRIPT_QUEUE_ENTRY: Final = "queue-entry"
SCRIPT_CALLBACK_OFFER: Final = "callback-offer"

# Channel variables of a waiting caller
QUEUE: Final = "HOTLINE_QUEUE"  # the queue id the caller is in (set before Queue())
FIRST_QUEUED: Final = "HOTLINE_FIRST_QUEUED"  # epoch of the first arrival at any queue (inherited)
QUEUE_POSITION: Final = "HOTLINE_QUEUE_POSITION"  # Queue()'s position argument, from queue-entry
WAIT_MINUTES: Final = "HOTLINE_WAIT_MINUTES"  # expected wait announced on entry, from queue-entry
CALLBACK_ID: Final = "HOTLINE_CALLBACK_ID"  # set by callback-offer once a request is stored

# Channel variables of a call-back's agent leg (set by the controller's Originate)
CB_ATTEMPT: Final = "HOTLINE_CALLBACK_ATTEMPT"  # attempt id = the channel's uniqueid
CB_NUMBER: Final = "HOTLINE_CALLBACK_NUMBER"  # the citizen's number, validated digits
CB_CALLID: Final = "HOTLINE_CALLBACK_CALLID"  # uniqueid of the original call (queue_log callid)
CB_QUEUE: Final = "HOTLINE_CALLBACK_QUEUE"
CB_SEAT: Final = "HOTLINE_CALLBACK_SEAT"
CB_FROM: Final = "HOTLINE_CALLBACK_FROM"  # caller ID shown to the citizen (the number they called)
CB_DIALED: Final = "HOTLINE_CALLBACK_DIALED"  # 1 once the citizen is being dialled

# queue_log events written by the call-back dialplan (time|callid|queue|seat|EVENT|attempt|...)
EV_DIAL: Final = "CALLBACKDIAL"  # the agent answered; the citizen is dialled
EV_CALLBACK: Final = "CALLBACK"  # the citizen answered: called back (counted in the stats)
EV_FAIL: Final = "CALLBACKFAIL"  # |attempt|DIALSTATUS: the citizen was not reached
EV_END: Final = "CALLBACKEND"  # |attempt|seconds: the call-back conversation ended

PAUSE_REASON: Final = "callback"  # an agent reserved for a call-back is paused with this
# ---------------------------------------------------------------- transfers (transfer/)
# Contexts written by dialplan.compile (Compiler.transfer_contexts)
CTX_XFER_CALLER: Final = "hotline-xfer-caller"  # exten = line: hold message, then the bridge
CTX_XFER_AGENT: Final = "hotline-xfer-agent"  # s: join; failed: message to the agent, then join
CTX_XFER_DISPATCHER: Final = "hotline-xfer-dispatcher"  # s: the answered dispatcher joins
CTX_EMERGENCY: Final = "hotline-emergency"  # exten = line: the IVR's emergency offer
XFER_EXTEN_JOIN: Final = "s"
XFER_EXTEN_AGENT_FAILED: Final = "failed"
# ConfBridge profiles (confbridge.conf), one bridge profile and one user profile per role
XFER_BRIDGE_PROFILE: Final = "hotline-xfer"
XFER_USER_CALLER: Final = "hotline-xfer-caller"
XFER_USER_AGENT: Final = "hotline-xfer-agent"
XFER_USER_DISPATCHER: Final = "hotline-xfer-dispatcher"
XFER: Final = "HOTLINE_XFER"  # the transfer id, which is also the ConfBridge name
# UserEvents the dialplan raises for the controller (AMI, read class "user")
EVENT_XFER_REQUEST: Final = "HotlineTransfer"  # an agent's feature code: header Line
EVENT_EMERGENCY: Final = "HotlineEmergency"  # the IVR's emergency offer: header Line
# features.conf [applicationmap]: one dynamic feature per emergency line (hotline-xfer-119)
XFER_FEATURE_PREFIX: Final = "hotline-xfer-"
DYNAMIC_FEATURES: Final = "DYNAMIC_FEATURES"
# Seconds hotline-emergency waits for the controller to take the caller before it
# dials the line itself (controller down).
XFER_IVR_HANDOFF_WAIT: Final = 2

# ---------------------------------------------------------------- legacy numbers and hand-offs
DEPARTMENT: Final = "HOTLINE_DEPARTMENT"  # the department a legacy number belongs to
ORIGIN: Final = "HOTLINE_ORIGIN"  # how the call came in: legacy, relay, emergency
CASE_REF: Final = "HOTLINE_CASE_REF"  # the 12345 case reference (set by the work-order code)
PARTNER_CASE: Final = "HOTLINE_PARTNER_CASE"  # a city centre's case reference (relay, checked)
# Checked copies of what goes into the SIP headers of a hand-off (inherited by the leg)
HDR_CASE: Final = "HOTLINE_HDR_CASE"
HDR_LOCALITY: Final = "HOTLINE_HDR_LOCALITY"
HDR_ORIGIN: Final = "HOTLINE_HDR_ORIGIN"
SIP_CASE: Final = "X-Hotline-Case"  # case reference
SIP_LOCALITY: Final = "X-Hotline-Locality"  # the caller's city[/county] (config ids)
SIP_ORIGIN: Final = "X-Hotline-Origin"  # the number the caller dialled (12345, a legacy one)
SIP_DEPARTMENT: Final = "X-Hotline-Department"  # a legacy number's department (to the agent)
CASE_RE: Final = "^[A-Za-z0-9][A-Za-z0-9-]{0,39}$"  # what a case reference may be
LOCALITY_RE: Final = "^[a-z][a-z0-9_-]{0,38}(/[a-z][a-z0-9_-]{0,38})?$"
ORIGIN_RE: Final = "^[0-9]{1,20}$"
CTX_HANDOFF_VARS: Final = "hotline-handoff-vars"  # Gosub on the caller: check, copy
CTX_HANDOFF_HEADERS: Final = "hotline-handoff-headers"  # Dial b(): headers on the leg
EVENT_ORIGIN: Final = "HotlineOrigin"  # a legacy or relay call came in: recorded in Redis
EVENT_HANDOFF: Final = "HotlineHandoff"  # a warm hand-off to a department: header Target
CTX_HANDOFF_DIAL: Final = "hotline-handoff-dial"  # exten = destination: dial it with headers
CTX_HANDOFF_END: Final = "hotline-handoff-end"  # exten = DIALSTATUS: hang up with its cause
XFER_ANNOUNCE: Final = "HOTLINE_XFER_ANNOUNCE"  # digits said to the answering side
CTX_XFER_HOLD: Final = "hotline-xfer-hold"  # s: the caller on hold while the agent consults

# CDR(userfield) of the caller's channel on every inbound entry: "in:<number dialled>"
# (workorders.tracker finds the calls that ended while the controller was down by it)
CDR_INBOUND: Final = "in:"


def is_seat_channel(channel: str, seat: str) -> bool:
    """``channel`` is a channel of ``seat``'s endpoint: ``PJSIP/<seat>-<8 hex digits>``
    exactly (seat ids may contain ``-``: seat ``yudu`` is not ``PJSIP/yudu-01-...``)."""
    return re.fullmatch(rf"PJSIP/{re.escape(seat)}-[0-9a-f]{{8}}", channel) is not None


# The AMI events the controller's session ("hotline" user) receives: manager.conf filters
# every other one out by name (eventfilter(name(...))), and the controller's AMI client
# refuses to subscribe to a name not listed here (hotline.ami.AmiClient(receives=...)),
# so the two cannot drift apart. Action responses (CoreShowChannels, QueueStatus...)
# are not events and are never filtered.
CONTROLLER_EVENTS: Final = frozenset({
    # the AMI client itself: boot, shutdown, idempotent Originate
    "FullyBooted", "Shutdown", "OriginateResponse",
    # calls (call tracker, transfers, recordings, surveys)
    "Newchannel", "Newstate", "Hangup", "DialEnd", "ConfbridgeJoin", "UserEvent",
    # queues and seats (agent state, call-backs, call tracker)
    "QueueCallerJoin", "QueueCallerLeave", "QueueCallerAbandon",
    "QueueMember", "QueueMemberAdded", "QueueMemberRemoved", "QueueMemberStatus",
    "QueueMemberPause",
    "AgentCalled", "AgentConnect", "AgentComplete", "AgentDump", "AgentRingNoAnswer",
})

Row = TypeVar("Row", bound=Mapping[str, str])


def seat_legs(rows: Iterable[Row], seat: str) -> list[Row]:
    """The rows of ``CoreShowChannels`` (as field maps) that are ``seat``'s channels."""
    return [r for r in rows if is_seat_channel(r.get("Channel", ""), seat)]


def call_key(uniqueid: str) -> str:
    """The Redis hash of a call (fields ``ivr``: the IVR path, ``origin``: how the call
    came in); written by the controller, read by the call tracker and the transfers."""
    return f"hotline:call:{uniqueid}"
