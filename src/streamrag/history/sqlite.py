"""The embedded Memory and RunLog: sessions and run records in one SQLite file.

The file is ``<home>/history.sqlite``, apart from the knowledge bases so that writing a run
never invalidates a knowledge base's search caches. A session's history is its runs in order.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamrag.answer.events import CitedSource
from streamrag.history.base import RunRecord, SessionInfo, Turn
from streamrag.store.connections import ThreadConnections

TITLE_CHARS = 60

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
    invalid_citations   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_session ON runs(session_id, seq);
"""

_RUN_COLUMNS = (
    "run_id, session_id, kb, question, standalone_question, retrieved, answer, citations, "
    "finish_reason, timings, usage, model, started_at, error, invalid_citations"
)


def now() -> str:
    """The current UTC time as recorded in history: ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SQLiteHistory:
    """Sessions and run records in one SQLite file; safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connections = ThreadConnections(path)
        self._connections.get().executescript(_SCHEMA)

    # -- RunLog --------------------------------------------------------------------------

    def record(self, run: RunRecord) -> None:
        """Store a run (replacing an earlier record of the same run) and touch its session."""
        title = " ".join(run.question.split())[:TITLE_CHARS]
        with self._connections.transaction() as db:
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?) ON CONFLICT(session_id) "
                "DO UPDATE SET updated_at = excluded.updated_at",
                (run.session_id, title, run.started_at, now()),
            )
            db.execute(
                f"INSERT OR REPLACE INTO runs ({_RUN_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    run.session_id,
                    run.kb,
                    run.question,
                    run.standalone_question,
                    _json(run.retrieved),
                    run.answer,
                    _json([[c.number, c.chunk_id, c.offset] for c in run.citations]),
                    run.finish_reason,
                    _json(run.timings),
                    _json(run.usage),
                    run.model,
                    run.started_at,
                    None if run.error is None else _json(run.error),
                    run.invalid_citations,
                ),
            )

    def get_run(self, run_id: str) -> RunRecord | None:
        row = (
            self._connections.get()
            .execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
            .fetchone()
        )
        return None if row is None else _run(row)

    def runs(self, session_id: str | None = None, limit: int = 100) -> list[RunRecord]:
        """The newest ``limit`` runs (of one session, if given), oldest first."""
        where, params = ("WHERE session_id = ?", [session_id]) if session_id else ("", [])
        rows = self._connections.get().execute(
            f"SELECT {_RUN_COLUMNS} FROM (SELECT * FROM runs {where} ORDER BY seq DESC LIMIT ?) "
            "ORDER BY seq",
            [*params, limit],
        )
        return [_run(row) for row in rows]

    # -- Memory --------------------------------------------------------------------------

    def history(self, session_id: str, limit: int = 50) -> list[Turn]:
        """The session's last ``limit`` turns, oldest first."""
        return [Turn(run.question, run.answer) for run in self.runs(session_id, limit)]

    def sessions(self, limit: int = 100) -> list[SessionInfo]:
        """The most recently used sessions first."""
        return self._sessions("", [], limit)

    def session(self, session_id: str) -> SessionInfo | None:
        found = self._sessions("WHERE s.session_id = ?", [session_id], 1)
        return found[0] if found else None

    def _sessions(self, where: str, params: list[Any], limit: int) -> list[SessionInfo]:
        rows = self._connections.get().execute(
            "SELECT s.session_id, s.title, count(r.seq), s.created_at, s.updated_at, "
            f"group_concat(DISTINCT r.kb) FROM sessions s LEFT JOIN runs r USING (session_id) "
            f"{where} GROUP BY s.session_id ORDER BY s.updated_at DESC LIMIT ?",
            [*params, limit],
        )
        return [
            SessionInfo(sid, title, runs, created, updated, sorted(kbs.split(",")) if kbs else [])
            for sid, title, runs, created, updated, kbs in rows
        ]

    def rename_session(self, session_id: str, title: str) -> None:
        self._connections.get().execute(
            "UPDATE sessions SET title = ?, updated_at = ? WHERE session_id = ?",
            (title, now(), session_id),
        )

    def delete_session(self, session_id: str) -> int:
        """Delete a session and its runs; return how many runs went with it."""
        with self._connections.transaction() as db:
            deleted = db.execute("DELETE FROM runs WHERE session_id = ?", (session_id,)).rowcount
            db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
        return deleted

    def close(self) -> None:
        self._connections.close()


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _run(row: sqlite3.Row | Sequence[Any]) -> RunRecord:
    (run_id, session_id, kb, question, standalone, retrieved, answer, citations, finish,
     timings, usage, model, started_at, error, invalid) = row  # fmt: skip
    return RunRecord(
        run_id=run_id,
        session_id=session_id,
        kb=kb,
        question=question,
        standalone_question=standalone,
        retrieved=json.loads(retrieved),
        answer=answer,
        citations=[CitedSource(*c) for c in json.loads(citations)],
        finish_reason=finish,
        timings=json.loads(timings),
        usage=json.loads(usage),
        model=model,
        started_at=started_at,
        error=None if error is None else json.loads(error),
        invalid_citations=invalid,
    )
