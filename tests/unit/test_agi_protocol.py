"""Byte fixtures for the pure FastAGI codec in ivr/agi.py.

Fixtures are what res_agi.c (Asterisk 22) writes: setup_env() for the
environment, agi_handle_command() and the handle_*() functions for responses.
"""

from __future__ import annotations

import pytest

from ivr.agi import (
    HANGUP,
    MAX_COMMAND_BYTES,
    AgiCommandError,
    AgiEnvironment,
    AgiProtocolError,
    AgiResponse,
    ResponseReader,
    format_command,
    format_environment,
    frame_commands,
    parse_environment,
    parse_response,
    sanitize,
    split_command,
)

# launch_netscript() + setup_env() for AGI(agi://127.0.0.1:4573/ivr?menu=main,main,with space)
ENVIRONMENT = (
    b"agi_network: yes\n"
    b"agi_network_script: ivr?menu=main\n"
    b"agi_request: agi://127.0.0.1:4573/ivr?menu=main\n"
    b"agi_channel: PJSIP/trunk-00000001\n"
    b"agi_language: zh\n"
    b"agi_type: PJSIP\n"
    b"agi_uniqueid: 1700000000.17\n"
    b"agi_version: 22.1.0\n"
    b"agi_callerid: 13800138000\n"
    b"agi_calleridname: \xe5\xbc\xa0\xe4\xb8\x89\n"
    b"agi_callingpres: 0\n"
    b"agi_callingani2: 0\n"
    b"agi_callington: 0\n"
    b"agi_callingtns: 0\n"
    b"agi_dnid: 12345\n"
    b"agi_rdnis: unknown\n"
    b"agi_context: hotline-in\n"
    b"agi_extension: 12345\n"
    b"agi_priority: 3\n"
    b"agi_enhanced: 0.0\n"
    b"agi_accountcode: \n"
    b"agi_threadid: 140211223344\n"
    b"agi_arg_1: main\n"
    b"agi_arg_2: with space\n"
    b"\n"
)

MINIMAL = b"agi_network_script: ivr\nagi_channel: PJSIP/a-1\nagi_uniqueid: 1.1\n"


# --------------------------------------------------------------------------- environment


def test_parse_environment_reads_every_field() -> None:
    env = parse_environment(ENVIRONMENT)
    assert env == AgiEnvironment(
        channel="PJSIP/trunk-00000001",
        uniqueid="1700000000.17",
        network_script="ivr",
        request="agi://127.0.0.1:4573/ivr?menu=main",
        language="zh",
        type="PJSIP",
        version="22.1.0",
        callerid="13800138000",
        calleridname="张三",
        callingpres=0,
        dnid="12345",
        rdnis="unknown",
        context="hotline-in",
        extension="12345",
        priority=3,
        enhanced=False,
        accountcode="",
        threadid="140211223344",
        arguments=("main", "with space"),
    )
    assert env.raw["agi_network"] == "yes"
    assert env.raw["agi_network_script"] == "ivr?menu=main"
    assert env.raw["agi_callington"] == "0"
    with pytest.raises(TypeError):
        env.raw["agi_channel"] = "x"  # type: ignore[index]


def test_parse_environment_minimal_block_defaults() -> None:
    env = parse_environment(MINIMAL)
    assert (env.channel, env.uniqueid, env.network_script) == ("PJSIP/a-1", "1.1", "ivr")
    assert (env.priority, env.enhanced, env.arguments, env.calleridname) == (0, False, (), "")


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("ivr", "ivr"),
        ("/ivr", "ivr"),
        ("ivr?menu=main&x=1", "ivr"),
        ("ivr/sub", "ivr/sub"),
    ],
)
def test_network_script_is_the_path_without_query(script: str, expected: str) -> None:
    block = MINIMAL.replace(b"agi_network_script: ivr", f"agi_network_script: {script}".encode())
    assert parse_environment(block).network_script == expected


def test_parse_environment_replaces_invalid_utf8_and_accepts_crlf() -> None:
    block = MINIMAL + b"agi_calleridname: bad\xff\xfe\r\nagi_enhanced: 1.0\r\n\r\n"
    env = parse_environment(block)
    assert env.calleridname == "bad\ufffd\ufffd"
    assert env.enhanced is True


