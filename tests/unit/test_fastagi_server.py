"""FastAgiServer against a fake Asterisk built from the project's own codec.

The fake connects like res_agi.c ``launch_netscript()`` does, sends an
environment (``format_environment``), reads commands exactly as ``run_agi()``
frames them (``frame_commands``) and splits them as ``parse_args()`` does
(``split_command``), then answers from a script of expected command ->
response bytes.  Any command it does not expect fails the test, and so does
anything sent after the script ran out.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
import types
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

import agi_scripts
from agi_scripts import Abort, RouteTable, load_all
from hotline import channel_vars
from ivr.agi import (
    AgiCommandError,
    ChannelHungUp,
    format_environment,
    frame_commands,
    split_command,
)
from ivr.server import Channel, FastAgiServer

WAIT = 2.0  # the longest any single step of the fake may take before failing


def abort_steps(reason: str) -> list[tuple[list[str], bytes]]:
    """What the one abort path must send, with Asterisk's answers."""
    return [
        (["SET", "VARIABLE", channel_vars.ABORT_REASON, reason], b"200 result=1\n"),
        (["EXEC", "Goto", f"{channel_vars.CTX_FAILURE},s,1"], b"200 result=0\n"),
    ]


class FakeAsterisk:
    """One AGI() call: environment, then command -> response steps.

    A step's response is bytes to send (``b""``: send nothing) or ``None`` to
    close the socket after receiving the command.
    """

    def __init__(
        self,
        port: int,
        script: str,
        steps: Sequence[tuple[list[str], bytes | None]],
        uniqueid: str = "1700000000.1",
        environment: bytes | None = None,
        calleridname: str = "张三",
    ) -> None:
        self.port = port
        self.steps = steps
        self.uniqueid = uniqueid
        self.environment = environment or format_environment(
            {
                "agi_network": "yes",
                "agi_network_script": script,
                "agi_request": f"agi://127.0.0.1:{port}/{script}",
                "agi_channel": f"PJSIP/trunk-{uniqueid}",
                "agi_language": "zh",
                "agi_type": "PJSIP",
                "agi_uniqueid": uniqueid,
                "agi_version": "22.1.0",
                "agi_callerid": "13800138000",
                "agi_calleridname": calleridname,
                "agi_callingpres": "0",
                "agi_dnid": "12345",
                "agi_rdnis": "unknown",
                "agi_context": "hotline-in",
                "agi_extension": "12345",
                "agi_priority": "2",
                "agi_enhanced": "0.0",
                "agi_accountcode": "",
                "agi_threadid": "140211223344",
            }
        )
        self.received: list[list[str]] = []
        self.got_command = asyncio.Event()

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        buffer = b""
        try:
            writer.write(self.environment)
            for expected, response in self.steps:
                line, buffer = await self._next_command(reader, buffer, expected)
                words = split_command(line)
                self.received.append(words)
                self.got_command.set()
                if words != expected:
                    raise AssertionError(f"unexpected command {words!r}, expected {expected!r}")
                if response is None:
                    return
                writer.write(response)
            await self._expect_close(reader, buffer)
        finally:
            writer.close()
            await writer.wait_closed()

    async def _next_command(
        self, reader: asyncio.StreamReader, buffer: bytes, expected: list[str]
    ) -> tuple[bytes, bytes]:
        while True:
            commands, rest = frame_commands(buffer)
            if commands:
                return commands[0], buffer[len(commands[0]) + 1 :]
            try:
                async with asyncio.timeout(WAIT):
                    data = await reader.read(65536)
            except TimeoutError:
                raise AssertionError(f"no command from the server, expected {expected!r}") from None
            if not data:
                raise AssertionError(f"server closed the connection, expected {expected!r}")
            buffer += data

    async def _expect_close(self, reader: asyncio.StreamReader, buffer: bytes) -> None:
        while True:
            commands, rest = frame_commands(buffer)
            if commands:
                words = split_command(commands[0])
                raise AssertionError(f"unexpected command {words!r} after the script")
            try:
                async with asyncio.timeout(WAIT):
                    data = await reader.read(65536)
            except TimeoutError:
                raise AssertionError("server did not close the connection") from None
            except ConnectionResetError:
                data = b""
            if not data:
                if rest:
                    raise AssertionError(f"unterminated bytes from the server: {rest!r}")
                return
            buffer += data


