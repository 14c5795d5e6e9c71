"""Names shared by the generated dialplan and the Python controllers.

Every channel variable, context and AGI script name that both sides use is a
constant here, so that a rename cannot leave the dialplan and the code apart.
"""

from typing import Final

# Contexts written by dialplan.compile
CTX_FAILURE: Final = "hotline-failure"  # where an aborted AGI step lands
CTX_ROUTE: Final = "hotline-route"  # exten = route kind, reads HOTLINE_TARGET
CTX_QUEUE: Final = "hotline-queue"  # exten = queue name

# Channel variables
ABORT_REASON: Final = "HOTLINE_ABORT_REASON"  # set before a Goto to CTX_FAILURE
ROUTE: Final = "HOTLINE_ROUTE"  # what the IVR decided: queue, hangup, ...
TARGET: Final = "HOTLINE_TARGET"  # the route's target name (validated id)
NUMBER: Final = "HOTLINE_NUMBER"  # the number the caller dialled (12345 or legacy)
CENTRE: Final = "HOTLINE_CENTRE"  # centre id that owns the dialled number
MENU: Final = "HOTLINE_MENU"  # entry menu id for the IVR script
CITY: Final = "HOTLINE_CITY"
COUNTY: Final = "HOTLINE_COUNTY"
ORIGINATE_ID: Final = "HOTLINE_ORIGINATE_ID"

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
