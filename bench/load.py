"""One bounded SIPp load run: a UAC at the carrier's address placing calls.

Call shape (RFC 3261 §13 and §15): INVITE -> (100) -> 200 -> ACK, then the
dialplan hangs up: Asterisk sends BYE and SIPp answers 200.  A call fails when
any expected message does not come (UDP retransmissions per RFC 3261
§17.1.1.2, T1 = 500 ms), when a BYE does not arrive within ``bye_timeout_ms``
of the ACK, or when the run's global ``-timeout`` is reached.

The run is bounded three ways: ``-m`` calls, ``-l`` simultaneous calls and
``-timeout`` seconds; the Python side also waits at most that long plus a
grace period before killing SIPp.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.integration.sipp import caller_scenario

from .stats import Rtt, answer_rate, last_stat_row, parse_rtt, percentile, stat_int

STAT_FILE: Final = "stat.csv"


def scenario(number: str, bye_timeout_ms: int, caller: str = "13907910001") -> str:
    """The tests' caller (tests/integration/sipp.py) who waits for the hotline's BYE."""
    return caller_scenario("", service=number, caller=caller, hangs_up=False,
                           bye_timeout_ms=bye_timeout_ms)


@dataclass(frozen=True)
class LoadSpec:
    number: str  # extension called in [from-carrier]
    rate: int  # calls per second SIPp starts
    calls: int  # -m
    limit: int  # -l: simultaneous calls
    timeout_s: int  # -timeout: the whole run
    bye_timeout_ms: int  # how long after the ACK a BYE may take
    local_ip: str  # the carrier's address: PJSIP identifies the trunk by it
    local_port: int
    media_port: int
    target: str  # Asterisk's SIP host:port
    # SIPp XML the caller runs after the ACK; when set the caller hangs up itself
    # after it (e.g. presses a key in the IVR, then waits in the queue).
    steps: str = ""


@dataclass(frozen=True)
class LoadResult:
    spec: LoadSpec
    returncode: int
    created: int
    successful: int
    failed: int
    rtts: list[Rtt]
    wall_s: float
    cpu_s: float  # SIPp's user+system CPU time

    @property
    def missing(self) -> int:
        """Calls that did not complete (failed, or never started/finished)."""
        return self.spec.calls - self.successful

    @property
    def answered_cps(self) -> float:
        return answer_rate(self.rtts)

    def answer_ms(self, q: float) -> float:
        return percentile([r.rtt_ms for r in self.rtts], q)


async def run_sipp(spec: LoadSpec, workdir: Path) -> LoadResult:
    """Run SIPp for ``spec`` in ``workdir``; killed if it outlives its own timeout."""
    sipp = shutil.which("sipp")
    if sipp is None:
        raise FileNotFoundError("sipp is not installed (make deps)")
    cmd = [sipp, *_prepare(spec, workdir)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with (workdir / "sipp.out").open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=workdir, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=out)
        try:
            async with asyncio.timeout(spec.timeout_s + 10):
                returncode = await proc.wait()
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    row, rtts = _collect(workdir)
    return LoadResult(
        spec=spec,
        returncode=returncode,
        created=stat_int(row, "TotalCallCreated"),
        successful=stat_int(row, "SuccessfulCall(C)"),
        failed=stat_int(row, "FailedCall(C)"),
        rtts=rtts,
        wall_s=wall,
        cpu_s=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
    )


def _prepare(spec: LoadSpec, workdir: Path) -> list[str]:
    """Write the scenario; SIPp's arguments after the executable."""
    workdir.mkdir(parents=True, exist_ok=True)
    sf = workdir / "call.xml"
    if spec.steps:
        sf.write_text(caller_scenario(spec.steps, service=spec.number))
    else:
        sf.write_text(scenario(spec.number, spec.bye_timeout_ms))
    return [
        "-sf", str(sf), "-i", spec.local_ip, "-p", str(spec.local_port),
        "-mi", spec.local_ip, "-mp", str(spec.media_port),
        "-m", str(spec.calls), "-r", str(spec.rate), "-rp", "1000", "-l", str(spec.limit),
        "-timeout", f"{spec.timeout_s}s", "-timeout_error", "-nostdin",
        "-max_retrans", "3", "-buff_size", str(4 * 1024 * 1024),
        "-trace_stat", "-stf", str(workdir / STAT_FILE), "-fd", "1",
        # One rtt line per call: SIPp writes them every -rtt_freq calls, not at exit.
        "-trace_rtt", "-rtt_freq", "1",
        "-trace_err", "-error_file", str(workdir / "errors.log"),
        spec.target,
    ]


def _collect(workdir: Path) -> tuple[dict[str, str], list[Rtt]]:
    row = last_stat_row((workdir / STAT_FILE).read_text())
    rtts: list[Rtt] = []
    for p in workdir.glob("*_rtt.csv"):  # SIPp names it <scenario>_<pid>_rtt.csv
        rtts += parse_rtt(p.read_text())
    return row, rtts


# main/channel.c __ast_answer(): after answering, Answer() waits for the caller's
# first voice frame "but don't wait any longer than 'delay' or 500 milliseconds,
# whichever is longer". The bench caller sends no RTP, so each call spends 500 ms
# there before the next dialplan step: a call lasts hold + 0.5 s.
ANSWER_MEDIA_WAIT_S: Final = 0.5


def call_seconds(hold_s: float) -> float:
    """How long a bench call lasts from 200 OK to BYE when nothing is late."""
    return ANSWER_MEDIA_WAIT_S + hold_s


def concurrency_limit(rate: int, hold_s: float, slack_s: float) -> int:
    """``-l`` for ``rate``: calls lasting :func:`call_seconds` plus ``slack_s`` of delays.

    A system that answers late accumulates calls; once they reach this cap
    SIPp slows down, the answered rate falls short of ``rate`` and the step
    fails as not sustained.
    """
    return max(1, math.ceil(rate * (call_seconds(hold_s) + slack_s)))
