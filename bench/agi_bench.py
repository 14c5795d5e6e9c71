"""The benchmark: sustained call rate with and without a FastAGI step, and AGI latency.

Method
------
* One hotline (Asterisk + Redis + controller, :class:`bench.dialplan.BenchHotline`)
  with two bench numbers in ``[from-carrier]``: ``bare`` (Answer, Wait, Hangup)
  and ``ivr`` (the same with ``AGI(.../bench-welcome)`` after the answer).
  The FastAGI server for ``bench-welcome`` runs in this process.
* A *step* is one SIPp run from the carrier's address at ``rate`` calls/s for
  ``step_s`` seconds of calls.  It passes when fewer than ``fail_pct`` % of the
  calls failed -- SIPp's failed or unfinished calls, and for ``ivr`` also the
  calls whose AGI step did not run its five commands (the larger of the two
  counts) -- and when Asterisk answered at least ``sustain`` of ``rate``
  (:func:`bench.stats.answer_rate`; SIPp's ``-l`` caps the calls in progress
  at ``rate`` x (call length + ``slack_s``), so a system that answers late
  falls behind instead of queueing without bound) and no channel is left.
  A call lasts ``hold_s`` + 0.5 s: Answer() waits up to 500 ms for the
  caller's first RTP, and the bench caller sends none (:mod:`bench.load`).
* Search (:class:`bench.search.RateSearch`), per variant, the steps of both
  variants interleaved so that both see the same machine: climb from
  ``start`` by ``coarse`` to the first failing step, then bisect between the
  highest pass and the lowest failure down to ``resolution``.  The maximum is
  the highest passing rate.  The bench shares the machine: a step that fails
  while other processes used over ``interference_pct`` % of a core is run a
  second time, and the second result counts.
* Then ``ivr`` runs once more at 80 % of its maximum; the AGI latency
  p50/p95 reported comes from that run (see :mod:`bench.welcome` for what
  the latency covers); if others disturbed it, it runs twice and the quieter
  run counts.
* The baseline for that latency, measured in the same run: a third number,
  ``ref``, has the same step served by a minimal ``asyncio.start_server``
  handler (:func:`bench.welcome.minimal_session`, the issue's "minimal asyncio
  FastAGI step").  ``ivr`` and ``ref`` run in turn at the same rate (ivr,
  ref, ref, ivr), each pooled over its two runs: ``agi_p95_reference_ms`` and
  ``agi_p95_vs_reference`` (ours over the minimal server's) say how much of
  the p95 is our server and how much the machine and Asterisk.
* ``others_cpu_pct`` is the mean CPU, in % of one core, that processes other
  than the bench's (Asterisk, controller, SIPp, this one) used during the
  steps: read every figure with it.

Figures go to stdout, one ``name: value`` line each; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from dialplan.loader import ConfigError
from hotline import cpus
from hotline.runtime import AsteriskRoot, SetupError
from ivr.server import FastAgiServer, loop_factory
from tests.integration.sipp import free_port

from .dialplan import (
    AGI_NUMBER,
    BARE_NUMBER,
    REF_NUMBER,
    BenchHotline,
    BenchNumbers,
    bench_config,
)
from .load import LoadResult, LoadSpec, call_seconds, concurrency_limit, run_sipp
from .machine import CpuMeter, machine_busy_s, machine_line, proc_cpu_s, self_cpu_s
from .search import RateSearch
from .stats import percentile
from .welcome import ROUTES, WelcomeStats, minimal_session

TARGET_RATIO: Final = 0.9
TARGET_AGI_P95_MS: Final = 3.0
LATENCY_RATE_SHARE: Final = 0.8


@dataclass(frozen=True)
class Options:
    hold_s: int = 1
    step_s: float = 8.0
    start_rate: int = 100
    coarse: int = 100
    resolution: int = 10
    max_rate: int = 1200
    fail_pct: float = 1.0
    sustain: float = 0.95
    slack_s: float = 0.5
    budget_s: float = 290.0  # the search; the latency run and start/stop come on top
    interference_pct: float = 10.0  # others' CPU (% of a core) that earns a failed step a re-run
    keep: bool = False
    controller: bool = True  # diagnostics: run without the controller (no AMI session)
    shared: bool = False  # no CPU layout: Asterisk, controller, SIPp share every CPU
    silence: bool = True  # diagnostics: transmit_silence = no in asterisk.conf
    reference: bool = True  # the latency also on the minimal asyncio server, as a baseline


@dataclass(frozen=True)
class Variant:
    name: str
    number: str
    agi: bool


BARE: Final = Variant("bare", BARE_NUMBER, agi=False)
IVR: Final = Variant("ivr", AGI_NUMBER, agi=True)
REF: Final = Variant("ref", REF_NUMBER, agi=True)  # the same step on the minimal server


def judge(variant: Variant, rate: int, load: LoadResult, agi_completed: int,
          channels_left: int, opts: Options) -> tuple[int, tuple[str, ...]]:
    """Failed calls and the reasons a step fails (none: it passed)."""
    calls = load.spec.calls
    failed = load.missing
    if variant.agi:  # an AGI step that did not finish leaves the SIP call looking fine
        failed = max(failed, calls - agi_completed)
    reasons = []
    if failed * 100 >= opts.fail_pct * calls:
        reasons.append(f"{100 * failed / calls:.2f} % failed")
    if load.answered_cps < opts.sustain * rate:
        reasons.append(f"answered {load.answered_cps:.0f}/s < {opts.sustain:.0%}")
    if channels_left:
        reasons.append(f"{channels_left} channel(s) left")
    return failed, tuple(reasons)


@dataclass(frozen=True)
class StepResult:
    variant: Variant
    rate: int
    load: LoadResult
    agi_completed: int
    agi_latencies_s: list[float]
    channels_left: int
    cpu_pct: dict[str, float]
    failed: int
    reasons: tuple[str, ...]
    calls: int | None = None  # calls offered, when not the load's (pooled runs)

    @property
    def passed(self) -> bool:
        return not self.reasons

    @property
    def why(self) -> str:
        return ", ".join(self.reasons)

    @property
    def others_pct(self) -> float:
        """CPU used during the step by processes that are not the bench's, % of a core."""
        return self.cpu_pct.get("others", 0.0)

    @property
    def failed_pct(self) -> float:
        calls = self.calls if self.calls is not None else self.load.spec.calls
        return 100 * self.failed / max(1, calls)

    def agi_ms(self, q: float) -> float:
        return 1000 * percentile(self.agi_latencies_s, q)

    def summary(self) -> str:
        ld = self.load
        parts = [
            f"{self.variant.name:4} {self.rate:4d} cps: {ld.successful}/{ld.spec.calls} ok,"
            f" {self.failed} failed ({self.failed_pct:.2f} %)",
            f"answered {ld.answered_cps:.0f}/s",
            f"answer p50/p95 {ld.answer_ms(50):.1f}/{ld.answer_ms(95):.1f} ms",
        ]
        if self.variant.agi:
            parts.append(f"agi {self.agi_completed} done, p50/p95 "
                         f"{self.agi_ms(50):.2f}/{self.agi_ms(95):.2f} ms")
        parts.append("cpu " + " ".join(f"{k} {v:.0f}%" for k, v in self.cpu_pct.items())
                     + f" (of {100 * (os.cpu_count() or 1)}%)")
        parts.append("PASS" if self.passed else f"FAIL ({self.why})")
        return ", ".join(parts)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the bench
