"""``survey``: the satisfaction question of a survey call (回访), once the citizen answers.

Dialplan: ``hotline-survey`` (reached only by the controller's Originate; the
channel's uniqueid is the attempt id). The script

1. tells the survey service the citizen answered (a channel that is no survey
   call under way is left alone: the dialplan hangs up);
2. asks ``survey.question_prompt`` through :func:`ivr.listen.ask` -- keys with
   barge-in, and the choices' words when speech is on, as in the menus;
3. on no answer or a key/word that is no choice, plays ``invalid_prompt`` and
   asks once more;
4. stores the outcome (an answer, no choice, or hung up before choosing -- an AGI
   error during the question) *before*
   thanking, so a citizen who hangs up during the thanks keeps their answer.
"""

from __future__ import annotations

from typing import Any

from agi_scripts import ROUTES
from hotline.app import App
from ivr.agi import AgiError
from ivr.listen import Heard, ask
from workorders import survey_names as sn
from workorders.survey import Outcome, choose

TURNS = 2  # the question, and once more after no answer or a wrong one


async def _ask(ch: Any, app: App, turn: int, heard: list[Heard]) -> tuple[str | None, str]:
    """One turn: the result chosen ("" for a key or words that are no choice, None for
    nothing) and how it came (key or speech)."""
    sv = app.config.survey
    words = list(dict.fromkeys(w for c in sv.choices.values() for w in c.words))
    if turn:  # heard to its end: a key pressed late for the first question is not taken
        await ch.stream_file(app.prompt(sv.invalid_prompt), "",
                             max_wait=app.prompt_wait(sv.invalid_prompt))
    answer = await ask(ch, app, sv.question_prompt, words, sv.answer_wait, trace=heard)
    if answer.empty:
        return None, ""
    return choose(sv.choices, answer) or "", "key" if answer.digit else "speech"


@ROUTES.register(sn.SCRIPT_SURVEY)
async def survey(ch: Any, app: App) -> None:
    svc = app.surveys
    attempt = ch.uniqueid
    job = svc.answered(attempt) if svc is not None else None
    if job is None:
        ch.log.warning("no survey call under way with id %s; hanging up", attempt)
        return
    ch.log.info("survey %s of order %s: the citizen answered", job.id, job.order_ref)
    heard: list[Heard] = []
    tried: list[str] = []
    result: str | None = None
    via = ""
    try:
        for turn in range(TURNS):
            got, via = await _ask(ch, app, turn, heard)
            if got:
                result = got
                break
            tried.append("nothing" if got is None else "no choice")
    except AgiError as e:
        # Hung up during a prompt: Asterisk answers STREAM FILE with result=-1
        # (AgiCommandError) before the HANGUP line arrives (ChannelHungUp).
        svc.finish(attempt, Outcome.HUNG_UP, detail=f"hung up before choosing ({e})")
        await svc.saved()  # written (off the event loop) before the session ends
        raise
    if result is None:
        svc.finish(attempt, Outcome.NO_CHOICE, detail=", then ".join(tried))
        await svc.saved()
        ch.log.info("survey %s: no choice (%s)", job.id, ", ".join(tried))
        return
    svc.finish(attempt, Outcome.ANSWERED, result=result, detail=f"by {via}")
    await svc.saved()
    ch.log.info("survey %s of order %s: %s", job.id, job.order_ref, result)
    thanks = app.config.survey.thanks_prompt
    await ch.stream_file(app.prompt(thanks), "", max_wait=app.prompt_wait(thanks))
