"""``python -m bench.queue_bench`` (part of ``make bench``): the queue figures of issue 4.

Three figures, from one throw-away hotline (the sample config, Asterisk, Redis and
the controller; :class:`bench.dialplan.BenchHotline`) with extra bench-only numbers
in ``[from-carrier]``:

1. **Agent free -> next waiting call ringing that agent** (p50/p95, ms). Two seats
   (SIPp softphones, registered and logged in to the province queue through the HTTP
   API; wrap-up 0) answer after 100 ms; each caller talks ``talk_ms`` once answered
   and hangs up; callers arrive faster than the two can serve, so one always waits.
   A bench AMI session timestamps the events on arrival: for each ``AgentComplete``
   (the agent's call ended) and each ``QueueMemberPause`` with ``Paused: 0`` (the
   agent resumed, through ``POST /seats/<seat>/resume``) while a caller waits, the
   time until the next ``AgentCalled`` for that same interface. Both events come over
   the same socket, so the AMI transport delay cancels out.
2. **AMI events processed by the controller** during that load: the events its AMI
   client dispatched (``GET /status``: ``ami.events``), per second of the run; the
   controller's CPU over the run (``/proc``) and the events per controller CPU second
   -- the rate the controller's event handling could keep up with on one core (an
   upper bound on its cost: that CPU also covers the queue-entry FastAGI step and
   the HTTP API); and the time spent in the event callbacks per event.
3. **Calls per second through the IVR into a queue** against a bare dialplan, in the
   same run, steps interleaved (the method of :mod:`bench.agi_bench`, with its
   :class:`bench.search.RateSearch`): the caller calls 12345, presses 0 one second
   after the answer (the IVR's "a person" key; the call then goes to the Nanchang
   queue and, nobody being logged in there, overflows to the province queue), waits
   ``hold_s`` and hangs up. The baseline number answers and waits, and the same caller
   does the same. An IVR step passes when fewer than 1 % of its calls failed, both
   SIP-wise and by not reaching a queue (``ENTERQUEUE`` in queue_log, per call).

Figures go to stdout as ``name: value`` lines; progress to stderr. The machine is
shared with other work: ``others_cpu_pct`` says how much CPU other processes took.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from dialplan.loader import ConfigError
from hotline import channel_vars as cv
from hotline.ami import AmiClient
from hotline.amiproto import AmiMessage
from hotline.runtime import AsteriskRoot, SetupError
from tests.integration.sipp import agent_answer_scenario, dtmf, free_port, pause, until_answered

from .dialplan import BenchHotline, BenchNumbers, bench_config
from .load import LoadResult, LoadSpec, run_sipp
from .machine import CpuMeter, machine_busy_s, machine_line, proc_cpu_s, self_cpu_s
from .search import RateSearch
from .stats import percentile

BARE_WAIT_NUMBER: Final = "990003"  # Answer, Wait: the caller hangs up
QUEUE_NUMBER: Final = "990004"  # Answer, then the province queue's real entry
SERVICE: Final = "12345"
QUEUE: Final = "province"
SEATS: Final = ("1001", "1002")
KEY_AFTER_MS: Final = 1000
REASON: Final = "break"  # a pause reason of the sample config


@dataclass(frozen=True)
class QueueNumbers(BenchNumbers):
    def extensions(self) -> str:
        return super().extensions() + f"""exten => {BARE_WAIT_NUMBER},1,Answer()
 same => n,Wait(600)
 same => n,Hangup()
exten => {QUEUE_NUMBER},1,Answer()
 same => n,Goto({cv.CTX_QUEUE},{QUEUE},1)
