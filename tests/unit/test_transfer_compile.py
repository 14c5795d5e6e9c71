"""What dialplan.compile generates for emergency warm transfers (transfer/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dialplan.compile import compile_config
from dialplan.model import Config
from dialplan.validate import load_config_text, referenced_prompts
from hotline import channel_vars as cv
from tests.unit.test_compile import TARGET, VERSION, Priority, apps_of, dialplan, sections

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config_text(SAMPLE.read_text(encoding="utf-8"), "hotline.yaml")


@pytest.fixture(scope="module")
def files(cfg: Config) -> dict[str, str]:
    return compile_config(cfg, TARGET, VERSION)


@pytest.fixture(scope="module")
def plan(files: dict[str, str]) -> dict[str, list[Priority]]:
    return dialplan(files["extensions.conf"])


def prompt(name: str) -> str:
    return f"/srv/hotline/test/current/sounds/{name}"


def test_caller_context_plays_the_line_message_then_joins_the_bridge(
    cfg: Config, plan: dict[str, list[Priority]]
) -> None:
    ctx = plan[cv.CTX_XFER_CALLER]
    for line, e in cfg.emergency_lines.items():
        assert e.prompt is not None
        assert apps_of(ctx, line) == [f"Playback({prompt(e.prompt)})", "Goto(join,1)"]
    assert apps_of(ctx, "join") == [
        'GotoIf($["${HOTLINE_XFER}" = ""]?hotline-failure,s,1)',  # no transfer id: a person
        "ConfBridge(${HOTLINE_XFER},hotline-xfer,hotline-xfer-caller)",
        "Set(HOTLINE_ABORT_REASON=transfer-${HOTLINE_XFER}-${CONFBRIDGE_RESULT})",
        "Goto(hotline-failure,s,1)",  # alive but out of the bridge: a person takes the call
    ]
    assert apps_of(ctx, "i") == ["Goto(hotline-failure,s,1)"]


def test_agent_and_dispatcher_contexts_join_the_same_bridge(
    cfg: Config, plan: dict[str, list[Priority]]
) -> None:
    assert apps_of(plan[cv.CTX_XFER_DISPATCHER], "s")[1:] == [  # announce_case off (sample)
        "ConfBridge(${HOTLINE_XFER},hotline-xfer,hotline-xfer-dispatcher)",
        "Hangup()",
    ]
    announced = dialplan(compile_config(
        cfg.model_copy(update={"transfers": cfg.transfers.model_copy(update={"announce_case": True})}),
        TARGET, VERSION)["extensions.conf"])
    agent = plan[cv.CTX_XFER_AGENT]
    assert apps_of(agent, "s")[1:] == [
        "ConfBridge(${HOTLINE_XFER},hotline-xfer,hotline-xfer-agent)",
        "Hangup()",
    ]
    assert apps_of(agent, "failed") == [
        f"Playback({prompt(cfg.transfers.failed_prompt)})",
        "Goto(s,1)",
    ]
    # transfers.announce_case: the digits first, checked again here
    assert apps_of(announced[cv.CTX_XFER_DISPATCHER], "s")[1:8] == [
        'GotoIf($[${REGEX("^[0-9]{1,40}$" ${HOTLINE_XFER_ANNOUNCE})}]?:join)',
        f"Playback({prompt('transfer-case')})",
        "Set(HOTLINE_I=0)",
        "GotoIf($[${HOTLINE_I} >= ${LEN(${HOTLINE_XFER_ANNOUNCE})}]?join)",
        f"Playback({prompt('num-')}${{HOTLINE_XFER_ANNOUNCE:${{HOTLINE_I}}:1}})",
        "Set(HOTLINE_I=$[${HOTLINE_I} + 1])",
        "Goto(digit)",
    ]
    assert apps_of(announced[cv.CTX_XFER_DISPATCHER], "s")[8:] == [
        "ConfBridge(${HOTLINE_XFER},hotline-xfer,hotline-xfer-dispatcher)",
        "Hangup()",
    ]


def test_ivr_emergency_offer_asks_the_controller_first_then_dials_itself(
    cfg: Config, plan: dict[str, list[Priority]]
) -> None:
    for line, e in cfg.emergency_lines.items():
        apps = apps_of(plan["hotline-emergency"], line)
        event = f"UserEvent(HotlineEmergency,Line: {line})"
        wait = f"Wait({cv.XFER_IVR_HANDOFF_WAIT})"
        dial = f"Dial(PJSIP/{e.route.number}@{e.route.trunk},{e.answer_timeout})"
        assert apps.index(event) < apps.index(wait) < apps.index(dial)
        assert apps[-1] == "Goto(hotline-failure,s,1)"


def test_confbridge_profiles_end_for_nobody_and_hold_a_lone_caller(files: dict[str, str]) -> None:
    secs = {s.name: s for s in sections(files["confbridge.conf"])}
    assert secs[cv.XFER_BRIDGE_PROFILE].get("type") == "bridge"
    for name in (cv.XFER_USER_CALLER, cv.XFER_USER_AGENT, cv.XFER_USER_DISPATCHER):
        s = secs[name]
        assert s.get("type") == "user" and s.get("quiet") == "yes"
        # no marked users: nobody's leaving kicks the others
        assert s.get("marked") is None and s.get("end_marked") is None
        assert s.get("wait_marked") is None
    assert secs[cv.XFER_USER_CALLER].get("music_on_hold_when_empty") == "yes"
    assert secs[cv.XFER_USER_AGENT].get("music_on_hold_when_empty") == "yes"
    assert secs[cv.XFER_USER_DISPATCHER].get("music_on_hold_when_empty") == "no"


def test_feature_codes_raise_the_request_event_on_seats_only(
    cfg: Config, files: dict[str, str]
) -> None:
    (appmap,) = [s for s in sections(files["features.conf"]) if s.name == "applicationmap"]
    assert appmap.options == [
        (f"hotline-xfer-{line}", f"**{line},self,UserEvent(HotlineTransfer,Line: {line})")
        for line in cfg.emergency_lines
    ]
    wanted = "DYNAMIC_FEATURES=" + "#".join(f"hotline-xfer-{line}" for line in cfg.emergency_lines)
    endpoints = [
        s for s in sections(files["pjsip.conf"]) if s.get("type") == "endpoint" and s.template
    ]
    assert set(cfg.softphone_seats()) <= {s.name for s in endpoints}  # else nothing is checked
    for s in endpoints:
        expected = [wanted] if s.name in cfg.softphone_seats() else []
        assert s.getall("set_var") == expected, s.name


def test_controller_reads_user_events(files: dict[str, str]) -> None:
    (hotline,) = [s for s in sections(files["manager.conf"]) if s.name == "hotline"]
    assert "user" in (hotline.get("read") or "").split(",")


def test_every_transfer_prompt_is_copied_into_the_release(cfg: Config) -> None:
    refs = referenced_prompts(cfg)
    assert refs["transfer-failed"] == ("transfers", "failed_prompt")
    for line in cfg.emergency_lines:
        assert refs[f"transfer-{line}"] == ("emergency_lines", line, "prompt")


def test_nothing_is_generated_without_emergency_lines() -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    text = text[: text.index("emergency_lines:")]
    text = text.replace(
        "  emergency_words:                 # said in a menu: offer that line at once\n", ""
    )
    for line in ("110", "119", "120", "122"):
        text = "\n".join(x for x in text.splitlines() if not x.startswith(f'    "{line}": ['))
    cfg = load_config_text(text, "hotline.yaml")
    assert not cfg.emergency_lines
    files = compile_config(cfg, TARGET, VERSION)
    # the hand-off bridge stays for the departments and centres (transfer/destinations.py)
    caller = dialplan(files["extensions.conf"])[cv.CTX_XFER_CALLER]
    assert sorted({p.exten for p in caller}) == ["ganzhou-centre", "i", "join", "market"]
    assert "applicationmap" not in files["features.conf"]
    assert "set_var" not in files["pjsip.conf"]
    assert "transfer-failed" not in referenced_prompts(cfg)