def test_format_environment_round_trips() -> None:
    values = {
        "agi_network_script": "ivr",
        "agi_channel": "PJSIP/a-1",
        "agi_uniqueid": "1.1",
        "agi_calleridname": "李四",
        "agi_arg_1": "x",
    }
    block = format_environment(values)
    assert block.endswith(b"agi_arg_1: x\n\n")
    env = parse_environment(block)
    assert dict(env.raw) == values
    assert env.arguments == ("x",)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            MINIMAL + b"agi_callerid 123\n",
            "AGI environment line 4 has no colon: b'agi_callerid 123'",
        ),
        (
            MINIMAL + b"Agi_Callerid: 123\n",
            "AGI environment line 4 has an invalid key: b'Agi_Callerid'",
        ),
        (
            MINIMAL + b"200 result=1 (x)\n",
            "AGI environment line 4 has no colon: b'200 result=1 (x)'",
        ),
        (
            MINIMAL + b"HANGUP: now\n",
            "AGI environment line 4 has an invalid key: b'HANGUP'",
        ),
        (MINIMAL + b"agi_uniqueid: 2.2\n", "AGI environment line 4 repeats agi_uniqueid"),
        (
            MINIMAL + b"\nagi_callerid: 1\n",
            "AGI environment line 5 follows the empty line that ends the environment",
        ),
        (
            b"agi_channel: PJSIP/a-1\nagi_uniqueid: 1.1\n",
            "AGI environment has no agi_network_script",
        ),
        (
            b"agi_network_script: ivr\nagi_channel: PJSIP/a-1\n",
            "AGI environment has no agi_uniqueid",
        ),
        (b"agi_network_script: ivr\nagi_uniqueid: 1.1\n", "AGI environment has no agi_channel"),
        (
            b"agi_network_script: ivr\nagi_channel: PJSIP/a-1\nagi_uniqueid: \n",
            "AGI environment has an empty agi_uniqueid",
        ),
        (
            MINIMAL.replace(b"script: ivr", b"script: ?menu=1"),
            "agi_network_script '?menu=1' names no script",
        ),
        (MINIMAL + b"agi_priority: 3x\n", "agi_priority is not an integer: '3x'"),
        (MINIMAL + b"agi_callingpres: \n", "agi_callingpres is not an integer: ''"),
        (MINIMAL + b"agi_enhanced: yes\n", "agi_enhanced is not 0.0 or 1.0: 'yes'"),
        (
            MINIMAL + b"agi_arg_1: a\nagi_arg_3: c\n",
            "AGI environment has agi_arg_3 but no agi_arg_2",
        ),
    ],
)
def test_parse_environment_errors(block: bytes, message: str) -> None:
    with pytest.raises(AgiProtocolError) as caught:
        parse_environment(block)
    assert str(caught.value) == message


def test_parse_environment_refuses_oversized_block() -> None:
    block = MINIMAL + b"agi_arg_1: " + b"x" * 65536 + b"\n\n"
    with pytest.raises(AgiProtocolError) as caught:
        parse_environment(block)
    assert str(caught.value) == f"AGI environment is {len(block)} bytes, over the 65536-byte limit"


# --------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("words", "line"),
    [
        (("ANSWER",), b"ANSWER\n"),
        (("STREAM FILE", "welcome", ""), b'STREAM FILE "welcome" ""\n'),
        (("GET DATA", "menu/main", "5000", "1"), b'GET DATA "menu/main" "5000" "1"\n'),
        (
            ("EXEC", "Goto", "hotline-failure,s,1"),
            b'EXEC "Goto" "hotline-failure,s,1"\n',
        ),
        (
            ("SET VARIABLE", "X", 'say "hi" \\o/'),
            b'SET VARIABLE "X" "say \\"hi\\" \\\\o/"\n',
        ),
        (
            ("SET VARIABLE", "CALLERNAME", "张三"),
            b'SET VARIABLE "CALLERNAME" "\xe5\xbc\xa0\xe4\xb8\x89"\n',
        ),
    ],
)
def test_format_command_fixtures(words: tuple[str, ...], line: bytes) -> None:
    assert format_command(*words) == line
    assert split_command(line) == [*words[0].split(" "), *words[1:]]


