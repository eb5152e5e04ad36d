"""Memory, RunLog and RunEventLog over SQL: sessions, run records and each run's events.

:class:`SQLHistory` speaks the SQL that SQLite and PostgreSQL share through a
:class:`Database` (which runs it with its own driver and placeholders); each backend creates
the three tables itself (``streamrag.history.sqlite``, ``streamrag.postgres``). A session's
history is its runs in order. A run is owned by the process that began it (``host:pid``); a
run still ``running`` whose owner on this host is gone was interrupted.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, astuple
from datetime import UTC, datetime
from typing import Any, Protocol

from streamrag.answer.events import (
    CitedSource,
    Event,
    ModerationCount,
    answer_of,
    event_from_dict,
)
from streamrag.history.base import RunRecord, SessionInfo, Turn

TITLE_CHARS = 60

_RUN_COLUMNS = (
    "run_id, session_id, kb, question, standalone_question, retrieved, answer, citations, "
    "finish_reason, timings, usage, model, started_at, error, invalid_citations, moderation"
)
_COLUMNS = _RUN_COLUMNS.split(", ")


def now() -> str:
    """The current UTC time as recorded in history: ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What :class:`SQLHistory` runs statements on; parameters are ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...
    def executemany(self, sql: str, params: Any) -> Any: ...


class Database(Protocol):
    """Connections to one database: ``read()`` for one statement at a time (autocommit),
    ``transaction()`` for writes that commit together or not at all."""

    def read(self) -> AbstractContextManager[Connection]: ...
    def transaction(self) -> AbstractContextManager[Connection]: ...
    def close(self) -> None: ...


