"""hotline.ami.AmiClient against a fake AMI server built from hotline.amiproto.

The fake listens on 127.0.0.1 (port 0), greets like Asterisk, answers Login,
Logoff and Ping itself, and replays the literal transcripts that a test
scripts for other actions. Any action a test did not script is answered with
an error and recorded; the fixture then fails the test.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from hotline.ami import (
    AmiActionError,
    AmiAuthError,
    AmiClient,
    AmiDisconnected,
    AmiError,
    AmiOutcomeUnknown,
    AmiTimeout,
    backoff_delay,
    is_read_only_action,
)
from hotline.amiproto import AmiMessage, MessageReader, encode_message

USER = "hotline"
SECRET = "s3cret"

Handler = Callable[["FakeSession", AmiMessage], Awaitable[None]]

# ------------------------------------------------------------ transcripts
# "{aid}" is replaced by the request's ActionID when replayed.

FULLY_BOOTED = (
    b"Event: FullyBooted\r\n"
    b"Privilege: system,all\r\n"
    b"Uptime: 61\r\n"
    b"LastReload: 61\r\n"
    b"Status: Fully Booted\r\n"
    b"\r\n"
)

QUEUE_STATUS = (
    b"Response: Success\r\n"
    b"ActionID: {aid}\r\n"
    b"EventList: start\r\n"
    b"Message: Queue status will follow\r\n"
    b"\r\n"
    b"Event: QueueParams\r\n"
    b"Queue: general\r\n"
    b"Max: 0\r\n"
    b"Strategy: rrmemory\r\n"
    b"Calls: 1\r\n"
    b"Holdtime: 12\r\n"
    b"TalkTime: 95\r\n"
    b"Completed: 40\r\n"
    b"Abandoned: 2\r\n"
    b"ServiceLevel: 20\r\n"
    b"ServicelevelPerf: 90.0\r\n"
    b"ServicelevelPerf2: 88.1\r\n"
    b"Weight: 0\r\n"
    b"ActionID: {aid}\r\n"
    b"\r\n"
    # An unrelated event interleaved with the list: goes to callbacks.
    b"Event: Newchannel\r\n"
    b"Privilege: call,all\r\n"
    b"Channel: PJSIP/trunk-00000009\r\n"
    b"Uniqueid: 1700000100.9\r\n"
    b"\r\n"
    b"Event: QueueMember\r\n"
    b"Queue: general\r\n"
    b"Name: agent 8001\r\n"
    b"Location: PJSIP/8001\r\n"
    b"StateInterface: PJSIP/8001\r\n"
    b"Membership: static\r\n"
    b"Penalty: 0\r\n"
    b"CallsTaken: 17\r\n"
    b"LastCall: 1700000000\r\n"
    b"LastPause: 0\r\n"
    b"LoginTime: 1699990000\r\n"
    b"InCall: 1\r\n"
    b"Status: 2\r\n"
    b"Paused: 0\r\n"
    b"PausedReason: \r\n"
    b"Wrapuptime: 0\r\n"
    b"ActionID: {aid}\r\n"
    b"\r\n"
    b"Event: QueueEntry\r\n"
    b"Queue: general\r\n"
    b"Position: 1\r\n"
    b"Channel: PJSIP/trunk-00000007\r\n"
    b"Uniqueid: 1700000050.7\r\n"
    b"CallerIDNum: 13800138000\r\n"
    b"CallerIDName: \xe6\x9d\x8e\xe9\x9b\xb7\r\n"
    b"Wait: 12\r\n"
    b"Priority: 0\r\n"
    b"ActionID: {aid}\r\n"
    b"\r\n"
    b"Event: QueueStatusComplete\r\n"
    b"ActionID: {aid}\r\n"
    b"EventList: Complete\r\n"
    b"ListItems: 3\r\n"
    b"\r\n"
)

CORE_SHOW_CHANNELS_EMPTY = (
    b"Response: Success\r\n"
    b"ActionID: {aid}\r\n"
    b"EventList: start\r\n"
    b"Message: Channels will follow\r\n"
    b"\r\n"
    b"Event: CoreShowChannelsComplete\r\n"
    b"ActionID: {aid}\r\n"
    b"EventList: Complete\r\n"
    b"ListItems: 0\r\n"
    b"\r\n"
)


def core_show_channels(*uniqueids: str) -> bytes:
    items = b"".join(
        b"Event: CoreShowChannel\r\n"
        b"ActionID: {aid}\r\n"
        b"Channel: PJSIP/trunk-0000000a\r\n"
        b"ChannelState: 5\r\n"
        b"ChannelStateDesc: Ringing\r\n"
        b"Context: hotline-callback\r\n"
        b"Exten: s\r\n"
        b"Priority: 1\r\n"
        b"Uniqueid: " + uid.encode() + b"\r\n"
        b"Linkedid: " + uid.encode() + b"\r\n"
        b"Application: AppDial2\r\n"
        b"ApplicationData: (Outgoing Line)\r\n"
        b"Duration: 00:00:03\r\n"
        b"BridgeId: \r\n"
        b"\r\n"
        for uid in uniqueids
    )
    return (
        b"Response: Success\r\nActionID: {aid}\r\nEventList: start\r\n"
        b"Message: Channels will follow\r\n\r\n"
        + items
        + b"Event: CoreShowChannelsComplete\r\nActionID: {aid}\r\nEventList: Complete\r\n"
        + f"ListItems: {len(uniqueids)}\r\n\r\n".encode()
    )


ORIGINATE_QUEUED = (
    b"Response: Success\r\nActionID: {aid}\r\nMessage: Originate successfully queued\r\n\r\n"
)

COMMAND_OUTPUT = (
    b"Response: Success\r\n"
    b"ActionID: {aid}\r\n"
    b"Message: Command output follows\r\n"
    b"Output: Channel              Location             State   Application(Data)\r\n"
    b"Output: 0 active channels\r\n"
    b"Output: 0 active calls\r\n"
    b"\r\n"
)

COMMAND_ERROR = (
    b"Response: Error\r\n"
    b"ActionID: {aid}\r\n"
    b"Message: Command output follows\r\n"
    b"Output: No such command 'core shwo channels' (type 'core show help core shwo' for"
    b" other possible commands)\r\n"
    b"\r\n"
)


# ------------------------------------------------------------------- fake


class FakeSession:
    def __init__(
        self, fake: FakeAmi, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.fake = fake
        self.reader = reader
        self.writer = writer
        self.authenticated = False

    def send(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def replay(self, transcript: bytes, request: AmiMessage) -> None:
        self.send(transcript.replace(b"{aid}", (request.action_id or "").encode()))

    def reply(self, request: AmiMessage, response: str, **headers: str) -> None:
        fields = [("Response", response), ("ActionID", request.action_id or "")]
        self.send(encode_message(fields + list(headers.items())))

    def event(self, name: str, **headers: str) -> None:
        self.send(encode_message([("Event", name), *headers.items()]))

    def drop(self) -> None:
        self.writer.transport.abort()

    async def run(self) -> None:
        self.send(f"Asterisk Call Manager/{self.fake.ami_version}\r\n".encode())
        parser = MessageReader(expect_banner=False)
        try:
            while data := await self.reader.read(65536):
                for request in parser.feed(data):
                    self.fake.actions.append(request)
                    await self.handle(request)
        except ConnectionError:
            pass
        finally:
            self.writer.close()

    async def handle(self, request: AmiMessage) -> None:
        name = request.name.lower()
        if name == "login":
            if self.fake.login_errors:
                self.reply(request, "Error", Message=self.fake.login_errors.pop(0))
                self.writer.close()
            elif request.get("Username") == USER and request.get("Secret") == self.fake.secret:
                self.authenticated = True
                self.reply(request, "Success", Message="Authentication accepted")
                if self.fake.booted:
                    self.send(FULLY_BOOTED)
            else:
                self.reply(request, "Error", Message="Authentication failed")
                self.writer.close()  # manager.c: action_login() returns -1
            return
        if not self.authenticated:
            self.reply(request, "Error", Message="Permission denied")
            return
        handler = self.fake.handlers.get(name)
        if handler is not None:
            await handler(self, request)
        elif name == "ping":
            if self.fake.answer_pings:
                self.reply(request, "Success", Ping="Pong", Timestamp="1700000000.000001")
        elif name == "logoff":
            self.reply(request, "Goodbye", Message="Thanks for all the fish.")
            self.writer.close()
        else:
            self.fake.unexpected.append(request)
            self.reply(request, "Error", Message=f"fake AMI: unexpected action {request.name}")


class FakeAmi:
    def __init__(self) -> None:
        self.secret = SECRET
        self.ami_version = "9.0.0"
        self.booted = True
        self.answer_pings = True
        self.refuse = False  # accept, then close at once (Asterisk still starting)
        self.login_errors: list[str] = []  # refuse the next logins with these messages
        self.actions: list[AmiMessage] = []
        self.unexpected: list[AmiMessage] = []
        self.handlers: dict[str, Handler] = {}
        self.sessions: list[FakeSession] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def script(self, action: str, handler: Handler) -> None:
        self.handlers[action.lower()] = handler

    def replay(self, action: str, transcript: bytes) -> None:
        async def handler(session: FakeSession, request: AmiMessage) -> None:
            session.replay(transcript, request)

        self.script(action, handler)

    def count(self, action: str) -> int:
        return sum(1 for a in self.actions if a.name.lower() == action.lower())

    def sent(self, action: str) -> list[AmiMessage]:
        return [a for a in self.actions if a.name.lower() == action.lower()]

    def live(self) -> list[FakeSession]:
        return [s for s in self.sessions if not s.writer.is_closing()]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in self.sessions:
            session.drop()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def restart(self) -> None:
        """Like an Asterisk restart: every session drops, the port comes back."""
        await self.stop()
        await self.start()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.refuse:
            writer.close()
            return
        session = FakeSession(self, reader, writer)
        self.sessions.append(session)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await session.run()
        finally:
            self._tasks.discard(task)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    server = FakeAmi()
    await server.start()
    yield server
    await server.stop()
    assert not server.unexpected, f"client sent unscripted actions: {server.unexpected}"


def make_client(fake: FakeAmi, **overrides: Any) -> AmiClient:
    options: dict[str, Any] = {
        "connect_timeout": 1.0,
        "min_backoff": 0.02,
        "max_backoff": 0.1,
        "ping_interval": 30.0,
        "ping_timeout": 1.0,
        "action_timeout": 2.0,
    }
    options.update(overrides)
    secret = options.pop("secret", SECRET)
    return AmiClient("127.0.0.1", fake.port, USER, secret, **options)


@pytest.fixture
async def ami(fake: FakeAmi) -> AsyncIterator[AmiClient]:
    client = make_client(fake)
    await client.connect()
    yield client
    await client.close()


class Counter:
    """An on_booted/event callback that can be awaited for its n-th call."""

    def __init__(self) -> None:
        self.events: list[AmiMessage] = []
        self._changed = asyncio.Event()

    def __call__(self, event: AmiMessage) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(2.0):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()


CALLBACK: dict[str, Any] = {"context": "hotline-callback", "exten": "s", "priority": 1}


def drop_without_reply() -> Handler:
    async def handler(session: FakeSession, request: AmiMessage) -> None:
        session.drop()

    return handler


# ------------------------------------------------------------------ tests


async def test_login_ok(fake: FakeAmi) -> None:
    async with make_client(fake) as ami:
        assert ami.connected
        login = fake.actions[0]
        assert login.name == "Login"
        assert login.get("Username") == USER and login.get("Secret") == SECRET
        assert login.get("Events") == "on"
        assert login.action_id
    assert not ami.connected
    assert fake.count("Logoff") == 1


async def test_bad_secret_raises_and_is_not_retried(fake: FakeAmi) -> None:
    ami = make_client(fake, secret="wrong")
    with pytest.raises(AmiAuthError, match="Authentication failed"):
        await ami.connect()
    await asyncio.sleep(0.2)  # several back-off periods: a retry would show here
    assert fake.connections == 1
    with pytest.raises(AmiAuthError):
        await ami.action("Ping")
    await ami.close()


async def test_other_login_errors_are_retried(fake: FakeAmi) -> None:
    # manager.c answers "Login Already In Use" when allowmultiplelogin=no and
    # the old session is not gone yet: worth another try, unlike a bad secret.
    fake.login_errors = ["Login Already In Use"]
    async with make_client(fake) as ami:
        assert ami.connected
    assert fake.connections == 2


def test_credentials_with_crlf_are_refused_at_once() -> None:
    with pytest.raises(ValueError, match="AMI field 'Secret' contains CR, LF or NUL"):
        AmiClient("127.0.0.1", 5038, USER, "x\r\nAction: Originate")


async def test_action_response_and_error(fake: FakeAmi, ami: AmiClient) -> None:
    async def getvar(session: FakeSession, request: AmiMessage) -> None:
        if request.get("Channel") == "PJSIP/gone-00000001":
            session.reply(request, "Error", Message="No such channel")
        else:
            value = "cb-77" if request.get("Variable") == "HOTLINE_ORIGINATE_ID" else ""
            session.reply(request, "Success", Variable=request.get("Variable") or "", Value=value)

    fake.script("Getvar", getvar)
    response = await ami.action(
        "Getvar", Channel="PJSIP/a-00000001", Variable="HOTLINE_ORIGINATE_ID"
    )
    assert response.get("Value") == "cb-77"
    assert await ami.getvar("HOTLINE_ORIGINATE_ID", "PJSIP/a-00000001") == "cb-77"
    assert await ami.getvar("UNSET_VAR") is None
    assert fake.sent("Getvar")[-1].get("Channel") is None  # None fields are left out
    with pytest.raises(AmiActionError) as excinfo:
        await ami.getvar("X", "PJSIP/gone-00000001")
    assert excinfo.value.message == "No such channel"
    assert str(excinfo.value) == "Getvar failed: No such channel"


async def test_command_and_reload(fake: FakeAmi, ami: AmiClient) -> None:
    async def command(session: FakeSession, request: AmiMessage) -> None:
        good = request.get("Command") == "core show channels"
        session.replay(COMMAND_OUTPUT if good else COMMAND_ERROR, request)

    async def reload(session: FakeSession, request: AmiMessage) -> None:
        if request.get("Module") == "app_nothere.so":
            session.reply(request, "Error", Message="No such module")
        else:
            session.reply(request, "Success", Message="Module Reloaded")

    fake.script("Command", command)
    fake.script("Reload", reload)
    output = await ami.command("core show channels")
    assert output.splitlines()[1:] == ["0 active channels", "0 active calls"]
    with pytest.raises(AmiActionError, match="No such command 'core shwo channels'"):
        await ami.command("core shwo channels")
    await ami.reload("app_queue.so")
    await ami.reload()
    with pytest.raises(AmiActionError, match="No such module"):
        await ami.reload("app_nothere.so")
    modules = [r.get("Module") for r in fake.sent("Reload")]
    assert modules == ["app_queue.so", None, "app_nothere.so"]


async def test_crlf_injection_is_refused_before_sending(fake: FakeAmi, ami: AmiClient) -> None:
    with pytest.raises(ValueError, match="contains CR, LF or NUL"):
        await ami.command("core show channels\r\nAction: Originate")
    with pytest.raises(ValueError, match="invalid channel variable name"):
        await ami.originate(
            "cb-x", "PJSIP/100", context="c", exten="s", priority=1, variables={"SHELL(id)": "1"}
        )
    with pytest.raises(ValueError, match="contains CR, LF or NUL"):
        await ami.originate(
            "cb-y", "PJSIP/100", context="c", exten="s", priority=1, caller_id="x\r\nAction: Hangup"
        )
    assert fake.count("Command") == 0 and fake.count("Originate") == 0


async def test_event_list(fake: FakeAmi, ami: AmiClient) -> None:
    seen = Counter()
    ami.on("*", seen)
    fake.replay("QueueStatus", QUEUE_STATUS)
    items = await ami.action_list("QueueStatus", Queue="general")
    assert [i.name for i in items] == ["QueueParams", "QueueMember", "QueueEntry"]
    assert items[2].get("CallerIDName") == "李雷"
    await seen.wait_for(1)
    # List items went to the caller only; the interleaved event to callbacks.
    assert [e.name for e in seen.events] == ["Newchannel"]


async def test_event_callbacks_sync_async_and_failing(
    fake: FakeAmi, ami: AmiClient, caplog: pytest.LogCaptureFixture
) -> None:
    sync_seen = Counter()
    async_seen = Counter()

    async def async_callback(event: AmiMessage) -> None:
        await asyncio.sleep(0)
        async_seen(event)

    def broken(event: AmiMessage) -> None:
        raise RuntimeError("sync callback bug")

    async def broken_async(event: AmiMessage) -> None:
        raise RuntimeError("async callback bug")

    ami.on("Newchannel", broken)
    ami.on("newchannel", sync_seen)
    ami.on("*", async_callback)
    ami.on("Hangup", broken_async)
    before = ami.event_figures()
    with caplog.at_level(logging.ERROR, logger="hotline.ami"):
        (session,) = fake.live()
        session.event("Newchannel", Channel="PJSIP/a-00000001", Uniqueid="1700000001.1")
        session.event("Hangup", Channel="PJSIP/a-00000001", Uniqueid="1700000001.1", Cause="16")
        session.event("Newchannel", Channel="PJSIP/b-00000002", Uniqueid="1700000002.2")
        await sync_seen.wait_for(2)
        await async_seen.wait_for(3)
        await asyncio.sleep(0.01)
    assert [e.get("Uniqueid") for e in sync_seen.events] == ["1700000001.1", "1700000002.2"]
    assert "sync callback bug" in caplog.text
    assert "async callback bug" in caplog.text
    assert "Uniqueid 1700000001.1" in caplog.text
    # The event-handling figures (make bench): 3 events, 3 + 2 + 3 callback calls.
    after = ami.event_figures()
    assert after["events"] - before["events"] == 3
    assert after["handler_calls"] - before["handler_calls"] == 8
    assert after["handler_s"] >= before["handler_s"] and after["async_handler_s"] > 0
    ami.off("Newchannel", broken)
    # The reader survived: actions still work.
    assert (await ami.action("Ping")).get("Ping") == "Pong"


async def test_pending_originate_fails_and_is_never_resent(fake: FakeAmi) -> None:
    booted = Counter()
    fake.script("Originate", drop_without_reply())
    fake.replay("CoreShowChannels", CORE_SHOW_CHANNELS_EMPTY)
    fake.script("Redirect", drop_without_reply())
    async with make_client(fake) as ami:
        ami.on_booted(booted)
        with pytest.raises(AmiOutcomeUnknown, match="cb-1"):
            await ami.originate("cb-1", "PJSIP/100", **CALLBACK)
        await booted.wait_for(2)  # reconnected
        assert fake.count("Originate") == 1
        # A generic non-read-only action behaves the same way.
        with pytest.raises(AmiDisconnected):
            await ami.action("Redirect", Channel="PJSIP/a-1", Context="c", Exten="s", Priority="1")
        await booted.wait_for(3)
        assert fake.count("Redirect") == 1
        # Asking again without resend_if_absent only looks; nothing is re-sent.
        with pytest.raises(AmiOutcomeUnknown, match="not re-sent"):
            await ami.originate("cb-1", "PJSIP/100", **CALLBACK)
        await asyncio.sleep(0.1)
        assert fake.count("Originate") == 1
        assert fake.count("CoreShowChannels") == 1


async def test_originate_is_idempotent(fake: FakeAmi, ami: AmiClient) -> None:
    fake.replay("Originate", ORIGINATE_QUEUED)
    call: dict[str, Any] = {
        "context": "hotline-callback",
        "exten": "s",
        "priority": 1,
        "caller_id": '"12345" <12345>',
        "variables": {"HOTLINE_ORIGINATE_ID": "cb-5", "CALLER_NAME": "Li, Wei"},
        "timeout_ms": 25_000,
        "account": "callback",
    }
    first, second = await asyncio.gather(
        ami.originate("cb-5", "PJSIP/13800138000@trunk", **call),
        ami.originate("cb-5", "PJSIP/13800138000@trunk", **call),
    )
    third = await ami.originate("cb-5", "PJSIP/13800138000@trunk", **call)
    assert fake.count("Originate") == 1
    assert [first.sent, second.sent, third.sent] == [True, False, False]
    assert first.status == second.status == third.status == "queued"
    (request,) = fake.sent("Originate")
    assert request.get("ChannelId") == "cb-5"
    assert request.get("Async") == "true"
    assert request.get("Timeout") == "25000"
    assert request.get("OtherChannelId") is None  # Asterisk defaults it to cb-5;2
    assert request.getall("Variable") == ["HOTLINE_ORIGINATE_ID=cb-5", "CALLER_NAME=Li\\, Wei"]
    # The OriginateResponse event (broadcast, carries our ActionID) is recorded.
    seen = Counter()
    ami.on("OriginateResponse", seen)
    (session,) = fake.live()
    session.event(
        "OriginateResponse",
        ActionID=request.action_id or "",
        Response="Success",
        Channel="PJSIP/trunk-0000000a",
        Context="hotline-callback",
        Exten="s",
        Reason="4",
        Uniqueid="cb-5",
        CallerIDNum="12345",
        CallerIDName="12345",
    )
    await seen.wait_for(1)
    later = await ami.originate("cb-5", "PJSIP/13800138000@trunk", **call)
    assert later.status == "answered" and not later.sent
    assert fake.count("Originate") == 1


async def test_originate_refused_is_not_resent(fake: FakeAmi, ami: AmiClient) -> None:
    async def refuse(session: FakeSession, request: AmiMessage) -> None:
        session.reply(request, "Error", Message="Extension does not exist.")

    fake.script("Originate", refuse)
    for _ in range(2):
        with pytest.raises(AmiActionError, match="Extension does not exist"):
            await ami.originate("cb-6", "PJSIP/100", context="nowhere", exten="s", priority=1)
    assert fake.count("Originate") == 1


async def test_originate_resend_if_absent(fake: FakeAmi) -> None:
    async def originate(session: FakeSession, request: AmiMessage) -> None:
        if fake.count("Originate") == 1:
            session.drop()
        else:
            session.replay(ORIGINATE_QUEUED, request)

    fake.script("Originate", originate)
    fake.replay("CoreShowChannels", CORE_SHOW_CHANNELS_EMPTY)
    async with make_client(fake) as ami:
        result = await ami.originate(
            "cb-2", "PJSIP/100", context="c", exten="s", priority=1, resend_if_absent=True
        )
    assert result.sent and result.status == "queued"
    assert [r.get("ChannelId") for r in fake.sent("Originate")] == ["cb-2", "cb-2"]
    assert fake.count("CoreShowChannels") == 1


async def test_originate_found_channel_is_not_resent(fake: FakeAmi) -> None:
    fake.script("Originate", drop_without_reply())
    fake.replay("CoreShowChannels", core_show_channels("1700000000.1", "cb-3"))
    async with make_client(fake) as ami:
        result = await ami.originate(
            "cb-3", "PJSIP/100", context="c", exten="s", priority=1, resend_if_absent=True
        )
    assert result.sent and result.status == "exists" and result.response is None
    assert fake.count("Originate") == 1


async def test_originate_local_channel_found_by_its_2_half(fake: FakeAmi) -> None:
    fake.script("Originate", drop_without_reply())
    fake.replay("CoreShowChannels", core_show_channels("cb-8;2"))
    async with make_client(fake) as ami:
        result = await ami.originate(
            "cb-8", "Local/s@hotline-agent", application="Echo", resend_if_absent=True
        )
    assert result.status == "exists"
    assert fake.count("Originate") == 1


async def test_originate_response_seen_before_the_drop(fake: FakeAmi) -> None:
    async def answer_then_drop(session: FakeSession, request: AmiMessage) -> None:
        session.event(
            "OriginateResponse",
            ActionID=request.action_id or "",
            Response="Failure",
            Channel="PJSIP/100",
            Reason="3",
            Uniqueid="cb-4",
        )
        await asyncio.sleep(0.01)
        session.drop()

    fake.script("Originate", answer_then_drop)
    async with make_client(fake) as ami:
        result = await ami.originate(
            "cb-4", "PJSIP/100", context="c", exten="s", priority=1, resend_if_absent=True
        )
    assert result.status == "failed" and result.event is not None
    assert fake.count("Originate") == 1
    assert fake.count("CoreShowChannels") == 0


async def test_read_only_action_retried_once_after_reconnect(fake: FakeAmi, ami: AmiClient) -> None:
    async def flaky(session: FakeSession, request: AmiMessage) -> None:
        if fake.count("CoreShowChannels") == 1:
            session.drop()
        else:
            session.replay(core_show_channels("1700000000.1"), request)

    fake.script("CoreShowChannels", flaky)
    channels = await ami.action_list("CoreShowChannels")
    assert [c.get("Uniqueid") for c in channels] == ["1700000000.1"]
    assert fake.count("CoreShowChannels") == 2
    ids = [r.action_id for r in fake.sent("CoreShowChannels")]
    assert ids[0] != ids[1]

    # Only once: a second drop is reported.
    fake.script("QueueStatus", drop_without_reply())
    with pytest.raises(AmiDisconnected):
        await ami.action_list("QueueStatus")
    assert fake.count("QueueStatus") == 2


async def test_show_command_is_read_only_but_other_commands_are_not() -> None:
    assert is_read_only_action("Command", {"Command": "core show channels"})
    assert is_read_only_action("command", {"command": "pjsip show endpoints"})
    assert not is_read_only_action("Command", {"Command": "channel request hangup all"})
    assert not is_read_only_action("Command", {"Command": "module reload app_queue.so"})
    assert is_read_only_action("Getvar", {"Variable": "HOTLINE_ROUTE"})
    assert not is_read_only_action("Getvar", {"Variable": "DB_DELETE(hotline/x)"})
    assert is_read_only_action("QUEUESTATUS", {})
    assert not is_read_only_action("Originate", {})
    assert not is_read_only_action("Reload", {})


def test_backoff_delay_grows_caps_and_jitters() -> None:
    low = [backoff_delay(n, 0.2, 10.0, rand=lambda: 0.0) for n in range(8)]
    high = [backoff_delay(n, 0.2, 10.0, rand=lambda: 1.0) for n in range(8)]
    assert high == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0])
    assert low == pytest.approx([h / 2 for h in high])
    assert backoff_delay(10_000, 0.2, 10.0) <= 10.0


async def test_reconnect_attempts_back_off(fake: FakeAmi) -> None:
    fake.refuse = True
    ami = make_client(fake, min_backoff=0.05, max_backoff=0.2)
    connecting = asyncio.create_task(ami.connect())
    await asyncio.sleep(0.6)
    attempts = fake.connections
    # Delays 0.025-0.05, 0.05-0.1, then 0.1-0.2 each: 4 to 8 attempts in 0.6 s.
    assert 3 <= attempts <= 9, attempts
    assert not connecting.done()
    fake.refuse = False
    async with asyncio.timeout(1.0):
        await connecting
    assert ami.connected
    await ami.close()


async def test_on_booted_again_after_asterisk_restart(fake: FakeAmi) -> None:
    booted = Counter()
    async with make_client(fake) as ami:
        ami.on_booted(booted)  # registered after connect: runs for this connection too
        await booted.wait_for(1)
        await fake.restart()
        await booted.wait_for(2)
        assert ami.connected
        assert booted.events[1].name == "FullyBooted"
    assert fake.count("Login") == 2


async def test_on_booted_waits_for_asterisk_to_finish_booting(fake: FakeAmi) -> None:
    fake.booted = False
    booted = Counter()
    async with make_client(fake) as ami:
        ami.on_booted(booted)
        await asyncio.sleep(0.05)
        assert booted.events == []
        (session,) = fake.live()
        session.send(FULLY_BOOTED)
        await booted.wait_for(1)
        session.send(FULLY_BOOTED)  # a second one on the same connection: no new call
        assert (await ami.action("Ping")).name == "Success"
    assert len(booted.events) == 1


async def test_keepalive_detects_a_dead_connection(fake: FakeAmi) -> None:
    fake.answer_pings = False
    booted = Counter()
    ami = make_client(fake, ping_interval=0.05, ping_timeout=0.05)
    ami.on_booted(booted)
    await ami.connect()
    await booted.wait_for(2)
    assert fake.count("Login") >= 2
    await ami.close()


async def test_action_waits_for_reconnect_and_times_out(fake: FakeAmi) -> None:
    booted = Counter()
    ami = make_client(fake, action_timeout=0.3)
    ami.on_booted(booted)
    await ami.connect()
    fake.refuse = True
    await fake.restart()
    with pytest.raises(AmiTimeout):
        await ami.action("Ping")
    fake.refuse = False
    await booted.wait_for(2)
    assert (await ami.action("Ping")).get("Ping") == "Pong"
    await ami.close()


async def test_close_fails_pending_and_later_calls(fake: FakeAmi) -> None:
    async def never(session: FakeSession, request: AmiMessage) -> None:
        return None

    fake.script("QueueSummary", never)
    ami = make_client(fake)
    await ami.connect()
    pending = asyncio.create_task(ami.action_list("QueueSummary"))
    await asyncio.sleep(0.05)
    await ami.close()
    with pytest.raises(AmiError):
        await pending
    with pytest.raises(AmiError, match="closed"):
        await ami.action("Ping")
    await ami.close()  # idempotent


async def test_action_before_connect_is_an_error(fake: FakeAmi) -> None:
    ami = make_client(fake)
    with pytest.raises(AmiError, match="connect"):
        await ami.action("Ping")
    with pytest.raises(ValueError):
        await ami.action("Login", Username="x")


def test_a_filtered_out_event_cannot_be_subscribed() -> None:
    """With ``receives`` (the names manager.conf lets through), on() refuses any other
    name at once: a handler would otherwise wait for an event that never comes."""
    from hotline import channel_vars as cv

    client = AmiClient("127.0.0.1", 5038, USER, "secret", receives=cv.CONTROLLER_EVENTS)
    client.on("hangup", lambda ev: None)  # names compare case-insensitively
    client.on("*", lambda ev: None)  # every event the session receives
    with pytest.raises(ValueError, match="'DialBegin' are filtered out for user"):
        client.on("DialBegin", lambda ev: None)
    AmiClient("127.0.0.1", 5038, USER, "secret").on("DialBegin", lambda ev: None)  # no filter
