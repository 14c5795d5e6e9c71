from __future__ import annotations

import subprocess
import sys

import pytest

from hotline.auth import (
    Principal,
    check_hash_format,
    hash_password,
    may_act_on_queue,
    may_act_on_seat,
    verify_password,
)

UNDER = {"province": {"province", "nanchang", "ganzhou"}, "nanchang": {"nanchang"}, "ganzhou": {"ganzhou"}}


def test_hash_round_trip_and_wrong_password() -> None:
    h = hash_password("agent-1001", iterations=1000)
    check_hash_format(h)
    assert verify_password("agent-1001", h)
    assert not verify_password("agent-1002", h)
    assert not verify_password("agent-1001", "plain-text")
    assert not verify_password("x", "pbkdf2_sha256$10$!!$!!")
    assert hash_password("same", iterations=1000) != hash_password("same", iterations=1000)  # salted


@pytest.mark.parametrize("bad", ["secret", "md5$1$a$b", "pbkdf2_sha256$many$YQ==$YQ==", "pbkdf2_sha256$10$***$YQ=="])
def test_bad_hash_formats(bad: str) -> None:
    with pytest.raises(ValueError):
        check_hash_format(bad)


def test_sample_passwords_verify() -> None:
    from pathlib import Path

    from dialplan.validate import load_config_text

    cfg = load_config_text((Path(__file__).resolve().parents[2] / "config/hotline.yaml").read_text(), "h.yaml")
    assert verify_password("agent-1001", cfg.users["zhangwei"].password_hash)
    assert cfg.users["sup-nanchang"].centre == "nanchang"


def test_who_may_act_on_what() -> None:
    agent = Principal("zhangwei", "agent", seat="1001")
    sup = Principal("sup-nanchang", "supervisor", centre="nanchang")
    boss = Principal("sup-province", "supervisor", centre="province")
    admin = Principal("admin", "admin")
    assert may_act_on_seat(agent, "1001", "province", UNDER)
    assert not may_act_on_seat(agent, "1002", "province", UNDER)
    assert may_act_on_seat(sup, "2001", "nanchang", UNDER)
    assert not may_act_on_seat(sup, "3001", "ganzhou", UNDER)
    assert may_act_on_seat(boss, "3001", "ganzhou", UNDER)
    assert may_act_on_seat(admin, "3001", "ganzhou", UNDER)
    assert not may_act_on_queue(agent, "province", UNDER)
    assert may_act_on_queue(sup, "nanchang", UNDER) and not may_act_on_queue(sup, "province", UNDER)


def test_passwd_command_prints_a_hash() -> None:
    out = subprocess.run([sys.executable, "-m", "hotline.cli", "passwd", "--stdin"], input="long-enough\n",
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith('password_hash: "pbkdf2_sha256$')
    assert verify_password("long-enough", out.split('"')[1])
