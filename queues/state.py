"""Live seat state, projected from AMI queue events (pure reducer, no I/O).

Asterisk is the source of truth: the state is built from what it reports
(``QueueStatus`` at start and after every ``FullyBooted``, then the queue
events), never invented. :func:`apply_event` takes one AMI event and returns
what changed plus the commands the controller must carry out (pausing an
agent who let too many offers ring out).

AMI events used (Asterisk 22, app_queue; https://docs.asterisk.org/Asterisk_22_Documentation/API_Documentation/AMI_Events/):
``QueueMember`` (QueueStatus list item), ``QueueMemberAdded``, ``QueueMemberRemoved``,
``QueueMemberStatus``, ``QueueMemberPause``, ``AgentCalled``, ``AgentConnect``,
``AgentComplete``, ``AgentRingNoAnswer``, ``AgentDump``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

# AST_DEVICE_* values carried in the Status field of queue member events.
DEVICE_STATUS = {
    "0": "unknown", "1": "idle", "2": "in-use", "3": "busy", "4": "invalid",
    "5": "unavailable", "6": "ringing", "7": "ringing", "8": "on-hold",
}
_SEAT = re.compile(r"^(?:PJSIP|Local)/([A-Za-z0-9_-]+)")


def seat_of(interface: str) -> str | None:
    """``PJSIP/1001`` → ``1001``; a remote seat's ``PJSIP/8001@yudu-site`` is named by MemberName."""
    m = _SEAT.match(interface or "")
    return m.group(1) if m and "@" not in interface else None


@dataclass
class SeatState:
    seat: str
    queues: set[str] = field(default_factory=set)
    paused: bool = False
    pause_reason: str = ""
    device: str = "unknown"
    ringing: bool = False
    on_call: bool = False
    wrapup_until: float = 0.0
    missed_in_a_row: int = 0
    calls_taken: int = 0
    updated: float = 0.0

    @property
    def logged_in(self) -> bool:
        return bool(self.queues)

    def summary(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if not self.queues:
            return "logged-out"
        if self.on_call:
            return "on-call"
        if self.ringing:
            return "ringing"
        if self.paused:
            return "paused"
        if self.wrapup_until > now:
            return "wrap-up"
        if self.device in ("unavailable", "invalid"):
            return "unreachable"
        return "available"

    def as_dict(self, now: float | None = None) -> dict[str, object]:
        d = asdict(self)
        d["queues"] = sorted(self.queues)
        d["state"] = self.summary(now)
        return d


@dataclass(frozen=True)
class AutoPause:
    """The controller must pause ``seat`` (it let ``missed`` offers in a row ring out)."""

    seat: str
    missed: int
    reason: str = "missed-offers"


def _seat(ev: Mapping[str, str]) -> str | None:
    iface = ev.get("Interface") or ev.get("Location") or ev.get("DestChannel", "").split("-")[0]
    s = seat_of(iface)
    return s or ev.get("MemberName") or ev.get("Name") or None


def apply_event(
    seats: dict[str, SeatState],
    ev: Mapping[str, str],
    *,
    max_missed: int = 3,
    wrapup_of: Mapping[str, int] | None = None,
    now: float | None = None,
) -> tuple[str | None, list[AutoPause]]:
    """Fold one AMI event into ``seats``; return the seat that changed and commands."""
    name = ev.get("Event", "")
    if name not in _HANDLED:
        return None, []
    seat = _seat(ev)
    if not seat:
        return None, []
    now = time.time() if now is None else now
    st = seats.setdefault(seat, SeatState(seat))
    st.updated = now
    queue = ev.get("Queue", "")
    out: list[AutoPause] = []
    if name in ("QueueMember", "QueueMemberAdded", "QueueMemberStatus", "QueueMemberPause"):
        if queue:
            st.queues.add(queue)
        if "Paused" in ev:
            was_paused = st.paused
            st.paused = ev["Paused"] == "1"
            st.pause_reason = ev.get("PausedReason", ev.get("Reason", "")) if st.paused else ""
            if was_paused and not st.paused:  # resumed: a fresh start for the count
                st.missed_in_a_row = 0
        if "Status" in ev:
            st.device = DEVICE_STATUS.get(ev["Status"], "unknown")
            st.ringing = st.device == "ringing"
        if ev.get("InCall") == "1":
            st.on_call = True
        elif ev.get("InCall") == "0":
            st.on_call = False
        if "CallsTaken" in ev and ev["CallsTaken"].isdigit():
            st.calls_taken = int(ev["CallsTaken"])
    elif name == "QueueMemberRemoved":
        st.queues.discard(queue)
        if not st.queues:
            st.paused, st.pause_reason, st.ringing, st.on_call = False, "", False, False
    elif name == "AgentCalled":
        st.ringing = True
    elif name == "AgentConnect":
        st.ringing, st.on_call, st.missed_in_a_row = False, True, 0
    elif name in ("AgentComplete", "AgentDump"):
        st.on_call, st.ringing = False, False
        st.wrapup_until = now + (wrapup_of or {}).get(queue, 0)
    elif name == "AgentRingNoAnswer":
        st.ringing = False
        st.missed_in_a_row += 1
        if max_missed and st.missed_in_a_row >= max_missed and not st.paused:
            out.append(AutoPause(seat, st.missed_in_a_row))
    return seat, out


_HANDLED = frozenset({
    "QueueMember", "QueueMemberAdded", "QueueMemberRemoved", "QueueMemberStatus",
    "QueueMemberPause", "AgentCalled", "AgentConnect", "AgentComplete", "AgentDump",
    "AgentRingNoAnswer",
})
HANDLED_EVENTS = _HANDLED
