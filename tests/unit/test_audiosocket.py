"""Byte fixtures for the AudioSocket codec, and the asyncio server against a fake Asterisk.

Fixtures are what Asterisk 22 writes (``res/res_audiosocket.c``):
``ast_audiosocket_init()`` sends ``01 00 10`` + the 16 UUID bytes,
``ast_audiosocket_send_frame()`` sends ``10 LL LL`` + slin for a voice frame
and ``03 00 01`` + the ASCII digit for a DTMF frame.  The fake Asterisk below
is built from the codec itself, not from mocks.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from ivr.audiosocket import (
    MAX_PAYLOAD,
    AudioSocketConnection,
    AudioSocketError,
    AudioSocketServer,
    Frame,
    FrameReader,
    Kind,
    audio_frame,
    dtmf_frame,
    encode_frame,
    error_frame,
    hangup_frame,
    uuid_frame,
)

UUID = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")
UUID_BYTES = bytes.fromhex("40325ec25efd4bd3805f53576e581d13")
PCM = bytes(range(256)) + bytes(64)  # 320 bytes: one 20 ms slin frame


# --------------------------------------------------------------------------- encoding


def test_hangup_frame_is_three_zero_bytes() -> None:
    assert hangup_frame() == b"\x00\x00\x00"


def test_uuid_frame_as_ast_audiosocket_init_writes_it() -> None:
    assert uuid_frame(UUID) == b"\x01\x00\x10" + UUID_BYTES


def test_dtmf_frame() -> None:
    assert dtmf_frame("5") == b"\x03\x00\x015"
    assert dtmf_frame("#") == b"\x03\x00\x01#"


def test_audio_frame_length_is_big_endian() -> None:
    assert audio_frame(PCM) == b"\x10\x01\x40" + PCM
    assert encode_frame(Kind.AUDIO, b"\x01\x02" * 0x7FFF)[:3] == b"\x10\xff\xfe"


def test_error_frame_with_and_without_code() -> None:
    assert error_frame() == b"\xff\x00\x00"
    assert error_frame(0x01) == b"\xff\x00\x01\x01"


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        (0x02, b"", "unknown AudioSocket kind 0x02"),
        (0x11, b"\0\0", "unknown AudioSocket kind 0x11"),
        (Kind.AUDIO, b"", "audio frame with an empty payload"),
        (Kind.AUDIO, b"\0\0\0", "audio frame payload of 3 bytes is not 16-bit PCM"),
        (Kind.UUID, b"\0" * 15, "UUID frame payload must be 16 bytes, got 15"),
        (Kind.DTMF, b"12", "DTMF frame payload must be 1 byte, got 2"),
        (Kind.DTMF, b"x", "DTMF frame carries b'x', not one of 0-9 * # A-D"),
        (Kind.HANGUP, b"\0", "hangup frame must have no payload, got 1 bytes"),
        (Kind.AUDIO, b"\0" * (MAX_PAYLOAD + 1),
         "payload of 65536 bytes exceeds the 65535-byte limit"),
    ],
)
def test_encode_refuses_what_asterisk_would_refuse(kind: int, payload: bytes, message: str) -> None:
    with pytest.raises(AudioSocketError) as e:
        encode_frame(kind, payload)
    assert str(e.value) == message


# --------------------------------------------------------------------------- reading


def test_reader_takes_a_stream_split_anywhere() -> None:
    wire = uuid_frame(UUID) + audio_frame(PCM) + dtmf_frame("7") + hangup_frame()
    for cut in range(1, len(wire)):
        r = FrameReader()
        frames = r.feed(wire[:cut]) + r.feed(wire[cut:])
        assert [f.kind for f in frames] == [Kind.UUID, Kind.AUDIO, Kind.DTMF, Kind.HANGUP], cut
        assert r.pending == 0


def test_reader_byte_by_byte() -> None:
    r = FrameReader()
    frames: list[Frame] = []
    for b in uuid_frame(UUID) + dtmf_frame("*"):
        frames += r.feed(bytes([b]))
    assert frames[0].uuid == UUID
    assert frames[1].digit == "*"


def test_reader_keeps_a_partial_frame() -> None:
    r = FrameReader()
    assert r.feed(b"\x10\x01") == []
    assert r.pending == 2
    assert r.feed(b"\x40" + PCM[:100]) == []
    (f,) = r.feed(PCM[100:])
    assert f == Frame(Kind.AUDIO, PCM)


def test_reader_refuses_an_unknown_kind_and_stays_broken() -> None:
    r = FrameReader()
    with pytest.raises(AudioSocketError, match=r"^unknown AudioSocket kind 0x11$"):
        r.feed(b"\x11\x00\x02\x00\x00")  # slin 12 kHz: never sent by AudioSocket() at 8 kHz
    with pytest.raises(AudioSocketError,
                       match=r"^reader unusable after: unknown AudioSocket kind 0x11$"):
        r.feed(hangup_frame())


def test_reader_refuses_a_bad_payload() -> None:
    with pytest.raises(AudioSocketError, match=r"^UUID frame payload must be 16 bytes, got 4$"):
        FrameReader().feed(b"\x01\x00\x04abcd")


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"\x10", "connection closed inside a frame header (1 of 3 bytes)"),
        (b"\x10\x01\x40" + PCM[:10], "connection closed inside a frame (10 of 320 payload bytes)"),
    ],
)
def test_eof_inside_a_frame(tail: bytes, message: str) -> None:
    r = FrameReader()
    r.feed(dtmf_frame("1") + tail)
    with pytest.raises(AudioSocketError) as e:
        r.eof()
    assert str(e.value) == message


def test_eof_between_frames_is_clean() -> None:
    r = FrameReader()
    r.feed(hangup_frame())
    r.eof()


def test_frame_accessors() -> None:
    assert Frame(Kind.ERROR, b"\x02").error_code == 2
    assert Frame(Kind.ERROR).error_code is None
    with pytest.raises(AudioSocketError, match="^AUDIO frame has no UUID$"):
        _ = Frame(Kind.AUDIO, PCM).uuid
    with pytest.raises(AudioSocketError, match="^HANGUP frame has no DTMF digit$"):
        _ = Frame(Kind.HANGUP).digit


# --------------------------------------------------------------------------- the server


class FakeAsterisk:
    """What app_audiosocket does on its side of the socket, from the codec."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = FrameReader()
        self.got: list[Frame] = []

    @classmethod
    async def connect(cls, server: AudioSocketServer, first: bytes) -> FakeAsterisk:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(first)
        return cls(reader, writer)

    async def until_closed(self) -> list[Frame]:
        async with asyncio.timeout(5):
            while data := await self.reader.read(65536):
                self.got += self.parser.feed(data)
        self.parser.eof()
        self.writer.close()
        return self.got


