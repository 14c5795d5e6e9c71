"""The recording tests' ear (tests/integration/wavtone.py) on synthesized tones."""

from __future__ import annotations

import math
import wave
from pathlib import Path

from tests.integration.wavtone import Wav, tone_level


def tone(freq: float, seconds: float, amp: int = 6000, rate: int = 8000) -> list[int]:
    return [int(amp * math.sin(2 * math.pi * freq * i / rate)) for i in range(int(seconds * rate))]


def test_goertzel_finds_each_tone_of_a_mix_and_not_others() -> None:
    mix = [a + b for a, b in zip(tone(600, 1, 3000), tone(1000, 1, 3000), strict=True)]
    assert abs(tone_level(mix, 600, 8000) - 3000) < 150
    assert abs(tone_level(mix, 1000, 8000) - 3000) < 150
    assert tone_level(mix, 1400, 8000) < 100
    assert tone_level([0] * 8000, 600, 8000) == 0.0
    assert tone_level([1] * 10, 600, 8000) == 0.0  # shorter than one block


def test_wav_read_and_windows(tmp_path: Path) -> None:
    pcm = tone(600, 1.0) + [0] * 8000 + tone(1000, 1.0)
    p = tmp_path / "t.wav"
    with wave.open(str(p), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"".join(x.to_bytes(2, "little", signed=True) for x in pcm))
    wav = Wav.read(p)
    assert wav.seconds == 3.0
    assert wav.level(600, 0, 1) > 5000 and wav.level(1000, 0, 1) < 100
    assert wav.rms(1, 2) == 0.0
    assert wav.level(1000, 2, 3) > 5000 and wav.level(600, 2, 3) < 100
