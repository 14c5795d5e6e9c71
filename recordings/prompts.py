"""Default Mandarin prompts, synthesized once at set-up.

Every prompt under ``prompts:`` in ``config/hotline.yaml`` has a text; ``hotline
prompts`` renders each one with espeak-ng and converts it with sox to what
Asterisk plays without transcoding: ``format_wav`` is 8 kHz, 16-bit signed
linear, mono (the ``slin`` format, in a RIFF WAVE container) -- see the Asterisk
documentation of ``format_wav`` and of file formats ("Asterisk Sound Formats").

An admin who records a prompt drops ``NAME.wav`` into ``config/prompts/``; that
folder comes first in :func:`prompt_dirs`, so the recording is played instead
of the synthesized file, which is left alone.

Rendering is idempotent: beside each ``NAME.wav`` a ``NAME.sha256`` holds the
hash of what produced it (voice, text and output format). A prompt whose hash
still matches is not rendered again, and every file is written under a temporary
name in the same folder and renamed over the old one (``os.replace`` is atomic on
POSIX), so Asterisk never plays half a file and an interrupted run leaves the old
prompt in place.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

ESPEAK = "espeak-ng"
SOX = "sox"
# What Asterisk's format_wav reads natively: 8 kHz, mono, 16-bit signed linear.
SOX_FORMAT = ("-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer")
# Same form as dialplan.model.PromptName: the name becomes a file name, never a path.
PROMPT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
TOOL_TIMEOUT = 60.0  # seconds for one espeak-ng or sox run; a prompt takes well under 1 s
# mkstemp creates files 0600; Asterisk (another user) must be able to read them.
FILE_MODE = 0o644
CONFIG_PROMPTS = "prompts"  # admin recordings: config_dir / "prompts" / NAME.wav


class PromptError(Exception):
    """A prompt could not be synthesized; ``name`` says which."""

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.message = message
        super().__init__(f"prompt {name!r}: {message}")


def prompt_dirs(config_dir: Path, generated_dir: Path) -> list[Path]:
    """Folders searched for ``NAME.wav``, first match wins.

    The admin's recordings (``config_dir/prompts``) come first, so a recorded
    file overrides the synthesized one of the same name in ``generated_dir``.
    """
    return [config_dir / CONFIG_PROMPTS, generated_dir]


def fingerprint(text: str, voice: str) -> str:
    """Hash of everything that shapes a rendered prompt."""
    recipe = "\0".join(("espeak-ng", voice, "sox", *SOX_FORMAT, text))
    return hashlib.sha256(recipe.encode("utf-8")).hexdigest()


def synthesize(
    prompts: Mapping[str, str],
    out_dir: Path,
    *,
    voice: str = "cmn",
    force: bool = False,
) -> list[Path]:
    """Render every prompt text to ``out_dir/NAME.wav`` (8 kHz mono 16-bit WAV).

    Returns the WAV files written by this call, in the order of ``prompts``; a
    prompt whose ``NAME.sha256`` matches its voice and text is skipped unless
    ``force``. Raises :class:`PromptError` naming the prompt at fault: a bad
    name or an empty text (checked before anything is rendered), or espeak-ng
    or sox missing or failing (prompts rendered before it are kept).
    """
    for name, text in prompts.items():  # refuse a bad entry before rendering any
        if not PROMPT_NAME_RE.match(name):
            raise PromptError(name, "a prompt name must be lower-case letters, digits, - or _")
        if not text.strip():
            raise PromptError(name, "the text is empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, text in prompts.items():
        text = text.strip()
        wav = out_dir / f"{name}.wav"
        sidecar = out_dir / f"{name}.sha256"
        digest = fingerprint(text, voice)
        if not force and wav.is_file() and _read(sidecar) == digest:
            log.debug("prompt %s is up to date", name)
            continue
        _render(name, text, voice, wav)
        _write_atomic(sidecar, f"{digest}\n".encode("ascii"))
        log.info("rendered prompt %s (%s, voice %s)", name, wav, voice)
        written.append(wav)
    return written


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _render(name: str, text: str, voice: str, wav: Path) -> None:
    """espeak-ng to a scratch WAV, then sox to a temporary name beside ``wav``, then rename."""
    with tempfile.TemporaryDirectory(prefix="hotline-prompt-") as scratch:
        raw = Path(scratch) / "espeak.wav"
        # "--" ends the options: a text starting with "-" is spoken, not parsed.
        _run(name, [ESPEAK, "-v", voice, "-w", str(raw), "--", text])
        if not raw.is_file() or raw.stat().st_size <= 44:  # 44 = bare WAV header
            raise PromptError(name, f"{ESPEAK} produced no audio")
        fd, tmp_name = tempfile.mkstemp(dir=wav.parent, prefix=f".{name}.", suffix=".wav")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _run(name, [SOX, str(raw), *SOX_FORMAT, str(tmp)])
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, wav)
        finally:
            tmp.unlink(missing_ok=True)


def _run(name: str, argv: Sequence[str]) -> None:
    tool = argv[0]
    try:
        subprocess.run(  # noqa: S603 - an argument list, no shell
            argv,
            check=True,
            capture_output=True,
            timeout=TOOL_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as e:
        raise PromptError(name, f"{tool} is not installed (apt-get install {tool})") from e
    except subprocess.TimeoutExpired as e:
        raise PromptError(name, f"{tool} did not finish within {TOOL_TIMEOUT:g} s") from e
    except subprocess.CalledProcessError as e:
        detail = e.stderr.decode("utf-8", "replace").strip().splitlines()
        why = f": {detail[-1]}" if detail else ""
        raise PromptError(name, f"{tool} failed with exit status {e.returncode}{why}") from e


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
