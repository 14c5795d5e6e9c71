"""The generated configuration for waiting callers and call-backs, and its checks.

Security first: the call-back's Dial goes to the stored number over the carrier
trunk only, from a context no inbound context reaches; the inbound contexts
are unchanged (tests/unit/test_compile.py checks them for every config).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dialplan.compile import compile_config
from dialplan.model import Config
from dialplan.say import QUEUE_SOUNDS
from dialplan.validate import load_config_text, referenced_prompts
from hotline import channel_vars as cv
from tests.unit.configs import issues

from .test_compile import INBOUND, TARGET, VERSION, Section, dialplan, sections

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"


@pytest.fixture(scope="module")
def sample() -> str:
    return SAMPLE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def cfg(sample: str) -> Config:
    return load_config_text(sample, "hotline.yaml")


@pytest.fixture(scope="module")
def files(cfg: Config) -> dict[str, str]:
    return compile_config(cfg, TARGET, VERSION)


def queue_section(files: dict[str, str], qid: str) -> Section:
    (s,) = [s for s in sections(files["queues.conf"]) if s.name == qid]
    return s


def test_position_and_expected_wait_in_mandarin_with_release_sounds(
    cfg: Config, files: dict[str, str]
) -> None:
    s = queue_section(files, "province")
    assert s.get("announce-position") == "yes" and s.get("announce-holdtime") == "yes"
    assert s.get("announce-frequency") == str(cfg.queues["province"].announce_every)
    assert s.get("min-announce-frequency") == "15"
    assert s.get("announce-round-seconds") == "0"
    for option, prompt in QUEUE_SOUNDS.items():
        assert s.get(option) == f"{TARGET.sounds}/{prompt}"
    assert s.get("queue-thankyou") == ""  # off: a free agent would wait for it
    say = files["say.conf"]
    assert "mode = new" in say and f"{TARGET.sounds}/num-" in say


def test_wait_message_and_call_back_offer_take_turns(cfg: Config, files: dict[str, str]) -> None:
    q = cfg.queues["province"]
    s = queue_section(files, "province")
    assert (
        s.get("periodic-announce") == f"{TARGET.sounds}/callback-offer,{TARGET.sounds}/queue-wait"
    )
    assert s.get("periodic-announce-frequency") == str(q.message_every)
    assert s.get("periodic-announce-startdelay") == str(q.callback_after)
    assert s.get("context") == cv.CTX_CALLBACK_OFFER
    # A queue without call-backs takes no key and plays no periodic message.
    n = queue_section(files, "nanchang")
    assert n.get("context") is None and n.get("periodic-announce-frequency") == "0"


def test_no_announcements_when_off(sample: str) -> None:
    text = sample.replace(
        'members: ["2001"], overflow', 'members: ["2001"], announce_every: 0, overflow', 1
    )
    files = compile_config(load_config_text(text, "hotline.yaml"), TARGET, VERSION)
    n = queue_section(files, "nanchang")
    assert n.get("announce-position") == "no" and n.get("announce-frequency") == "0"


def test_each_queue_step_keeps_the_place_in_time(cfg: Config, files: dict[str, str]) -> None:
    plan = dialplan(files["extensions.conf"])
    for qid in cfg.queues:
        apps = [p.app for p in plan["hotline-queue"] if p.exten == qid]
        gosub = apps.index(f"Gosub({cv.CTX_POSITION},s,1)")
        queue = next(i for i, a in enumerate(apps) if a.startswith(f"Queue({qid},"))
        assert gosub < queue and apps[queue].endswith(f",,,,${{{cv.QUEUE_POSITION}}})")
    pos = [p.app for p in plan[cv.CTX_POSITION] if p.exten == "s"]
    assert pos[0].startswith(
        f"Set(__{cv.FIRST_QUEUED}=${{IF("
    )  # kept once set: inherited, never reset
    assert "Set(CHANNEL(language)=zh)" in pos
    agi = pos.index(f"AGI(${{HOTLINE_AGI}}/{cv.SCRIPT_QUEUE_ENTRY})")
    assert pos[agi - 1] == "Set(TIMEOUT(absolute)=3)" and "Set(AGIEXITONHANGUP=yes)" in pos[:agi]
    assert f'ExecIf($["${{AGISTATUS}}" != "SUCCESS"]?Set({cv.QUEUE_POSITION}=))' in pos
    assert pos[-1] == "Return()"
    t = [p.app for p in plan[cv.CTX_POSITION] if p.exten == "T"]
    assert t[-1] == "Return()" and f"Set({cv.QUEUE_POSITION}=)" in t  # too slow: no position


def test_offer_context_back_in_line_unless_stored(files: dict[str, str]) -> None:
    plan = dialplan(files["extensions.conf"])
    offer = plan[cv.CTX_CALLBACK_OFFER]
    assert {p.exten for p in offer} == {"1", "T"}  # only the digit 1 leaves a queue
    apps = [p.app for p in offer if p.exten == "1"]
    assert f"AGI(${{HOTLINE_AGI}}/{cv.SCRIPT_CALLBACK_OFFER})" in apps
    assert apps[-1] == f"Goto(hotline-queue,${{{cv.QUEUE}}},1)"
    assert not [a for a in apps if a.startswith("Hangup")]  # stored: hotline-done hangs up


def test_call_back_dials_the_stored_digits_over_the_carrier_only(
    cfg: Config, files: dict[str, str]
) -> None:
    plan = dialplan(files["extensions.conf"])
    dials = [
        (ctx, p.app)
        for ctx, prios in plan.items()
        for p in prios
        if "Dial(" in p.app and "${" in p.app.split(",")[0]
    ]
    assert [ctx for ctx, _ in dials] == [cv.CTX_CALLBACK_DIAL]  # the only Dial to a variable number
    ((_, dial),) = dials
    m = re.fullmatch(r"Dial\(PJSIP/\$\{(\w+)\}@([a-z-]+),(\d+),U\(([a-z-]+)\^.*\)\)", dial)
    assert m, dial
    assert m[1] == cv.CB_NUMBER and cfg.trunks[m[2]].kind == "carrier"
    assert int(m[3]) == cfg.callbacks.ring_citizen and m[4] == cv.CTX_CALLBACK_ANSWERED
    apps = [p.app for p in plan[cv.CTX_CALLBACK_DIAL] if p.exten == "s"]
    check = next(i for i, a in enumerate(apps) if "REGEX" in a)
    assert apps[check] == f'GotoIf($[${{REGEX("^[0-9]{{5,20}}$" ${{{cv.CB_NUMBER}}})}}]?dial)'
    assert check < next(i for i, a in enumerate(apps) if a.startswith("Dial("))
    assert apps[check + 2] == "Hangup(21)"  # anything else: no call at all


def test_no_inbound_context_reaches_the_call_back_contexts(files: dict[str, str]) -> None:
    plan = dialplan(files["extensions.conf"])
    assert set(INBOUND) <= set(plan)
    for ctx, prios in plan.items():
        for p in prios:
            for target in (cv.CTX_CALLBACK_DIAL, cv.CTX_CALLBACK_ANSWERED):
                assert target + "," not in p.app, (ctx, p)  # no Goto/Gosub/GotoIf into them
    # the dial context is only entered by the controller's Originate; the offer context
    # only by queues.conf context= of a queue offering call-backs
    assert "Goto(hotline-callback," not in files["extensions.conf"]


def test_call_back_queue_log_lines_carry_the_original_call(files: dict[str, str]) -> None:
    text = files["extensions.conf"]
    for ev in (cv.EV_DIAL, cv.EV_FAIL, cv.EV_END):
        assert f"QueueLog(${{{cv.CB_QUEUE}}},${{{cv.CB_CALLID}}},${{{cv.CB_SEAT}}},{ev}," in text
    assert f"QueueLog(${{ARG1}},${{ARG2}},${{ARG3}},{cv.EV_CALLBACK},${{ARG4}})" in text


def test_prompts_are_required_only_where_used(cfg: Config) -> None:
    refs = referenced_prompts(cfg)
    assert refs["queue-thereare"] == ("queues", "province", "announce_every")
    assert refs["callback-offer"] == ("callbacks", "offer_prompt")
    assert refs["queue-wait"] == ("queues", "province", "wait_message")


def test_call_back_trunk_must_be_a_carrier(sample: str) -> None:
    text = sample.replace("  trunk: carrier\n", "  trunk: yudu-site\n", 1)
    (issue,) = issues(text)
    assert issue.endswith(
        "callbacks.trunk: trunk 'yudu-site' is a county trunk; citizens are called back "
        "over a carrier trunk"
    )
    (issue,) = issues(sample.replace("  trunk: carrier\n", "  trunk: nowhere\n", 1))
    assert "callbacks.trunk: trunk 'nowhere' does not exist" in issue


def test_announce_every_is_off_or_at_least_ten_seconds(sample: str) -> None:
    (issue,) = issues(sample.replace("announce_every: 60, wait", "announce_every: 5, wait", 1))
    assert issue.endswith(
        "queues.province.announce_every: announce_every is 0 (no announcements) or 10-600 seconds"
    )


def test_announcement_prompts_must_exist(sample: str) -> None:
    text = sample.replace("  num-7: 七\n", "", 1)
    (issue,) = issues(text)
    assert "queues.province.announce_every: prompt 'num-7' is missing" in issue
