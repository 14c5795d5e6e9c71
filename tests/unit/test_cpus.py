"""cpus: in the YAML (dialplan.model.Cpus) and how it is applied (hotline.cpus)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dialplan.loader import ConfigError
from dialplan.validate import load_config_text
from hotline import cpus
from hotline.runtime import SetupError

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"


def load(extra: str):  # type: ignore[no-untyped-def]
    text = SAMPLE.read_text(encoding="utf-8") + "\n" + extra
    return load_config_text(text, str(SAMPLE), [])


def test_the_sample_leaves_the_scheduler_free() -> None:
    cfg = load("")
    assert (cfg.cpus.asterisk, cfg.cpus.controller) == (None, None)


def test_a_layout_is_read() -> None:
    cfg = load("cpus: {asterisk: [0], controller: [1, 2]}")
    assert (cfg.cpus.asterisk, cfg.cpus.controller) == ((0,), (1, 2))


@pytest.mark.parametrize(
    "extra, message",
    [
        ("cpus: {asterisk: []}", "cpus.asterisk"),
        ("cpus: {asterisk: [0, 0]}", "a CPU is listed twice"),
        ("cpus: {controller: [-1]}", "cpus.controller"),
        ("cpus: {controller: one}", "cpus.controller"),
        ("cpus: {apache: [0]}", "cpus.apache"),
    ],
)
def test_bad_layouts_are_named(extra: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(extra)
    assert message in str(e.value), str(e.value)


def test_describe_folds_runs() -> None:
    assert cpus.describe({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"
    assert cpus.describe({3}) == "3"


def test_a_cpu_the_machine_lacks_is_refused_by_number() -> None:
    here = cpus.available()
    assert cpus.check("cpus.asterisk", None) is None
    assert cpus.check("cpus.asterisk", sorted(here)) == here
    with pytest.raises(SetupError, match=r"cpus.controller lists CPU 4095; this process may use"):
        cpus.check("cpus.controller", [4095])


def test_taskset_runs_a_program_on_the_cpus_only() -> None:
    """The prefix Asterisk is started with: the child (and its threads) get the CPUs."""
    one = {min(cpus.available())}
    assert cpus.taskset(None) == []
    out = subprocess.run(
        [*cpus.taskset(one), "python3", "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
        capture_output=True, text=True, check=True,
    )
    assert out.stdout.strip() == str(sorted(one))


def test_pin_self_is_inherited_by_children() -> None:
    here = cpus.available()
    one = {max(here)}
    pid = os.fork()
    if pid == 0:  # the child pins itself, then starts a grandchild that reports
        try:
            cpus.pin_self(one)
            out = subprocess.run(["python3", "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                                 capture_output=True, text=True)
            os._exit(0 if out.stdout.strip() == str(sorted(one)) else 1)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cpus.available() == here  # the parent is untouched