class Recorder:
    """Context object handed to handlers; remembers what they saw."""

    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.stats: list[tuple[str, str, float]] = []
        self.release = asyncio.Event()
        self._ended = asyncio.Event()

    def on_session_end(self, script: str, uniqueid: str, seconds: float) -> None:
        self.stats.append((script, uniqueid, seconds))
        self._ended.set()

    async def sessions_ended(self, count: int) -> None:
        """Wait until ``count`` sessions have reported their end."""
        async with asyncio.timeout(WAIT):
            while len(self.stats) < count:
                self._ended.clear()
                await self._ended.wait()


ROUTES = RouteTable()


@ROUTES.register("full")
async def full(channel: Channel, context: Recorder) -> None:
    """Every facade method once."""
    await channel.answer()
    context.seen.append(channel.env.calleridname)
    context.seen.append(await channel.get_variable(channel_vars.MENU))
    context.seen.append(await channel.get_variable("UNSET"))
    context.seen.append(await channel.get_full_variable("${CALLERID(num)}"))
    context.seen.append(await channel.stream_file("welcome", "123#"))
    context.seen.append(channel.last_endpos)
    context.seen.append(await channel.stream_file("menu", "#"))
    context.seen.append(await channel.get_data("enter-id", 3000, 4))
    context.seen.append(await channel.get_data("enter-id", 3000, 4))
    context.seen.append(await channel.wait_for_digit(5000))
    context.seen.append(await channel.wait_for_digit(5000))
    await channel.set_variable("__HOTLINE_CALLERNAME", channel.env.calleridname + '"\n\\')
    await channel.verbose("caller\r\nname", 3)
    context.seen.append(await channel.exec("Playback", "beep", "noanswer"))
    await channel.hangup()
    channel.log.info("done")


@ROUTES.register("five")
async def five(channel: Channel, context: Recorder) -> None:
    """The benchmark shape: five commands."""
    await channel.answer()
    menu = await channel.get_variable(channel_vars.MENU)
    await channel.stream_file(f"menu/{menu}", "12")
    await channel.set_variable(channel_vars.ROUTE, "queue")
    await channel.set_variable(channel_vars.TARGET, channel.uniqueid)


@ROUTES.register("hangs-up")
async def hangs_up(channel: Channel, context: Recorder) -> None:
    await channel.answer()
    try:
        await channel.stream_file("welcome")
    except ChannelHungUp as exc:
        context.seen.append(str(exc))
        raise
    context.seen.append("not reached")


@ROUTES.register("swallows-hangup")
async def swallows_hangup(channel: Channel, context: Recorder) -> None:
    try:
        await channel.answer()
    except ChannelHungUp:
        context.seen.append(channel.hung_up)
    try:
        await channel.answer()  # no second command goes out
    except ChannelHungUp as exc:
        context.seen.append(str(exc))
    raise Abort("too late")  # nothing to send on a dead channel


@ROUTES.register("slow")
async def slow(channel: Channel, context: Recorder) -> None:
    await channel.answer()
    try:
        await asyncio.sleep(30)  # stuck on a database
    except asyncio.CancelledError:
        context.seen.append("cancelled")
        raise


@ROUTES.register("stubborn")
async def stubborn(channel: Channel, context: Recorder) -> None:
    await channel.answer()
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        context.seen.append("swallowed")
    await channel.answer()  # must not go out: the step deadline has passed


@ROUTES.register("slow-start")
async def slow_start(channel: Channel, context: Recorder) -> None:
    await asyncio.sleep(30)


@ROUTES.register("aborts")
async def aborts(channel: Channel, context: Recorder) -> None:
    await channel.answer()
    raise Abort('no "menu"\nHANGUP')


@ROUTES.register("crashes")
async def crashes(channel: Channel, context: Recorder) -> None:
    await channel.answer()
    raise KeyError("boom")


@ROUTES.register("refused")
async def refused(channel: Channel, context: Recorder) -> None:
    await channel.exec("NoSuchApp")


@ROUTES.register("missing-prompt")
async def missing_prompt(channel: Channel, context: Recorder) -> None:
    try:
        await channel.stream_file("no-such-file")
    except AgiCommandError as exc:
        context.seen.append((str(exc), channel.last_endpos))
    await channel.set_variable(channel_vars.ROUTE, "hangup")


@ROUTES.register("waits")
async def waits(channel: Channel, context: Recorder) -> None:
    await channel.answer()
    await context.release.wait()


