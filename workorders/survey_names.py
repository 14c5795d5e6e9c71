"""Names shared by the generated survey dialplan and the survey code (issue 6 item 3).

Like :mod:`hotline.channel_vars`, every context, AGI script and channel variable that
both the compiler (:mod:`dialplan.compile`) and the controller
(:mod:`workorders.survey_service`, :mod:`agi_scripts.survey`) use is a
constant here.
"""

from typing import Final

# The survey call's context: reached only by the controller's AMI Originate.
CTX_SURVEY: Final = "hotline-survey"
SCRIPT_SURVEY: Final = "survey"

# Channel variables set by the Originate (the attempt id is the channel's uniqueid)
JOB: Final = "HOTLINE_SURVEY_JOB"
ORDER: Final = "HOTLINE_SURVEY_ORDER"
