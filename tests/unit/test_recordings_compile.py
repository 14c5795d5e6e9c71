"""The recording steps of the generated dialplan, and the ``recordings:`` config."""

from __future__ import annotations

import re

import pytest

from dialplan.compile import compile_config
from dialplan.model import Recordings, parse_duration
from dialplan.validate import ConfigError
from hotline import channel_vars as cv

from .test_compile import SAMPLE, TARGET, VERSION, dialplan, load, patch

RECORD = f"Gosub({cv.CTX_RECORD},s,1(call))"


@pytest.fixture(scope="module")
def sample() -> str:
    return SAMPLE.read_text(encoding="utf-8")


def plan_of(yaml_text: str) -> dict[str, list]:  # type: ignore[type-arg]
    return dialplan(compile_config(load(yaml_text), TARGET, VERSION)["extensions.conf"])


def test_every_answer_of_a_call_is_followed_by_the_recording(sample: str) -> None:
    plan = plan_of(sample)
    answered = 0
    for ctx, prios in plan.items():
        if ctx.startswith("hotline-seat-"):  # feature codes (*21...): not calls
            continue
        for i, p in enumerate(prios):
            if p.app.startswith("Answer("):
                answered += 1
                assert prios[i + 1].app == RECORD and prios[i + 1].exten == p.exten, (ctx, p)
    # 12345 (hotline-ivr), each legacy number in from-carrier and hotline-legacy,
    # transfers in from 110/119/120/122, the failure path.
    assert answered >= 5
    for ctx in ("hotline-ivr", "from-emergency", cv.CTX_FAILURE):
        assert RECORD in [p.app for p in plan[ctx]], ctx
    legacy = [p for p in plan["from-carrier"] if p.exten != "12345"]
    assert legacy and all(RECORD in [q.app for q in plan["from-carrier"] if q.exten == p.exten]
                          for p in legacy)
    # A call-back is recorded from the citizen's answer.
    assert RECORD in [p.app for p in plan[cv.CTX_CALLBACK_ANSWERED]]


def test_the_recording_subroutine(sample: str) -> None:
    rec = [p.app for p in plan_of(sample)[cv.CTX_RECORD]]
    # A second Gosub on the same channel (IVR relay, failure path) records nothing twice.
    assert rec[0] == f'GotoIf($["${{{cv.RECORDING}}}" != ""]?done)'
    assert rec[-1] == "Return()"
    (path_set,) = [a for a in rec if a.startswith(f"Set({cv.RECORDING}=")]
    # Only Asterisk's ids and the clock in the file name, never caller text.
    assert "CALLERID" not in "".join(rec) and "EXTEN" not in "".join(rec)
    assert path_set == (f"Set({cv.RECORDING}=${{STRFTIME(${{EPOCH}},UTC,%Y/%m/%d)}}/"
                        "${FILTER(0-9A-Za-z._,${CHANNEL(linkedid)})}-${LOCAL(kind)}.wav)")
    # The kind is call unless the caller of the Gosub says survey.
    assert 'Set(LOCAL(kind)=${IF($["${ARG1}" = "survey"]?survey:call)})' in rec
    (mix,) = [a for a in rec if a.startswith("MixMonitor(")]
    assert mix == f"MixMonitor({TARGET.instance}/recordings/${{{cv.RECORDING}}})"  # both directions
    # The dialled number's centre (set from the config) rides along: who may listen.
    event = (f"UserEvent({cv.EVENT_RECORDING},Kind: ${{LOCAL(kind)}},Path: ${{{cv.RECORDING}}},"
             f"Centre: ${{{cv.CENTRE}}})")
    assert event in rec
    hotline_entry = plan_of(sample)["from-carrier"]
    assert any(p.app == f"Set(__{cv.CENTRE}=province)" for p in hotline_entry)


def test_the_root_follows_the_config(sample: str) -> None:
    text = sample.replace("recordings:                        # 录音",
                          "recordings:\n  root: data/rec\n  # 录音", 1)
    mix = [p.app for p in plan_of(text)[cv.CTX_RECORD] if p.app.startswith("MixMonitor(")]
    assert mix == [f"MixMonitor({TARGET.instance}/data/rec/${{{cv.RECORDING}}})"]


def test_durations() -> None:
    assert [parse_duration(v) for v in ("180d", "12h", "30m", "45s", 3600)] == [
        180 * 86400, 12 * 3600, 1800, 45, 3600]
    for bad in ("1y", "-3d", "0d", "d", "1.5d", True, None, "180 days"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_purge_every_bounds() -> None:
    assert Recordings.model_validate({"purge_every": "1m"}).purge_every == 60
    for bad in ("30s", "8d"):
        with pytest.raises(ValueError, match="purge_every"):
            Recordings.model_validate({"purge_every": bad})


@pytest.mark.parametrize("root", ["/var/spool", "../outside", "rec/../../x", "Rec", "a//b", ""])
def test_a_root_outside_the_instance_is_refused(root: str) -> None:
    with pytest.raises(ValueError, match="root"):
        Recordings(root=root)


def test_sample_retention_and_errors_named(sample: str) -> None:
    cfg = load(sample)
    assert cfg.recordings.retention.call == 180 * 86400
    assert cfg.recordings.retention.survey == 90 * 86400
    assert cfg.recordings.purge_every == 3600
    bad = patch(sample, "retention: {call: 180d, survey: 90d}", "retention: {call: 6 months}")
    with pytest.raises(ConfigError) as e:
        load(bad)
    assert re.search(r"recordings\.retention\.call.*not a duration", str(e.value)), str(e.value)
