"""The AGI bench's pieces without Asterisk: the minimal reference server speaks the same
five commands as our server's welcome step, the bench numbers, and the report lines."""

from __future__ import annotations

import asyncio
import pytest

from bench.agi_bench import IVR, REF, Report, StepResult, pooled
from bench.dialplan import AGI_NUMBER, REF_NUMBER, BenchNumbers
from bench.stats import percentile
from bench.welcome import BENCH_CENTRE, BENCH_WELCOME, ROUTES, WelcomeStats, minimal_session
from hotline import channel_vars as cv
from ivr.server import FastAgiServer

from .test_fastagi_server import FakeAsterisk

WELCOME = [
    (["GET", "VARIABLE", cv.NUMBER], b"200 result=0\n"),  # unset: the extension counts
    (["SET", "VARIABLE", cv.NUMBER, "12345"], b"200 result=1\n"),
    (["SET", "VARIABLE", cv.CENTRE, BENCH_CENTRE], b"200 result=1\n"),
    (["GET", "VARIABLE", "CALLERID(num)"], b"200 result=1 (13800138000)\n"),
    (["VERBOSE", "welcome 13800138000 to 12345", "3"], b"200 result=1\n"),
]


async def until(stats: WelcomeStats, sessions: int) -> None:
    async with asyncio.timeout(5):
        while len(stats.latencies_s) < sessions:
            await asyncio.sleep(0.01)


async def test_ours_and_the_minimal_server_send_the_same_five_commands() -> None:
    ours_stats, ref_stats = WelcomeStats(), WelcomeStats()
    ours = FastAgiServer(ROUTES, ours_stats, port=0, command_timeout=1.0, step_timeout=1.0,
                         on_session_end=ours_stats.on_session_end)
    await ours.start()
    ref = await asyncio.start_server(
        lambda r, w: minimal_session(r, w, ref_stats), "127.0.0.1", 0)
    try:
        for port, stats in ((ours.port, ours_stats), (ref.sockets[0].getsockname()[1], ref_stats)):
            fake = FakeAsterisk(port, BENCH_WELCOME, WELCOME)
            await fake.run()  # fails on any other command, or on one more
            await until(stats, 1)
            assert fake.received == [w for w, _ in WELCOME]
            assert stats.completed == 1 and len(stats.latencies_s) == 1
            assert 0 < stats.latencies_s[0] < 5
    finally:
        await ours.close(grace=1.0)
        ref.close()
        await ref.wait_closed()


async def test_the_minimal_server_counts_a_hangup_as_not_completed() -> None:
    stats = WelcomeStats()
    ref = await asyncio.start_server(lambda r, w: minimal_session(r, w, stats), "127.0.0.1", 0)
    try:
        port = ref.sockets[0].getsockname()[1]
        # the caller hangs up after the second command: Asterisk answers HANGUP
        fake = FakeAsterisk(port, BENCH_WELCOME, [*WELCOME[:1], (WELCOME[1][0], b"HANGUP\n")])
        await fake.run()
        await until(stats, 1)
        assert stats.completed == 0 and len(stats.latencies_s) == 1
        # a connection closed before its environment is not timed (nor is it by our server)
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.close()
        await w.wait_closed()
        await FakeAsterisk(port, BENCH_WELCOME, WELCOME).run()
        async with asyncio.timeout(5):
            while stats.completed < 1 or len(stats.latencies_s) < 2:
                await asyncio.sleep(0.01)
        assert stats.completed == 1 and len(stats.latencies_s) == 2
    finally:
        ref.close()
        await ref.wait_closed()


def test_the_reference_number_is_added_only_when_asked() -> None:
    plain = BenchNumbers("127.0.0.1", 4573, 1).extensions()
    assert f"exten => {AGI_NUMBER},1" in plain and REF_NUMBER not in plain
    both = BenchNumbers("127.0.0.1", 4573, 1, ref_port=4574).extensions()
    assert f"exten => {REF_NUMBER},1,Answer()\n same => n,AGI(agi://127.0.0.1:4574/" in both
    assert f"AGI(agi://127.0.0.1:4573/{BENCH_WELCOME})" in both


def step(variant: object, latencies_ms: list[float], reasons: tuple[str, ...] = (),
         failed: int = 0) -> StepResult:
    return StepResult(variant, 200, None, len(latencies_ms),  # type: ignore[arg-type]
                      [x / 1000 for x in latencies_ms], 0, {"asterisk": 80.0, "others": 2.0},
                      failed, reasons, calls=len(latencies_ms))


def test_runs_are_pooled_and_compared_with_the_reference() -> None:
    a = step(IVR, [1.0] * 95 + [9.0] * 5)
    b = step(IVR, [1.0] * 90 + [3.0] * 10, ("answered 150/s < 95%",))
    both = pooled([a, b])
    assert both.agi_completed == 200 and len(both.agi_latencies_s) == 200
    assert both.reasons == ("answered 150/s < 95%",) and not both.passed
    assert both.cpu_pct == {"asterisk": 80.0, "others": 2.0}
    failing = pooled([step(IVR, [1.0] * 100, failed=10), step(IVR, [1.0] * 100, failed=0)])
    assert failing.failed_pct == 5.0  # 10 of the 200 calls of both runs

    slow = step(IVR, [1.0] * 90 + [9.0] * 10)  # a tenth of the sessions at 9 ms
    assert percentile([1.0] * 180 + [9.0] * 20, 95) == 9.0
    report = Report("machine", "setup", bare_cps=250, ivr_cps=240, agi_rate=192,
                    agi_step=pooled([slow, slow]), ref_step=pooled([step(REF, [2.0] * 100)]))
    lines = report.lines(10.0)
    assert "agi_p95_ms: 9.0" in lines
    assert "agi_p95_reference_ms: 2.0" in lines
    assert "agi_p95_vs_reference: 4.50" in lines
    assert Report("m", "s").reference_lines() == [
        "agi_p95_reference_ms: n/a", "agi_p95_vs_reference: n/a"]


@pytest.mark.parametrize("line, value", [
    (b"200 result=1 (13800138000)\n", "13800138000"),
    (b"200 result=1 (a (b) c)\n", "a (b) c"),
    (b"200 result=0\n", None),
    (b"510 Invalid or unknown command\n", None),
])
def test_values_of_responses(line: bytes, value: str | None) -> None:
    from bench.welcome import _value

    assert _value(line) == value
