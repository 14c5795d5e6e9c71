"""Names shared by the generated dialplan (:mod:`dialplan.compile`) and the transfer service.

Every context, ConfBridge profile, channel variable and user event that both
sides use is a constant here, so a rename cannot leave them apart (the same
rule as :mod:`hotline.channel_vars`, kept beside the feature that owns them).
"""

from __future__ import annotations

from typing import Final

# Contexts written by dialplan.compile (Compiler.transfer_contexts)
CTX_CALLER: Final = "hotline-xfer-caller"  # exten = line: hold message, then the bridge
CTX_AGENT: Final = "hotline-xfer-agent"  # s: join; failed: message to the agent, then join
CTX_DISPATCHER: Final = "hotline-xfer-dispatcher"  # s: the answered dispatcher joins
CTX_EMERGENCY: Final = "hotline-emergency"  # exten = line: the IVR's emergency offer
CTX_FAILURE: Final = "hotline-failure"  # apology, then the default queue (hotline.channel_vars)

EXTEN_JOIN: Final = "s"
EXTEN_AGENT_FAILED: Final = "failed"

# ConfBridge profiles (confbridge.conf), one bridge profile and one user profile per role
BRIDGE_PROFILE: Final = "hotline-xfer"
USER_CALLER: Final = "hotline-xfer-caller"
USER_AGENT: Final = "hotline-xfer-agent"
USER_DISPATCHER: Final = "hotline-xfer-dispatcher"
AGENT_MENU: Final = "hotline-xfer-agent-menu"  # DTMF codes inside the bridge (retry a transfer)

# Channel variables
VAR_XFER: Final = "HOTLINE_XFER"  # the transfer id, which is also the ConfBridge name
ABORT_REASON: Final = "HOTLINE_ABORT_REASON"  # read by hotline-failure (hotline.channel_vars)

# UserEvents the dialplan raises for the controller (AMI, read class "user")
EVENT_REQUEST: Final = "HotlineTransfer"  # an agent's feature code: header Line
EVENT_EMERGENCY: Final = "HotlineEmergency"  # the IVR's emergency offer: header Line

# features.conf [applicationmap]: one dynamic feature per emergency line
FEATURE_PREFIX: Final = "hotline-xfer-"
DYNAMIC_FEATURES: Final = "DYNAMIC_FEATURES"

# How long hotline-emergency waits for the controller to take the caller before it
# dials the line itself (controller down): seconds.
IVR_HANDOFF_WAIT: Final = 2


def feature_name(line: str) -> str:
    """The applicationmap entry of ``line`` (``hotline-xfer-119``)."""
    return f"{FEATURE_PREFIX}{line}"
