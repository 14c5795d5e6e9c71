"""Ask one menu question: play the prompt, listen for keys or speech, decide.

Speech on (``speech.model`` or ``speech.server`` set), for each question:

1. :func:`ask` opens a recogniser stream (the menu's words as grammar, or free
   text for an open question) and registers a :class:`Question` with the
   controller's :class:`~ivr.audiosocket.AudioSocketServer` under a new UUID;
2. it runs ``EXEC AudioSocket UUID,HOST:PORT`` on the channel.  Asterisk
   (``apps/app_audiosocket.c``) connects, sends the UUID, then the caller's
   audio as 20 ms slin frames and each DTMF digit as a 0x03 frame, and plays
   whatever audio comes back;
3. the question plays the prompt itself in 20 ms frames paced on the
   monotonic clock (and silence after it, which also keeps AudioSocket's
   2-second inactivity timer from firing), watches the caller with an
   :class:`~ivr.speech.EnergyVad`, stops the prompt at once on a key or on
   speech (barge-in), feeds the speech to the recogniser and, after
   ``speech.silence_ms`` of silence, takes the final result;
4. it sends the hangup frame: ``AudioSocket()`` returns 0, the channel stays
   up (measured on Asterisk 22.10, see tests/integration/test_speech_menu.py)
   and ``EXEC`` answers ``200 result=0``; the result is handed over in-process
   (same event loop), keyed by the UUID.

A result under ``speech.min_confidence`` counts as no answer (the menu asks
again; keys always work).  Speech off, or anything failing before the question
could listen (recogniser down, prompt unreadable, AudioSocket refused), falls
back to the DTMF way -- ``STREAM FILE`` with every key as escape digit, then
``WAIT FOR DIGIT`` -- so the caller is never dropped.  Each question leaves a
:class:`Heard` record with its timings for the call path and the benchmark.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import wave
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ivr.audiosocket import AudioSocketConnection, AudioSocketError, AudioSocketServer, Kind
from ivr.menu import NOTHING, Answer
from ivr.speech import (
    FRAME_BYTES,
    FRAME_MS,
    SAMPLE_RATE,
    AnyLog,
    EnergyVad,
    Recognizer,
    RemoteRecognizer,
    SpeechError,
    Stream,
    VoskPool,
)

if TYPE_CHECKING:
    from dialplan.model import Config, Speech
    from hotline.app import App
    from ivr.server import Channel

__all__ = [
    "ALL_KEYS",
    "Heard",
    "Listener",
    "Question",
    "ask",
    "attach",
    "detach",
    "listener_of",
    "make_recognizer",
]

log = logging.getLogger(__name__)

ALL_KEYS: Final = "0123456789*#"
SILENCE: Final = bytes(FRAME_BYTES)
FRAME_S: Final = FRAME_MS / 1000
PREROLL_FRAMES: Final = 15  # 300 ms of audio before the VAD's start goes to the recogniser
MAX_SPEECH_S: Final = 8.0  # a keyword answer
MAX_FREE_SPEECH_S: Final = 15.0  # "briefly, what is your call about?"
RESULT_TIMEOUT_S: Final = 3.0
RESYNC_S: Final = 0.2  # the player more than this late starts its clock again
DRAIN_S: Final = 120.0  # longer than any question: a recogniser replaced by an apply closes then


class SpeechUnavailable(Exception):
    """This question cannot listen; ask it the DTMF way."""


# =========================================================================== the record


@dataclass
class Heard:
    """What happened on one question, for the call path and the benchmark.

    ``t_*`` are ``loop.time()`` stamps (monotonic seconds); :meth:`record`
    turns them into milliseconds from the start of the question.
    """

    prompt: str
    mode: str = "speech"  # speech (AudioSocket) or dtmf (STREAM FILE + WAIT FOR DIGIT)
    via: str = "timeout"  # key, speech, low-confidence, no-match, timeout, closed, failed
    digit: str | None = None
    text: str = ""
    confidence: float | None = None
    grammar: bool = True
    barge_in: bool = False
    fallback: str | None = None
    audiosocket_result: int | None = None  # what EXEC AudioSocket answered (0: we hung up)
    cpu_ms: float | None = None
    audio_ms: int | None = None
    t_start: float = 0.0
    t_prompt_end: float | None = None
    t_speech_start: float | None = None
    t_speech_end: float | None = None  # arrival of the last voiced frame
    t_end_detected: float | None = None  # the VAD's end: silence_ms after it
    t_result: float | None = None
    t_returned: float | None = None  # ask() returns to the driver
    t_decided: float | None = None  # the menu engine decided

    @property
    def answer(self) -> Answer:
        if self.digit:
            return Answer(digit=self.digit)
        if self.via == "speech" and self.text:
            return Answer(text=self.text, confidence=self.confidence)
        return NOTHING

    def decided(self, at: float | None = None) -> None:
        self.t_decided = asyncio.get_running_loop().time() if at is None else at

    def _ms(self, t: float | None) -> int | None:
        return None if t is None else round((t - self.t_start) * 1000)

    @property
    def end_to_decision_ms(self) -> float | None:
        """From the VAD's end of speech to the menu decision."""
        end = self.t_decided or self.t_returned
        if self.t_end_detected is None or end is None:
            return None
        return round((end - self.t_end_detected) * 1000, 1)

    @property
    def last_word_to_decision_ms(self) -> float | None:
        """From the caller's last voiced frame to the decision (includes silence_ms)."""
        end = self.t_decided or self.t_returned
        if self.t_speech_end is None or end is None:
            return None
        return round((end - self.t_speech_end) * 1000, 1)

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt": self.prompt,
            "mode": self.mode,
            "via": self.via,
            "grammar": self.grammar,
            "barge_in": self.barge_in,
        }
        for k in ("digit", "fallback", "audiosocket_result", "confidence", "cpu_ms", "audio_ms"):
            v = getattr(self, k)
            if v is not None:
                out[k] = v
        if self.text:
            out["text"] = self.text
        for k in ("prompt_end", "speech_start", "speech_end", "end_detected", "result",
                  "returned", "decided"):
            ms = self._ms(getattr(self, f"t_{k}"))
            if ms is not None:
                out[f"{k}_ms"] = ms
        if self.end_to_decision_ms is not None:
            out["end_to_decision_ms"] = self.end_to_decision_ms
            out["last_word_to_decision_ms"] = self.last_word_to_decision_ms
        return out


