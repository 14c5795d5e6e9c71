"""The controller process: FastAGI server, AMI client and HTTP API in one event loop.

Started by ``hotline up`` (in the same process) or ``hotline controller``
(alone, e.g. by the tests). SIGHUP re-reads the live release after an apply;
SIGTERM/SIGINT stop it. If Asterisk is not up yet, the AMI client keeps
trying in the background; the FastAGI server answers regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import signal
from typing import Any

from agi_scripts import ROUTES, load_all
from dialplan.apply import ami_secret
from hotline import channel_vars as cv
from hotline.app import App
from hotline.runtime import Instance
from ivr.listen import Listener, attach, detach
from ivr.server import FastAgiServer
from queues.agents import AgentService
from queues.callback_plugin import CallbackPlugin
from queues.state import HANDLED_EVENTS
from recordings.plugin import RecordingsPlugin, placing_recordings
from transfer.plugin import TransferPlugin
from workorders.call_service import CallTrackerPlugin
from workorders.plugin import WorkOrderPlugin
from workorders.survey_plugin import SurveyPlugin, connect

from . import http

STATUS_TTL = 0.5  # seconds a status answer may be reused

log = logging.getLogger(__name__)


def _log_switch_failure(fut: asyncio.Future[bool]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("speech switch failed", exc_info=fut.exception())


class Controller:
    def __init__(self, instance: Instance):
        self.instance = instance
        self.app = App.from_live_release(instance)
        self.agents = AgentService(config=lambda: self.app.config, ami=lambda: self.app.ami,
                                   redis=lambda: self.app.redis)
        self.app.agents = self.agents
        self.transfers = TransferPlugin(self.app)
        self.app.transfers = self.transfers.service
        self.callbacks = CallbackPlugin(self.app)  # sets app.callbacks and app.arrivals
        self.orders = WorkOrderPlugin(self.app)  # sets app.orders
        self.surveys = SurveyPlugin(self.app)  # sets app.surveys
        connect(self.orders.store, self.surveys.service)  # closed order → survey → order
        self.recordings = RecordingsPlugin(self.app)
        self.app.recordings = self.recordings.service
        # Every finished call -> CallFacts -> app.call_sink (logged while none is set).
        self.calls = CallTrackerPlugin(self.app)  # sets app.calls
        self.app.call_sink = self.orders.store.record_calls  # one work order per call
        # ... and the call's centre onto its recordings (who may listen)
        self.app.call_sink = placing_recordings(self.app.call_sink, self.recordings.store)
        self.calls.service.on_answer = self.orders.store.assign_agent  # theirs during the call
        self.agi: FastAgiServer | None = None
        self.listener: Listener | None = None
        self._speech_switch: asyncio.Future[bool] | None = None  # the last apply's speech change
        self._speech_target: tuple[str | None, str | None] = (None, None)  # what it switches to
        self.http_runner: Any = None
        self._ami_task: asyncio.Task[None] | None = None
        self.stopping = asyncio.Event()
        # GET /status needs no login: one look at the parts at a time, and its answer
        # reused for STATUS_TTL, however many ask (CoreShowChannels lists every
        # channel of a busy Asterisk)
        self._status: tuple[float, dict[str, Any]] | None = None  # (when done, answer)
        self._looking: asyncio.Future[None] | None = None

    async def start(self) -> None:
        load_all()
        net = self.app.config.network
        # Speech first: a configured model that cannot be loaded stops the start
        # (ivr.speech.ModelError names the path); no model means DTMF menus.
        self.listener = await Listener.start(self.app.config)
        attach(self.app, self.listener)
        self.agi = FastAgiServer(ROUTES, self.app, host=net.fastagi.bind, port=net.fastagi.port)
        await self.agi.start()
        log.info("FastAGI on %s:%s", net.fastagi.bind, self.agi.port)
        self.app.redis = await _redis(net.redis.bind, net.redis.port)
        # Subscriptions first, here: a handler for an event the session does not receive
        # stops the start with the reason (not a background task failing silently).
        self._ami_task = asyncio.create_task(self._ami(self._ami_client()), name="ami-connect")
        await self.callbacks.start()
        await self.orders.start()
        await self.surveys.start()
        await self.recordings.start()  # recordings root, retention purge job
        await self.calls.start()  # calls that ended while the controller was down
        self.http_runner = await http.start(self.app, self, net.http.bind, net.http.port)
        log.info("HTTP on http://%s:%s/", net.http.bind, net.http.port)

    def _ami_client(self) -> Any:
        """The AMI client with every service's handlers attached (not connected yet)."""
        from hotline.ami import AmiClient  # imported late: keeps unit tests of App light

        net = self.app.config.network
        client = AmiClient(net.ami.bind, net.ami.port, "hotline", ami_secret(self.instance),
                           receives=cv.CONTROLLER_EVENTS)
        for event in HANDLED_EVENTS:
            client.on(event, self.agents.on_event)
        client.on_booted(self._asterisk_booted)
        self.transfers.attach(client)
        self.callbacks.attach(client)
        self.surveys.attach(client)
        self.recordings.attach(client)
        self.calls.attach(client)
        return client

    async def _ami(self, client: Any) -> None:
        self.app.ami = client  # before connecting: on_booted handlers use it
        delay = 0.2
        while not self.stopping.is_set():
            try:
                await client.connect()
                break
            except Exception as e:  # noqa: BLE001 - Asterisk may still be starting
                log.info("AMI not reachable yet (%s); retrying in %.1f s", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.app.ami = client

    async def _asterisk_booted(self, _event: Any) -> None:
        """Every (re)connection to a fully booted Asterisk: rebuild the view from it."""
        try:
            await self.agents.rebuild()
        except Exception as e:  # noqa: BLE001 - the next event or boot fixes it
            log.error("could not rebuild the seat state: %s", e)

    def reload(self) -> None:
        try:
            self.app.reload()
        except Exception as e:  # noqa: BLE001 - keep running the config we have
            log.error("reload failed, keeping config %s: %s", self.app.version, e)
            return
        if self.listener is not None:
            self._switch_speech(self.listener)

    def _switch_speech(self, listener: Listener) -> None:
        """A new ``speech.model`` (or ``server``) is loaded beside the running one, then
        replaces it. An apply that changes it again while it loads cancels that load."""
        speech = self.app.config.speech
        wanted = (speech.model, speech.server)
        if self._speech_switching:
            if wanted == self._speech_target:
                return
            assert self._speech_switch is not None
            self._speech_switch.cancel()  # its half-started recogniser is closed
        elif wanted == listener.running:
            return
        self._speech_target = wanted
        self._speech_switch = asyncio.ensure_future(listener.use(self.app.config))
        self._speech_switch.add_done_callback(_log_switch_failure)

    @property
    def _speech_switching(self) -> bool:
        return self._speech_switch is not None and not self._speech_switch.done()

    def speech_status(self) -> dict[str, Any]:
        """The recogniser's status; not ok while it is not the one the config names."""
        listener = self.listener
        if listener is None:
            return {"ok": False}
        out = listener.status()
        speech = self.app.config.speech
        wanted = (speech.model, speech.server)
        if listener.running != wanted:
            out["ok"] = False
            out["configured"] = {"model": wanted[0], "server": wanted[1]}
            out["error"] = ("switching to the configured recogniser" if self._speech_switching else
                            "the configured recogniser did not start (see the controller log)")
        return out

    async def status(self) -> dict[str, Any]:
        """Each part's health (``GET /status``, ``/health``, ``hotline status``), at most
        :data:`STATUS_TTL` old."""
        loop = asyncio.get_running_loop()
        if self._status is None or loop.time() - self._status[0] >= STATUS_TTL:
            if self._looking is None or self._looking.done():
                self._looking = asyncio.ensure_future(self._refresh())
            # shielded: a client that gives up does not cancel the look the others await
            await asyncio.shield(self._looking)
        assert self._status is not None
        return copy.deepcopy(self._status[1])

    async def _refresh(self) -> None:
        answer = await self._look()
        self._status = (asyncio.get_running_loop().time(), answer)  # fresh from its end

    async def _look(self) -> dict[str, Any]:
        ami = self.app.ami
        out: dict[str, Any] = {
            "config_version": self.app.version,
            "fastagi": {"ok": self.agi is not None, "active_calls": self.agi.active_sessions if self.agi else 0},
            "ami": {"ok": bool(ami is not None and ami.connected),
                    **(ami.event_figures() if ami is not None else {})},
            "speech": self.speech_status(),
            "redis": {"ok": False},
        }
        if ami is not None and ami.connected:
            try:
                chans = await ami.action_list("CoreShowChannels")
                out["asterisk"] = {"ok": True, "channels": len(chans)}
            except Exception as e:  # noqa: BLE001
                out["asterisk"] = {"ok": False, "error": str(e)}
        else:
            out["asterisk"] = {"ok": False, "error": "AMI not connected"}
        if self.app.redis is not None:
            try:
                out["redis"]["ok"] = bool(await self.app.redis.ping())
            except Exception as e:  # noqa: BLE001
                out["redis"]["error"] = str(e)
        out["ok"] = all(v.get("ok") for k, v in out.items() if isinstance(v, dict))
        return out

    async def stop(self) -> None:
        self.stopping.set()
        if self._ami_task:
            self._ami_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._ami_task
        if self.http_runner is not None:
            await self.http_runner.cleanup()
        if self.agi is not None:
            await self.agi.close()
        if self._speech_switching:
            assert self._speech_switch is not None
            self._speech_switch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._speech_switch
        if self.listener is not None:
            detach(self.app)
            await self.listener.close()
        await self.transfers.close()
        await self.callbacks.close()
        await self.orders.close()
        await self.surveys.close()
        await self.recordings.close()
        await self.calls.close()
        if self.app.ami is not None:
            await self.app.ami.close()
        if self.app.redis is not None:
            with contextlib.suppress(Exception):
                await self.app.redis.aclose()

    async def run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        await self.stopping.wait()


async def _redis(host: str, port: int) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis(host=host, port=port, socket_connect_timeout=1, socket_timeout=1)


async def serve(instance: Instance) -> None:
    c = Controller(instance)
    await c.start()
    try:
        await c.run_until_stopped()
    finally:
        await c.stop()
