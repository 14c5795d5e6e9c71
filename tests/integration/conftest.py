from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from hotline.runtime import AsteriskRoot, SetupError
from tests.conftest import need, need_tool

from .harness import Hotline


@pytest.fixture(scope="session")
def asterisk_root() -> AsteriskRoot:
    try:
        return AsteriskRoot.locate()
    except SetupError as e:
        need(f"the Asterisk root ({e})", False, "make root")
        raise


@pytest.fixture(scope="session")
def tools() -> None:
    need_tool("sipp")
    need_tool("redis-server")


@pytest.fixture(scope="module")
def hotline(asterisk_root: AsteriskRoot, tools: None, tmp_path_factory: pytest.TempPathFactory,
            request: pytest.FixtureRequest) -> Iterator[Hotline]:
    """One real hotline (Asterisk + Redis + controller) shared by a test module.

    A module may define ``hotline_config()`` returning the config dict to run; one
    that takes an argument gets the pytest request (to ask for fixtures such as
    ``pg_url``).
    """
    make = getattr(request.module, "hotline_config", None)
    cfg = None
    if make is not None:
        cfg = make(request) if inspect.signature(make).parameters else make()
    h = Hotline(tmp_path_factory.mktemp("hotline"), cfg)
    h.start()
    try:
        yield h
    finally:
        leaked = h.wait_no_channels(5) if h.asterisk.proc and h.asterisk.proc.poll() is None else 0
        h.stop()
        assert leaked == 0, f"{leaked} channel(s) left in Asterisk after the module"


@pytest.fixture
def clean(hotline: Hotline) -> Iterator[Hotline]:
    """Per test: the shared hotline with no call left over, checked before and after."""
    assert hotline.wait_no_channels(10) == 0, hotline.cli("core show channels")
    if hotline.controller is None or hotline.controller.poll() is not None:
        hotline.start_controller()
    # Every softphone seat starts logged out (dynamic queue members outlive a test).
    for seat, s in hotline.cfg["seats"].items():
        if s.get("kind", "softphone") == "softphone":
            status, body = hotline.api("POST", f"/seats/{seat}/logout", "admin")
            assert status == 200, body
    yield hotline
    assert hotline.wait_no_channels(10) == 0, hotline.cli("core show channels")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
