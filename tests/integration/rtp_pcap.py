"""Write a pcap of PCMA RTP packets that SIPp's ``play_pcap_audio`` can play.

SIPp (``src/prepare_pcap.c``) reads a libpcap file with Ethernet (DLT_EN10MB)
framing, keeps the UDP payload of each IPv4 packet -- the whole RTP packet,
header included -- and sends it to the call's remote media port with the
pcap's timing.  So a spoken test phrase becomes: 8 kHz 16-bit mono PCM ->
G.711 A-law (RFC 3551 payload type 8) in 20 ms RTP packets (RFC 3550 header)
-> UDP/IPv4/Ethernet records in a pcap (libpcap format, magic 0xa1b2c3d4).

Pure Python: ``speak()`` makes the PCM with espeak-ng and sox, the rest is
``struct``.  A-law encoding follows ITU-T G.711 (the segment table below); the
test checks it against the well-known values for silence and full scale.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from collections.abc import Iterable
from pathlib import Path

SAMPLE_RATE = 8000
PTIME_MS = 20
SAMPLES_PER_PACKET = SAMPLE_RATE * PTIME_MS // 1000  # 160
PCMA = 8
ALAW_SILENCE = 0xD5  # A-law code of 0 (even bits inverted)

_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)  # seg_aend of 13-bit magnitudes


def linear_to_alaw(sample: int) -> int:
    """One 16-bit linear sample to its G.711 A-law code."""
    pcm = sample >> 3  # A-law works on 13-bit magnitudes
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = 0
    while seg < 8 and pcm > _SEG_END[seg]:
        seg += 1
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm >> 1) & 0x0F if seg < 2 else (pcm >> seg) & 0x0F
    return aval ^ mask


_ALAW_TABLE = bytes(linear_to_alaw(s - 65536 if s >= 32768 else s) for s in range(65536))


def pcm_to_alaw(pcm: bytes) -> bytes:
    """16-bit little-endian linear PCM to A-law bytes."""
    if len(pcm) % 2:
        raise ValueError("PCM must be 16-bit samples")
    samples = struct.unpack(f"<{len(pcm) // 2}H", pcm)
    return bytes(_ALAW_TABLE[s] for s in samples)


def rtp_packet(seq: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False,
               payload_type: int = PCMA) -> bytes:
    """RFC 3550 §5.1 fixed header (V=2, no padding, no extension, no CSRC) + payload."""
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | payload_type,
                       seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_ipv4_ethernet(payload: bytes, src: str, dst: str, sport: int, dport: int) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                               bytes(int(x) for x in src.split(".")),
                               bytes(int(x) for x in dst.split("."))))
    ip[10:12] = struct.pack("!H", _ip_checksum(bytes(ip)))
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + bytes(ip) + udp


def write_pcap(path: Path, packets: Iterable[tuple[float, bytes]]) -> Path:
    """libpcap file: global header (v2.4, snaplen 65535, DLT_EN10MB) + one record per packet."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t, frame in packets:
            sec = int(t)
            usec = int(round((t - sec) * 1_000_000))
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    return path


def pcma_rtp_pcap(path: Path, pcm: bytes, *, lead_ms: int = 0, tail_ms: int = 0,
                  src: str = "127.0.0.2", dst: str = "127.0.0.1", sport: int = 6000,
                  dport: int = 6000, ssrc: int | None = None) -> Path:
    """A pcap of ``lead_ms`` of silence, ``pcm`` (8 kHz 16-bit mono), ``tail_ms`` of silence.

    Every 20 ms one PCMA packet; timestamps advance by 160 samples, the first
    packet carries the marker bit (start of a talkspurt, RFC 3551 §4.1).
    """
    frame_bytes = SAMPLES_PER_PACKET * 2
    body = pcm + b"\0" * (-len(pcm) % frame_bytes)
    alaw = (bytes([ALAW_SILENCE]) * (SAMPLE_RATE * lead_ms // 1000)
            + pcm_to_alaw(body)
            + bytes([ALAW_SILENCE]) * (SAMPLE_RATE * tail_ms // 1000))
    alaw += bytes([ALAW_SILENCE]) * (-len(alaw) % SAMPLES_PER_PACKET)
    rnd = random.Random(len(pcm))
    ssrc = rnd.getrandbits(32) if ssrc is None else ssrc
    seq0, ts0 = rnd.getrandbits(16), rnd.getrandbits(32)
    packets = []
    for i in range(len(alaw) // SAMPLES_PER_PACKET):
        chunk = alaw[i * SAMPLES_PER_PACKET:(i + 1) * SAMPLES_PER_PACKET]
        rtp = rtp_packet(seq0 + i, ts0 + i * SAMPLES_PER_PACKET, ssrc, chunk, marker=(i == 0))
        packets.append((i * PTIME_MS / 1000, udp_ipv4_ethernet(rtp, src, dst, sport, dport)))
    return write_pcap(path, packets)


def speak(text: str, *, voice: str = "ko", speed: int = 150) -> bytes:
    """``text`` spoken by espeak-ng, as 8 kHz 16-bit mono little-endian PCM (sox)."""
    espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
    if espeak is None or sox is None:
        raise FileNotFoundError("espeak-ng and sox are needed to make test speech")
    wav = subprocess.run([espeak, "-v", voice, "-s", str(speed), "--stdout", text],
                         capture_output=True, check=True, timeout=30).stdout
    return subprocess.run([sox, "-t", "wav", "-", "-t", "raw", "-r", str(SAMPLE_RATE), "-c", "1",
                           "-b", "16", "-e", "signed-integer", "-"],
                          input=wav, capture_output=True, check=True, timeout=30).stdout


def pcm_duration_ms(pcm: bytes) -> int:
    return len(pcm) * 1000 // (SAMPLE_RATE * 2)