# =========================================================================== one question


class Question:
    """The AudioSocket side of one question (runs on the controller's loop)."""

    def __init__(
        self,
        *,
        prompt: str,
        pcm: bytes,
        stream: Stream | None,
        timeout_s: float,
        silence_ms: int,
        min_confidence: float,
        grammar: bool,
        log_: AnyLog,
    ) -> None:
        self.pcm = pcm
        self.stream = stream
        self.timeout_s = timeout_s
        self.min_confidence = min_confidence
        self.max_speech_s = MAX_SPEECH_S if grammar else MAX_FREE_SPEECH_S
        self.log = log_
        self.heard = Heard(prompt=prompt, grammar=grammar)
        self.vad = EnergyVad(silence_ms=silence_ms)
        self.done = asyncio.Event()
        self._preroll: deque[bytes] = deque(maxlen=PREROLL_FRAMES)
        self._pos = 0
        self._playing = True
        self._finishing = False
        self._stream_used = False

    @property
    def prompt_s(self) -> float:
        return len(self.pcm) / (2 * SAMPLE_RATE)

    @property
    def max_duration(self) -> float:
        """The longest this question can hold the channel."""
        return self.prompt_s + self.timeout_s + self.max_speech_s + RESULT_TIMEOUT_S + 2.0

    async def run(self, conn: AudioSocketConnection) -> None:
        loop = asyncio.get_running_loop()
        self.heard.t_start = loop.time()
        player = asyncio.create_task(self._play(conn), name="question-play")
        reader = asyncio.create_task(self._listen(conn), name="question-listen")
        try:
            await self.done.wait()
        finally:
            for t in (player, reader):
                t.cancel()
            await asyncio.gather(player, reader, return_exceptions=True)
            if self.stream is not None and not self._stream_used:
                self.stream.abort()
        if self.heard.t_prompt_end is None:
            self.heard.t_prompt_end = loop.time()
        # Hangup frame: AudioSocket() returns 0 and the AGI script goes on.
        await conn.hangup()

    # ------------------------------------------------------------ the prompt and the clock
    async def _play(self, conn: AudioSocketConnection) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        n = 0
        pcm = self.pcm
        try:
            while not self.done.is_set():
                if self._playing and self._pos < len(pcm):
                    chunk = pcm[self._pos : self._pos + FRAME_BYTES]
                    self._pos += FRAME_BYTES
                    if len(chunk) < FRAME_BYTES:
                        chunk += SILENCE[len(chunk) :]
                else:
                    if self._playing:
                        self._playing = False
                        self.heard.t_prompt_end = loop.time()
                    chunk = SILENCE
                conn.send_audio(chunk)
                n += 1
                now = loop.time()
                self._deadlines(now)
                delay = t0 + n * FRAME_S - now
                if delay < -RESYNC_S:
                    self.log.debug("prompt player %.0f ms late: clock restarted", -delay * 1000)
                    t0, n, delay = now, 0, 0.0
                await asyncio.sleep(max(0.0, delay))
        except (ConnectionError, AudioSocketError) as exc:
            self._end("closed", f"sending audio failed: {exc}")

    def _deadlines(self, now: float) -> None:
        h = self.heard
        if self._finishing or self.done.is_set():
            return
        if not self.vad.speaking:
            if h.t_prompt_end is not None and now >= h.t_prompt_end + self.timeout_s:
                self._end("timeout")
        elif h.t_speech_start is not None and now >= h.t_speech_start + self.max_speech_s + 1.0:
            # Speech started but the caller's audio stopped arriving.
            self._end("timeout", "caller audio stopped during speech")

    def _stop_prompt(self, now: float) -> None:
        if self._playing:
            self._playing = False
            self.heard.barge_in = True
            self.heard.t_prompt_end = now

    def _end(self, via: str, why: str | None = None) -> None:
        if self.done.is_set():
            return
        self.heard.via = via
        if why:
            self.heard.fallback = why
        self.done.set()

    # ------------------------------------------------------------ the caller
    async def _listen(self, conn: AudioSocketConnection) -> None:
        loop = asyncio.get_running_loop()
        try:
            while not self.done.is_set():
                frame = await conn.read()
                if frame is None or frame.kind is Kind.HANGUP:
                    self._end("closed")
                    return
                now = loop.time()
                if frame.kind is Kind.AUDIO:
                    await self._audio(frame.payload, now)
                elif frame.kind is Kind.DTMF:
                    self._key(frame.digit, now)
                elif frame.kind is Kind.ERROR:
                    self._end("closed", f"AudioSocket error frame, code {frame.error_code}")
        except AudioSocketError as exc:
            self.log.warning("AudioSocket stream broken: %s", exc)
            self._end("failed", str(exc))

    def _key(self, digit: str, now: float) -> None:
        if self.done.is_set() or self._finishing:
            return
        self._stop_prompt(now)
        self.heard.digit = digit
        self._end("key")

    async def _audio(self, pcm: bytes, now: float) -> None:
        vad = self.vad
        if self._finishing:
            return
        event = vad.feed(pcm)
        h = self.heard
        if not vad.speaking:
            self._preroll.append(pcm)
            return
        if event == "start":
            assert vad.speech_start_frame is not None
            h.t_speech_start = now - (vad.frames - 1 - vad.speech_start_frame) * FRAME_S
            h.t_speech_end = now
            self._stop_prompt(now)
            self.log.info("speech started%s", " (barge-in)" if h.barge_in else "")
            self._preroll.append(pcm)
            if self.stream is not None and self.stream.failed is None:
                for f in self._preroll:
                    self.stream.feed(f)
            self._preroll.clear()
            return
        if vad.last_voiced_frame == vad.frames - 1:
            h.t_speech_end = now
        if self.stream is not None:
            self.stream.feed(pcm)
        if event == "end" or (
            h.t_speech_start is not None and now - h.t_speech_start >= self.max_speech_s
        ):
            h.t_end_detected = now
            await self._final()

    async def _final(self) -> None:
        self._finishing = True
        h = self.heard
        loop = asyncio.get_running_loop()
        stream = self.stream
        if stream is None:
            self._end("failed", "no recogniser stream")
            return
        self._stream_used = True
        try:
            res = await stream.finish(RESULT_TIMEOUT_S)
        except SpeechError as exc:
            h.t_result = loop.time()
            self.log.warning("recogniser failed, keys still work: %s", exc)
            self._end("failed", f"recogniser failed: {exc}")
            return
        h.t_result = loop.time()
        h.text, h.confidence = res.text, res.confidence
        h.cpu_ms, h.audio_ms = res.cpu_ms, res.audio_ms
        if not res.text:
            via = "no-match"
        elif res.confidence < self.min_confidence:
            via = "low-confidence"
        else:
            via = "speech"
        self.log.info("heard %r (confidence %.2f) -> %s, %.0f ms after the end of speech",
                      res.text, res.confidence, via, (h.t_result - (h.t_end_detected or 0)) * 1000)
        self._end(via)


