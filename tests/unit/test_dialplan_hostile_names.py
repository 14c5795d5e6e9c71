"""A department name from the admin's YAML is the one free text written into a dialplan
application's argument (the caller-ID name of a legacy number's calls): nothing in it
may be read by Asterisk as syntax -- no second argument, no application, no variable
or function expanded on the caller's channel."""

from __future__ import annotations

import json
from pathlib import Path

from dialplan.compile import compile_config
from dialplan.validate import load_config_text
from tests.unit.test_compile import TARGET, VERSION, dialplan

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
HOSTILE = "人社${HOTLINE_AGI}$[1+1]),Dial(PJSIP/110@carrier);x\n[evil]"


def test_a_department_name_is_never_expanded_or_split_in_the_dialplan() -> None:
    sample = SAMPLE.read_text(encoding="utf-8")
    old = "social: {name: 人力资源和社会保障厅,"
    assert old in sample
    cfg = load_config_text(sample.replace(old, f"social: {{name: {json.dumps(HOSTILE)},"),
                           "hotline.yaml")
    assert cfg.departments["social"].name == HOSTILE  # the YAML really carried it
    plan = dialplan(compile_config(cfg, TARGET, VERSION)["extensions.conf"])
    names = [p.app for p in plan["from-carrier"]
             if p.exten == "12333" and p.app.startswith("Set(CALLERID(name)=")]
    assert names == ["Set(CALLERID(name)=12333 人社{HOTLINE_AGI}1+1DialPJSIP/110@carrierx)"]
