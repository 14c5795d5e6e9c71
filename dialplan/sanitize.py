"""Text from the YAML made safe for the generated Asterisk files (one rule for all)."""

from __future__ import annotations


def text(value: str, limit: int = 80, *, argument: bool = False) -> str:
    """Free text (names from the YAML) made safe for a config value or comment: no
    control characters, none of ``; \\ " [ ]``; with ``argument``, safe inside a dialplan
    application's argument too (also none of ``( ) , | ^ $``: no second argument, and no
    ``${...}`` expanded on the channel)."""
    banned = ';\\"[](),|^$' if argument else ';\\"[]'
    cleaned = "".join(ch for ch in value if ch.isprintable() and ch not in banned)
    return cleaned[:limit]
