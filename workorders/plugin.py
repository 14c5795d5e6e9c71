"""Wiring of work orders into the controller (no logic here): the store, the
supervision job, the policy read from the live config."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dialplan.model import Config
from queues.hours import working_calendar

from .lifecycle import Policy
from .store import WorkOrderStore
from .supervision import Settings, Supervision


def policy_of(cfg: Config) -> Policy:
    wo = cfg.workorders
    return Policy(
        time_limits=dict(wo.time_limits),
        category_limits={str(k): v for k, v in wo.category_limits.items()},
        default_limit=wo.default_limit,
        units={uid: u.centre for uid, u in cfg.units.items()},
        remind_before=wo.remind_before,
        reopen_on_dissatisfied=wo.reopen_on_dissatisfied,
        working_day=working_calendar(cfg),
    )


def live_policy(cfg_of: Callable[[], Config]) -> Callable[[], Policy]:
    """:func:`policy_of` the live config, built once per config: an apply replaces the
    config object, and only then is the policy (and its calendar) built again."""
    last: tuple[Config, Policy] | None = None

    def policy() -> Policy:
        nonlocal last
        cfg = cfg_of()
        if last is None or last[0] is not cfg:
            last = (cfg, policy_of(cfg))
        return last[1]

    return policy


def settings_of(cfg: Config) -> Settings:
    wo = cfg.workorders
    return Settings(
        every=float(wo.supervise_every),
        notice_url=wo.notice_url,
        units={uid: (u.name, u.notice) for uid, u in cfg.units.items()},
    )


def open_store(cfg_of: Any, state: Any) -> WorkOrderStore:
    """The store of ``storage.url``, or SQLite in the instance ``state`` folder."""
    from queues.agents import centres_under

    kw: dict[str, Any] = {
        "policy": live_policy(cfg_of),
        "centres_under": lambda: centres_under(cfg_of()),
    }
    url = cfg_of().storage.url
    return WorkOrderStore(url, **kw) if url else WorkOrderStore.in_state_dir(state, **kw)


class WorkOrderPlugin:
    """Created with the controller's :class:`hotline.app.App`; sets ``app.orders``."""

    def __init__(self, app: Any) -> None:
        self.store = open_store(lambda: app.config, app.instance.state)
        self.supervision = Supervision(self.store, lambda: settings_of(app.config))
        app.orders = self.store

    async def start(self) -> None:
        self.supervision.start()

    async def close(self) -> None:
        await self.supervision.stop()
        self.store.close()