class Bench:
    def __init__(self, hotline: BenchHotline, server: FastAgiServer, stats: WelcomeStats,
                 opts: Options, workdir: Path, deadline: float) -> None:
        self.hotline = hotline
        self.server = server
        self.stats = stats
        self.opts = opts
        self.workdir = workdir
        self.deadline = deadline
        self.steps: list[StepResult] = []
        self.out_of_time = False

    def step_seconds(self, rate: int) -> float:
        calls = self.calls_for(rate)
        return calls / rate + call_seconds(self.opts.hold_s) + 3.0

    def calls_for(self, rate: int) -> int:
        return max(1, round(rate * self.opts.step_s))

    def fits(self, rate: int) -> bool:
        if time.monotonic() + self.step_seconds(rate) > self.deadline:
            self.out_of_time = True
            return False
        return True

    async def step(self, variant: Variant, rate: int) -> StepResult:
        opts = self.opts
        h = self.hotline
        ip = h.carrier_ip
        calls = self.calls_for(rate)
        spec = LoadSpec(
            number=variant.number, rate=rate, calls=calls,
            limit=concurrency_limit(rate, opts.hold_s, opts.slack_s),
            timeout_s=int(calls / rate + call_seconds(opts.hold_s) + 10),
            bye_timeout_ms=int((call_seconds(opts.hold_s) + 4) * 1000),
            local_ip=ip, local_port=free_port(ip, udp_and_tcp=False),
            media_port=free_port(ip, udp_and_tcp=False), target=h.sip_target,
        )
        self.stats.reset()
        meter = CpuMeter({
            "asterisk": lambda: proc_cpu_s(h.asterisk_pid),
            "bench": self_cpu_s,
            "controller": lambda: proc_cpu_s(h.controller_pid),
            "all": machine_busy_s,
        })
        n = len(self.steps) + 1
        load = await run_sipp(spec, self.workdir / f"step{n:02d}-{variant.name}-{rate}")
        shares = meter.shares({"sipp": load.cpu_s})
        machine = shares.pop("all")
        shares["others"] = max(0.0, machine - sum(shares.values()))
        left = await self.settle()
        failed, reasons = judge(variant, rate, load, self.stats.completed, left, opts)
        result = StepResult(variant, rate, load, self.stats.completed,
                            list(self.stats.latencies_s), left, shares, failed, reasons)
        self.steps.append(result)
        say(result.summary())
        return result

    async def settle(self, limit_s: float = 15.0) -> int:
        """Wait until Asterisk has no channel and no AGI session is open; channels left."""
        loop = asyncio.get_running_loop()
        end = loop.time() + limit_s
        while True:
            channels = await asyncio.to_thread(self.hotline.active_channels)
            if (channels == 0 and self.server.active_sessions == 0) or loop.time() > end:
                return channels
            await asyncio.sleep(0.2)  # polling Asterisk's channel count: no push for "idle"

    async def search(self) -> dict[str, RateSearch]:
        """Search both variants, their steps interleaved (bare, ivr, bare, ...)."""
        opts = self.opts
        searches = {v.name: RateSearch(opts.start_rate, opts.coarse, opts.resolution,
                                       opts.max_rate) for v in (BARE, IVR)}
        progressed = True
        while progressed:
            progressed = False
            for v in (BARE, IVR):
                search = searches[v.name]
                rate = search.next_rate()
                if rate is None:
                    continue
                if not self.fits(rate):
                    return searches
                search.record(rate, (await self.checked_step(v, rate)).passed)
                progressed = True
        return searches

    async def checked_step(self, variant: Variant, rate: int) -> StepResult:
        """A step; re-run once if it failed while other processes took the CPU.

        The bench shares the machine (other test runs, a `make run`); a failure
        during which others used over ``interference_pct`` % of a core says
        little about the hotline, so it gets a second chance.
        """
        result = await self.step(variant, rate)
        if (not result.passed and result.others_pct > self.opts.interference_pct
                and self.fits(rate)):
            say(f"  other processes used {result.others_pct:.0f}% of a core: running it again")
            result = await self.step(variant, rate)
        return result

    async def latency_step(self, rate: int, variant: Variant = IVR) -> StepResult:
        """The AGI step at ``rate``; when disturbed, once more, keeping the quieter run."""
        result = await self.step(variant, rate)
        if result.others_pct > self.opts.interference_pct:
            say(f"  other processes used {result.others_pct:.0f}% of a core: running it again")
            again = await self.step(variant, rate)
            result = min(result, again, key=lambda r: r.others_pct)
        return result


