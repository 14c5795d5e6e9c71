"""The FastAGI wire protocol as pure functions over bytes (no I/O).

Everything here mirrors Asterisk's ``res/res_agi.c`` (Asterisk 22), the way
aioice cites RFC sections:

* ``launch_netscript()`` + ``setup_env()``: on connect Asterisk writes
  ``agi_network: yes``, then ``agi_network_script: SCRIPT`` (everything after
  the first ``/`` of ``agi://host[:port]/SCRIPT``, only when not empty), then
  ``agi_request``, ``agi_channel`` ... ``agi_threadid``, ``agi_arg_1..N`` and
  an empty line.  Every line is ``"%s: %s\\n"`` -> :func:`parse_environment`.
* ``run_agi()`` reads each command with ``fgets()`` into ``char
  buf[AGI_BUF_LEN]`` (2048): a line longer than 2047 bytes is cut and its tail
  is read as a *second command* -> :func:`format_command` refuses such lines,
  :func:`frame_commands` mirrors that framing for tests and fakes.
* ``parse_args()`` splits a command into words: blanks/tabs separate words,
  ``"`` toggles quoting, ``\\`` makes the next byte literal ->
  :func:`split_command` is a byte-for-byte port, :func:`format_command` quotes
  every argument so that the port (and Asterisk) gives it back unchanged.
* ``agi_handle_command()`` answers ``200 result=...``, ``510 Invalid or
  unknown command``, ``511 Command Not Permitted on a dead channel or intercept
  routine``, ``520 Invalid command syntax.  Proper usage not available.`` or the
  ``520-`` ... ``520 End of proper usage.`` block; ``run_agi()`` writes
  ``HANGUP\\n`` on a FastAGI socket when the channel hangs up (unless
  ``AGISIGHUP=no``, see the AGI application docs) -> :func:`parse_response`
  and :class:`ResponseReader`.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "AGI_BUF_LEN",
    "HANGUP",
    "MAX_COMMAND_BYTES",
    "MAX_COMMAND_WORDS",
    "MAX_ENVIRONMENT_BYTES",
    "MAX_RESPONSE_BYTES",
    "AgiCommandError",
    "AgiEnvironment",
    "AgiError",
    "AgiEvent",
    "AgiHangup",
    "AgiProtocolError",
    "AgiResponse",
    "ChannelHungUp",
    "ResponseReader",
    "format_command",
    "format_environment",
    "frame_commands",
    "parse_environment",
    "parse_response",
    "sanitize",
    "split_command",
]

# res_agi.c: "#define AGI_BUF_LEN 2048" is the fgets() buffer of run_agi(); fgets keeps
# one byte for the NUL, so a command line including its '\n' must fit in 2047 bytes.
AGI_BUF_LEN: Final = 2048
MAX_COMMAND_BYTES: Final = AGI_BUF_LEN - 1
# res_agi.c: "#define MAX_ARGS 128"; parse_args() keeps argv[MAX_ARGS - 1] for NULL.
MAX_COMMAND_WORDS: Final = 128 - 1
# Our own bounds (Asterisk sends ~1 KiB of environment, responses of one line).
MAX_ENVIRONMENT_BYTES: Final = 64 * 1024
MAX_RESPONSE_BYTES: Final = 64 * 1024


class AgiError(Exception):
    """Base class of every error of the AGI layer."""


class AgiProtocolError(AgiError):
    """Bytes from Asterisk that do not follow the AGI protocol."""


class ChannelHungUp(AgiError):
    """The channel is gone: ``HANGUP`` line, ``511`` response, EOF or reset."""


class AgiCommandError(AgiError):
    """A command that Asterisk refused (5xx) or that failed (negative result)."""

    def __init__(self, command: str, response: AgiResponse) -> None:
        self.command = command
        self.response = response
        if response.code == 200:
            detail = f"result={response.result}"
        else:
            detail = f"{response.code} {response.data or ''}".rstrip()
        super().__init__(f"{command} failed: {detail}")


# --------------------------------------------------------------------------- environment


@dataclass(frozen=True, slots=True)
class AgiEnvironment:
    """The ``agi_*`` variables that ``setup_env()`` sends before the first command.

    Missing optional variables read as ``""`` (or ``0`` / ``False``); ``raw`` holds
    every variable as sent, keyed without change (``"agi_callerid"``...).
    """

    channel: str
    uniqueid: str
    network_script: str
    request: str = ""
    language: str = ""
    type: str = ""
    version: str = ""
    callerid: str = ""
    calleridname: str = ""
    callingpres: int = 0
    dnid: str = ""
    rdnis: str = ""
    context: str = ""
    extension: str = ""
    priority: int = 0
    enhanced: bool = False
    accountcode: str = ""
    threadid: str = ""
    arguments: tuple[str, ...] = ()
    raw: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False, compare=False)


_ENV_KEY = re.compile(rb"agi_[a-z0-9_]+")
# A whole well-formed block (decoded), and its "key: value" pairs: the fast path.
_ENV_BLOCK = re.compile(r"(?:agi_[a-z0-9_]+:[^\r\n]*\r?\n)*(?:\r?\n)*")
_ENV_PAIR = re.compile(r"(agi_[a-z0-9_]+): ?([^\r\n]*)\r?\n")
_ARG_KEY = re.compile(r"agi_arg_([1-9][0-9]*)")
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_REQUIRED_KEYS: Final = ("agi_network_script", "agi_uniqueid", "agi_channel")
_INT_FIELDS: Final = ("callingpres", "priority")
_ENHANCED: Final = {"0.0": False, "0": False, "1.0": True, "1": True}


def parse_environment(block: bytes) -> AgiEnvironment:
    """Parse the environment block, up to and including its empty line.

    Mirrors ``setup_env()``/``launch_netscript()`` in res_agi.c: one
    ``agi_key: value`` line per variable, values are UTF-8 (undecodable bytes
    are replaced), ``agi_network_script`` is reduced to the script name (no
    leading ``/``, no ``?query``) and ``agi_arg_1..N`` become ``arguments``.

    Raises :class:`AgiProtocolError` for an oversized block, a line without a
    colon or with a key that is not ``agi_[a-z0-9_]+``, a repeated key, text
    after the empty line, a missing or empty ``agi_channel`` /
    ``agi_uniqueid`` / ``agi_network_script``, non-numeric ``agi_priority`` /
    ``agi_callingpres``, or a gap in the ``agi_arg_N`` numbering.
    """
    if len(block) > MAX_ENVIRONMENT_BYTES:
        raise AgiProtocolError(
            f"AGI environment is {len(block)} bytes, over the {MAX_ENVIRONMENT_BYTES}-byte limit"
        )
    values = _well_formed_values(block)
    if values is None:
        values = _checked_values(block)

    for name in _REQUIRED_KEYS:
        if name not in values:
            raise AgiProtocolError(f"AGI environment has no {name}")
        if not values[name]:
            raise AgiProtocolError(f"AGI environment has an empty {name}")

    script = values["agi_network_script"].split("?", 1)[0].lstrip("/")
    if not script:
        raise AgiProtocolError(
            f"agi_network_script {values['agi_network_script']!r} names no script"
        )

    numbers: dict[str, int] = {}
    for name in _INT_FIELDS:
        text = values.get("agi_" + name, "0")
        if _INTEGER.fullmatch(text) is None:
            raise AgiProtocolError(f"agi_{name} is not an integer: {text!r}")
        numbers[name] = int(text)
    enhanced = values.get("agi_enhanced", "0.0")
    if enhanced not in _ENHANCED:
        raise AgiProtocolError(f"agi_enhanced is not 0.0 or 1.0: {enhanced!r}")

    numbered: dict[int, str] = {}
    if b"agi_arg_" in block:  # AGI() with arguments
        for name, value in values.items():
            match = _ARG_KEY.fullmatch(name)
            if match is not None:
                numbered[int(match.group(1))] = value
    for index in range(1, len(numbered) + 1):
        if index not in numbered:
            highest = max(numbered)
            raise AgiProtocolError(f"AGI environment has agi_arg_{highest} but no agi_arg_{index}")

    get = values.get
    return AgiEnvironment(
        channel=values["agi_channel"],
        uniqueid=values["agi_uniqueid"],
        network_script=script,
        request=get("agi_request", ""),
        language=get("agi_language", ""),
        type=get("agi_type", ""),
        version=get("agi_version", ""),
        callerid=get("agi_callerid", ""),
        calleridname=get("agi_calleridname", ""),
        callingpres=numbers["callingpres"],
        dnid=get("agi_dnid", ""),
        rdnis=get("agi_rdnis", ""),
        context=get("agi_context", ""),
        extension=get("agi_extension", ""),
        priority=numbers["priority"],
        enhanced=_ENHANCED[enhanced],
        accountcode=get("agi_accountcode", ""),
        threadid=get("agi_threadid", ""),
        arguments=tuple(numbered[i] for i in range(1, len(numbered) + 1)),
        raw=types.MappingProxyType(values),
    )


def _well_formed_values(block: bytes) -> dict[str, str] | None:
    """The variables of a block with nothing to complain about, or None.

    One decode and two regex passes over the whole block (what Asterisk sends);
    anything unusual -- a bad line, a repeated key, text after the empty line,
    a CR inside a value -- returns None and :func:`_checked_values` reports it.
    Decoding the block at once equals decoding each value: keys are ASCII, and
    an ASCII byte (LF, CR, colon, space) always ends an invalid UTF-8 sequence.
    """
    text = block.decode("utf-8", "replace")
    if _ENV_BLOCK.fullmatch(text) is None:
        return None
    pairs = _ENV_PAIR.findall(text)
    values = dict(pairs)
    return values if len(values) == len(pairs) else None


def _checked_values(block: bytes) -> dict[str, str]:
    """The variables of ``block``, line by line, raising on the first bad one."""
    values: dict[str, str] = {}
    ended = False
    for number, line in enumerate(block.split(b"\n"), 1):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            ended = True
            continue
        if ended:
            raise AgiProtocolError(
                f"AGI environment line {number} follows the empty line that ends the environment"
            )
        key, colon, raw_value = line.partition(b":")
        if not colon:
            raise AgiProtocolError(f"AGI environment line {number} has no colon: {line[:60]!r}")
        if _ENV_KEY.fullmatch(key) is None:
            raise AgiProtocolError(
                f"AGI environment line {number} has an invalid key: {key[:60]!r}"
            )
        name = key.decode("ascii")
        if name in values:
            raise AgiProtocolError(f"AGI environment line {number} repeats {name}")
        # setup_env() writes "%s: %s\n": exactly one space follows the colon.
        if raw_value.startswith(b" "):
            raw_value = raw_value[1:]
        values[name] = raw_value.decode("utf-8", "replace")
    return values


def format_environment(values: Mapping[str, str]) -> bytes:
    """Write an environment block as ``setup_env()`` does (for fakes and tests).

    Each item becomes ``"%s: %s\\n"`` verbatim -- like Asterisk, nothing is
    escaped -- followed by the empty line.
    """
    lines = [f"{key}: {value}\n" for key, value in values.items()]
    lines.append("\n")
    return "".join(lines).encode("utf-8")


# --------------------------------------------------------------------------- commands

_VERB = re.compile(r"[A-Z]+(?: [A-Z]+)*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_known_verbs: set[str] = set()


def format_command(*words: str) -> bytes:
    """Format one AGI command line: ``VERB WORDS "arg 1" "arg 2"\\n``.

    ``words[0]`` is the command name (``"STREAM FILE"``), upper-case words only;
    every other word is sent double-quoted with ``\\`` and ``"`` escaped by a
    backslash, which ``parse_args()`` in res_agi.c turns back into the exact
    text.  Raises :class:`ValueError` when an argument holds a control character
    (CR, LF, NUL, TAB, ... 0x00-0x1f and 0x7f: a LF would end the line and start
    a second command), is not encodable as UTF-8, when the command has more
    words than ``parse_args()`` keeps (127) or when the line is longer than the
    2047 bytes that ``run_agi()`` reads at once (the tail would be read as a
    second command).  Use :func:`sanitize` on caller-supplied text first.
    """
    if not words:
        raise ValueError("AGI command needs a command name")
    verb = words[0]
    if verb not in _known_verbs:
        if _VERB.fullmatch(verb) is None:
            raise ValueError(
                f"AGI command name must be upper-case words separated by single spaces: {verb!r}"
            )
        _known_verbs.add(verb)
    count = verb.count(" ") + len(words)
    if count > MAX_COMMAND_WORDS:
        raise ValueError(
            f"AGI command has {count} words, over the {MAX_COMMAND_WORDS} that res_agi keeps"
        )
    args = words[1:]
    if not args:
        text = verb + "\n"
    else:
        joined = "".join(args)  # one scan for the usual, clean case
        if _CONTROL.search(joined) is not None:
            for index, arg in enumerate(args, 1):
                bad = _CONTROL.search(arg)
                if bad is not None:
                    raise ValueError(
                        f"AGI command argument {index} contains control character "
                        f"0x{ord(bad.group()):02x}"
                    )
        if "\\" in joined or '"' in joined:
            args = tuple(arg.replace("\\", "\\\\").replace('"', '\\"') for arg in args)
        text = verb + ' "' + '" "'.join(args) + '"\n'
    try:
        line = text.encode("utf-8")
    except UnicodeEncodeError:
        for index in range(1, len(words)):
            try:
                words[index].encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    f"AGI command argument {index} is not encodable as UTF-8"
                ) from None
        raise  # pragma: no cover - the verb is ASCII
    if len(line) > MAX_COMMAND_BYTES:
        raise ValueError(
            f"AGI command is {len(line)} bytes, over the {MAX_COMMAND_BYTES} bytes "
            "that res_agi reads as one line"
        )
    return line


def _sanitize_table() -> dict[int, int | None]:
    table: dict[int, int | None] = {}
    for code in (*range(0x00, 0x20), *range(0x7F, 0xA0)):
        table[code] = None
    for code in (0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x85, 0x2028, 0x2029):
        table[code] = 0x20  # line breaks and tabs become a space
    for code in range(0xD800, 0xE000):
        table[code] = 0xFFFD  # lone surrogates cannot be sent as UTF-8
    return table


_SANITIZE: Final = _sanitize_table()


def sanitize(value: str, max_len: int = 256) -> str:
    """Make caller-supplied text (caller ID name, typed input) safe to send.

    Tabs and line breaks (CR, LF, VT, FF, NEL, U+2028/9) become a space, every
    other C0/C1 control character and DEL is removed, lone surrogates become
    U+FFFD, and the result is cut to ``max_len`` characters.  256 characters
    of any text stay far below the 2047-byte line limit of :func:`format_command`.
    """
    if max_len < 0:
        raise ValueError(f"max_len must not be negative: {max_len}")
    if not value.isascii() or not value.isprintable():
        value = value.translate(_SANITIZE)
    return value[:max_len]


def frame_commands(data: bytes) -> tuple[list[bytes], bytes]:
    """Cut bytes received by Asterisk into command lines the way ``run_agi()`` does.

    ``run_agi()`` calls ``fgets(buf, AGI_BUF_LEN)`` until it has a ``'\\n'``:
    a line ends at a LF or after 2047 bytes, whichever comes first (the rest
    of a longer line becomes the next command).  Returns the complete lines,
    without their LF, and the incomplete tail.  Used by test fakes to see
    exactly the commands Asterisk would see.
    """
    lines: list[bytes] = []
    start = 0
    size = len(data)
    while start < size:
        newline = data.find(b"\n", start, start + MAX_COMMAND_BYTES)
        if newline >= 0:
            lines.append(data[start:newline])
            start = newline + 1
        elif size - start >= MAX_COMMAND_BYTES:
            lines.append(data[start : start + MAX_COMMAND_BYTES])
            start += MAX_COMMAND_BYTES
        else:
            break
    return lines, data[start:]


def split_command(line: bytes) -> list[str]:
    """Split one command line into words exactly like ``parse_args()`` in res_agi.c.

    Byte by byte: outside quotes a blank or TAB ends a word; ``"`` toggles
    quoting (and opens a new, possibly empty, word after a blank); ``\\`` makes
    the next byte literal (including ``"``, ``\\`` and blanks); the C string ends
    at the first NUL; words past 127 are dropped.  A trailing LF is removed
    first, as ``run_agi()`` does.  Words are decoded as UTF-8.
    """
    if line.endswith(b"\n"):
        line = line[:-1]
    nul = line.find(b"\x00")
    if nul >= 0:
        line = line[:nul]
    words: list[bytearray] = []
    current = bytearray()
    quoted = escaped = False
    blank = True
    for byte in line:
        if byte == 0x22 and not escaped:  # '"'
            quoted = not quoted
            if quoted and blank:
                current = bytearray()
                words.append(current)
                blank = False
            continue
        if byte in (0x20, 0x09) and not quoted and not escaped:  # ' ', '\t'
            blank = True
            continue
        if byte == 0x5C and not escaped:  # '\\'
            escaped = True
            continue
        if blank:  # "normal:" in parse_args()
            if len(words) >= MAX_COMMAND_WORDS:
                continue  # "Too many arguments, truncating"
            current = bytearray()
            words.append(current)
            blank = False
        current.append(byte)
        escaped = False
    return [word.decode("utf-8", "replace") for word in words]


# --------------------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class AgiResponse:
    """One answer of ``agi_handle_command()``.

    ``result`` is the text after ``result=`` (``"1"``, ``"-1"``, ``"123#"``,
    ``""`` for ``GET DATA`` without digits) and ``None`` for a 5xx; ``data`` is
    the parenthesised part (``"timeout"``, a variable's value) or, for a 5xx,
    its message; ``usage`` the text of a ``520-`` block.
    """

    code: int
    result: str | None = None
    data: str | None = None
    endpos: int | None = None
    usage: str | None = None

    @property
    def ok(self) -> bool:
        """``200`` with a result that is not negative (``-1`` error/hangup, ``-2``...)."""
        return self.code == 200 and not (self.result or "").startswith("-")

    @property
    def digit(self) -> str | None:
        """The DTMF digit of ``STREAM FILE`` / ``WAIT FOR DIGIT``: ``chr(result)`` if > 0."""
        result = self.result
        if result and result.isdigit():
            value = int(result)
            if 0 < value < 0x110000:
                return chr(value)
        return None


@dataclass(frozen=True, slots=True)
class AgiHangup:
    """``HANGUP``: written by ``run_agi()`` on a FastAGI socket when the channel hangs up."""


HANGUP: Final = AgiHangup()
AgiEvent = AgiResponse | AgiHangup


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _parse_status(line: bytes) -> AgiResponse:
    """Parse a single (possibly LF-joined) response line."""
    if len(line) < 4 or line[3] != 0x20 or not line[:3].isdigit():
        raise AgiProtocolError(f"malformed AGI response line: {line[:80]!r}")
    code = int(line[:3])
    text = line[4:]
    if code != 200:
        return AgiResponse(code=code, data=_decode(text))
    if not text.startswith(b"result="):
        raise AgiProtocolError(f"AGI 200 response has no result=: {line[:80]!r}")
    space = text.find(b" ", 7)
    if space < 0:
        return AgiResponse(code=200, result=_decode(text[7:]))
    result = _decode(text[7:space])
    rest = text[space + 1 :]
    data: str | None = None
    if rest.startswith(b"("):
        if rest.endswith(b")"):
            # "(%s)" closes the line: the value may itself hold ")" or " endpos=".
            data, rest = _decode(rest[1:-1]), b""
        else:
            close = rest.find(b") ")
            if close < 0:
                raise AgiProtocolError(f"AGI response has unterminated data: {line[:80]!r}")
            data, rest = _decode(rest[1:close]), rest[close + 2 :]
    endpos: int | None = None
    for pair in rest.split():
        if pair.startswith(b"endpos="):
            try:
                endpos = int(pair[7:])
            except ValueError:
                raise AgiProtocolError(
                    f"AGI response has a non-numeric endpos: {line[:80]!r}"
                ) from None
    return AgiResponse(code=200, result=result, data=data, endpos=endpos)


def parse_response(lines: Sequence[bytes]) -> AgiResponse:
    """Parse the line(s) of one response, without their LF.

    One line: ``200 result=1``, ``200 result=0 (timeout)``, ``200 result=49
    endpos=12345``, ``510 Invalid or unknown command``, ``511 ...``, ``520 ...``.
    Several lines: the ``520-Invalid command syntax.  Proper usage follows:``
    block up to ``520 End of proper usage.`` (``usage`` is the text between),
    or a ``200`` line whose ``(value)`` holds line breaks (joined with LF).
    """
    if not lines:
        raise AgiProtocolError("empty AGI response")
    first = lines[0]
    if len(lines) == 1:
        if first == b"HANGUP":
            raise AgiProtocolError("HANGUP is an event, not a response")
        return _parse_status(first)
    if first.startswith(b"200 "):
        return _parse_status(b"\n".join(lines))
    if len(first) < 4 or first[3] != 0x2D or not first[:3].isdigit():  # "NNN-"
        raise AgiProtocolError(f"malformed AGI response line: {first[:80]!r}")
    last = lines[-1]
    if not last.startswith(first[:3] + b" "):
        raise AgiProtocolError(f"AGI {_decode(first[:3])}- block ends with {last[:80]!r}")
    return AgiResponse(
        code=int(first[:3]),
        data=_decode(first[4:]),
        usage=_decode(b"\n".join(lines[1:-1])),
    )


# The answers most commands get, one line on its own ("200 result=1\n"): parsed once.
# AgiResponse is frozen, so one object can be handed out for every such line.
_PLAIN_RESULTS: Final[Mapping[bytes, AgiResponse]] = {
    b"200 result=%d\n" % n: AgiResponse(code=200, result=str(n)) for n in range(-2, 256)
}


class ResponseReader:
    """Incremental reader: feed bytes from the socket, get complete events.

    Events are :class:`AgiResponse` and :data:`HANGUP` (the asynchronous
    ``HANGUP`` line, reported on its own).  Handles ``520-`` usage blocks and
    ``200 result=1 (value`` lines continued by a LF inside the value.  Empty
    lines between responses are skipped (res_agi never sends them).
    """

    __slots__ = ("_buffer", "_block", "_block_size", "_block_end")

    def __init__(self) -> None:
        self._buffer = b""
        self._block: list[bytes] = []
        self._block_size = 0
        self._block_end = b""  # b"520 " for a usage block, b")" for a continued value

    @property
    def pending(self) -> bool:
        """Whether part of a response has been received but not yet reported."""
        return bool(self._buffer or self._block)

    def feed(self, data: bytes) -> list[AgiEvent]:
        """Add bytes; return the events they complete, in order."""
        if not self._buffer and not self._block:
            plain = _PLAIN_RESULTS.get(data)
            if plain is not None:
                return [plain]
        events: list[AgiEvent] = []
        buffer = self._buffer + data if self._buffer else data
        start = 0
        while True:
            newline = buffer.find(b"\n", start)
            if newline < 0:
                break
            line = buffer[start:newline]
            start = newline + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            self._line(line, events)
        self._buffer = buffer[start:] if start else buffer
        if len(self._buffer) + self._block_size > MAX_RESPONSE_BYTES:
            raise AgiProtocolError(f"AGI response exceeds {MAX_RESPONSE_BYTES} bytes")
        return events

    def _line(self, line: bytes, events: list[AgiEvent]) -> None:
        block = self._block
        if block:
            block.append(line)
            self._block_size += len(line) + 1
            if self._block_size > MAX_RESPONSE_BYTES:
                raise AgiProtocolError(f"AGI response exceeds {MAX_RESPONSE_BYTES} bytes")
            end = self._block_end
            if (end == b")" and line.endswith(end)) or (end != b")" and line.startswith(end)):
                self._block = []
                self._block_size = 0
                events.append(parse_response(block))
            return
        if not line:
            return
        if line == b"HANGUP":
            events.append(HANGUP)
        elif len(line) > 3 and line[3] == 0x2D and line[:3].isdigit():  # "520-"
            self._start_block(line, line[:3] + b" ")
        elif line.startswith(b"200 ") and _opens_value(line):
            self._start_block(line, b")")
        else:
            events.append(_parse_status(line))

    def _start_block(self, line: bytes, end: bytes) -> None:
        self._block = [line]
        self._block_size = len(line) + 1
        self._block_end = end


def _opens_value(line: bytes) -> bool:
    """``200 result=1 (abc`` with no ``)``: GET VARIABLE of a value holding a LF."""
    opening = line.find(b" (")
    return opening >= 0 and line.find(b")", opening) < 0
