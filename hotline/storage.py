"""Storage shared by the feature folders: one way to open a SQLAlchemy engine.

SQLite by default (a file in the instance's host-only ``state/`` folder), in
WAL mode with ``synchronous=NORMAL``: a process crash loses nothing, writes
are small local transactions well under a millisecond. Any other SQLAlchemy
URL (PostgreSQL) is used as given.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, event, inspect, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)


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