@dataclass
class Report:
    machine: str
    setup: str
    bare_cps: int = 0
    ivr_cps: int = 0
    agi_rate: int = 0
    agi_step: StepResult | None = None
    ref_step: StepResult | None = None  # the minimal server at the same rate, same run
    others_pct: float | None = None
    notes: list[str] = field(default_factory=list)

    def reference_lines(self) -> list[str]:
        """Our p95 against the minimal asyncio server's, at the same rate in the same run."""
        if self.agi_step is None or self.ref_step is None:
            return ["agi_p95_reference_ms: n/a", "agi_p95_vs_reference: n/a"]
        ours, ref = self.agi_step.agi_ms(95), self.ref_step.agi_ms(95)
        if math.isnan(ours) or math.isnan(ref) or ref <= 0:
            return ["agi_p95_reference_ms: n/a", "agi_p95_vs_reference: n/a"]
        return [f"agi_p95_reference_ms: {ref:.1f}", f"agi_p95_vs_reference: {ours / ref:.2f}"]

    def lines(self, seconds: float) -> list[str]:
        ratio = self.ivr_cps / self.bare_cps if self.bare_cps else None
        p50 = self.agi_step.agi_ms(50) if self.agi_step else None
        p95 = self.agi_step.agi_ms(95) if self.agi_step else None
        ratio_ok = ratio is not None and ratio >= TARGET_RATIO
        p95_ok = (p95 is not None and not math.isnan(p95) and p95 <= TARGET_AGI_P95_MS
                  and self.agi_step is not None and self.agi_step.passed)
        return [
            self.machine,
            self.setup,
            f"bare_cps: {self.bare_cps}",
            f"ivr_cps: {self.ivr_cps}",
            f"ratio: {ratio:.2f}" if ratio is not None else "ratio: n/a",
            f"agi_p50_ms: {p50:.1f}" if p50 is not None else "agi_p50_ms: n/a",
            f"agi_p95_ms: {p95:.1f}" if p95 is not None else "agi_p95_ms: n/a",
            f"agi_rate_tested: {self.agi_rate}",
            *self.reference_lines(),
            f"target_ratio_met: {'yes' if ratio_ok else 'no'}",
            f"target_agi_p95_met: {'yes' if p95_ok else 'no'}",
            (f"others_cpu_pct: {self.others_pct:.0f}" if self.others_pct is not None
             else "others_cpu_pct: n/a"),
            f"bench_seconds: {seconds:.0f}",
        ]


