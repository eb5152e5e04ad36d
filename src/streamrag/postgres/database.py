"""A pool of connections to one PostgreSQL database, and streamrag's schema in it.

The schema is versioned: :data:`MIGRATIONS` are applied in order, each recorded in
``streamrag_migrations``, all pending ones in one transaction under an advisory lock (so
replicas starting together apply them once, and a migration that fails leaves the schema as
it was). A database whose schema is newer than this streamrag is refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg.adapt import Dumper
from psycopg.types import string
from psycopg_pool import ConnectionPool, PoolTimeout

from streamrag.config import redact
from streamrag.errors import BackendUnavailable, ConfigError

CONNECT_TIMEOUT_S = 3
HNSW_EF_SEARCH = 100  # candidates an HNSW scan keeps: above the 50 a hybrid search reads

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE knowledge_bases (
    kb_id       serial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    meta        jsonb NOT NULL DEFAULT '{}',
    chunks      bigint NOT NULL DEFAULT 0,  -- for BM25: how many chunks
    terms       bigint NOT NULL DEFAULT 0,  -- and how many terms they hold in all
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE documents (
    kb_id        int NOT NULL REFERENCES knowledge_bases ON DELETE CASCADE,
    doc_id       text NOT NULL,
    title        text NOT NULL,
    source       text NOT NULL,
    content_hash text NOT NULL,
    pipeline     text NOT NULL,
    meta         jsonb NOT NULL DEFAULT '{}',
    size         bigint NOT NULL,
    n_chunks     int NOT NULL,
    ingested_at  text NOT NULL,
    PRIMARY KEY (kb_id, doc_id)
);
CREATE INDEX documents_source ON documents (kb_id, source);
CREATE TABLE chunks (
    id         bigserial PRIMARY KEY,
    kb_id      int NOT NULL,
    chunk_id   text NOT NULL,
    doc_id     text NOT NULL,
    ordinal    int NOT NULL,
    text       text NOT NULL,
    headings   text NOT NULL,  -- JSON, as the embedded store keeps it
    page_start int,
    page_end   int,
    embedding  vector NOT NULL,
    n_terms    int NOT NULL,
    UNIQUE (kb_id, chunk_id),
    FOREIGN KEY (kb_id, doc_id) REFERENCES documents ON DELETE CASCADE
);
CREATE INDEX chunks_doc ON chunks (kb_id, doc_id, ordinal);
CREATE TABLE chunk_terms (  -- a posting: BM25 reads it from the index alone
    kb_id int NOT NULL,
    term  text NOT NULL,
    chunk bigint NOT NULL REFERENCES chunks ON DELETE CASCADE,
    tf    int NOT NULL,   -- the term's count in the chunk
    dl    int NOT NULL,   -- the chunk's length in terms
    PRIMARY KEY (kb_id, term, chunk) INCLUDE (tf, dl)
);
CREATE INDEX chunk_terms_chunk ON chunk_terms (chunk);
CREATE TABLE terms (
    kb_id int NOT NULL REFERENCES knowledge_bases ON DELETE CASCADE,
    term  text NOT NULL,
    df    int NOT NULL,
    PRIMARY KEY (kb_id, term)
);
CREATE TABLE uploads (
    kb          text NOT NULL,
    upload_id   text NOT NULL,
    name        text NOT NULL,
    data        bytea NOT NULL,
    uploaded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kb, upload_id)
);
CREATE TABLE sessions (
    session_id text PRIMARY KEY,
    title      text NOT NULL,
    created_at text NOT NULL,
    updated_at text NOT NULL
);
CREATE TABLE runs (
    seq                 bigserial PRIMARY KEY,
    run_id              text NOT NULL UNIQUE,
    session_id          text NOT NULL REFERENCES sessions,
    kb                  text NOT NULL,
    question            text NOT NULL,
    standalone_question text NOT NULL,
    retrieved           text NOT NULL,
    answer              text NOT NULL,
    citations           text NOT NULL,
    finish_reason       text NOT NULL,
    timings             text NOT NULL,
    usage               text NOT NULL,
    model               text NOT NULL,
    started_at          text NOT NULL,
    error               text,
    invalid_citations   int NOT NULL DEFAULT 0,
    owner               text
);
CREATE INDEX runs_session ON runs (session_id, seq);
CREATE INDEX runs_running ON runs (owner) WHERE finish_reason = 'running';
CREATE TABLE run_events (
    run_id text NOT NULL,
    seq    int NOT NULL,
    event  text NOT NULL,
    PRIMARY KEY (run_id, seq)
);
""",
    ),
    ("0002_run_moderation", "ALTER TABLE runs ADD COLUMN moderation text NOT NULL DEFAULT '[]'"),
]


