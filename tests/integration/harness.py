"""A real hotline for one test module: Asterisk from the root, Redis, the controller.

Everything listens on free loopback ports, so tests never collide with a
`make run` on the same machine. Outside parties (carrier, emergency centres,
county sites) keep their 127.0.0.x addresses from the sample config; each gets
a free port, where a SIPp playing that party listens.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

from dialplan.apply import activate, build_release
from hotline.cli import generated_prompts_dir
from hotline.runtime import AsteriskProcess, AsteriskRoot, Instance

from .sipp import free_port

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "config" / "hotline.yaml"


def test_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sample config with every listening port moved to a free one."""
    cfg = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    # Asterisk's RTP above the test ports (tests/integration/sipp.py LISTEN_PORTS, MEDIA_PORTS)
    rtp = 40000 + (os.getpid() * 37 + int(time.time())) % 19000 // 2 * 2
    cfg["network"] = {
        "sip": {"bind": "127.0.0.1", "port": free_port()},
        "rtp": {"start": rtp, "end": rtp + 400},
        "fastagi": {"bind": "127.0.0.1", "port": free_port()},
        "ami": {"bind": "127.0.0.1", "port": free_port()},
        "http": {"bind": "127.0.0.1", "port": free_port()},
        "redis": {"bind": "127.0.0.1", "port": free_port()},
        "agi_timeout": 60,
    }
    for t in cfg["trunks"].values():
        t["port"] = free_port(t["address"], udp_and_tcp=False)
        # The parties a test plays start after Asterisk; a probe before they listen
        # would mark their trunk Unavailable for a whole qualify period.
        t["qualify"] = 0
    # Integration tests must not depend on the wall clock: every centre open.
    for h in cfg.get("hours", {}).values():
        h.clear()
        h["always"] = True
    for k, v in (overrides or {}).items():
        cfg[k] = v
    return cfg


# a helper: modules import it, pytest must not collect it
test_config.__test__ = False  # type: ignore[attr-defined]


