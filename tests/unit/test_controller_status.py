"""GET /status needs no login: however many ask, the controller looks at its parts
(AMI CoreShowChannels, Redis PING) at most once per STATUS_TTL."""

from __future__ import annotations

import asyncio
from typing import Any

from hotline import controller as controller_mod
from hotline.controller import Controller


async def test_status_looks_once_per_ttl_however_many_ask(monkeypatch: Any) -> None:
    monkeypatch.setattr(controller_mod, "STATUS_TTL", 0.2)
    c = Controller.__new__(Controller)  # only the status cache, none of the parts
    c._status, c._looking = None, None
    looks = []

    async def look() -> dict[str, Any]:
        looks.append(1)
        await asyncio.sleep(0.01)  # an AMI round trip
        return {"ok": True, "asterisk": {"ok": True, "channels": len(looks)}}

    c._look = look  # type: ignore[method-assign]
    answers = await asyncio.gather(*(c.status() for _ in range(50)))
    assert len(looks) == 1 and all(a == answers[0] for a in answers)
    answers[0]["asterisk"]["channels"] = 99  # a caller's copy: the cache is untouched
    assert (await c.status())["asterisk"]["channels"] == 1
    await asyncio.sleep(0.25)
    assert (await c.status())["asterisk"]["channels"] == 2 and len(looks) == 2


async def test_a_look_slower_than_the_ttl_is_still_shared(monkeypatch: Any) -> None:
    """Asterisk slow to list its channels: the askers wait for the one look in flight,
    never queue a look each."""
    monkeypatch.setattr(controller_mod, "STATUS_TTL", 0.05)
    c = Controller.__new__(Controller)
    c._status, c._looking = None, None
    looks = []

    async def slow() -> dict[str, Any]:
        looks.append(1)
        await asyncio.sleep(0.2)  # four TTLs
        return {"ok": True}

    c._look = slow  # type: ignore[method-assign]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(c.status() for _ in range(5)))
    assert len(looks) == 1 and loop.time() - started < 0.35
    # an asker that gives up does not cancel the look the others wait for
    c._status = None
    first = asyncio.ensure_future(c.status())
    second = asyncio.ensure_future(c.status())
    await asyncio.sleep(0.05)
    first.cancel()
    assert (await second) == {"ok": True} and len(looks) == 2
