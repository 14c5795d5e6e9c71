"""AGI scripts, registered by name in one route table.

Each script is a module ``agi_scripts/<name>.py`` that registers its handler::

    from agi_scripts import ROUTES, Abort

    @ROUTES.register("ivr")
    async def ivr(channel: Channel, context: Any) -> None:
        ...

The dialplan reaches it as ``AGI(agi://127.0.0.1:4573/ivr)``: Asterisk sends
the path after the host as ``agi_network_script`` and the FastAGI server
(:mod:`ivr.server`) looks it up here -- one table lookup, as wazo-agid does.
A handler that cannot go on raises :class:`Abort`; the server turns it, in one
place, into a ``Goto`` to the failure context.

This module stays light (no import of the server or of the scripts): call
:func:`load_all` once at start-up to import every script module.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from ivr.server import Channel

__all__ = ["ROUTES", "Abort", "Handler", "RouteTable", "load_all"]

Handler = Callable[["Channel", Any], Awaitable[None]]
H = TypeVar("H", bound=Handler)

# What Asterisk can send as agi_network_script once the server strips "?query".
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*")


class Abort(Exception):
    """Stop the AGI script and send the call to the failure context.

    ``reason`` ends up in the channel variable ``HOTLINE_ABORT_REASON``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RouteTable:
    """AGI script name -> handler; a name can be registered only once."""

    __slots__ = ("_handlers",)

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str) -> Callable[[H], H]:
        """Decorator registering a handler under ``name``.

        Raises :class:`ValueError` for a name that is already registered or
        that could not come from an ``agi://host/NAME`` URL.
        """
        if _NAME.fullmatch(name) is None:
            raise ValueError(f"invalid AGI script name: {name!r}")

        def decorator(handler: H) -> H:
            self.add(name, handler)
            return handler

        return decorator

    def add(self, name: str, handler: Handler) -> None:
        """Register ``handler`` under ``name`` (what :meth:`register` does)."""
        if _NAME.fullmatch(name) is None:
            raise ValueError(f"invalid AGI script name: {name!r}")
        if name in self._handlers:
            raise ValueError(f"AGI script {name!r} is already registered")
        self._handlers[name] = handler

    def lookup(self, name: str) -> Handler | None:
        """The handler registered under ``name``, or ``None``."""
        return self._handlers.get(name)

    def names(self) -> list[str]:
        """Registered script names, sorted."""
        return sorted(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __len__(self) -> int:
        return len(self._handlers)


ROUTES = RouteTable()


def load_all() -> list[str]:
    """Import every script module of this package so that it registers itself.

    Modules whose name starts with ``_`` are skipped.  Returns the imported
    module names, sorted.
    """
    loaded: list[str] = []
    for module in pkgutil.iter_modules(__path__):
        if module.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{module.name}")
        loaded.append(module.name)
    return sorted(loaded)