@pytest.fixture
async def server() -> AsyncIterator[AudioSocketServer]:
    s = AudioSocketServer("127.0.0.1", 0, uuid_timeout=0.5)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


async def test_a_registered_session_hears_audio_and_dtmf_and_hangs_up(
    server: AudioSocketServer,
) -> None:
    heard: list[Frame] = []

    async def session(conn: AudioSocketConnection) -> None:
        while len(heard) < 2:
            f = await conn.read()
            assert f is not None
            heard.append(f)
        conn.send_audio(PCM)
        await conn.hangup()

    reg = server.expect(session)
    first = uuid_frame(reg.uuid) + audio_frame(PCM) + dtmf_frame("9")
    ast = await FakeAsterisk.connect(server, first)
    got = await ast.until_closed()
    assert [f.kind for f in heard] == [Kind.AUDIO, Kind.DTMF]
    assert heard[1].digit == "9"
    # What app_audiosocket reads back: our audio, then the graceful hangup.
    assert got == [Frame(Kind.AUDIO, PCM), Frame(Kind.HANGUP)]
    assert reg.connected.done() and reg.done.done()
    assert server.refused == 0


@pytest.mark.parametrize(
    ("first", "why"),
    [
        (uuid_frame(uuid.UUID(int=7)), "unknown UUID"),
        (audio_frame(PCM), "first frame is AUDIO"),
        (b"\x42\x00\x00", "unknown AudioSocket kind"),
        (b"", "no UUID frame"),
    ],
)
async def test_connections_without_a_registered_uuid_are_refused(
    server: AudioSocketServer, first: bytes, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    ast = await FakeAsterisk.connect(server, first)
    # Error frame: app_audiosocket ends with -1 ("other than hangup or audio").
    assert await ast.until_closed() == [Frame(Kind.ERROR)]
    assert server.refused == 1
    assert why in caplog.text


async def test_a_uuid_is_served_once_and_can_be_cancelled(server: AudioSocketServer) -> None:
    async def session(conn: AudioSocketConnection) -> None:
        await conn.hangup()

    reg = server.expect(session)
    with pytest.raises(ValueError, match="already registered"):
        server.expect(session, reg.uuid)
    assert await (await FakeAsterisk.connect(server, uuid_frame(reg.uuid))).until_closed() == [
        Frame(Kind.HANGUP)
    ]
    again = await FakeAsterisk.connect(server, uuid_frame(reg.uuid))
    assert await again.until_closed() == [Frame(Kind.ERROR)]
    with server.expect(session) as other:
        pass  # leaving the block cancels the registration
    late = await FakeAsterisk.connect(server, uuid_frame(other.uuid))
    assert await late.until_closed() == [Frame(Kind.ERROR)]


async def test_a_failing_handler_still_closes_the_socket(
    server: AudioSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    async def session(conn: AudioSocketConnection) -> None:
        raise RuntimeError("boom")

    reg = server.expect(session)
    assert await (await FakeAsterisk.connect(server, uuid_frame(reg.uuid))).until_closed() == []
    assert reg.done.done()
    assert "boom" in caplog.text


async def test_peer_closing_mid_frame_is_an_error(server: AudioSocketServer) -> None:
    errors: list[str] = []

    async def session(conn: AudioSocketConnection) -> None:
        try:
            await conn.read()
        except AudioSocketError as exc:
            errors.append(str(exc))

    reg = server.expect(session)
    ast = await FakeAsterisk.connect(server, uuid_frame(reg.uuid) + b"\x10\x01\x40" + PCM[:4])
    ast.writer.write_eof()
    await ast.until_closed()
    assert errors == ["connection closed inside a frame (4 of 320 payload bytes)"]
