"""SIPp parties for integration tests: citizens calling in, agents on seats.

Scenarios are small XML templates filled per test (``$name`` placeholders via
string.Template, SIPp's own ``[keywords]`` untouched). Each SIPp process is
bounded in time (``-timeout``) and call count (``-m``), on loopback only.
Media: the caller's SDP can point at a :class:`RtpSink` (a UDP socket in the
test) so a test can prove it received the prompt's audio, while SIPp itself
sends RFC 4733 DTMF from Debian's pcaps (``/usr/share/sip-tester``).
"""

from __future__ import annotations

import audioop
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

PCAP_DIR = Path("/usr/share/sip-tester")

_INVITE_SDP = """\
v=0
o=citizen 53655765 2353687637 IN IP4 [local_ip]
s=-
c=IN IP4 $media_ip
t=0 0
m=audio $media_port RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendrecv"""


def _response(code: int, reason: str, *, to_tag: str | None = "01", contact: str | None = None,
              sdp: str | None = None, cseq: str = "[last_CSeq:]", retrans: bool = False) -> str:
    """A SIPp ``<send>`` of the response ``code reason`` to the last request.

    RFC 3261 §8.2.6.2: Via, From, Call-ID and CSeq are copied from the request and
    a UAS adds a To tag to a response that creates a dialog (``to_tag`` None for
    requests inside one). ``contact`` is the Contact's user part; ``sdp`` the body.
    """
    to = "[last_To:]" + (f";tag=[pid]SIPpTag{to_tag}[call_number]" if to_tag else "")
    head = [f"SIP/2.0 {code} {reason}", "[last_Via:]", "[last_From:]", to, "[last_Call-ID:]",
            cseq]
    if contact:
        head.append(f"Contact: <sip:{contact}@[local_ip]:[local_port]>")
    if sdp is None:
        head.append("Content-Length: 0")
    else:
        head += ["Content-Type: application/sdp", "Content-Length: [len]"]
    text = "\n".join("      " + h for h in head) + ("" if sdp is None else f"\n\n{sdp}")
    r = ' retrans="500"' if retrans else ""
    return f"  <send{r}>\n    <![CDATA[\n{text}\n    ]]>\n  </send>\n"


# The answers to a CANCEL of a ringing INVITE (RFC 3261 §9.2): 200 to the CANCEL,
# then 487 to the INVITE (whose CSeq the scenario captured as ``cs``).
_CANCELLED = _response(200, "OK") + _response(
    487, "Request Terminated", cseq="CSeq: [$cs] INVITE")


_AGENT_SDP = """v=0
o=agent 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=sendrecv"""


