"""hotline.amiproto: the pure AMI codec, tested with literal byte transcripts."""

from __future__ import annotations

import pytest

from hotline.amiproto import (
    MAX_LINE_BYTES,
    AmiMessage,
    AmiProtocolError,
    MessageReader,
    ReplyAssembler,
    encode_action,
    encode_message,
    format_variable,
    is_error,
)

BANNER = b"Asterisk Call Manager/9.0.0\r\n"

LOGIN_OK = (
    b"Response: Success\r\n"
    b"ActionID: hl-1\r\n"
    b"Message: Authentication accepted\r\n"
    b"\r\n"
    b"Event: FullyBooted\r\n"
    b"Privilege: system,all\r\n"
    b"Uptime: 1234\r\n"
    b"LastReload: 1200\r\n"
    b"Status: Fully Booted\r\n"
    b"\r\n"
)

# CoreShowChannels as written by manager.c action_coreshowchannels().
CORE_SHOW_CHANNELS = (
    b"Response: Success\r\n"
    b"ActionID: hl-7\r\n"
    b"EventList: start\r\n"
    b"Message: Channels will follow\r\n"
    b"\r\n"
    b"Event: CoreShowChannel\r\n"
    b"ActionID: hl-7\r\n"
    b"Channel: PJSIP/trunk-00000001\r\n"
    b"ChannelState: 6\r\n"
    b"ChannelStateDesc: Up\r\n"
    b"CallerIDNum: 13800138000\r\n"
    b"CallerIDName: \xe5\xbc\xa0\xe4\xb8\x89\r\n"
    b"Context: hotline-queue\r\n"
    b"Exten: 12345\r\n"
    b"Priority: 3\r\n"
    b"Uniqueid: 1700000000.17\r\n"
    b"Linkedid: 1700000000.17\r\n"
    b"Application: Queue\r\n"
    b"ApplicationData: general\r\n"
    b"Duration: 00:01:02\r\n"
    b"BridgeId: \r\n"
    b"\r\n"
    b"Event: CoreShowChannelsComplete\r\n"
    b"ActionID: hl-7\r\n"
    b"EventList: Complete\r\n"
    b"ListItems: 1\r\n"
    b"\r\n"
)

# Command in the Asterisk >= 14 form (manager.c action_command()).
COMMAND_OUTPUT = (
    b"Response: Success\r\n"
    b"ActionID: hl-9\r\n"
    b"Message: Command output follows\r\n"
    b"Output: Channel              Location             State   Application(Data)\r\n"
    b"Output:   PJSIP/trunk-00000001 12345@hotline-queue Up      Queue(general)\r\n"
    b"Output: 1 active channel\r\n"
    b"\r\n"
)

# The pre-14 form: raw lines (with colons and a blank line) up to --END COMMAND--.
LEGACY_FOLLOWS = (
    b"Response: Follows\r\n"
    b"Privilege: Command\r\n"
    b"ActionID: hl-10\r\n"
    b"Name/username: 100\n"
    b"\n"
    b"1 sip peers\n"
    b"--END COMMAND--\r\n"
    b"\r\n"
)


def read_all(data: bytes, *, banner: bool = True) -> list[AmiMessage]:
    reader = MessageReader(expect_banner=banner)
    return reader.feed(data)


# ---------------------------------------------------------------- encoding


def test_encode_action_orders_fields_and_repeats_sequences() -> None:
    data = encode_action(
        "Originate",
        {"Channel": "PJSIP/100", "Variable": ["A=1", "B=2"], "Async": "true"},
        "hl-3",
    )
    assert data == (
        b"Action: Originate\r\n"
        b"ActionID: hl-3\r\n"
        b"Channel: PJSIP/100\r\n"
        b"Variable: A=1\r\n"
        b"Variable: B=2\r\n"
        b"Async: true\r\n"
        b"\r\n"
    )


def test_encode_action_utf8() -> None:
    data = encode_action("Setvar", {"Variable": "NAME", "Value": "张三"}, "x")
    assert b"Value: \xe5\xbc\xa0\xe4\xb8\x89\r\n" in data


