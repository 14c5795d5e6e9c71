"""Agents at their seats: log in and out, pause and resume, supervise (services, no HTTP).

Softphone seats are *dynamic* queue members: logging in adds the seat to every
queue that lists it in the YAML (``queues.X.members``), logging out removes it;
Asterisk keeps them across its own restarts (``persistentmembers``). The same
actions are reachable from the softphone with feature codes (*21 log in,
*22 log out, *23 pause, *24 resume; see the generated ``from-seat`` context),
from the HTTP API through this service, and automatically (a seat that lets
``agents.max_missed_offers`` offers in a row ring out is paused).

Every action is checked against the user's rights (:mod:`hotline.auth`) and
written to the audit log with who did it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dialplan.model import Config
from hotline.auth import Forbidden, Principal, may_act_on_queue, may_act_on_seat, require

from .state import AutoPause, SeatState, apply_event

log = logging.getLogger(__name__)

AUDIT_KEY = "hotline:audit"
AUDIT_KEEP = 100_000
SEAT_KEY = "hotline:seat:{}"
SPY_OPTIONS = {"listen": "qE", "whisper": "qwE", "barge": "qBE"}


class NotFound(Exception):
    pass


class BadRequest(Exception):
    pass


def centres_under(cfg: Config) -> dict[str, set[str]]:
    """Each centre with every centre below it (a province supervisor sees the cities)."""
    out: dict[str, set[str]] = {c: {c} for c in cfg.centres}
    for cid in cfg.centres:
        cur = cfg.centres[cid].parent
        seen = {cid}
        while cur is not None and cur in cfg.centres and cur not in seen:
            out[cur].add(cid)
            seen.add(cur)
            cur = cfg.centres[cur].parent
    return out


@dataclass
class AgentService:
    config: Callable[[], Config]
    ami: Callable[[], Any]  # the connected hotline.ami.AmiClient, or None
    redis: Callable[[], Any]
    seats: dict[str, SeatState] = field(default_factory=dict)

    # ------------------------------------------------------------ rights
    def _seat_centre(self, seat: str) -> str:
        cfg = self.config()
        if seat not in cfg.seats:
            raise NotFound(f"no seat {seat!r}")
        return cfg.seats[seat].centre

    def check_seat(self, who: Principal, seat: str) -> None:
        centre = self._seat_centre(seat)
        require(may_act_on_seat(who, seat, centre, centres_under(self.config())),
                f"{who.name} may not act on seat {seat}")

    def visible_seats(self, who: Principal) -> list[str]:
        cfg = self.config()
        under = centres_under(cfg)
        return [s for s, v in cfg.seats.items() if may_act_on_seat(who, s, v.centre, under)]

    def check_queue(self, who: Principal, queue: str) -> None:
        cfg = self.config()
        if queue not in cfg.queues:
            raise NotFound(f"no queue {queue!r}")
        require(may_act_on_queue(who, cfg.queues[queue].centre, centres_under(cfg)),
                f"{who.name} may not act on queue {queue}")

    # ------------------------------------------------------------ actions
    def _ami(self) -> Any:
        ami = self.ami()
        if ami is None or not ami.connected:
            raise ConnectionError("Asterisk is not reachable over AMI right now")
        return ami

    def eligible_queues(self, seat: str) -> list[str]:
        return [q for q, v in self.config().queues.items() if seat in v.members]

    async def login(self, who: Principal, seat: str, queues: list[str] | None = None) -> list[str]:
        self.check_seat(who, seat)
        cfg = self.config()
        if cfg.seats[seat].kind != "softphone":
            raise BadRequest(f"seat {seat} is a remote seat: it is always in its queues")
        allowed = self.eligible_queues(seat)
        wanted = queues or allowed
        if bad := [q for q in wanted if q not in allowed]:
            raise BadRequest(f"seat {seat} is not a member of {', '.join(bad)} in the YAML")
        ami = self._ami()
        for q in wanted:
            try:
                await ami.action("QueueAdd", Queue=q, Interface=f"PJSIP/{seat}", MemberName=seat,
                                 StateInterface=f"PJSIP/{seat}", Paused="false")
            except Exception as e:  # AmiActionError "Already there" is fine
                if "already" not in str(e).lower():
                    raise
        await self.audit(who, "login", seat, queues=wanted)
        return wanted

    async def logout(self, who: Principal, seat: str) -> None:
        self.check_seat(who, seat)
        ami = self._ami()
        for q in self.eligible_queues(seat):
            try:
                await ami.action("QueueRemove", Queue=q, Interface=f"PJSIP/{seat}")
            except Exception as e:
                if "not there" not in str(e).lower() and "unable to remove" not in str(e).lower():
                    raise
        await self.audit(who, "logout", seat)

    async def pause(self, who: Principal, seat: str, reason: str) -> None:
        self.check_seat(who, seat)
        reasons = self.config().agents.pause_reasons
        if reason not in reasons and not (who.role == "system"):
            raise BadRequest(f"unknown pause reason {reason!r}; one of {', '.join(sorted(reasons))}")
        await self._queue_pause(seat, True, reason)
        await self.audit(who, "pause", seat, reason=reason)

    async def resume(self, who: Principal, seat: str) -> None:
        self.check_seat(who, seat)
        await self._queue_pause(seat, False)
        await self.audit(who, "resume", seat)

    async def _queue_pause(self, seat: str, paused: bool, reason: str | None = None) -> None:
        try:
            await self._ami().action("QueuePause", Interface=f"PJSIP/{seat}",
                                     Paused="true" if paused else "false", Reason=reason)
        except Exception as e:
            if "interface not found" in str(e).lower():
                raise BadRequest(f"seat {seat} is not logged in to any queue") from None
            raise

    async def spy(self, who: Principal, seat: str, mode: str, from_seat: str) -> str:
        """Ring the supervisor's own seat; when answered they listen to, whisper to or
        join (barge) the call of ``seat`` (ChanSpy)."""
        if who.role not in ("supervisor", "admin"):
            raise Forbidden("only supervisors may listen to calls")
        if mode not in SPY_OPTIONS:
            raise BadRequest(f"mode must be one of {', '.join(SPY_OPTIONS)}")
        self.check_seat(who, seat)
        cfg = self.config()
        if from_seat not in cfg.softphone_seats():
            raise BadRequest(f"{from_seat!r} is not a softphone seat to ring")
        self.check_seat(who, from_seat)  # the phone that listens is one of theirs too
        originate_id = f"spy-{seat}-{int(time.time() * 1000)}"
        await self._ami().originate(
            originate_id, f"PJSIP/{from_seat}", application="ChanSpy",
            data=f"PJSIP/{seat}-,{SPY_OPTIONS[mode]}", caller_id=f"监听 {seat} <{seat}>", timeout_ms=30000,
        )
        await self.audit(who, f"spy-{mode}", seat, supervisor_seat=from_seat)
        return originate_id

    # ------------------------------------------------------------ state
    @staticmethod
    def _fields(event: Any) -> dict[str, str]:
        """An AmiMessage (or a mapping) as a plain dict, first value of each header."""
        if isinstance(event, dict):
            return event
        out: dict[str, str] = {}
        for k, v in getattr(event, "headers", ()):
            out.setdefault(k, v)
        return out

    async def on_event(self, event: Any) -> None:
        event = self._fields(event)
        cfg = self.config()
        wrapups = {q: v.wrapup for q, v in cfg.queues.items()}
        seat, commands = apply_event(self.seats, event, max_missed=cfg.agents.max_missed_offers,
                                     wrapup_of=wrapups)
        if seat is not None:
            await self._store(seat)
        for cmd in commands:
            await self._auto_pause(cmd)

    async def _auto_pause(self, cmd: AutoPause) -> None:
        log.warning("seat %s let %d offers in a row ring out: pausing it", cmd.seat, cmd.missed)
        try:
            await self._ami().action("QueuePause", Interface=f"PJSIP/{cmd.seat}", Paused="true",
                                     Reason=cmd.reason)
        except Exception as e:  # noqa: BLE001 - logged; the next missed offer retries
            log.error("could not pause seat %s: %s", cmd.seat, e)
            return
        await self.audit(Principal("system", "system"), "auto-pause", cmd.seat, missed=cmd.missed)

    async def rebuild(self) -> None:
        """Rebuild from Asterisk's own view (QueueStatus), e.g. after a restart of either side."""
        ami = self._ami()
        items = await ami.action_list("QueueStatus")
        fresh: dict[str, SeatState] = {}
        cfg = self.config()
        for item in map(self._fields, items):
            if item.get("Event") == "QueueMember":
                apply_event(fresh, item, max_missed=cfg.agents.max_missed_offers)
        # Keep counters Asterisk does not report.
        for seat, st in fresh.items():
            if seat in self.seats:
                st.missed_in_a_row = self.seats[seat].missed_in_a_row
                st.wrapup_until = self.seats[seat].wrapup_until
        self.seats = fresh
        for seat in set(self.seats) | set(cfg.seats):
            await self._store(seat)
        log.info("seat state rebuilt from QueueStatus: %d seats in queues", len(fresh))

    def state_of(self, seat: str) -> dict[str, object]:
        st = self.seats.get(seat) or SeatState(seat)
        return st.as_dict()

    async def _store(self, seat: str) -> None:
        r = self.redis()
        if r is None:
            return
        try:
            await r.set(SEAT_KEY.format(seat), json.dumps(self.state_of(seat), ensure_ascii=False))
        except Exception as e:  # noqa: BLE001 - Redis trouble never stops call handling
            log.warning("could not store seat %s state: %s", seat, e)

    async def audit(self, who: Principal, action: str, seat: str, **details: object) -> None:
        entry = {"at": time.time(), "who": who.name, "role": who.role, "action": action, "seat": seat, **details}
        log.info("audit: %s", entry)
        r = self.redis()
        if r is None:
            return
        try:
            await r.lpush(AUDIT_KEY, json.dumps(entry, ensure_ascii=False))
            await r.ltrim(AUDIT_KEY, 0, AUDIT_KEEP - 1)
        except Exception as e:  # noqa: BLE001
            log.warning("could not write the audit entry %s: %s", entry, e)

    async def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        r = self.redis()
        if r is None:
            return []
        return [json.loads(x) for x in await r.lrange(AUDIT_KEY, 0, max(0, limit - 1))]
