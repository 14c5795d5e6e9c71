"""The bench's throw-away hotline: the sample config plus two bench-only numbers.

The numbers are appended to the *release folder's* ``extensions.conf`` after
:func:`dialplan.apply.build_release` and before Asterisk starts; the
production compiler never sees them.  They go in a second ``[from-carrier]``
section: pbx_config adds the extensions of a repeated section header to the
context already defined (``pbx_load_config()`` calls
``ast_context_find_or_create()`` for every ``[name]`` it reads), which
:meth:`BenchHotline.check_bench_numbers` verifies on the running Asterisk.

The numbers have the same call shape: ``Answer()``, a hold of ``Wait()``,
``Hangup()``; the AGI one adds ``AGI(agi://HOST:PORT/bench-welcome)`` after
the answer, served by our FastAGI server, and the reference one (when the
bench asks for it) the same step served by :func:`bench.welcome.minimal_session`
on another port.  See
https://docs.asterisk.org/Asterisk_22_Documentation/API_Documentation/Dialplan_Applications/AGI/
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from dialplan.apply import activate, build_release
from tests.integration.harness import Hotline, test_config

from .welcome import BENCH_WELCOME

BARE_NUMBER: Final = "990001"
AGI_NUMBER: Final = "990002"
REF_NUMBER: Final = "990003"  # the same shape, served by bench.welcome's minimal server
CARRIER: Final = "carrier"
RTP_PORTS: Final = 6000  # two per call (RTP + RTCP): room for ~3000 calls at once


@dataclass(frozen=True)
class BenchNumbers:
    agi_host: str
    agi_port: int
    hold_s: int
    ref_port: int | None = None  # the minimal reference FastAGI server, if any

    def extensions(self) -> str:
        url = f"agi://{self.agi_host}:{self.agi_port}/{BENCH_WELCOME}"
        ref = ""
        if self.ref_port is not None:
            ref_url = f"agi://{self.agi_host}:{self.ref_port}/{BENCH_WELCOME}"
            ref = f"""exten => {REF_NUMBER},1,Answer()
 same => n,AGI({ref_url})
 same => n,Wait({self.hold_s})
 same => n,Hangup()
"""
        return f"""
; ---------------------------------------------------------------------------
; BENCH ONLY: appended by bench/dialplan.py to a throw-away instance.
; A second [from-carrier] header adds these to the context defined above.
[from-carrier]
exten => {BARE_NUMBER},1,Answer()
 same => n,Wait({self.hold_s})
 same => n,Hangup()
exten => {AGI_NUMBER},1,Answer()
 same => n,AGI({url})
 same => n,Wait({self.hold_s})
 same => n,Hangup()
{ref}"""


def bench_config() -> dict[str, Any]:
    """The sample config on free loopback ports, with an RTP range for hundreds of calls."""
    cfg = test_config()
    rtp = cfg["network"]["rtp"]  # the harness picks a start within 40000..59000
    rtp["end"] = rtp["start"] + RTP_PORTS
    return cfg


def append_extensions(release: Path, text: str) -> None:
    conf = release / "asterisk" / "extensions.conf"
    with conf.open("a", encoding="utf-8") as f:
        f.write(text)


class BenchHotline(Hotline):
    """:class:`Hotline` whose release gets the bench numbers before Asterisk starts."""

    def __init__(self, workdir: Path, cfg: dict[str, Any], numbers: BenchNumbers, *,
                 controller: bool = True, transmit_silence: bool = True) -> None:
        super().__init__(workdir, cfg)
        self.numbers = numbers
        self.with_controller = controller
        self.transmit_silence = transmit_silence

    def start(self) -> BenchHotline:
        # Hotline.start(), with the extensions appended between build and activate.
        self.write_config()
        self.instance.prepare()
        self.make_cdr_folder()
        rel = build_release(self.instance, self.config_file.read_text(encoding="utf-8"),
                            str(self.config_file), self.prompt_dirs())
        append_extensions(rel.path, self.numbers.extensions())
        if not self.transmit_silence:
            self.silence_off()
        activate(self.instance, rel.path)
        self.start_redis()
        self.asterisk.start()
        if self.with_controller:
            self.start_controller()
        return self

    def silence_off(self) -> None:
        """Diagnostics only: ``transmit_silence = no`` in this instance's asterisk.conf."""
        conf = self.instance.host("asterisk.conf")
        text = conf.read_text(encoding="utf-8")
        if "transmit_silence = yes" not in text:
            raise RuntimeError(f"{conf} has no 'transmit_silence = yes' line to turn off")
        conf.write_text(text.replace("transmit_silence = yes", "transmit_silence = no"),
                        encoding="utf-8")

    def make_cdr_folder(self) -> None:
        """``log/cdr-csv``: cdr_csv writes there and logs two lines per call when it is missing."""
        uid, gid = self.instance.root.user_ids()
        folder = self.instance.host("log", "cdr-csv")
        folder.mkdir(exist_ok=True)
        os.chown(folder, uid, gid)

    def check_bench_numbers(self) -> None:
        """Asterisk loaded both the sample's and the bench's ``[from-carrier]`` numbers."""
        shown = self.cli("dialplan show from-carrier")
        wanted = [BARE_NUMBER, AGI_NUMBER, "12345"]
        if self.numbers.ref_port is not None:
            wanted.append(REF_NUMBER)
        missing = [n for n in wanted if f"'{n}' =>" not in shown]
        if missing:
            raise RuntimeError(f"[from-carrier] lacks {', '.join(missing)}:\n{shown}")

    @property
    def carrier_ip(self) -> str:
        return str(self.trunk(CARRIER)[0])

    @property
    def asterisk_pid(self) -> int | None:
        proc = self.asterisk.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def controller_pid(self) -> int | None:
        proc = self.controller
        return proc.pid if proc is not None and proc.poll() is None else None
