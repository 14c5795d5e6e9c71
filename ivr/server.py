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
per session, rescheduled around each command: no extra task, no polling.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any, Final, NoReturn

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

_READ_CHUNK: Final = 64 * 1024
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


class _Wire:
    """Command/response exchange on one FastAGI socket.

    One command at a time: write the line, read until its response.  A
    ``HANGUP`` line, a ``511`` or EOF marks the wire hung up and raises
    :class:`ChannelHungUp` (now and for every later command).
    """

    __slots__ = (
        "_reader",
        "_writer",
        "_responses",
        "_events",
        "_step_timeout",
        "deadline",
        "busy",
        "hung_up",
        "hangup_cause",
    )

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, step_timeout: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._responses = ResponseReader()
        self._events: deque[AgiEvent] = deque()
        self._step_timeout = step_timeout
        #: The handler's deadline while it runs (see Session._run_handler).
        self.deadline: asyncio.Timeout | None = None
        self.busy = False
        self.hung_up = False
        self.hangup_cause = ""

    def resync(self) -> None:
        """Forget buffered input after a protocol error (best effort)."""
        self._responses = ResponseReader()
        self._events.clear()

    async def command(self, line: bytes, max_wait: float) -> AgiResponse:
        """Send one command line and return its response.

        While a handler runs, the per-session deadline is moved to
        ``now + max_wait`` for the command, then to ``now + step_timeout`` for
        the handler's next step; otherwise a plain timeout applies.
        ``max_wait=math.inf`` waits without limit.
        """
        if self.hung_up:
            raise ChannelHungUp(self.hangup_cause)
        if self.busy:
            raise RuntimeError("another AGI command is already waiting on this channel")
        deadline = self.deadline
        if deadline is not None and deadline.expired():
            # The handler swallowed the cancellation of its expired deadline.
            raise asyncio.CancelledError
        self.busy = True
        if deadline is None:
            try:
                async with asyncio.timeout(None if max_wait == math.inf else max_wait):
                    return await self._exchange(line)
            finally:
                self.busy = False
        loop = asyncio.get_running_loop()
        deadline.reschedule(None if max_wait == math.inf else loop.time() + max_wait)
        try:
            response = await self._exchange(line)
        except Exception:
            self.busy = False
            raise
        # On a timeout (CancelledError) "busy" stays set so that the session
        # can tell a command timeout from a step timeout.
        self.busy = False
        deadline.reschedule(loop.time() + self._step_timeout)
        return response

    async def _exchange(self, line: bytes) -> AgiResponse:
        events = self._events
        if events and isinstance(events[0], AgiHangup):
            self._hang_up("HANGUP from Asterisk")  # already said: send nothing more
        self._writer.write(line)
        while True:
            if events:
                event = events.popleft()
                if isinstance(event, AgiHangup):
                    self._hang_up("HANGUP from Asterisk")
                elif event.code == 511:
                    self._hang_up(f"511 {event.data}")
                return event
            try:
                data = await self._reader.read(_READ_CHUNK)
            except ConnectionError as exc:
                self._hang_up(f"connection lost: {exc!r}")
            if not data:
                self._hang_up("connection closed by Asterisk")
            events.extend(self._responses.feed(data))

    def _hang_up(self, cause: str) -> NoReturn:
        self.hung_up = True
        self.hangup_cause = cause
        raise ChannelHungUp(cause)


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

    async def _run(self, line: bytes, max_wait: float | None = None) -> AgiResponse:
        response = await self._wire.command(
            line, self._command_timeout if max_wait is None else max_wait
        )
        if response.code != 200:
            raise AgiCommandError(_verb(line), response)
        return response

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

    __slots__ = ("_server", "_reader", "_writer", "_wire", "_log", "_can_abort")

    def __init__(
        self, server: FastAgiServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._server = server
        self._reader = reader
        self._writer = writer
        self._wire = _Wire(reader, writer, server.step_timeout)
        peer = writer.get_extra_info("peername")
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "?"
        self._log = CallLog(logger, f"peer {where}")
        self._can_abort = False

    async def run(self) -> None:
        """Serve the connection until the handler ends; never raises (but cancel)."""
        started = time.perf_counter()
        script = uniqueid = ""
        try:
            env = await self._read_environment()
            if env is None:
                return
            script, uniqueid = env.network_script, env.uniqueid
            self._log = log = CallLog(logger, uniqueid)
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
            await self._close()
            self._server._session_ended(script, uniqueid, time.perf_counter() - started)

    async def _read_environment(self) -> AgiEnvironment | None:
        log = self._log
        try:
            async with asyncio.timeout(self._server.command_timeout):
                block = await self._reader.readuntil(b"\n\n")
        except asyncio.IncompleteReadError:
            log.info("connection closed before the end of the AGI environment")
            return None
        except asyncio.LimitOverrunError:
            # The unread block is still buffered: no response could be read.
            log.error("AGI environment over %d bytes, closing", MAX_ENVIRONMENT_BYTES)
            return None
        except TimeoutError:
            log.warning("no AGI environment within %.1f s", self._server.command_timeout)
            return None
        except ConnectionError as exc:
            log.info("connection lost before the AGI environment: %r", exc)
            return None
        self._can_abort = True
        try:
            return parse_environment(block)
        except AgiProtocolError as exc:
            log.error("bad AGI environment: %s", exc)
            await self._abort(REASON_BAD_ENVIRONMENT)
            return None

    async def _run_handler(self, handler: Handler, env: AgiEnvironment) -> str | None:
        """Run the handler under its deadline; return an abort reason or None."""
        server = self._server
        wire = self._wire
        log = self._log
        channel = Channel(env, wire, log, server.command_timeout)
        deadline = asyncio.timeout(None)
        try:
            async with deadline:
                wire.deadline = deadline
                deadline.reschedule(asyncio.get_running_loop().time() + server.step_timeout)
                await handler(channel, server.context)
            return None
        except TimeoutError:
            if not deadline.expired():
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

    async def _close(self) -> None:
        writer = self._writer
        writer.close()
        try:
            async with asyncio.timeout(self._server.command_timeout):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            writer.transport.abort()


class FastAgiServer:
    """FastAGI server on ``asyncio.start_server``.

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
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self._port, limit=MAX_ENVIRONMENT_BYTES
        )
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
        if server is not None:
            await server.wait_closed()
            logger.info("FastAGI server on %s closed", self.host)

    async def __aenter__(self) -> FastAgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            await Session(self, reader, writer).run()
        finally:
            self._sessions.discard(task)

    def _session_ended(self, script: str, uniqueid: str, seconds: float) -> None:
        hook = self.on_session_end
        if hook is None:
            return
        try:
            hook(script, uniqueid, seconds)
        except Exception:
            logger.exception("[%s] on_session_end hook failed", uniqueid)