"""


def queue_bench_config() -> dict[str, Any]:
    """The bench config; the province queue without wrap-up or call-back offers, so
    that a freed agent is offered the next call at once."""
    cfg = bench_config()
    cfg["queues"][QUEUE].update(wrapup=0, callback_after=0)
    return cfg


@dataclass(frozen=True)
class Options:
    talk_ms: int = 1500
    load_calls: int = 60
    load_rate: int = 2  # calls/s; two agents serve about 1/s at talk_ms 1500
    pauses: int = 5  # pause/resume cycles of one seat during the load
    hold_s: int = 2
    step_s: float = 5.0
    budget_s: float = 200.0
    keep: bool = False


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ free -> ring
@dataclass
class QueueWatch:
    """Queue events with their arrival time (monotonic), from a bench AMI session."""

    events: list[tuple[float, str, str, str]] = field(default_factory=list)

    def __call__(self, event: AmiMessage) -> None:
        name = event.name
        if name in ("AgentCalled", "AgentConnect", "AgentComplete", "QueueMemberPause"):
            self.events.append((time.monotonic(), name, event.get("Interface") or "",
                                event.get("Paused") or ""))
        elif name in ("QueueCallerJoin", "QueueCallerLeave"):
            self.events.append((time.monotonic(), name, "", event.get("Count") or ""))

    def free_to_ring(self, limit_s: float = 10.0) -> dict[str, list[float]]:
        """Seconds from an agent becoming free, while a caller waits, to the next
        offer to that agent; by how the agent became free (``call_end``, ``unpause``).

        A call that ends while its agent is paused frees nobody: the agent becomes
        free at the resume, which is the sample then.  Likewise a resume during a
        call frees nobody: the call's end is the sample."""
        out: dict[str, list[float]] = {"call_end": [], "unpause": []}
        waiting = 0
        paused: set[str] = set()
        talking: set[str] = set()
        for i, (t, name, iface, extra) in enumerate(self.events):
            if name in ("QueueCallerJoin", "QueueCallerLeave"):
                waiting = int(extra or 0)
                continue
            if name == "AgentConnect":
                talking.add(iface)
                continue
            if name == "AgentComplete":
                talking.discard(iface)
            if name == "QueueMemberPause" and extra == "1":
                paused.add(iface)
            elif name == "QueueMemberPause":
                paused.discard(iface)
            kind = ("call_end" if name == "AgentComplete" and iface not in paused
                    else "unpause" if name == "QueueMemberPause" and extra == "0"
                    and iface not in talking else None)
            if kind is None or waiting == 0:
                continue
            for t2, name2, iface2, _ in self.events[i + 1:]:
                if t2 - t > limit_s:
                    break
                if iface2 == iface and name2 == "AgentCalled":
                    out[kind].append(t2 - t)
                    break
                if iface2 == iface and name2 == "QueueMemberPause" and _ == "1":
                    break  # paused again before any offer: not a sample
        return out


async def api(h: BenchHotline, method: str, path: str, user: str, body: Any = None) -> None:
    status, answer = await asyncio.to_thread(h.api, method, path, user, body)
    if status != 200:
        raise RuntimeError(f"{method} {path}: {status} {answer}")


