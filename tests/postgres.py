"""A throw-away PostgreSQL cluster for tests and benches.

``initdb`` + ``pg_ctl`` from ``/usr/lib/postgresql/*/bin`` (Debian's
``postgresql`` package), data directory and unix socket in a temporary
directory, TCP on 127.0.0.1 only, on a free port, trust authentication
(loopback and the socket only). PostgreSQL refuses to run as root: when we are
root the server runs as the ``postgres`` user (created by the package) through
``runuser``.

Bench code::

    with TempPostgres() as pg:
        engine = create_engine(pg.url)

Tests use the session fixture ``pg_url`` (tests/conftest.py registers it): it
skips when the binaries are missing, and fails under CI=true.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DATABASE = "hotline"


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that has initdb and pg_ctl."""
    candidates = []
    for d in glob.glob("/usr/lib/postgresql/*/bin"):
        p = Path(d)
        if (p / "initdb").exists() and (p / "pg_ctl").exists():
            try:
                candidates.append((int(p.parent.name), p))
            except ValueError:
                continue
    if not candidates:
        return None
    return max(candidates)[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempPostgres:
    """One PostgreSQL cluster, alive between :meth:`start` and :meth:`stop`."""

    def __init__(self, bindir: Path | None = None, database: str = DATABASE) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise FileNotFoundError(
                "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin "
                "(install with: make deps, Debian package postgresql)"
            )
        self.bindir = found
        self.database = database
        self.port = 0
        self.tmp: Path | None = None
        self._as_root = os.geteuid() == 0
        self.user = "postgres" if self._as_root else (os.environ.get("USER") or "postgres")

    @property
    def url(self) -> str:
        """SQLAlchemy URL (psycopg 3 driver)."""
        if not self.port:
            raise RuntimeError("PostgreSQL is not started")
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def datadir(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "data"

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        cmd = list(argv)
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
        if res.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed ({res.returncode}): "
                f"{res.stdout[-2000:]}{res.stderr[-2000:]}"
            )
        return res

    def start(self) -> TempPostgres:
        self.tmp = Path(tempfile.mkdtemp(prefix="hotline-pg-"))
        if self._as_root:
            shutil.chown(self.tmp, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "-N",
        )
        # A free port may be taken between the probe and the bind: try a few.
        last: Exception | None = None
        for _ in range(5):
            self.port = free_port()
            try:
                self._pg_ctl_start()
                break
            except RuntimeError as e:
                last = e
                self.port = 0
        else:
            log = (self.tmp / "log").read_text(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {last}\n{log}")
        self._run(
            str(self.bindir / "createdb"),
            "-h",
            str(self.tmp),
            "-p",
            str(self.port),
            "-U",
            self.user,
            self.database,
        )
        return self

    def _pg_ctl_start(self) -> None:
        assert self.tmp is not None
        opts = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.tmp} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-w",
            "-t",
            "30",
            "-l",
            str(self.tmp / "log"),
            "-o",
            opts,
            "start",
        )

    def halt(self) -> None:
        """Stop the server and keep its data and port: :meth:`resume` starts it again
        (a database that goes down and comes back)."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w",
                  "stop")

    def resume(self) -> None:
        """Start the server :meth:`halt` stopped, on the same port (same URL)."""
        self._pg_ctl_start()

    def stop(self) -> None:
        if self.tmp is None:
            return
        if (self.datadir / "postmaster.pid").exists():
            try:
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.datadir),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                )
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp = None
        self.port = 0

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _have_driver() -> bool:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for the whole test session."""
    from tests.conftest import need

    need("PostgreSQL server (initdb, pg_ctl)", find_bindir() is not None, "make deps")
    need("psycopg (PostgreSQL driver)", _have_driver(), "make venv")
    pg = TempPostgres()
    pg.start()
    # wait until a real connection works (pg_ctl -w already waits; belt and braces)
    deadline = time.monotonic() + 10
    import psycopg

    while True:
        try:
            dsn = f"host=127.0.0.1 port={pg.port} user={pg.user} dbname={pg.database}"
            psycopg.connect(dsn).close()
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                pg.stop()
                raise
            time.sleep(0.1)
    try:
        yield pg.url
    finally:
        pg.stop()
