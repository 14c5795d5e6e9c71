"""asyncio FastAGI server: one :class:`Session` per connection from Asterisk.

``AGI(agi://host:port/SCRIPT)`` makes Asterisk connect, send its environment
and then wait for commands (res_agi.c ``launch_netscript()``/``run_agi()``).
The session parses the environment, looks ``agi_network_script`` up in the
:class:`~agi_scripts.RouteTable` and runs the handler with a typed
:class:`Channel`.  When the handler returns, the socket is closed and Asterisk
goes on with the dialplan after ``AGI()``.

Failure handling lives in one place, :meth:`Session._abort`:
:class:`~agi_scripts.Abort`, an unknown script, a deadline, a refused command
or an unexpected exception all become ``SET VARIABLE HOTLINE_ABORT_REASON``
then ``EXEC Goto hotline-failure,s,1``.  A hangup (``HANGUP`` line, ``511``,
EOF) only ends the session.

Deadlines: each command waits at most ``command_timeout`` for its response;
the handler's own work between two commands (and before the first, after the
last) is bounded by ``step_timeout``.  Both are one :func:`asyncio.timeout`
per session, driven by one timer that is only re-armed when the deadline
comes earlier (:class:`_Deadline`): no extra task, no polling, no timer
churn per command.

CPU per call matters (issue 2, ``make bench``): every call of the hotline runs
at least one AGI step, on the same cores as Asterisk.  So the socket is an
:class:`asyncio.Protocol` (:class:`_Wire`) rather than a stream pair: the
session's task wakes once for the environment however many pieces
``setup_env()`` writes it in, and once per response.  :func:`loop_factory`
gives uvloop's event loop when it is installed: about a third less again
(``python -m bench.agi_micro`` measures it without Asterisk).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, NoReturn, cast

from agi_scripts import Abort, Handler, RouteTable
from hotline import channel_vars
from ivr.agi import (
    MAX_ENVIRONMENT_BYTES,
    AgiCommandError,
    AgiEnvironment,
    AgiError,
    AgiEvent,
    AgiHangup,
    AgiProtocolError,
    AgiResponse,
    ChannelHungUp,
    ResponseReader,
    format_command,
    parse_environment,
    sanitize,
)

__all__ = [
    "AgiCommandError",
    "CallLog",
    "Channel",
    "ChannelHungUp",
    "FastAgiServer",
    "Session",
    "SessionHook",
    "loop_factory",
]

logger = logging.getLogger(__name__)

#: Called when a session ends with (script, uniqueid, seconds since connect).
SessionHook = Callable[[str, str, float], None]

# Abort reasons set in HOTLINE_ABORT_REASON by the server itself.
REASON_UNKNOWN_SCRIPT: Final = "unknown script"
REASON_STEP_TIMEOUT: Final = "step timeout"
REASON_COMMAND_TIMEOUT: Final = "command timeout"
REASON_COMMAND_FAILED: Final = "command failed"
REASON_PROTOCOL_ERROR: Final = "protocol error"
REASON_BAD_ENVIRONMENT: Final = "bad environment"
REASON_INTERNAL_ERROR: Final = "internal error"
REASON_SHUTDOWN: Final = "server shutdown"

# Stop reading when this much arrived unasked (what asyncio's StreamReader does at 2 x limit).
_PAUSE_BYTES: Final = 2 * MAX_ENVIRONMENT_BYTES
_DTMF = re.compile(r"[0-9*#A-D]*")
_APPLICATION = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# A variable, optionally with inheritance prefix, or a dialplan function call.
_VARIABLE = re.compile(r"_{0,2}[A-Za-z0-9_]+(?:\([^()]*\))?")
_ANSWER: Final = format_command("ANSWER")
_HANGUP: Final = format_command("HANGUP")
_GOTO_FAILURE: Final = format_command("EXEC", "Goto", f"{channel_vars.CTX_FAILURE},s,1")


class CallLog(logging.LoggerAdapter[logging.Logger]):
    """Logger adapter that starts every line with ``[uniqueid]``.

    The uniqueid is also passed as ``extra={"uniqueid": ...}`` for structured
    handlers.
    """

    def __init__(self, base: logging.Logger, uniqueid: str) -> None:
        super().__init__(base, {"uniqueid": uniqueid})
        self.uniqueid = uniqueid
        self._prefix = "[" + uniqueid.replace("%", "%%") + "] "

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = kwargs.get("extra")
        kwargs["extra"] = {**extra, "uniqueid": self.uniqueid} if extra else self.extra
        return self._prefix + str(msg), kwargs


class _Deadline:
    """The handler's one deadline: moving it stores a number, not a timer.

    Every command moves the deadline twice (to ``now + max_wait``, then to
    ``now + step_timeout``).  Rescheduling an event-loop timer each time costs
    more than the rest of the command, so :meth:`move` only re-arms the timer
    when the deadline comes *earlier* than the armed time; a timer that fires
    before the deadline arms itself again for it.  When the deadline has
    passed, the session's :func:`asyncio.timeout` is expired, which cancels
    the handler and turns the cancellation into ``TimeoutError`` as usual.
    """

    __slots__ = ("_loop", "_timeout", "_due", "_armed", "_handle")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: asyncio.Timeout) -> None:
        self._loop = loop
        self._timeout = timeout
        self._due = math.inf
        self._armed = math.inf
        self._handle: asyncio.TimerHandle | None = None

    def expired(self) -> bool:
        return self._timeout.expired()

    def move(self, due: float) -> None:
        """Set the deadline to loop time ``due`` (``math.inf``: none)."""
        self._due = due
        if due < self._armed:
            self._arm(due)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed = math.inf

    def _arm(self, due: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = due
        self._handle = self._loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed = math.inf
        due = self._due
        if due <= self._loop.time():
            self._timeout.reschedule(due)  # past: expires on the next loop iteration
        elif due != math.inf:
            self._arm(due)


class _Wire(asyncio.Protocol):
    """One FastAGI socket: the environment, then one command/response at a time.

    The protocol callbacks only keep what arrives; the bytes are parsed by the
    session's task while it waits for the environment or for a command's
    response (as a stream reader would).  The task is woken once the
    environment block is complete, not for each of the lines that
    ``setup_env()`` writes separately.  A ``HANGUP`` line, a ``511`` or EOF
    marks the wire hung up and raises :class:`ChannelHungUp` (now and for
    every later command).
    """

    __slots__ = (
        "_server",
        "_loop",
        "transport",
        "_peername",
        "_pending",
        "_env_scan",
        "_waiter",
        "_lost",
        "_closed",
        "_disconnected",
        "_paused",
        "_responses",
        "_events",
        "_step_timeout",
        "deadline",
        "busy",
        "hung_up",
        "hangup_cause",
    )

    def __init__(self, server: FastAgiServer, loop: asyncio.AbstractEventLoop) -> None:
        self._server = server
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self._peername: object = None
        self._pending = b""  # received, not parsed yet
        self._env_scan = 0  # where to look for the end of the environment; -1 once read
        self._waiter: asyncio.Future[None] | None = None
        self._lost: tuple[BaseException | None] | None = None  # EOF (None) or error
        self._closed: asyncio.Future[None] | None = None
        self._disconnected = False
        self._paused = False
        self._responses = ResponseReader()
        self._events: deque[AgiEvent] = deque()
        self._step_timeout = server.step_timeout
        #: The handler's deadline while it runs (see Session._run_handler).
        self.deadline: _Deadline | None = None
        self.busy = False
        self.hung_up = False
        self.hangup_cause = ""

    # ------------------------------------------------------------ protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)
        self._peername = transport.get_extra_info("peername")  # formatted only if logged
        self._server._serve(self)

    def data_received(self, data: bytes) -> None:
        pending = self._pending = self._pending + data if self._pending else data
        scan = self._env_scan
        if scan >= 0:  # still waiting for the environment's empty line
            if pending.find(b"\n\n", scan) < 0 and len(pending) - 1 <= MAX_ENVIRONMENT_BYTES:
                self._env_scan = len(pending) - 1
                return
        elif len(pending) > _PAUSE_BYTES and not self._paused:
            self._paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def eof_received(self) -> bool:
        self._lost = (None,)
        self._wake()
        return True  # keep the transport: it is closed when the session ends

    def connection_lost(self, exc: Exception | None) -> None:
        self._disconnected = True
        if self._lost is None or exc is not None:
            self._lost = (exc,)
        self._wake()
        closed = self._closed
        if closed is not None and not closed.done():
            closed.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = self._waiter = self._loop.create_future()
        await waiter

    # ------------------------------------------------------------ the session side

    @property
    def peer(self) -> str:
        """``host:port`` of Asterisk's end of the socket."""
        peer = self._peername
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"

    async def read_environment(self) -> bytes:
        """The environment block, up to its empty line.

        Raises as ``StreamReader.readuntil(b"\\n\\n")`` with a limit of
        :data:`MAX_ENVIRONMENT_BYTES` would: the connection's error,
        :class:`asyncio.LimitOverrunError`, or :class:`asyncio.IncompleteReadError`
        at EOF.
        """
        while True:
            lost = self._lost
            if lost is not None and lost[0] is not None:
                raise lost[0]
            pending = self._pending
            found = pending.find(b"\n\n", max(0, self._env_scan))
            if found >= 0:
                if found > MAX_ENVIRONMENT_BYTES:
                    raise asyncio.LimitOverrunError("AGI environment too large", found)
                end = found + 2
                self._env_scan = -1
                self._pending = pending[end:]
                return pending[:end]
            if len(pending) - 1 > MAX_ENVIRONMENT_BYTES:
                raise asyncio.LimitOverrunError("AGI environment too large", len(pending) - 1)
            if lost is not None:
                raise asyncio.IncompleteReadError(pending, None)
            self._env_scan = max(0, len(pending) - 1)
            await self._wait()

    def resync(self) -> None:
        """Forget buffered input after a protocol error (best effort)."""
        self._responses = ResponseReader()
        self._events.clear()

    async def command(self, line: bytes, max_wait: float, check: bool = False) -> AgiResponse:
        """Send one command line and return its response.

        While a handler runs, its deadline is moved to ``now + max_wait`` for
        the command, then to ``now + step_timeout`` for the handler's next
        step; otherwise a plain timeout applies.  ``max_wait=math.inf`` waits
        without limit.  With ``check``, a response other than ``200`` raises
        :class:`AgiCommandError`.
        """
        if self.hung_up:
            raise ChannelHungUp(self.hangup_cause)
        if self.busy:
            raise RuntimeError("another AGI command is already waiting on this channel")
        deadline = self.deadline
        response: AgiResponse | None
        if deadline is None:
            self.busy = True
            try:
                async with asyncio.timeout(None if max_wait == math.inf else max_wait):
                    response = await self._exchange(line)
            finally:
                self.busy = False
        else:
            if deadline.expired():
                # The handler swallowed the cancellation of its expired deadline.
                raise asyncio.CancelledError
            self.busy = True
            loop = self._loop
            deadline.move(loop.time() + max_wait)
            try:
                # _exchange(), inlined: this is the path every handler command takes.
                self._send(line)
                while (response := self._next_response()) is None:
                    waiter = self._waiter = loop.create_future()
                    await waiter
            except Exception:
                self.busy = False
                raise
            # On a timeout (CancelledError) "busy" stays set so that the session
            # can tell a command timeout from a step timeout.
            self.busy = False
            deadline.move(loop.time() + self._step_timeout)
        if check and response.code != 200:
            raise AgiCommandError(_verb(line), response)
        return response

    async def _exchange(self, line: bytes) -> AgiResponse:
        self._send(line)
        while (response := self._next_response()) is None:
            waiter = self._waiter = self._loop.create_future()
            await waiter
        return response

    def _send(self, line: bytes) -> None:
        events = self._events
        if events and isinstance(events[0], AgiHangup):
            self._hang_up("HANGUP from Asterisk")  # already said: send nothing more
        transport = self.transport
        assert transport is not None
        if not transport.is_closing():
            transport.write(line)

    def _next_response(self) -> AgiResponse | None:
        """The next response received, or None if it has to be waited for."""
        events = self._events
        while True:
            if events:
                event = events.popleft()
                if isinstance(event, AgiHangup):
                    self._hang_up("HANGUP from Asterisk")
                elif event.code == 511:
                    self._hang_up(f"511 {event.data}")
                return event
            pending = self._pending
            if pending:
                self._pending = b""
                if self._paused:
                    self._paused = False
                    self.transport.resume_reading()  # type: ignore[union-attr]
                events.extend(self._responses.feed(pending))
                continue
            lost = self._lost
            if lost is not None:
                exc = lost[0]
                if exc is None:
                    self._hang_up("connection closed by Asterisk")
                self._hang_up(f"connection lost: {exc!r}")
            return None

    def _hang_up(self, cause: str) -> NoReturn:
        self.hung_up = True
        self.hangup_cause = cause
        raise ChannelHungUp(cause)

    async def close(self, flush_s: float) -> None:
        """Close the socket; wait (at most ``flush_s``) only if output is still queued."""
        transport = self.transport
        if transport is None:
            return
        flushing = transport.get_write_buffer_size() > 0
        transport.close()
        if not flushing or self._disconnected:
            return
        self._closed = self._loop.create_future()
        try:
            async with asyncio.timeout(flush_s):
                await self._closed
        except TimeoutError:
            transport.abort()