BAD_NAME = "AGI command name must be upper-case words separated by single spaces: "


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ((), "AGI command needs a command name"),
        (("stream file", "x"), BAD_NAME + "'stream file'"),
        (("SET  VARIABLE",), BAD_NAME + "'SET  VARIABLE'"),
        (("ANSWER\nHANGUP",), BAD_NAME + "'ANSWER\\nHANGUP'"),
        (
            ("SET VARIABLE", "X", "a\nHANGUP"),
            "AGI command argument 2 contains control character 0x0a",
        ),
        (("SET VARIABLE", "X\r", "v"), "AGI command argument 1 contains control character 0x0d"),
        (("SET VARIABLE", "X", "a\x00b"), "AGI command argument 2 contains control character 0x00"),
        (("VERBOSE", "tab\there"), "AGI command argument 1 contains control character 0x09"),
        (("VERBOSE", "del\x7f"), "AGI command argument 1 contains control character 0x7f"),
        (("VERBOSE", "x", "\ud800"), "AGI command argument 2 is not encodable as UTF-8"),
        (("VERBOSE", *["x"] * 127), "AGI command has 128 words, over the 127 that res_agi keeps"),
        (
            ("SET VARIABLE", "X", '"' * 1024),
            "AGI command is 2068 bytes, over the 2047 bytes that res_agi reads as one line",
        ),
    ],
)
def test_format_command_errors(words: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        format_command(*words)
    assert str(caught.value) == message


def test_format_command_accepts_exactly_the_longest_line() -> None:
    overhead = len(b'VERBOSE ""\n')
    line = format_command("VERBOSE", "x" * (MAX_COMMAND_BYTES - overhead))
    assert len(line) == MAX_COMMAND_BYTES
    assert frame_commands(line) == ([line[:-1]], b"")
    with pytest.raises(ValueError):
        format_command("VERBOSE", "x" * (MAX_COMMAND_BYTES - overhead + 1))


@pytest.mark.parametrize(
    ("line", "words"),
    [
        (b'STREAM FILE "welcome" "#"\n', ["STREAM", "FILE", "welcome", "#"]),
        (b"GET DATA  beep\t3000 4", ["GET", "DATA", "beep", "3000", "4"]),
        (b'SET VARIABLE X ""', ["SET", "VARIABLE", "X", ""]),
        (b'SET VARIABLE X a"b c"d', ["SET", "VARIABLE", "X", "ab cd"]),
        (b'SET VARIABLE X a\\ b\\\\c\\"', ["SET", "VARIABLE", "X", 'a b\\c"']),
        (b'SET VARIABLE X "a\x00b" Y', ["SET", "VARIABLE", "X", "a"]),
        (b'EXEC Dial "PJSIP/1001,30,tT"', ["EXEC", "Dial", "PJSIP/1001,30,tT"]),
        (b" ".join([b"W"] * 130), ["W"] * 127),
    ],
)
def test_split_command_mirrors_parse_args(line: bytes, words: list[str]) -> None:
    assert split_command(line) == words


def test_frame_commands_mirrors_run_agi_fgets() -> None:
    assert frame_commands(b"ANSWER\nHANGUP\nGET VAR") == ([b"ANSWER", b"HANGUP"], b"GET VAR")
    # fgets(buf, 2048) stops after 2047 bytes: the tail becomes a second command.
    long_line = b"V" * 2047 + b"HANGUP\n"
    assert frame_commands(long_line) == ([b"V" * 2047, b"HANGUP"], b"")
    assert frame_commands(b"V" * 2046 + b"\n") == ([b"V" * 2046], b"")


def test_unquoted_newline_would_inject_a_second_command() -> None:
    """Why format_command refuses LF: naive formatting gives Asterisk two commands."""
    naive = b'SET VARIABLE NAME "x"\nEXEC System "halt"\n'
    assert [split_command(line) for line in frame_commands(naive)[0]] == [
        ["SET", "VARIABLE", "NAME", "x"],
        ["EXEC", "System", "halt"],
    ]


HOSTILE = [
    'Robert"; EXEC System "halt',
    "ends with backslash \\",
    '\\"',
    '"',
    '" "',
    "\\\\\\",
    "x\nEXEC System halt",
    'x\r\nEXEC "System" "halt"\r\n',
    "\nHANGUP\n",
    "nul\x00byte",
    "\x1b[31mred\x1b[0m",
    "del\x7f",
    "tab\tseparated",
    "\x85next line\u2028sep",
    '张三 "李四" \\ 王五',
    "emoji 😀 name",
    "lone \ud800 surrogate",
    "A" * 1024,
    '"' * 1024,
    "\\" * 1024,
    "中" * 1024,
    "x\n" * 512,
]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_caller_name_never_injects_a_command(name: str) -> None:
    # Raw: either refused, or Asterisk sees exactly one command with the exact text.
    try:
        line = format_command("SET VARIABLE", "CALLERNAME", name)
    except ValueError:
        pass
    else:
        assert frame_commands(line) == ([line[:-1]], b"")
        assert split_command(line) == ["SET", "VARIABLE", "CALLERNAME", name]

    # Sanitized: always accepted, one command, exact text, no control characters.
    clean = sanitize(name)
    assert len(clean) <= 256
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in clean)
    line = format_command("SET VARIABLE", "CALLERNAME", clean)
    commands, rest = frame_commands(line)
    assert rest == b""
    assert len(commands) == 1
    assert split_command(commands[0]) == ["SET", "VARIABLE", "CALLERNAME", clean]


