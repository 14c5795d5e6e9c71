"""Loading and validating config/hotline.yaml: every issue names file, line and key.

Most tests take the real sample, change one thing with an exact string
replacement (which must match exactly once, so a changed sample fails loudly
here rather than silently testing nothing) and compare the whole rendered
message. Expected line numbers are found by searching the patched text, not by
asking the loader, so they check the loader against the text itself.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dialplan import model as m
from dialplan.loader import ConfigError, ConfigIssue, load_yaml_text
from dialplan.validate import load_config, load_config_text, referenced_prompts
from recordings.prompts import prompt_dirs

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
NAME = "hotline.yaml"
UNKNOWN_KEY = "unknown key (see config/README.md for the keys this section takes)"
IDENT_FORM = "does not match the expected form ^[a-z][a-z0-9_-]{0,38}$"


@pytest.fixture(scope="module")
def sample() -> str:
    return SAMPLE.read_text(encoding="utf-8")


def patch(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in the sample"
    return text.replace(old, new)


def line(text: str, snippet: str) -> int:
    """1-based number of the only line of ``text`` that contains ``snippet``."""
    hits = [i for i, row in enumerate(text.splitlines(), 1) if snippet in row]
    assert len(hits) == 1, f"{snippet!r} is on lines {hits}"
    return hits[0]


def issues(text: str, dirs: list[Path] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config_text(text, NAME, dirs or ())
    assert str(e.value) == "\n".join(str(i) for i in e.value.issues)
    return [str(i) for i in e.value.issues]


def one_issue(text: str, dirs: list[Path] | None = None) -> str:
    found = issues(text, dirs)
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def dirs(tmp_path: Path, sample: str) -> list[Path]:
    """config/prompts (admin, empty) then generated/ holding every sample prompt."""
    out = prompt_dirs(tmp_path / "config", tmp_path / "generated")
    for d in out:
        d.mkdir(parents=True)
    for name in load_config_text(sample).prompts:
        (out[1] / f"{name}.wav").write_bytes(b"RIFF")
    return out


# --------------------------------------------------------------------------- the sample


def test_sample_loads() -> None:
    cfg = load_config(SAMPLE)
    assert isinstance(cfg, m.Config)
    assert cfg.hotline.default_queue == "province"
    hotline, legacy = cfg.number("12345"), cfg.number("12333")
    assert hotline is not None and hotline.menu == "main"
    assert legacy is not None and legacy.kind == "legacy" and legacy.mode == "forward"
    assert cfg.menus["main"].choices[0].parsed.kind == "menu"
    assert cfg.menus["main"].fallback.kind == "operator"
    assert cfg.queues["ganzhou-yudu"].members == ("yudu-01",)
    assert cfg.seats["yudu-01"].kind == "remote"
    assert set(cfg.emergency_lines) == {"110", "119", "120", "122"}


def test_sample_loads_with_every_prompt_synthesized(sample: str, dirs: list[Path]) -> None:
    cfg = load_config_text(sample, NAME, dirs)
    assert set(referenced_prompts(cfg)) <= set(cfg.prompts)


def test_unreadable_file_is_an_issue_not_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as e:
        load_config(missing)
    assert str(e.value) == f"{missing}: cannot read file: No such file or directory"
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("hotline: {name: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        load_config(latin1)
    assert str(e.value) == f"{latin1}: not UTF-8 text: invalid continuation byte"


# --------------------------------------------------------------------------- YAML itself


def test_malformed_yaml_names_the_line() -> None:
    text = "version: 1\nhotline:\n  name: 12345\n  default_queue: [province\n"
    with pytest.raises(ConfigError) as e:
        load_config_text(text, NAME)
    assert str(e.value) == (
        "hotline.yaml:5: YAML syntax: while parsing a flow sequence (from line 4) "
        "expected ',' or ']', but got '<stream end>'"
    )


def test_malformed_yaml_in_the_sample(sample: str) -> None:
    text = patch(sample, 'members: ["2001"]', 'members: ["2001"')
    unclosed = line(text, 'members: ["2001",')
    assert one_issue(text) == (
        f"hotline.yaml:{unclosed}: YAML syntax: while parsing a flow sequence "
        "expected ',' or ']', but got '}'"
    )


def test_tab_indentation() -> None:
    assert one_issue("hotline:\n\tname: x\n") == (
        "hotline.yaml:2: YAML syntax: while scanning for the next token "
        "found character '\\t' that cannot start any token"
    )


def test_duplicate_key(sample: str) -> None:
    text = patch(
        sample,
        "  nanchang: {name: 南昌市中心",
        "  province: {name: 重复的省中心, centre: province}\n  nanchang: {name: 南昌市中心",
    )
    first = line(text, "  province: {name: 省中心")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, '重复的省中心')}: queues.province: "
        f"duplicate key (first at line {first})"
    )


def test_every_duplicate_key_is_reported() -> None:
    text = "a: 1\nb:\n  c: 1\n  c: 2\na: 3\n"
    assert issues(text) == [
        "hotline.yaml:4: b.c: duplicate key (first at line 3)",
        "hotline.yaml:5: a: duplicate key (first at line 1)",
    ]


def test_unhashable_key_is_an_issue_not_a_traceback() -> None:
    assert one_issue("? [a, b]\n: 1\n") == (
        "hotline.yaml:1: YAML syntax: while constructing a mapping found unhashable key"
    )


def test_impossible_date(sample: str) -> None:
    text = patch(sample, "holidays: [2026-10-01,", "holidays: [2026-02-30,")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, '2026-02-30')}: YAML syntax: "
        "'2026-02-30' is not a valid date (day is out of range for month)"
    )


def test_merge_keys_are_allowed(sample: str) -> None:
    text = patch(
        sample,
        "  social: {name: 人社专席, centre: province,",
        "  social: {<<: {strategy: ringall}, name: 人社专席, centre: province,",
    )
    assert load_config_text(text).queues["social"].strategy == "ringall"


@pytest.mark.parametrize("text", ["- hotline\n- centres\n", "12345\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    assert one_issue(text) == (
        "hotline.yaml:1: the file must be a mapping of sections (hotline:, centres:, ...)"
    )


def test_empty_file() -> None:
    assert one_issue("# nothing yet\n") == (
        "hotline.yaml: the file must be a mapping of sections (hotline:, centres:, ...)"
    )


# --------------------------------------------------------------------------- shape (pydantic)


def test_unknown_key(sample: str) -> None:
    text = patch(sample, "ring_timeout: 15", "ring_timout: 15")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'ring_timout')}: queues.province.ring_timout: {UNKNOWN_KEY}"
    )


def test_unknown_top_level_section(sample: str) -> None:
    text = patch(sample, "\nseats:", "\nseat:")
    assert issues(text) == [
        # every queue member now names no seat, but shape errors come first and alone
        f"hotline.yaml:{line(text, 'seat:')}: seat: {UNKNOWN_KEY}",
    ]


def test_unknown_action(sample: str) -> None:
    text = patch(sample, 'action: "operator"}', 'action: "fly:away"}')
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'fly:away')}: menus.main.choices[2].action: "
        "unknown action 'fly'; expected one of menu:NAME, queue:NAME, legacy:NAME, "
        "emergency:NAME, callback, play:NAME, hangup:NAME, operator"
    )


def test_missing_required_key(sample: str) -> None:
    old = "  province: {name: 省中心, centre: province, strategy"
    text = patch(sample, old, "  province: {name: 省中心, strategy")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'province: {name: 省中心')}: queues.province.centre: "
        "required key is missing"
    )


def test_missing_top_level_section(sample: str) -> None:
    text = patch(sample, "\nqueues:\n", "\nqueue_list:\n")
    assert issues(text) == [
        # a missing section points at the start of the file's mapping
        f"hotline.yaml:{line(text, 'version: 1')}: queues: required key is missing",
        f"hotline.yaml:{line(text, 'queue_list:')}: queue_list: {UNKNOWN_KEY}",
    ]


def test_after_retries_must_reach_a_person(sample: str) -> None:
    text = patch(sample, "after_retries: operator", "after_retries: hangup:goodbye")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'hangup:goodbye')}: menus.main.after_retries: "
        "after the last retry the caller must reach a person (queue:NAME, operator "
        "or legacy:NUMBER), not 'hangup'"
    )


def test_upper_case_queue_name(sample: str) -> None:
    text = patch(sample, "  ganzhou-yudu: {", "  Ganzhou-Yudu: {")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'Ganzhou-Yudu')}: queues.Ganzhou-Yudu: "
        f"'Ganzhou-Yudu' {IDENT_FORM}"
    )


def test_chinese_queue_name(sample: str) -> None:
    text = patch(sample, "  ganzhou-yudu: {", "  于都远程: {")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, '于都远程:')}: queues.于都远程: '于都远程' {IDENT_FORM}"
    )


def test_upper_case_reference(sample: str) -> None:
    text = patch(sample, "hours: office\n    queue: nanchang", "hours: Office\n    queue: nanchang")
    # Centre.hours is Ident | "always": one issue, not one per branch of the union.
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'hours: Office')}: centres.nanchang.hours: 'Office' {IDENT_FORM}"
    )


def test_upper_case_action_target(sample: str) -> None:
    text = patch(sample, 'action: "queue:province"}', 'action: "queue:Province"}')
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'queue:Province')}: menus.main.choices[1].action: "
        "action target 'Province' must be lower-case letters, digits, - or _"
    )


def test_unquoted_number_key(sample: str) -> None:
    text = patch(sample, '  "110": {name: 公安报警', "  110: {name: 公安报警")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, '110: {name')}: emergency_lines[110]: "
        "Input should be a valid string"
    )


def test_several_shape_errors_together(sample: str) -> None:
    text = patch(sample, "ring_timeout: 15", "ring_timout: 15")
    text = patch(text, 'action: "operator"}', 'action: "fly:away"}')
    text = patch(text, "{centre: nanchang, name: 南昌坐席1", "{name: 南昌坐席1")
    fly, timout, seat = line(text, "fly:away"), line(text, "ring_timout"), line(text, "南昌坐席1")
    assert issues(text) == [
        f"hotline.yaml:{fly}: menus.main.choices[2].action: unknown action 'fly'; expected one "
        "of menu:NAME, queue:NAME, legacy:NAME, emergency:NAME, callback, play:NAME, "
        "hangup:NAME, operator",
        f"hotline.yaml:{timout}: queues.province.ring_timout: {UNKNOWN_KEY}",
        f"hotline.yaml:{seat}: seats.2001.centre: required key is missing",
    ]


# --------------------------------------------------------------------------- cross-references


def test_menu_key_to_unknown_queue(sample: str) -> None:
    text = patch(sample, 'action: "queue:province"}', 'action: "queue:nowhere"}')
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'queue:nowhere')}: menus.main.choices[1].action: "
        "queue 'nowhere' does not exist; known queues: ganzhou, ganzhou-yudu, nanchang, "
        "province, social"
    )


def test_menu_key_to_unknown_menu(sample: str) -> None:
    text = patch(sample, 'action: "menu:social"}', 'action: "menu:housing"}')
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'menu:housing')}: menus.main.choices[0].action: "
        "menu 'housing' does not exist; known menus: main, social"
    )


def test_duplicate_number(sample: str) -> None:
    text = patch(sample, 'number: "12333"', 'number: "12345"')
    # the legacy entry is the second under numbers:, and its number line is the one named
    second = [i for i, row in enumerate(text.splitlines(), 1) if 'number: "12345"' in row][1]
    assert one_issue(text) == (
        f"hotline.yaml:{second}: numbers[1].number: number 12345 is defined twice (also numbers[0])"
    )


def test_agent_in_two_seats(sample: str) -> None:
    text = patch(sample, "agent: liuyang", "agent: zhangwei")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, '省中心坐席2')}: seats.1002.agent: "
        "agent 'zhangwei' already sits at seat '1001'; one seat per agent"
    )


def test_a_seat_id_that_extends_another_with_a_dash(sample: str) -> None:
    # ChanSpy's channel prefix PJSIP/1001- would match PJSIP/1001-2-... as well
    text = patch(sample, '"1002": {', '"1001-2": {')
    assert any(
        m.startswith(f"hotline.yaml:{line(text, '省中心坐席2')}: seats.1001-2: seat id "
                     "'1001-2' starts with seat '1001' and '-': listening to that seat")
        for m in issues(text)
    ), issues(text)
    assert not any("starts with seat" in m for m in issues(patch(sample, '"1002": {', '"10012": {')))


def test_duplicate_dtmf_key(sample: str) -> None:
    text = patch(sample, '{key: "3"', '{key: "2"')
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, '[其他, 咨询]')}: menus.main.choices[2].key: "
        "key 2 is already used by choices[1] of this menu"
    )


def test_key_0_is_reserved_for_the_operator(sample: str) -> None:
    text = patch(sample, '{key: "9"', '{key: "0"')
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, '[工作时间]')}: menus.main.choices[3].key: "
        "key 0 is reserved: it reaches a person from every menu (hotline.operator_keys)"
    )


def test_overflow_loop_is_reported_once(sample: str) -> None:
    text = patch(
        sample, 'members: ["1001", "1002"]}', 'members: ["1001", "1002"], overflow: {to: social}}'
    )
    # nanchang, ganzhou and ganzhou-yudu lead into the loop: fixing it fixes them.
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'overflow: {to: social}')}: queues.province.overflow.to: "
        "overflow loops: province -> social -> province"
    )


def test_overflow_to_itself(sample: str) -> None:
    text = patch(
        sample, "overflow: {after: 30, to: ganzhou}", "overflow: {after: 30, to: ganzhou-yudu}"
    )
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'to: ganzhou-yudu}')}: queues.ganzhou-yudu.overflow.to: "
        "overflow loops: ganzhou-yudu -> ganzhou-yudu"
    )


def test_trunk_address_duplicated(sample: str) -> None:
    text = patch(sample, "address: 127.0.0.5,", "address: 127.0.0.4,")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, '12315市场监管中心')}: trunks.market-centre.address: "
        "127.0.0.4 is already trunk 'yudu-site'; PJSIP identifies trunks by address"
    )


def test_trunk_address_duplicated_on_another_port(sample: str) -> None:
    # pjsip.conf matches a trunk by its address alone: the port does not tell them apart
    text = patch(sample, "address: 127.0.0.5,", "address: 127.0.0.4, port: 5080,")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, '12315市场监管中心')}: trunks.market-centre.address: "
        "127.0.0.4 is already trunk 'yudu-site'; PJSIP identifies trunks by address"
    )


def test_relay_number_needs_a_city_centre_trunk(sample: str) -> None:
    text = patch(sample, "trunk: ganzhou-centre\n", "trunk: market-centre  # relay\n")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'trunk: market-centre  # relay')}: numbers[3].trunk: "
        "mode 'relay' needs a city centre's trunk (kind centre), not 'department'"
    )


def test_seat_with_unknown_centre(sample: str) -> None:
    text = patch(sample, "{centre: nanchang, name: 南昌坐席1", "{centre: jiujiang, name: 南昌坐席1")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, '南昌坐席1')}: seats.2001.centre: "
        "centre 'jiujiang' does not exist; known centres: ganzhou, nanchang, province"
    )


def test_seat_with_unknown_county(sample: str) -> None:
    text = patch(
        sample,
        'trunk: yudu-site, number: "8001"}',
        'trunk: yudu-site, number: "8001", county: ruijin}',
    )
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'county: ruijin')}: seats.yudu-01.county: "
        "county 'ruijin' does not exist; known counties: jinxian, yudu"
    )


def test_fallback_to_a_number_that_is_not_legacy(sample: str) -> None:
    text = patch(sample, "after_retries: queue:social", "after_retries: legacy:12345")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'legacy:12345')}: menus.social.after_retries: "
        "12345 is not a legacy number"
    )


def test_several_reference_errors_together(sample: str) -> None:
    text = patch(sample, 'number: "12333"', 'number: "12345"')
    text = patch(text, "agent: liuyang", "agent: zhangwei")
    text = patch(text, "{centre: nanchang, name: 南昌坐席1", "{centre: jiujiang, name: 南昌坐席1")
    text = patch(text, "address: 127.0.0.5", "address: 127.0.0.4")
    text = patch(text, 'action: "menu:social"}', 'action: "menu:housing"}')
    found = issues(text)
    assert [f.split(": ")[1] for f in found] == [
        "numbers[1].number",
        "menus.main.choices[0].action",
        "seats.1002.agent",
        "seats.2001.centre",
        "trunks.market-centre.address",
    ]
    assert found[2] == (
        f"hotline.yaml:{line(text, '省中心坐席2')}: seats.1002.agent: "
        "agent 'zhangwei' already sits at seat '1001'; one seat per agent"
    )


# --------------------------------------------------------------------------- prompts


def test_missing_prompt_without_prompt_dirs(sample: str) -> None:
    text = patch(sample, "retry_prompt: menu-retry", "retry_prompt: menu-again")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, 'menu-again')}: menus.main.retry_prompt: prompt 'menu-again' "
        "is missing: give its text under prompts: or record menu-again.wav in the prompt folders"
    )


def test_missing_prompt_names_the_prompt_dirs(sample: str, dirs: list[Path]) -> None:
    text = patch(sample, 'action: "operator"}', 'action: "hangup:goodbye-night"}')
    assert one_issue(text, dirs) == (
        f"hotline.yaml:{line(text, 'goodbye-night')}: menus.main.choices[2].action: "
        f"prompt 'goodbye-night' is missing: give its text under prompts: or record "
        f"goodbye-night.wav in {dirs[0]}, {dirs[1]}"
    )


def test_prompt_with_text_but_no_sound_file(sample: str, dirs: list[Path]) -> None:
    (dirs[1] / "office-hours.wav").unlink()
    assert one_issue(sample, dirs) == (
        f"hotline.yaml:{line(sample, 'play:office-hours')}: menus.main.choices[3].action: "
        "prompt 'office-hours' has text but no sound file yet: run `hotline prompts` "
        "(or `make prompts`)"
    )


def test_admin_recording_satisfies_a_prompt_without_text(sample: str, dirs: list[Path]) -> None:
    text = patch(sample, "retry_prompt: menu-retry", "retry_prompt: menu-again")
    (dirs[0] / "menu-again.wav").write_bytes(b"RIFF")
    assert load_config_text(text, NAME, dirs).menus["main"].retry_prompt == "menu-again"


def test_admin_recording_stands_in_for_a_missing_synthesized_file(
    sample: str, dirs: list[Path]
) -> None:
    (dirs[1] / "welcome.wav").unlink()
    (dirs[0] / "welcome.wav").write_bytes(b"RIFF")
    load_config_text(sample, NAME, dirs)


def test_issue_rendering_without_line_or_key() -> None:
    assert str(ConfigIssue("a.yaml", 3, "x.y", "bad")) == "a.yaml:3: x.y: bad"
    assert str(ConfigIssue("a.yaml", None, "x.y", "bad")) == "a.yaml: x.y: bad"
    assert str(ConfigIssue("a.yaml", 3, "", "bad")) == "a.yaml:3: bad"


def test_source_map_lines_of_the_sample(sample: str) -> None:
    _, source = load_yaml_text(sample, NAME)
    assert source.line_of(("queues", "social", "overflow", "to")) == line(
        sample, "  social: {name: 人社专席"
    )
    assert source.line_of(("menus", "main", "choices", 3, "action")) == line(
        sample, "play:office-hours"
    )
    assert source.line_of(("seats", "1003", "no-such-key")) == line(sample, '"1003": {')


def test_readme_documents_every_key() -> None:
    """config/README.md is the admin's reference: each field of the model is in it."""
    readme = (SAMPLE.parent / "README.md").read_text(encoding="utf-8")
    models = [
        v
        for v in vars(m).values()
        if isinstance(v, type) and issubclass(v, m.Strict) and v is not m.Strict
    ]
    missing = [
        f"{model.__name__}.{field}"
        for model in models
        for field in model.model_fields
        if f"`{field}`" not in readme and f"`{field}:`" not in readme
    ]
    assert missing == []
    for kind in m.ACTION_KINDS:
        assert f"`{kind}" in readme, kind


def test_reserved_queue_and_trunk_names_are_refused() -> None:
    text = SAMPLE.read_text(encoding="utf-8").replace("  social: {name: 人社专席", "  i: {name: 人社专席").replace(
        "queue: social}", "queue: i}").replace("queue:social", "queue:i")
    text = text.replace("  carrier: {kind: carrier", "  global: {kind: carrier")
    with pytest.raises(ConfigError) as e:
        load_config_text(text, "hotline.yaml")
    msgs = [str(i) for i in e.value.issues]
    assert any("queues.i: 'i' is reserved by the generated dialplan" in m for m in msgs), msgs
    assert any("trunks.global: 'global' is reserved in pjsip.conf" in m for m in msgs), msgs


def test_a_department_may_not_take_a_transfer_dialplan_name(sample: str) -> None:
    text = patch(sample, "  market: {name: 市场监督管理局", "  join: {name: 市场监督管理局")
    text = patch(text, "department: market\n", "department: join\n")
    assert one_issue(text) == (
        f"hotline.yaml:{line(text, '  join: {name: 市场监督管理局')}: departments.join: "
        "'join' is a name the transfer dialplan uses itself; choose another"
    )