class Channel:
    """What an AGI handler sees of its call: typed commands, env, logger.

    Every method sends one command from res_agi.c and waits for its response.
    ``ChannelHungUp`` is raised once the call is gone; ``AgiCommandError``
    when Asterisk refuses a command (``510``/``520``) or a media command
    reports ``-1`` (error or hangup).
    """

    __slots__ = ("env", "uniqueid", "log", "last_endpos", "_wire", "_command_timeout")

    def __init__(
        self, env: AgiEnvironment, wire: _Wire, log: CallLog, command_timeout: float
    ) -> None:
        self.env = env
        self.uniqueid = env.uniqueid
        self.log = log
        #: ``endpos`` (samples) of the last STREAM FILE.
        self.last_endpos: int | None = None
        self._wire = wire
        self._command_timeout = command_timeout

    @property
    def hung_up(self) -> bool:
        """Whether a hangup has been seen (HANGUP, 511 or EOF)."""
        return self._wire.hung_up

    def _run(self, line: bytes, max_wait: float | None = None) -> Awaitable[AgiResponse]:
        """Send ``line``; a response other than ``200`` raises :class:`AgiCommandError`."""
        return self._wire.command(
            line, self._command_timeout if max_wait is None else max_wait, True
        )

    async def answer(self) -> None:
        """``ANSWER``: ``200 result=0``, or ``-1`` if the channel failed."""
        response = await self._run(_ANSWER)
        if not response.ok:
            raise AgiCommandError("ANSWER", response)

    async def hangup(self) -> None:
        """``HANGUP``: soft-hang-up the channel (Asterisk then sends ``HANGUP``)."""
        await self._run(_HANGUP)

    async def stream_file(
        self, name: str, escape_digits: str = "", *, max_wait: float | None = None
    ) -> str | None:
        """``STREAM FILE name digits``: the digit that stopped playback, or None.

        ``endpos`` is kept in :attr:`last_endpos`.  ``-1`` (file missing,
        error or hangup) raises :class:`AgiCommandError`.  ``max_wait`` (seconds,
        default ``command_timeout``) must cover the length of the prompt.
        """
        _check_digits(escape_digits)
        response = await self._run(format_command("STREAM FILE", name, escape_digits), max_wait)
        self.last_endpos = response.endpos
        if not response.ok:
            raise AgiCommandError("STREAM FILE", response)
        return response.digit

    async def get_data(
        self, prompt: str, timeout_ms: int, max_digits: int, *, max_wait: float | None = None
    ) -> str:
        """``GET DATA prompt timeout max``: the digits typed, ``''`` if none.

        On a timeout after some digits (``200 result=12 (timeout)``) those
        digits are returned.  The wait is bounded by ``command_timeout`` plus
        ``timeout_ms`` per digit, unless ``max_wait`` is given.
        """
        if timeout_ms < 0 or max_digits < 1:
            raise ValueError(
                f"get_data needs timeout_ms >= 0 and max_digits >= 1, "
                f"not {timeout_ms} and {max_digits}"
            )
        if max_wait is None:
            per_digit = (timeout_ms or 10_000) / 1000
            max_wait = self._command_timeout + per_digit * max_digits
        response = await self._run(
            format_command("GET DATA", prompt, str(timeout_ms), str(max_digits)), max_wait
        )
        if not response.ok:
            raise AgiCommandError("GET DATA", response)
        return response.result or ""

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        """``WAIT FOR DIGIT timeout``: the digit pressed, or None on timeout."""
        if timeout_ms < 0:
            raise ValueError(f"wait_for_digit needs timeout_ms >= 0, not {timeout_ms}")
        response = await self._run(
            format_command("WAIT FOR DIGIT", str(timeout_ms)),
            self._command_timeout + timeout_ms / 1000,
        )
        if not response.ok:
            raise AgiCommandError("WAIT FOR DIGIT", response)
        return response.digit

    async def set_variable(self, name: str, value: str) -> None:
        """``SET VARIABLE name value``; ``value`` goes through :func:`sanitize`.

        res_agi stores the value as is (no ``${}`` expansion), so caller text is
        safe once control characters are gone.
        """
        _check_variable(name)
        clean = sanitize(value)
        if clean != value:
            self.log.warning("value for %s sanitized (control characters or too long)", name)
        await self._run(format_command("SET VARIABLE", name, clean))

    async def get_variable(self, name: str) -> str | None:
        """``GET VARIABLE name``: the value, or None when not set (``result=0``)."""
        _check_variable(name)
        response = await self._run(format_command("GET VARIABLE", name))
        if response.result == "1":
            return response.data or ""
        return None

    async def get_full_variable(self, expression: str) -> str | None:
        """``GET FULL VARIABLE expr``: ``expr`` with ``${...}`` expanded."""
        response = await self._run(format_command("GET FULL VARIABLE", expression))
        if response.result == "1":
            return response.data or ""
        return None

    async def exec(self, application: str, *args: str, max_wait: float | None = None) -> int:
        """``EXEC app "arg1,arg2"``: the application's return value.

        The arguments are joined with ``,`` and sent as ONE quoted word, which
        ``handle_exec()`` passes to the application unexpanded (unless
        ``AGIEXECFULL=yes``).  They are not escaped for the application's own
        argument parser: do not pass caller-controlled text here.  ``-2``
        (unknown application) raises :class:`AgiCommandError`.  Use
        ``max_wait=math.inf`` for Dial/Queue.
        """
        if _APPLICATION.fullmatch(application) is None:
            raise ValueError(f"invalid application name: {application!r}")
        if args:
            line = format_command("EXEC", application, ",".join(args))
        else:
            line = format_command("EXEC", application)
        response = await self._run(line, max_wait)
        try:
            result = int(response.result or "")
        except ValueError:
            raise AgiProtocolError(f"EXEC result is not a number: {response.result!r}") from None
        if result == -2:
            raise AgiCommandError(f"EXEC {application}", response)
        return result

    async def verbose(self, message: str, level: int = 1) -> None:
        """``VERBOSE message level``: a line in the Asterisk console/log."""
        await self._run(format_command("VERBOSE", sanitize(message), str(level)))