class PostgresDatabase:
    """Connections to the database at ``url`` (autocommit; :meth:`transaction` for more).
    A database that cannot be reached raises :class:`BackendUnavailable` naming the URL
    without its password."""

    def __init__(self, url: str, *, max_connections: int = 16) -> None:
        self.url = url
        self.safe_url = redact(url)
        try:
            with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as probe:
                probe.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            raise self.unavailable(exc) from exc
        except psycopg.ProgrammingError as exc:  # not a URL psycopg understands
            raise ConfigError(f"database_url {self.safe_url!r}: {exc}") from exc
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            configure=self._configure,
            check=ConnectionPool.check_connection,  # after a restart: a new one, not an error
            timeout=CONNECT_TIMEOUT_S,  # a database that is away answers 503 after this
            open=False,
        )

    def open(self) -> None:
        """Start the pool (after :meth:`upgrade`: its connections adapt the vector type)."""
        self.pool.open(wait=False)

    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        for dumper in _NUL_SAFE_DUMPERS:
            connection.adapters.register_dumper(str, dumper)
        register_vector(connection)
        connection.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")
        connection.execute("SET hnsw.iterative_scan = relaxed_order")  # filtered searches

    def unavailable(self, exc: Exception) -> BackendUnavailable:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return BackendUnavailable(f"PostgreSQL at {self.safe_url} cannot be reached: {reason}")

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in autocommit mode."""
        try:
            with self.pool.connection() as connection:
                yield connection
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise self.unavailable(exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside a transaction, committed at the end, rolled back on
        any error."""
        with self.connection() as connection, connection.transaction():
            yield connection

    def upgrade(self) -> list[str]:
        """Apply the pending migrations; their names."""
        try:
            with (
                psycopg.connect(self.url, autocommit=True) as connection,
                connection.transaction(),
            ):
                return _migrate(connection)
        except psycopg.OperationalError as exc:
            raise self.unavailable(exc) from exc

    def close(self) -> None:
        self.pool.close()


def _migrate(connection: psycopg.Connection[Any]) -> list[str]:
    connection.execute("SELECT pg_advisory_xact_lock(hashtext('streamrag schema'))")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS streamrag_migrations ("
        " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    done = {row[0] for row in connection.execute("SELECT version FROM streamrag_migrations")}
    known = [version for version, _ in MIGRATIONS]
    unknown = sorted(done - set(known))
    if unknown:
        raise ConfigError(
            f"the database's schema has migrations this streamrag does not know ({unknown[-1]}):"
            " it was upgraded by a newer streamrag; upgrade streamrag"
        )
    applied = []
    for version, sql in MIGRATIONS:
        if version not in done:
            connection.execute(sql)  # type: ignore[arg-type]
            connection.execute("INSERT INTO streamrag_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied


def _nul_safe(base: type[Dumper]) -> type[Dumper]:
    """``base`` storing U+FFFD for NUL, which PostgreSQL text cannot hold (SQLite can): a
    document id, file name or question with a NUL is kept, and found again, as the same
    string with U+FFFD in its place."""

    def dump(self: Dumper, obj: str) -> Any:
        return base.dump(self, obj.replace("\x00", "\ufffd"))

    return type(f"NulSafe{base.__name__}", (base,), {"dump": dump})


# in psycopg's order: the last one registered is the default for str
_NUL_SAFE_DUMPERS = [
    _nul_safe(base)
    for base in (
        string.StrBinaryDumperName,
        string.StrBinaryDumperVarchar,
        string.StrBinaryDumper,
        string.StrDumperName,
        string.StrDumperVarchar,
        string.StrDumper,
        string.StrDumperUnknown,
    )
]


class QmarkDatabase:
    """:class:`streamrag.history.sql.Database` over a :class:`PostgresDatabase`: the history's
    ``?`` placeholders become psycopg's ``%s``."""

    def __init__(self, database: PostgresDatabase) -> None:
        self._database = database

    @contextmanager
    def read(self) -> Iterator[_Qmark]:
        with self._database.connection() as connection:
            yield _Qmark(connection)

    @contextmanager
    def transaction(self) -> Iterator[_Qmark]:
        with self._database.transaction() as connection:
            yield _Qmark(connection)

    def close(self) -> None:
        """Nothing: the pool is the backend's."""


class _Qmark:
    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection

    def execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self._connection.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]

    def executemany(self, sql: str, params: Any) -> psycopg.Cursor[Any]:
        cursor = self._connection.cursor()
        cursor.executemany(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
        return cursor