@pytest.mark.parametrize("bad", ["a\r\nAction: Originate", "a\nb", "a\rb", "a\x00b"])
def test_encode_action_refuses_cr_lf_nul(bad: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        encode_action("Command", {"Command": bad}, "hl-1")
    assert str(excinfo.value) == "AMI field 'Command' contains CR, LF or NUL"


def test_encode_action_refuses_cr_lf_in_sequence_item() -> None:
    with pytest.raises(ValueError) as excinfo:
        encode_action("Originate", {"Variable": ["A=1", "B=2\r\nAction: Hangup"]}, "hl-1")
    assert str(excinfo.value) == "AMI field 'Variable' contains CR, LF or NUL"


def test_encode_action_refuses_injection_in_name_and_action_id() -> None:
    with pytest.raises(ValueError, match="AMI field 'Action' contains CR, LF or NUL"):
        encode_action("Ping\r\nAction: Hangup", {}, "hl-1")
    with pytest.raises(ValueError, match="AMI field 'ActionID' contains CR, LF or NUL"):
        encode_action("Ping", {}, "hl-1\nX")


def test_encode_action_refuses_bad_keys_and_reserved_keys() -> None:
    with pytest.raises(ValueError) as excinfo:
        encode_action("Ping", {"Bad: key": "x"}, "hl-1")
    assert str(excinfo.value) == "invalid AMI field name 'Bad: key'"
    with pytest.raises(ValueError) as excinfo:
        encode_action("Ping", {"actionid": "mine"}, "hl-1")
    assert str(excinfo.value) == "AMI field 'actionid' is set by encode_action, not by the caller"


def test_encode_action_refuses_lines_asterisk_would_drop() -> None:
    fits = "x" * (MAX_LINE_BYTES - len("Data: ") - 2)
    assert encode_action("Originate", {"Data": fits}, "hl-1")
    with pytest.raises(ValueError) as excinfo:
        encode_action("Originate", {"Data": fits + "x"}, "hl-1")
    assert str(excinfo.value) == (
        "AMI field 'Data' is 1025 bytes with CRLF; Asterisk reads at most 1024 per line"
    )


def test_encode_action_type_errors() -> None:
    with pytest.raises(TypeError):
        encode_action("Ping", {"Timeout": 5}, "hl-1")  # type: ignore[dict-item]


def test_encode_message_round_trip() -> None:
    data = encode_message([("Event", "Newchannel"), ("Uniqueid", "1.2")])
    assert data == b"Event: Newchannel\r\nUniqueid: 1.2\r\n\r\n"
    (message,) = read_all(data, banner=False)
    assert message.kind == "event" and message.get("uniqueid") == "1.2"


# -------------------------------------------------------------- variables


def test_format_variable_plain() -> None:
    assert format_variable("HOTLINE_ORIGINATE_ID", "cb-42") == "HOTLINE_ORIGINATE_ID=cb-42"
    assert format_variable("__INHERITED", "x") == "__INHERITED=x"


def test_format_variable_escapes_argument_specials() -> None:
    # Without escaping, "," would add a variable and the quotes would vanish.
    assert (
        format_variable("CALLER_NAME", 'Li, "Wei" (x) [y] \\z')
        == 'CALLER_NAME=Li\\, \\"Wei\\" \\(x\\) \\[y\\] \\\\z'
    )


@pytest.mark.parametrize("name", ["SHELL(rm -rf /)", "A=B", "1ABC", "", "A,B", "A B"])
def test_format_variable_refuses_functions_and_odd_names(name: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        format_variable(name, "x")
    assert str(excinfo.value) == f"invalid channel variable name {name!r}"


# ---------------------------------------------------------------- reading


def test_reader_banner_then_messages() -> None:
    reader = MessageReader()
    messages = reader.feed(BANNER + LOGIN_OK)
    assert reader.banner == "Asterisk Call Manager/9.0.0"
    assert reader.version == "9.0.0"
    assert [m.kind for m in messages] == ["response", "event"]
    assert messages[0].name == "Success"
    assert messages[0].action_id == "hl-1"
    assert messages[1].name == "FullyBooted"
    assert messages[1].get("Status") == "Fully Booted"


def test_reader_refuses_a_peer_that_is_not_ami() -> None:
    with pytest.raises(AmiProtocolError, match="expected AMI banner"):
        MessageReader().feed(b"SSH-2.0-OpenSSH_9.6\r\n")


def test_reader_byte_by_byte_keeps_split_utf8() -> None:
    reader = MessageReader()
    messages: list[AmiMessage] = []
    for byte in BANNER + CORE_SHOW_CHANNELS:
        messages.extend(reader.feed(bytes([byte])))
    assert len(messages) == 3
    assert messages[1].get("CallerIDName") == "张三"


def test_reader_replaces_invalid_utf8() -> None:
    (message,) = read_all(b"Event: Newchannel\r\nCallerIDName: \xff\r\n\r\n", banner=False)
    assert message.get("CallerIDName") == "\ufffd"


def test_reader_accepts_bare_lf_and_skips_stray_blank_lines() -> None:
    data = b"\r\n\r\nEvent: Hangup\nUniqueid: 1.5\nCause: 16\n\n"
    (message,) = read_all(data, banner=False)
    assert message.headers == (("Event", "Hangup"), ("Uniqueid", "1.5"), ("Cause", "16"))


def test_reader_keeps_colons_in_values() -> None:
    (message,) = read_all(b"Event: VarSet\r\nValue: sip:100@10.0.0.1:5060\r\n\r\n", banner=False)
    assert message.get("Value") == "sip:100@10.0.0.1:5060"


def test_reader_command_output_lines_keep_alignment() -> None:
    (message,) = read_all(COMMAND_OUTPUT, banner=False)
    assert message.name == "Success"
    assert message.output == [
        "Channel              Location             State   Application(Data)",
        "  PJSIP/trunk-00000001 12345@hotline-queue Up      Queue(general)",
        "1 active channel",
    ]


def test_reader_legacy_follows_body() -> None:
    (message,) = read_all(LEGACY_FOLLOWS + b"Event: Ping\r\n\r\n", banner=False)[:1]
    assert message.name == "Follows"
    assert message.action_id == "hl-10"
    assert message.get("Privilege") == "Command"
    assert message.output == ["Name/username: 100", "", "1 sip peers"]
    # The reader is back to normal framing afterwards.
    messages = read_all(LEGACY_FOLLOWS + b"Event: Ping\r\n\r\n", banner=False)
    assert [m.name for m in messages] == ["Follows", "Ping"]


def test_message_multidict_access() -> None:
    message = AmiMessage(
        [
            ("Event", "Newchannel"),
            ("ChanVariable", "A=1"),
            ("chanvariable", "B=2"),
        ]
    )
    assert message.getall("CHANVARIABLE") == ["A=1", "B=2"]
    assert message.get("missing") is None
    assert message.get("missing", "d") == "d"
    assert "chanVariable" in message and "nope" not in message
    assert message.kind == "event" and message.name == "Newchannel"
    assert AmiMessage([("Foo", "bar")]).kind == "unknown"
    assert is_error(AmiMessage([("Response", "Error"), ("Message", "No such channel")]))
    assert not is_error(AmiMessage([("Response", "Success")]))


# ------------------------------------------------------------ event lists


def test_reply_assembler_collects_an_event_list() -> None:
    messages = read_all(CORE_SHOW_CHANNELS, banner=False)
    assembler = ReplyAssembler("hl-7", as_list=True)
    done = [assembler.add(m) for m in messages]
    assert done == [False, False, True]
    assert [m.get("Uniqueid") for m in assembler.items] == ["1700000000.17"]
    assert assembler.complete_event is not None
    assert assembler.complete_event.get("ListItems") == "1"


def test_reply_assembler_error_ends_a_list_at_once() -> None:
    (error,) = read_all(
        b"Response: Error\r\nActionID: hl-8\r\nMessage: Permission denied\r\n\r\n", banner=False
    )
    assembler = ReplyAssembler("hl-8", as_list=True)
    assert assembler.add(error) is True
    assert assembler.items == []


def test_reply_assembler_list_action_without_a_list() -> None:
    (ok,) = read_all(b"Response: Success\r\nActionID: hl-2\r\nMessage: Done\r\n\r\n", banner=False)
    assert ReplyAssembler("hl-2", as_list=True).add(ok) is True


def test_reply_assembler_plain_action() -> None:
    (ok,) = read_all(b"Response: Success\r\nActionID: hl-4\r\nPing: Pong\r\n\r\n", banner=False)
    assembler = ReplyAssembler("hl-4")
    assert assembler.add(ok) is True
    with pytest.raises(ValueError, match="already complete"):
        assembler.add(ok)


def test_reply_assembler_refuses_foreign_action_id() -> None:
    (ok,) = read_all(b"Response: Success\r\nActionID: other\r\n\r\n", banner=False)
    with pytest.raises(ValueError, match="given to 'hl-5'"):
        ReplyAssembler("hl-5").add(ok)