@ROUTES.register("dial")
async def dial(channel: Channel, context: Recorder) -> None:
    context.seen.append(await channel.exec("Dial", "PJSIP/1001", "30", max_wait=math.inf))


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def server(recorder: Recorder) -> AsyncIterator[FastAgiServer]:
    agi = FastAgiServer(
        ROUTES,
        recorder,
        port=0,
        command_timeout=1.0,
        step_timeout=1.0,
        on_session_end=recorder.on_session_end,
    )
    await agi.start()
    yield agi
    await agi.close(grace=1.0)
    assert agi.active_sessions == 0


async def call(server: FastAgiServer, fake: FakeAsterisk) -> None:
    """Run the fake call and wait until the server has finished the session."""
    recorder = server.context
    assert isinstance(recorder, Recorder)
    ended = len(recorder.stats)
    await fake.run()
    await recorder.sessions_ended(ended + 1)


async def test_full_script(server: FastAgiServer, recorder: Recorder) -> None:
    fake = FakeAsterisk(
        server.port,
        "full?menu=main",
        [
            (["ANSWER"], b"200 result=0\n"),
            (["GET", "VARIABLE", "HOTLINE_MENU"], b"200 result=1 (main)\n"),
            (["GET", "VARIABLE", "UNSET"], b"200 result=0\n"),
            (["GET", "FULL", "VARIABLE", "${CALLERID(num)}"], b"200 result=1 (13800138000)\n"),
            (["STREAM", "FILE", "welcome", "123#"], b"200 result=50 endpos=12345\n"),
            (["STREAM", "FILE", "menu", "#"], b"200 result=0 endpos=64000\n"),
            (["GET", "DATA", "enter-id", "3000", "4"], b"200 result=1234\n"),
            (["GET", "DATA", "enter-id", "3000", "4"], b"200 result= (timeout)\n"),
            (["WAIT", "FOR", "DIGIT", "5000"], b"200 result=35\n"),
            (["WAIT", "FOR", "DIGIT", "5000"], b"200 result=0\n"),
            (
                ["SET", "VARIABLE", "__HOTLINE_CALLERNAME", '张三" \\'],
                b"200 result=1\n",
            ),
            (["VERBOSE", "caller  name", "3"], b"200 result=1\n"),
            (["EXEC", "Playback", "beep,noanswer"], b"200 result=0\n"),
            (["HANGUP"], b"200 result=1\n"),
        ],
    )
    await call(server, fake)
    assert recorder.seen == [
        "张三",
        "main",
        None,
        "13800138000",
        "2",
        12345,
        None,
        "1234",
        "",
        "#",
        None,
        0,
    ]
    assert len(recorder.stats) == 1
    script, uniqueid, seconds = recorder.stats[0]
    assert (script, uniqueid) == ("full", "1700000000.1")
    assert 0 < seconds < WAIT