def _verb(line: bytes) -> str:
    return line.split(b' "', 1)[0].strip().decode("ascii", "replace")


def _check_digits(digits: str) -> None:
    if _DTMF.fullmatch(digits) is None:
        raise ValueError(f"escape digits may only be 0-9, *, # and A-D: {digits!r}")


def _check_variable(name: str) -> None:
    if _VARIABLE.fullmatch(name) is None:
        raise ValueError(f"invalid channel variable name: {name!r}")


class Session:
    """One FastAGI connection: environment, route lookup, handler, abort."""

    __slots__ = ("_server", "_wire", "_call_log", "_can_abort")

    def __init__(self, server: FastAgiServer, wire: _Wire) -> None:
        self._server = server
        self._wire = wire
        self._call_log: CallLog | None = None  # "peer HOST:PORT" until the uniqueid is known
        self._can_abort = False

    @property
    def _log(self) -> CallLog:
        log = self._call_log
        if log is None:
            log = self._call_log = CallLog(logger, f"peer {self._wire.peer}")
        return log

    async def run(self) -> None:
        """Serve the connection until the handler ends; never raises (but cancel)."""
        started = time.perf_counter()
        task = asyncio.current_task()
        script = uniqueid = ""
        try:
            env = await self._read_environment()
            if env is None:
                return
            script, uniqueid = env.network_script, env.uniqueid
            self._call_log = log = CallLog(logger, uniqueid)
            handler = self._server.routes.lookup(script)
            if handler is None:
                log.warning("unknown AGI script %r", script)
                await self._abort(REASON_UNKNOWN_SCRIPT)
                return
            log.debug("running %s for %s", script, env.channel)
            reason = await self._run_handler(handler, env)
            self._can_abort = False
            if reason is not None:
                await self._abort(reason)
        except asyncio.CancelledError:
            if self._can_abort:
                self._log.info("server shutting down")
                await self._abort(REASON_SHUTDOWN)
            raise
        finally:
            server = self._server
            await self._wire.close(server.command_timeout)
            server._session_ended(script, uniqueid, time.perf_counter() - started)
            if task is not None:
                server._sessions.discard(task)

    async def _read_environment(self) -> AgiEnvironment | None:
        try:
            async with asyncio.timeout(self._server.command_timeout):
                block = await self._wire.read_environment()
        except asyncio.IncompleteReadError:
            self._log.info("connection closed before the end of the AGI environment")
            return None
        except asyncio.LimitOverrunError:
            # The unread block is still buffered: no response could be read.
            self._log.error("AGI environment over %d bytes, closing", MAX_ENVIRONMENT_BYTES)
            return None
        except TimeoutError:
            self._log.warning("no AGI environment within %.1f s", self._server.command_timeout)
            return None
        except ConnectionError as exc:
            self._log.info("connection lost before the AGI environment: %r", exc)
            return None
        self._can_abort = True
        try:
            return parse_environment(block)
        except AgiProtocolError as exc:
            self._log.error("bad AGI environment: %s", exc)
            await self._abort(REASON_BAD_ENVIRONMENT)
            return None

    async def _run_handler(self, handler: Handler, env: AgiEnvironment) -> str | None:
        """Run the handler under its deadline; return an abort reason or None."""
        server = self._server
        wire = self._wire
        log = self._log
        channel = Channel(env, wire, log, server.command_timeout)
        timeout = asyncio.timeout(None)
        deadline = _Deadline(wire._loop, timeout)
        try:
            async with timeout:
                wire.deadline = deadline
                deadline.move(wire._loop.time() + server.step_timeout)
                await handler(channel, server.context)
            return None
        except TimeoutError:
            if not timeout.expired():
                log.exception("handler raised TimeoutError")
                return REASON_INTERNAL_ERROR
            if wire.busy:
                log.warning("no response to an AGI command within the command timeout")
                return REASON_COMMAND_TIMEOUT
            log.warning("handler spent over %.3g s between AGI commands", server.step_timeout)
            return REASON_STEP_TIMEOUT
        except ChannelHungUp as exc:
            log.info("channel hung up: %s", exc)
            return None
        except Abort as exc:
            log.info("aborted: %s", exc.reason)
            return exc.reason
        except AgiCommandError as exc:
            log.warning("%s", exc)
            return REASON_COMMAND_FAILED
        except AgiProtocolError as exc:
            log.error("AGI protocol error: %s", exc)
            wire.resync()
            return REASON_PROTOCOL_ERROR
        except Exception:
            log.exception("handler %s failed", env.network_script)
            return REASON_INTERNAL_ERROR
        finally:
            deadline.cancel()
            wire.deadline = None
            wire.busy = False

    async def _abort(self, reason: str) -> None:
        """THE abort path: set the reason, ``Goto`` the failure context, stop."""
        self._can_abort = False  # at most once per session
        wire = self._wire
        log = self._log
        if wire.hung_up:
            log.info("not aborting (%s): channel already hung up", reason)
            return
        reason = sanitize(reason) or "unknown"
        timeout = self._server.command_timeout
        try:
            response = await wire.command(
                format_command("SET VARIABLE", channel_vars.ABORT_REASON, reason), timeout
            )
            if response.code != 200:
                raise AgiCommandError("SET VARIABLE", response)
            response = await wire.command(_GOTO_FAILURE, timeout)
            if response.code != 200:
                raise AgiCommandError("EXEC Goto", response)
        except ChannelHungUp as exc:
            log.info("channel hung up while aborting (%s): %s", reason, exc)
        except TimeoutError:
            log.warning("no response while aborting (%s) within %.3g s", reason, timeout)
        except AgiError as exc:
            log.error("abort (%s) failed: %s", reason, exc)
        else:
            log.info("sent to %s,s,1: %s", channel_vars.CTX_FAILURE, reason)


