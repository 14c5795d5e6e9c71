"""Tones in a recorded WAV file: Goertzel over 20 ms blocks (the test's ear for recordings).

Pure functions over 16-bit mono PCM, so they are unit-tested with synthesized
tones (tests/unit/test_wavtone.py) before they judge a real recording.
"""

from __future__ import annotations

import math
import wave
from dataclasses import dataclass
from pathlib import Path

BLOCK_S = 0.02


@dataclass(frozen=True)
class Wav:
    rate: int
    samples: list[int]

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate

    @classmethod
    def read(cls, path: Path) -> Wav:
        with wave.open(str(path)) as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise ValueError(f"{path}: expected 16-bit mono, got {w.getsampwidth() * 8}-bit "
                                 f"x{w.getnchannels()}")
            raw = w.readframes(w.getnframes())
            rate = w.getframerate()
        return cls(rate, [int.from_bytes(raw[i:i + 2], "little", signed=True)
                          for i in range(0, len(raw) - 1, 2)])

    def level(self, freq: float, start: float, end: float) -> float:
        """Mean amplitude (of 32767) of ``freq`` between ``start`` and ``end`` seconds."""
        return tone_level(self.samples[int(start * self.rate):int(end * self.rate)], freq,
                          self.rate)

    def rms(self, start: float, end: float) -> float:
        part = self.samples[int(start * self.rate):int(end * self.rate)]
        return math.sqrt(sum(x * x for x in part) / len(part)) if part else 0.0


def tone_level(samples: list[int], freq: float, rate: int) -> float:
    """Goertzel amplitude of ``freq`` per 20 ms block, averaged over the blocks."""
    n = int(rate * BLOCK_S)
    blocks = len(samples) // n
    if not blocks:
        return 0.0
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    total = 0.0
    for b in range(blocks):
        s1 = s2 = 0.0
        for x in samples[b * n:(b + 1) * n]:
            s1, s2 = x + coeff * s1 - s2, s1
        total += 2 * math.sqrt(max(0.0, s1 * s1 + s2 * s2 - coeff * s1 * s2)) / n
    return total / blocks