# =========================================================================== the listener


def make_recognizer(speech: Speech) -> Recognizer | None:
    """The recogniser the config asks for: remote service, local pool, or none."""
    if speech.server:
        return RemoteRecognizer(speech.server)
    if speech.model:
        return VoskPool(speech.model)
    return None


@dataclass
class _PromptAudio:
    mtime: float
    pcm: bytes


@dataclass
class Listener:
    """What :func:`ask` needs, owned by the controller: recogniser + AudioSocket server."""

    recognizer: Recognizer | None
    server: AudioSocketServer | None
    _prompts: dict[Path, _PromptAudio] = field(default_factory=dict)
    #: The ``(speech.model, speech.server)`` the recogniser runs (``(None, None)``: keys only).
    running: tuple[str | None, str | None] = (None, None)
    _retiring: set[asyncio.Task[None]] = field(default_factory=set)
    _switching: asyncio.Lock = field(default_factory=asyncio.Lock)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def speech_on(self) -> bool:
        return self.recognizer is not None and self.server is not None

    @classmethod
    async def start(cls, config: Config, recognizer: Recognizer | None = None) -> Listener:
        """Start the recogniser and the AudioSocket server, as the config says.

        Speech off logs a notice; a configured model that is missing or
        unreadable raises :class:`~ivr.speech.ModelError` naming its path.
        """
        rec = recognizer if recognizer is not None else make_recognizer(config.speech)
        if rec is None:
            log.warning(
                "NOTICE: speech recognition is OFF (speech.model and speech.server are null): "
                "menus take keys (DTMF) only"
            )
            return cls(None, None)
        await rec.start()
        ep = config.network.audiosocket
        server = AudioSocketServer(ep.bind, ep.port)
        try:
            await server.start()
        except OSError:
            await rec.close()
            raise
        log.info("speech recognition ON with %s; AudioSocket on %s", rec.name, server.address)
        return cls(rec, server, running=(config.speech.model, config.speech.server))

    async def close(self) -> None:
        # A switch still starting a recogniser closes it when it sees this; recognisers
        # draining stop waiting and close (never cancelled half-way through a close).
        self._closing.set()
        if self.server is not None:
            await self.server.close()
        if self.recognizer is not None:
            await self.recognizer.close()
        await asyncio.gather(*self._retiring, return_exceptions=True)

    async def use(self, config: Config, recognizer: Recognizer | None = None,
                  drain_s: float = DRAIN_S) -> bool:
        """Switch to what ``config.speech`` asks for (an apply), without a restart.

        The new recogniser is started first: if it fails (a missing model), the
        running one stays and this returns False.  Questions asked from then on use
        the new one; the old one is closed once the streams it has open ended (at
        most ``drain_s``; a stream still open then falls back to keys).  Speech
        switched off leaves menus on keys.  The AudioSocket server stays where it
        is (its address is read at start); it is started if speech was off then.
        """
        async with self._switching:
            return await self._use(config, recognizer, drain_s)

    async def _use(self, config: Config, recognizer: Recognizer | None, drain_s: float) -> bool:
        wanted = (config.speech.model, config.speech.server)
        if self._closing.is_set():
            return False
        if wanted == self.running and recognizer is None:
            return True
        old = self.recognizer
        rec = recognizer if recognizer is not None else make_recognizer(config.speech)
        if rec is not None:
            try:
                await rec.start()
                if self.server is None:
                    ep = config.network.audiosocket
                    server = AudioSocketServer(ep.bind, ep.port)
                    await server.start()
                    self.server = server
            except asyncio.CancelledError:  # the controller stops: leave no worker behind
                await rec.close()
                raise
            except Exception as exc:  # noqa: BLE001 - keep the recogniser that works
                log.error("speech not switched to %s, keeping %s: %s", rec.name,
                          old.name if old is not None else "keys only", exc)
                await rec.close()
                return False
            if self._closing.is_set():  # closed while it started: it never serves
                await rec.close()
                return False
        self.recognizer, self.running = rec, wanted
        log.info("speech recognition now %s", f"ON with {rec.name}" if rec else "OFF (keys only)")
        if old is not None:
            task = asyncio.create_task(self._retire(old, drain_s))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        return True

    async def _retire(self, rec: Recognizer, drain_s: float) -> None:
        """Close ``rec`` once its streams ended, after ``drain_s``, or at :meth:`close`."""
        loop = asyncio.get_running_loop()
        until = loop.time() + drain_s
        while rec.status().get("streams", 0) and not self._closing.is_set():
            left = until - loop.time()
            if left <= 0:
                log.warning("closing the previous recogniser %s with streams still open", rec.name)
                break
            with contextlib.suppress(TimeoutError):  # look at the count twice a second
                await asyncio.wait_for(self._closing.wait(), min(0.5, left))
        await rec.close()
        log.info("closed the previous recogniser %s", rec.name)

    def status(self) -> dict[str, Any]:
        if self.recognizer is None:
            return {"ok": True, "mode": "off"}
        out = self.recognizer.status()
        if self.server is not None:
            out["audiosocket"] = self.server.address
        return out

    def prompt_pcm(self, path: Path) -> bytes:
        """The prompt's 8 kHz 16-bit mono PCM (cached while the file is unchanged)."""
        try:
            real = path.resolve(strict=True)
            mtime = real.stat().st_mtime
        except OSError as exc:
            raise SpeechUnavailable(f"prompt {path} unreadable: {exc}") from None
        cached = self._prompts.get(real)
        if cached is not None and cached.mtime == mtime:
            return cached.pcm
        try:
            with wave.open(str(real), "rb") as w:
                if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
                    raise SpeechUnavailable(
                        f"prompt {real} is {w.getframerate()} Hz, {w.getnchannels()} channel(s), "
                        f"{8 * w.getsampwidth()} bit: AudioSocket needs 8000 Hz mono 16-bit"
                    )
                pcm = w.readframes(w.getnframes())
        except (OSError, wave.Error, EOFError) as exc:
            raise SpeechUnavailable(f"prompt {real} unreadable: {exc}") from None
        if len(self._prompts) > 256:
            self._prompts.clear()
        self._prompts[real] = _PromptAudio(mtime, pcm)
        return pcm