async def queue_load(h: BenchHotline, opts: Options, workdir: Path) -> dict[str, Any]:
    """Figures 1 and 2: seats serving a queue that always has a caller waiting."""
    agents = []
    for seat in SEATS:
        agents.append(await asyncio.to_thread(
            h.register_seat, workdir, seat, ooc_scenario=agent_answer_scenario(100),
            hold_ms=600_000))
        await api(h, "POST", f"/seats/{seat}/login", h.agent_of(seat))
    watch = QueueWatch()
    ami = AmiClient("127.0.0.1", h.cfg["network"]["ami"]["port"], "hotline", h.ami_secret())
    ami.on("*", watch)
    try:
        await ami.connect()
        before = (await asyncio.to_thread(h.status))["ami"]
        cpu0, t0 = proc_cpu_s(h.controller_pid), time.monotonic()
        ip = h.carrier_ip
        spec = LoadSpec(number=QUEUE_NUMBER, rate=opts.load_rate, calls=opts.load_calls,
                        limit=opts.load_calls, timeout_s=opts.load_calls * 3 + 60,
                        bye_timeout_ms=0, local_ip=ip,
                        local_port=free_port(ip, udp_and_tcp=False),
                        media_port=free_port(ip, udp_and_tcp=False), target=h.sip_target,
                        steps=until_answered(opts.talk_ms))
        load = asyncio.create_task(run_sipp(spec, workdir / "queue-load"))
        seat = SEATS[-1]
        for _ in range(opts.pauses):  # one seat paused and resumed while callers wait
            await asyncio.sleep(4)
            await api(h, "POST", f"/seats/{seat}/pause", h.agent_of(seat), {"reason": REASON})
            await asyncio.sleep(2)
            await api(h, "POST", f"/seats/{seat}/resume", h.agent_of(seat))
        result: LoadResult = await load
        wall = time.monotonic() - t0
        cpu = proc_cpu_s(h.controller_pid) - cpu0
        after = (await asyncio.to_thread(h.status))["ami"]
    finally:
        await ami.close()
        for a in agents:
            a.stop()
    samples = watch.free_to_ring()
    events = after["events"] - before["events"]
    calls = after["handler_calls"] - before["handler_calls"]
    both = samples["call_end"] + samples["unpause"]
    return {
        "queue_calls": f"{result.successful}/{opts.load_calls} completed in {wall:.0f} s",
        "free_to_ring_samples": f"{len(both)} (call end {len(samples['call_end'])}, "
                                f"unpause {len(samples['unpause'])})",
        "free_to_ring_p50_ms": _ms(both, 50),
        "free_to_ring_p95_ms": _ms(both, 95),
        "call_end_to_ring_p50_ms": _ms(samples["call_end"], 50),
        "call_end_to_ring_p95_ms": _ms(samples["call_end"], 95),
        "unpause_to_ring_p50_ms": _ms(samples["unpause"], 50),
        "unpause_to_ring_p95_ms": _ms(samples["unpause"], 95),
        "ami_events": events,
        "ami_events_per_s": f"{events / wall:.1f}",
        "controller_cpu_pct": f"{100 * cpu / wall:.1f}",
        "ami_events_per_controller_cpu_s": f"{events / cpu:.0f}" if cpu else "n/a",
        "ami_callback_us_per_event": (
            f"{1e6 * (after['handler_s'] - before['handler_s']) / events:.1f} sync, "
            f"{1e6 * (after['async_handler_s'] - before['async_handler_s']) / max(1, calls):.0f}"
            " to the end of async callbacks" if events else "n/a"),
    }


def _ms(xs: list[float], q: float) -> str:
    return f"{1000 * percentile(xs, q):.0f}" if xs else "n/a"


# ------------------------------------------------------------------ IVR -> queue rate
@dataclass(frozen=True)
class Variant:
    name: str
    number: str
    reaches_queue: bool


BARE: Final = Variant("bare", BARE_WAIT_NUMBER, reaches_queue=False)
IVRQ: Final = Variant("ivr-queue", SERVICE, reaches_queue=True)


def queued_calls(queue_log: str) -> set[str]:
    """Call ids that entered any queue (queue_log: time|callid|queue|agent|EVENT|...)."""
    return {p[1] for p in (ln.split("|") for ln in queue_log.splitlines())
            if len(p) > 4 and p[4] == "ENTERQUEUE"}