class FastAgiServer:
    """FastAGI server: ``loop.create_server`` with one :class:`_Wire` protocol per connection.

    ``routes`` maps ``agi_network_script`` to handlers; ``context`` is passed
    to every handler as its second argument.  ``on_session_end`` receives
    ``(script, uniqueid, seconds)`` when a session ends (``""`` when the
    environment never arrived).
    """

    def __init__(
        self,
        routes: RouteTable,
        context: object,
        host: str = "127.0.0.1",
        port: int = 4573,
        command_timeout: float = 10.0,
        step_timeout: float = 5.0,
        on_session_end: SessionHook | None = None,
    ) -> None:
        if command_timeout <= 0 or step_timeout <= 0:
            raise ValueError("command_timeout and step_timeout must be positive")
        self.routes = routes
        self.context = context
        self.host = host
        self.command_timeout = command_timeout
        self.step_timeout = step_timeout
        self.on_session_end = on_session_end
        self._port = port
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            return self._port
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def active_sessions(self) -> int:
        """Connections being served now."""
        return len(self._sessions)

    async def start(self) -> None:
        """Bind and start accepting connections."""
        if self._server is not None:
            raise RuntimeError("FastAGI server already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Wire(self, loop), self.host, self._port)
        logger.info(
            "FastAGI server listening on %s:%d (%d scripts)",
            self.host,
            self.port,
            len(self.routes),
        )

    async def close(self, grace: float = 5.0) -> None:
        """Stop accepting; let sessions finish for ``grace`` s, then cancel them.

        A cancelled session still sends its call to the failure context
        (reason ``server shutdown``) when it can.
        """
        server, self._server = self._server, None
        if server is not None:
            server.close()
        sessions = set(self._sessions)
        if sessions and grace > 0:
            _, pending = await asyncio.wait(sessions, timeout=grace)
        else:
            pending = sessions
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
            # A task cancelled before it ran never reached its own discard.
            self._sessions.difference_update(pending)
        if server is not None:
            await server.wait_closed()
            logger.info("FastAGI server on %s closed", self.host)

    async def __aenter__(self) -> FastAgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _serve(self, wire: _Wire) -> None:
        """A connection was accepted: serve it in its own task."""
        self._sessions.add(wire._loop.create_task(Session(self, wire).run()))

    def _session_ended(self, script: str, uniqueid: str, seconds: float) -> None:
        hook = self.on_session_end
        if hook is None:
            return
        try:
            hook(script, uniqueid, seconds)
        except Exception:
            logger.exception("[%s] on_session_end hook failed", uniqueid)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop factory when uvloop is installed, else None (asyncio's).

    For ``asyncio.Runner(loop_factory=loop_factory())`` in the processes that
    serve FastAGI: on uvloop the server spends about a third less CPU per call.
    """
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
