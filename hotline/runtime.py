"""Where Asterisk lives on this machine and how one instance of it runs.

Debian 12 has no Asterisk package, so Asterisk 22 runs from a Debian unstable
root built by ``scripts/asterisk-root.sh`` (mmdebstrap) into a cache folder.
Asterisk is started with ``chroot ROOT asterisk -C CONF -f -U asterisk``: it
drops to the root's unprivileged ``asterisk`` user after binding, and it can
only see files inside the root. So each running hotline is an
:class:`Instance`: a folder ``/srv/hotline/NAME`` inside the root holding its
``asterisk.conf``, its config releases, run/log/spool/lib folders and its
recordings. The host sees the same files under ``ROOT/srv/hotline/NAME``.

The root shares the host's network namespace, so SIP, RTP, AMI and FastAGI on
127.0.0.1 connect host and chroot with nothing in between.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    if "HOTLINE_CACHE" in os.environ:
        return Path(os.environ["HOTLINE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hotline"


class SetupError(Exception):
    """The machine lacks something the hotline needs; the message says what to run."""


@dataclass(frozen=True)
class AsteriskRoot:
    path: Path

    @classmethod
    def locate(cls) -> AsteriskRoot:
        p = Path(os.environ.get("HOTLINE_ASTERISK_ROOT") or cache_dir() / "asterisk-root")
        if not (p / "usr/sbin/asterisk").exists():
            raise SetupError(
                f"no Asterisk root at {p}: run `make setup` (or scripts/asterisk-root.sh)"
            )
        return cls(p.resolve())

    def host(self, inner: PurePosixPath | str) -> Path:
        return self.path / str(inner).lstrip("/")

    def modules_dir(self) -> PurePosixPath:
        for cand in sorted((self.path / "usr/lib").glob("*/asterisk/modules")):
            return PurePosixPath("/") / cand.relative_to(self.path)
        return PurePosixPath("/usr/lib/asterisk/modules")

    def user_ids(self, name: str = "asterisk") -> tuple[int, int]:
        for line in (self.path / "etc/passwd").read_text().splitlines():
            parts = line.split(":")
            if parts[0] == name:
                return int(parts[2]), int(parts[3])
        raise SetupError(f"the Asterisk root has no user {name!r}")

    def version(self) -> str:
        out = subprocess.run(
            ["chroot", str(self.path), "/usr/sbin/asterisk", "-V"],
            capture_output=True, text=True, check=True,
        )
        return out.stdout.strip()


class Instance:
    """One Asterisk's folder inside the root: ``/srv/hotline/NAME``."""

    BASE = PurePosixPath("/srv/hotline")

    def __init__(self, root: AsteriskRoot, name: str):
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"instance name {name!r} must be letters, digits, - or _")
        self.root = root
        self.name = name
        self.inner = self.BASE / name

    # Paths as Asterisk sees them (inside the root) ...
    def inner_path(self, *parts: str) -> PurePosixPath:
        return self.inner.joinpath(*parts)

    @property
    def conf_inner(self) -> PurePosixPath:
        return self.inner / "asterisk.conf"

    @property
    def current_inner(self) -> PurePosixPath:
        return self.inner / "current"

    # ... and as the host sees them.
    def host(self, *parts: str) -> Path:
        return self.root.host(self.inner.joinpath(*parts))

    @property
    def current(self) -> Path:
        return self.host("current")

    @property
    def releases(self) -> Path:
        return self.host("releases")

    @property
    def state(self) -> Path:
        """Host-only state (secrets, pid files): not readable by Asterisk's user."""
        return self.host("state")

    WRITABLE = ("run", "log", "log/cdr-csv", "spool", "lib", "recordings")

    def prepare(self) -> None:
        uid, gid = self.root.user_ids()
        self.host().mkdir(parents=True, exist_ok=True)
        for d in self.WRITABLE:
            p = self.host(d)
            p.mkdir(exist_ok=True)
            os.chown(p, uid, gid)
        self.releases.mkdir(exist_ok=True)
        self.state.mkdir(mode=0o700, exist_ok=True)

    def destroy(self) -> None:
        shutil.rmtree(self.host(), ignore_errors=True)

    def chroot_cmd(self, *args: str) -> list[str]:
        return ["chroot", str(self.root.path), "/usr/sbin/asterisk", "-C", str(self.conf_inner), *args]

    def cli(self, command: str, timeout: float = 10.0) -> str:
        """Run one CLI command through the control socket (as root, from the host)."""
        out = subprocess.run(
            self.chroot_cmd("-rx", command), capture_output=True, text=True, timeout=timeout
        )
        if out.returncode != 0:
            raise SetupError(f"asterisk -rx {command!r} failed: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout


class AsteriskProcess:
    """Start, watch and stop one Asterisk for an :class:`Instance`."""

    def __init__(self, instance: Instance, cpus: set[int] | None = None):
        self.instance = instance
        self.cpus = cpus  # run on these CPUs only (``cpus.asterisk``); None: any
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, boot_timeout: float = 30.0) -> None:
        inst = self.instance
        if not inst.host("asterisk.conf").exists():
            raise SetupError(f"{inst.host('asterisk.conf')} missing: compile the config first")
        logf = open(inst.host("log", "stdout.log"), "ab")  # noqa: SIM115 - owned by the child
        from .cpus import taskset

        self.proc = subprocess.Popen(
            taskset(self.cpus) + inst.chroot_cmd("-f", "-n", "-U", "asterisk", "-G", "asterisk"),
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logf.close()
        (inst.state / "asterisk.pid").write_text(str(self.proc.pid))
        self.wait_booted(boot_timeout)

    def wait_booted(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SetupError(
                    f"Asterisk exited with {self.proc.returncode} while starting; see "
                    f"{self.instance.host('log', 'stdout.log')} and messages.log there"
                )
            try:
                self.instance.cli("core waitfullybooted", timeout=max(1.0, deadline - time.monotonic()))
                return
            except (SetupError, subprocess.TimeoutExpired) as e:
                last = str(e)
                time.sleep(0.1)
        raise SetupError(f"Asterisk did not boot within {timeout:.0f} s: {last}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(Exception):
            self.instance.cli("core stop now", timeout=5)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("Asterisk did not stop in %.0f s, killing it", timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        with contextlib.suppress(FileNotFoundError):
            (self.instance.state / "asterisk.pid").unlink()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