class SQLHistory:
    """Sessions, run records and run events in a :class:`Database`; safe across threads and
    processes."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    # -- RunLog --------------------------------------------------------------------------

    def begin(self, run: RunRecord) -> None:
        """Store a run as it starts (owned by this process) and create or touch its
        session."""
        title = " ".join(run.question.split())[:TITLE_CHARS]
        with self._db.transaction() as db:
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?) ON CONFLICT(session_id) "
                "DO UPDATE SET updated_at = excluded.updated_at",
                (run.session_id, title, run.started_at, now()),
            )
            replace = ", ".join(f"{c} = excluded.{c}" for c in [*_COLUMNS, "owner"])
            db.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}, owner) "
                f"VALUES ({', '.join('?' * (len(_COLUMNS) + 1))}) "
                f"ON CONFLICT (run_id) DO UPDATE SET {replace}",
                (*_row(run), self.owner),
            )

    def record(self, run: RunRecord) -> None:
        """Update a begun run's record (how it ended). A run whose record is gone — its
        session was deleted — stays gone, and so does the session."""
        assignments = ", ".join(f"{column} = ?" for column in _COLUMNS)
        with self._db.transaction() as db:
            updated = db.execute(
                f"UPDATE runs SET {assignments} WHERE run_id = ?", (*_row(run), run.run_id)
            ).rowcount
            if updated:
                db.execute(
                    "UPDATE sessions SET updated_at = ? WHERE session_id = ?",
                    (now(), run.session_id),
                )

    def running(self) -> dict[str, str]:
        """The runs still ``running``, each with its owner (``<host>:<pid>``)."""
        with self._db.read() as db:
            rows = db.execute("SELECT run_id, owner FROM runs WHERE finish_reason = 'running'")
            return {run_id: owner or "" for run_id, owner in rows}

    def interrupt(self, run_id: str, answer: str, code: str, message: str) -> bool:
        """End a run still ``running`` as ``interrupted``, with its partial answer and an
        error; False when it had already ended (another process ended it first)."""
        with self._db.transaction() as db:
            return bool(
                db.execute(
                    "UPDATE runs SET finish_reason = 'interrupted', answer = ?, error = ? "
                    "WHERE run_id = ? AND finish_reason = 'running'",
                    (answer, _json({"code": code, "message": message}), run_id),
                ).rowcount
            )

    def interrupt_orphans(self) -> list[str]:
        """End as ``interrupted`` the runs left ``running`` by a dead process of this host,
        with the answer their event log holds; return their ids."""
        host = socket.gethostname()
        orphans = [
            run_id
            for run_id, owner in self.running().items()
            if owner.rpartition(":")[0] == host and not _alive(int(owner.rpartition(":")[2] or 0))
        ]
        for run_id in orphans:
            answer = answer_of(self.events(run_id))
            message = "the server stopped while this run was answering"
            self.interrupt(run_id, answer, "interrupted", message)
        return orphans

    # -- RunEventLog ---------------------------------------------------------------------

    def append_events(self, run_id: str, events: Sequence[Event], answer: str) -> None:
        """Keep more of a run's events and, while it is running, its partial answer."""
        with self._db.transaction() as db:
            db.executemany(
                "INSERT INTO run_events VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                ((run_id, event.seq, event.to_json()) for event in events),
            )
            db.execute(
                "UPDATE runs SET answer = ? WHERE run_id = ? AND finish_reason = 'running'",
                (answer, run_id),
            )

    def events(self, run_id: str, after: int = -1) -> list[Event]:
        """The run's kept events with seq > ``after``, in order."""
        with self._db.read() as db:
            rows = db.execute(
                "SELECT event FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq",
                (run_id, after),
            )
            return [event_from_dict(json.loads(row[0])) for row in rows]

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._db.read() as db:
            row = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return None if row is None else _run(row)

    def runs(
        self, session_id: str | None = None, limit: int = 100, before: str | None = None
    ) -> list[RunRecord]:
        """The newest ``limit`` runs (of one session, if given; older than run ``before``,
        if given), oldest first."""
        conditions, params = [], []
        if session_id:
            conditions.append("session_id = ?")
            params.append(session_id)
        if before:
            conditions.append("seq < (SELECT seq FROM runs WHERE run_id = ?)")
            params.append(before)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self._db.read() as db:
            rows = db.execute(
                f"SELECT {_RUN_COLUMNS} FROM (SELECT * FROM runs {where} ORDER BY seq DESC LIMIT ?)"
                " newest ORDER BY seq",
                [*params, limit],
            )
            return [_run(row) for row in rows]

    # -- Memory --------------------------------------------------------------------------

    def history(self, session_id: str, limit: int = 50) -> list[Turn]:
        """The session's last ``limit`` turns, oldest first (runs still answering, such as
        the one asking, are not part of it yet)."""
        runs = [run for run in self.runs(session_id, limit + 8) if run.finished]
        return [Turn(run.question, run.answer) for run in runs[-limit:]]

    def sessions(self, limit: int = 100) -> list[SessionInfo]:
        """The most recently used sessions first."""
        return self._sessions("", [], limit)

    def session(self, session_id: str) -> SessionInfo | None:
        found = self._sessions("WHERE s.session_id = ?", [session_id], 1)
        return found[0] if found else None

    def _sessions(self, where: str, params: list[Any], limit: int) -> list[SessionInfo]:
        with self._db.read() as db:
            rows = list(
                db.execute(
                    "SELECT s.session_id, s.title, count(r.seq), s.created_at, s.updated_at "
                    f"FROM sessions s LEFT JOIN runs r USING (session_id) {where} "
                    "GROUP BY s.session_id ORDER BY s.updated_at DESC LIMIT ?",
                    [*params, limit],
                )
            )
            kbs: dict[str, list[str]] = {}
            if rows:
                marks = ",".join("?" * len(rows))
                for session_id, kb in db.execute(
                    f"SELECT DISTINCT session_id, kb FROM runs WHERE session_id IN ({marks})"
                    " ORDER BY kb",
                    [row[0] for row in rows],
                ):
                    kbs.setdefault(session_id, []).append(kb)
        return [
            SessionInfo(sid, title, runs, created, updated, kbs.get(sid, []))
            for sid, title, runs, created, updated in rows
        ]

    def rename_session(self, session_id: str, title: str) -> None:
        with self._db.transaction() as db:
            db.execute(
                "UPDATE sessions SET title = ?, updated_at = ? WHERE session_id = ?",
                (title, now(), session_id),
            )

    def delete_session(self, session_id: str) -> int:
        """Delete a session and its runs; return how many runs went with it."""
        with self._db.transaction() as db:
            db.execute(
                "DELETE FROM run_events WHERE run_id IN "
                "(SELECT run_id FROM runs WHERE session_id = ?)",
                (session_id,),
            )
            deleted = db.execute("DELETE FROM runs WHERE session_id = ?", (session_id,)).rowcount
            db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
        return deleted

    def close(self) -> None:
        self._db.close()


def _alive(pid: int) -> bool:
    """Whether a process with this id runs (on this host); this process's earlier self
    (the same id reused after a restart) does not count."""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _row(run: RunRecord) -> tuple[Any, ...]:
    """A record's values in the order of ``_RUN_COLUMNS``."""
    return (
        run.run_id,
        run.session_id,
        run.kb,
        run.question,
        run.standalone_question,
        _json(run.retrieved),
        run.answer,
        _json([list(astuple(c)) for c in run.citations]),
        run.finish_reason,
        _json(run.timings),
        _json(run.usage),
        run.model,
        run.started_at,
        None if run.error is None else _json(run.error),
        run.invalid_citations,
        _json([asdict(count) for count in run.moderation]),
    )


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _run(row: Sequence[Any]) -> RunRecord:
    (run_id, session_id, kb, question, standalone, retrieved, answer, citations, finish,
     timings, usage, model, started_at, error, invalid, moderation) = row  # fmt: skip
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
        moderation=[ModerationCount(**count) for count in json.loads(moderation)],
    )
