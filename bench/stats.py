"""Pure helpers: percentiles and SIPp's statistics files (no I/O).

SIPp formats (sipp 3.6, ``sipp -h stat``):

* ``-trace_stat -stf FILE``: a ``;``-separated header line, then one row per
  ``-fd`` period and a last row written when SIPp exits; ``(C)`` columns are
  cumulative (``SuccessfulCall(C)``, ``FailedCall(C)``, ``TotalCallCreated``).
* ``-trace_rtt``: a header ``Date_ms;response_time_ms;rtd_no``, then one
  ``Date_ms;response_time_ms;rtd_name`` line per measured response time (here
  INVITE -> 200, named ``answer``): ``Date_ms`` is when the response arrived,
  in ms since SIPp started; the response time is whole milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; NaN when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def last_stat_row(text: str) -> dict[str, str]:
    """The last data row of a SIPp ``-trace_stat`` file, keyed by the header."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise ValueError("SIPp statistics file has no data row")
    header = lines[0].rstrip(";").split(";")
    row = lines[-1].rstrip(";").split(";")
    if len(row) != len(header):
        raise ValueError(
            f"SIPp statistics row has {len(row)} fields, header has {len(header)}"
        )
    return dict(zip(header, row, strict=True))


def stat_int(row: dict[str, str], column: str) -> int:
    """An integer column of :func:`last_stat_row`, with an error naming it."""
    try:
        return int(row[column])
    except KeyError:
        raise ValueError(f"SIPp statistics have no column {column!r}") from None
    except ValueError:
        raise ValueError(f"SIPp statistics column {column!r} is not an integer: "
                         f"{row[column]!r}") from None


@dataclass(frozen=True)
class Rtt:
    at_ms: float  # when the response arrived, ms since SIPp started
    rtt_ms: float  # INVITE sent -> 200 received


def parse_rtt(text: str) -> list[Rtt]:
    """Rows of a SIPp ``-trace_rtt`` file (header skipped)."""
    out: list[Rtt] = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.strip().split(";")
        if not line.strip() or parts[0] == "Date_ms":
            continue
        try:
            if len(parts) != 3:
                raise ValueError
            out.append(Rtt(float(parts[0]), float(parts[1])))
        except ValueError:
            raise ValueError(f"SIPp rtt file line {n} is not Date_ms;response_time_ms;rtd_name:"
                             f" {line!r}") from None
    return out


def answer_rate(rtts: Sequence[Rtt], trim: float = 0.05) -> float:
    """Calls answered per second, between the answers at ``trim`` and ``1 - trim``.

    Trimming keeps one late answer at either end (SIPp starting up, one slow
    call at the end) from deciding the rate; a system that falls behind
    stretches the whole series and still shows a lower rate.
    """
    if not 0 <= trim < 0.5:
        raise ValueError(f"trim must be within [0, 0.5), not {trim}")
    times = sorted(r.at_ms for r in rtts)
    cut = int(len(times) * trim)
    first, last = cut, len(times) - 1 - cut
    if last <= first:
        return 0.0
    span_s = (times[last] - times[first]) / 1000
    return (last - first) / span_s if span_s > 0 else math.inf
