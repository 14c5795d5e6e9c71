"""ivr.locality: the caller's city and county from the caller ID, and the first queue.

Mobile numbers go through the ``phonenumbers`` geocoder (its data ships in the
package: no network); fixed lines through the configured area codes and
county prefixes of the sample.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dialplan.model import Config
from dialplan.validate import load_config_text
from ivr.locality import Locality, digits_of, local_queue, locate

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
UNKNOWN = Locality()


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config_text(SAMPLE.read_text(encoding="utf-8"), "hotline.yaml")


# ------------------------------------------------------------------ digits_of


@pytest.mark.parametrize(
    ("caller_id", "digits"),
    [
        ("13907910001", "13907910001"),
        ("+8613907910001", "13907910001"),
        ("008613907910001", "13907910001"),
        ("+86 797 621 2345", "07976212345"),
        ("0086-797-6212345", "07976212345"),
        ("0797-6212345", "07976212345"),
        ('"张三" <13907910001>', "13907910001"),
        ("", ""),
        ("anonymous", ""),
    ],
)
def test_digits_of(caller_id: str, digits: str) -> None:
    assert digits_of(caller_id) == digits


def test_digits_of_is_bounded() -> None:
    assert len(digits_of("1" * 1024)) <= 24


# ------------------------------------------------------------------ locate


@pytest.mark.parametrize(
    ("caller_id", "city", "county", "source"),
    [
        ("13907910001", "nanchang", None, "mobile"),
        ("+8613907910001", "nanchang", None, "mobile"),
        ("008613907910001", "nanchang", None, "mobile"),
        ("15979700000", "ganzhou", None, "mobile"),
        ("15979720000", "ganzhou", "yudu", "mobile"),  # county segment prefix 1597972
        ("0797-6212345", "ganzhou", "yudu", "area-code"),
        ("0797-6312345", "ganzhou", "yudu", "area-code"),
        ("0797-8212345", "ganzhou", None, "area-code"),
        ("+86 797 6212345", "ganzhou", "yudu", "area-code"),
        ("0086 797 6212345", "ganzhou", "yudu", "area-code"),
        ("079188881234", "nanchang", None, "area-code"),
        ("07925551234", "jiujiang", None, "area-code"),
    ],
)
def test_locate(cfg: Config, caller_id: str, city: str, county: str | None, source: str) -> None:
    assert locate(cfg, caller_id) == Locality(city, county, source)


@pytest.mark.parametrize(
    "caller_id",
    [
        "01012345678",  # Beijing fixed line: not a configured city
        "13800138000",  # a Beijing mobile
        "+12125550100",  # not Chinese
        "12345",
    ],
)
def test_elsewhere_is_unknown(cfg: Config, caller_id: str) -> None:
    assert locate(cfg, caller_id) == UNKNOWN


@pytest.mark.parametrize(
    "caller_id",
    [
        "",
        '"',
        '"; Dial(PJSIP/110@carrier)"',
        "\r\nAction: Originate\r\nChannel: Local/1@x\r\n\r\n",
        "x" * 1024,
        "匿名来电",
        "张三 <anonymous>",
        "\x00\x01\x7f",
        "+",
        "++86",
        "0086",
    ],
)
def test_hostile_caller_ids_are_unknown(cfg: Config, caller_id: str) -> None:
    assert locate(cfg, caller_id) == UNKNOWN


def test_a_kilobyte_of_digits_does_not_crash(cfg: Config) -> None:
    assert locate(cfg, "1" * 1024) == UNKNOWN


# ------------------------------------------------------------------ local_queue


@pytest.mark.parametrize(
    ("locality", "queue"),
    [
        (Locality("ganzhou", "yudu"), "ganzhou-yudu"),  # county queue first
        (Locality("ganzhou", None), "ganzhou"),  # then the city centre's queue
        (Locality("nanchang", "jinxian"), "nanchang"),  # a county without a queue
        (Locality("nanchang", None), "nanchang"),
        (Locality("jiujiang", None), "province"),  # a city without a centre
        (Locality("nowhere", None), "province"),  # not a configured city
        (Locality("ganzhou", "nowhere"), "ganzhou"),
        (Locality(), "province"),
    ],
)
def test_local_queue(cfg: Config, locality: Locality, queue: str) -> None:
    assert local_queue(cfg, locality) == queue


def test_caller_id_to_first_queue(cfg: Config) -> None:
    assert local_queue(cfg, locate(cfg, "0797-6212345")) == "ganzhou-yudu"
    assert local_queue(cfg, locate(cfg, "13907910001")) == "nanchang"
    assert local_queue(cfg, locate(cfg, "07925551234")) == "province"
    assert local_queue(cfg, locate(cfg, "\r\n")) == "province"