def test_hostile_names_in_one_stream_stay_one_command_each() -> None:
    stream = b"".join(
        format_command("SET VARIABLE", f"N{i}", sanitize(name)) for i, name in enumerate(HOSTILE)
    )
    commands, rest = frame_commands(stream)
    assert rest == b""
    assert [split_command(c)[:3] for c in commands] == [
        ["SET", "VARIABLE", f"N{i}"] for i in range(len(HOSTILE))
    ]


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("plain", "plain"),
        ("张三", "张三"),
        ("a\r\nb\tc", "a  b c"),
        ("bell\x07\x00\x7f\x9b", "bell"),
        ("line\u2028break\x85", "line break "),
        ("bad \udcff", "bad \ufffd"),
        ("x" * 300, "x" * 256),
    ],
)
def test_sanitize(raw: str, clean: str) -> None:
    assert sanitize(raw) == clean


def test_sanitize_max_len() -> None:
    assert sanitize("abcdef", max_len=3) == "abc"
    with pytest.raises(ValueError) as caught:
        sanitize("x", max_len=-1)
    assert str(caught.value) == "max_len must not be negative: -1"


# --------------------------------------------------------------------------- responses


@pytest.mark.parametrize(
    ("line", "response"),
    [
        (b"200 result=1", AgiResponse(200, "1")),
        (b"200 result=0 (timeout)", AgiResponse(200, "0", "timeout")),
        (b"200 result= (timeout)", AgiResponse(200, "", "timeout")),
        (b"200 result=-1", AgiResponse(200, "-1")),
        (b"200 result=49 endpos=12345", AgiResponse(200, "49", endpos=12345)),
        (b"200 result=-1 endpos=0", AgiResponse(200, "-1", endpos=0)),
        (b"200 result=1 (some data with spaces)", AgiResponse(200, "1", "some data with spaces")),
        (b"200 result=1 (a (nested) value)", AgiResponse(200, "1", "a (nested) value")),
        (b"200 result=1 (v) endpos=7)", AgiResponse(200, "1", "v) endpos=7")),
        (b"200 result=35 (dtmf) endpos=8000", AgiResponse(200, "35", "dtmf", 8000)),
        (b"200 result=1 (\xe5\xbc\xa0\xe4\xb8\x89)", AgiResponse(200, "1", "张三")),
        (b"200 result=12345", AgiResponse(200, "12345")),
        (b"510 Invalid or unknown command", AgiResponse(510, None, "Invalid or unknown command")),
        (
            b"511 Command Not Permitted on a dead channel or intercept routine",
            AgiResponse(511, None, "Command Not Permitted on a dead channel or intercept routine"),
        ),
        (
            b"520 Invalid command syntax.  Proper usage not available.",
            AgiResponse(520, None, "Invalid command syntax.  Proper usage not available."),
        ),
    ],
)
def test_parse_response_fixtures(line: bytes, response: AgiResponse) -> None:
    assert parse_response([line]) == response
    assert ResponseReader().feed(line + b"\n") == [response]


def test_response_helpers() -> None:
    assert parse_response([b"200 result=49 endpos=12345"]).digit == "1"
    assert parse_response([b"200 result=35"]).digit == "#"
    assert parse_response([b"200 result=0"]).digit is None
    assert parse_response([b"200 result=-1"]).digit is None
    assert parse_response([b"200 result=12#"]).digit is None
    assert parse_response([b"200 result=0"]).ok
    assert parse_response([b"200 result="]).ok
    assert not parse_response([b"200 result=-1"]).ok
    assert not parse_response([b"200 result=-2"]).ok
    assert not parse_response([b"510 Invalid or unknown command"]).ok


