"""dialplan.apply without Asterisk: releases, the atomic swap, and apply/rollback.

An :class:`Instance` is built on a tmp folder that looks just enough like the
Asterisk root (``etc/passwd`` with an ``asterisk`` user, a modules folder).
Asterisk itself is replaced by :class:`FakeAsterisk`: it answers the AMI
actions ``apply`` sends from the files of the release that ``current`` points
to when it is told to reload, the way Asterisk reads them, and it fails the
test on any action or field it does not know.
"""

from __future__ import annotations

import os
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dialplan import apply as ap
from dialplan.apply import (
    ApplyError,
    LogWatch,
    Release,
    activate,
    apply_release,
    build_release,
    live_release,
    prune_releases,
    reload_and_verify,
    verify,
)
from dialplan.validate import load_config_text, referenced_prompts
from hotline.ami import AmiActionError
from hotline.amiproto import AmiMessage
from hotline.runtime import AsteriskRoot, Instance

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "hotline.yaml"
SAMPLE_TEXT = SAMPLE.read_text(encoding="utf-8")
# The second config: one queue more, so a rollback can be told from the new one.
EXTRA_QUEUE = "  social: {name: 人社专席"
assert SAMPLE_TEXT.count(EXTRA_QUEUE) == 1, "the sample changed: update EXTRA_QUEUE"
SECOND_TEXT = SAMPLE_TEXT.replace(
    EXTRA_QUEUE, '  spare: {name: 备用, centre: province, members: ["1001"]}\n' + EXTRA_QUEUE
)


# ------------------------------------------------------------------ instance


