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
