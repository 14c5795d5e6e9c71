"""The AudioSocket protocol: a pure codec, and an asyncio server for Asterisk.

Protocol (https://docs.asterisk.org/Configuration/Channel-Drivers/AudioSocket/):
every message is a 3-byte header -- a 1-byte *kind* and a 2-byte big-endian
payload length -- followed by the payload.  Kinds used here:

======  =======================================================================
0x00    hangup: terminate the connection (socket closure is also sufficient)
0x01    UUID: 16-byte binary UUID of the stream, the first message Asterisk sends
0x03    DTMF: 1 byte, the ASCII digit
0x10    audio: signed linear 16-bit 8 kHz mono PCM, little-endian
0xff    error: optional application-specific code (Asterisk: 0x01 the calling
        party hung up, 0x02 frame forwarding error, 0x04 memory error)
======  =======================================================================

What Asterisk 22 does on the other end (``apps/app_audiosocket.c`` and
``res/res_audiosocket.c``), and what this module therefore takes care of:

* ``AudioSocket(uuid,host:port)`` connects, sends the UUID frame, then forwards
  every voice frame of the channel as slin (the app forces the read and write
  formats to ``ast_format_slin``) and -- since the DTMF patch in 20.x/21.x/22.x
  -- every DTMF frame as kind 0x03 (``ast_audiosocket_send_frame()``; the
  application's documentation: "Only audio frames and DTMF frames will be
  transmitted").
* From the server it accepts audio frames and the hangup frame only; any other
  kind is "Received AudioSocket message other than hangup or audio" and ends
  the application with -1.  A payload length of 0 on an audio frame is an
  error too ("Invalid message length").
* ``ast_audiosocket_receive_frame_with_hangup()`` reads the header, then polls
  only 5 ms for the payload: a header and its payload must leave in ONE write
  (:meth:`AudioSocketConnection.send` writes whole frames).
* A hangup frame or the socket's closure from the server is a *graceful*
  termination: ``audiosocket_run()`` returns 0, the application returns 0 and
  the channel goes on (measured on Asterisk 22.10: ``EXEC AudioSocket`` answers
  ``200 result=0`` and the channel stays up).  The channel hanging up makes it
  return -1.
* ``audiosocket_run()`` gives up after 2000 ms (``MAX_WAIT_TIMEOUT_MSEC``) with
  no activity on either side; a caller who sends no RTP would trip it, so a
  session should keep sending audio (silence) to the channel.

:class:`FrameReader` and :func:`encode_frame` are free of I/O and tested with
byte fixtures; :class:`AudioSocketServer` is the asyncio edge.  Sessions are
registered by UUID *before* the dialplan runs ``AudioSocket()`` (the AGI script
knows the UUID it passes), so a connection with an unknown UUID is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

__all__ = [
    "HEADER_BYTES",
    "MAX_PAYLOAD",
    "SLIN_FRAME_BYTES",
    "AudioSocketConnection",
    "AudioSocketError",
    "AudioSocketServer",
    "Frame",
    "FrameReader",
    "Kind",
    "Registration",
    "audio_frame",
    "dtmf_frame",
    "encode_frame",
    "error_frame",
    "hangup_frame",
    "uuid_frame",
]

log = logging.getLogger(__name__)

HEADER_BYTES: Final = 3
MAX_PAYLOAD: Final = 0xFFFF  # the length field is 16 bits
#: 20 ms of 8 kHz 16-bit mono: what Asterisk sends per voice frame.
SLIN_FRAME_BYTES: Final = 320
DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")


class Kind(IntEnum):
    """Message kinds of the AudioSocket protocol that this module speaks."""

    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    AUDIO = 0x10
    ERROR = 0xFF


class AudioSocketError(ValueError):
    """Bytes that do not follow the AudioSocket protocol."""


def _check_uuid(payload: bytes) -> None:
    if len(payload) != 16:
        raise AudioSocketError(f"UUID frame payload must be 16 bytes, got {len(payload)}")


def _check_dtmf(payload: bytes) -> None:
    if len(payload) != 1:
        raise AudioSocketError(f"DTMF frame payload must be 1 byte, got {len(payload)}")
    digit = chr(payload[0])
    if digit not in DTMF_DIGITS:
        raise AudioSocketError(f"DTMF frame carries {payload!r}, not one of 0-9 * # A-D")


def _check_audio(payload: bytes) -> None:
    if not payload:
        raise AudioSocketError("audio frame with an empty payload")
    if len(payload) % 2:
        raise AudioSocketError(f"audio frame payload of {len(payload)} bytes is not 16-bit PCM")


def _check_hangup(payload: bytes) -> None:
    if payload:
        raise AudioSocketError(f"hangup frame must have no payload, got {len(payload)} bytes")


def _check_error(payload: bytes) -> None:
    return None  # any payload: "the (optional) application-specific error code"


#: kind -> (name, payload check).  The table is the protocol; nothing else is accepted.
KINDS: Final[dict[int, tuple[str, Callable[[bytes], None]]]] = {
    Kind.HANGUP: ("hangup", _check_hangup),
    Kind.UUID: ("uuid", _check_uuid),
    Kind.DTMF: ("dtmf", _check_dtmf),
    Kind.AUDIO: ("audio", _check_audio),
    Kind.ERROR: ("error", _check_error),
}


@dataclass(frozen=True, slots=True)
class Frame:
    """One AudioSocket message."""

    kind: Kind
    payload: bytes = b""

    @property
    def uuid(self) -> uuid.UUID:
        if self.kind is not Kind.UUID:
            raise AudioSocketError(f"{self.kind.name} frame has no UUID")
        return uuid.UUID(bytes=self.payload)

    @property
    def digit(self) -> str:
        if self.kind is not Kind.DTMF:
            raise AudioSocketError(f"{self.kind.name} frame has no DTMF digit")
        return chr(self.payload[0])

    @property
    def error_code(self) -> int | None:
        """The error frame's code (first payload byte), None when it carries none."""
        if self.kind is not Kind.ERROR:
            raise AudioSocketError(f"{self.kind.name} frame has no error code")
        return self.payload[0] if self.payload else None


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """Header + payload, checked against :data:`KINDS`."""
    if kind not in KINDS:
        raise AudioSocketError(f"unknown AudioSocket kind 0x{kind:02x}")
    if len(payload) > MAX_PAYLOAD:
        raise AudioSocketError(
            f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte limit"
        )
    KINDS[kind][1](payload)
    return bytes((kind, len(payload) >> 8, len(payload) & 0xFF)) + payload


