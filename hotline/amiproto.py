"""Pure codec for the Asterisk Manager Interface (AMI) wire protocol. No I/O.

Everything here works on ``bytes``/``str`` values and is tested with literal
byte transcripts (``tests/unit/test_amiproto.py``). The socket side lives in
:mod:`hotline.ami`.

Wire facts this module implements, with the Asterisk 22 source that defines
them (``main/manager.c`` unless noted):

* On connect Asterisk writes one line, ``Asterisk Call Manager/<AMI_VERSION>``
  followed by CRLF and no blank line (``session_do()``).
* A message is a block of ``Key: Value`` lines, each ended by CRLF; an empty
  line ends the block. Requests start with ``Action:``, replies with
  ``Response:`` (``astman_send_response_full()``), events with ``Event:``.
* Asterisk reads a request one line at a time into ``inbuf[1025]``
  (``get_input()``); a longer line is dropped with "Failed to parse message:
  line too long". A ``NUL`` byte ends the line early ("'\\0' will be
  considered as the end-of-line marker"). Hence :func:`encode_action` refuses
  CR, LF and NUL in values and lines over :data:`MAX_LINE_BYTES`.
* Lists (``astman_send_listack()`` / ``astman_send_list_complete_start()``):
  the response carries ``EventList: start``, each item is an event carrying
  the request's ``ActionID``, and the list ends with an event such as
  ``CoreShowChannelsComplete`` carrying ``EventList: Complete`` and
  ``ListItems: N``. :class:`ReplyAssembler` collects them.
* ``Command`` (``action_command()``) answers ``Response: Success`` (or
  ``Error``), ``Message: Command output follows`` and one ``Output:`` line per
  CLI output line; Asterisk 22 never sends the pre-14 ``Response: Follows``
  form. :class:`MessageReader` still understands that legacy form (raw body
  lines up to ``--END COMMAND--``) so an old transcript does not derail it.
* ``Variable:`` values of Originate are split on commas by
  ``AST_STANDARD_APP_ARGS`` (``man_do_variable_value()``), which also removes
  double quotes and treats a backslash as "next character is literal"
  (``main/app.c`` ``__ast_app_separate_args()``). :func:`format_variable`
  escapes a value so that it reaches the channel unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

CRLF: Final = b"\r\n"
BANNER_PREFIX: Final = "Asterisk Call Manager/"
#: Longest request line Asterisk accepts, CRLF included (manager.c get_input()).
MAX_LINE_BYTES: Final = 1024
#: Longest ChannelId/OtherChannelId accepted by Originate (AST_MAX_PUBLIC_UNIQUEID).
MAX_PUBLIC_UNIQUEID: Final = 149
#: Reader-side guard: bytes buffered without a line end before we give up.
MAX_PENDING_BYTES: Final = 1 << 20
LEGACY_COMMAND_END: Final = "--END COMMAND--"

FieldValue = str | Sequence[str]
MessageKind = Literal["response", "event", "action", "unknown"]

_FORBIDDEN_CHARS: Final = ("\r", "\n", "\x00")
_KEY_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.()\-]*")
_VARIABLE_NAME_RE: Final = re.compile(r"_{0,2}[A-Za-z][A-Za-z0-9_]*")
# Characters __ast_app_separate_args() interprets: separator, quote, escape,
# and the paren/bracket nesting that suspends splitting.
_ARG_SPECIALS: Final = frozenset('\\,"()[]')
_LEGACY_HEADER_KEYS: Final = frozenset({"response", "actionid", "privilege", "message"})
_KIND_KEYS: Final[Mapping[str, MessageKind]] = {
    "response": "response",
    "event": "event",
    "action": "action",
}


class AmiProtocolError(ValueError):
    """The peer sent bytes that are not AMI."""


class AmiMessage:
    """One AMI message: an ordered multi-dict of headers plus raw body lines.

    Header names compare case-insensitively, as Asterisk's own
    ``astman_get_header()`` does. Repeated headers (``Output``, ``Variable``,
    ``ChanVariable``) keep their order and are read with :meth:`getall`.
    """

    __slots__ = ("_headers", "_body")

    def __init__(self, headers: Iterable[tuple[str, str]], body: Iterable[str] = ()) -> None:
        self._headers: tuple[tuple[str, str], ...] = tuple(headers)
        self._body: tuple[str, ...] = tuple(body)

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        return self._headers

    @property
    def body(self) -> tuple[str, ...]:
        """Lines that were not ``Key: Value`` (legacy ``Response: Follows`` output)."""
        return self._body

    @property
    def kind(self) -> MessageKind:
        for key, _ in self._headers:
            found = _KIND_KEYS.get(key.lower())
            if found is not None:
                return found
        return "unknown"

    @property
    def name(self) -> str:
        """The Event name, Response status or Action name ('' if none)."""
        kind = self.kind
        if kind == "unknown":
            return ""
        return self.get(kind) or ""

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    @property
    def output(self) -> list[str]:
        """CLI output of a ``Command`` response, one string per line."""
        return self.getall("Output") + list(self._body)

    def get(self, key: str, default: str | None = None) -> str | None:
        wanted = key.lower()
        for name, value in self._headers:
            if name.lower() == wanted:
                return value
        return default

    def getall(self, key: str) -> list[str]:
        wanted = key.lower()
        return [value for name, value in self._headers if name.lower() == wanted]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        wanted = key.lower()
        return any(name.lower() == wanted for name, _ in self._headers)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._headers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AmiMessage):
            return NotImplemented
        return self._headers == other._headers and self._body == other._body

    def __hash__(self) -> int:
        return hash((self._headers, self._body))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._headers[:6])
        more = "" if len(self._headers) <= 6 else f", ... {len(self._headers) - 6} more"
        return f"<AmiMessage {shown}{more}>"


def fields(message: Any) -> dict[str, str]:
    """An :class:`AmiMessage` (or a mapping) as a plain dict, first value of each header:
    what every event handler reads."""
    if isinstance(message, Mapping):
        return dict(message)
    out: dict[str, str] = {}
    for k, v in getattr(message, "headers", ()):
        out.setdefault(k, v)
    return out


def _check_key(key: str) -> None:
    if not _KEY_RE.fullmatch(key):
        raise ValueError(f"invalid AMI field name {key!r}")


def _encode_line(key: str, value: str, *, limit: bool) -> bytes:
    _check_key(key)
    if not isinstance(value, str):
        raise TypeError(f"AMI field {key!r} must be a str, not {type(value).__name__}")
    if any(ch in value for ch in _FORBIDDEN_CHARS):
        raise ValueError(f"AMI field {key!r} contains CR, LF or NUL")
    line = f"{key}: {value}".encode() + CRLF
    if limit and len(line) > MAX_LINE_BYTES:
        raise ValueError(
            f"AMI field {key!r} is {len(line)} bytes with CRLF; "
            f"Asterisk reads at most {MAX_LINE_BYTES} per line"
        )
    return line


def _values(key: str, value: FieldValue) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    values = tuple(value)
    for item in values:
        if not isinstance(item, str):
            raise TypeError(f"AMI field {key!r} must hold str values, not {type(item).__name__}")
    return values


def encode_action(name: str, fields: Mapping[str, FieldValue], action_id: str) -> bytes:
    """Encode one request: ``Action``, ``ActionID``, then ``fields`` in order.

    A sequence value becomes one line per item under the same key (repeated
    ``Variable:`` headers). Any value holding CR, LF or NUL is refused with
    ``ValueError("AMI field 'Key' contains CR, LF or NUL")``: this is the
    guard that keeps caller-supplied strings from injecting headers or a
    second action.
    """
    if not name:
        raise ValueError("AMI action name must not be empty")
    if not action_id:
        raise ValueError("AMI ActionID must not be empty")
    lines = [
        _encode_line("Action", name, limit=True),
        _encode_line("ActionID", action_id, limit=True),
    ]
    for key, value in fields.items():
        if key.lower() in ("action", "actionid"):
            raise ValueError(f"AMI field {key!r} is set by encode_action, not by the caller")
        for item in _values(key, value):
            lines.append(_encode_line(key, item, limit=True))
    return b"".join(lines) + CRLF


def encode_message(headers: Iterable[tuple[str, str]], body: Iterable[str] = ()) -> bytes:
    """Encode a response or event (Asterisk's side; used by fakes and tests).

    Same CR/LF/NUL guard as :func:`encode_action`, no line-length limit
    (Asterisk's own output lines may be longer than what it accepts).
    """
    lines = [_encode_line(key, value, limit=False) for key, value in headers]
    for raw in body:
        if any(ch in raw for ch in _FORBIDDEN_CHARS):
            raise ValueError("AMI body line contains CR, LF or NUL")
        lines.append(raw.encode() + CRLF)
    return b"".join(lines) + CRLF


def format_variable(name: str, value: str) -> str:
    """Format one ``Variable:`` value for Originate as ``NAME=value``.

    ``name`` must be a plain channel variable (optionally with the ``_``/``__``
    inheritance prefix); a dialplan function such as ``SHELL(...)`` is refused,
    since Originate would *write* it. The value's ``\\ , " ( ) [ ]`` are
    backslash-escaped so that ``__ast_app_separate_args()`` neither splits the
    header into extra variables nor strips characters.
    """
    if not _VARIABLE_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid channel variable name {name!r}")
    if not isinstance(value, str):
        raise TypeError(f"channel variable {name!r} must be a str, not {type(value).__name__}")
    escaped = "".join("\\" + ch if ch in _ARG_SPECIALS else ch for ch in value)
    return f"{name}={escaped}"


def _split_header(line: str) -> tuple[str, str] | None:
    key, sep, value = line.partition(":")
    if not sep or not key or key != key.strip() or " " in key:
        return None
    # Asterisk writes "Key: value"; drop exactly that one space so that CLI
    # output such as "Output:   Channel   Location" keeps its alignment.
    if value.startswith(" "):
        value = value[1:]
    return key, value


class MessageReader:
    """Incremental AMI parser: :meth:`feed` bytes, get complete messages.

    Bytes are buffered until a whole line is there, so a UTF-8 character split
    across TCP segments decodes correctly; invalid UTF-8 is replaced (U+FFFD),
    never dropped silently. Lines end with CRLF; a bare LF is accepted too.
    With ``expect_banner`` (the client side) the first line must be the
    ``Asterisk Call Manager/x.y.z`` greeting, else :class:`AmiProtocolError`.
    """

    def __init__(self, *, expect_banner: bool = True) -> None:
        self._buffer = bytearray()
        self._expect_banner = expect_banner
        self.banner: str | None = None
        self._headers: list[tuple[str, str]] = []
        self._body: list[str] = []
        self._legacy_follows = False
        self._legacy_done = False

    @property
    def version(self) -> str | None:
        """The AMI protocol version from the banner (e.g. ``"9.0.0"``)."""
        if self.banner is None:
            return None
        return self.banner[len(BANNER_PREFIX) :].strip()

    def feed(self, data: bytes) -> list[AmiMessage]:
        self._buffer += data
        messages: list[AmiMessage] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_PENDING_BYTES:
                    raise AmiProtocolError(
                        f"no line end within {MAX_PENDING_BYTES} bytes; not an AMI peer?"
                    )
                return messages
            raw = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            message = self._line(raw.decode("utf-8", errors="replace"))
            if message is not None:
                messages.append(message)

    def _line(self, line: str) -> AmiMessage | None:
        if self._expect_banner and self.banner is None:
            if not line.startswith(BANNER_PREFIX):
                raise AmiProtocolError(
                    f"expected AMI banner {BANNER_PREFIX!r}..., got {line[:60]!r}"
                )
            self.banner = line
            return None
        if self._legacy_follows and not self._legacy_done:
            return self._legacy_line(line)
        if line == "":
            return self._finish()
        header = _split_header(line)
        if header is None:
            self._body.append(line)
            return None
        if not self._headers and header[0].lower() == "response" and header[1] == "Follows":
            self._legacy_follows = True
        self._headers.append(header)
        return None

    def _legacy_line(self, line: str) -> AmiMessage | None:
        # Pre-14 "Response: Follows": a few headers, then raw CLI output that
        # may contain blank lines and colons, up to "--END COMMAND--".
        if line == LEGACY_COMMAND_END:
            self._legacy_done = True
            return None
        header = _split_header(line)
        if not self._body and header is not None and header[0].lower() in _LEGACY_HEADER_KEYS:
            self._headers.append(header)
        else:
            self._body.append(line)
        return None

    def _finish(self) -> AmiMessage | None:
        if not self._headers and not self._body:
            return None  # stray blank line between messages
        message = AmiMessage(self._headers, self._body)
        self._headers = []
        self._body = []
        self._legacy_follows = False
        self._legacy_done = False
        return message


def is_error(message: AmiMessage) -> bool:
    """A ``Response: Error`` (or the rarer ``Fail``/``Failure``)."""
    return message.kind == "response" and message.name.lower() in ("error", "fail", "failure")


def event_list_flag(message: AmiMessage) -> str | None:
    """The lower-cased ``EventList`` header: ``start``, ``complete``, ``cancelled``."""
    value = message.get("EventList")
    return value.lower() if value is not None else None


@dataclass
class ReplyAssembler:
    """Collects the reply to one request, keyed by its ActionID.

    :meth:`add` takes every message carrying that ActionID and returns True
    once the reply is complete: the response alone for a plain action, or the
    response plus its items up to the ``EventList: Complete`` event for a list
    action. A ``Response: Error`` completes either kind at once.
    """

    action_id: str
    as_list: bool = False
    response: AmiMessage | None = None
    items: list[AmiMessage] = field(default_factory=list)
    complete_event: AmiMessage | None = None
    done: bool = False

    def add(self, message: AmiMessage) -> bool:
        if self.done:
            raise ValueError(f"reply to ActionID {self.action_id!r} is already complete")
        if message.action_id != self.action_id:
            raise ValueError(
                f"message for ActionID {message.action_id!r} given to {self.action_id!r}"
            )
        if message.kind == "response" and self.response is None:
            self.response = message
        elif self.as_list and message.kind == "event":
            if event_list_flag(message) in ("complete", "cancelled"):
                self.complete_event = message
            else:
                self.items.append(message)
        else:
            raise ValueError(f"unexpected {message!r} in the reply to {self.action_id!r}")
        self.done = self._complete()
        return self.done

    def _complete(self) -> bool:
        response = self.response
        if response is None:
            return False
        if is_error(response) or not self.as_list:
            return True
        announced = event_list_flag(response) == "start" or "follow" in (
            response.get("Message") or ""
        ).lower()
        return not announced or self.complete_event is not None
