"""``python -m bench.agi_micro``: the FastAGI server's own CPU cost per call, without Asterisk.

A quick loop for tuning :mod:`ivr.server`: the server runs in this process
with the bench's welcome step (:mod:`bench.welcome`); a fake Asterisk in a
child process (``--client``), built from the project's codec, opens
connections at a fixed rate and plays ``run_agi()``'s side of the five
commands.  Like res_agi.c ``launch_netscript()``/``setup_env()``, it writes
the environment one ``agi_*`` line per ``send()`` (``--one-write`` sends it
in one piece) and answers every command line with what Asterisk answers.

Printed, one ``name: value`` line each: the event loop, sessions completed,
the server's CPU per session (user + system, and each, in microseconds) and
the session latency p50/p95 (accept to close, as :mod:`bench.welcome`
measures it).  The server runs on :func:`ivr.server.loop_factory`'s loop
(uvloop when installed; ``--asyncio`` forces asyncio's own).  ``--profile
FILE`` writes a cProfile of the server side.  Everything is on loopback and
bounded by ``--calls``.  The machine is shared: compare runs made one after
the other, several times.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import resource
import subprocess
import sys
import time
from collections.abc import Iterable

from ivr.agi import format_environment, frame_commands, split_command
from ivr.server import FastAgiServer, loop_factory

from .stats import percentile
from .welcome import BENCH_WELCOME, ROUTES, WelcomeStats

# What the fake Asterisk answers, by command name (the channel has HOTLINE_NUMBER unset).
ANSWERS = {
    ("GET", "VARIABLE"): lambda words: (
        b"200 result=1 (13907910001)\n" if words[2] == "CALLERID(num)" else b"200 result=0\n"
    ),
    ("SET", "VARIABLE"): lambda words: b"200 result=1\n",
    ("VERBOSE",): lambda words: b"200 result=1\n",
}


def environment(port: int, n: int) -> list[bytes]:
    """The lines ``setup_env()`` writes for call ``n`` (Asterisk 22), then the empty line."""
    uniqueid = f"1700000000.{n}"
    block = format_environment({
        "agi_network": "yes",
        "agi_network_script": BENCH_WELCOME,
        "agi_request": f"agi://127.0.0.1:{port}/{BENCH_WELCOME}",
        "agi_channel": f"PJSIP/carrier-{n:08x}",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": uniqueid,
        "agi_version": "22.5.2",
        "agi_callerid": "13907910001",
        "agi_calleridname": "bench",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": "990002",
        "agi_rdnis": "unknown",
        "agi_context": "from-carrier",
        "agi_extension": "990002",
        "agi_priority": "2",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140211223344",
    })
    return [line + b"\n" for line in block.split(b"\n")[:-1]]


class FakeCall(asyncio.Protocol):
    """One AGI() call seen from Asterisk's side."""

    def __init__(self, lines: list[bytes], one_write: bool, done: asyncio.Future[int]) -> None:
        self.lines = lines
        self.one_write = one_write
        self.done = done
        self.buffer = b""
        self.commands = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.one_write:
            transport.write(b"".join(self.lines))
        else:
            for line in self.lines:
                transport.write(line)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        commands, self.buffer = frame_commands(self.buffer + data)
        for line in commands:
            words = split_command(line)
            answer = ANSWERS.get(tuple(words[:2])) or ANSWERS.get(tuple(words[:1]))
            if answer is None:
                self.transport.write(b"510 Invalid or unknown command\n")
            else:
                self.transport.write(answer(words))
            self.commands += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.commands)


async def client(port: int, rate: float, calls: int, one_write: bool) -> int:
    """Place ``calls`` calls at ``rate`` per second; the number of failed ones."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    pending: list[asyncio.Future[int]] = []

    async def one(n: int) -> int:
        done: asyncio.Future[int] = loop.create_future()
        transport, _ = await loop.create_connection(
            lambda: FakeCall(environment(port, n), one_write, done), "127.0.0.1", port)
        try:
            async with asyncio.timeout(10):
                return await done
        finally:
            transport.close()

    for n in range(calls):
        delay = started + n / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.ensure_future(one(n)))
    results = await asyncio.gather(*pending, return_exceptions=True)
    return sum(1 for r in results if r != 5)


def cpu_s() -> tuple[float, float]:
    """User and system CPU seconds of this process."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


async def serve(rate: float, calls: int, one_write: bool, profile: str | None) -> list[str]:
    stats = WelcomeStats()
    server = FastAgiServer(ROUTES, stats, port=0, command_timeout=5.0, step_timeout=2.0,
                           on_session_end=stats.on_session_end)
    prof = cProfile.Profile() if profile else None
    async with server:  # leaving waits for the sessions still open
        cmd = [sys.executable, "-m", "bench.agi_micro", "--client", str(server.port),
               "--rate", str(rate), "--calls", str(calls)]
        if one_write:
            cmd.append("--one-write")
        before, started = cpu_s(), time.perf_counter()
        if prof:
            prof.enable()
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE)
        out, _ = await proc.communicate()
    if prof and profile:
        prof.disable()
        prof.dump_stats(profile)
    after, wall = cpu_s(), time.perf_counter() - started
    user, system = after[0] - before[0], after[1] - before[1]
    lat = stats.latencies_s
    done = max(1, len(lat))
    failures = out.decode().strip()
    return [
        f"loop: {type(asyncio.get_running_loop()).__module__}",
        f"sessions: {len(lat)} ({stats.completed} completed, client failures {failures})",
        f"server_cpu_us_per_call: {1e6 * (user + system) / done:.0f}",
        f"server_user_us_per_call: {1e6 * user / done:.0f}",
        f"server_sys_us_per_call: {1e6 * system / done:.0f}",
        f"server_cpu_pct: {100 * (user + system) / wall:.0f}",
        f"latency_p50_ms: {1000 * percentile(lat, 50):.2f}",
        f"latency_p95_ms: {1000 * percentile(lat, 95):.2f}",
    ]


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.agi_micro",
                                description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=300.0, help="calls per second")
    p.add_argument("--calls", type=int, default=3000)
    p.add_argument("--one-write", action="store_true", help="send the environment at once")
    p.add_argument("--profile", metavar="FILE", help="cProfile the server side into FILE")
    p.add_argument("--asyncio", action="store_true",
                   help="run the server on asyncio's own loop even if uvloop is installed")
    p.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    a = p.parse_args(list(argv) if argv is not None else None)
    if a.client:
        print(asyncio.run(client(a.client, a.rate, a.calls, a.one_write)))
        return 0
    with asyncio.Runner(loop_factory=None if a.asyncio else loop_factory()) as runner:
        lines = runner.run(serve(a.rate, a.calls, a.one_write, a.profile))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
