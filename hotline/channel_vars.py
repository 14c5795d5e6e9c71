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