class RateBench:
    def __init__(self, h: BenchHotline, opts: Options, workdir: Path, deadline: float) -> None:
        self.h, self.opts, self.workdir, self.deadline = h, opts, workdir, deadline
        self.n = 0
        self.others: list[float] = []

    def call_s(self) -> float:
        return KEY_AFTER_MS / 1000 + self.opts.hold_s

    async def step(self, v: Variant, rate: int) -> bool:
        h, opts = self.h, self.opts
        calls = max(1, round(rate * opts.step_s))
        if time.monotonic() + calls / rate + self.call_s() + 20 > self.deadline:
            raise TimeoutError
        ip = h.carrier_ip
        steps = pause(KEY_AFTER_MS) + dtmf("0") + pause(opts.hold_s * 1000)
        spec = LoadSpec(number=v.number, rate=rate, calls=calls,
                        limit=int(rate * (self.call_s() + 1.5)) + 1,
                        timeout_s=int(calls / rate + self.call_s() + 15), bye_timeout_ms=0,
                        local_ip=ip, local_port=free_port(ip, udp_and_tcp=False),
                        media_port=free_port(ip, udp_and_tcp=False), target=h.sip_target,
                        steps=steps)
        seen = queued_calls(h.queue_log())
        meter = CpuMeter({"asterisk": lambda: proc_cpu_s(h.asterisk_pid), "bench": self_cpu_s,
                          "controller": lambda: proc_cpu_s(h.controller_pid),
                          "all": machine_busy_s})
        self.n += 1
        load = await run_sipp(spec, self.workdir / f"step{self.n:02d}-{v.name}-{rate}")
        shares = meter.shares({"sipp": load.cpu_s})
        machine = shares.pop("all")
        others = max(0.0, machine - sum(shares.values()))
        self.others.append(others)
        await self.settle()
        failed = load.missing
        if v.reaches_queue:
            failed = max(failed, calls - len(queued_calls(h.queue_log()) - seen))
        ok = failed * 100 < calls and load.answered_cps >= 0.95 * rate
        say(f"{v.name:9} {rate:4d} cps: {load.successful}/{calls} ok, {failed} failed, "
            f"answered {load.answered_cps:.0f}/s, others {others:.0f}% "
            f"{'PASS' if ok else 'FAIL'}")
        return ok

    async def settle(self, limit_s: float = 20.0) -> None:
        end = time.monotonic() + limit_s
        while True:
            if not await asyncio.to_thread(self.h.active_channels) or time.monotonic() > end:
                return
            await asyncio.sleep(0.3)  # no push for "no channel left": poll the count

    async def search(self) -> dict[str, int]:
        searches = {BARE.name: RateSearch(50, 50, 10, 1000), IVRQ.name: RateSearch(10, 20, 5, 600)}
        progressed = True
        try:
            while progressed:
                progressed = False
                for v in (BARE, IVRQ):
                    rate = searches[v.name].next_rate()
                    if rate is not None:
                        searches[v.name].record(rate, await self.step(v, rate))
                        progressed = True
        except TimeoutError:
            say("queue bench: time budget reached, search cut short")
        return {name: s.passed for name, s in searches.items()}


# ------------------------------------------------------------------ main
async def run(h: BenchHotline, opts: Options, workdir: Path, started: float) -> list[str]:
    rates = await RateBench(h, opts, workdir, started + opts.budget_s).search()
    say("queue bench: IVR search done; queue load with two seats")
    figures = await queue_load(h, opts, workdir)
    ratio = rates[IVRQ.name] / rates[BARE.name] if rates[BARE.name] else None
    lines = [f"bare_wait_cps: {rates[BARE.name]}", f"ivr_queue_cps: {rates[IVRQ.name]}",
             f"ivr_queue_ratio: {ratio:.2f}" if ratio is not None else "ivr_queue_ratio: n/a"]
    return lines + [f"{k}: {v}" for k, v in figures.items()]


def parse_args(argv: Iterable[str] | None) -> Options:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m bench.queue_bench",
                                description=__doc__.split("\n")[0])
    p.add_argument("--budget", type=float, default=d.budget_s,
                   help="seconds for the IVR-into-queue search (default %(default)s)")
    p.add_argument("--load-calls", type=int, default=d.load_calls)
    p.add_argument("--keep", action="store_true", help="keep the work folder (SIPp logs)")
    a = p.parse_args(list(argv) if argv is not None else None)
    if a.budget <= 0 or a.load_calls <= 0:
        p.error("--budget and --load-calls must be positive")
    return Options(budget_s=a.budget, load_calls=a.load_calls, keep=a.keep)


def main(argv: Iterable[str] | None = None) -> int:
    opts = parse_args(argv)
    for tool in ("sipp", "redis-server"):
        if shutil.which(tool) is None:
            say(f"queue bench: {tool} is missing (run: make deps)")
            return 2
    try:
        root = AsteriskRoot.locate()
    except SetupError as e:
        say(f"queue bench: {e}")
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="hotline-queue-bench-"))
    h = BenchHotline(workdir, queue_bench_config(), QueueNumbers("127.0.0.1", free_port(), 1))
    lines = [machine_line(root)]
    try:
        say(f"queue bench: starting Asterisk, Redis and the controller in {workdir}")
        h.start()
        h.wait_healthy()
        lines += asyncio.run(run(h, opts, workdir, started))
    except (ConfigError, SetupError) as e:
        say(f"queue bench: cannot start the hotline (try `make setup`): {e}")
        return 2
    except KeyboardInterrupt:
        say("queue bench: interrupted")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            h.stop()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            if opts.keep:
                say(f"queue bench: work folder kept: {workdir}")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    lines.append(f"queue_bench_seconds: {time.monotonic() - started:.0f}")
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