async def run(hotline: BenchHotline, server_port: int, opts: Options, workdir: Path,
              report: Report, started: float) -> None:
    stats = WelcomeStats()
    server = FastAgiServer(ROUTES, stats, host="127.0.0.1", port=server_port,
                           command_timeout=5.0, step_timeout=2.0,
                           on_session_end=stats.on_session_end)
    ref_port = hotline.numbers.ref_port
    ref_server = None
    if ref_port is not None:
        ref_server = await asyncio.start_server(
            lambda r, w: minimal_session(r, w, stats), "127.0.0.1", ref_port)
    async with server:
        bench = Bench(hotline, server, stats, opts, workdir, started + opts.budget_s)
        searches = await bench.search()
        report.bare_cps, report.ivr_cps = searches["bare"].passed, searches["ivr"].passed
        if bench.out_of_time:
            report.notes.append(f"time budget of {opts.budget_s:.0f} s reached: search cut short")
        for name, search in searches.items():
            if search.capped:
                report.notes.append(f"{name}: no step failed up to --max-rate {opts.max_rate}")
        if report.ivr_cps:
            report.agi_rate = max(1, round(LATENCY_RATE_SHARE * report.ivr_cps))
            say(f"AGI latency run at {LATENCY_RATE_SHARE:.0%} of {report.ivr_cps} cps"
                + (", ours and the minimal server's in turn" if ref_server else ""))
            if ref_server is None:
                report.agi_step = await bench.latency_step(report.agi_rate)
            else:
                # ABBA: a drift of the machine during the four runs weighs on both alike
                runs: dict[str, list[StepResult]] = {IVR.name: [], REF.name: []}
                for variant in (IVR, REF, REF, IVR):
                    runs[variant.name].append(await bench.latency_step(report.agi_rate, variant))
                report.agi_step, report.ref_step = pooled(runs[IVR.name]), pooled(runs[REF.name])
                if not report.ref_step.passed:
                    report.notes.append(f"the reference run failed: {report.ref_step.why}")
            if not report.agi_step.passed:
                report.notes.append(f"the latency run itself failed: {report.agi_step.why}")
        if bench.steps:
            report.others_pct = sum(r.others_pct for r in bench.steps) / len(bench.steps)
    if ref_server is not None:
        ref_server.close()
        await ref_server.wait_closed()


