"""Which CPUs Asterisk and the controller may run on (``cpus:`` in the YAML).

Asterisk's call handling and the controller's Python compete for the same cores;
on a small machine a busy controller (garbage collection, a report, a burst of
work orders) delays Asterisk's channel threads, and Asterisk's load delays the
answers FastAGI sessions wait for. Giving each its own CPUs (the usual layout for
a telephony engine and its application server) keeps both predictable.

Asterisk gets its CPUs through ``taskset`` (util-linux, in every Debian) in front
of its command line: every thread it starts inherits them. The controller pins
itself before it starts any thread, so its worker threads and the Redis it
starts inherit its CPUs. None (the default) leaves the scheduler free.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from .runtime import SetupError


def available() -> set[int]:
    """The CPUs this process may run on."""
    return set(os.sched_getaffinity(0))


def check(what: str, cpus: Sequence[int] | None) -> set[int] | None:
    """The CPU set for ``what`` (``cpus.asterisk``…), or None; a clear error when this
    machine lacks one of them."""
    if cpus is None:
        return None
    here = available()
    missing = sorted(set(cpus) - here)
    if missing:
        raise SetupError(
            f"{what} lists CPU {', '.join(map(str, missing))}; this process may use CPUs "
            f"{describe(here)} (see `nproc` and `taskset -pc $$`)"
        )
    return set(cpus)


def describe(cpus: set[int]) -> str:
    """``{0, 1, 2, 5}`` → ``0-2,5``."""
    runs: list[list[int]] = []
    for c in sorted(cpus):
        if runs and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def taskset(cpus: set[int] | None) -> list[str]:
    """The command prefix that runs a program on ``cpus`` (empty: no constraint)."""
    if cpus is None:
        return []
    exe = shutil.which("taskset")
    if exe is None:
        raise SetupError("cpus: is set but `taskset` is missing (apt install util-linux)")
    return [exe, "--cpu-list", describe(cpus)]


def pin_self(cpus: set[int] | None) -> None:
    """Run this process, and every thread and child it starts from now on, on ``cpus``."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
