"""dialplan.compile: the security and behaviour properties of the generated files.

No snapshots: each test parses the text it needs (a small parser of Asterisk's
config syntax below) and checks one property against the config it came from,
so a harmless reformatting passes and a hole (a pattern extension in an inbound
context, a Dial to a caller-chosen number, an AMI user that may reload) fails.
Syntax references:
https://docs.asterisk.org/Fundamentals/Asterisk-Configuration/Asterisk-Configuration-Files/Config-File-Format/
https://docs.asterisk.org/Configuration/Dialplan/Contexts-Extensions-and-Priorities/
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

from dialplan.compile import (
    Target,
    compile_asterisk_conf,
    compile_config,
    config_version,
    text,
)
from dialplan.model import Config
from dialplan.validate import load_config_text
from hotline import channel_vars as cv

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
VERSION = "0123456789abcdef"
TARGET = Target(
    instance=PurePosixPath("/srv/hotline/test"),
    modules_dir=PurePosixPath("/usr/lib/x86_64-linux-gnu/asterisk/modules"),
    ami_secret="controller-secret",
    ami_admin_secret="admin-secret",
    source="config/hotline.yaml",
)
INBOUND = ("from-carrier", "from-partner", "from-seat", "from-emergency")


# ------------------------------------------------------------------ parsing


@dataclass
class Section:
    name: str
    template: str  # "(media)", "(!)" or ""
    options: list[tuple[str, str]] = field(default_factory=list)

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.options if k == key), None)

    def getall(self, key: str) -> list[str]:
        return [v for k, v in self.options if k == key]


HEADER_RE = re.compile(r"^\[([^\]]*)\](\([^)]*\))?$")


def sections(conf: str) -> list[Section]:
    """``[name](template)`` sections with their ``key = value`` / ``key => value`` lines."""
    out: list[Section] = []
    for raw in conf.splitlines():
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        m = HEADER_RE.match(line)
        if m:
            out.append(Section(m[1], m[2] or ""))
            continue
        key, sep, value = re.split(r"\s*(=>|=)\s*", line, maxsplit=1)
        assert sep and out, f"not an option inside a section: {raw!r}"
        out[-1].options.append((key, value))
    return out


def typed(conf: str, name: str, kind: str) -> Section:
    """The one pjsip.conf section ``[name]`` with ``type = kind``."""
    found = [s for s in sections(conf) if s.name == name and s.get("type") == kind]
    assert len(found) == 1, f"[{name}] type={kind}: {len(found)} sections"
    return found[0]


@dataclass
class Priority:
    exten: str
    app: str  # "Dial(PJSIP/110@emergency,8)"


def dialplan(conf: str) -> dict[str, list[Priority]]:
    """extensions.conf as ``{context: [priority, ...]}`` in file order.

    ``same =>`` continues the last ``exten =>``. Any other line in a context
    (``include =>``, ``switch =>``) is kept with exten ``"<include>"`` etc. so
    that a test can see it.
    """
    out: dict[str, list[Priority]] = {}
    ctx: str | None = None
    exten = ""
    for raw in conf.splitlines():
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if m := HEADER_RE.match(line):
            ctx = m[1]
            assert ctx not in out, f"context [{ctx}] written twice"
            out[ctx] = []
            continue
        assert ctx is not None, raw
        key, _, value = (p.strip() for p in line.partition("=>"))
        if key == "exten":
            exten, _prio, app = value.split(",", 2)
        elif key == "same":
            assert exten, f"same => before any exten in [{ctx}]"
            _prio, app = value.split(",", 1)
        else:
            out[ctx].append(Priority(f"<{key}>", value))
            continue
        out[ctx].append(Priority(exten, app))
    return out


def extens(prios: list[Priority]) -> list[str]:
    return list(dict.fromkeys(p.exten for p in prios))


def apps_of(prios: list[Priority], exten: str) -> list[str]:
    return [p.app for p in prios if p.exten == exten]


def yaml_numbers(cfg: Config) -> set[str]:
    """Every dialable number the admin wrote in the YAML."""
    out = {n.number for n in cfg.numbers}
    out |= {d.number for d in cfg.departments.values() if d.number}
    out |= {s.number for s in cfg.seats.values() if s.number}
    for e in cfg.emergency_lines.values():
        out |= {r.number for r in (e.route, e.alternate) if r is not None}
    return out


# ------------------------------------------------------------------ fixtures


def load(yaml_text: str) -> Config:
    return load_config_text(yaml_text, "hotline.yaml")


def patch(yaml_text: str, old: str, new: str) -> str:
    assert yaml_text.count(old) == 1, f"{old!r} occurs {yaml_text.count(old)} times"
    return yaml_text.replace(old, new)


@pytest.fixture(scope="module")
def sample() -> str:
    return SAMPLE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def cfg(sample: str) -> Config:
    return load(sample)


@pytest.fixture(scope="module")
def files(cfg: Config) -> dict[str, str]:
    return compile_config(cfg, TARGET, VERSION)


@pytest.fixture(scope="module")
def plan(files: dict[str, str]) -> dict[str, list[Priority]]:
    return dialplan(files["extensions.conf"])


# ------------------------------------------------------------------ every file


def test_every_file_starts_with_the_generated_header(files: dict[str, str]) -> None:
    assert {"modules.conf", "pjsip.conf", "extensions.conf", "queues.conf", "manager.conf"} <= set(
        files
    )
    for name, body in files.items():
        first, second, third = body.splitlines()[:3]
        assert first == "; GENERATED FILE - DO NOT EDIT.", name
        assert second == f"; {name} generated by `hotline apply` from config/hotline.yaml", name
        assert third.startswith(f"; config version {VERSION}."), name


def test_header_source_cannot_break_out_of_the_comment(cfg: Config) -> None:
    target = Target(TARGET.instance, TARGET.modules_dir, "s", source='x.yaml\n[evil]\nload = ;"\\')
    body = compile_config(cfg, target, VERSION)["modules.conf"]
    header = "; modules.conf generated by `hotline apply` from x.yamlevilload = "
    assert body.splitlines()[1] == header
    assert "[evil]" not in body


def test_config_version_is_a_short_hash_of_the_yaml(sample: str) -> None:
    v = config_version(sample)
    assert re.fullmatch(r"[0-9a-f]{16}", v)
    assert config_version(sample + "\n") != v


# ------------------------------------------------------------------ modules.conf


def test_modules_loads_only_what_it_lists_and_never_anonymous(files: dict[str, str]) -> None:
    (mods,) = sections(files["modules.conf"])
    assert mods.name == "modules"
    assert mods.get("autoload") == "no"
    loads = mods.getall("load")
    assert "res_pjsip_endpoint_identifier_ip.so" in loads
    assert not [m for m in loads if "anonymous" in m]
    assert "anonymous" not in files["modules.conf"]


# ------------------------------------------------------------------ pjsip.conf


def test_pjsip_transports_bind_the_configured_address(sample: str) -> None:
    sip = "sip: {bind: 127.0.0.1, port: 5060}"
    cfg = load(patch(sample, sip, "sip: {bind: 127.0.0.9, port: 5070}"))
    conf = compile_config(cfg, TARGET, VERSION)["pjsip.conf"]
    transports = [s for s in sections(conf) if s.get("type") == "transport"]
    assert {s.name for s in transports} == {"transport-udp", "transport-tcp"}
    for s in transports:
        assert s.get("bind") == "127.0.0.9:5070"
    assert ipaddress.ip_address(cfg.network.sip.bind).is_loopback


def test_pjsip_sample_binds_loopback(cfg: Config, files: dict[str, str]) -> None:
    transports = [s for s in sections(files["pjsip.conf"]) if s.get("type") == "transport"]
    assert transports  # else the checks below check nothing
    for s in transports:
        host, _, port = (s.get("bind") or "").rpartition(":")
        assert ipaddress.ip_address(host).is_loopback, s
        assert (host, int(port)) == (cfg.network.sip.bind, cfg.network.sip.port)


@pytest.mark.parametrize(
    ("kind", "context"),
    [
        ("carrier", "from-carrier"),
        ("emergency", "from-emergency"),
        ("county", "from-partner"),
        ("department", "from-partner"),
        ("centre", "from-partner"),
    ],
)
def test_pjsip_trunk_identified_by_address_into_its_context(
    cfg: Config, files: dict[str, str], kind: str, context: str
) -> None:
    trunks = {tid: t for tid, t in cfg.trunks.items() if t.kind == kind}
    assert trunks, f"the sample has no {kind} trunk"
    conf = files["pjsip.conf"]
    for tid, t in trunks.items():
        ident = typed(conf, tid, "identify")
        assert ident.get("match") == t.address
        assert ident.get("endpoint") == tid
        ep = typed(conf, tid, "endpoint")
        assert ep.get("context") == context
        assert ep.get("identify_by") == "ip"
        assert ep.get("auth") is None


def test_pjsip_every_softphone_seat_authenticates_into_from_seat(
    cfg: Config, files: dict[str, str]
) -> None:
    conf = files["pjsip.conf"]
    seats = cfg.softphone_seats()
    assert len(seats) == 5
    for sid, seat in seats.items():
        ep = typed(conf, sid, "endpoint")
        assert ep.get("context") == "from-seat"
        assert ep.get("auth") == f"{sid}-auth"
        auth = typed(conf, f"{sid}-auth", "auth")
        assert auth.get("auth_type") == "userpass"
        assert auth.get("username") == sid
        assert auth.get("password") == seat.password
    # A remote seat is a number behind its county's trunk, not an endpoint.
    assert not [s for s in sections(conf) if s.name == "yudu-01"]


def test_pjsip_every_endpoint_context_is_inbound(cfg: Config, files: dict[str, str]) -> None:
    endpoints = [s for s in sections(files["pjsip.conf"])
                 if s.get("type") == "endpoint" and s.template != "(!)"]
    assert {s.name for s in endpoints} == set(cfg.trunks) | set(cfg.softphone_seats())
    for s in endpoints:
        assert s.get("context") in INBOUND, s.name


def test_pjsip_has_no_anonymous_endpoint(files: dict[str, str]) -> None:
    conf = files["pjsip.conf"]
    assert not [s for s in sections(conf) if s.name == "anonymous"]
    (glob,) = [s for s in sections(conf) if s.get("type") == "global"]
    order = glob.get("endpoint_identifier_order") or ""
    assert "anonymous" not in order.split(",")


# ------------------------------------------------------------------ extensions.conf


def test_inbound_contexts_have_no_pattern_but_emergency(plan: dict[str, list[Priority]]) -> None:
    for ctx in INBOUND:
        assert ctx in plan, ctx
        patterns = [e for e in extens(plan[ctx]) if e.startswith("_")]
        assert patterns == (["_X."] if ctx == "from-emergency" else []), ctx
        assert not [p for p in plan[ctx] if p.exten.startswith("<")], f"include/switch in {ctx}"


def test_inbound_contexts_dial_only_numbers_from_the_yaml(
    cfg: Config, plan: dict[str, list[Priority]]
) -> None:
    allowed = yaml_numbers(cfg)
    dials = 0
    for ctx in INBOUND:
        for p in plan[ctx]:
            if "Dial(" not in p.app:
                continue
            dials += 1
            m = re.fullmatch(
                r"Dial\(PJSIP/(\d+)@([a-z][a-z0-9_-]*),\d+(,b\(hotline-handoff-headers\^s\^1\))?\)",
                p.app,
            )
            assert m, f"{ctx}: {p.app}"
            assert m[1] in allowed and m[2] in cfg.trunks, f"{ctx}: {p.app}"
    assert dials == 1  # the sample's 12315 goes to its department's centre


def test_from_carrier_answers_exactly_the_configured_numbers(
    cfg: Config, plan: dict[str, list[Priority]]
) -> None:
    # relay numbers are for the city centre's trunk only (from-partner, checked there)
    assert extens(plan["from-carrier"]) == [n.number for n in cfg.numbers if n.mode != "relay"]
    hotline = [n.number for n in cfg.numbers if n.kind == "hotline"]
    relay = [n.number for n in cfg.numbers if n.mode == "relay"]
    assert extens(plan["from-partner"]) == hotline + relay
    # Seats also get the agent feature codes (*21 log in, *22 log out, *23 pause, *24 resume).
    assert extens(plan["from-seat"]) == ["*21", "*22", "*23", "*24", *hotline]


def test_from_emergency_queues_with_priority_and_no_ivr(
    cfg: Config, plan: dict[str, list[Priority]]
) -> None:
    apps = apps_of(plan["from-emergency"], "_X.")
    assert "Set(QUEUE_PRIO=10)" in apps
    assert apps[-1] == f"Goto({cv.CTX_QUEUE},{cfg.hotline.default_queue},1)"
    assert not [a for a in apps if "AGI(" in a or "Dial(" in a]


def test_hotline_numbers_enter_the_ivr_with_their_menu(
    cfg: Config, plan: dict[str, list[Priority]]
) -> None:
    apps = apps_of(plan["from-carrier"], "12345")
    assert f"Set({cv.MENU}=main)" in apps
    assert apps[-1] == "Goto(hotline-ivr,s,1)"


def test_agi_step_is_guarded(cfg: Config, plan: dict[str, list[Priority]]) -> None:
    apps = apps_of(plan["hotline-ivr"], "s")
    (agi,) = [i for i, a in enumerate(apps) if a.startswith("AGI(")]
    before, after = apps[:agi], apps[agi + 1 :]
    assert f"Set(TIMEOUT(absolute)={cfg.network.agi_timeout})" in before
    guard = f'GotoIf($["${{AGISTATUS}}" != "SUCCESS"]?{cv.CTX_FAILURE},s,1)'
    assert guard in after
    # the check comes before the route is taken
    assert after.index(guard) < next(i for i, a in enumerate(after) if cv.CTX_ROUTE in a)
    t = apps_of(plan["hotline-ivr"], "T")
    assert t and t[-1] == f"Goto({cv.CTX_FAILURE},s,1)"


def test_failure_apologises_then_queues_the_default_queue(
    cfg: Config, plan: dict[str, list[Priority]]
) -> None:
    apps = apps_of(plan[cv.CTX_FAILURE], "s")
    apology = f"Playback({TARGET.sounds / cfg.hotline.apology_prompt})"
    queue = f"Goto({cv.CTX_QUEUE},{cfg.hotline.default_queue},1)"
    assert apology in apps and queue in apps
    assert apps.index(apology) < apps.index(queue)
    assert not [a for a in apps if a.startswith("Hangup")]


def test_every_queue_has_an_extension_and_a_section(
    cfg: Config, files: dict[str, str], plan: dict[str, list[Priority]]
) -> None:
    qsections = {s.name: s for s in sections(files["queues.conf"]) if s.name != "general"}
    assert set(qsections) == set(cfg.queues)
    assert set(extens(plan[cv.CTX_QUEUE])) == set(cfg.queues) | {"i"}
    for qid, q in cfg.queues.items():
        # member => interface,penalty,membername[,state_interface,ringinuse,...]
        members = [m.split(",") for m in qsections[qid].getall("member")]
        # Remote seats are static members; softphone seats log in (dynamic members).
        assert [m[2] for m in members] == [s for s in q.members if cfg.seats[s].kind == "remote"]
        for iface, _penalty, sid, *_ in members:
            seat = cfg.seats[sid]
            want = f"PJSIP/{seat.number}@{seat.trunk}" if seat.kind == "remote" else f"PJSIP/{sid}"
            assert iface == want
        assert f"Queue({qid},,,," in " ".join(apps_of(plan[cv.CTX_QUEUE], qid))


def test_remote_seat_rings_through_its_trunk(files: dict[str, str]) -> None:
    (yudu,) = [s for s in sections(files["queues.conf"]) if s.name == "ganzhou-yudu"]
    (member,) = yudu.getall("member")
    iface, penalty, name, *rest = member.split(",")
    assert (iface, penalty, name) == ("PJSIP/8001@yudu-site", "0", "yudu-01")
    if rest:  # a state interface, if any, is the county site's trunk
        assert rest[0] == "PJSIP/yudu-site"


def test_overflow_goes_on_and_the_top_queue_loops_on_itself(
    cfg: Config, plan: dict[str, list[Priority]]
) -> None:
    tops = 0
    for qid, q in cfg.queues.items():
        apps = apps_of(plan[cv.CTX_QUEUE], qid)
        assert not [a for a in apps if a.startswith("Hangup")], qid
        to = q.overflow.to if q.overflow else qid
        tops += q.overflow is None
        assert apps[-1] == f"Goto({cv.CTX_QUEUE},{to},1)", qid
        wait = q.overflow.after if q.overflow else q.max_wait
        assert f"Queue({qid},,,,{wait},,,,${{HOTLINE_QUEUE_POSITION}})" in apps  # place in time
    assert tops == 1
    assert plan[cv.CTX_QUEUE][-1].app == f"Goto({cv.CTX_FAILURE},s,1)"  # unknown queue: a person


def test_emergency_lines_dial_their_route(cfg: Config, plan: dict[str, list[Priority]]) -> None:
    assert set(extens(plan["hotline-emergency"])) == set(cfg.emergency_lines) | {"i"}
    for line, e in cfg.emergency_lines.items():
        apps = apps_of(plan["hotline-emergency"], line)
        assert f"Dial(PJSIP/{e.route.number}@{e.route.trunk},{e.answer_timeout})" in apps
        assert apps[-1] == f"Goto({cv.CTX_FAILURE},s,1)"


def test_globals_carry_the_version_and_agi_address(cfg: Config, files: dict[str, str]) -> None:
    (glob,) = [s for s in sections(files["extensions.conf"]) if s.name == "globals"]
    assert glob.get("HOTLINE_CONFIG_VERSION") == VERSION
    fa = cfg.network.fastagi
    assert glob.get("HOTLINE_AGI") == f"agi://{fa.bind}:{fa.port}"


# ------------------------------------------------------------------ manager.conf


def test_manager_binds_the_configured_address(cfg: Config, files: dict[str, str]) -> None:
    secs = {s.name: s for s in sections(files["manager.conf"])}
    assert secs["general"].get("bindaddr") == cfg.network.ami.bind
    assert secs["general"].get("port") == str(cfg.network.ami.port)
    assert secs["general"].get("webenabled") == "no"
    for user in ("hotline", "hotline-admin"):
        assert secs[user].get("deny") == "0.0.0.0/0.0.0.0"
        assert secs[user].get("permit") == f"{cfg.network.ami.bind}/255.255.255.255"


def test_manager_controller_user_cannot_reconfigure(files: dict[str, str]) -> None:
    secs = {s.name: s for s in sections(files["manager.conf"])}
    hotline = secs["hotline"]
    assert hotline.get("secret") == TARGET.ami_secret
    write = set((hotline.get("write") or "").split(","))
    assert write and not write & {"command", "config", "system", "all"}
    assert secs["hotline-admin"].get("secret") == TARGET.ami_admin_secret
    assert "command" not in (secs["hotline-admin"].get("write") or "").split(",")


def test_manager_admin_user_only_with_a_secret(cfg: Config) -> None:
    target = Target(TARGET.instance, TARGET.modules_dir, "controller-secret")
    conf = compile_config(cfg, target, VERSION)["manager.conf"]
    assert [s.name for s in sections(conf)] == ["general", "hotline"]


# ------------------------------------------------------------------ free text

EVIL = 'A;B"C\\D\n[evil]\nexten => _X.,1,Dial(PJSIP/110@carrier)\r\n;--\tE\u2028[x]\x85F'


def hostile(sample: str) -> str:
    """The sample with every free-text name a compiled file shows made hostile."""
    evil = json.dumps(EVIL)  # a JSON string is a YAML double-quoted scalar
    out = sample
    for old in (
        "name: 省中心坐席1,",  # seat -> pjsip comment + callerid
        "name: 江西省12345热线省级中心",  # centre -> pjsip and queues comments
        "name: 电信运营商中继}",  # trunk -> pjsip comment
        "name: 省中心,",  # queue -> queues comment
    ):
        tail = old[-1] if old[-1] in ",}" else ""
        out = patch(out, old, f"name: {evil}{tail}")
    return out


def test_text_cleaner() -> None:
    assert text(EVIL) == "ABCDevilexten => _X.,1,Dial(PJSIP/110@carrier)--ExF"
    assert text("x" * 100) == "x" * 80
    assert text("省中心坐席1") == "省中心坐席1"


def test_free_text_never_reaches_a_config_line_unescaped(sample: str) -> None:
    evil_cfg = load(hostile(sample))
    assert evil_cfg.seats["1001"].name == EVIL  # the YAML really carried it
    evil = compile_config(evil_cfg, TARGET, VERSION)
    plain = compile_config(load(sample), TARGET, VERSION)
    for name, body in evil.items():
        lines = body.split("\n")
        # Only \n ends a line for Asterisk; nothing else may hide in one either.
        assert not [ln for ln in lines if re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", ln)], name
        assert len(lines) == len(plain[name].split("\n")), f"{name}: a name added lines"
        for ln, base in zip(lines, plain[name].split("\n"), strict=True):
            if ln.lstrip().startswith(";"):
                assert base.lstrip().startswith(";"), f"{name}: {ln!r}"
                continue
            # Outside comments, only the seat's caller-ID display name is free text.
            if ln.startswith("callerid = "):
                assert re.fullmatch(r'callerid = "[^";\\\[\]]*" <[A-Za-z0-9_-]+>', ln), ln
                continue
            assert ln == base, f"{name}: {ln!r} differs from {base!r}"
        assert "[evil]" not in body and "[x]" not in body, name


def test_hostile_names_leave_the_section_list_unchanged(sample: str) -> None:
    evil = compile_config(load(hostile(sample)), TARGET, VERSION)
    plain = compile_config(load(sample), TARGET, VERSION)
    for name in evil:
        assert [(s.name, s.template) for s in sections(evil[name])] == [
            (s.name, s.template) for s in sections(plain[name])
        ], name


# ------------------------------------------------------------------ asterisk.conf


def test_asterisk_conf_directories(cfg: Config) -> None:
    conf = compile_asterisk_conf(cfg, TARGET, VERSION)
    assert conf.startswith("; GENERATED FILE - DO NOT EDIT.\n")
    assert "\n[directories]\n" in conf  # a plain section: "(!)" would make it a template
    secs = {s.name: s for s in sections(conf)}
    assert secs["directories"].template == ""
    d = secs["directories"]
    assert d.get("astetcdir") == "/srv/hotline/test/current/asterisk"
    assert d.get("astmoddir") == str(TARGET.modules_dir)
    assert d.get("astlogdir") == "/srv/hotline/test/log"
    assert secs["options"].get("runuser") == "asterisk"
    assert secs["options"].get("rungroup") == "asterisk"


def test_feature_codes_add_a_seat_to_exactly_its_queues(cfg: Config, plan: dict[str, list[Priority]]) -> None:
    for sid in cfg.softphone_seats():
        adds = [a for a in apps_of(plan["hotline-seat-login"], sid) if a.startswith("AddQueueMember(")]
        want = [q for q, v in cfg.queues.items() if sid in v.members]
        assert adds == [f"AddQueueMember({q},PJSIP/{sid},,,{sid},PJSIP/{sid})" for q in want]
        removes = [a for a in apps_of(plan["hotline-seat-logout"], sid) if a.startswith("RemoveQueueMember(")]
        assert removes == [f"RemoveQueueMember({q},PJSIP/{sid})" for q in want]
    # The seat is the authenticated endpoint, never dialled digits.
    assert any("${CHANNEL(endpoint)}" in a for a in apps_of(plan["from-seat"], "*21"))


def test_stasis_declines_only_what_nothing_reads(files: dict[str, str]) -> None:
    """AGIExecStart/End are never built (each AGI command made two AMI events for the
    controller's session); the types the manager core routes itself stay (declining
    them stops manager.so from loading, which every integration test would show)."""
    conf = files["stasis.conf"]
    declined = {
        line.split("=", 1)[1].strip()
        for line in conf.splitlines()
        if line.startswith("decline")
    }
    assert {"agi_exec_start_type", "agi_exec_end_type"} <= declined
    assert not declined & {
        "ast_channel_varset_type", "ast_channel_dtmf_begin_type", "ast_channel_dtmf_end_type",
        "ast_channel_hangup_request_type", "ast_channel_snapshot_type",
        "ast_device_state_message_type", "queue_caller_join_type", "ast_blind_transfer_type",
    }
    assert "[declined_message_types]" in conf


def test_the_controller_receives_only_the_events_it_handles(files: dict[str, str]) -> None:
    """manager.conf lets exactly channel_vars.CONTROLLER_EVENTS through to the controller's
    user (by name, advanced filter syntax); the admin user has no filter."""
    from hotline import channel_vars as cv

    conf = files["manager.conf"]
    controller = conf.split("[hotline]", 1)[1].split("\n[", 1)[0]
    names = set(re.findall(r"^eventfilter\(name\(([A-Za-z]+)\)\) =$", controller, re.M))
    assert names == set(cv.CONTROLLER_EVENTS)
    assert len(re.findall(r"^eventfilter", controller, re.M)) == len(names)
    admin = conf.split("[hotline-admin]", 1)[1] if "[hotline-admin]" in conf else ""
    assert "eventfilter" not in admin
