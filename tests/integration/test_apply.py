"""`hotline apply` on a live Asterisk: calls survive, bad configs never replace good ones."""

from __future__ import annotations

import asyncio
import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dialplan.apply import ApplyError, apply_release, build_release, live_release
from hotline.ami import AmiActionError, AmiClient

from .harness import REPO, Hotline
from .sipp import dtmf, pause
from .test_first_call import call, register_agent, stop_agent


def hotline_cmd(h: Hotline, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOTLINE_ASTERISK_ROOT=str(h.root.path))
    return subprocess.run([sys.executable, "-m", "hotline.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


def running_version(h: Hotline) -> str:
    m = re.search(r"HOTLINE_CONFIG_VERSION=(\w+)", h.cli("dialplan show globals"))
    assert m
    return m.group(1)


def test_apply_during_calls_keeps_them(clean: Hotline, workdir: Path) -> None:
    h = clean
    agent = register_agent(h, workdir)
    try:
        before = h.queue_log()
        # One caller talking to an agent, one still in the IVR menu, while we apply.
        talking = call(h, workdir, pause(1500) + dtmf("0", then_ms=9000), name="talking")
        h.wait_for(lambda: "CONNECT" in h.queue_log()[len(before):], 15, "the agent to answer")
        in_menu = call(h, workdir, pause(7000), name="in-menu", caller="13907910002")
        h.wait_for(lambda: h.active_channels() >= 3, 10, "the second call")
        cfg = copy.deepcopy(h.cfg)
        cfg["queues"]["hotfix"] = {"name": "临时专席", "centre": "province", "members": ["1002"]}
        old = running_version(h)
        res = hotline_cmd(h, "apply", str(h.write_config(cfg)), "--instance", h.instance.name)
        assert res.returncode == 0, res.stderr
        assert "is live" in res.stdout
        assert running_version(h) != old
        assert "hotfix has 0 calls" in h.cli("queue show hotfix")
        # Both calls carried on to their normal end (BYE answered with 200 OK).
        r1, r2 = talking.wait(40), in_menu.wait(40)
        assert r1.returncode == 0, r1.explain()
        assert r2.returncode == 0, r2.explain()
        # The controller picked the new config up (SIGHUP after apply).
        h.wait_for(lambda: h.status()["config_version"] == running_version(h)[:16], 5, "controller reload")
    finally:
        stop_agent(agent)


def test_invalid_config_is_refused_and_running_one_kept(clean: Hotline) -> None:
    h = clean
    old = running_version(h)
    bad = h.workdir / "bad.yaml"
    text = h.config_file.read_text(encoding="utf-8").replace("after_retries: queue:social", "after_retries: queue:nowhere")
    bad.write_text(text, encoding="utf-8")
    res = hotline_cmd(h, "apply", str(bad), "--instance", h.instance.name)
    assert res.returncode == 1
    line = next(i for i, l in enumerate(text.splitlines(), 1) if "queue:nowhere" in l)
    assert f"{bad}:{line}: menus.social.after_retries: queue 'nowhere' does not exist" in res.stderr
    assert "the running config was kept" in res.stderr
    assert running_version(h) == old

    res = hotline_cmd(h, "check", str(bad))
    assert res.returncode == 1 and "queue 'nowhere' does not exist" in res.stderr


def test_malformed_yaml_is_refused(clean: Hotline) -> None:
    h = clean
    old = running_version(h)
    bad = h.workdir / "broken.yaml"
    bad.write_text("hotline:\n  name: [unclosed\n", encoding="utf-8")
    res = hotline_cmd(h, "apply", str(bad), "--instance", h.instance.name)
    assert res.returncode == 1
    assert f"{bad}:" in res.stderr and "YAML syntax" in res.stderr
    assert running_version(h) == old


def test_config_asterisk_rejects_is_rolled_back(clean: Hotline) -> None:
    """A release Asterisk does not take (here: a seat whose endpoint it refuses) is undone."""
    h = clean
    old_release = live_release(h.instance)
    old = running_version(h)
    cfg = copy.deepcopy(h.cfg)
    cfg["queues"]["province"]["ring_timeout"] = 20  # a different version
    text = __import__("yaml").safe_dump(cfg, allow_unicode=True, sort_keys=False)
    rel = build_release(h.instance, text, "rejected.yaml", h.prompt_dirs())
    pj = rel.path / "asterisk" / "pjsip.conf"
    os.chmod(pj, 0o640)
    pj.write_text(pj.read_text().replace("[1001](media)\ntype = endpoint", "[1001](media)\ntype = endpoint\ndtmf_mode = carrier-pigeon"))

    async def go() -> None:
        net = h.cfg["network"]["ami"]
        async with AmiClient(net["bind"], net["port"], "hotline-admin", h.ami_secret("hotline-admin")) as ami:
            with pytest.raises(ApplyError, match="Asterisk reported errors loading the new config: .*dtmf_mode"):
                await apply_release(h.instance, ami, rel)

    asyncio.run(go())
    assert live_release(h.instance) == old_release
    assert running_version(h) == old
    assert "1001" in h.cli("pjsip show endpoint 1001")


def test_ami_user_has_least_rights(clean: Hotline) -> None:
    """The controller's AMI user cannot reload, run CLI commands or write config files;
    the admin user (used by `hotline apply`) can reload but not run CLI commands either.
    AMI listens on loopback only."""
    h = clean
    net = h.cfg["network"]["ami"]

    async def go() -> None:
        async with AmiClient(net["bind"], net["port"], "hotline", h.ami_secret()) as ami:
            with pytest.raises(AmiActionError):
                await ami.action("Command", Command="core show version")
            with pytest.raises(AmiActionError):
                await ami.action("UpdateConfig", SrcFilename="manager.conf", DstFilename="manager.conf")
            with pytest.raises(AmiActionError):
                await ami.action("Reload", Module="pbx_config.so")
            with pytest.raises(AmiActionError):
                await ami.action("Originate", Channel="Local/s@hotline-done", Application="System", Data="id")
            pong = await ami.action("Ping")
            assert pong.get("Response") == "Success"
        async with AmiClient(net["bind"], net["port"], "hotline-admin", h.ami_secret("hotline-admin")) as admin:
            with pytest.raises(AmiActionError):
                await admin.action("Command", Command="core show version")
            with pytest.raises(AmiActionError):
                await admin.action("Originate", Channel="Local/s@hotline-done", Exten="s", Context="hotline-done", Priority="1")
            assert (await admin.action("Reload", Module="app_queue.so")).get("Response") == "Success"

    asyncio.run(go())
    out = h.cli("manager show settings")
    assert re.search(r"TCP Bindaddress:\s+127\.0\.0\.1:", out), out