def pooled(runs: list[StepResult]) -> StepResult:
    """Runs of one variant at one rate as one: their sessions together (the percentiles
    are over all of them); it passes when every run passed."""
    first = runs[0]
    reasons = tuple(dict.fromkeys(r for run in runs for r in run.reasons))
    return replace(
        first,
        agi_completed=sum(r.agi_completed for r in runs),
        agi_latencies_s=[x for r in runs for x in r.agi_latencies_s],
        failed=sum(r.failed for r in runs),
        calls=sum(r.calls if r.calls is not None else r.load.spec.calls for r in runs),
        reasons=reasons,
        cpu_pct={k: sum(r.cpu_pct.get(k, 0.0) for r in runs) / len(runs) for k in first.cpu_pct},
    )


@dataclass(frozen=True)
class Layout:
    """Which CPUs Asterisk gets and which the rest (controller, Redis, SIPp, the bench's
    FastAGI server) gets: the hotline's ``cpus:`` keys, as a deployment would set them."""

    asterisk: frozenset[int] | None
    others: frozenset[int] | None

    @classmethod
    def choose(cls, shared: bool) -> Layout:
        """Asterisk on the first CPU, everything else on the others (the figures are per
        Asterisk core, the issue's unit); ``shared``, or one CPU: no constraint."""
        here = sorted(cpus.available())
        if shared or len(here) < 2:
            return cls(None, None)
        return cls(frozenset(here[:1]), frozenset(here[1:]))

    def apply(self, cfg: dict[str, Any]) -> None:
        """Into the bench hotline's config, and onto this process (SIPp and Redis, started
        from it, inherit its CPUs)."""
        if self.asterisk is None or self.others is None:
            return
        cfg["cpus"] = {"asterisk": sorted(self.asterisk), "controller": sorted(self.others)}
        cpus.pin_self(set(self.others))

    def describe(self) -> str:
        if self.asterisk is None or self.others is None:
            return "shared CPUs (no layout)"
        return (f"Asterisk on CPU {cpus.describe(set(self.asterisk))}, controller, Redis, "
                f"SIPp and the bench on CPU {cpus.describe(set(self.others))}")


def setup_line(opts: Options, layout: Layout) -> str:
    loop = "uvloop" if loop_factory() is not None else "asyncio"
    return (f"setup: controller {'on' if opts.controller else 'off'}, transmit_silence "
            f"{'yes' if opts.silence else 'no'}, {opts.step_s:g} s of calls per step, "
            f"hold {opts.hold_s} s, resolution {opts.resolution} cps, FastAGI on {loop}, "
            f"{layout.describe()}")


def asterisk_complaints(hotline: BenchHotline, limit: int = 8) -> list[str]:
    """The most frequent WARNING/ERROR lines Asterisk logged, without timestamps."""
    counts: collections.Counter[str] = collections.Counter()
    for line in hotline.messages_log().splitlines():
        if " WARNING[" in line or " ERROR[" in line:
            text = re.sub(r"^\[[^\]]*\]\s*", "", line)
            text = re.sub(r"\[\d+\]", "", text)
            counts[re.sub(r"\d+", "N", text)[:160]] += 1
    return [f"{n:6d} x {text}" for text, n in counts.most_common(limit)]