async def test_every_log_line_names_the_call(
    server: FastAgiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ivr.server")
    fake = FakeAsterisk(
        server.port,
        "aborts",
        [(["ANSWER"], b"200 result=0\n"), *abort_steps('no "menu" HANGUP')],
        uniqueid="1700000000.42",
    )
    await call(server, fake)
    lines = [r.getMessage() for r in caplog.records if r.name == "ivr.server"]
    call_lines = [line for line in lines if "listening" not in line]
    assert call_lines
    assert all(line.startswith("[1700000000.42] ") for line in call_lines), call_lines
    assert all(
        getattr(r, "uniqueid", None) == "1700000000.42"
        for r in caplog.records
        if r.name == "ivr.server" and "listening" not in r.getMessage()
    )


async def test_hangup_line_mid_stream_ends_quietly(
    server: FastAgiServer, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ivr.server")
    fake = FakeAsterisk(
        server.port,
        "hangs-up",
        [
            (["ANSWER"], b"200 result=0\n"),
            # run_agi() saw the hangup: HANGUP comes before (instead of) the result.
            (["STREAM", "FILE", "welcome", ""], b"HANGUP\n"),
        ],
    )
    await call(server, fake)
    assert recorder.seen == ["HANGUP from Asterisk"]
    assert [r.levelno for r in caplog.records if r.exc_info] == []
    assert any("channel hung up: HANGUP from Asterisk" in r.getMessage() for r in caplog.records)
    assert [s[:2] for s in recorder.stats] == [("hangs-up", "1700000000.1")]


async def test_hangup_after_a_response_stops_the_next_command(
    server: FastAgiServer, recorder: Recorder
) -> None:
    fake = FakeAsterisk(server.port, "hangs-up", [(["ANSWER"], b"200 result=0\nHANGUP\n")])
    await call(server, fake)  # STREAM FILE is never sent
    assert recorder.seen == ["HANGUP from Asterisk"]


async def test_511_on_dead_channel_ends_quietly(
    server: FastAgiServer, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ivr.server")
    fake = FakeAsterisk(
        server.port,
        "hangs-up",
        [
            (["ANSWER"], b"200 result=0\n"),
            (
                ["STREAM", "FILE", "welcome", ""],
                b"511 Command Not Permitted on a dead channel or intercept routine\n",
            ),
        ],
    )
    await call(server, fake)
    assert recorder.seen == ["511 Command Not Permitted on a dead channel or intercept routine"]
    assert not any(r.exc_info for r in caplog.records)


async def test_socket_closed_mid_command(server: FastAgiServer, recorder: Recorder) -> None:
    fake = FakeAsterisk(
        server.port,
        "hangs-up",
        [(["ANSWER"], b"200 result=0\n"), (["STREAM", "FILE", "welcome", ""], None)],
    )
    await call(server, fake)
    assert recorder.seen == ["connection closed by Asterisk"]


async def test_hangup_is_remembered_and_abort_is_skipped(
    server: FastAgiServer, recorder: Recorder
) -> None:
    fake = FakeAsterisk(server.port, "swallows-hangup", [(["ANSWER"], b"HANGUP\n")])
    await call(server, fake)
    assert recorder.seen == [True, "HANGUP from Asterisk"]


async def test_step_timeout_aborts_to_failure_context(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    agi = FastAgiServer(
        ROUTES,
        recorder,
        port=0,
        command_timeout=1.0,
        step_timeout=0.05,
        on_session_end=recorder.on_session_end,
    )
    await agi.start()
    try:
        fake = FakeAsterisk(
            agi.port, "slow", [(["ANSWER"], b"200 result=0\n"), *abort_steps("step timeout")]
        )
        started = time.perf_counter()
        await call(agi, fake)
        assert time.perf_counter() - started < 0.5
        assert recorder.seen == ["cancelled"]
        assert any("between AGI commands" in r.getMessage() for r in caplog.records)
    finally:
        await agi.close()


async def test_step_timeout_holds_when_the_handler_swallows_cancellation(
    recorder: Recorder,
) -> None:
    agi = FastAgiServer(
        ROUTES, recorder, port=0, step_timeout=0.05, on_session_end=recorder.on_session_end
    )
    await agi.start()
    try:
        fake = FakeAsterisk(
            agi.port, "stubborn", [(["ANSWER"], b"200 result=0\n"), *abort_steps("step timeout")]
        )
        await call(agi, fake)
        assert recorder.seen == ["swallowed"]
    finally:
        await agi.close()


async def test_step_timeout_before_first_command(recorder: Recorder) -> None:
    agi = FastAgiServer(
        ROUTES, recorder, port=0, step_timeout=0.05, on_session_end=recorder.on_session_end
    )
    await agi.start()
    try:
        await call(agi, FakeAsterisk(agi.port, "slow-start", abort_steps("step timeout")))
    finally:
        await agi.close()


async def test_command_timeout_aborts(recorder: Recorder) -> None:
    agi = FastAgiServer(
        ROUTES,
        recorder,
        port=0,
        command_timeout=0.05,
        step_timeout=1.0,
        on_session_end=recorder.on_session_end,
    )
    await agi.start()
    try:
        fake = FakeAsterisk(
            agi.port,
            "five",
            [(["ANSWER"], b""), *abort_steps("command timeout")],  # ANSWER never answered
        )
        await call(agi, fake)
    finally:
        await agi.close()


async def test_unlimited_command_wait_survives_both_timeouts(recorder: Recorder) -> None:
    agi = FastAgiServer(
        ROUTES,
        recorder,
        port=0,
        command_timeout=0.05,
        step_timeout=0.05,
        on_session_end=recorder.on_session_end,
    )
    await agi.start()
    try:
        fake = FakeAsterisk(agi.port, "dial", [])
        reader, writer = await asyncio.open_connection("127.0.0.1", agi.port)
        writer.write(fake.environment)
        assert split_command(await reader.readline()) == ["EXEC", "Dial", "PJSIP/1001,30"]
        await asyncio.sleep(0.2)  # bridged for longer than both timeouts
        writer.write(b"200 result=0\n")
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
        writer.close()
        await writer.wait_closed()
        assert recorder.seen == [0]
    finally:
        await agi.close()


async def test_unknown_script_aborts(
    server: FastAgiServer, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    await call(server, FakeAsterisk(server.port, "nope", abort_steps("unknown script")))
    assert any("unknown AGI script 'nope'" in r.getMessage() for r in caplog.records)
    assert [s[:2] for s in recorder.stats] == [("nope", "1700000000.1")]


async def test_handler_abort_reason_is_sanitized(server: FastAgiServer) -> None:
    fake = FakeAsterisk(
        server.port,
        "aborts",
        [(["ANSWER"], b"200 result=0\n"), *abort_steps('no "menu" HANGUP')],
    )
    await call(server, fake)


async def test_unexpected_exception_is_an_internal_error(
    server: FastAgiServer, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeAsterisk(
        server.port,
        "crashes",
        [(["ANSWER"], b"200 result=0\n"), *abort_steps("internal error")],
    )
    await call(server, fake)
    crashes = [r for r in caplog.records if r.exc_info]
    assert len(crashes) == 1
    assert crashes[0].getMessage() == "[1700000000.1] handler crashes failed"


async def test_refused_command_aborts(server: FastAgiServer) -> None:
    fake = FakeAsterisk(
        server.port,
        "refused",
        [(["EXEC", "NoSuchApp"], b"200 result=-2\n"), *abort_steps("command failed")],
    )
    await call(server, fake)


async def test_usage_block_aborts(server: FastAgiServer) -> None:
    usage = (
        b"520-Invalid command syntax.  Proper usage follows:\n"
        b" Usage: ANSWER\n"
        b"520 End of proper usage.\n"
    )
    fake = FakeAsterisk(
        server.port, "crashes", [(["ANSWER"], usage), *abort_steps("command failed")]
    )
    await call(server, fake)


async def test_handler_may_recover_from_a_failed_command(
    server: FastAgiServer, recorder: Recorder
) -> None:
    fake = FakeAsterisk(
        server.port,
        "missing-prompt",
        [
            (["STREAM", "FILE", "no-such-file", ""], b"200 result=-1 endpos=0\n"),
            (["SET", "VARIABLE", "HOTLINE_ROUTE", "hangup"], b"200 result=1\n"),
        ],
    )
    await call(server, fake)
    assert recorder.seen == [("STREAM FILE failed: result=-1", 0)]


async def test_get_data_hangup_result_aborts(server: FastAgiServer) -> None:
    fake = FakeAsterisk(
        server.port,
        "full",
        [
            (["ANSWER"], b"200 result=0\n"),
            (["GET", "VARIABLE", "HOTLINE_MENU"], b"200 result=1 (main)\n"),
            (["GET", "VARIABLE", "UNSET"], b"200 result=0\n"),
            (["GET", "FULL", "VARIABLE", "${CALLERID(num)}"], b"200 result=1 (1)\n"),
            (["STREAM", "FILE", "welcome", "123#"], b"200 result=0 endpos=1\n"),
            (["STREAM", "FILE", "menu", "#"], b"200 result=0 endpos=1\n"),
            (["GET", "DATA", "enter-id", "3000", "4"], b"200 result=-1\n"),
            # run_agi() notices the hangup and says so before reading our next command
            (["SET", "VARIABLE", "HOTLINE_ABORT_REASON", "command failed"], b"HANGUP\n"),
        ],
    )
    await call(server, fake)


async def test_oversized_environment_is_dropped(
    server: FastAgiServer, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    environment = b"agi_network_script: five\nagi_arg_1: " + b"x" * 70000 + b"\n\n"
    await call(server, FakeAsterisk(server.port, "five", [], environment=environment))
    assert any("AGI environment over 65536 bytes" in r.getMessage() for r in caplog.records)


async def test_protocol_error_aborts(server: FastAgiServer) -> None:
    fake = FakeAsterisk(
        server.port, "crashes", [(["ANSWER"], b"garbage\n"), *abort_steps("protocol error")]
    )
    await call(server, fake)


async def test_bad_environment_aborts(server: FastAgiServer, recorder: Recorder) -> None:
    environment = b"agi_network_script: five\nagi_channel: PJSIP/a-1\n\n"
    fake = FakeAsterisk(
        server.port, "five", abort_steps("bad environment"), environment=environment
    )
    await call(server, fake)
    assert [s[:2] for s in recorder.stats] == [("", "")]


async def test_connection_closed_before_environment(
    server: FastAgiServer, recorder: Recorder
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"agi_network: yes\n")
    writer.close()
    await writer.wait_closed()
    await recorder.sessions_ended(1)
    assert recorder.stats[0][:2] == ("", "")


async def test_hangup_right_after_environment(server: FastAgiServer, recorder: Recorder) -> None:
    fake = FakeAsterisk(server.port, "hangs-up", [(["ANSWER"], b"200 result=0\n")])
    fake.environment += b"HANGUP\n"  # arrives with the environment
    await call(server, fake)
    assert recorder.seen == []  # the queued HANGUP ends the call at ANSWER
    assert len(recorder.stats) == 1


async def test_concurrent_sessions(server: FastAgiServer, recorder: Recorder) -> None:
    fakes = [
        FakeAsterisk(
            server.port,
            "five",
            [
                (["ANSWER"], b"200 result=0\n"),
                (["GET", "VARIABLE", "HOTLINE_MENU"], f"200 result=1 (m{i})\n".encode()),
                (["STREAM", "FILE", f"menu/m{i}", "12"], b"200 result=0 endpos=800\n"),
                (["SET", "VARIABLE", "HOTLINE_ROUTE", "queue"], b"200 result=1\n"),
                (["SET", "VARIABLE", "HOTLINE_TARGET", f"1700000000.{i}"], b"200 result=1\n"),
            ],
            uniqueid=f"1700000000.{i}",
        )
        for i in range(50)
    ]
    await asyncio.gather(*(fake.run() for fake in fakes))
    await recorder.sessions_ended(50)
    assert sorted(uid for _, uid, _ in recorder.stats) == sorted(
        f"1700000000.{i}" for i in range(50)
    )


async def test_close_cancels_sessions_into_the_failure_context(recorder: Recorder) -> None:
    agi = FastAgiServer(
        ROUTES, recorder, port=0, step_timeout=30.0, on_session_end=recorder.on_session_end
    )
    await agi.start()
    fake = FakeAsterisk(
        agi.port, "waits", [(["ANSWER"], b"200 result=0\n"), *abort_steps("server shutdown")]
    )
    task = asyncio.create_task(fake.run())
    async with asyncio.timeout(WAIT):
        await fake.got_command.wait()
    await asyncio.sleep(0.01)
    assert agi.active_sessions == 1
    await agi.close(grace=0.01)
    await task
    assert agi.active_sessions == 0


async def test_close_waits_for_sessions_within_grace(recorder: Recorder) -> None:
    agi = FastAgiServer(
        ROUTES, recorder, port=0, step_timeout=30.0, on_session_end=recorder.on_session_end
    )
    await agi.start()
    fake = FakeAsterisk(agi.port, "waits", [(["ANSWER"], b"200 result=0\n")])
    task = asyncio.create_task(fake.run())
    async with asyncio.timeout(WAIT):
        await fake.got_command.wait()
    asyncio.get_running_loop().call_later(0.02, recorder.release.set)
    await agi.close(grace=WAIT)
    await task
    assert agi.active_sessions == 0


def test_duplicate_route_name_is_refused() -> None:
    routes = RouteTable()

    @routes.register("ivr")
    async def first(channel: Channel, context: object) -> None:
        pass

    with pytest.raises(ValueError) as caught:

        @routes.register("ivr")
        async def second(channel: Channel, context: object) -> None:
            pass

    assert str(caught.value) == "AGI script 'ivr' is already registered"
    assert routes.lookup("ivr") is first
    assert routes.lookup("other") is None
    assert routes.names() == ["ivr"]
    assert "ivr" in routes and len(routes) == 1


@pytest.mark.parametrize("name", ["", "a b", "x?y", "/ivr", "ivr\n"])
def test_invalid_route_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError) as caught:
        RouteTable().register(name)
    assert str(caught.value) == f"invalid AGI script name: {name!r}"


def test_load_all_imports_every_script_module(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "alpha.py").write_text(
        "from agi_scripts import RouteTable\nTABLE = RouteTable()\nLOADED = True\n"
    )
    (tmp_path / "_private.py").write_text("raise ImportError('must not be imported')\n")
    monkeypatch.setattr(agi_scripts, "__path__", [str(tmp_path)])
    try:
        assert load_all() == ["alpha"]
        module = sys.modules["agi_scripts.alpha"]
        assert isinstance(module, types.ModuleType) and module.LOADED
    finally:
        sys.modules.pop("agi_scripts.alpha", None)


async def test_abort_reason_constants_match_the_dialplan() -> None:
    assert channel_vars.ABORT_REASON == "HOTLINE_ABORT_REASON"
    assert channel_vars.CTX_FAILURE == "hotline-failure"
