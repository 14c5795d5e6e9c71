"""AmiClient: the project's asyncio client for the Asterisk Manager Interface.

Built on the project's own codec (:mod:`hotline.amiproto`), not on
panoramisk. panoramisk 1.4 (``panoramisk/manager.py``, ``ami_protocol.py``)
was read and fails rules this client must keep:

* Blind re-send: ``AMIProtocol.close()`` moves every unanswered action except
  Ping/Login into ``Manager.awaiting_actions`` and
  ``Manager.send_awaiting_actions()`` (registered on ``FullyBooted``) sends
  them again after a reconnect, Originate included. Turning that off means
  reaching into protocol internals, and the dropped futures are then never
  resolved: the caller waits forever instead of getting an error.
* Bad credentials: ``Manager.login()`` only records ``authenticated=False``;
  Asterisk closes the socket and ``connection_lost()`` reconnects every
  ``reconnect_timeout`` seconds, for ever. ``connect()`` returns a task that
  completes at TCP connect, not at login.
* Reconnect delay is the fixed ``int(reconnect_timeout)`` (0.2 becomes 0):
  no exponential back-off, no jitter.
* Keep-alive: ``Manager.ping()`` writes a Ping and never checks the reply, so
  a dead peer is not detected.
* A sync event callback runs inside ``data_received()``; its exception makes
  asyncio close the transport ("Fatal error: protocol.data_received() call
  failed"). Async callbacks are fire-and-forget.
* Each TCP chunk is decoded alone with ``errors='ignore'``: a Chinese caller
  name split across two segments loses characters silently.
* Values are written verbatim (no CR/LF guard), and it relies on the pre-3.11
  idioms (``loop=`` arguments, ``call_later`` scheduling).

Guarantees of this client
-------------------------
* :meth:`AmiClient.connect` returns once logged in. Transport failures are
  retried with exponential back-off and jitter; "Authentication failed" is
  final and raises :class:`AmiAuthError` (also when met on a later reconnect,
  after which every call raises it).
* Keep-alive: a ``Ping`` every ``ping_interval`` seconds; no reply within
  ``ping_timeout`` drops the connection, which then reconnects.
* A request still unanswered when the connection drops fails with
  :class:`AmiDisconnected`: Asterisk may or may not have run it, and it is
  never sent again, except the read-only actions of :data:`READ_ONLY_ACTIONS`
  (and ``Command`` with a ``show`` CLI command, ``Getvar`` of a plain
  variable), which are sent once more after the reconnect. A request made
  while disconnected waits for the reconnect (bounded by ``action_timeout``):
  it was never sent, so sending it then is not a re-send.
* Event callbacks may be sync or async; their exceptions are logged and never
  stop the reader. ``on_booted`` callbacks run once per connection, when
  Asterisk reports ``FullyBooted`` (right after login when Asterisk is up,
  later when it is still starting), so a service can rebuild its view after
  an Asterisk restart.
* :meth:`AmiClient.originate` is idempotent per ``originate_id``, see there.

Privileges (manager.conf) each call needs are listed in :data:`WRITE_CLASS`;
the ``FullyBooted`` event needs ``read = system`` and ``OriginateResponse``
needs ``read = call``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal

from hotline.amiproto import (
    MAX_PUBLIC_UNIQUEID,
    AmiMessage,
    AmiProtocolError,
    FieldValue,
    MessageReader,
    ReplyAssembler,
    encode_action,
    format_variable,
    is_error,
)

log = logging.getLogger(__name__)

EventCallback = Callable[[AmiMessage], object]

#: Actions without side effects: sent again once if the connection drops
#: before their reply. Compared case-insensitively.
READ_ONLY_ACTIONS: Final = frozenset(
    {
        "Ping",
        "Status",
        "CoreShowChannels",
        "QueueStatus",
        "QueueSummary",
        "ShowDialPlan",
        "Getvar",
        "PJSIPShowEndpoints",
        "PJSIPShowContacts",
        "CoreStatus",
        "CoreSettings",
    }
)
_READ_ONLY_LOWER: Final = frozenset(name.lower() for name in READ_ONLY_ACTIONS)

#: manager.conf ``write=`` classes that let a user run each action this module
#: sends. ``a|b`` means either class suffices (manager.c process_message()
#: checks ``writeperm & authority``); "" means any logged-in user.
#: Sources: main/manager.c __init_manager(), main/pbx.c load_pbx(),
#: apps/app_queue.c load_module(), res/res_pjsip/pjsip_configuration.c.
WRITE_CLASS: Final[Mapping[str, str]] = {
    "Ping": "",
    "Login": "",
    "Logoff": "",
    # Originate also needs system when Application matches agi, exec, system,
    # mixmonitor, originate, reload, dbdeltree, externalivr (Queue with an AGI
    # argument: agi|system) or Data holds SHELL, EVAL, CURL, DB, FILE, ODBC,
    # REALTIME (manager.c originate_app_permissions[]).
    "Originate": "originate",
    "Getvar": "call|reporting",  # + system if Variable mentions SHELL or EVAL
    "Status": "system|call|reporting",
    "CoreShowChannels": "system|reporting",
    "CoreStatus": "system|reporting",
    "CoreSettings": "system|reporting",
    "Reload": "system|config",
    "Command": "command",
    "ShowDialPlan": "config|reporting",
    "QueueStatus": "",
    "QueueSummary": "",
    "PJSIPShowEndpoints": "system",
    "PJSIPShowContacts": "system",
}

_NO_ACTION_API: Final = frozenset({"login", "logoff", "challenge"})
_ORIGINATE_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_ORIGINATE_ID: Final = MAX_PUBLIC_UNIQUEID - 2  # room for the ";2" of Local channels
_MAX_REMEMBERED_ORIGINATES: Final = 50_000
_MAX_SENDS_PER_CALL: Final = 2


class AmiError(Exception):
    """Base class of this module's errors."""


