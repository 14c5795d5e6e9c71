"""The retained legacy numbers' dialplan (dialplan/legacy.py) and origin records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dialplan.compile import compile_config
from dialplan.model import Config
from dialplan.validate import load_config_text
from hotline import channel_vars as cv
from tests.unit.test_compile import TARGET, VERSION, Priority, dialplan
from transfer.origin import origin_record

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config_text(SAMPLE.read_text(encoding="utf-8"), "hotline.yaml")


@pytest.fixture(scope="module")
def plan(cfg: Config) -> dict[str, list[Priority]]:
    return dialplan(compile_config(cfg, TARGET, VERSION)["extensions.conf"])


def apps(plan: dict[str, list[Priority]], ctx: str, exten: str) -> list[str]:
    return [p.app for p in plan[ctx] if p.exten == exten]


def test_forward_greets_records_the_origin_and_queues(plan: dict[str, list[Priority]]) -> None:
    a = apps(plan, "from-carrier", "12333")
    assert "Set(__HOTLINE_ORIGIN=legacy)" in a and "Set(__HOTLINE_DEPARTMENT=social)" in a
    assert "Set(CALLERID(name)=12333 人力资源和社会保障厅)" in a
    assert "Set(PJSIP_INHERITABLE_HEADER(add,X-Hotline-Department)=social)" in a
    assert "UserEvent(HotlineOrigin,Number: 12333,Mode: forward,Department: social)" in a
    assert a[-2:] == ["Playback(/srv/hotline/test/current/sounds/legacy-12333)",
                      "Goto(hotline-queue,social,1)"]
    assert not any("hotline-ivr" in x for x in a)  # no generic menu


def test_centre_checks_the_values_then_dials_with_the_header_handler(
    plan: dict[str, list[Priority]],
) -> None:
    for ctx in ("from-carrier", "hotline-legacy"):
        a = apps(plan, ctx, "12315")
        i = a.index(f"Gosub({cv.CTX_HANDOFF_VARS},s,1)")
        assert a[i + 1] == f"Dial(PJSIP/12315@market-centre,20,b({cv.CTX_HANDOFF_HEADERS}^s^1))"
        assert a[-1] == f"Goto({cv.CTX_FAILURE},s,1)"  # no answer: a person


def test_header_values_are_copied_only_after_their_check(plan: dict[str, list[Priority]]) -> None:
    a = apps(plan, cv.CTX_HANDOFF_VARS, "s")
    check = next(i for i, x in enumerate(a) if cv.CASE_RE in x)
    assert a[check].startswith("GotoIf($[${REGEX(") and a[check + 1] == (
        f"Set(__{cv.HDR_CASE}=${{HOTLINE_RAW}})")
    # the raw case reference is never written anywhere but into the checked variable
    assert [x for x in a if "HOTLINE_CASE_REF" in x] == ["Set(HOTLINE_RAW=${HOTLINE_CASE_REF})"]
    h = apps(plan, cv.CTX_HANDOFF_HEADERS, "s")
    assert all("HOTLINE_CASE_REF" not in x for x in h)
    assert f"Set(PJSIP_HEADER(add,{cv.SIP_CASE})=${{{cv.HDR_CASE}}})" in h[0]


def test_relay_up_only_from_its_trunk_and_down_over_it(plan: dict[str, list[Priority]]) -> None:
    assert apps(plan, "from-carrier", "12345797") == []
    up = apps(plan, "from-partner", "12345797")
    assert up[1] == '''GotoIf($["${CHANNEL(endpoint)}" = "ganzhou-centre"]?from_centre)'''
    assert up[2] == "Hangup(21)"
    check = r"GotoIf\(\$\[\$\{REGEX\(\".*\" \$\{HOTLINE_RAW\}\)\}\]\?case_ok:locality\)"
    assert any(re.fullmatch(check, x) for x in up), up
    # the agent's seat gets the checked case reference as an inherited header
    assert "Set(PJSIP_INHERITABLE_HEADER(add,X-Hotline-Case)=${HOTLINE_PARTNER_CASE})" in up
    assert up[-1] == "Goto(hotline-queue,province,1)"
    down = apps(plan, "hotline-legacy", "12345797")
    assert f"Dial(PJSIP/12345@ganzhou-centre,20,b({cv.CTX_HANDOFF_HEADERS}^s^1))" in down


def test_origin_record_checks_the_event_against_the_config(cfg: Config) -> None:
    ev = {"Number": "12345797", "Case": "GZ-1", "Locality": "ganzhou/yudu"}
    assert origin_record(cfg, ev, 5.0) == {
        "number": "12345797", "mode": "relay", "centre": "province", "at": 5.0,
        "trunk": "ganzhou-centre", "partner_case": "GZ-1", "city": "ganzhou", "county": "yudu",
    }
    bad = origin_record(cfg, {**ev, "Case": "x;y", "Locality": "atlantis/x"}, 5.0)
    assert bad is not None and bad["partner_case"] is None and "city" not in bad
    assert origin_record(cfg, {"Number": "12345"}, 5.0) is None  # not a legacy number
    assert origin_record(cfg, {"Number": "999"}, 5.0) is None