# The controller owns one Listener per App.  App (hotline/app.py) has no field
# for it, so it is attached here, keyed by the App object's identity.
_LISTENERS: dict[int, Listener] = {}


def attach(app: App, listener: Listener) -> None:
    _LISTENERS[id(app)] = listener


def detach(app: App) -> None:
    _LISTENERS.pop(id(app), None)


def listener_of(app: App) -> Listener | None:
    return _LISTENERS.get(id(app))


# =========================================================================== ask()


def _prompt_file(app: App, prompt: str) -> Path:
    return app.instance.host("current", "sounds", prompt + ".wav")


async def ask(
    ch: Channel,
    app: App,
    prompt: str,
    words: list[str],
    timeout_s: float,
    *,
    trace: list[Heard] | None = None,
) -> Answer:
    """Play ``prompt`` and return the caller's answer (a key, words, or nothing).

    ``words`` is the grammar (the menu's keywords, operator and emergency
    words); an empty list asks an open question recognised as free text.
    ``timeout_s`` is how long to wait after the prompt.  The :class:`Heard`
    record of the question is appended to ``trace``.
    """
    listener = listener_of(app)
    loop = asyncio.get_running_loop()
    if listener is None or not listener.speech_on:
        heard = await _ask_dtmf(ch, app, prompt, timeout_s, None)
    else:
        try:
            heard = await _ask_speech(ch, app, listener, prompt, words, timeout_s)
        except SpeechUnavailable as exc:
            ch.log.warning("speech unavailable for this question, asking by keys: %s", exc)
            heard = await _ask_dtmf(ch, app, prompt, timeout_s, str(exc))
    heard.t_returned = loop.time()
    if trace is not None:
        trace.append(heard)
    return heard.answer