class AmiAuthError(AmiError):
    """Asterisk refused the username/secret. Never retried."""


class AmiTimeout(AmiError, TimeoutError):
    """No reply within ``action_timeout`` (or no connection within it)."""


class AmiDisconnected(AmiError):
    """The connection dropped before the reply: the action may or may not have run."""


class AmiOutcomeUnknown(AmiDisconnected):
    """An Originate's outcome is unknown and it was not sent again."""


class AmiActionError(AmiError):
    """Asterisk answered ``Response: Error``."""

    def __init__(self, action: str, response: AmiMessage) -> None:
        self.action = action
        self.response = response
        self.message = response.get("Message") or ""
        text = f"{action} failed: {self.message or response.name}"
        output = response.output
        if output:
            text += " | " + " / ".join(line.strip() for line in output[:5])
        super().__init__(text)


def backoff_delay(
    attempt: int,
    min_backoff: float,
    max_backoff: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before reconnect ``attempt`` (0-based): exponential, equal jitter.

    The base doubles from ``min_backoff`` up to ``max_backoff``; the delay is
    uniform in ``[base/2, base]`` so that many clients restarted together by
    an Asterisk restart do not reconnect in lockstep.
    """
    base = min(max_backoff, min_backoff * (2 ** min(attempt, 32)))
    return base / 2 + rand() * base / 2


def _field(fields: Mapping[str, FieldValue], key: str) -> str:
    wanted = key.lower()
    for name, value in fields.items():
        if name.lower() == wanted:
            return value if isinstance(value, str) else " ".join(value)
    return ""


def is_read_only_action(name: str, fields: Mapping[str, FieldValue]) -> bool:
    """True when re-sending ``name`` after a reconnect cannot change anything.

    ``Command`` counts only for CLI ``show`` commands (``core show channels``,
    ``pjsip show endpoints``); ``Getvar`` only for plain variables, since a
    function read such as ``DB_DELETE()`` has side effects.
    """
    lname = name.lower()
    if lname == "command":
        words = _field(fields, "Command").lower().split()
        return "show" in words[:2]
    if lname == "getvar":
        return "(" not in _field(fields, "Variable")
    return lname in _READ_ONLY_LOWER


def _consume(future: asyncio.Future[Any]) -> None:
    # Mark an exception as retrieved: a waiter that timed out or was
    # cancelled must not leave "exception was never retrieved" noise.
    if not future.cancelled():
        future.exception()


@dataclass
class _Pending:
    name: str
    assembler: ReplyAssembler
    future: asyncio.Future[ReplyAssembler]


class _NotSent(Exception):
    """The connection went away before the request was written."""


class _Connection:
    def __init__(self, generation: int, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        self.generation = generation
        self.writer = writer
        self.pending: dict[str, _Pending] = {}
        self.alive = True
        self.ready = False
        self.lost = asyncio.Event()
        self.banner: asyncio.Future[str] = loop.create_future()
        self.banner.add_done_callback(_consume)
        self.booted: AmiMessage | None = None
        self.reader_task: asyncio.Task[None] | None = None
        self.ping_task: asyncio.Task[None] | None = None


OriginateStatus = Literal["queued", "exists", "answered", "failed"]


@dataclass(frozen=True)
class OriginateResult:
    """What :meth:`AmiClient.originate` knows when it returns.

    ``sent`` is True when this call wrote an Originate to Asterisk. ``status``:
    ``queued`` (Asterisk accepted it, "Originate successfully queued"),
    ``exists`` (after a lost reply, a channel with this uniqueid was found),
    ``answered`` / ``failed`` (the ``OriginateResponse`` event was seen).
    """

    originate_id: str
    sent: bool
    status: OriginateStatus
    response: AmiMessage | None
    event: AmiMessage | None


@dataclass
class _OriginateRecord:
    originate_id: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # new: never written; unknown: written, no reply; queued: accepted;
    # rejected: Asterisk answered Error (nothing was created).
    state: Literal["new", "unknown", "queued", "rejected"] = "new"
    action_ids: set[str] = field(default_factory=set)
    response: AmiMessage | None = None
    event: AmiMessage | None = None
    error: AmiMessage | None = None
    sends: int = 0


class AmiClient:
    """Asyncio AMI client; see the module docstring for its guarantees.

    Use as ``async with AmiClient(...) as ami:`` or call :meth:`connect` and
    :meth:`close`. One instance owns one AMI session at a time.

    ``connect_timeout`` bounds the TCP connect, and then the banner plus
    Login reply, of each attempt; keep it well above 1 s, since Asterisk
    answers a wrong secret only after ``sleep(1)`` (manager.c
    ``action_login()``). ``min_backoff``/``max_backoff`` bound the reconnect
    delays (:func:`backoff_delay`). ``ping_interval``/``ping_timeout`` drive
    the keep-alive. ``action_timeout`` bounds each request, including any wait
    for a reconnect (:class:`AmiTimeout`). ``events`` is the Login ``Events``
    mask (``on``, or classes such as ``system,call,agent``); FullyBooted
    needs ``system`` in it and in the user's ``read=``.
    The secret goes over the socket in clear text (Login without MD5
    challenge): keep AMI on loopback or a private link.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        connect_timeout: float = 5.0,
        min_backoff: float = 0.2,
        max_backoff: float = 10.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 5.0,
        action_timeout: float = 30.0,
        events: str = "on",
        receives: Collection[str] | None = None,
    ) -> None:
        if not 0 < min_backoff <= max_backoff:
            raise ValueError("need 0 < min_backoff <= max_backoff")
        for label, value in (
            ("connect_timeout", connect_timeout),
            ("ping_interval", ping_interval),
            ("ping_timeout", ping_timeout),
            ("action_timeout", action_timeout),
        ):
            if value <= 0:
                raise ValueError(f"{label} must be > 0")
        # Refuse CR/LF/NUL in the credentials now, not in the background task.
        encode_action("Login", {"Username": username, "Secret": secret, "Events": events}, "probe")
        self.host = host
        self.port = port
        self.username = username
        self._secret = secret
        self._connect_timeout = connect_timeout
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._action_timeout = action_timeout
        self._events = events
        # The event names this user's manager.conf filter lets through (None: any):
        # on() refuses a name outside it rather than wait forever for an event that
        # is filtered out.
        self._receives = None if receives is None else {n.lower() for n in receives}
        self._id_prefix = "hl" + secrets.token_hex(3)
        self._counter = itertools.count(1)
        self._generation = 0
        self._conn: _Connection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._first_login: asyncio.Future[None] | None = None
        self._state_changed = asyncio.Event()
        self._closing_event = asyncio.Event()
        self._closing = False
        self._fatal: AmiError | None = None
        self._callbacks: dict[str, list[EventCallback]] = {}
        self._booted_callbacks: list[EventCallback] = []
        self._tasks: set[asyncio.Future[None]] = set()
        # Event-handling figures (make bench, the controller's status): events
        # dispatched, callback invocations, seconds spent in the callbacks' synchronous
        # part and from dispatch to the end of the asynchronous ones.
        self.events_dispatched = 0
        self.handler_calls = 0
        self.handler_s = 0.0
        self.async_handler_s = 0.0
        self._originates: OrderedDict[str, _OriginateRecord] = OrderedDict()
        self._originate_by_action_id: dict[str, _OriginateRecord] = {}

    # ------------------------------------------------------------------ life

    @property
    def connected(self) -> bool:
        conn = self._conn
        return conn is not None and conn.alive and conn.ready

    async def __aenter__(self) -> AmiClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect and log in; return once logged in.

        Transport errors are retried with back-off (bound the wait with
        ``asyncio.timeout`` if needed); bad credentials raise
        :class:`AmiAuthError` at once. Cancelling stops the attempts.
        """
        if self._closing:
            raise AmiError("AMI client is closed")
        if self._fatal is not None:
            raise type(self._fatal)(str(self._fatal))
        if self._supervisor is None or self._first_login is None:
            self._first_login = asyncio.get_running_loop().create_future()
            self._first_login.add_done_callback(_consume)
            self._supervisor = asyncio.create_task(
                self._run(self._first_login), name=f"ami-{self.host}:{self.port}"
            )
        first = self._first_login
        try:
            await asyncio.shield(first)
        except asyncio.CancelledError:
            if not first.done():
                await self._stop_supervisor()
            raise

    async def close(self) -> None:
        """Log off, close the socket, fail what is pending; idempotent."""
        if self._closing:
            return
        self._closing = True
        self._closing_event.set()
        self._state_changed.set()
        conn = self._conn
        if conn is not None and conn.alive and conn.ready:
            with contextlib.suppress(AmiError, TimeoutError, OSError, _NotSent):
                async with asyncio.timeout(1.0):
                    await self._send_on(conn, "Logoff", {}, as_list=False)
        await self._stop_supervisor()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        log.info("AMI client for %s:%s closed", self.host, self.port)

    async def _stop_supervisor(self) -> None:
        task, self._supervisor = self._supervisor, None
        first, self._first_login = self._first_login, None
        if first is not None and not first.done():
            first.set_exception(AmiError("AMI client stopped before logging in"))
        conn = self._conn
        if conn is not None:
            self._connection_lost(conn, "client stopped")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if conn is not None:
            tasks = [t for t in (conn.reader_task, conn.ping_task) if t is not None]
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pause(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._closing_event.wait()

    async def _run(self, first: asyncio.Future[None]) -> None:
        attempt = 0
        while not self._closing:
            try:
                conn = await self._open()
            except AmiAuthError as exc:
                self._stop_for_good(first, exc)
                return
            except (OSError, TimeoutError, AmiError, AmiProtocolError) as exc:
                delay = backoff_delay(attempt, self._min_backoff, self._max_backoff)
                attempt += 1
                log.warning(
                    "AMI connection to %s:%s failed (%s: %s); retry %d in %.2fs",
                    self.host,
                    self.port,
                    type(exc).__name__,
                    exc,
                    attempt,
                    delay,
                )
                await self._pause(delay)
                continue
            except Exception as exc:  # a bug, not a network condition: do not spin
                log.exception("AMI client stopped by an unexpected error")
                self._stop_for_good(first, AmiError(f"AMI client stopped: {exc!r}"))
                return
            attempt = 0
            if not first.done():
                first.set_result(None)
            await conn.lost.wait()
            if self._closing:
                return
            delay = backoff_delay(0, self._min_backoff, self._max_backoff)
            attempt = 1
            log.warning(
                "AMI connection to %s:%s lost; reconnecting in %.2fs", self.host, self.port, delay
            )
            await self._pause(delay)

    def _stop_for_good(self, first: asyncio.Future[None], exc: AmiError) -> None:
        self._fatal = exc
        if isinstance(exc, AmiAuthError):
            log.error("%s; not retrying", exc)
        if not first.done():
            first.set_exception(exc)
        self._state_changed.set()

    async def _open(self) -> _Connection:
        self._generation += 1
        async with asyncio.timeout(self._connect_timeout):
            reader, writer = await asyncio.open_connection(self.host, self.port)
        conn = _Connection(self._generation, writer)
        conn.reader_task = asyncio.create_task(
            self._read_loop(conn, reader), name=f"ami-reader-{conn.generation}"
        )
        try:
            async with asyncio.timeout(self._connect_timeout):
                banner = await conn.banner
                await self._send_on(
                    conn,
                    "Login",
                    {"Username": self.username, "Secret": self._secret, "Events": self._events},
                    as_list=False,
                )
        except AmiActionError as exc:
            self._connection_lost(conn, "login refused")
            if "authentication failed" in exc.message.lower():
                raise AmiAuthError(
                    f"AMI login as {self.username!r} to {self.host}:{self.port} refused: "
                    f"{exc.message} (check the secret and permit= in manager.conf)"
                ) from None
            raise AmiError(f"AMI login refused: {exc.message}") from None
        except BaseException:
            self._connection_lost(conn, "login failed")
            raise
        if not conn.alive:
            raise AmiDisconnected("connection closed right after login")
        conn.ready = True
        self._conn = conn
        conn.ping_task = asyncio.create_task(
            self._keepalive(conn), name=f"ami-ping-{conn.generation}"
        )
        self._state_changed.set()
        log.info(
            "AMI logged in to %s:%s as %s (%s, connection %d)",
            self.host,
            self.port,
            self.username,
            banner,
            conn.generation,
        )
        if conn.booted is not None:
            self._fire_booted(conn)
        return conn

    async def _read_loop(self, conn: _Connection, reader: asyncio.StreamReader) -> None:
        parser = MessageReader()
        reason = "closed by Asterisk"
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                messages = parser.feed(data)
                if parser.banner is not None and not conn.banner.done():
                    conn.banner.set_result(parser.banner)
                for message in messages:
                    self._handle(conn, message)
        except (OSError, AmiProtocolError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        except asyncio.CancelledError:
            reason = "reader cancelled"
            raise
        finally:
            self._connection_lost(conn, reason)

    def _connection_lost(self, conn: _Connection, reason: str) -> None:
        if not conn.alive:
            return
        conn.alive = False
        was_ready, conn.ready = conn.ready, False
        if was_ready:
            log.log(
                logging.INFO if self._closing else logging.WARNING,
                "AMI connection %d to %s:%s down: %s",
                conn.generation,
                self.host,
                self.port,
                reason,
            )
        else:
            log.debug("AMI connection attempt %d ended: %s", conn.generation, reason)
        conn.writer.transport.abort()
        if not conn.banner.done():
            conn.banner.set_exception(
                AmiDisconnected(f"connection ended before the AMI banner: {reason}")
            )
        pending, conn.pending = conn.pending, {}
        for action_id, item in pending.items():
            if not item.future.done():
                log.warning(
                    "AMI %s (ActionID %s) unanswered when connection %d ended",
                    item.name,
                    action_id,
                    conn.generation,
                )
                item.future.set_exception(
                    AmiDisconnected(
                        f"AMI connection lost before the reply to {item.name} "
                        f"(ActionID {action_id}): it may or may not have run"
                    )
                )
        for task in (conn.ping_task, conn.reader_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if self._conn is conn:
            self._conn = None
            self._state_changed.clear()
            if self._closing:
                self._state_changed.set()
        conn.lost.set()

    async def _keepalive(self, conn: _Connection) -> None:
        while conn.alive:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._ping_interval):
                    await conn.lost.wait()
                return
            try:
                async with asyncio.timeout(self._ping_timeout):
                    await self._send_on(conn, "Ping", {}, as_list=False)
            except TimeoutError:
                log.warning("AMI keep-alive: no reply to Ping within %.1fs", self._ping_timeout)
                self._connection_lost(conn, "keep-alive Ping unanswered")
                return
            except (AmiDisconnected, _NotSent):
                return
            except AmiActionError as exc:
                log.warning("AMI keep-alive Ping answered with an error: %s", exc)

    # -------------------------------------------------------------- messages

    def _handle(self, conn: _Connection, message: AmiMessage) -> None:
        action_id = message.action_id
        item = conn.pending.get(action_id) if action_id is not None else None
        if item is not None and not (message.kind == "event" and not item.assembler.as_list):
            try:
                done = item.assembler.add(message)
            except ValueError as exc:
                log.warning("AMI dropping a message for ActionID %s: %s", action_id, exc)
                return
            if done:
                del conn.pending[item.assembler.action_id]
                response = item.assembler.response
                log.debug(
                    "AMI <- %s to %s ActionID=%s (%d items)",
                    response.name if response is not None else "?",
                    item.name,
                    action_id,
                    len(item.assembler.items),
                )
                if item.future.done():
                    return
                if response is not None and is_error(response):
                    item.future.set_exception(AmiActionError(item.name, response))
                else:
                    item.future.set_result(item.assembler)
            return
        if message.kind == "event":
            self._dispatch(conn, message)
        elif message.kind == "response":
            log.debug("AMI reply to ActionID %s arrived after its caller gave up", action_id)
        else:
            log.warning("AMI ignoring a message with neither Response nor Event: %r", message)

    def _dispatch(self, conn: _Connection, event: AmiMessage) -> None:
        self.events_dispatched += 1
        name = event.name.lower()
        if name == "originateresponse":
            self._note_originate_response(event)
        elif name == "shutdown":
            log.warning("AMI: Asterisk is shutting down (Restart: %s)", event.get("Restart"))
        callbacks = list(self._callbacks.get(name, ())) + list(self._callbacks.get("*", ()))
        for callback in callbacks:
            self._invoke(callback, event)
        if name == "fullybooted" and conn.booted is None:
            conn.booted = event
            if conn.ready:
                self._fire_booted(conn)

    def _fire_booted(self, conn: _Connection) -> None:
        # Deferred until the login completed, so callbacks see connected=True.
        event = conn.booted
        assert event is not None
        log.info("AMI: Asterisk fully booted (connection %d)", conn.generation)
        for callback in list(self._booted_callbacks):
            self._invoke(callback, event)

    def _invoke(self, callback: EventCallback, event: AmiMessage) -> None:
        self.handler_calls += 1
        started = time.perf_counter()
        try:
            result = callback(event)
        except Exception:
            log.exception(
                "AMI %s callback %r raised (Uniqueid %s)",
                event.name,
                callback,
                event.get("Uniqueid"),
            )
            return
        finally:
            self.handler_s += time.perf_counter() - started
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._await_callback(result, callback, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _await_callback(
        self, awaitable: Awaitable[object], callback: EventCallback, event: AmiMessage
    ) -> None:
        started = time.perf_counter()
        try:
            await awaitable
        except Exception:
            log.exception(
                "AMI %s async callback %r raised (Uniqueid %s)",
                event.name,
                callback,
                event.get("Uniqueid"),
            )
        finally:
            self.async_handler_s += time.perf_counter() - started

    def event_figures(self) -> dict[str, float]:
        """Events dispatched and time in their callbacks since the client was made."""
        return {"events": self.events_dispatched, "handler_calls": self.handler_calls,
                "handler_s": round(self.handler_s, 6),
                "async_handler_s": round(self.async_handler_s, 6)}

    def on(self, event_name: str, callback: EventCallback) -> EventCallback:
        """Call ``callback(event)`` for each event named ``event_name`` (or ``'*'``).

        Names compare case-insensitively. A sync callback runs in the reader
        and must not block; an async one runs as its own task, so order across
        async callbacks is not guaranteed. Exceptions are logged. A name the
        session does not receive (``receives``) raises ValueError.
        """
        name = event_name.lower()
        if self._receives is not None and name != "*" and name not in self._receives:
            raise ValueError(
                f"AMI events {event_name!r} are filtered out for user {self.username!r}: "
                "add the name to hotline.channel_vars.CONTROLLER_EVENTS"
            )
        self._callbacks.setdefault(name, []).append(callback)
        return callback

    def off(self, event_name: str, callback: EventCallback) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._callbacks[event_name.lower()].remove(callback)

    def on_booted(self, callback: EventCallback) -> EventCallback:
        """Call ``callback(fully_booted_event)`` once per connection, when Asterisk is up.

        If the current connection has already seen FullyBooted, the callback
        runs right away too, so registering after :meth:`connect` is safe.
        """
        self._booted_callbacks.append(callback)
        conn = self._conn
        if conn is not None and conn.alive and conn.booted is not None:
            self._invoke(callback, conn.booted)
        return callback

    # -------------------------------------------------------------- requests

    def _next_action_id(self) -> str:
        return f"{self._id_prefix}-{next(self._counter)}"

    async def _send_on(
        self,
        conn: _Connection,
        name: str,
        fields: Mapping[str, FieldValue],
        *,
        as_list: bool,
        action_id: str | None = None,
        on_write: Callable[[], None] | None = None,
    ) -> ReplyAssembler:
        action_id = action_id or self._next_action_id()
        data = encode_action(name, fields, action_id)
        if not conn.alive:
            raise _NotSent()
        future: asyncio.Future[ReplyAssembler] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)
        conn.pending[action_id] = _Pending(name, ReplyAssembler(action_id, as_list), future)
        if on_write is not None:
            on_write()
        log.debug("AMI -> %s ActionID=%s (connection %d)", name, action_id, conn.generation)
        conn.writer.write(data)
        try:
            return await future
        finally:
            item = conn.pending.get(action_id)
            if item is not None and item.future is future:
                del conn.pending[action_id]

    async def _wait_connected(self) -> _Connection:
        while True:
            if self._closing:
                raise AmiError("AMI client is closed")
            if self._fatal is not None:
                raise type(self._fatal)(str(self._fatal))
            if self._supervisor is None:
                raise AmiError("AMI client is not connected: call connect() first")
            conn = self._conn
            if conn is not None and conn.alive and conn.ready:
                return conn
            # Nothing usable right now: wait for the next login, close or
            # fatal error (each sets the event; all were checked above).
            self._state_changed.clear()
            await self._state_changed.wait()

    async def _request(
        self,
        name: str,
        fields: Mapping[str, FieldValue],
        *,
        as_list: bool,
        retry_once: bool,
        action_id: str | None = None,
        on_write: Callable[[], None] | None = None,
    ) -> ReplyAssembler:
        encode_action(name, fields, action_id or "probe")  # refuse bad input before waiting
        retried = False
        try:
            async with asyncio.timeout(self._action_timeout):
                while True:
                    conn = await self._wait_connected()
                    try:
                        return await self._send_on(
                            conn,
                            name,
                            fields,
                            as_list=as_list,
                            action_id=action_id,
                            on_write=on_write,
                        )
                    except _NotSent:
                        continue
                    except AmiDisconnected:
                        if retry_once and not retried and not self._closing:
                            retried = True
                            log.info("AMI: re-sending read-only %s after reconnect", name)
                            continue
                        raise
        except TimeoutError:
            raise AmiTimeout(f"no reply to {name} within {self._action_timeout}s") from None

    async def action(self, name: str, **fields: str | Sequence[str] | None) -> AmiMessage:
        """Send one action and return its response; ``None`` fields are left out.

        ``Response: Error`` raises :class:`AmiActionError`; a drop before the
        reply raises :class:`AmiDisconnected` unless the action is read-only
        (then it is sent once more after the reconnect).
        """
        if name.lower() in _NO_ACTION_API:
            raise ValueError(f"{name} is managed by connect()/close()")
        clean = {key: value for key, value in fields.items() if value is not None}
        assembler = await self._request(
            name, clean, as_list=False, retry_once=is_read_only_action(name, clean)
        )
        assert assembler.response is not None
        return assembler.response

    async def action_list(
        self, name: str, **fields: str | Sequence[str] | None
    ) -> list[AmiMessage]:
        """Send an action that answers with an event list; return the items.

        Collects the events carrying the request's ActionID up to the one
        with ``EventList: Complete`` (which is not included).
        """
        if name.lower() in _NO_ACTION_API:
            raise ValueError(f"{name} is managed by connect()/close()")
        clean = {key: value for key, value in fields.items() if value is not None}
        assembler = await self._request(
            name, clean, as_list=True, retry_once=is_read_only_action(name, clean)
        )
        return list(assembler.items)

    async def reload(self, module: str | None = None) -> None:
        """``Reload`` one module (e.g. ``"app_queue.so"``) or all when None."""
        await self.action("Reload", Module=module)

    async def command(self, cmd: str) -> str:
        """Run a CLI command (needs ``write = command``); return its output."""
        response = await self.action("Command", Command=cmd)
        return "\n".join(response.output)

    async def getvar(self, name: str, channel: str | None = None) -> str | None:
        """Read a channel (or, without channel, global) variable.

        Asterisk answers an empty ``Value`` both for an unset and for an empty
        variable; both give None.
        """
        response = await self.action("Getvar", Variable=name, Channel=channel)
        return response.get("Value") or None

    # ------------------------------------------------------------- originate

    async def originate(
        self,
        originate_id: str,
        channel: str,
        *,
        context: str | None = None,
        exten: str | None = None,
        priority: int | str | None = None,
        application: str | None = None,
        data: str | None = None,
        caller_id: str | None = None,
        variables: Mapping[str, str] | None = None,
        timeout_ms: int = 30_000,
        account: str | None = None,
        resend_if_absent: bool = False,
    ) -> OriginateResult:
        """Originate a call at most once per ``originate_id`` (idempotent).

        Sends ``Originate`` with ``Async: true`` and ``ChannelId:
        <originate_id>``, so the new channel's uniqueid *is* the id (for a
        ``Local/`` channel the ``;2`` half gets ``<originate_id>;2`` by
        default, main/core_unreal.c). ``variables`` go out as one escaped
        ``Variable:`` header each (:func:`hotline.amiproto.format_variable`).

        The guarantee, for one client instance:

        1. An id whose Originate got a reply (accepted or refused) is never
           sent again: a repeat call returns the stored result
           (``sent=False``) or raises the stored :class:`AmiActionError`.
        2. If the connection drops after the Originate was written and before
           Asterisk's reply, the outcome is unknown. Without
           ``resend_if_absent`` this raises :class:`AmiOutcomeUnknown` and
           nothing is re-sent.
        3. With ``resend_if_absent=True`` (now or on a later call with the
           same id), after the reconnect the client looks for evidence: an
           ``OriginateResponse`` whose ActionID or Uniqueid is ours, or a
           channel listed by ``CoreShowChannels`` with ``Uniqueid`` equal to
           the id (or ``id;2``). Only if there is neither is the Originate
           sent again (at most twice per call).

        What it cannot see: a first call that was accepted, ran, and hung up
        while the client was disconnected (its OriginateResponse went to no
        one) - a re-send then places a second call. Two live channels with one
        uniqueid cannot exist: Asterisk refuses an allocation whose id is in
        use (main/channel.c ``does_id_conflict()``). Nothing is kept across
        process restarts; callers that need that must persist the id and
        check ``CoreShowChannels`` themselves.
        """
        _check_originate_id(originate_id)
        fields = _originate_fields(
            originate_id,
            channel,
            context=context,
            exten=exten,
            priority=priority,
            application=application,
            data=data,
            caller_id=caller_id,
            variables=variables,
            timeout_ms=timeout_ms,
            account=account,
        )
        record = self._originates.get(originate_id)
        if record is None:
            record = _OriginateRecord(originate_id)
            self._remember(record)
        async with record.lock:
            return await self._originate_locked(record, fields, resend_if_absent)

    async def _originate_locked(
        self,
        record: _OriginateRecord,
        fields: Mapping[str, FieldValue],
        resend_if_absent: bool,
    ) -> OriginateResult:
        oid = record.originate_id
        sends_before = record.sends
        hint = "pass resend_if_absent=True to re-send when no channel exists"
        while True:
            sent = record.sends > sends_before
            if record.state == "rejected":
                assert record.error is not None
                raise AmiActionError("Originate", record.error)
            if record.state == "queued":
                if not sent:
                    log.info("originate %s: already accepted by Asterisk; not sending again", oid)
                return _originate_result(record, sent)
            if record.state == "unknown":
                if await self._originate_evidence(record):
                    return _originate_result(record, sent)
                if not resend_if_absent:
                    raise AmiOutcomeUnknown(
                        f"originate {oid}: an earlier send got no reply and no channel exists; "
                        f"not re-sent ({hint})"
                    )
                if record.sends - sends_before >= _MAX_SENDS_PER_CALL:
                    raise AmiOutcomeUnknown(
                        f"originate {oid}: no reply after {_MAX_SENDS_PER_CALL} sends"
                    )
                log.warning(
                    "originate %s: no channel and no OriginateResponse after a lost reply; "
                    "re-sending (resend_if_absent=True)",
                    oid,
                )
            before = record.sends
            try:
                await self._send_originate(record, fields)
            except (AmiDisconnected, AmiTimeout) as exc:
                if record.sends == before:
                    raise  # never written: nothing to be unsure about
                if not resend_if_absent:
                    message = f"originate {oid}: {exc}; not re-sent ({hint})"
                    log.warning("%s", message)
                    raise AmiOutcomeUnknown(message) from exc
                log.warning("originate %s: %s; will check for the channel", oid, exc)

    async def _send_originate(
        self, record: _OriginateRecord, fields: Mapping[str, FieldValue]
    ) -> None:
        action_id = self._next_action_id()

        def written() -> None:
            record.state = "unknown"
            record.sends += 1
            record.action_ids.add(action_id)
            self._originate_by_action_id[action_id] = record
            log.info(
                "originate %s: sending on %s (ActionID %s, send %d)",
                record.originate_id,
                _field(fields, "Channel"),
                action_id,
                record.sends,
            )

        try:
            assembler = await self._request(
                "Originate",
                fields,
                as_list=False,
                retry_once=False,
                action_id=action_id,
                on_write=written,
            )
        except AmiActionError as exc:
            record.state = "rejected"
            record.error = exc.response
            log.warning("originate %s: refused by Asterisk: %s", record.originate_id, exc.message)
            raise
        record.state = "queued"
        record.response = assembler.response
        log.info("originate %s: accepted (ActionID %s)", record.originate_id, action_id)

    async def _originate_evidence(self, record: _OriginateRecord) -> bool:
        """After a lost reply: did Asterisk act on the Originate?"""
        if record.event is None:
            channels = await self.action_list("CoreShowChannels")
            ids = {record.originate_id, record.originate_id + ";2"}
            if record.event is None and not any(ch.get("Uniqueid") in ids for ch in channels):
                return False
            if record.event is None:
                log.info("originate %s: channel exists; treating as accepted", record.originate_id)
        record.state = "queued"
        return True

    def _note_originate_response(self, event: AmiMessage) -> None:
        action_id = event.action_id
        record = self._originate_by_action_id.get(action_id) if action_id else None
        if record is None:
            record = self._originates.get(event.get("Uniqueid") or "")
        if record is None:
            return
        record.event = event
        log.info(
            "originate %s: OriginateResponse %s (Reason %s, Channel %s)",
            record.originate_id,
            event.get("Response"),
            event.get("Reason"),
            event.get("Channel"),
        )

    def _remember(self, record: _OriginateRecord) -> None:
        self._originates[record.originate_id] = record
        excess = len(self._originates) - _MAX_REMEMBERED_ORIGINATES
        if excess <= 0:
            return
        for oid in list(itertools.islice(self._originates, 2 * excess)):
            old = self._originates[oid]
            if excess > 0 and old.state in ("queued", "rejected") and not old.lock.locked():
                del self._originates[oid]
                for action_id in old.action_ids:
                    self._originate_by_action_id.pop(action_id, None)
                excess -= 1


def _check_originate_id(originate_id: str) -> None:
    if not _ORIGINATE_ID_RE.fullmatch(originate_id) or len(originate_id) > _MAX_ORIGINATE_ID:
        raise ValueError(
            f"originate_id must be 1-{_MAX_ORIGINATE_ID} characters of [A-Za-z0-9._-], "
            f"got {originate_id!r}"
        )


def _originate_fields(
    originate_id: str,
    channel: str,
    *,
    context: str | None,
    exten: str | None,
    priority: int | str | None,
    application: str | None,
    data: str | None,
    caller_id: str | None,
    variables: Mapping[str, str] | None,
    timeout_ms: int,
    account: str | None,
) -> dict[str, FieldValue]:
    if "/" not in channel:
        raise ValueError(f"originate channel must look like TECH/resource, got {channel!r}")
    dialplan = (context, exten, priority)
    if application is not None:
        if any(part is not None for part in dialplan):
            raise ValueError("originate takes context/exten/priority or application, not both")
    elif any(part is None for part in dialplan):
        raise ValueError("originate needs context, exten and priority (or application)")
    if data is not None and application is None:
        raise ValueError("originate data needs an application")
    if timeout_ms <= 0:
        raise ValueError("timeout_ms must be > 0")
    fields: dict[str, FieldValue] = {"Channel": channel}
    if application is not None:
        fields["Application"] = application
        if data is not None:
            fields["Data"] = data
    else:
        fields["Context"] = str(context)
        fields["Exten"] = str(exten)
        fields["Priority"] = str(priority)
    fields["Timeout"] = str(int(timeout_ms))
    if caller_id is not None:
        fields["CallerID"] = caller_id
    if account is not None:
        fields["Account"] = account
    fields["Async"] = "true"
    fields["ChannelId"] = originate_id
    if variables:
        fields["Variable"] = [format_variable(name, value) for name, value in variables.items()]
    encode_action("Originate", fields, "probe")  # CR/LF guard before anything is recorded
    return fields


def _originate_result(record: _OriginateRecord, sent: bool) -> OriginateResult:
    status: OriginateStatus
    if record.event is not None:
        success = (record.event.get("Response") or "").lower() == "success"
        status = "answered" if success else "failed"
    elif record.response is not None:
        status = "queued"
    else:
        status = "exists"
    return OriginateResult(record.originate_id, sent, status, record.response, record.event)
