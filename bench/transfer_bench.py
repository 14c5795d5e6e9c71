"""``python -m bench.transfer_bench``: how fast a warm transfer moves (issue 5).

Real calls on a real hotline (the integration tests' harness and parties): a citizen
reaches seat 1001, the agent asks for a transfer to line 110 over the HTTP API, a
SIPp dispatcher on the emergency trunk answers after 300 ms. Figures per transfer,
from the transfer's own record (clock of the controller, which sees every event):

* request → ringing: the HTTP request handled → the dispatcher's 180 Ringing
  (AMI Newstate of the dispatcher leg);
* answer → three-way bridge: the dispatcher's 200 OK (the leg up) → the last of
  caller and dispatcher in the ConfBridge, i.e. all three talking.

Prints p50/p95 (nearest rank) over ``--transfers`` runs, one after the other.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from bench.stats import percentile
from tests.integration import test_transfer as t
from tests.integration.harness import Hotline


def one(h: Hotline, wd: Path) -> dict[str, float]:
    a = t.agent(h, wd)
    d = t.dispatcher(h, wd, "answer", answer_after_ms=300)
    c = t.citizen(h, wd, hold_ms=6000)
    try:
        t.agent_in_call(h)
        tid, _ = t.transfer(h, "110")
        rec = h.wait_for(
            lambda: r if "bridged" in (r := t.record(h, tid))["times"] else None,
            10,
            "the three-way bridge",
        )
        t.done(c)
        t.done(d)
        t.wait_state(h, tid, "done")
        return {
            "request_to_ringing": rec["timings"]["request_to_ringing"],
            "answer_to_bridged": rec["timings"]["answer_to_bridged"],
        }
    finally:
        for p in (a, d, c):
            p.close()
        h.logout_seat("1001")
        h.wait_no_channels(10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transfers", type=int, default=10)
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="transfer-bench-"))
    h = Hotline(root, t.hotline_config())
    figures: dict[str, list[float]] = {"request_to_ringing": [], "answer_to_bridged": []}
    try:
        h.start()
        for i in range(args.transfers):
            wd = root / f"run{i}"
            wd.mkdir()
            for k, v in one(h, wd).items():
                figures[k].append(v * 1000)
    finally:
        h.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(f"warm transfer to 110, {args.transfers} transfers (ms):")
    for k, vs in figures.items():
        print(
            f"  {k:<20} p50 {percentile(vs, 50):7.1f}  p95 {percentile(vs, 95):7.1f}"
            f"  max {max(vs):7.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