def make_instance(base: Path) -> Instance:
    root = base / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/bash\nasterisk:x:{os.getuid()}:{os.getgid()}::/:/bin/false\n"
    )
    (root / "usr/lib/x86_64-linux-gnu/asterisk/modules").mkdir(parents=True)
    inst = Instance(AsteriskRoot(root), "test")
    inst.prepare()
    return inst


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    return make_instance(tmp_path)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prompt folder with a (silent, empty) file for every prompt the sample plays."""
    d = tmp_path_factory.mktemp("prompts")
    for name in referenced_prompts(load_config_text(SAMPLE_TEXT, "hotline.yaml")):
        (d / f"{name}.wav").write_bytes(b"")
    return d


def build(instance: Instance, prompts: Path, text: str = SAMPLE_TEXT) -> Release:
    return build_release(instance, text, "config/hotline.yaml", [prompts])


async def live_and_next(instance: Instance, prompts: Path, ami: ap.Ami) -> tuple[Release, Release]:
    """The sample applied and live, and the second config built beside it."""
    first = build(instance, prompts)
    await apply_release(instance, ami, first)
    return first, build(instance, prompts, SECOND_TEXT)


# ------------------------------------------------------------------ fake Asterisk


def ok(**headers: str) -> AmiMessage:
    return AmiMessage([("Response", "Success"), *headers.items()])


def event(name: str, **headers: str) -> AmiMessage:
    return AmiMessage([("Event", name), *headers.items()])


def sections_of(conf: str) -> list[tuple[str, str | None]]:
    """(name, type) of each section of a generated file, in order."""
    out: list[tuple[str, str | None]] = []
    for line in conf.splitlines():
        if m := re.match(r"^\[([^\]]+)\]", line):
            out.append((m[1], None))
        elif out and (m := re.match(r"^type = (\w+)$", line)):
            out[-1] = (out[-1][0], m[1])
    return out


class FakeAsterisk:
    """The AMI actions ``dialplan.apply`` uses, answered from the live release's files.

    ``Reload`` of a module re-reads that module's file through ``current``,
    unless the release's version is in ``stuck`` (Asterisk kept the old
    dialplan) or ``refuse`` names the module (Response: Error, which the real
    ``AmiClient.action`` raises as :class:`AmiActionError`). ``log_errors``
    are appended to messages.log on each reload, as Asterisk logs a rejected
    object. Anything else is an unexpected action: recorded and raised.
    """

    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        self.version = ""
        self.endpoints: set[str] = set()
        self.queues: set[str] = set()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.unexpected: list[str] = []
        self.stuck: set[str] = set()
        self.refuse: set[str] = set()
        self.log_errors: list[str] = []
        self.lag = 0  # Getvar answers with the old version this many more times

    def _file(self, name: str) -> str:
        return (self.instance.current / "asterisk" / name).read_text(encoding="utf-8")

    def _fail(self, what: str) -> None:
        self.unexpected.append(what)
        raise AssertionError(f"FakeAsterisk: unexpected {what}")

    def reloads(self) -> list[str]:
        return [f["Module"] for n, f in self.calls if n == "Reload"]

    async def action(self, name: str, **fields: Any) -> AmiMessage:
        self.calls.append((name, fields))
        if name == "Reload":
            if set(fields) != {"Module"} or fields["Module"] not in ap.RELOADS:
                self._fail(f"Reload {fields}")
            return self._reload(fields["Module"])
        if name == "Getvar":
            if fields != {"Variable": "HOTLINE_CONFIG_VERSION"}:
                self._fail(f"Getvar {fields}")
            if self.lag:
                self.lag -= 1
                return ok(Variable="HOTLINE_CONFIG_VERSION", Value="")
            return ok(Variable="HOTLINE_CONFIG_VERSION", Value=self.version)
        self._fail(f"action {name} {fields}")
        raise AssertionError("unreachable")

    async def action_list(self, name: str, **fields: Any) -> list[AmiMessage]:
        self.calls.append((name, fields))
        if fields:
            self._fail(f"{name} {fields}")
        if name == "PJSIPShowEndpoints":
            return [event("EndpointList", ObjectName=e) for e in sorted(self.endpoints)]
        if name == "QueueSummary":
            return [event("QueueSummary", Queue=q) for q in sorted(self.queues)]
        self._fail(f"action_list {name}")
        raise AssertionError("unreachable")

    def _reload(self, module: str) -> AmiMessage:
        if module in self.refuse:
            refused = AmiMessage(
                [("Response", "Error"), ("Message", "Module could not be reloaded")]
            )
            raise AmiActionError("Reload", refused)  # what AmiClient.action does with it
        if self.log_errors:
            with self.instance.host("log", "messages.log").open("a") as f:
                for e in self.log_errors:
                    f.write(f"[2026-01-01 10:00:00.000] ERROR[4242] config_options.c: {e}\n")
        release = self.instance.current.resolve()
        if release.name.rsplit("-", 1)[-1] in self.stuck:
            return ok(Message="Module Reloaded")
        if module == "pbx_config.so":
            m = re.search(r"^HOTLINE_CONFIG_VERSION = (\w+)$", self._file("extensions.conf"), re.M)
            assert m
            self.version = m[1]
        elif module == "res_pjsip.so":
            pjsip = sections_of(self._file("pjsip.conf"))
            self.endpoints = {n for n, t in pjsip if t == "endpoint"}
        elif module == "app_queue.so":
            queues = sections_of(self._file("queues.conf"))
            self.queues = {n for n, _ in queues if n != "general"}
        return ok(Message="Module Reloaded")


@pytest.fixture
def fake(instance: Instance) -> Iterator[FakeAsterisk]:
    f = FakeAsterisk(instance)
    yield f
    assert not f.unexpected


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """verify() retries for 10 s by default; here a refused config is judged at once."""
    real = ap.verify

    async def short(ami: ap.Ami, release: Release, _budget: float = 10.0) -> None:
        await real(ami, release, 0.0)

    monkeypatch.setattr(ap, "verify", short)


# ------------------------------------------------------------------ build_release


def test_build_release_writes_a_private_release(instance: Instance, prompts: Path) -> None:
    rel = build(instance, prompts)
    assert rel.path.parent == instance.releases
    assert rel.path.name.endswith("-" + rel.version)
    assert (rel.path / "hotline.yaml").read_text(encoding="utf-8") == SAMPLE_TEXT
    assert (rel.path / "asterisk" / "extensions.conf").is_file()
    assert (rel.path / "sounds" / "welcome.wav").is_file()
    assert not list(instance.releases.glob("*.tmp"))
    st = (rel.path / "asterisk" / "manager.conf").stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o640)  # secrets: group asterisk only
    assert instance.host("asterisk.conf").is_file()
    assert live_release(instance) is None  # built, not live


# ------------------------------------------------------------------ activate


def test_activate_swaps_current_and_returns_the_previous(
    instance: Instance, prompts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = build(instance, prompts), build(instance, prompts, SECOND_TEXT)
    unlinked: list[Path] = []
    real_unlink = Path.unlink

    def spy(self: Path, missing_ok: bool = False) -> None:
        unlinked.append(self)
        real_unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", spy)

    assert activate(instance, first.path) is None
    assert activate(instance, second.path) == first.path.resolve()
    # Relative, so it resolves the same inside the chroot and from the host.
    assert os.readlink(instance.current) == f"releases/{second.path.name}"
    assert live_release(instance) == second.path.resolve()
    # The live link is only ever replaced by rename(2), never removed first.
    assert instance.current not in unlinked
    assert not instance.host("current.swap").exists()
    assert activate(instance, first.path) == second.path.resolve()


def test_activate_replaces_a_stale_swap_link(instance: Instance, prompts: Path) -> None:
    rel = build(instance, prompts)
    instance.host("current.swap").symlink_to("releases/gone")
    assert activate(instance, rel.path) is None
    assert live_release(instance) == rel.path.resolve()
    assert not instance.host("current.swap").is_symlink()


# ------------------------------------------------------------------ prune_releases


def fake_releases(instance: Instance, n: int) -> list[Path]:
    out = []
    for i in range(n):
        p = instance.releases / f"20260101-0000{i:02d}-000000-{i:016x}"
        p.mkdir()
        out.append(p)
    return out


def test_prune_keeps_the_newest(instance: Instance) -> None:
    rels = fake_releases(instance, 8)
    activate(instance, rels[-1])
    prune_releases(instance, keep=3)
    assert sorted(instance.releases.iterdir()) == rels[-3:]


def test_prune_keeps_the_live_one_even_if_old(instance: Instance) -> None:
    rels = fake_releases(instance, 8)
    activate(instance, rels[0])
    prune_releases(instance, keep=3)
    assert sorted(instance.releases.iterdir()) == [rels[0], *rels[-3:]]
    assert live_release(instance) == rels[0].resolve()


def test_prune_keeps_the_live_one_through_a_symlinked_root(tmp_path: Path) -> None:
    """The root named through a symlink (``AsteriskRoot(path)`` is not resolved)."""
    make_instance(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    inst = Instance(AsteriskRoot(tmp_path / "link" / "root"), "test")
    rels = fake_releases(inst, 4)
    activate(inst, rels[0])
    prune_releases(inst, keep=1)
    assert rels[0].is_dir() and live_release(inst) == rels[0].resolve()
    assert sorted(inst.releases.iterdir()) == [rels[0], rels[-1]]


# ------------------------------------------------------------------ LogWatch


def test_logwatch_reports_only_errors_after_the_mark(tmp_path: Path) -> None:
    log = tmp_path / "messages.log"
    log.write_text("[2026-01-01 09:59:59.000] ERROR[1] old.c: before the mark\n")
    watch = LogWatch(log)
    with log.open("a") as f:
        f.write("[2026-01-01 10:00:00.000] WARNING[2] res_pjsip.c: only a warning\n")
        f.write("[2026-01-01 10:00:00.001] ERROR[3] config_options.c: bad option 'x'\n")
        f.write("[2026-01-01 10:00:00.002] NOTICE[4] pbx.c: ERROR in text is no error\n")
    assert watch.errors() == ["ERROR[3] config_options.c: bad option 'x'"]


def test_logwatch_without_a_file(tmp_path: Path) -> None:
    assert LogWatch(None).errors() == []
    later = tmp_path / "later.log"
    watch = LogWatch(later)  # not there yet: everything it gets is new
    later.write_text("[2026-01-01 10:00:00.000] ERROR[1] x.c: first\n")
    assert watch.errors() == ["ERROR[1] x.c: first"]


# ------------------------------------------------------------------ verify


async def test_verify_success(instance: Instance, prompts: Path, fake: FakeAsterisk) -> None:
    rel = build(instance, prompts)
    activate(instance, rel.path)
    for module in ap.RELOADS:
        await fake.action("Reload", Module=module)
    await verify(fake, rel, timeout=1.0)


async def test_verify_waits_for_a_late_reload(
    instance: Instance, prompts: Path, fake: FakeAsterisk
) -> None:
    rel = build(instance, prompts)
    activate(instance, rel.path)
    fake.lag = 1
    await reload_and_verify(fake, rel, timeout=2.0)
    assert [n for n, _ in fake.calls].count("Getvar") == 2


async def test_verify_names_what_is_missing(
    instance: Instance, prompts: Path, fake: FakeAsterisk
) -> None:
    rel = build(instance, prompts)
    activate(instance, rel.path)
    await reload_and_verify(fake, rel)
    fake.endpoints.discard("1001")
    fake.queues.discard("social")
    fake.version = "0000000000000000"
    with pytest.raises(ApplyError) as e:
        await verify(fake, rel, timeout=0.0)
    assert str(e.value) == (
        "Asterisk did not take the new config: "
        f"dialplan runs version '0000000000000000', expected {rel.version!r}; "
        "PJSIP endpoints missing: 1001; queues missing: social"
    )


async def test_reload_refused(instance: Instance, prompts: Path, fake: FakeAsterisk) -> None:
    rel = build(instance, prompts)
    activate(instance, rel.path)
    fake.refuse.add("app_queue.so")
    refused = r"^Asterisk refused to reload app_queue\.so: Module could not be reloaded$"
    with pytest.raises(ApplyError, match=refused):
        await reload_and_verify(fake, rel)


async def test_reload_that_logs_errors_fails(
    instance: Instance, prompts: Path, fake: FakeAsterisk
) -> None:
    rel = build(instance, prompts)
    activate(instance, rel.path)
    log = instance.host("log", "messages.log")
    log.write_text("[2026-01-01 09:00:00.000] ERROR[1] old.c: from yesterday\n")
    fake.log_errors = ["Error parsing 'allow' on endpoint '1001'"]
    with pytest.raises(ApplyError) as e:
        await reload_and_verify(fake, rel, log_file=log)
    assert "from yesterday" not in str(e.value)
    assert str(e.value).startswith("Asterisk reported errors loading the new config: ERROR[4242]")


# ------------------------------------------------------------------ apply_release


async def test_apply_release_success(instance: Instance, prompts: Path, fake: FakeAsterisk) -> None:
    first, second = await live_and_next(instance, prompts, fake)
    fake.calls.clear()
    await apply_release(instance, fake, second)
    assert live_release(instance) == second.path.resolve()
    assert fake.version == second.version
    assert "spare" in fake.queues
    assert fake.reloads() == list(ap.RELOADS)


async def test_version_mismatch_rolls_back(
    instance: Instance, prompts: Path, fake: FakeAsterisk, quick: None
) -> None:
    first, second = await live_and_next(instance, prompts, fake)
    fake.stuck.add(second.version)  # Asterisk keeps running the first dialplan
    fake.calls.clear()
    with pytest.raises(ApplyError) as e:
        await apply_release(instance, fake, second)
    assert f"expected {second.version!r}" in str(e.value)
    assert "queues missing: spare" in str(e.value)
    # current points back, and the previous release was reloaded and verified
    assert os.readlink(instance.current) == f"releases/{first.path.name}"
    assert fake.version == first.version
    assert "spare" not in fake.queues
    assert fake.reloads() == [*ap.RELOADS, *ap.RELOADS]
    assert second.path.is_dir()  # kept for a look at what was refused


async def test_first_apply_failure_has_nothing_to_roll_back_to(
    instance: Instance, prompts: Path, fake: FakeAsterisk, quick: None
) -> None:
    rel = build(instance, prompts)
    fake.stuck.add(rel.version)
    with pytest.raises(ApplyError, match="did not take the new config"):
        await apply_release(instance, fake, rel)
    assert live_release(instance) == rel.path.resolve()


async def test_rollback_that_fails_too_says_both(
    instance: Instance, prompts: Path, fake: FakeAsterisk, quick: None
) -> None:
    first, second = await live_and_next(instance, prompts, fake)
    fake.refuse.add("res_pjsip.so")
    with pytest.raises(ApplyError) as e:
        await apply_release(instance, fake, second)
    assert str(e.value) == (
        "Asterisk refused to reload res_pjsip.so: Module could not be reloaded; and restoring "
        "the previous config also failed: Asterisk refused to reload res_pjsip.so: Module "
        "could not be reloaded"
    )
    assert live_release(instance) == first.path.resolve()


async def test_apply_prunes_old_releases(
    instance: Instance, prompts: Path, fake: FakeAsterisk
) -> None:
    rels = fake_releases(instance, ap.KEEP_RELEASES + 2)
    rel = build(instance, prompts)
    await apply_release(instance, fake, rel)
    left = sorted(instance.releases.iterdir())
    assert len(left) == ap.KEEP_RELEASES and rel.path in left and rels[0] not in left


async def test_fake_fails_loudly(instance: Instance) -> None:
    f = FakeAsterisk(instance)
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: f.action("Command", Command="core reload"),
        lambda: f.action("Reload", Module="chan_sip.so"),
        lambda: f.action("Getvar", Variable="HOTLINE_CONFIG_VERSION", Channel="x"),
        lambda: f.action_list("CoreShowChannels"),
    ]
    for call in calls:
        with pytest.raises(AssertionError, match="FakeAsterisk: unexpected"):
            await call()
    assert len(f.unexpected) == len(calls)
