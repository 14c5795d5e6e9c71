"""The menu engine: what a caller's answer means, free of I/O.

A menu (``menus:`` in the YAML) is a prompt, choices and a retry rule. The
engine is a small state machine: :meth:`MenuEngine.answer` takes what the caller
did (a key, recognised words, or nothing) and returns a :class:`Step` for the
driver (``agi_scripts.ivr``) to carry out on the channel. The rules, in order:

1. an operator key (``0``) or word (人工) reaches a person from any menu;
2. an emergency word (着火, 救命 ...) offers that emergency line at once;
3. the menu's own choices, by key or by keyword found in the recognised text;
4. anything else, or silence, is a retry with the retry prompt; after the
   menu's last retry the caller goes to ``after_retries``, which the config
   validation guarantees is a person, never a hang-up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

from dialplan.model import Action, Choice, Config, Menu

from .locality import Locality, local_queue


@dataclass(frozen=True)
class Answer:
    digit: str | None = None
    text: str | None = None
    confidence: float | None = None

    @property
    def empty(self) -> bool:
        return not self.digit and not self.text


NOTHING = Answer()


@dataclass(frozen=True)
class Step:
    """What the driver does next.

    ``prompt``: play it (barge-in allowed) and wait for an answer in this menu.
    ``route``: leave the IVR to a dialplan route (queue, legacy, emergency, hangup).
    ``say_then_route``: play ``prompt`` without barge-in, then leave.
    """

    kind: Literal["prompt", "route"]
    prompt: str | None = None
    route: str | None = None
    target: str | None = None
    reason: str = ""


@dataclass
class PathEntry:
    menu: str
    answer: str
    via: str  # key, speech, timeout
    decision: str
    confidence: float | None = None
    at_ms: int = 0
    category: str | None = None  # the choice's category (work orders), when it has one


@dataclass
class MenuEngine:
    cfg: Config
    menu_id: str
    locality: Locality = field(default_factory=Locality)
    retries: int = 0
    path: list[PathEntry] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    @property
    def menu(self) -> Menu:
        return self.cfg.menus[self.menu_id]

    def enter(self) -> Step:
        return Step("prompt", prompt=self.menu.prompt, reason=f"menu {self.menu_id}")

    def _log(self, answer: Answer, decision: str) -> None:
        via = "key" if answer.digit else "speech" if answer.text else "timeout"
        self.path.append(
            PathEntry(
                menu=self.menu_id,
                answer=answer.digit or answer.text or "",
                via=via,
                decision=decision,
                confidence=answer.confidence,
                at_ms=int((time.monotonic() - self.started) * 1000),
            )
        )

    def answer(self, answer: Answer) -> Step:
        h = self.cfg.hotline
        if answer.digit and answer.digit in h.operator_keys:
            return self._act(answer, Action("operator"))
        if answer.text:
            if any(w in answer.text for w in h.operator_words):
                return self._act(answer, Action("operator"))
            for line, words in h.emergency_words.items():
                if any(w in answer.text for w in words):
                    return self._act(answer, Action("emergency", line))
        for ch in self.menu.choices:
            if answer.digit and ch.key == answer.digit:
                return self._choose(answer, ch)
        if answer.text:
            for ch in self.menu.choices:
                if any(w in answer.text for w in ch.words):
                    return self._choose(answer, ch)
        return self._retry(answer)

    def _choose(self, answer: Answer, choice: Choice) -> Step:
        if choice.city is not None:
            self.locality = Locality(choice.city, choice.county, "menu")
        step = self._act(answer, choice.parsed)
        if choice.category is not None:
            self.path[-1].category = choice.category
        return step

    def _retry(self, answer: Answer) -> Step:
        self.retries += 1
        if self.retries > self.menu.retries:
            self._log(answer, f"fallback {self.menu.after_retries}")
            return self.resolve(self.menu.fallback)
        self._log(answer, "retry")
        return Step("prompt", prompt=self.menu.retry_prompt, reason="retry")

    def _act(self, answer: Answer, action: Action) -> Step:
        self._log(answer, str(action))
        if action.kind == "menu":
            self.menu_id = action.target
            self.retries = 0
            return self.enter()
        if action.kind == "play":
            # Play the information, then the same menu again.
            return Step("prompt", prompt=action.target, reason="play")
        return self.resolve(action)

    def resolve(self, action: Action) -> Step:
        if action.kind == "operator":
            return Step("route", route="queue", target=local_queue(self.cfg, self.locality),
                        reason=action.kind)
        if action.kind == "callback":
            # A call-back from the local queue (local first), booked by the ivr script
            # (agi_scripts.callback_booking); if none is booked the caller waits there.
            return Step("route", route="callback", target=local_queue(self.cfg, self.locality),
                        reason=action.kind)
        if action.kind == "hangup":
            return Step("route", prompt=action.target, route="hangup", reason="hangup")
        return Step("route", route=action.kind, target=action.target, reason=action.kind)

    def after_play(self) -> Step:
        """After an information prompt (play:X) the menu prompt comes again."""
        return self.enter()
