"""Put a config live: build a release folder, swap it in atomically, reload, verify.

A *release* is ``releases/<time>-<version>/`` inside the instance, holding
``asterisk/*.conf``, ``sounds/*`` (the prompts the config plays) and a copy of
the YAML it came from. ``current`` is a symlink to the live release;
Asterisk's ``astetcdir`` points through it. Swapping is one ``rename(2)`` of a
fresh symlink over ``current``, so Asterisk never reads a half-written folder.

After the swap the controller reloads PJSIP, queues and the dialplan over AMI
and checks that Asterisk really took the new release: the dialplan global
``HOTLINE_CONFIG_VERSION`` equals the new version, every endpoint and queue of
the config exists. If any check fails the previous release is swapped back and
reloaded, and the error says why. Reloading never hangs up a call: channels
keep the dialplan priority and bridge they are in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hotline.ami import AmiActionError
from hotline.runtime import Instance

from .compile import Target, compile_asterisk_conf, compile_config, config_version
from .model import Config
from .validate import find_prompt, load_config_text, referenced_prompts

log = logging.getLogger(__name__)

KEEP_RELEASES = 5
RELOADS = ("res_pjsip.so", "app_queue.so", "pbx_config.so", "res_musiconhold.so")


class ApplyError(Exception):
    """Asterisk did not take the new config; the running one was kept."""


class Ami(Protocol):  # the part of hotline.ami.AmiClient this module needs
    async def action(self, name: str, **fields: Any) -> Any: ...
    async def action_list(self, name: str, **fields: Any) -> list[Any]: ...


@dataclass(frozen=True)
class Release:
    path: Path
    version: str
    config: Config


CONTROLLER_USER = "hotline"
ADMIN_USER = "hotline-admin"


def ami_secret(instance: Instance, user: str = CONTROLLER_USER) -> str:
    """An AMI user's secret, generated on first use and kept host-side (0600).

    Two users: ``hotline`` for the long-running controller (calls, queues, no
    reload, no CLI) and ``hotline-admin`` for `hotline apply` (reload and
    checks), so the process that handles callers cannot reconfigure Asterisk.
    """
    p = instance.state / ("ami-secret" if user == CONTROLLER_USER else f"ami-secret-{user}")
    if not p.exists():
        instance.state.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(24))
    return p.read_text().strip()


def target_for(instance: Instance, source: str) -> Target:
    return Target(
        instance=instance.inner,
        modules_dir=instance.root.modules_dir(),
        ami_secret=ami_secret(instance),
        ami_admin_secret=ami_secret(instance, ADMIN_USER),
        source=source,
    )


def build_release(
    instance: Instance, yaml_text: str, source: str, prompt_dirs: Iterable[Path]
) -> Release:
    """Validate and compile into a new release folder (not yet live)."""
    dirs = list(prompt_dirs)
    cfg = load_config_text(yaml_text, source, dirs)
    version = config_version(yaml_text)
    target = target_for(instance, source)
    files = compile_config(cfg, target, version)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    rel = instance.releases / f"{stamp}-{version}"
    tmp = rel.with_name(rel.name + ".tmp")
    uid, gid = instance.root.user_ids()
    (tmp / "asterisk").mkdir(parents=True)
    (tmp / "sounds").mkdir()
    for name, body in files.items():
        (tmp / "asterisk" / name).write_text(body, encoding="utf-8")
    for name in referenced_prompts(cfg):
        src = find_prompt(name, dirs)
        if src is not None:
            shutil.copyfile(src, tmp / "sounds" / src.name)
    (tmp / "hotline.yaml").write_text(yaml_text, encoding="utf-8")
    # Readable by Asterisk's group only: manager.conf and pjsip.conf hold secrets.
    for p in [tmp, *tmp.rglob("*")]:
        os.chown(p, 0, gid)
        p.chmod(0o750 if p.is_dir() else 0o640)
    tmp.rename(rel)
    # asterisk.conf is read only at start; its content never changes for an instance.
    conf = instance.host("asterisk.conf")
    if not conf.exists():
        conf.write_text(compile_asterisk_conf(cfg, target, version), encoding="utf-8")
        conf.chmod(0o644)
    del uid
    return Release(rel, version, cfg)


def live_release(instance: Instance) -> Path | None:
    cur = instance.current
    return cur.resolve() if cur.is_symlink() else None


def activate(instance: Instance, release: Path) -> Path | None:
    """Point ``current`` at ``release`` atomically; return the previous target."""
    previous = live_release(instance)
    tmp = instance.host("current.swap")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(Path("releases") / release.name)
    tmp.rename(instance.current)
    return previous


def prune_releases(instance: Instance, keep: int = KEEP_RELEASES) -> None:
    live = live_release(instance)
    rels = sorted(p for p in instance.releases.iterdir() if p.is_dir())
    for p in rels[:-keep]:
        if p.resolve() != live:  # live is resolved: compare like with like
            shutil.rmtree(p, ignore_errors=True)


class LogWatch:
    """Lines Asterisk logged since a mark: a reload that logs ERROR was refused in part.

    Asterisk keeps the old object when it rejects one (a PJSIP endpoint with a bad
    option stays as it was), so presence checks alone cannot see a refusal; the
    ERROR lines it writes while loading can.
    """

    def __init__(self, path: Path | None):
        self.path = path
        self.offset = path.stat().st_size if path is not None and path.exists() else 0

    def errors(self) -> list[str]:
        if self.path is None or not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            new = f.read().decode("utf-8", "replace")
        return [line.split("] ", 1)[-1] for line in new.splitlines() if " ERROR[" in line]


async def reload_and_verify(
    ami: Ami, release: Release, timeout: float = 10.0, log_file: Path | None = None
) -> None:
    watch = LogWatch(log_file)
    for module in RELOADS:
        try:  # AmiClient.action raises on Response: Error
            resp = await ami.action("Reload", Module=module)
        except AmiActionError as e:
            raise ApplyError(f"Asterisk refused to reload {module}: {e.message}") from e
        if _get(resp, "Response") != "Success":
            raise ApplyError(f"Asterisk refused to reload {module}: {_get(resp, 'Message')}")
    await verify(ami, release, timeout)
    if errors := watch.errors():
        raise ApplyError("Asterisk reported errors loading the new config: " + " | ".join(errors[:5]))


async def verify(ami: Ami, release: Release, timeout: float = 10.0) -> None:
    """Check Asterisk runs ``release``; retry briefly (reloads finish asynchronously)."""
    problems: list[str] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        problems = await _differences(ami, release)
        if not problems or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    if problems:
        raise ApplyError("Asterisk did not take the new config: " + "; ".join(problems))


async def _differences(ami: Ami, release: Release) -> list[str]:
    cfg = release.config
    problems = []
    v = await ami.action("Getvar", Variable="HOTLINE_CONFIG_VERSION")
    if _get(v, "Value") != release.version:
        problems.append(f"dialplan runs version {_get(v, 'Value')!r}, expected {release.version!r}")
    endpoints = {_get(m, "ObjectName") for m in await ami.action_list("PJSIPShowEndpoints")}
    want = set(cfg.trunks) | set(cfg.softphone_seats())
    if missing := sorted(want - endpoints):
        problems.append("PJSIP endpoints missing: " + ", ".join(missing))
    queues = {_get(m, "Queue") for m in await ami.action_list("QueueSummary")}
    if missing := sorted(set(cfg.queues) - queues):
        problems.append("queues missing: " + ", ".join(missing))
    return problems


def _get(msg: Any, key: str) -> str | None:
    if msg is None:
        return None
    get = getattr(msg, "get", None)
    return get(key) if get else None


async def apply_release(instance: Instance, ami: Ami, release: Release) -> None:
    """Swap ``release`` in and reload; on any failure put the previous one back."""
    log_file = instance.host("log", "messages.log")
    previous = activate(instance, release.path)
    try:
        await reload_and_verify(ami, release, log_file=log_file)
    except Exception as e:
        if previous is None:
            raise
        log.error("apply of %s failed (%s); restoring %s", release.path.name, e, previous.name)
        activate(instance, previous)
        try:
            prev_cfg = load_config_text(
                (previous / "hotline.yaml").read_text(encoding="utf-8"), str(previous), [previous / "sounds"]
            )
        except Exception as e2:  # noqa: BLE001 - report both failures together
            raise ApplyError(f"{e}; and the previous release no longer loads: {e2}") from e
        prev = Release(previous, previous.name.rsplit("-", 1)[-1], prev_cfg)
        try:
            await reload_and_verify(ami, prev, log_file=log_file)
        except Exception as e2:  # noqa: BLE001 - report both failures together
            raise ApplyError(f"{e}; and restoring the previous config also failed: {e2}") from e
        if isinstance(e, ApplyError):
            raise
        raise ApplyError(str(e)) from e
    prune_releases(instance)
