"""ivr.menu.MenuEngine on the sample config: what each answer leads to.

The engine is pure, so each test plays a caller's answers in and checks the
steps that come out, then the path log that the call record keeps.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dialplan.model import Config
from dialplan.validate import load_config_text
from ivr.locality import Locality
from ivr.menu import NOTHING, Answer, MenuEngine, Step

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
# The sample has no hang-up choice; add one to the main menu.
NINE = '      - {key: "9", words: [工作时间], action: "play:office-hours"}\n'
EIGHT = '      - {key: "8", words: [再见], action: "hangup:goodbye"}\n'
YUDU = Locality("ganzhou", "yudu", "area-code")


@pytest.fixture(scope="module")
def cfg() -> Config:
    text = SAMPLE.read_text(encoding="utf-8")
    assert text.count(NINE) == 1
    return load_config_text(text.replace(NINE, NINE + EIGHT), "hotline.yaml")


def engine(cfg: Config, menu: str = "main", locality: Locality | None = None) -> MenuEngine:
    return MenuEngine(cfg, menu, locality=locality or Locality())


def key(k: str) -> Answer:
    return Answer(digit=k)


def said(words: str, confidence: float = 0.9) -> Answer:
    return Answer(text=words, confidence=confidence)


def route(step: Step) -> tuple[str | None, str | None]:
    assert step.kind == "route", step
    return step.route, step.target


def test_enter_plays_the_menu_prompt(cfg: Config) -> None:
    assert engine(cfg).enter() == Step("prompt", prompt="main-menu", reason="menu main")


def test_dtmf_through_two_levels_to_a_queue(cfg: Config) -> None:
    e = engine(cfg)
    step = e.answer(key("1"))
    assert (step.kind, step.prompt, e.menu_id) == ("prompt", "social-menu", "social")
    assert route(e.answer(key("2"))) == ("queue", "social")
    assert [(p.menu, p.answer, p.decision) for p in e.path] == [
        ("main", "1", "menu:social"),
        ("social", "2", "queue:social"),
    ]


def test_star_goes_back_to_main(cfg: Config) -> None:
    e = engine(cfg)
    e.answer(key("1"))
    step = e.answer(key("*"))
    assert (step.kind, step.prompt, e.menu_id) == ("prompt", "main-menu", "main")
    assert route(e.answer(key("2"))) == ("queue", "province")


def test_back_to_main_resets_the_retries(cfg: Config) -> None:
    e = engine(cfg)
    e.answer(NOTHING)
    e.answer(NOTHING)
    e.answer(key("1"))
    assert e.retries == 0
    e.answer(key("*"))
    assert e.answer(NOTHING).kind == "prompt"  # main counts again from nothing


@pytest.mark.parametrize(
    ("locality", "queue"),
    [
        (YUDU, "ganzhou-yudu"),
        (Locality("nanchang", None, "mobile"), "nanchang"),
        (Locality(), "province"),
    ],
)
def test_operator_key_from_a_submenu_goes_to_the_local_queue(
    cfg: Config, locality: Locality, queue: str
) -> None:
    e = engine(cfg, locality=locality)
    e.answer(key("1"))
    step = e.answer(key("0"))
    assert route(step) == ("queue", queue)
    assert step.reason == "operator"
    assert e.path[-1].decision == "operator"


@pytest.mark.parametrize("words", ["我要人工", "转人工服务", "人工客服"])
def test_operator_word_in_recognised_text(cfg: Config, words: str) -> None:
    e = engine(cfg, "social", YUDU)
    assert route(e.answer(said(words))) == ("queue", "ganzhou-yudu")


@pytest.mark.parametrize(
    ("menu", "words", "line"),
    [
        ("main", "我家着火了", "119"),
        ("social", "着火了快来", "119"),
        ("main", "路口发生车祸", "122"),
        ("social", "出了车祸", "122"),
        ("main", "救命", "120"),
        ("social", "有人抢劫", "110"),
    ],
)
def test_emergency_words_from_any_menu(cfg: Config, menu: str, words: str, line: str) -> None:
    e = engine(cfg, menu)
    step = e.answer(said(words))
    assert route(step) == ("emergency", line)
    assert e.path[-1].decision == f"emergency:{line}"


def test_invalid_key_is_a_retry_with_the_retry_prompt(cfg: Config) -> None:
    e = engine(cfg)
    step = e.answer(key("7"))
    assert step == Step("prompt", prompt="menu-retry", reason="retry")
    assert e.retries == 1
    assert (e.path[-1].via, e.path[-1].decision) == ("key", "retry")
    # ... and a valid key afterwards still works
    assert route(e.answer(key("2"))) == ("queue", "province")


def test_unmatched_speech_is_a_retry(cfg: Config) -> None:
    e = engine(cfg)
    assert e.answer(said("今天天气怎么样")).prompt == "menu-retry"
    assert e.path[-1].via == "speech"


def test_silence_until_retries_end_reaches_a_person(cfg: Config) -> None:
    e = engine(cfg, locality=YUDU)
    retries = cfg.menus["main"].retries
    for _ in range(retries):
        assert e.answer(NOTHING) == Step("prompt", prompt="menu-retry", reason="retry")
    step = e.answer(NOTHING)
    assert route(step) == ("queue", "ganzhou-yudu")  # after_retries: operator, local first
    assert step.route != "hangup"
    assert [p.via for p in e.path] == ["timeout"] * (retries + 1)
    assert e.path[-1].decision == "fallback operator"


def test_submenu_after_retries_is_its_queue(cfg: Config) -> None:
    e = engine(cfg, "social")
    for _ in range(cfg.menus["social"].retries):
        assert e.answer(key("5")).kind == "prompt"
    assert route(e.answer(NOTHING)) == ("queue", "social")


def test_every_menu_falls_back_to_a_person(cfg: Config) -> None:
    for mid, menu in cfg.menus.items():
        e = engine(cfg, mid)
        step = e.enter()
        for _ in range(menu.retries + 1):
            step = e.answer(NOTHING)
        assert step.kind == "route" and step.route in ("queue", "legacy"), mid


def test_play_returns_a_prompt_then_the_menu_again(cfg: Config) -> None:
    e = engine(cfg)
    step = e.answer(key("9"))
    assert step == Step("prompt", prompt="office-hours", reason="play")
    assert e.menu_id == "main"
    assert e.after_play() == Step("prompt", prompt="main-menu", reason="menu main")
    assert route(e.answer(key("2"))) == ("queue", "province")


def test_hangup_choice_plays_its_prompt(cfg: Config) -> None:
    step = engine(cfg).answer(key("8"))
    assert step == Step("route", prompt="goodbye", route="hangup", reason="hangup")


@pytest.mark.parametrize(
    ("menu", "words", "decision"),
    [
        ("main", "我想问一下养老金的事", "menu:social"),
        ("main", "我要投诉", "queue:province"),
        ("main", "请问工作时间", "play:office-hours"),
        ("social", "医疗报销", "queue:social"),
        ("social", "返回", "menu:main"),
    ],
)
def test_keywords_in_free_text_pick_the_choice(
    cfg: Config, menu: str, words: str, decision: str
) -> None:
    e = engine(cfg, menu)
    e.answer(said(words))
    assert e.path[-1].decision == decision


def test_key_wins_over_the_words_of_another_choice(cfg: Config) -> None:
    e = engine(cfg)
    e.answer(Answer(digit="2", text="社保"))
    assert e.path[-1].decision == "queue:province"


def test_path_log_records_each_answer(cfg: Config) -> None:
    e = engine(cfg)
    e.answer(NOTHING)
    e.answer(said("社保", confidence=0.82))
    e.answer(key("1"))
    got = [(p.menu, p.answer, p.via, p.decision, p.confidence) for p in e.path]
    assert got == [
        ("main", "", "timeout", "retry", None),
        ("main", "社保", "speech", "menu:social", 0.82),
        ("social", "1", "key", "queue:social", None),
    ]
    assert all(p.at_ms >= 0 for p in e.path)
    assert [p.at_ms for p in e.path] == sorted(p.at_ms for p in e.path)


def test_a_menu_answer_sets_the_locality_and_the_local_queue() -> None:
    text = SAMPLE.read_text(encoding="utf-8").replace(
        '      - {key: "3", words: [其他, 咨询], action: "operator"}',
        '      - {key: "3", words: [其他, 咨询], action: "operator"}\n'
        '      - {key: "4", words: [于都], city: ganzhou, county: yudu, action: "operator"}',
    )
    cfg = load_config_text(text, "hotline.yaml")
    engine = MenuEngine(cfg, "main")
    step = engine.answer(Answer(text="我在于都"))
    assert engine.locality == Locality("ganzhou", "yudu", "menu")
    assert (step.route, step.target) == ("queue", "ganzhou-yudu")


def test_callback_choice_is_a_callback_from_the_local_queue() -> None:
    text = SAMPLE.read_text(encoding="utf-8").replace(
        NINE, NINE + '      - {key: "7", words: [回电, 回拨], action: callback}\n'
    )
    cfg = load_config_text(text, "hotline.yaml")
    step = MenuEngine(cfg, "main", locality=YUDU).answer(key("7"))
    assert step == Step("route", route="callback", target="ganzhou-yudu", reason="callback")
    step = MenuEngine(cfg, "main", locality=Locality()).answer(said("请给我回电"))
    assert route(step) == ("callback", cfg.hotline.default_queue)
