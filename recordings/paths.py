"""Recording paths: the dated layout and the one way a stored path becomes a file (pure).

Layout under the recordings root (``<instance>/<recordings.root>``, written by
Asterisk's ``MixMonitor`` in the generated ``hotline-record`` context)::

    YYYY/MM/DD/<linkedid>-<kind>.wav      (UTC date of the answer)

The name is made of Asterisk's ids only. A path read back from the database or
the dialplan is accepted only in exactly that shape, and :func:`resolve_inside`
resolves it (symlinks included) and checks that the result stays inside the
root, so neither a row nor an API caller can make the controller read or
delete anything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

REL_PATH = re.compile(
    r"^(?P<y>[0-9]{4})/(?P<m>[0-9]{2})/(?P<d>[0-9]{2})/"
    r"(?P<call>[0-9A-Za-z._]{1,64})-(?P<kind>call|survey)\.wav$"
)
RECORDING_ID = re.compile(r"^[1-9][0-9]{0,17}$")


class PathRefused(ValueError):
    """A recording path that is not one of ours, or leaves the recordings root."""


@dataclass(frozen=True)
class RelPath:
    path: str
    call_id: str
    kind: str
    day: datetime  # midnight UTC of the folder's date


def parse_rel(path: str) -> RelPath:
    """``2026/11/27/1764250000.12-call.wav`` → its parts; anything else is refused."""
    m = REL_PATH.match(path)
    if m is None or m.group("call") in (".", ".."):
        raise PathRefused(f"{path!r} is not a recording path (YYYY/MM/DD/<call id>-<kind>.wav)")
    try:
        day = datetime(int(m["y"]), int(m["m"]), int(m["d"]), tzinfo=UTC)
    except ValueError:
        raise PathRefused(f"{path!r} has no valid date") from None
    return RelPath(path, m["call"], m["kind"], day)


def rel_path(call_id: str, kind: str, at: datetime) -> str:
    """The relative path the dialplan writes for a recording started at ``at``."""
    return parse_rel(f"{at.astimezone(UTC):%Y/%m/%d}/{call_id}-{kind}.wav").path


def resolve_inside(root: Path, path: str) -> Path:
    """The file of a stored relative ``path``; refused unless it stays inside ``root``.

    The shape is checked first (no absolute path, no ``..``, no other file name), then
    the resolved path (a symlink pointing out, at any level, is refused)."""
    parse_rel(path)
    base = root.resolve()
    target = (base / path).resolve()
    if not target.is_relative_to(base):
        raise PathRefused(f"{path!r} leads outside the recordings root")
    return target


def parse_recording_id(text: str) -> int:
    """A recording id from the API: digits only (a path, ``..`` or ``%2e%2e`` is refused)."""
    if not RECORDING_ID.match(text):
        raise PathRefused(f"{text[:80]!r} is not a recording id (a positive number)")
    return int(text)


def scan(root: Path) -> list[RelPath]:
    """Every file under ``root`` in the dated layout (others are left alone and ignored)."""
    out: list[RelPath] = []
    if not root.is_dir():
        return out
    for f in sorted(root.glob("[0-9][0-9][0-9][0-9]/[0-9][0-9]/[0-9][0-9]/*.wav")):
        rel = f.relative_to(root).as_posix()
        try:
            out.append(parse_rel(rel))
        except PathRefused:
            continue
    return out
