"""The bench's FastAGI step: a minimal, realistic welcome of five AGI commands.

It runs in the bench process on :class:`ivr.server.FastAgiServer` with its own
:class:`agi_scripts.RouteTable` (the controller's table lives in another
process).  The server's ``on_session_end`` hook gives, per call, the time from
the TCP accept to the end of the session (socket closed): that is the AGI
latency the bench reports.  It covers reading the environment, the five
command round trips through Asterisk and the close, but not Asterisk's
``connect()`` (res_agi.c ``launch_netscript()``) before the accept.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Final

from agi_scripts import RouteTable
from hotline import channel_vars as cv
from ivr.server import Channel

BENCH_WELCOME: Final = "bench-welcome"
BENCH_CENTRE: Final = "province"

ROUTES = RouteTable()


@dataclass
class WelcomeStats:
    """Per-step counters, reset between steps; also the handlers' context."""

    completed: int = 0  # handlers that ran all five commands
    latencies_s: list[float] = field(default_factory=list)  # bench-welcome sessions
    other_sessions: int = 0  # sessions for any other script (or none)

    def reset(self) -> None:
        self.completed = 0
        self.latencies_s = []
        self.other_sessions = 0

    def on_session_end(self, script: str, uniqueid: str, seconds: float) -> None:
        """:data:`ivr.server.SessionHook`."""
        del uniqueid
        if script == BENCH_WELCOME:
            self.latencies_s.append(seconds)
        else:
            self.other_sessions += 1


@ROUTES.register(BENCH_WELCOME)
async def bench_welcome(channel: Channel, stats: WelcomeStats) -> None:
    """What a welcome step does before the IVR: read, tag and log the call."""
    number = await channel.get_variable(cv.NUMBER) or channel.env.extension
    await channel.set_variable(cv.NUMBER, number)
    await channel.set_variable(cv.CENTRE, BENCH_CENTRE)
    caller = await channel.get_variable("CALLERID(num)")
    await channel.verbose(f"welcome {caller or 'anonymous'} to {number}", 3)
    stats.completed += 1


# ------------------------------------------------------------------ the reference

def _value(line: bytes) -> str | None:
    """The ``(value)`` of a ``200 result=1 (value)`` response, if any."""
    text = line.decode("utf-8", "replace").rstrip("\n")
    if not text.startswith("200 result=1"):
        return None
    start, end = text.find("("), text.rfind(")")
    return text[start + 1:end] if 0 <= start < end else None


async def minimal_session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: WelcomeStats
) -> None:
    """The same welcome step on a bare ``asyncio.start_server`` connection: the baseline
    the issue names ("a minimal asyncio FastAGI step, 5 commands").

    No route table, no command objects, no timeouts, no logging: read the environment,
    write each command, read one response line. Timed like our server's sessions
    (from the accept to the socket closed) into ``stats``."""
    started = time.perf_counter()
    timed = False  # as our server's hook: a session is timed once its environment was read
    try:
        env = await reader.readuntil(b"\n\n")
        timed = True
        extension = ""
        for line in env.decode("utf-8", "replace").splitlines():
            if line.startswith("agi_extension: "):
                extension = line.removeprefix("agi_extension: ")

        async def command(text: str) -> bytes:
            writer.write(text.encode() + b"\n")
            line = await reader.readline()
            if not line.startswith(b"200 "):
                raise ConnectionError(f"{text!r}: {line!r}")
            return line

        number = _value(await command(f"GET VARIABLE {cv.NUMBER}")) or extension
        await command(f"SET VARIABLE {cv.NUMBER} {number}")
        await command(f"SET VARIABLE {cv.CENTRE} {BENCH_CENTRE}")
        caller = _value(await command("GET VARIABLE CALLERID(num)"))
        await command(f'VERBOSE "welcome {caller or "anonymous"} to {number}" 3')
        stats.completed += 1
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # hung up, or Asterisk refused a command: not completed, which the step counts
    finally:
        writer.close()
        if timed:
            stats.latencies_s.append(time.perf_counter() - started)
