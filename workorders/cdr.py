"""Asterisk's ``cdr_csv`` records, parsed (pure: bytes in, rows out).

The generated ``cdr.conf`` (:meth:`dialplan.compile.Compiler.cdr`) enables
``cdr_csv`` with ``usegmtime``, ``loguniqueid`` and ``loguserfield``, so each
line of ``<instance>/log/cdr-csv/Master.csv`` has 18 fields, in the order of
``build_csv_record()`` in Asterisk's ``cdr/cdr_csv.c``::

    accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp,
    lastdata, start, answer, end, duration, billsec, disposition, amaflags,
    uniqueid, userfield

Strings are double-quoted with inner quotes doubled (a caller ID ``"citizen" <139>``
is written ``\"\"\"citizen\"\" <139>\"``),
the two durations are bare integers, times are ``YYYY-MM-DD HH:MM:SS`` in UTC
and an empty ``answer`` means never answered. Asterisk writes a channel's
records when the channel is gone, so a record is proof that the call ended.
See https://docs.asterisk.org/Configuration/Reporting/Call-Detail-Records-CDR/CDR-Specification/
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, datetime

FIELDS = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
    "uniqueid",
    "userfield",
)


class CdrFormatError(ValueError):
    """A line that is not a cdr_csv record of the configured shape."""


@dataclass(frozen=True)
class CdrRow:
    src: str
    dst: str
    dcontext: str
    channel: str
    dstchannel: str
    lastapp: str
    start: float  # Unix time
    answer: float | None
    end: float
    disposition: str
    uniqueid: str
    userfield: str


def _time(text: str, name: str) -> float | None:
    if text == "":
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise CdrFormatError(f"{name} {text!r} is not a time like 2026-11-27 13:23:44") from None


def parse_line(raw: bytes) -> CdrRow:
    """One Master.csv line (with or without its newline) as a :class:`CdrRow`."""
    # Caller names arrive as the carrier sent them (not always UTF-8): replaced, not refused,
    # so one display name never costs a call its work order.
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    if not text:
        raise CdrFormatError("empty line")
    try:
        (fields,) = list(csv.reader([text], strict=True))
    except (csv.Error, ValueError) as e:
        raise CdrFormatError(f"not a CSV record: {e}") from None
    if len(fields) != len(FIELDS):
        raise CdrFormatError(
            f"{len(fields)} fields, expected {len(FIELDS)} "
            "(cdr.conf needs loguniqueid and loguserfield)"
        )
    f = dict(zip(FIELDS, fields, strict=True))
    start, end = _time(f["start"], "start"), _time(f["end"], "end")
    if start is None or end is None:
        raise CdrFormatError("a record without its start or end time")
    return CdrRow(
        src=f["src"],
        dst=f["dst"],
        dcontext=f["dcontext"],
        channel=f["channel"],
        dstchannel=f["dstchannel"],
        lastapp=f["lastapp"],
        start=start,
        answer=_time(f["answer"], "answer"),
        end=end,
        disposition=f["disposition"],
        uniqueid=f["uniqueid"],
        userfield=f["userfield"],
    )


def split_lines(data: bytes) -> tuple[list[tuple[int, bytes]], int]:
    """Complete lines of ``data`` with their offsets, and how many bytes they span.

    A last line without its newline is being written: it is left for the next read.
    """
    out: list[tuple[int, bytes]] = []
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return out, pos
        out.append((pos, data[pos:nl]))
        pos = nl + 1
