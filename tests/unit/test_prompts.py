"""recordings.prompts: real espeak-ng + sox into a tmp folder, checked with ``wave``.

The rendering tests need /usr/bin/espeak-ng and /usr/bin/sox. Where they are
missing the tests are skipped, except under CI=true, where a missing tool is a
failure: the CI image must have them.
"""

from __future__ import annotations

import array
import math
import shutil
import stat
import sys
import wave
from pathlib import Path

import pytest

from recordings import prompts as rp
from recordings.prompts import PromptError, prompt_dirs, synthesize
from tests.conftest import need

TWO = {"welcome": "您好，欢迎致电。", "goodbye": "再见。"}


def need_tools() -> None:
    """The shared rule (tests/conftest.py): CI=true, 1 or yes fails, elsewhere skips."""
    missing = [t for t in (rp.ESPEAK, rp.SOX) if shutil.which(t) is None]
    need(f"prompt synthesis ({', '.join(missing)})", not missing, "apt-get install espeak-ng sox")


def identity(p: Path) -> tuple[int, int]:
    st = p.stat()
    return st.st_ino, st.st_mtime_ns


def audio(p: Path) -> tuple[int, int, int, float, float]:
    """(rate, channels, sample width, seconds, RMS of the 16-bit samples)."""
    with p.open("rb") as f:
        head = f.read(12)
    assert head[:4] == b"RIFF" and head[8:12] == b"WAVE", head
    with wave.open(str(p), "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        n = w.getnframes()
        frames = w.readframes(n)
    samples = array.array("h", frames)
    if sys.byteorder == "big":
        samples.byteswap()
    rms = math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0
    return rate, channels, width, n / rate, rms


# ------------------------------------------------------------------ real rendering


def test_renders_8khz_mono_16bit_speech(tmp_path: Path) -> None:
    need_tools()
    out = tmp_path / "generated"
    written = synthesize(TWO, out)
    assert written == [out / "welcome.wav", out / "goodbye.wav"]
    for p in written:
        rate, channels, width, seconds, rms = audio(p)
        assert (rate, channels, width) == (8000, 1, 2), p
        # A few syllables of Mandarin: well over a tenth of a second, well under ten.
        assert 0.3 < seconds < 10, (p, seconds)
        assert rms > 300, (p, rms)  # speech, not silence (full scale is 32767)
        assert stat.S_IMODE(p.stat().st_mode) == 0o644  # Asterisk runs as another user
        assert (out / f"{p.stem}.sha256").read_text().strip() == rp.fingerprint(TWO[p.stem], "cmn")
    # Nothing but the prompts and their sidecars: no temporary files left behind.
    assert sorted(x.name for x in out.iterdir()) == [
        "goodbye.sha256",
        "goodbye.wav",
        "welcome.sha256",
        "welcome.wav",
    ]


def test_unchanged_text_is_not_rendered_again(tmp_path: Path) -> None:
    need_tools()
    synthesize(TWO, tmp_path)
    before = {p.name: identity(p) for p in tmp_path.iterdir()}
    assert synthesize(TWO, tmp_path) == []
    assert {p.name: identity(p) for p in tmp_path.iterdir()} == before


def test_changed_text_is_rendered_again_alone(tmp_path: Path) -> None:
    need_tools()
    synthesize(TWO, tmp_path)
    welcome, goodbye = identity(tmp_path / "welcome.wav"), identity(tmp_path / "goodbye.wav")
    old_seconds = audio(tmp_path / "goodbye.wav")[3]
    longer = {**TWO, "goodbye": "感谢您的来电，祝您生活愉快，再见。"}
    assert synthesize(longer, tmp_path) == [tmp_path / "goodbye.wav"]
    assert identity(tmp_path / "welcome.wav") == welcome
    assert identity(tmp_path / "goodbye.wav") != goodbye  # a new file renamed into place
    assert audio(tmp_path / "goodbye.wav")[3] > old_seconds
    sidecar = (tmp_path / "goodbye.sha256").read_text().strip()
    assert sidecar == rp.fingerprint(longer["goodbye"], "cmn")


def test_force_and_a_lost_sidecar_render_again(tmp_path: Path) -> None:
    need_tools()
    synthesize(TWO, tmp_path)
    everything = [tmp_path / "welcome.wav", tmp_path / "goodbye.wav"]
    assert synthesize(TWO, tmp_path, force=True) == everything
    (tmp_path / "goodbye.sha256").unlink()
    assert synthesize(TWO, tmp_path) == [tmp_path / "goodbye.wav"]


def test_text_starting_with_a_dash_is_spoken_not_parsed(tmp_path: Path) -> None:
    need_tools()
    [p] = synthesize({"dash": "-v xx 您好"}, tmp_path)
    assert audio(p)[4] > 300


def test_failing_espeak_names_the_prompt_and_keeps_the_old_file(tmp_path: Path) -> None:
    need_tools()
    synthesize(TWO, tmp_path)
    before = identity(tmp_path / "welcome.wav")
    with pytest.raises(PromptError) as e:
        synthesize({"welcome": "新的文本"}, tmp_path, voice="qqq")
    assert e.value.name == "welcome"
    assert str(e.value).startswith("prompt 'welcome': espeak-ng failed with exit status 1: ")
    assert identity(tmp_path / "welcome.wav") == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------ no tools needed


def test_missing_espeak_names_the_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rp, "ESPEAK", "espeak-ng-not-installed")
    with pytest.raises(PromptError) as e:
        synthesize(TWO, tmp_path)
    assert str(e.value) == (
        "prompt 'welcome': espeak-ng-not-installed is not installed "
        "(apt-get install espeak-ng-not-installed)"
    )
    assert list(tmp_path.iterdir()) == []


def test_missing_sox_names_the_prompt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    need_tools()
    monkeypatch.setattr(rp, "SOX", "sox-not-installed")
    with pytest.raises(PromptError) as e:
        synthesize(TWO, tmp_path)
    assert e.value.name == "welcome"
    assert "sox-not-installed is not installed" in str(e.value)
    assert list(tmp_path.iterdir()) == []  # no half-made welcome.wav, no temp file


BAD_NAME = "a prompt name must be lower-case letters, digits, - or _"


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ({"../etc/passwd": "x"}, f"prompt '../etc/passwd': {BAD_NAME}"),
        ({"Welcome": "x"}, f"prompt 'Welcome': {BAD_NAME}"),
        ({"ok": "好", "blank": "  "}, "prompt 'blank': the text is empty"),
    ],
)
def test_bad_entries_are_refused_before_anything_runs(
    tmp_path: Path, prompts: dict[str, str], message: str
) -> None:
    out = tmp_path / "generated"
    with pytest.raises(PromptError) as e:
        synthesize(prompts, out)
    assert str(e.value) == message
    assert not out.exists()


def test_prompt_dirs_put_the_admin_recordings_first(tmp_path: Path) -> None:
    assert prompt_dirs(tmp_path / "config", tmp_path / "var") == [
        tmp_path / "config" / "prompts",
        tmp_path / "var",
    ]


def test_fingerprint_depends_on_voice_and_text() -> None:
    assert rp.fingerprint("您好", "cmn") == rp.fingerprint("您好", "cmn")
    assert rp.fingerprint("您好", "cmn") != rp.fingerprint("您好", "yue")
    assert rp.fingerprint("您好", "cmn") != rp.fingerprint("你好", "cmn")
