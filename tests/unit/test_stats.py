"""Queue statistics from queue_log lines recorded on a real Asterisk 22."""

from __future__ import annotations

from typing import Any

from queues.stats import compute, parse_line

# Shapes copied from the queue_log of the integration tests (Asterisk 22.10).
LOG = """\
1795775671|NONE|NONE|NONE|QUEUESTART|
1795775678|1795775676.0|social|NONE|ENTERQUEUE||13907910001|1
1795775678|1795775676.0|social|1003|CONNECT|0|1795775678.1|0
1795775682|1795775676.0|social|1003|COMPLETECALLER|0|4|1
1795775684|1795775683.2|province|NONE|ENTERQUEUE||13907910001|1
1795775684|1795775683.2|province|NONE|ABANDON|1|1|0
1795775700|1795775699.3|nanchang|NONE|OVERFLOW|province|JOINEMPTY
1795775700|1795775699.3|province|NONE|ENTERQUEUE||13907910001|1
1795775730|1795775699.3|province|1001|CONNECT|30|1795775730.4|2
1795775760|1795775699.3|province|1001|COMPLETEAGENT|30|30|1
1795775800|1795775790.5|ganzhou-yudu|NONE|ENTERQUEUE||07976212345|1
1795775830|1795775790.5|ganzhou-yudu|NONE|EXITWITHTIMEOUT|1|1|30
1795775830|1795775790.5|ganzhou-yudu|NONE|OVERFLOW|ganzhou|TIMEOUT
1795775830|1795775790.5|ganzhou|NONE|ENTERQUEUE||07976212345|1
1795775835|1795775790.5|ganzhou|3001|CONNECT|5|1795775835.6|1
"""

CENTRES = {"social": "province", "province": "province", "nanchang": "nanchang",
           "ganzhou": "ganzhou", "ganzhou-yudu": "ganzhou"}


def events() -> list[Any]:
    return [e for e in map(parse_line, LOG.splitlines()) if e is not None]


def test_parse_line() -> None:
    e = parse_line("1795775678|1795775676.0|social|1003|CONNECT|0|1795775678.1|0\n")
    assert e is not None and (e.queue, e.agent, e.event, e.data) == ("social", "1003", "CONNECT", ("0", "1795775678.1", "0"))
    assert parse_line("") is None and parse_line("garbage") is None and parse_line("x|y|z|w|v") is None


def test_hotline_totals_count_each_call_once() -> None:
    t = compute(events(), centre_of=CENTRES).total
    # 4 calls offered (an overflowing call counts once), 3 answered, 1 abandoned.
    assert (t.offered, t.answered, t.abandoned, t.overflowed) == (4, 3, 1, 2)
    # Within 15 s of first reaching any queue: only the social call (0 s); the
    # overflowed calls were answered 30 s and 35 s after they first arrived.
    assert t.answered_in_sl == 1
    assert t.abandon_waits == [0]
    assert t.connection_rate == 0.75


def test_per_queue_and_per_centre() -> None:
    r = compute(events(), centre_of=CENTRES)
    assert r.by_queue["province"].offered == 2 and r.by_queue["province"].answered == 1
    assert r.by_queue["ganzhou-yudu"].timed_out == 1 and r.by_queue["ganzhou-yudu"].overflowed == 1
    assert r.by_queue["ganzhou"].answered == 1 and r.by_queue["ganzhou"].answered_in_sl == 0
    assert r.by_centre["ganzhou"].offered == 2 and r.by_centre["ganzhou"].answered == 1


def test_period_is_by_first_entry() -> None:
    r = compute(events(), since=1795775690, until=1795775795, centre_of=CENTRES)
    assert (r.total.offered, r.total.answered) == (1, 1)
    assert compute(events(), since=1795775800).total.offered == 1  # since is inclusive
    assert compute(events(), since=1795775801).total.offered == 0
