"""Mandarin numbers for Asterisk's own queue announcements (pure: names in, text out).

app_queue announces a waiting caller's position and the expected wait with
``ast_say_number()`` ("您现在排在第" *3* "位", "预计等待时间约" *2* "分钟"). The
built-in say.c code asks for ``digits/N`` files under the shared sounds folder
of the Asterisk root (``/usr/share/asterisk/sounds/<language>/digits/``), which
holds the English core sounds only and which no instance may change. Asterisk
has a second implementation for exactly this case: with ``say.conf``
``[general] mode = new``, app_playback replaces ``ast_say_number`` by rules
read from ``say.conf`` (apps/app_playback.c ``do_say()``), per language
section, whose right-hand sides are file names -- absolute paths work. So the
hotline writes a ``[zh]`` section whose rules play the release's own prompts
``num-0`` … ``num-9``, ``num-10`` (十), ``num-100`` (百) and ``num-1000`` (千),
and the queue step sets ``CHANNEL(language)=zh`` on the caller. Verified on
Asterisk 22: the verbose log shows ``Playing '/srv/hotline/…/sounds/num-2.slin'
(language 'zh')`` between ``queue-thereare`` and ``queue-callswaiting``.

Rules (first match wins, in file order, ``ast_extension_match`` patterns:
``X`` 0-9, ``Z`` 1-9, ``N`` 2-9; ``[n]um`` because a bare ``n`` is the pattern
character N) cover 0-9999 with the Mandarin reading: 十 alone for 10-19
(十五), 一十 inside larger numbers (一百一十), one 零 for a run of zeros
before a digit (一千零五), nothing for trailing zeros (三百). Larger numbers
have no rule and are not said (do_say returns 0): positions and minutes of
wait never get there.

``mode = new`` is global: every ``ast_say_number`` of every channel goes
through these rules. Nothing else in the hotline says numbers; a channel in
another language finds no rule and hears nothing instead of English.
"""

from __future__ import annotations

from itertools import product

# The digits and units, as prompt names (their Mandarin text is under prompts:).
NUMBER_PROMPTS: tuple[str, ...] = (
    *(f"num-{d}" for d in range(10)),
    "num-10",
    "num-100",
    "num-1000",
)
_UNITS = {
    4: ("num-1000", "num-100", "num-10", None),
    3: ("num-100", "num-10", None),
    2: ("num-10", None),
    1: (None,),
}

# queues.conf sound option -> prompt name (queues.conf.sample, "Use these sound files ...").
# queue-seconds is never played: announce-round-seconds stays 0 (whole minutes only).
QUEUE_SOUNDS: dict[str, str] = {
    "queue-youarenext": "queue-youarenext",  # 下一位就轮到您了
    "queue-thereare": "queue-thereare",  # 您现在排在第
    "queue-callswaiting": "queue-callswaiting",  # 位
    "queue-holdtime": "queue-holdtime",  # 预计等待时间约
    "queue-minute": "queue-minutes",  # 分钟 (Mandarin has no plural)
    "queue-minutes": "queue-minutes",
}
# Sounds switched off (an empty value): app_queue plays announcements inside its wait
# loop, so a free agent waits for the end of one; "thank you for your patience" after
# every announcement only makes that longer.
QUEUE_SOUNDS_OFF: tuple[str, ...] = ("queue-thankyou",)
ANNOUNCEMENT_PROMPTS: tuple[str, ...] = (*dict.fromkeys(QUEUE_SOUNDS.values()), *NUMBER_PROMPTS)


def _reading(shape: str) -> list[str]:
    """What to play for a number of this zero/non-zero ``shape`` ("Z0Z": 1-9, 0, 1-9).

    Items are a unit prompt name or ``"d<i>"`` (the i-th digit of the number).
    """
    units = _UNITS[len(shape)]
    out: list[str] = []
    zero_pending = False
    for i, (kind, unit) in enumerate(zip(shape, units, strict=True)):
        if kind == "0":
            zero_pending = bool(out)
            continue
        if zero_pending:
            out.append("num-0")
            zero_pending = False
        # 十五, not 一十五, when the number starts with the ten.
        if not (len(shape) == 2 and i == 0 and kind == "1"):
            out.append(f"d{i}")
        if unit:
            out.append(unit)
    return out


def number_rules() -> list[tuple[str, list[str]]]:
    """``(pattern, reading)`` for 0-9999 in match order; see :func:`_reading`."""
    rules: list[tuple[str, list[str]]] = [("X", ["d0"])]
    rules.append(("10", ["num-10"]))
    rules.append(("1Z", ["num-10", "d1"]))
    rules.append(("N0", ["d0", "num-10"]))
    rules.append(("NZ", ["d0", "num-10", "d1"]))
    for length in (3, 4):
        for rest in product("0Z", repeat=length - 1):
            shape = "Z" + "".join(rest)
            rules.append((shape, _reading(shape)))
    return rules


def say_conf(sound_dir: str) -> str:
    """``say.conf`` that reads numbers in Mandarin from ``sound_dir/num-*``."""
    lines = [
        "",
        "[general]",
        "mode = new",
        "",
        "[zh]",
        "; numbers 0-9999 read in Mandarin from the release's num-* prompts (dialplan/say.py)",
    ]
    for pattern, reading in number_rules():
        files = []
        for item in reading:
            if item.startswith("d"):
                files.append(f"{sound_dir}/num-${{SAY:{item[1:]}:1}}")
            else:
                files.append(f"{sound_dir}/{item}")
        lines.append(f"_[n]um:{pattern} => {', '.join(files)}")
    return "\n".join(lines) + "\n"