class Hotline:
    def __init__(self, workdir: Path, cfg: dict[str, Any] | None = None):
        self.workdir = workdir
        self.cfg = cfg or test_config()
        self.root = AsteriskRoot.locate()
        self.instance = Instance(self.root, "t" + uuid.uuid4().hex[:10])
        self.config_file = workdir / "hotline.yaml"
        on = (self.cfg.get("cpus") or {}).get("asterisk")  # the YAML's cpus.asterisk
        self.asterisk = AsteriskProcess(self.instance, set(on) if on else None)
        self.redis: subprocess.Popen[bytes] | None = None
        self.controller: subprocess.Popen[bytes] | None = None

    # -------------------------------------------------------------- lifecycle
    def write_config(self, cfg: dict[str, Any] | None = None) -> Path:
        if cfg is not None:
            self.cfg = cfg
        self.config_file.write_text(yaml.safe_dump(self.cfg, allow_unicode=True, sort_keys=False),
                                    encoding="utf-8")
        return self.config_file

    def prompt_dirs(self) -> list[Path]:
        return [SAMPLE.parent / "prompts", generated_prompts_dir()]

    def start(self) -> Hotline:
        self.write_config()
        self.instance.prepare()
        rel = build_release(self.instance, self.config_file.read_text(encoding="utf-8"),
                            str(self.config_file), self.prompt_dirs())
        activate(self.instance, rel.path)
        self.start_redis()
        self.asterisk.start()
        self.start_controller()
        return self

    def start_redis(self) -> None:
        r = self.cfg["network"]["redis"]
        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server")
        self.redis = subprocess.Popen(
            [exe, "--bind", r["bind"], "--port", str(r["port"]), "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def start_controller(self) -> None:
        log = open(self.workdir / "controller.log", "ab")  # noqa: SIM115 - child owns it
        self.controller = subprocess.Popen(
            [sys.executable, "-m", "hotline.cli", "controller", "--instance", self.instance.name],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.controller is not None and self.controller.poll() is not None:
                raise RuntimeError(f"controller exited: {self.controller_log()[-3000:]}")
            try:
                last = self.status()
                if last.get("ok"):
                    return last
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise RuntimeError(f"controller not healthy in {timeout} s: {last}\n{self.controller_log()[-3000:]}")

    def status(self) -> dict[str, Any]:
        h = self.cfg["network"]["http"]
        try:
            with urllib.request.urlopen(f"http://{h['bind']}:{h['port']}/status", timeout=3) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            return json.load(e)

    def controller_log(self) -> str:
        p = self.workdir / "controller.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def kill_controller(self) -> None:
        if self.controller is not None and self.controller.poll() is None:
            os.killpg(self.controller.pid, signal.SIGKILL)
            self.controller.wait(5)

    def stop_controller(self) -> None:
        if self.controller is not None and self.controller.poll() is None:
            self.controller.send_signal(signal.SIGTERM)
            try:
                self.controller.wait(10)
            except subprocess.TimeoutExpired:
                self.kill_controller()

    def stop(self) -> None:
        self.stop_controller()
        self.asterisk.stop()
        if self.redis is not None:
            self.redis.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.redis.wait(5)
        if not os.environ.get("HOTLINE_KEEP_TEST_INSTANCE"):
            self.instance.destroy()

    # -------------------------------------------------------------- looking in
    def cli(self, command: str) -> str:
        return self.instance.cli(command)

    def active_channels(self) -> int:
        out = self.cli("core show channels count")
        m = re.search(r"(\d+) active channels?", out)
        assert m, out
        return int(m.group(1))

    def wait_no_channels(self, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        n = self.active_channels()
        while n and time.monotonic() < deadline:
            time.sleep(0.1)
            n = self.active_channels()
        return n

    def queue_log(self) -> str:
        p = self.instance.host("log", "queue_log")
        return p.read_text(errors="replace") if p.exists() else ""

    def wait_for(self, predicate: Any, timeout: float = 10, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = predicate()
            if v:
                return v
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    # Sample users: agents' passwords are agent-<seat>; see config/hotline.yaml.
    PASSWORDS = {"sup-nanchang": "sup-nanchang-pw", "sup-province": "sup-province-pw", "admin": "admin-pw"}

    def password_of(self, user: str) -> str:
        if user in self.PASSWORDS:
            return self.PASSWORDS[user]
        seat = next(sid for sid, s in self.cfg["seats"].items() if s.get("agent") == user)
        return f"agent-{seat}"

    def agent_of(self, seat: str) -> str:
        return str(self.cfg["seats"][seat]["agent"])

    def api(self, method: str, path: str, user: str | None = None, body: Any = None,
            password: str | None = None) -> tuple[int, Any]:
        """Call the controller's HTTP API as ``user`` (HTTP Basic); returns (status, JSON)."""
        import base64

        h = self.cfg["network"]["http"]
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{h['bind']}:{h['port']}{path}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if user is not None:
            pw = password if password is not None else self.password_of(user)
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    # Registration takes milliseconds; the bound is generous for a loaded machine.
    REGISTER_WAIT_S = 30

    def register_seat(self, workdir: Path, seat: str, *, ooc_scenario: str | None = None,
                      hold_ms: int = 90000, name: str | None = None) -> Any:
        """A SIPp softphone registered as ``seat`` (digest auth) that answers offers
        with ``ooc_scenario`` (default: answers every call); waits until Asterisk has
        its contact."""
        from .sipp import Sipp, agent_answer_scenario, agent_register_scenario

        agent = Sipp(workdir, name or f"seat-{seat}",
                     agent_register_scenario(seat, self.seat_password(seat), hold_ms),
                     local_ip="127.0.0.1", target=self.sip_target,
                     ooc_scenario=ooc_scenario or agent_answer_scenario(),
                     timeout_s=hold_ms // 1000 + 20)
        self.wait_for(lambda: f"sip:{seat}@127.0.0.1:{agent.local_port}" in self.cli(f"pjsip show aor {seat}"),
                      self.REGISTER_WAIT_S, f"seat {seat} registered")
        return agent

    def login_seat(self, seat: str) -> None:
        status, body = self.api("POST", f"/seats/{seat}/login", self.agent_of(seat))
        assert status == 200, body

    def logout_seat(self, seat: str) -> None:
        status, body = self.api("POST", f"/seats/{seat}/logout", self.agent_of(seat))
        assert status == 200, body

    def call_paths(self) -> dict[str, dict[str, Any]]:
        """Every IVR path the controller stored in Redis, by uniqueid."""
        import redis

        r = self.cfg["network"]["redis"]
        client = redis.Redis(host=r["bind"], port=r["port"], socket_timeout=2)
        try:
            out = {}
            for key in client.scan_iter("hotline:call:*"):
                raw = client.hget(key, "ivr")
                if raw:
                    out[key.decode().rsplit(":", 1)[-1]] = json.loads(raw)
            return out
        finally:
            client.close()

    def new_call_paths(self, before: dict[str, Any], count: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
        def fresh() -> list[dict[str, Any]]:
            now = self.call_paths()
            got = [v for k, v in now.items() if k not in before]
            return got if len(got) >= count else []
        return self.wait_for(fresh, timeout, f"{count} new call path(s) in Redis")

    def prompt_seconds(self, name: str) -> float:
        import wave

        with wave.open(str(generated_prompts_dir() / f"{name}.wav")) as w:
            return w.getnframes() / w.getframerate()

    @property
    def sip_target(self) -> str:
        s = self.cfg["network"]["sip"]
        return f"{s['bind']}:{s['port']}"

    def trunk(self, name: str) -> tuple[str, int]:
        t = self.cfg["trunks"][name]
        return t["address"], t["port"]

    def seat_password(self, seat: str) -> str:
        return str(self.cfg["seats"][seat]["password"])

    def ami_secret(self, user: str = "hotline") -> str:
        from dialplan.apply import ami_secret

        return ami_secret(self.instance, user)

    def messages_log(self) -> str:
        p = self.instance.host("log", "messages.log")
        return p.read_text(errors="replace") if p.exists() else ""