def caller_scenario(steps: str, service: str = "12345", caller: str = "13907910001",
                    media_ip: str = "[media_ip]", media_port: str = "[media_port]", *,
                    hangs_up: bool = True, bye_timeout_ms: int = 0) -> str:
    """A UAC that calls ``service``, is answered, runs ``steps``, then hangs up.

    ``steps`` is SIPp XML run after the ACK (pauses, DTMF pcaps). With
    ``hangs_up=False`` the caller instead waits for the hotline's BYE (at most
    ``bye_timeout_ms`` when given, else as long as the run lasts).
    """
    if not service.isdigit() or not caller.isdigit():
        raise ValueError(f"service and caller must be digits: {service!r}, {caller!r}")
    sdp = Template(_INVITE_SDP).substitute(media_ip=media_ip, media_port=media_port)
    if hangs_up:
        end = f"""  <send retrans="500">
    <![CDATA[
      BYE sip:{service}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "citizen" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{service}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
  <recv response="200" crlf="true"/>
"""
    else:  # re-INVITEs (connected line, once an agent answers) are answered meanwhile
        end = _talk(sdp, "citizen", bye_timeout_ms, None)
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="citizen calls {service}">
  <send retrans="500" start_rtd="answer">
    <![CDATA[
      INVITE sip:{service}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "citizen" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{service}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{caller}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

{sdp}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="answer"/>
  <send>
    <![CDATA[
      ACK sip:{service}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "citizen" <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{service}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Contact: <sip:{caller}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
{steps}
{end}</scenario>
"""


def until_answered(talk_ms: int) -> str:
    """Caller steps in a queue: wait until an agent answers -- Asterisk then updates
    the caller's connected line with a re-INVITE, answered here -- and talk
    ``talk_ms`` before :func:`caller_scenario` hangs up."""
    sdp = Template(_INVITE_SDP).substitute(media_ip="[media_ip]", media_port="[media_port]")
    ok = _response(200, "OK", to_tag=None, contact="citizen", sdp=sdp)
    return f'  <recv request="INVITE"/>\n{ok}  <recv request="ACK"/>\n{pause(talk_ms)}'

def rejected_call_scenario(service: str, expect: str) -> str:
    """A UAC whose INVITE must be refused with response ``expect`` (e.g. 404)."""
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="call to {service} must be refused">
  <send retrans="500">
    <![CDATA[
      INVITE sip:{service}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "stranger" <sip:13800000000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{service}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:13800000000@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

v=0
o=x 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8
a=rtpmap:8 PCMA/8000
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="{expect}"/>
  <send>
    <![CDATA[
      ACK sip:{service}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "stranger" <sip:13800000000@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{service}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
</scenario>
"""


def dtmf(digit: str, then_ms: int = 0) -> str:
    name = {"*": "star", "#": "pound"}.get(digit, digit)
    xml = f'  <nop><action><exec play_pcap_audio="{PCAP_DIR}/dtmf_2833_{name}.pcap"/></action></nop>\n'
    if then_ms:
        xml += pause(then_ms)
    return xml


class Keypad:
    """RFC 4733 key presses of one call, as pcaps SIPp plays one after the other.

    Debian's ``dtmf_2833_N.pcap`` each carry fixed RTP sequence numbers and
    timestamps (the "2" is numbered after the "1"), so on one call a "1" after
    a "2" looks like an old packet to Asterisk and is dropped. Each press here
    is a copy renumbered after the previous one (UDP checksum cleared, which
    IPv4 allows).
    """

    def __init__(self, workdir: Path, name: str):
        self.dir = workdir / f"keys-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def press(self, digit: str, then_ms: int = 0) -> str:
        data = (PCAP_DIR / f"dtmf_2833_{digit}.pcap").read_bytes()
        out, off = bytearray(data[:24]), 24
        first: tuple[int, int] | None = None
        while off < len(data):
            incl = struct.unpack("<I", data[off + 8 : off + 12])[0]
            pkt = bytearray(data[off + 16 : off + 16 + incl])
            udp = 14 + (pkt[14] & 0x0F) * 4
            rtp = udp + 8
            seq, ts = struct.unpack(">HI", pkt[rtp + 2 : rtp + 8])
            first = first or (seq, ts)
            new_seq = 20000 + self.n * 50 + (seq - first[0])
            new_ts = 400000 + self.n * 16000 + (ts - first[1])
            pkt[rtp + 2 : rtp + 8] = struct.pack(">HI", new_seq, new_ts)
            pkt[udp + 6 : udp + 8] = b"\0\0"
            out += data[off : off + 16] + pkt
            off += 16 + incl
        path = self.dir / f"{self.n:02d}-{digit}.pcap"
        path.write_bytes(bytes(out))
        self.n += 1
        xml = f'  <nop><action><exec play_pcap_audio="{path}"/></action></nop>\n'
        return xml + (pause(then_ms) if then_ms else "")


def pause(ms: int) -> str:
    return f'  <pause milliseconds="{ms}"/>\n'


def agent_register_scenario(seat: str, password: str, hold_ms: int) -> str:
    """Register seat ``seat`` (digest auth), stay registered ``hold_ms``, unregister."""
    def register(cseq: int, expires: int, auth: bool) -> str:
        a = f"\n      [authentication username={seat} password={password}]" if auth else ""
        return f"""  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{seat}@[remote_ip]>;tag=[pid]SIPpTag[call_number]
      To: <sip:{seat}@[remote_ip]>
      Call-ID: [call_id]
      CSeq: {cseq} REGISTER
      Contact: <sip:{seat}@[local_ip]:[local_port]>
      Expires: {expires}
      Max-Forwards: 70{a}
      Content-Length: 0
    ]]>
  </send>
"""
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="agent seat {seat} registers">
{register(1, 300, False)}  <recv response="401" auth="true"/>
{register(2, 300, True)}  <recv response="200"/>
  <pause milliseconds="{hold_ms}"/>
{register(3, 0, False)}  <recv response="401" auth="true"/>
{register(4, 0, True)}  <recv response="200"/>
</scenario>
"""


def agent_answer_scenario(answer_after_ms: int = 300) -> str:
    """Out-of-call scenario of a registered agent: answers INVITEs and OPTIONS."""
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="agent answers">
  <recv request="OPTIONS" optional="true" next="ping"/>
  <recv request="INVITE"/>
{_response(180, "Ringing", contact="agent")}  <pause milliseconds="{answer_after_ms}"/>
{_response(200, "OK", contact="agent", sdp=_AGENT_SDP, retrans=True)}  <recv request="ACK"/>
  <recv request="BYE"/>
{_OK_TO_REQUEST}  <nop next="done"/>
  <label id="ping"/>
{_response(200, "OK", to_tag="02")}  <label id="done"/>
</scenario>
"""


_HANDED_OUT: set[tuple[str, int]] = set()


def _worker_slice(lo: int, hi: int) -> range:
    """This pytest-xdist worker's share of ``lo``..``hi`` (all of it without xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    n = int(worker[2:]) if worker[2:].isdigit() else 0
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))
    span = (hi - lo) // workers
    start = lo + (n % workers) * span
    return range(start, start + span)


# Test ports, by kind, each range split between the xdist workers so that two
# workers never pick the same port; all below the kernel's ephemeral range
# (32768-60999), so no outgoing connection (AMI, FastAGI, HTTP clients) takes a
# port while its owner restarts. Asterisk's RTP ranges (harness.test_config) lie
# above 40000, where a busy port is simply skipped.
LISTEN_PORTS = (12000, 30000)  # SIP, FastAGI, AMI, HTTP, Redis, trunks' SIPp
MEDIA_PORTS = (30000, 32760)  # SIPp media (RTP, RTCP, video RTP/RTCP)


def _listen_range() -> range:
    return _worker_slice(*LISTEN_PORTS)


def free_port(host: str = "127.0.0.1", udp_and_tcp: bool = True) -> int:
    """A port free on ``host`` (UDP, and TCP unless told), never handed out before by
    this process."""
    import random

    span = _listen_range()
    for _ in range(500):
        port = random.choice(span)
        if (host, port) in _HANDED_OUT:
            continue
        kinds = (socket.SOCK_DGRAM, socket.SOCK_STREAM) if udp_and_tcp else (socket.SOCK_DGRAM,)
        if not _can_bind(host, [(port, kind) for kind in kinds]):
            continue
        _HANDED_OUT.add((host, port))
        return port
    raise RuntimeError(f"no free port on {host} in {span.start}-{span.stop - 1}")


def _can_bind(host: str, wanted: list[tuple[int, socket.SocketKind]]) -> bool:
    """Every (port, socket kind) can be bound on ``host`` right now (all released again)."""
    socks = []
    try:
        for port, kind in wanted:
            sk = socket.socket(socket.AF_INET, kind)
            socks.append(sk)
            sk.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        for sk in socks:
            sk.close()


def free_media_port(host: str) -> int:
    """An even port with the next three free too: SIPp binds RTP at -mp, RTCP at
    +1 and video RTP/RTCP at +2/+3, and exits when any of them is taken."""
    import random

    span = _worker_slice(*MEDIA_PORTS)
    for _ in range(200):
        base = random.randrange(span.start, span.stop - 4, 2)
        if _can_bind(host, [(p, socket.SOCK_DGRAM) for p in range(base, base + 4)]):
            return base
    raise RuntimeError("no free media port range")


@dataclass
class SippResult:
    returncode: int
    stdout: str
    workdir: Path
    rtts_ms: list[float] = field(default_factory=list)

    def log(self, suffix: str) -> str:
        out = []
        for p in self.workdir.glob(f"*{suffix}"):
            out.append(p.read_text(errors="replace"))
        return "\n".join(out)

    @property
    def messages(self) -> str:
        return self.log("_messages.log")

    @property
    def errors(self) -> str:
        return self.log("_errors.log")

    def explain(self) -> str:
        return f"sipp exit {self.returncode}\n{self.stdout[-3000:]}\nerrors:\n{self.errors[-3000:]}"


class Sipp:
    """One SIPp process. Start it, then ``wait()`` for its result."""

    def __init__(self, workdir: Path, name: str, scenario: str, *, local_ip: str, target: str,
                 local_port: int | None = None, media_port: int | None = None,
                 ooc_scenario: str | None = None, calls: int = 1, rate: float = 1.0,
                 timeout_s: int = 30, extra: list[str] | None = None):
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        sf = self.workdir / f"{name}.xml"
        sf.write_text(scenario)
        self.local_port = local_port or free_port(local_ip, udp_and_tcp=False)
        self.media_port = media_port or free_media_port(local_ip)
        sipp = shutil.which("sipp")
        if sipp is None:
            raise FileNotFoundError("sipp")
        cmd = [sipp, "-sf", str(sf), "-i", local_ip, "-p", str(self.local_port),
               "-mi", local_ip, "-mp", str(self.media_port),
               "-m", str(calls), "-r", str(rate), "-l", str(max(1, calls)),
               "-timeout", f"{timeout_s}s", "-timeout_error", "-nostdin",
               "-trace_err", "-trace_msg", "-trace_rtt", "-rtt_freq", "1", "-nd"]
        if ooc_scenario:
            oo = self.workdir / f"{name}-ooc.xml"
            oo.write_text(ooc_scenario)
            cmd += ["-oocsf", str(oo)]
        cmd += (extra or []) + [target]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def wait(self, timeout: float = 60) -> SippResult:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        text = out.decode(errors="replace")
        rtts: list[float] = []
        for p in self.workdir.glob("*_rtt.csv"):
            for line in p.read_text().splitlines()[1:]:
                parts = line.split(";")
                if len(parts) >= 2:
                    try:
                        rtts.append(float(parts[1]))
                    except ValueError:
                        pass
        return SippResult(self.proc.returncode, text, self.workdir, rtts)

    def messages_so_far(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.workdir.glob("*_messages.log"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class RtpSink:
    """A UDP socket that counts the RTP it receives and keeps the PCMA payload."""

    def __init__(self, ip: str):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets = 0
        self.first_at: float | None = None
        self.payload = bytearray()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            if len(data) > 12 and data[0] >> 6 == 2:
                self.packets += 1
                if self.first_at is None:
                    self.first_at = time.monotonic()
                if data[1] & 0x7F == 8:
                    self.payload += data[12:]

    def rms(self) -> int:
        if not self.payload:
            return 0
        return audioop.rms(audioop.alaw2lin(bytes(self.payload), 2), 2)

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.sock.close()


def ensure_dir(p: Path) -> Path:
    os.makedirs(p, exist_ok=True)
    return p


def seat_dial_scenario(seat: str, password: str, number: str, hold_ms: int = 8000) -> str:
    """A registered seat's softphone dials ``number`` (digest auth on the INVITE),
    is answered, and waits for Asterisk to hang up (a feature code) or ``hold_ms``."""
    def invite(cseq: int, auth: bool) -> str:
        a = f"\n      [authentication username={seat} password={password}]" if auth else ""
        return f"""  <send retrans="500">
    <![CDATA[
      INVITE sip:{number}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{seat}@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{number}@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:{seat}@[local_ip]:[local_port]>
      Max-Forwards: 70{a}
      Content-Type: application/sdp
      Content-Length: [len]

v=0
o={seat} 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=sendrecv
    ]]>
  </send>
"""
    ack = """  <send>
    <![CDATA[
      ACK sip:{number}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{seat}@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:{number}@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
"""
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="seat {seat} dials {number}">
{invite(1, False)}  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
{ack.format(number=number, seat=seat, cseq=1)}{invite(2, True)}  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200"/>
{ack.format(number=number, seat=seat, cseq=2)}  <recv request="BYE" timeout="{hold_ms}"/>
{_OK_TO_REQUEST}</scenario>
"""


def agent_no_answer_scenario() -> str:
    """Out-of-call scenario of a registered agent who lets every offer ring out."""
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="agent does not answer">
  <recv request="OPTIONS" optional="true" next="ping"/>
  <recv request="INVITE"/>
{_response(180, "Ringing", contact="agent")}  <recv request="CANCEL">
    <action><ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="cs"/></action>
  </recv>
{_CANCELLED}  <recv request="ACK"/>
  <nop next="done"/>
  <label id="ping"/>
{_response(200, "OK", to_tag="02")}  <label id="done"/>
</scenario>
"""


# --------------------------------------------------------------------------- transfers
# Parties of the emergency transfer tests (issue 5). Their SDP names a TonePeer's
# socket instead of SIPp's own media port, so one socket both sends and receives
# (Asterisk's RTP is symmetric and strict: a second source would be dropped).

_SDP = """v=0
o=$who 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 $media_ip
t=0 0
m=audio $media_port RTP/AVP 8 101
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendrecv"""


def _talk(sdp: str, who: str, hold_ms: int, bye: str | None) -> str:
    """The talking phase of a party: answers Asterisk's re-INVITEs (connected-line
    updates), then sends ``bye`` after ``hold_ms`` without a re-INVITE, or (``bye`` None)
    waits up to ``hold_ms`` for the hotline's BYE."""
    ok = _response(200, "OK", to_tag=None, contact=who, sdp=sdp)
    reinvite = f'  <label id="reinvite"/>\n{ok}  <recv request="ACK" next="talk"/>\n'
    if bye is None:
        timeout = f' timeout="{hold_ms}"' if hold_ms else ""
        return f"""  <label id="talk"/>
  <recv request="INVITE" optional="true" next="reinvite"/>
  <recv request="BYE"{timeout}/>
{_OK_TO_REQUEST}  <nop next="talked"/>
{reinvite}  <label id="talked"/>
"""
    return f"""  <label id="talk"/>
  <recv request="INVITE" timeout="{hold_ms}" ontimeout="hangup" next="reinvite"/>
{reinvite}  <label id="hangup"/>
  <send retrans="500">
    <![CDATA[
{bye}
    ]]>
  </send>
  <recv response="200" crlf="true"/>
"""


def citizen_call_scenario(service: str, caller: str, media_ip: str, media_port: int,
                          hold_ms: int, hangs_up: bool = True,
                          extra_headers: tuple[str, ...] = ()) -> str:
    """A citizen calls ``service``; after ``hold_ms`` hangs up (``hangs_up``), or else
    waits up to ``hold_ms`` for the hotline to hang up. ``extra_headers`` (``Name: value``)
    go into the INVITE (a city centre handing a matter up sends its case reference)."""
    extra = "".join(f"      {h}\n" for h in extra_headers)
    sdp = Template(_SDP).substitute(who="citizen", media_ip=media_ip, media_port=media_port)
    tag = "[pid]SIPpTag00[call_number]"
    dialog = f"""From: "citizen" <sip:{caller}@[local_ip]:[local_port]>;tag={tag}
      To: <sip:{service}@[remote_ip]:[remote_port]>"""
    bye = f"""      BYE sip:{service}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {dialog}[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0"""
    end = _talk(sdp, "citizen", hold_ms, bye if hangs_up else None)
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="citizen calls {service}">
  <send retrans="500">
    <![CDATA[
      INVITE sip:{service}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {dialog}
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{caller}@[local_ip]:[local_port]>
      Max-Forwards: 70
{extra}      Content-Type: application/sdp
      Content-Length: [len]

{sdp}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200"/>
  <send>
    <![CDATA[
      ACK sip:{service}@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      {dialog}[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
    ]]>
  </send>
{end}</scenario>
"""


_OK_TO_REQUEST = _response(200, "OK", to_tag=None)



def answering_party_scenario(mode: str, media_ip: str = "", media_port: int = 0, *,
                             answer_after_ms: int = 200, hangup_after_ms: int = 0,
                             wait_ms: int = 60000, who: str = "dispatcher",
                             expect_headers: tuple[str, ...] = ()) -> str:
    """A called party (an emergency dispatcher, or an agent as SIPp's out-of-call scenario).

    ``expect_headers``: header names the INVITE must carry (SIPp fails the call when one
    is missing: ``ereg`` with ``check_it``).

    ``mode``: ``answer`` (180, then 200 after ``answer_after_ms``; hangs up itself after
    ``hangup_after_ms`` if non-zero, else waits for the BYE), ``busy`` (486),
    ``silent`` (180, never answers: waits for the CANCEL). SIP OPTIONS are answered.
    """
    ringing = _response(180, "Ringing", contact=who)
    # (SIPp refuses a scenario whose variable is assigned and never used: hence the log)
    checks = "".join(
        f'      <ereg regexp=".+" search_in="hdr" header="{h}:" check_it="true" assign_to="xh{i}"/>\n'
        f'      <log message="{h}: [$xh{i}]"/>\n'
        for i, h in enumerate(expect_headers))
    dialog = """      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="inv_from"/>
      <ereg regexp=".*" search_in="hdr" header="To:" check_it="true" assign_to="inv_to"/>
      <ereg regexp="sip:[^>;]*" search_in="hdr" header="Contact:" check_it="true"
            assign_to="inv_contact"/>
"""
    capture = f"""    <action>
{checks}{dialog if hangup_after_ms else ""}    </action>"""
    if mode == "busy":
        body = ('  <recv request="INVITE"/>\n' + _response(486, "Busy Here", contact=who)
                + '  <recv request="ACK"/>\n')
    elif mode == "silent":
        body = f"""  <recv request="INVITE"/>
{ringing}  <recv request="CANCEL" timeout="{wait_ms}">
    <action><ereg regexp="[0-9]+" search_in="hdr" header="CSeq:" assign_to="cs"/></action>
  </recv>
{_CANCELLED}  <recv request="ACK"/>
"""
    elif mode == "answer":
        sdp = Template(_SDP).substitute(who=who, media_ip=media_ip, media_port=media_port)
        bye = """      BYE [$inv_contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: [$inv_to];tag=[pid]SIPpTag01[call_number]
      To: [$inv_from]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Max-Forwards: 70
      Content-Length: 0"""
        end = _talk(sdp, who, hangup_after_ms or wait_ms, bye if hangup_after_ms else None)
        invite = f'  <recv request="INVITE">\n{capture}\n  </recv>\n' \
            if hangup_after_ms or expect_headers else '  <recv request="INVITE"/>\n'
        body = f"""{invite}{ringing}  <pause milliseconds="{answer_after_ms}"/>
{_response(200, "OK", contact=who, sdp=sdp, retrans=True)}  <recv request="ACK"/>
{end}"""
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return f"""<?xml version="1.0" encoding="UTF-8" ?>
<scenario name="{who} {mode}">
  <recv request="OPTIONS" optional="true" next="ping"/>
{body}  <nop next="done"/>
  <label id="ping"/>
{_response(200, "OK", to_tag="02")}  <label id="done"/>
</scenario>
"""


class TonePeer:
    """The media side of one party: a UDP socket that sends a sine tone as PCMA RTP
    (20 ms frames) and keeps what it receives, to tell by frequency whom it hears.

    It starts sending once Asterisk has sent it RTP (symmetric RTP: it answers to
    the packets' source). :meth:`amplitude` measures a frequency in the received
    audio over a time window (Goertzel over 20 ms blocks, so use multiples of 50 Hz).
    :meth:`dtmf` sends an RFC 4733 digit.
    """

    RATE = 8000
    FRAME = 160  # 20 ms

    def __init__(self, ip: str, freq: int, amplitude: int = 6000):
        import math

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, 0))
        self.sock.settimeout(0.1)
        self.ip, self.port, self.freq = ip, self.sock.getsockname()[1], freq
        step = 2 * math.pi * freq / self.RATE
        wave = (int(amplitude * math.sin(step * n)) for n in range(self.RATE))
        pcm = b"".join(x.to_bytes(2, "little", signed=True) for x in wave)  # 1 s: whole periods
        self._alaw = audioop.lin2alaw(pcm, 2)
        self.remote: tuple[str, int] | None = None
        self.received: list[tuple[float, bytes]] = []  # (arrival, 16-bit PCM)
        self.sending = True
        self._lock = threading.Lock()
        self._dtmf: list[str] = []
        self._seq, self._ts, self._ssrc = 1000, 0, int.from_bytes(os.urandom(4), "big")
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._recv, daemon=True),
                         threading.Thread(target=self._send, daemon=True)]
        for t in self._threads:
            t.start()

    def _recv(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            if len(data) <= 12 or data[0] >> 6 != 2:
                continue
            self.remote = addr
            if data[1] & 0x7F == 8:
                with self._lock:
                    self.received.append((time.monotonic(), audioop.alaw2lin(data[12:], 2)))

    def _packet(self, pt: int, payload: bytes, marker: bool = False,
                ts: int | None = None) -> bytes:
        self._seq = (self._seq + 1) & 0xFFFF
        stamp = (self._ts if ts is None else ts) & 0xFFFFFFFF
        header = bytes([0x80, (0x80 if marker else 0) | pt]) + self._seq.to_bytes(2, "big")
        return header + stamp.to_bytes(4, "big") + self._ssrc.to_bytes(4, "big") + payload

    def _send(self) -> None:
        offset, next_at = 0, time.monotonic()
        while not self._stop.is_set():
            next_at += 0.02
            time.sleep(max(0.0, next_at - time.monotonic()))
            if self.remote is None:
                continue
            if self._dtmf:
                self._send_digit(self._dtmf.pop(0))
                next_at = time.monotonic()
                continue
            if self.sending:
                frame = self._alaw[offset:offset + self.FRAME]
                offset = (offset + self.FRAME) % len(self._alaw)
                self.sock.sendto(self._packet(8, frame), self.remote)
            self._ts += self.FRAME

    def _send_digit(self, digit: str) -> None:
        event = "0123456789*#".index(digit)
        start, remote = self._ts, self.remote
        assert remote is not None
        for i in range(1, 9):  # 160 ms of tone
            payload = bytes([event, 10]) + (i * self.FRAME).to_bytes(2, "big")
            self.sock.sendto(self._packet(101, payload, marker=i == 1, ts=start), remote)
            time.sleep(0.02)
        for _ in range(3):  # end of event, sent three times (RFC 4733 2.5.1.4)
            payload = bytes([event, 0x80 | 10]) + (8 * self.FRAME).to_bytes(2, "big")
            self.sock.sendto(self._packet(101, payload, ts=start), remote)
        self._ts += 9 * self.FRAME

    def dtmf(self, digits: str) -> None:
        self._dtmf.extend(digits)

    def amplitude(self, freq: int, since: float, until: float | None = None) -> float:
        """Mean amplitude (of 32767) of ``freq`` in what arrived in [since, until)."""
        import math

        until = time.monotonic() if until is None else until
        with self._lock:
            pcm = b"".join(p for at, p in self.received if since <= at < until)
        n = self.FRAME
        samples = [int.from_bytes(pcm[i:i + 2], "little", signed=True)
                   for i in range(0, len(pcm) - 1, 2)]
        blocks = len(samples) // n
        if not blocks:
            return 0.0
        coeff = 2 * math.cos(2 * math.pi * freq / self.RATE)
        total = 0.0
        for b in range(blocks):
            s1 = s2 = 0.0
            for x in samples[b * n:(b + 1) * n]:
                s1, s2 = x + coeff * s1 - s2, s1
            total += 2 * math.sqrt(max(0.0, s1 * s1 + s2 * s2 - coeff * s1 * s2)) / n
        return total / blocks

    def packets(self, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for at, _ in self.received if at >= since)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self.sock.close()
