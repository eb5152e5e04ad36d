"""The embedded history: :class:`SQLHistory` in ``<home>/history.sqlite``, apart from the
knowledge bases so that writing a run never invalidates a knowledge base's search caches."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from streamrag.history.sql import SQLHistory
from streamrag.store.connections import ThreadConnections

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    title      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    seq                 INTEGER PRIMARY KEY,
    run_id              TEXT NOT NULL UNIQUE,
    session_id          TEXT NOT NULL REFERENCES sessions(session_id),
    kb                  TEXT NOT NULL,
    question            TEXT NOT NULL,
    standalone_question TEXT NOT NULL,
    retrieved           TEXT NOT NULL,
    answer              TEXT NOT NULL,
    citations           TEXT NOT NULL,
    finish_reason       TEXT NOT NULL,
    timings             TEXT NOT NULL,
    usage               TEXT NOT NULL,
    model               TEXT NOT NULL,
    started_at          TEXT NOT NULL,
    error               TEXT,
    invalid_citations   INTEGER NOT NULL DEFAULT 0,
    moderation          TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS runs_session ON runs(session_id, seq);
CREATE TABLE IF NOT EXISTS run_events (
    run_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    event  TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
"""
_MIGRATIONS = {  # columns added after the first release: name -> definition
    "owner": "ALTER TABLE runs ADD COLUMN owner TEXT",
    "moderation": "ALTER TABLE runs ADD COLUMN moderation TEXT NOT NULL DEFAULT '[]'",
}


class SQLiteDatabase:
    """:class:`streamrag.history.sql.Database` over one SQLite file (a connection per
    thread, WAL mode)."""

    def __init__(self, path: Path) -> None:
        self._connections = ThreadConnections(path)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        yield self._connections.get()

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._connections.transaction()

    def close(self) -> None:
        self._connections.close()


class SQLiteHistory(SQLHistory):
    """Sessions and run records in one SQLite file; safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        database = SQLiteDatabase(path)
        with database.read() as db:
            db.executescript(_SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
            for column, statement in _MIGRATIONS.items():
                if column not in columns:
                    db.execute(statement)
            db.execute("CREATE INDEX IF NOT EXISTS runs_running ON runs(finish_reason, owner)")
        super().__init__(database)
