"""The controller's shared state, handed to every AGI script and HTTP handler.

It holds the config of the *live* release (the one Asterisk runs), so the
IVR never plays a menu the dialplan does not know. ``reload()`` re-reads it
after ``hotline apply``; a call in progress keeps the config object it started
with.
"""

from __future__ import annotations

import json
import logging
import time
import wave
from dataclasses import dataclass, field
from typing import Any

from dialplan.model import Config
from dialplan.validate import load_config_text
from hotline import channel_vars as cv
from hotline.runtime import Instance

log = logging.getLogger(__name__)

PATH_TTL = 30 * 24 * 3600  # call paths kept 30 days for work orders and reports


@dataclass
class App:
    instance: Instance
    config: Config
    version: str
    redis: Any = None  # redis.asyncio.Redis when configured
    ami: Any = None  # hotline.ami.AmiClient
    agents: Any = None  # queues.agents.AgentService
    arrivals: Any = None  # queues.position.Arrivals (first arrival of waiting callers)
    callbacks: Any = None  # queues.callback_service.CallbackService
    transfers: Any = None  # transfer.services.TransferService
    orders: Any = None  # workorders.store.WorkOrderStore
    surveys: Any = None  # workorders.survey_service.SurveyService
    recordings: Any = None  # recordings.service.RecordingService
    calls: Any = None  # workorders.call_service.CallTrackerService (finished calls -> facts)
    call_sink: Any = None  # sink(list[CallFacts]): the work-order store's record_calls
    started: float = field(default_factory=time.time)
    _lengths: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_live_release(cls, instance: Instance) -> App:
        cfg, version = load_live_config(instance)
        return cls(instance=instance, config=cfg, version=version)

    def reload(self) -> None:
        cfg, version = load_live_config(self.instance)
        self.config, self.version = cfg, version
        self._lengths.clear()
        log.info("controller now runs config version %s", version)

    def prompt(self, name: str) -> str:
        """The path Asterisk plays ``name`` from (no extension: Asterisk picks the format)."""
        return str(self.instance.current_inner / "sounds" / name)

    def prompt_wait(self, name: str, margin: float = 5.0) -> float:
        """How long an AGI STREAM FILE of ``name`` may take: its length plus a margin."""
        cached = self._lengths.get(name)
        if cached is None:
            cached = 60.0
            path = self.instance.host("current", "sounds", f"{name}.wav")
            try:
                with wave.open(str(path)) as w:
                    cached = w.getnframes() / max(1, w.getframerate())
            except (OSError, wave.Error, EOFError):
                log.debug("no WAV length for prompt %s; allowing 60 s", name)
            self._lengths[name] = cached
        return cached + margin

    async def record_call_path(self, uniqueid: str, record: dict[str, Any], field: str = "ivr") -> None:
        """Keep the path a caller took where work orders and reports can read it.

        Redis hash ``hotline:call:<uniqueid>`` field ``ivr`` (``origin``: how the call
        came in, for legacy and relay numbers). Failing to store it is logged and
        never affects the caller.
        """
        if self.redis is None:
            log.info("[%s] call path (no redis): %s", uniqueid, record)
            return
        try:
            key = cv.call_key(uniqueid)
            await self.redis.hset(key, field, json.dumps(record, ensure_ascii=False))
            await self.redis.expire(key, PATH_TTL)
        except Exception as e:  # noqa: BLE001 - storage trouble must not reach the caller
            log.warning("[%s] could not store the call path: %s", uniqueid, e)


def load_live_config(instance: Instance) -> tuple[Config, str]:
    cur = instance.current
    if not cur.exists():
        raise FileNotFoundError(f"{cur} does not exist: no config has been applied yet")
    rel = cur.resolve()
    text = (rel / "hotline.yaml").read_text(encoding="utf-8")
    cfg = load_config_text(text, str(rel / "hotline.yaml"), [rel / "sounds"])
    version = rel.name.rsplit("-", 1)[-1]
    return cfg, version