USAGE_BLOCK = [
    b"520-Invalid command syntax.  Proper usage follows:",
    b" Usage: STREAM FILE <filename> <escape_digits> [sample offset]",
    b"",
    b" Send the given file.",
    b"520 End of proper usage.",
]


def test_parse_response_usage_block() -> None:
    assert parse_response(USAGE_BLOCK) == AgiResponse(
        520,
        None,
        "Invalid command syntax.  Proper usage follows:",
        usage=" Usage: STREAM FILE <filename> <escape_digits> [sample offset]\n\n"
        " Send the given file.",
    )


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "empty AGI response"),
        ([b"HANGUP"], "HANGUP is an event, not a response"),
        ([b"20 result=1"], "malformed AGI response line: b'20 result=1'"),
        ([b"abc def"], "malformed AGI response line: b'abc def'"),
        ([b"200"], "malformed AGI response line: b'200'"),
        ([b"200 ok"], "AGI 200 response has no result=: b'200 ok'"),
        (
            [b"200 result=0 endpos=x"],
            "AGI response has a non-numeric endpos: b'200 result=0 endpos=x'",
        ),
        (
            [b"200 result=1 (open endpos=1"],
            "AGI response has unterminated data: b'200 result=1 (open endpos=1'",
        ),
        ([b"520-Invalid", b"usage", b"510 x"], "AGI 520- block ends with b'510 x'"),
        ([b"520 x", b"y"], "malformed AGI response line: b'520 x'"),
    ],
)
def test_parse_response_errors(lines: list[bytes], message: str) -> None:
    with pytest.raises(AgiProtocolError) as caught:
        parse_response(lines)
    assert str(caught.value) == message


TRANSCRIPT = (
    b"200 result=0\n"
    b"HANGUP\n" + b"\n".join(USAGE_BLOCK) + b"\n"
    b"200 result=1 (first line\nsecond line)\n"
    b"\n"
    b"511 Command Not Permitted on a dead channel or intercept routine\n"
)
TRANSCRIPT_EVENTS = [
    AgiResponse(200, "0"),
    HANGUP,
    parse_response(USAGE_BLOCK),
    AgiResponse(200, "1", "first line\nsecond line"),
    AgiResponse(511, None, "Command Not Permitted on a dead channel or intercept routine"),
]


@pytest.mark.parametrize("chunk", [1, 2, 7, len(TRANSCRIPT)])
def test_response_reader_any_chunking(chunk: int) -> None:
    reader = ResponseReader()
    events = []
    for start in range(0, len(TRANSCRIPT), chunk):
        events.extend(reader.feed(TRANSCRIPT[start : start + chunk]))
    assert events == TRANSCRIPT_EVENTS
    assert not reader.pending


def test_response_reader_reports_partial_input() -> None:
    reader = ResponseReader()
    assert reader.feed(b"200 res") == []
    assert reader.pending
    assert reader.feed(b"ult=1\r\nHANG") == [AgiResponse(200, "1")]
    assert reader.feed(b"UP\n") == [HANGUP]
    assert not reader.pending


def test_response_reader_errors() -> None:
    with pytest.raises(AgiProtocolError) as caught:
        ResponseReader().feed(b"agi_callingpres: 0\n")
    assert str(caught.value) == "malformed AGI response line: b'agi_callingpres: 0'"
    with pytest.raises(AgiProtocolError) as caught:
        ResponseReader().feed(b"2" * 70000)
    assert str(caught.value) == "AGI response exceeds 65536 bytes"
    reader = ResponseReader()
    reader.feed(b"200 result=1 (unterminated\n")
    with pytest.raises(AgiProtocolError) as caught:
        reader.feed(b"x" * 70000 + b"\n")
    assert str(caught.value) == "AGI response exceeds 65536 bytes"


def test_agi_command_error_message() -> None:
    assert str(AgiCommandError("GET DATA", AgiResponse(200, "-1"))) == "GET DATA failed: result=-1"
    assert (
        str(AgiCommandError("FOO", AgiResponse(510, None, "Invalid or unknown command")))
        == "FOO failed: 510 Invalid or unknown command"
    )
