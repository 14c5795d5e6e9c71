"""The FastAGI server's fast paths give exactly what the careful paths give.

``ivr/agi.py`` parses a well-formed environment in one pass and hands out
pre-parsed ``200 result=N`` responses; ``ivr/server.py`` reads the socket
with an ``asyncio.Protocol`` and runs on uvloop in production.  Each fast
path is checked here against the slow one, with byte fixtures.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
import uvloop

from agi_scripts import RouteTable
from ivr.agi import (
    AgiProtocolError,
    ResponseReader,
    _checked_values,
    _parse_status,
    _well_formed_values,
    format_command,
    format_environment,
    frame_commands,
    parse_environment,
    split_command,
)
from ivr.server import Channel, FastAgiServer, loop_factory

ENVIRONMENT = format_environment(
    {
        "agi_network": "yes",
        "agi_network_script": "five",
        "agi_request": "agi://127.0.0.1:4573/five",
        "agi_channel": "PJSIP/carrier-00000001",
        "agi_language": "zh",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1700000000.5",
        "agi_version": "22.1.0",
        "agi_callerid": "13800138000",
        "agi_calleridname": "张三",
        "agi_callingpres": "0",
        "agi_dnid": "12345",
        "agi_context": "hotline-in",
        "agi_extension": "12345",
        "agi_priority": "2",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140211223344",
    }
)


# --------------------------------------------------------------------------- environment


@pytest.mark.parametrize(
    "block",
    [
        ENVIRONMENT,
        ENVIRONMENT.replace(b"\n", b"\r\n"),
        ENVIRONMENT[:-1],  # no empty line at the end
        ENVIRONMENT + b"\n\n",  # extra empty lines
        b"agi_x:no-space\nagi_y:  two spaces\nagi_z: a:b: c\n\n",
        b"agi_calleridname: bad\xff\xfe\xe5\xbc\n\n",  # invalid UTF-8, cut multibyte
        b"agi_arg_1: a\nagi_arg_2: \n\n",
    ],
)
def test_well_formed_blocks_take_the_fast_path_with_the_same_values(block: bytes) -> None:
    fast = _well_formed_values(block)
    assert fast is not None
    assert fast == _checked_values(block)


@pytest.mark.parametrize(
    "block",
    [
        b"agi_x: a\rb\n\n",  # CR inside a value: kept by the careful path
        b"agi_x: a\r\r\n\n",
        b"agi_x: 1\nagi_x: 2\n\n",  # repeated key
        b"agi_x: 1\n\nagi_y: 2\n",  # text after the empty line
        b"agi_x 1\n\n",  # no colon
        b"Agi_x: 1\n\n",  # bad key
        b"agi_\xe5: 1\n\n",
        b"agi_x: 1",  # no LF at all
    ],
)
def test_unusual_blocks_leave_the_fast_path(block: bytes) -> None:
    assert _well_formed_values(block) is None


def test_unusual_block_still_parses_the_careful_way() -> None:
    block = ENVIRONMENT.replace(b"agi_dnid: 12345\n", b"agi_dnid: 12\r345\n")
    assert parse_environment(block).dnid == "12\r345"


def test_argument_gap_is_found_without_agi_arg_1() -> None:
    with pytest.raises(AgiProtocolError) as caught:
        parse_environment(ENVIRONMENT[:-1] + b"agi_arg_2: x\n\n")
    assert str(caught.value) == "AGI environment has agi_arg_2 but no agi_arg_1"


# --------------------------------------------------------------------------- responses


@pytest.mark.parametrize("line", [b"200 result=0", b"200 result=1", b"200 result=-1",
                                  b"200 result=-2", b"200 result=49", b"200 result=255"])
def test_plain_results_equal_the_parsed_ones(line: bytes) -> None:
    reader = ResponseReader()
    assert reader.feed(line + b"\n") == [_parse_status(line)]
    assert not reader.pending


def test_plain_result_after_a_partial_line_is_parsed_in_order() -> None:
    reader = ResponseReader()
    assert reader.feed(b"200 result=1 (ab") == []
    assert reader.feed(b"c)\n") == [_parse_status(b"200 result=1 (abc)")]
    assert reader.feed(b"200 result=0\n") == [_parse_status(b"200 result=0")]


# --------------------------------------------------------------------------- commands


def test_control_character_is_reported_in_its_own_argument() -> None:
    with pytest.raises(ValueError) as caught:
        format_command("SET VARIABLE", "HOTLINE_X", "a\nb")
    assert str(caught.value) == "AGI command argument 2 contains control character 0x0a"


def test_quoting_is_per_argument() -> None:
    line = format_command("EXEC", 'a"b', "c\\d", "plain")
    assert line == b'EXEC "a\\"b" "c\\\\d" "plain"\n'
    assert split_command(line) == ["EXEC", 'a"b', "c\\d", "plain"]


# --------------------------------------------------------------------------- the server

ROUTES = RouteTable()


@ROUTES.register("five")
async def five(channel: Channel, context: list[str]) -> None:
    await channel.answer()
    context.append(await channel.get_variable("HOTLINE_MENU") or "")
    await channel.set_variable("HOTLINE_ROUTE", "queue")


ANSWERS = {
    "ANSWER": b"200 result=0\n",
    "GET": b"200 result=1 (main)\n",
    "SET": b"200 result=1\n",
}


def asterisk_side(port: int, line_by_line: bool) -> list[list[str]]:
    """res_agi.c's side, blocking: setup_env() then the answers; the commands seen."""
    seen: list[list[str]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        if line_by_line:  # setup_env(): one send() per agi_* line
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for line in ENVIRONMENT.splitlines(keepends=True):
                sock.sendall(line)
        else:
            sock.sendall(ENVIRONMENT)
        buffer = b""
        while True:
            data = sock.recv(4096)
            if not data:
                assert not buffer, buffer
                return seen
            lines, buffer = frame_commands(buffer + data)
            for line in lines:
                words = split_command(line)
                seen.append(words)
                sock.sendall(ANSWERS[words[0]])


async def one_call(line_by_line: bool) -> tuple[list[list[str]], list[str], str]:
    context: list[str] = []
    ended: list[str] = []
    done = asyncio.Event()

    def on_end(script: str, uniqueid: str, seconds: float) -> None:
        ended.append(uniqueid)
        done.set()

    server = FastAgiServer(ROUTES, context, port=0, command_timeout=2.0, step_timeout=2.0,
                           on_session_end=on_end)
    async with server:
        seen = await asyncio.to_thread(asterisk_side, server.port, line_by_line)
        async with asyncio.timeout(2):
            await done.wait()
    return seen, context, ended[0]


EXPECTED = [["ANSWER"], ["GET", "VARIABLE", "HOTLINE_MENU"],
            ["SET", "VARIABLE", "HOTLINE_ROUTE", "queue"]]


@pytest.mark.parametrize("line_by_line", [False, True])
def test_a_call_on_uvloop(line_by_line: bool) -> None:
    assert loop_factory() is uvloop.new_event_loop
    assert threading.current_thread() is threading.main_thread()
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        seen, context, uniqueid = runner.run(one_call(line_by_line))
    assert seen == EXPECTED
    assert context == ["main"]
    assert uniqueid == "1700000000.5"


async def test_environment_sent_line_by_line() -> None:
    seen, context, uniqueid = await one_call(line_by_line=True)
    assert (seen, context, uniqueid) == (EXPECTED, ["main"], "1700000000.5")
