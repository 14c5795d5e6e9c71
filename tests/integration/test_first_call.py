"""Issue #2's first call path, end to end on a real Asterisk with real SIP.

A SIPp citizen on the carrier's address calls 12345, is answered within a
second, hears the welcome prompt (RTP with audio energy), presses 0 (RFC 4733
from Debian's pcap) and a SIPp agent registered as seat 1001 gets the call
through the queue and answers; both hang up and no channel is left.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from .harness import Hotline, test_config
from .sipp import (
    RtpSink,
    Sipp,
    caller_scenario,
    dtmf,
    pause,
    rejected_call_scenario,
)


def hotline_config() -> dict:
    cfg = test_config()
    cfg["network"]["agi_timeout"] = 8  # so the stalled-controller test takes seconds
    return cfg


def register_agent(h: Hotline, workdir: Path, seat: str = "1001", hold_ms: int = 90000,
                   queue: str | None = None) -> Sipp:
    agent = h.register_seat(workdir, seat, hold_ms=hold_ms, name=f"agent-{seat}")
    h.login_seat(seat)  # as the agent would, through the HTTP API
    queue = queue or next(q for q, v in h.cfg["queues"].items() if seat in v.get("members", []))
    h.wait_for(lambda: re.search(rf"\(PJSIP/{seat}\).*Not in use", h.cli(f"queue show {queue}")),
               10, f"seat {seat} available in queue {queue}")
    return agent


def call(h: Hotline, workdir: Path, steps: str, *, name: str = "citizen", caller: str = "13907910001",
         service: str = "12345", sink: RtpSink | None = None, timeout_s: int = 40) -> Sipp:
    ip, _ = h.trunk("carrier")
    scen = caller_scenario(steps, service=service, caller=caller,
                           media_ip=ip if sink else "[media_ip]",
                           media_port=str(sink.port) if sink else "[media_port]")
    # Any source port: PJSIP identifies the carrier by address alone.
    return Sipp(workdir, name, scen, local_ip=ip, target=h.sip_target, timeout_s=timeout_s)


def stop_agent(agent: Sipp, h: Hotline | None = None, seat: str = "1001") -> None:
    agent.stop()


def test_citizen_reaches_an_agent_by_pressing_0(clean: Hotline, workdir: Path) -> None:
    h = clean
    agent = register_agent(h, workdir)
    sink = RtpSink("127.0.0.2")
    try:
        before = h.queue_log()
        caller = call(h, workdir, pause(2500) + dtmf("0", then_ms=6000), sink=sink)
        res = caller.wait(60)
        assert res.returncode == 0, res.explain()
        # Answered within one second of the INVITE.
        assert res.rtts_ms and res.rtts_ms[0] < 1000, res.rtts_ms
        # The welcome prompt reached the caller as real audio (not silence).
        assert sink.packets > 50, sink.packets
        assert sink.rms() > 200, sink.rms()
        new = h.queue_log()[len(before):]
        print("rtt", res.rtts_ms, "packets", sink.packets, "rms", sink.rms(), "queue_log", new)
        # Nanchang's own seat is not logged in: the call moved on to the province queue
        # and seat 1001 answered it.
        assert re.search(r"\|province\|PJSIP/1001\|CONNECT\|", new) or "|province|1001|CONNECT|" in new, new
        assert "INVITE sip:" in agent.messages_so_far(), "agent never saw the INVITE"
    finally:
        sink.close()
        stop_agent(agent)
    assert h.wait_no_channels() == 0


def test_unknown_address_is_refused(clean: Hotline, workdir: Path) -> None:
    """No trunk at 127.0.0.9 and no credentials: refused, never an anonymous endpoint."""
    s = Sipp(workdir, "stranger", rejected_call_scenario("12345", "401"), local_ip="127.0.0.9",
             target=clean.sip_target, timeout_s=10)
    res = s.wait(20)
    assert res.returncode == 0, res.explain()
    assert clean.active_channels() == 0


def test_inbound_call_cannot_dial_out(clean: Hotline, workdir: Path) -> None:
    """From the carrier, only the numbers the hotline answers exist: no way to a trunk."""
    ip, port = clean.trunk("carrier")
    for number in ("13800000000", "110", "008613800000000", "*99"):
        s = Sipp(workdir, f"dialout-{number}", rejected_call_scenario(number, "404"), local_ip=ip,
                 local_port=port, target=clean.sip_target, timeout_s=10)
        res = s.wait(20)
        assert res.returncode == 0, f"{number}: {res.explain()}"


def test_controller_down_still_reaches_a_person(clean: Hotline, workdir: Path) -> None:
    """FastAGI unreachable: the dialplan apologises and queues the caller."""
    h = clean
    agent = register_agent(h, workdir)
    h.kill_controller()
    try:
        before = h.queue_log()
        t0 = time.monotonic()
        caller = call(h, workdir, pause(9000), name="no-controller")
        res = caller.wait(40)
        assert res.returncode == 0, res.explain()
        new = h.queue_log()[len(before):]
        assert "|province|" in new and "CONNECT" in new, new
        assert time.monotonic() - t0 < 30
    finally:
        stop_agent(agent)
        h.start_controller()


def test_stalled_controller_times_out_to_a_person(clean: Hotline, workdir: Path) -> None:
    """The controller accepts the FastAGI connection but never answers (SIGSTOP):
    TIMEOUT(absolute) takes the call back through the T extension to a person."""
    import os
    import signal

    h = clean
    agent = register_agent(h, workdir)
    assert h.controller is not None
    os.kill(h.controller.pid, signal.SIGSTOP)
    try:
        before = h.queue_log()
        res = call(h, workdir, pause(20000), name="stalled").wait(40)
        assert res.returncode == 0, res.explain()
        new = h.queue_log()[len(before):]
        assert "|province|1001|CONNECT|" in new, new
    finally:
        os.kill(h.controller.pid, signal.SIGCONT)
        stop_agent(agent)
        h.kill_controller()
        h.start_controller()


def test_asterisk_runs_the_generated_config_without_errors(clean: Hotline) -> None:
    errors = [line for line in clean.messages_log().splitlines() if " ERROR[" in line]
    assert errors == [], "\n".join(errors)
    modules = clean.cli("module show like anonymous")
    assert "res_pjsip_endpoint_identifier_anonymous" not in modules
    assert "Asterisk 22." in clean.cli("core show version")
