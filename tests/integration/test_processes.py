"""`hotline up`, `status` and `down` as a newcomer uses them, with the README's test call."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml

from hotline.runtime import AsteriskRoot, Instance

from .harness import REPO, test_config
from .sipp import Sipp, agent_answer_scenario, agent_register_scenario, caller_scenario, dtmf, pause


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hotline.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def allowed_cpus(pid: int) -> set[str]:
    """Cpus_allowed_list of every thread of ``pid`` (one entry when they all agree)."""
    found = (re.search(r"^Cpus_allowed_list:\s*(\S+)", (task / "status").read_text(), re.M)
             for task in Path(f"/proc/{pid}/task").iterdir())
    return {m.group(1) if m else "?" for m in found}


def test_up_status_call_restart_down(asterisk_root: AsteriskRoot, tools: None, tmp_path: Path) -> None:
    cfg = test_config()
    # cpus: Asterisk on the last CPU, the controller (and its Redis) on the first.
    here = sorted(os.sched_getaffinity(0))
    cfg["cpus"] = {"asterisk": [here[-1]], "controller": [here[0]]}
    conf = tmp_path / "hotline.yaml"
    conf.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    name = "up" + uuid.uuid4().hex[:8]
    out = open(tmp_path / "up.log", "w+")  # noqa: SIM115
    up = subprocess.Popen([sys.executable, "-m", "hotline.cli", "up", str(conf), "--instance", name],
                          cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    inst = Instance(asterisk_root, name)
    try:
        deadline = time.monotonic() + 40
        while "Ctrl-C or `hotline down`" not in (tmp_path / "up.log").read_text():
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()
            time.sleep(0.2)
        banner = (tmp_path / "up.log").read_text()
        sip = cfg["network"]["sip"]
        assert f"SIP      127.0.0.1:{sip['port']} (UDP and TCP)" in banner
        assert "1001" in banner and "sip:1001@127.0.0.1" in banner

        deadline = time.monotonic() + 20
        while (st := run("status", "--instance", name)).returncode != 0:
            assert time.monotonic() < deadline, st.stdout + st.stderr
            time.sleep(0.3)
        assert re.search(r"^asterisk\s+ok", st.stdout, re.M), st.stdout
        assert re.search(r"^redis\s+ok", st.stdout, re.M), st.stdout
        assert re.search(r"^speech\s+ok\s+mode=off$", st.stdout, re.M), st.stdout  # the sample's
        asterisk_pid = int((inst.state / "asterisk.pid").read_text())
        assert allowed_cpus(asterisk_pid) == {str(here[-1])}  # every Asterisk thread
        assert allowed_cpus(up.pid) == {str(here[0])}  # the controller's threads
        redis_pid = int(subprocess.run(["pgrep", "-P", str(up.pid), "redis-server"],
                                       capture_output=True, text=True).stdout.split()[0])
        assert allowed_cpus(redis_pid) == {str(here[0])}

        # The test call exactly as the banner tells a newcomer (with this test's ports).
        m = re.search(r"^\s+(sipp -sn uac .*)$", banner, re.M)
        assert m, banner
        cmd = m.group(1).split()
        cmd[cmd.index("-p") + 1] = "0"
        res = subprocess.run([*cmd, "-timeout", "20s", "-timeout_error", "-nostdin"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=40)
        assert res.returncode == 0, res.stdout[-2000:]

        # An agent registers as seat 1001 (as a softphone would) and a citizen presses 0.
        target = f"127.0.0.1:{sip['port']}"
        agent = Sipp(tmp_path, "agent", agent_register_scenario("1001", cfg["seats"]["1001"]["password"], 60000),
                     local_ip="127.0.0.1", target=target, ooc_scenario=agent_answer_scenario(), timeout_s=70)
        try:
            deadline = time.monotonic() + 10
            while f"sip:1001@127.0.0.1:{agent.local_port}" not in inst.cli("pjsip show aor 1001"):
                assert time.monotonic() < deadline, "seat 1001 did not register"
                time.sleep(0.2)
            # The agent logs in through the HTTP API, as the README shows.
            import base64
            import urllib.request

            http = cfg["network"]["http"]
            req = urllib.request.Request(f"http://127.0.0.1:{http['port']}/seats/1001/login", data=b"{}",
                                         method="POST", headers={"Content-Type": "application/json"})
            req.add_header("Authorization", "Basic " + base64.b64encode(b"zhangwei:agent-1001").decode())
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 200
            deadline = time.monotonic() + 10
            while "Not in use" not in inst.cli("queue show province"):
                assert time.monotonic() < deadline, inst.cli("queue show province")
                time.sleep(0.2)
            queue_log = inst.host("log", "queue_log")
            citizen = Sipp(tmp_path, "citizen", caller_scenario(pause(1000) + dtmf("0", then_ms=5000)),
                           local_ip="127.0.0.2", target=target, timeout_s=30)
            heard = citizen.wait(40)
            assert heard.returncode == 0, heard.explain()
            assert "|1001|CONNECT|" in queue_log.read_text(), queue_log.read_text()
        finally:
            agent.stop()

        # Asterisk dies: `hotline up` starts it again and the controller reconnects.
        pid = int((inst.state / "asterisk.pid").read_text())
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while True:
            time.sleep(0.5)
            st = run("status", "--instance", name)
            new_pid = (inst.state / "asterisk.pid").read_text() if (inst.state / "asterisk.pid").exists() else ""
            if st.returncode == 0 and new_pid and int(new_pid) != pid:
                break
            assert time.monotonic() < deadline, st.stdout + (tmp_path / "up.log").read_text()[-3000:]
        assert allowed_cpus(int(new_pid)) == {str(here[-1])}  # restarted on its CPUs too

        down = run("down", "--instance", name)
        assert down.returncode == 0, down.stdout + down.stderr
        assert up.wait(30) == 0
        assert run("status", "--instance", name).returncode == 1
        leftovers = subprocess.run(["pgrep", "-f", f"/srv/hotline/{name}/"], capture_output=True, text=True)
        assert leftovers.stdout == "", leftovers.stdout
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        subprocess.run(["pkill", "-9", "-f", f"/srv/hotline/{name}/"], check=False)
        subprocess.run(["pkill", "-9", "-f", f"{tmp_path}/"], check=False)
        inst.destroy()
