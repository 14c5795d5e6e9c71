"""A queue's ``retry`` (queues.conf ``retry``): model, checks, compiled output.

Why it matters (app_queue, Asterisk 22): a caller whose turn came but who could be
offered to nobody sits in ``wait_a_bit()`` for ``retry`` seconds and sees no seat
freed meanwhile; tests/integration/test_queue_retry.py measures it on a real Asterisk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dialplan.compile import compile_config
from dialplan.model import Queue
from dialplan.validate import load_config_text
from tests.unit.configs import issues

from .test_compile import TARGET, VERSION, sections

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
PROVINCE = "ring_timeout: 15, wrapup: 5,"


@pytest.fixture(scope="module")
def sample() -> str:
    text = SAMPLE.read_text(encoding="utf-8")
    assert text.count(PROVINCE) == 1
    return text


def with_retry(sample: str, value: str) -> str:
    return sample.replace(PROVINCE, f"{PROVINCE} retry: {value},", 1)


def queue_options(text: str) -> dict[str, list[str]]:
    files = compile_config(load_config_text(text, "hotline.yaml"), TARGET, VERSION)
    queues = [s for s in sections(files["queues.conf"]) if s.name != "general"]
    return {s.name: s.getall("retry") for s in queues}


def test_default_is_one_second() -> None:
    assert Queue(centre="province").retry == 1


def test_every_queue_looks_again_after_one_second_by_default(sample: str) -> None:
    options = queue_options(sample)
    assert set(options) == {"province", "nanchang", "ganzhou", "ganzhou-yudu", "social"}
    assert all(v == ["1"] for v in options.values()), options


def test_retry_is_per_queue(sample: str) -> None:
    options = queue_options(with_retry(sample, "3"))
    assert options["province"] == ["3"]
    assert options["nanchang"] == ["1"]


@pytest.mark.parametrize("value", ["0", "-1", "11"])
def test_retry_out_of_range_is_refused(sample: str, value: str) -> None:
    # 0 would not even mean "at once": app_queue reads retry <= 0 as its default, 5 s.
    (issue,) = issues(with_retry(sample, value))
    line = sample[: sample.index(PROVINCE)].count("\n") + 1
    assert issue == f"hotline.yaml:{line}: queues.province.retry: retry is 1-10 seconds"


def test_retry_must_be_a_number(sample: str) -> None:
    for value in ("soon", "true", "1.5"):  # a whole number: no word, no bool, no fraction
        (issue,) = issues(with_retry(sample, value))
        assert issue.endswith("queues.province.retry: Input should be a valid integer"), issue