async def _ask_dtmf(
    ch: Channel,
    app: App,
    prompt: str,
    timeout_s: float,
    reason: str | None,
) -> Heard:
    loop = asyncio.get_running_loop()
    heard = Heard(prompt=prompt, mode="dtmf", fallback=reason, t_start=loop.time())
    digit = await ch.stream_file(app.prompt(prompt), ALL_KEYS, max_wait=app.prompt_wait(prompt))
    if digit:
        heard.barge_in = True
    heard.t_prompt_end = loop.time()
    if digit is None and timeout_s > 0:
        digit = await ch.wait_for_digit(int(timeout_s * 1000))
    if digit:
        heard.digit, heard.via = digit, "key"
    return heard


async def _ask_speech(
    ch: Channel,
    app: App,
    listener: Listener,
    prompt: str,
    words: Sequence[str],
    timeout_s: float,
) -> Heard:
    assert listener.recognizer is not None and listener.server is not None
    pcm = listener.prompt_pcm(_prompt_file(app, prompt))
    grammar = list(words) if words else None
    try:
        stream = await listener.recognizer.open(grammar, ch.log)
    except SpeechError as exc:
        raise SpeechUnavailable(f"recogniser: {exc}") from None
    sp = app.config.speech
    q = Question(
        prompt=prompt,
        pcm=pcm,
        stream=stream,
        timeout_s=timeout_s,
        silence_ms=sp.silence_ms,
        min_confidence=sp.min_confidence,
        grammar=grammar is not None,
        log_=ch.log,
    )
    reg = listener.server.expect(q.run, log_=ch.log)
    started = time.monotonic()
    try:
        result = await ch.exec(
            "AudioSocket", str(reg.uuid), listener.server.address, max_wait=q.max_duration + 5.0
        )
    except BaseException:
        if not reg.connected.done():
            stream.abort()  # a session that ran aborts its own stream
        raise
    finally:
        reg.cancel()
    q.heard.audiosocket_result = result
    if not reg.connected.done():
        stream.abort()
        raise SpeechUnavailable(f"Asterisk did not connect to AudioSocket (result {result})")
    try:
        async with asyncio.timeout(2.0):
            await asyncio.shield(reg.done)
    except TimeoutError:
        ch.log.warning("AudioSocket session still running after AudioSocket() returned")
    if result != 0:
        ch.log.info("AudioSocket() returned %d after %.1f s (%s)", result,
                    time.monotonic() - started, q.heard.via)
    return q.heard
