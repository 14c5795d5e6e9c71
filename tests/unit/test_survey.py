"""The satisfaction survey (issue 6 item 3) without Asterisk: the pure state machine,
scheduling with a frozen clock and calling hours, the config checks, the compiled
context, and the service with a fake AMI (persistence, restarts, the sink, rights).

The fake AMI knows exactly the actions the service may send (anything else fails
the test) and behaves like Asterisk where the service relies on it: an Originate
creates a channel whose uniqueid is the ChannelId.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from dialplan.compile import compile_config
from dialplan.model import Config
from dialplan.validate import load_config, referenced_prompts
from hotline.ami import AmiActionError
from hotline.amiproto import AmiMessage
from hotline.auth import Forbidden, Principal
from ivr.menu import Answer
from queues.agents import BadRequest
from queues.hours import DEFAULT_TZ
from tests.unit.configs import issues
from workorders import survey_names as sn
from workorders.survey import (
    Outcome,
    Policy,
    State,
    SurveyJob,
    TransitionRefused,
    calling_open,
    choose,
    due,
    finish_attempt,
    mark_answered,
    new_job,
    outcome_of,
    start_attempt,
    transition,
)
from workorders.survey_service import SurveyService
from workorders.survey_store import SurveyStore

from .test_compile import INBOUND, TARGET, VERSION, dialplan

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
ADMIN = Principal("admin", "admin")
SUP = Principal("sup-province", "supervisor", centre="province")
AGENT = Principal("zhangwei", "agent", seat="1001")
T0 = 1_800_000_000.0
P = Policy(max_attempts=3, retry_delay=600.0)


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(SAMPLE)


def job(ref: str = "GD-1", number: str = "13907910001", closed: float = T0) -> SurveyJob:
    return new_job("sv1", ref, number, closed, closed, 600)


# ------------------------------------------------------------------ the state machine


def test_new_job_waits_for_the_delay_and_keeps_digits_only() -> None:
    j = new_job("sv1", "GD-2026-0001", "+86 139 0791 0001", T0, T0 + 5, 600)
    assert j.state == State.SCHEDULED and j.number == "13907910001"
    assert j.not_before == T0 + 600
    assert j.history[0]["to"] == "scheduled"


@pytest.mark.parametrize("number", ["110", "12345", "1390791000", "abc", "13907910001;x",
                                    "PJSIP/1001", ""])
def test_new_job_refuses_a_number_that_is_not_a_citizens(number: str) -> None:
    with pytest.raises(ValueError, match="is not a number to call"):
        new_job("sv1", "GD-1", number, T0, T0, 0)


@pytest.mark.parametrize("ref", ["", "a b", "x,y", "x" * 65, "../etc", "GD-1)"])
def test_new_job_refuses_a_strange_order_reference(ref: str) -> None:
    with pytest.raises(ValueError, match="order reference"):
        new_job("sv1", ref, "13907910001", T0, T0, 0)


def test_answered_attempt_ends_the_job_with_the_result() -> None:
    j = job()
    aid = start_attempt(j, T0 + 600)
    assert aid == "sv1-1" and j.state == State.CALLING and j.attempt_id == aid
    assert mark_answered(j, aid, T0 + 605) and not mark_answered(j, aid, T0 + 606)
    assert finish_attempt(j, aid, Outcome.ANSWERED, T0 + 620, P, result="dissatisfied")
    assert j.state == State.ANSWERED and j.result == "dissatisfied" and j.result_at == T0 + 620
    assert j.attempts[0]["outcome"] == "answered" and j.attempts[0]["answered_at"] == T0 + 605
    assert not finish_attempt(j, aid, Outcome.BUSY, T0 + 630, P)  # once only
    assert [h["to"] for h in j.history] == ["scheduled", "calling", "answered"]


def test_unanswered_tries_are_retried_then_no_answer() -> None:
    j = job()
    now = T0 + 600
    for n, outcome in enumerate((Outcome.NO_ANSWER, Outcome.BUSY), start=1):
        aid = start_attempt(j, now)
        assert aid == f"sv1-{n}"
        finish_attempt(j, aid, outcome, now + 30, P)
        assert j.state == State.SCHEDULED and j.not_before == now + 30 + 600
        now = j.not_before
    aid = start_attempt(j, now)
    finish_attempt(j, aid, Outcome.NO_ANSWER, now + 30, P)
    assert j.state == State.NO_ANSWER and j.result == "no_answer"
    assert [a["outcome"] for a in j.attempts] == ["no-answer", "busy", "no-answer"]


@pytest.mark.parametrize("outcome", [Outcome.NO_CHOICE, Outcome.HUNG_UP])
def test_a_citizen_reached_without_a_choice_is_not_called_again(outcome: Outcome) -> None:
    j = job()
    aid = start_attempt(j, T0)
    finish_attempt(j, aid, outcome, T0 + 40, P)
    assert j.state == State.NO_ANSWER and j.result == "no_answer" and len(j.attempts) == 1


def test_refused_every_time_is_failed_and_a_bad_number_at_once() -> None:
    j = job()
    p = Policy(max_attempts=2, retry_delay=5)
    for _ in range(2):
        finish_attempt(j, start_attempt(j, T0), Outcome.REFUSED, T0, p)
    assert j.state == State.FAILED
    k = job()
    finish_attempt(k, start_attempt(k, T0), Outcome.BAD_NUMBER, T0, P)
    assert k.state == State.FAILED and len(k.attempts) == 1


def test_transitions_outside_the_table_are_refused() -> None:
    j = job()
    with pytest.raises(TransitionRefused, match="scheduled -> answered is not allowed"):
        transition(j, State.ANSWERED, T0, "no")
    with pytest.raises(ValueError, match="needs a result"):
        finish_attempt(j, start_attempt(j, T0), Outcome.ANSWERED, T0, P, result="great")


def test_a_stale_attempt_changes_nothing() -> None:
    j = job()
    start_attempt(j, T0)
    assert not finish_attempt(j, "sv1-9", Outcome.BUSY, T0, P)
    assert not mark_answered(j, "sv1-9", T0)
    assert j.state == State.CALLING


@pytest.mark.parametrize(
    ("reason", "cause", "outcome"),
    [
        ("3", None, Outcome.NO_ANSWER),
        ("5", None, Outcome.BUSY),
        ("0", "17", Outcome.BUSY),  # a 486: Reason 0, Cause 17
        ("3", "16", Outcome.NO_ANSWER),
        ("8", None, Outcome.FAILED),
        (None, "34", Outcome.FAILED),
        (None, None, Outcome.UNKNOWN),
    ],
)
def test_outcome_of_what_ami_said(reason: str | None, cause: str | None, outcome: Outcome) -> None:
    assert outcome_of(reason, cause) == outcome


# ------------------------------------------------------------------ scheduling


def sched(ref: str, jid: str, not_before: float) -> SurveyJob:
    j = new_job(jid, ref, "13907910001", not_before, not_before, 0)
    return j


def test_due_oldest_first_one_call_per_order_and_a_ceiling() -> None:
    a, b, c, d = (sched("GD-1", "a", T0), sched("GD-1", "b", T0 - 10), sched("GD-2", "c", T0 + 5),
                  sched("GD-3", "d", T0 - 5))
    assert due([a, b, c, d], T0, True, 10) == ["b", "d"]  # c not yet; a: GD-1 is taken by b
    assert due([a, b, c, d], T0, True, 1) == ["b"]
    assert due([a, b, c, d], T0, False, 10) == []  # outside calling hours
    start_attempt(b, T0)
    assert due([a, b, c, d], T0 + 5, True, 10) == ["d", "c"]  # GD-1 is being called
    assert due([a, b, c, d], T0 + 5, True, 2) == ["d"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=DEFAULT_TZ)


def test_calling_hours_weekdays_and_holiday_calendar(cfg: Config) -> None:
    assert cfg.survey.hours == "office"
    assert calling_open(cfg, at("2026-09-30T09:00"))  # a Wednesday
    assert not calling_open(cfg, at("2026-09-30T12:30"))  # lunch
    assert not calling_open(cfg, at("2026-09-30T20:00"))
    assert not calling_open(cfg, at("2026-10-01T10:00"))  # National Day
    assert not calling_open(cfg, at("2026-10-03T10:00"))  # a Saturday
    assert calling_open(cfg, at("2026-10-10T10:00"))  # a Saturday worked (調休)
    # the same instant seen from UTC: 01:00Z is 09:00 in Jiangxi
    assert calling_open(cfg, datetime.fromisoformat("2026-09-30T01:00+00:00"))
    always = cfg.model_copy(update={"survey": cfg.survey.model_copy(update={"hours": "always"})})
    assert calling_open(always, at("2026-10-01T03:00"))


def test_choose_by_key_or_the_longest_word(cfg: Config) -> None:
    ch = cfg.survey.choices
    assert choose(ch, Answer(digit="1")) == "satisfied"
    assert choose(ch, Answer(digit="3")) == "dissatisfied"
    assert choose(ch, Answer(digit="5")) is None
    assert choose(ch, Answer(text="我觉得不满意")) == "dissatisfied"
    assert choose(ch, Answer(text="基本满意吧")) == "basic"
    assert choose(ch, Answer(text="满意")) == "satisfied"
    assert choose(ch, Answer(text="不知道")) is None
    assert choose(ch, Answer()) is None


# ------------------------------------------------------------------ config and dialplan


def sample() -> str:
    return SAMPLE.read_text(encoding="utf-8")


def test_survey_trunk_must_be_a_carrier() -> None:
    text = sample().replace("  trunk: carrier                   # must be",
                            "  trunk: emergency #", 1)
    (issue,) = issues(text)
    assert "survey.trunk: trunk 'emergency' is a emergency trunk; survey calls go to citizens " \
           "over a carrier trunk" in issue
    (issue,) = issues(sample().replace("  trunk: carrier                   # must be",
                                       "  trunk: nowhere #", 1))
    assert "survey.trunk: trunk 'nowhere' does not exist" in issue


def test_survey_hours_must_exist_and_choices_are_distinct() -> None:
    (issue,) = issues(sample().replace("  hours: office                    # survey",
                                       "  hours: nights #", 1))
    assert "survey.hours: hours 'nights' does not exist" in issue
    found = issues(sample().replace('一般], key: "2"', '一般], key: "1"', 1))
    assert any("each survey answer needs its own key" in i for i in found), found


def test_survey_prompts_are_required(cfg: Config) -> None:
    refs = referenced_prompts(cfg)
    assert refs["survey-question"] == ("survey", "question_prompt")
    assert refs["survey-thanks"] == ("survey", "thanks_prompt")
    assert refs["survey-invalid"] == ("survey", "invalid_prompt")


def test_survey_context_runs_the_script_and_no_inbound_call_reaches_it(cfg: Config) -> None:
    text = compile_config(cfg, TARGET, VERSION)["extensions.conf"]
    plan = dialplan(text)
    apps = [p.app for p in plan[sn.CTX_SURVEY] if p.exten == "s"]
    assert f"AGI(${{HOTLINE_AGI}}/{sn.SCRIPT_SURVEY})" in apps
    assert not any(a.startswith("Dial(") for a in apps)  # the call IS the Originate's channel
    assert set(INBOUND) <= set(plan)
    for ctx, prios in plan.items():
        for p in prios:
            assert sn.CTX_SURVEY + "," not in p.app, (ctx, p)  # no Goto/Gosub into it
            assert "include" not in p.exten or sn.CTX_SURVEY not in p.app, (ctx, p)


# ------------------------------------------------------------------ the service


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FakeAmi:
    def __init__(self) -> None:
        self.connected = True
        self.originates: list[dict[str, Any]] = []
        self.channels: set[str] = set()
        self.refuse = False

    async def action_list(self, name: str, **fields: Any) -> list[dict[str, str]]:
        assert name == "CoreShowChannels", f"unexpected AMI list action {name}"
        return [{"Event": "CoreShowChannel", "Uniqueid": u} for u in self.channels]

    async def originate(self, originate_id: str, channel: str, **kw: Any) -> None:
        assert originate_id not in {o["id"] for o in self.originates}, "ChannelId reused"
        self.originates.append({"id": originate_id, "channel": channel, **kw})
        if self.refuse:
            raise AmiActionError("Originate", AmiMessage([("Response", "Error"),
                                                          ("Message", "no trunk")]))
        self.channels.add(originate_id)


class World:
    def __init__(self, tmp: Path, cfg: Config, hours: str = "always") -> None:
        sv = cfg.survey.model_copy(update={"hours": hours, "retries": 1, "retry_delay": 60,
                                           "delay": 30})
        self.cfg = cfg.model_copy(update={"survey": sv})
        self.ami = FakeAmi()
        self.clock = Clock()
        self.wall = at("2026-09-30T09:00")
        self.db = f"sqlite:///{tmp / 'surveys.sqlite'}"
        self.results: list[tuple[str, str, float]] = []
        self.sink_fails = False
        self.svc = self.service()

    def sink(self, ref: str, result: str, when: float) -> None:
        if self.sink_fails:
            raise ConnectionError("work orders unavailable")
        self.results.append((ref, result, when))

    def service(self) -> SurveyService:
        svc = SurveyService(config=lambda: self.cfg, ami=lambda: self.ami,
                            store=SurveyStore(self.db), on_result=self.sink, clock=self.clock,
                            wallclock=lambda: self.wall)
        svc.load()
        return svc

    def restart(self) -> SurveyService:
        self.svc.store.close()
        self.svc = self.service()
        return self.svc

    def tick(self, seconds: float = 0.0) -> None:
        self.clock.now += seconds
        asyncio.run(self.svc.tick())

    def hangup(self, aid: str, cause: str, reason: str | None = None) -> None:
        self.ami.channels.discard(aid)
        if reason is not None:
            self.svc.on_originate_response({"Response": "Failure", "Uniqueid": aid,
                                            "Reason": reason})
        self.svc.on_hangup({"Uniqueid": aid, "Cause": cause})


@pytest.fixture
def world(tmp_path: Path, cfg: Config) -> World:
    return World(tmp_path, cfg)


def test_called_after_the_delay_at_the_stored_number_over_the_carrier(world: World) -> None:
    w = world
    j = w.svc.schedule("GD-7", "13907910001", T0)
    w.tick(10)
    assert w.ami.originates == []  # the delay (30 s) is not over
    w.tick(25)
    (o,) = w.ami.originates
    assert o["id"] == f"{j.id}-1" and o["channel"] == "PJSIP/13907910001@carrier"
    assert o["context"] == sn.CTX_SURVEY and o["exten"] == "s"
    assert o["variables"] == {sn.JOB: j.id, sn.ORDER: "GD-7"}
    assert o["caller_id"] == "12345 <12345>" and o["timeout_ms"] == w.cfg.survey.ring_timeout * 1000
    # the same order closed again while its survey is open: the same job
    assert w.svc.schedule("GD-7", "13907910002", T0).id == j.id


def test_the_order_s_centre_goes_with_the_survey_call(world: World, tmp_path: Path) -> None:
    """So the survey call's recording is placed in the order's centre (the dialplan's
    UserEvent reports HOTLINE_CENTRE); a closed order passes its centre on."""
    from hotline import channel_vars as cv
    from workorders.plugin import open_store
    from workorders.survey_plugin import connect

    w = world
    orders = open_store(lambda: w.cfg, tmp_path)
    connect(orders, w.svc)
    from datetime import UTC

    closed = {"ref": "GD-30", "caller": "13907910001", "centre": "ganzhou",
              "closed_at": datetime.fromtimestamp(T0, UTC)}
    orders._fire_closed(closed)  # what WorkOrderStore.act does when an order closes
    w.svc.store.db.drain()  # the job's save is on the store's writer thread
    j = w.svc.store.recent(order_ref="GD-30")[0]
    assert j.centre == "ganzhou"
    w.svc.schedule("GD-31", "13907910002", T0)  # by hand: no centre
    w.tick(60)
    sent = {o["variables"][sn.ORDER]: o["variables"] for o in w.ami.originates}
    assert sent["GD-30"] == {sn.JOB: j.id, sn.ORDER: "GD-30", cv.CENTRE: "ganzhou"}
    assert cv.CENTRE not in sent["GD-31"]
    orders.close()


def test_answer_reported_once_through_the_sink(world: World) -> None:
    w = world
    j = w.svc.schedule("GD-8", "13907910001", T0 - 30)
    w.tick()
    aid = f"{j.id}-1"
    assert w.svc.answered(aid) is not None and w.svc.job_of(aid) is not None
    assert w.svc.finish(aid, Outcome.ANSWERED, result="dissatisfied")
    w.ami.channels.discard(aid)
    w.tick(1)
    assert w.results == [("GD-8", "dissatisfied", T0 + 1 - 1)]
    w.tick(5)
    assert len(w.results) == 1 and j.id not in w.svc.open
    stored = w.svc.store.get(j.id)
    assert stored is not None and stored.reported_at and stored.state == State.ANSWERED
    assert w.svc.store.attempts(j.id)[0]["outcome"] == "answered"


def test_sink_down_keeps_the_result_until_it_takes_it_even_across_a_restart(world: World) -> None:
    w = world
    w.sink_fails = True
    j = w.svc.schedule("GD-9", "13907910001", T0 - 30)
    w.tick()
    w.svc.finish(f"{j.id}-1", Outcome.ANSWERED, result="basic")
    w.ami.channels.clear()
    w.tick(1)
    assert w.results == []
    w.restart()
    assert j.id in w.svc.open
    w.sink_fails = False
    w.tick(1)
    assert w.results == [("GD-9", "basic", T0)]


def test_busy_then_no_answer_is_retried_then_reported_no_answer(world: World) -> None:
    w = world
    j = w.svc.schedule("GD-10", "13907910001", T0 - 30)
    w.tick()
    w.hangup(f"{j.id}-1", "17", reason="0")  # 486 Busy Here
    w.tick(1)
    job1 = w.svc.store.get(j.id)
    assert job1 is not None and job1.state == State.SCHEDULED
    assert job1.attempts[0]["outcome"] == "busy"
    w.tick(30)
    assert len(w.ami.originates) == 1  # retry_delay is 60 s
    w.tick(31)
    assert [o["id"] for o in w.ami.originates] == [f"{j.id}-1", f"{j.id}-2"]
    w.hangup(f"{j.id}-2", "16", reason="3")  # rang out
    w.tick(1)
    assert w.results == [("GD-10", "no_answer", w.clock.now)]
    done = w.svc.store.get(j.id)
    assert done is not None and done.state == State.NO_ANSWER
    assert [a["outcome"] for a in done.attempts] == ["busy", "no-answer"]


def test_outside_calling_hours_nothing_is_called(tmp_path: Path, cfg: Config) -> None:
    w = World(tmp_path, cfg, hours="office")
    w.wall = at("2026-10-01T10:00")  # National Day
    w.svc.schedule("GD-11", "13907910001", T0 - 30)
    w.tick(3600)
    assert w.ami.originates == []
    w.wall = at("2026-10-08T08:31")
    w.tick(1)
    assert len(w.ami.originates) == 1


@pytest.mark.parametrize("tampered", ["110&PJSIP/110@emergency", "13907910001@evil",
                                      "+8613907910001", "1390791000x"])
def test_a_stored_number_that_no_longer_passes_is_never_dialled(world: World,
                                                                tampered: str) -> None:
    """Defence in depth: schedule() keeps digits only, and _launch() checks the stored
    number once more, so a row changed in the database is never dialled."""
    import json as json_mod

    from sqlalchemy import text

    w = world
    j = w.svc.schedule("GD-21", "13907910001", T0 - 60)
    asyncio.run(w.svc.saved())  # rows are written on the store's writer thread
    with w.svc.store.db.engine.begin() as c:
        raw = c.execute(text("SELECT record FROM survey_jobs WHERE id = :i"), {"i": j.id}).scalar()
        rec = json_mod.loads(raw)
        assert rec["number"] == "13907910001"
        rec["number"] = tampered
        c.execute(text("UPDATE survey_jobs SET record = :r WHERE id = :i"),
                  {"r": json_mod.dumps(rec), "i": j.id})
    w.restart()
    w.tick(1)
    assert w.ami.originates == []
    stored = w.svc.store.get(j.id)
    assert stored is not None and stored.state == State.FAILED, stored
    assert stored.history[-1]["reason"] == "the stored number is not a callable number"
    assert stored.attempts == []  # not one try was made


def test_restart_while_ringing_neither_loses_nor_doubles_the_call(world: World) -> None:
    w = world
    j = w.svc.schedule("GD-12", "13907910001", T0 - 30)
    w.tick()
    aid = f"{j.id}-1"
    w.restart()  # the channel still rings: nothing is sent again
    w.tick(10)
    assert [o["id"] for o in w.ami.originates] == [aid]
    assert w.svc.open[j.id].state == State.CALLING
    # its AGI session reaches the new controller
    assert w.svc.answered(aid) is not None
    w.svc.finish(aid, Outcome.ANSWERED, result="satisfied")
    w.ami.channels.clear()
    w.tick(1)
    assert w.results == [("GD-12", "satisfied", w.clock.now - 1)]
    assert len(w.ami.originates) == 1


def test_restart_after_the_call_vanished_counts_a_try_and_calls_again(world: World) -> None:
    w = world
    j = w.svc.schedule("GD-13", "13907910001", T0 - 30)
    w.tick()
    w.ami.channels.clear()  # ended while the controller was away: nobody saw how
    w.restart()
    w.tick(5)  # past the grace an Originate has to show its channel
    got = w.svc.store.get(j.id)
    assert got is not None and got.state == State.SCHEDULED
    assert got.attempts[0]["outcome"] == "unknown"
    w.tick(61)
    assert [o["id"] for o in w.ami.originates] == [f"{j.id}-1", f"{j.id}-2"]


def test_a_fresh_originate_is_not_settled_before_its_channel_shows(world: World) -> None:
    w = world
    j = w.svc.schedule("GD-14", "13907910001", T0 - 30)
    w.tick()
    w.ami.channels.clear()
    w.tick(1)  # within the grace: might be on its way
    assert w.svc.open[j.id].state == State.CALLING
    w.tick(3)
    assert w.svc.open[j.id].state == State.SCHEDULED


def test_refused_originate_is_a_try_and_never_the_same_channel_id(world: World) -> None:
    w = world
    w.ami.refuse = True
    j = w.svc.schedule("GD-15", "13907910001", T0 - 30)
    w.tick()
    w.tick(61)
    assert [o["id"] for o in w.ami.originates] == [f"{j.id}-1", f"{j.id}-2"]
    assert w.results == [("GD-15", "no_answer", w.clock.now)]
    assert w.svc.store.get(j.id).state == State.FAILED  # type: ignore[union-attr]


def test_http_rights_and_listing(world: World, tmp_path: Path) -> None:
    from workorders.plugin import open_store

    w = world
    orders = open_store(lambda: w.cfg, tmp_path)  # the orders decide who reads a survey
    w.svc.visible_orders = orders.visible_refs
    with pytest.raises(Forbidden):
        w.svc.create(SUP, "GD-16", "13907910001")
    with pytest.raises(Forbidden):
        w.svc.listing(AGENT)
    with pytest.raises(BadRequest, match="is not a number to call"):
        w.svc.create(ADMIN, "GD-16", "110")
    with pytest.raises(BadRequest, match="closed_at"):
        w.svc.create(ADMIN, "GD-16", "13907910001", "yesterday")
    made = w.svc.create(ADMIN, "GD-16", "13907910001")
    asyncio.run(w.svc.saved())  # what POST /surveys waits for before it answers
    assert made["created_by"] == "admin" and made["not_before"] == T0 + 30
    assert [j["id"] for j in w.svc.listing(SUP, "open")] == [made["id"]]
    assert w.svc.listing(SUP, "answered") == []
    assert w.svc.listing(SUP, "all", order_ref="GD-16")[0]["order_ref"] == "GD-16"
    assert w.svc.get(SUP, made["id"])["state"] == "scheduled"
    with pytest.raises(BadRequest, match="state must be one of"):
        w.svc.listing(SUP, "sleeping")
    # GD-16 is no work order: placed in no centre, so not a city centre's supervisor's
    city = Principal("sup-nanchang", "supervisor", centre="nanchang")
    assert w.svc.listing(city, "all") == []
    orders.close()


# ------------------------------------------------------------------ the AGI script


class FakeChannel:
    """The facade the AGI script sees: each prompt or wait gives the next scripted key
    (None: nothing); "HANGUP" hangs up."""

    def __init__(self, uniqueid: str, keys: list[str | None]) -> None:
        import logging

        self.uniqueid = uniqueid
        self.log = logging.getLogger("test")
        self.keys = list(keys)
        self.played: list[str] = []

    def _next(self) -> str | None:
        from ivr.agi import AgiCommandError, AgiResponse, ChannelHungUp

        key = self.keys.pop(0) if self.keys else None
        if key == "HANGUP":
            raise ChannelHungUp("16")
        if key == "FAIL":  # what STREAM FILE answers when the caller hangs up during it
            raise AgiCommandError("STREAM FILE", AgiResponse(200, "-1"))
        return key

    async def stream_file(self, name: str, escape_digits: str = "", *,
                          max_wait: float | None = None) -> str | None:
        self.played.append(name.rsplit("/", 1)[-1])
        key = self._next()
        return key if escape_digits else None

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        return self._next()


class FakeApp:
    def __init__(self, cfg: Config, svc: SurveyService | None) -> None:
        self.config = cfg
        self.surveys = svc

    def prompt(self, name: str) -> str:
        return f"/sounds/{name}"

    def prompt_wait(self, name: str, margin: float = 5.0) -> float:
        return margin


def run_script(w: World, keys: list[str | None]) -> tuple[FakeChannel, SurveyJob]:
    from agi_scripts.survey import survey as script

    j = w.svc.schedule("GD-20", "13907910001", T0 - 30)
    w.tick()
    ch = FakeChannel(f"{j.id}-1", keys)
    asyncio.run(script(ch, FakeApp(w.cfg, w.svc)))  # type: ignore[arg-type]
    got = w.svc.store.get(j.id)
    assert got is not None
    return ch, got


def test_script_key_during_the_question_is_the_answer_then_thanks(world: World) -> None:
    ch, j = run_script(world, ["3"])
    assert ch.played == ["survey-question", "survey-thanks"]
    assert j.state == State.ANSWERED and j.result == "dissatisfied"
    assert j.attempts[0]["answered_at"] and j.attempts[0]["detail"] == "by key"


def test_script_asks_once_more_after_nothing_or_a_wrong_key(world: World) -> None:
    ch, j = run_script(world, [None, None, "9", "2"])  # silence; 9 during "invalid" is ignored
    assert ch.played == ["survey-question", "survey-invalid", "survey-question", "survey-thanks"]
    assert j.result == "basic"


def test_script_no_choice_after_the_repeat_hangs_up_without_thanks(world: World) -> None:
    ch, j = run_script(world, ["9", None, None, None])
    assert ch.played == ["survey-question", "survey-invalid", "survey-question"]
    assert j.state == State.NO_ANSWER and j.attempts[0]["outcome"] == "no-choice"
    assert j.attempts[0]["detail"] == "no choice, then nothing"


@pytest.mark.parametrize("how", ["HANGUP", "FAIL"])
def test_script_hang_up_before_choosing_is_recorded(world: World, how: str) -> None:
    from ivr.agi import AgiError

    with pytest.raises(AgiError):
        run_script(world, [None, how])
    (j,) = world.svc.store.recent()
    assert j.state == State.NO_ANSWER and j.attempts[0]["outcome"] == "hung-up"


def test_script_for_a_channel_that_is_no_survey_call_plays_nothing(world: World) -> None:
    from agi_scripts.survey import survey as script

    ch = FakeChannel("1800.99", ["1"])
    asyncio.run(script(ch, FakeApp(world.cfg, world.svc)))  # type: ignore[arg-type]
    assert ch.played == []


def test_an_answered_call_that_hung_up_waits_for_its_agi_session(world: World) -> None:
    w = world
    j = w.svc.schedule("GD-21", "13907910001", T0 - 30)
    w.tick()
    aid = f"{j.id}-1"
    w.svc.answered(aid)
    w.tick(10)
    w.hangup(aid, "16")  # the Hangup event may come before the script notices
    w.tick(1)
    assert w.svc.open[j.id].state == State.CALLING
    w.svc.finish(aid, Outcome.HUNG_UP, detail="hung up before choosing")
    w.tick(1)
    assert w.results == [("GD-21", "no_answer", T0 + 11)]
    # and without a word from the script (it never ran to its end): a try, called again
    k = w.svc.schedule("GD-22", "13907910002", T0 - 30)
    w.tick()
    w.svc.answered(f"{k.id}-1")
    w.hangup(f"{k.id}-1", "16")
    w.tick(4)
    assert w.svc.open[k.id].state == State.SCHEDULED
    assert w.svc.open[k.id].attempts[0]["outcome"] == "unknown"


def test_a_closed_order_without_a_callable_number_is_accounted_for(world: World) -> None:
    w = world
    j = w.svc.schedule("GD-23", "anonymous", T0)  # from the work orders' listener
    assert j.state == State.FAILED and j.result == "no_answer" and j.number == ""
    w.tick()
    assert w.ami.originates == [] and w.results == [("GD-23", "no_answer", T0)]
    with pytest.raises(BadRequest, match="order reference"):
        w.svc.schedule("GD 24", "13907910001", T0)


class Orders:
    """Stands in for the work-order store in :func:`workorders.survey_plugin.connect`."""

    def __init__(self) -> None:
        self.closed: list[Any] = []
        self.surveys: list[tuple[str, str, threading.Thread]] = []

    def on_closed(self, callback: Any) -> None:
        self.closed.append(callback)

    def record_survey(self, ref: str, result: str, at: datetime) -> None:
        self.surveys.append((ref, result, threading.current_thread()))

    def visible_refs(self, who: Any, refs: Any) -> set[str]:
        return set(refs)


async def test_an_order_closed_in_a_worker_thread_is_surveyed_from_the_event_loop(
    tmp_path: Path, cfg: Config
) -> None:
    """The HTTP handlers run the work-order transitions in worker threads: the survey of an
    order closed there is scheduled on the loop, and its result goes back off the loop."""
    from workorders.survey_plugin import connect

    w = World(tmp_path, cfg)
    orders = Orders()
    await w.svc.start()
    try:
        connect(orders, w.svc)
        scheduled_in: list[threading.Thread] = []
        schedule = w.svc.schedule

        def spy(*args: Any, **kw: Any) -> SurveyJob:
            scheduled_in.append(threading.current_thread())
            return schedule(*args, **kw)

        w.svc.schedule = spy  # type: ignore[method-assign]
        (closed,) = orders.closed
        await asyncio.to_thread(closed, {"ref": "GD-40", "caller": "13907910001",
                                         "closed_at": None, "centre": "nanchang"})
        assert scheduled_in == [threading.current_thread()]  # the loop's thread
        (job,) = [j for j in w.svc.open.values() if j.order_ref == "GD-40"]
        assert job.centre == "nanchang"  # the order's centre goes with its survey
        await w.svc.saved()
        assert w.svc.store.get(job.id) is not None
        assert w.svc.on_result is not None
        done = w.svc.on_result("GD-40", "satisfied", T0)
        assert done is not None
        await done
        assert [(r, s) for r, s, _ in orders.surveys] == [("GD-40", "satisfied")]
        assert orders.surveys[0][2] is not threading.current_thread()
    finally:
        await w.svc.stop()