def hangup_frame() -> bytes:
    return encode_frame(Kind.HANGUP)


def uuid_frame(value: uuid.UUID) -> bytes:
    return encode_frame(Kind.UUID, value.bytes)


def dtmf_frame(digit: str) -> bytes:
    return encode_frame(Kind.DTMF, digit.encode("ascii", "replace"))


def audio_frame(pcm: bytes) -> bytes:
    return encode_frame(Kind.AUDIO, pcm)


def error_frame(code: int | None = None) -> bytes:
    return encode_frame(Kind.ERROR, b"" if code is None else bytes((code,)))


class FrameReader:
    """Incremental parser: feed bytes as they arrive, get whole frames back.

    A frame of an unknown kind or with a malformed payload raises
    :class:`AudioSocketError`; the reader is then unusable (the stream has
    lost its framing).
    """

    __slots__ = ("_buf", "_broken")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._broken: str | None = None

    @property
    def pending(self) -> int:
        """Bytes received that do not make a whole frame yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        if self._broken is not None:
            raise AudioSocketError(f"reader unusable after: {self._broken}")
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        while len(buf) - pos >= HEADER_BYTES:
            kind = buf[pos]
            length = (buf[pos + 1] << 8) | buf[pos + 2]
            if kind not in KINDS:
                self._broken = f"unknown AudioSocket kind 0x{kind:02x}"
                raise AudioSocketError(self._broken)
            end = pos + HEADER_BYTES + length
            if len(buf) < end:
                break
            payload = bytes(buf[pos + HEADER_BYTES : end])
            try:
                KINDS[kind][1](payload)
            except AudioSocketError as exc:
                self._broken = str(exc)
                raise
            frames.append(Frame(Kind(kind), payload))
            pos = end
        del buf[:pos]
        return frames

    def eof(self) -> None:
        """The peer closed: raise if it did so inside a frame."""
        n = len(self._buf)
        if n == 0:
            return
        if n < HEADER_BYTES:
            raise AudioSocketError(
                f"connection closed inside a frame header ({n} of {HEADER_BYTES} bytes)"
            )
        length = (self._buf[1] << 8) | self._buf[2]
        raise AudioSocketError(
            f"connection closed inside a frame ({n - HEADER_BYTES} of {length} payload bytes)"
        )


# --------------------------------------------------------------------------- asyncio edge


class AudioSocketConnection:
    """One accepted connection, after its UUID frame: read frames, send frames."""

    __slots__ = ("uuid", "log", "_reader", "_writer", "_frames", "_parser", "closed")

    def __init__(
        self,
        stream_id: uuid.UUID,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        parser: FrameReader,
        pending: list[Frame],
        log_: logging.LoggerAdapter[logging.Logger] | logging.Logger,
    ) -> None:
        self.uuid = stream_id
        self.log = log_
        self._reader = reader
        self._writer = writer
        self._parser = parser
        self._frames = list(pending)
        self.closed = False

    async def read(self) -> Frame | None:
        """The next frame from Asterisk, or None once it closed the socket.

        A hangup frame is returned like any other; a malformed stream raises
        :class:`AudioSocketError`.
        """
        while not self._frames:
            try:
                data = await self._reader.read(65536)
            except ConnectionError:
                data = b""
            if not data:
                self._parser.eof()
                return None
            self._frames.extend(self._parser.feed(data))
        return self._frames.pop(0)

    def send(self, frame: bytes) -> None:
        """Queue one encoded frame (header and payload in a single write)."""
        if not self.closed:
            self._writer.write(frame)

    def send_audio(self, pcm: bytes) -> None:
        self.send(audio_frame(pcm))

    @property
    def write_backlog(self) -> int:
        """Bytes written but not yet taken by the kernel (a stuck peer shows here)."""
        return self._writer.transport.get_write_buffer_size()

    async def hangup(self, grace: float = 1.0) -> None:
        """Send the hangup frame and close: ``AudioSocket()`` then returns 0."""
        if self.closed:
            return
        self._writer.write(hangup_frame())
        await self.close(grace)

    async def close(self, grace: float = 1.0) -> None:
        """Flush what is queued (at most ``grace`` seconds) and close the socket."""
        if self.closed:
            return
        self.closed = True
        writer = self._writer
        try:
            async with asyncio.timeout(grace):
                await writer.drain()
                writer.close()
                await writer.wait_closed()
        except (OSError, TimeoutError):
            writer.transport.abort()


#: What a registered session runs once its connection arrives.
SessionHandler = Callable[[AudioSocketConnection], Awaitable[None]]


class Registration:
    """A UUID the server expects, with the handler that will serve it."""

    __slots__ = ("uuid", "handler", "log", "connected", "done", "_server")

    def __init__(
        self,
        server: AudioSocketServer,
        stream_id: uuid.UUID,
        handler: SessionHandler,
        log_: logging.LoggerAdapter[logging.Logger] | logging.Logger,
    ) -> None:
        self._server = server
        self.uuid = stream_id
        self.handler = handler
        self.log = log_
        loop = asyncio.get_running_loop()
        #: Set when Asterisk connected with this UUID.
        self.connected: asyncio.Future[None] = loop.create_future()
        #: Set when the handler returned (its exception, if any, is logged).
        self.done: asyncio.Future[None] = loop.create_future()

    def cancel(self) -> None:
        """Stop expecting this UUID (a later connection with it is refused)."""
        self._server._registrations.pop(self.uuid, None)

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class AudioSocketServer:
    """asyncio TCP server for ``AudioSocket(uuid,host:port)``.

    :meth:`expect` registers a UUID and its handler; Asterisk's connection
    with that UUID runs the handler (once).  A connection whose first frame is
    not a UUID, or whose UUID is unknown or already served, gets an error
    frame and is closed: ``AudioSocket()`` then returns -1 and the dialplan (or
    the AGI script) knows it failed.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, uuid_timeout: float = 2.0
    ) -> None:
        self.host = host
        self._port = port
        self.uuid_timeout = uuid_timeout
        self._server: asyncio.Server | None = None
        self._registrations: dict[uuid.UUID, Registration] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.refused = 0

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def address(self) -> str:
        """``host:port`` as ``AudioSocket()`` takes it."""
        return f"{self.host}:{self.port}"

    @property
    def active(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("AudioSocket server already started")
        self._server = await asyncio.start_server(self._on_connect, self.host, self._port)
        self._port = self.port  # the bound one (with port=0), kept after close()
        log.info("AudioSocket server listening on %s", self.address)

    async def close(self, grace: float = 2.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
            log.info("AudioSocket server closed")

    def expect(
        self,
        handler: SessionHandler,
        stream_id: uuid.UUID | None = None,
        log_: logging.LoggerAdapter[logging.Logger] | logging.Logger | None = None,
    ) -> Registration:
        """Register a session: returns its :class:`Registration` (``.uuid``)."""
        sid = stream_id or uuid.uuid4()
        if sid in self._registrations:
            raise ValueError(f"AudioSocket session {sid} is already registered")
        reg = Registration(self, sid, handler, log_ or log)
        self._registrations[sid] = reg
        return reg

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)

    async def _refuse(self, writer: asyncio.StreamWriter, why: str) -> None:
        self.refused += 1
        peer = writer.get_extra_info("peername")
        log.warning("AudioSocket connection from %s refused: %s", peer, why)
        with contextlib.suppress(OSError):
            writer.write(error_frame())
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = FrameReader()
        frames: list[Frame] = []
        try:
            async with asyncio.timeout(self.uuid_timeout):
                while not frames:
                    data = await reader.read(4096)
                    if not data:
                        parser.eof()
                        await self._refuse(writer, "closed before its UUID frame")
                        return
                    frames = parser.feed(data)
        except TimeoutError:
            await self._refuse(writer, f"no UUID frame within {self.uuid_timeout} s")
            return
        except (AudioSocketError, ConnectionError) as exc:
            await self._refuse(writer, str(exc))
            return
        first = frames.pop(0)
        if first.kind is not Kind.UUID:
            await self._refuse(writer, f"first frame is {first.kind.name}, not UUID")
            return
        reg = self._registrations.pop(first.uuid, None)
        if reg is None:
            await self._refuse(writer, f"unknown UUID {first.uuid}")
            return
        conn = AudioSocketConnection(first.uuid, reader, writer, parser, frames, reg.log)
        if not reg.connected.done():
            reg.connected.set_result(None)
        try:
            await reg.handler(conn)
        except asyncio.CancelledError:
            raise
        except Exception:
            reg.log.exception("AudioSocket session %s failed", reg.uuid)
        finally:
            await conn.close()
            if not reg.done.done():
                reg.done.set_result(None)