def parse_args(argv: Iterable[str] | None) -> Options:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--step-seconds", type=float, default=d.step_s,
                   help="seconds of calls per step (default %(default)s)")
    p.add_argument("--start-rate", type=int, default=d.start_rate)
    p.add_argument("--coarse", type=int, default=d.coarse, help="coarse rate step, calls/s")
    p.add_argument("--resolution", type=int, default=d.resolution,
                   help="bisect until pass and fail are this close, calls/s")
    p.add_argument("--max-rate", type=int, default=d.max_rate)
    p.add_argument("--budget", type=float, default=d.budget_s,
                   help="seconds for the whole search (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (SIPp logs)")
    p.add_argument("--no-controller", action="store_true",
                   help="diagnostics: do not start the controller (no AMI session in Asterisk)")
    p.add_argument("--no-silence", action="store_true",
                   help="diagnostics: transmit_silence = no in the bench's asterisk.conf")
    p.add_argument("--no-reference", action="store_true",
                   help="measure the AGI latency on our server only (default: in turn with "
                        "a minimal asyncio server, the baseline)")
    p.add_argument("--shared", action="store_true",
                   help="no CPU layout: Asterisk, the controller, SIPp and the bench share "
                        "every CPU (default: Asterisk on the first CPU, the rest on the others)")
    a = p.parse_args(list(argv) if argv is not None else None)
    for name in ("step_seconds", "start_rate", "coarse", "resolution", "max_rate", "budget"):
        if getattr(a, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return Options(step_s=a.step_seconds, start_rate=a.start_rate, coarse=a.coarse,
                   resolution=a.resolution, max_rate=a.max_rate, budget_s=a.budget, keep=a.keep,
                   controller=not a.no_controller, silence=not a.no_silence, shared=a.shared,
                   reference=not a.no_reference)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: while asyncio runs, its SIGINT handler cancels the bench cleanly."""
    signal.raise_signal(signal.SIGINT)


def run_with_teardown(hotline: BenchHotline, agi_port: int, opts: Options, workdir: Path,
                      report: Report, started: float) -> None:
    """Start the hotline, run the bench, and stop everything whatever happens."""
    try:
        say(f"bench: starting Asterisk, Redis{' and the controller' if opts.controller else ''}"
            f" in {workdir}")
        hotline.start()
        hotline.check_bench_numbers()
        say(f"bench: SIP {hotline.sip_target}, carrier {hotline.carrier_ip}, "
            f"FastAGI 127.0.0.1:{agi_port}, load average {os.getloadavg()[0]:.2f}")
        # The event loop the controller serves FastAGI on (uvloop when installed).
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(run(hotline, agi_port, opts, workdir, report, started))
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the teardown finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            for line in asterisk_complaints(hotline):
                say(f"asterisk log: {line}")
            hotline.stop()
        finally:
            if not opts.keep:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                say(f"bench: work folder kept: {workdir}")
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: Iterable[str] | None = None) -> int:
    opts = parse_args(argv)
    for tool in ("sipp", "redis-server"):
        if shutil.which(tool) is None:
            say(f"bench: {tool} is missing (run: make deps)")
            return 2
    try:
        root = AsteriskRoot.locate()
    except SetupError as e:
        say(f"bench: {e}")
        return 2
    # Ctrl-C and SIGTERM stop the bench cleanly, even when started with SIGINT
    # ignored (a background job of a non-interactive shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    layout = Layout.choose(opts.shared)
    report = Report(machine_line(root), setup_line(opts, layout))
    workdir = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    agi_port = free_port()
    cfg = bench_config()
    layout.apply(cfg)
    hotline = BenchHotline(workdir, cfg,
                           BenchNumbers("127.0.0.1", agi_port, opts.hold_s,
                                        ref_port=free_port() if opts.reference else None),
                           controller=opts.controller, transmit_silence=opts.silence)
    try:
        run_with_teardown(hotline, agi_port, opts, workdir, report, started)
    except (ConfigError, SetupError) as e:
        say(f"bench: cannot start the hotline (try `make setup`): {e}")
        return 2
    except KeyboardInterrupt:
        say("bench: interrupted; Asterisk, Redis and the controller were stopped")
        return 130
    for note in report.notes:
        say(f"bench: note: {note}")
    print("\n".join(report.lines(time.monotonic() - started)), flush=True)
    return 0
