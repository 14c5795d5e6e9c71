"""Storage shared by the feature folders: one way to open a SQLAlchemy engine.

SQLite by default (a file in the instance's host-only ``state/`` folder), in
WAL mode with ``synchronous=NORMAL``: a process crash loses nothing, writes
are small local transactions well under a millisecond. Any other SQLAlchemy
URL (PostgreSQL) is used as given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def open_engine(url: str) -> Engine:
    engine = create_engine(url)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def store_url(url: str | None, state_dir: Path, filename: str) -> str:
    """The database a feature's store uses: ``storage.url`` when the config sets one
    (every feature's tables side by side, e.g. in PostgreSQL), else the feature's own
    SQLite file in the instance's host-only ``state/`` folder."""
    return url or f"sqlite:///{state_dir / filename}"
