"""Names shared by the generated dialplan and the waiting/call-back code (issue 4).

Like :mod:`hotline.channel_vars`, every channel variable, context, AGI script
and queue_log event that both the compiler (:mod:`dialplan.compile`) and the
controller (:mod:`queues.callback_service`, the AGI scripts) use is a constant
here, so a rename cannot leave the two sides apart.
"""

from typing import Final

# Contexts
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
