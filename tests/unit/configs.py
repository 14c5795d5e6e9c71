"""Helpers for the unit tests that load variants of the sample config."""

from __future__ import annotations

from dialplan.loader import ConfigError
from dialplan.validate import load_config_text


def issues(text: str) -> list[str]:
    """What validating ``text`` (as ``hotline.yaml``) reports, one line per issue; [] if valid."""
    try:
        load_config_text(text, "hotline.yaml")
    except ConfigError as e:
        return [str(i) for i in e.issues]
    return []
