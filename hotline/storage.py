"""Storage shared by the feature folders: one way to open a SQLAlchemy engine.

SQLite by default (a file in the instance's host-only ``state/`` folder), in
WAL mode with ``synchronous=NORMAL``: a process crash loses nothing, writes
are small local transactions well under a millisecond. Any other SQLAlchemy
URL (PostgreSQL) is used as given.

:class:`Tables` is how every store opens its database: the tables are created
on the first use that reaches it, so a database that is down when the
controller starts does not stop it, and the features that need it work again
once it is back (meanwhile their uses raise :data:`UNAVAILABLE`, which the HTTP
API answers with 503).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import MetaData, Table, create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
T = TypeVar("T")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


CONNECT_TIMEOUT = 5  # s, PostgreSQL (libpq connect_timeout)


def open_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A pooled connection from before a server restart is replaced, not handed out; a
    # server that does not answer at all (a host gone, packets dropped) costs at most
    # CONNECT_TIMEOUT per attempt, not the kernel's minutes, unless the URL says otherwise.
    args = {} if "connect_timeout" in url else {"connect_timeout": CONNECT_TIMEOUT}
    return create_engine(url, pool_pre_ping=True, connect_args=args)


def store_url(url: str | None, state_dir: Path, filename: str) -> str:
    """The database a feature's store uses: ``storage.url`` when the config sets one
    (every feature's tables side by side, e.g. in PostgreSQL), else the feature's own
    SQLite file in the instance's host-only ``state/`` folder."""
    return url or f"sqlite:///{state_dir / filename}"


def add_missing_columns(engine: Engine, table: Table) -> list[str]:
    """``ALTER TABLE ... ADD COLUMN`` for each column of ``table`` its database lacks.

    ``create_all`` makes missing tables only: a table made by an older release keeps
    its old columns. Only nullable columns without a server default may be added
    this way (the old rows get NULL); returns the names added."""
    def columns() -> set[str]:
        return {c["name"] for c in inspect(engine).get_columns(table.name)}

    have = columns()
    added: list[str] = []
    q = engine.dialect.identifier_preparer
    for col in table.columns:
        if col.name in have:
            continue
        if not col.nullable or col.primary_key or col.server_default is not None:
            raise RuntimeError(f"column {table.name}.{col.name} cannot be added to "
                               "existing rows: it must be nullable, with no default")
        ddl = (f"ALTER TABLE {q.format_table(table)} ADD COLUMN {q.format_column(col)} "
               f"{col.type.compile(dialect=engine.dialect)}")
        try:
            with engine.begin() as conn:
                conn.execute(text(ddl))
        except DBAPIError:
            if col.name in columns():  # another controller on the same database did it
                continue
            raise
        added.append(col.name)
        log.info("database %s: column %s.%s added", engine.url.render_as_string(),
                 table.name, col.name)
    return added


def add_missing_indexes(engine: Engine, table: Table) -> list[str]:
    """``CREATE INDEX`` for each index of ``table`` its database lacks (``create_all``
    makes the indexes of new tables only); returns the names added."""
    have = {i["name"] for i in inspect(engine).get_indexes(table.name)}
    added: list[str] = []
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        if index.name in have:
            continue
        try:
            index.create(engine, checkfirst=True)
        except DBAPIError:
            if index.name in {i["name"] for i in inspect(engine).get_indexes(table.name)}:
                continue  # another controller on the same database made it
            raise
        added.append(str(index.name))
        log.info("database %s: index %s on %s added", engine.url.render_as_string(),
                 index.name, table.name)
    return added


# ---------------------------------------------------------------- a database that may be down

UNAVAILABLE = (OperationalError, InterfaceError)
"""What SQLAlchemy raises when the database cannot be reached (server down, connection
lost, file not openable, busy): the HTTP API answers 503 ``database-unavailable``."""


def reason(e: BaseException) -> str:
    """The driver's one-line message (never the URL: it may carry a password)."""
    msg = str(getattr(e, "orig", None) or e).strip()
    return msg.splitlines()[0] if msg else type(e).__name__


class Tables:
    """A feature's tables in one database, created on the first use that reaches it.

    A database that is down when the controller starts must not stop it (calls go
    on without it): the constructor tries once and logs; every later use
    (:meth:`session`, :meth:`ensure`) tries ``create_all`` again until it succeeds,
    so the feature works as soon as the database is back, without a restart. While
    it is down a use raises one of :data:`UNAVAILABLE`. ``create_all`` only adds
    missing tables, under a lock (stores are used from worker threads).

    :meth:`submit` runs a function on the store's one writer thread, in the order
    of submission: for writes whose order matters (a recording's row before its end).

    ``migrate(engine)`` runs right after ``create_all``, in the same first use that
    reaches the database (e.g. :func:`add_missing_columns` for a table an older
    release made), so it is done also when the database comes up late.
    """

    def __init__(self, url: str, metadata: MetaData, feature: str,
                 setup: Callable[[Engine], None] | None = None,
                 migrate: Callable[[Engine], object] | None = None) -> None:
        self.url = url
        self.feature = feature
        self.metadata = metadata
        self._migrate = migrate
        self.engine: Engine = open_engine(url)
        if setup is not None:
            setup(self.engine)  # engine events, before the first connection
        self._ready = False
        self._down = False
        self._lock = threading.Lock()
        self._writer: ThreadPoolExecutor | None = None
        try:
            self.ensure()
        except UNAVAILABLE as e:
            self.unavailable(e, "tables not created yet; trying again on each use")

    @property
    def ready(self) -> bool:
        return self._ready

    def ensure(self) -> None:
        """Create the tables if not done yet; raises one of :data:`UNAVAILABLE` while down."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            self.metadata.create_all(self.engine)
            if self._migrate is not None:
                self._migrate(self.engine)
            self._ready = True
            if self._down:
                log.warning("%s database %s reachable again", self.feature, self.engine.url)
                self._down = False

    def unavailable(self, e: BaseException, what: str) -> None:
        """Log an outage: an error the first time, then quietly until it is back."""
        if self._down and not self._ready:
            log.debug("%s database still unreachable (%s): %s", self.feature, what, reason(e))
            return
        self._down = True
        log.error("%s database %s unreachable (%s): %s", self.feature, self.engine.url, what,
                  reason(e))

    def session(self) -> Session:
        self.ensure()
        return Session(self.engine)

    def submit(self, fn: Callable[..., T], *args: Any, **kw: Any) -> Future[T]:
        """Run ``fn(*args, **kw)`` on this store's writer thread, after everything
        submitted before it (``asyncio.wrap_future`` to await it)."""
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    self._writer = ThreadPoolExecutor(
                        1, thread_name_prefix=f"db-{self.feature.replace(' ', '-')}")
        return self._writer.submit(fn, *args, **kw)

    def drain(self) -> None:
        """Block until every write submitted so far has run (tests, shutdown)."""
        if self._writer is not None:
            self._writer.submit(lambda: None).result()

    def close(self) -> None:
        """Wait for the writes handed in, then close the connections."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        self.engine.dispose()


def read_while_up(db: Tables, read: Callable[[], T], what: str) -> T | None:
    """``read()``, or None (logged by ``db``) while the database is down: what a
    service's start loads, so that an outage does not stop the controller."""
    try:
        return read()
    except UNAVAILABLE as e:
        db.unavailable(e, what)
        return None
