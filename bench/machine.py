"""What the bench ran on, and who used the CPU during a step (Linux ``/proc``, see proc(5))."""

from __future__ import annotations

import contextlib
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from hotline.runtime import AsteriskRoot

CLK_TCK: Final = os.sysconf("SC_CLK_TCK")


def cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def machine_line(root: AsteriskRoot) -> str:
    """``machine: nproc N, CPU model, Asterisk version, SIPp version, Python version``."""
    cpuinfo = ""
    with contextlib.suppress(OSError):
        cpuinfo = Path("/proc/cpuinfo").read_text()
    try:
        asterisk = root.version()
    except (OSError, subprocess.CalledProcessError) as e:
        asterisk = f"Asterisk (version unknown: {e})"
    sipp = "SIPp"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["sipp", "-v"], capture_output=True, text=True, timeout=5).stdout
        if m := re.search(r"SIPp v[\w.\-]*\w", out):
            sipp = m.group(0)
    return (f"machine: nproc {os.cpu_count()}, {cpu_model(cpuinfo)}, {asterisk}, {sipp}, "
            f"Python {sys.version.split()[0]}")


def proc_cpu_s(pid: int | None) -> float:
    """User+system CPU seconds of ``pid`` (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # fields from 3 (state) on, after "(comm)"
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # 14 utime, 15 stime


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot: the ``cpu`` line of /proc/stat."""
    try:
        line = Path("/proc/stat").read_text().split("\n", 1)[0]
    except OSError:
        return 0.0
    # cpu user nice system idle iowait irq softirq steal ...
    v = [int(x) for x in line.split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK


class CpuMeter:
    """CPU used by each source over an interval, in % of one core."""

    def __init__(self, sources: dict[str, Callable[[], float]]) -> None:
        self.sources = sources
        self.start = {k: f() for k, f in sources.items()}
        self.t0 = time.monotonic()

    def shares(self, extra: dict[str, float] | None = None) -> dict[str, float]:
        """``extra``: CPU seconds measured elsewhere for the same interval."""
        wall = max(1e-6, time.monotonic() - self.t0)
        out = {k: 100 * (f() - self.start[k]) / wall for k, f in self.sources.items()}
        for k, v in (extra or {}).items():
            out[k] = 100 * v / wall
        return out
