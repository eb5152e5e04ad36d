"""The embedded store: one SQLite file per knowledge base, WAL mode, FTS5 for BM25.

SQLite is the source of truth for documents, chunk text and vectors. The BM25 index is an FTS5
table written in the same transactions; the vector index is an in-memory matrix rebuilt from
the stored vectors whenever the knowledge base's ``generation`` has moved on.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from streamrag.records import Chunk, DocumentInfo
from streamrag.store.base import (
    CHUNK_COLUMNS,
    ChunkWrite,
    DocumentWrite,
    SearchFilter,
    chunk_from_row,
    document_row,
    rarest_terms,
    utc_now,
)
from streamrag.store.connections import ThreadConnections
from streamrag.store.vectors import VectorIndex

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id       TEXT PRIMARY KEY,
    title        TEXT NOT NULL,
    source       TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    pipeline     TEXT NOT NULL,
    meta         TEXT NOT NULL DEFAULT '{}',
    size         INTEGER NOT NULL,
    n_chunks     INTEGER NOT NULL,
    ingested_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS documents_source ON documents(source);
CREATE TABLE IF NOT EXISTS chunks (
    id         INTEGER PRIMARY KEY,
    chunk_id   TEXT NOT NULL UNIQUE,
    doc_id     TEXT NOT NULL REFERENCES documents(doc_id),
    ordinal    INTEGER NOT NULL,
    text       TEXT NOT NULL,
    headings   TEXT NOT NULL,
    page_start INTEGER,
    page_end   INTEGER,
    embedding  BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks(doc_id, ordinal);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    terms, tokenize = 'unicode61 remove_diacritics 0'
);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_vocab USING fts5vocab(chunks_fts, 'row');
"""


class SQLiteStore:
    """A knowledge base in one SQLite file. Safe to share between threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connections = ThreadConnections(path)
        self._write_lock = threading.Lock()
        self._vectors = VectorIndex()
        self._vectors_lock = threading.Lock()
        self._count_cache = (-1, 0)
        self._db().executescript(_SCHEMA)  # idempotent; executescript commits by itself
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO kb_meta VALUES ('schema_version', ?), ('generation', '0'),"
                " ('created_at', ?)",
                (SCHEMA_VERSION, utc_now()),
            )

    # -- connections ---------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that bumps ``generation``; rolled back on any error."""
        with self._write_lock, self._connections.transaction() as db:
            yield db
            db.execute(
                "UPDATE kb_meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'"
            )

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        self._connections.close()

    # -- metadata ------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db().execute("SELECT value FROM kb_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, values: dict[str, str]) -> None:
        with self._transaction() as db:
            _put_meta(db, values)

    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    # -- documents -----------------------------------------------------------------------

    def document_states(self, doc_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        """``doc_id -> (content_hash, pipeline)`` for those of ``doc_ids`` that are stored."""
        ids = list(doc_ids)
        found: dict[str, tuple[str, str]] = {}
        db = self._db()
        for start in range(0, len(ids), 500):
            part = ids[start : start + 500]
            marks = ",".join("?" * len(part))
            for doc_id, digest, pipeline in db.execute(
                f"SELECT doc_id, content_hash, pipeline FROM documents WHERE doc_id IN ({marks})",
                part,
            ):
                found[doc_id] = (digest, pipeline)
        return found

    def doc_ids_by_source(self, source: str) -> list[str]:
        rows = self._db().execute("SELECT doc_id FROM documents WHERE source = ?", (source,))
        return [row[0] for row in rows]

    def sources(self) -> list[str]:
        return [row[0] for row in self._db().execute("SELECT DISTINCT source FROM documents")]

    def list_documents(self) -> list[DocumentInfo]:
        rows = self._db().execute(
            "SELECT doc_id, title, source, content_hash, pipeline, size, n_chunks, ingested_at,"
            " meta FROM documents ORDER BY source, doc_id"
        )
        return [DocumentInfo(*row[:8], meta=json.loads(row[8])) for row in rows]

    def count(self) -> tuple[int, int]:
        """``(documents, chunks)``."""
        db = self._db()
        docs = db.execute("SELECT count(*) FROM documents").fetchone()[0]
        chunks = db.execute("SELECT count(*) FROM chunks").fetchone()[0]
        return docs, chunks

    def write_documents(self, writes: Sequence[DocumentWrite], delete: Iterable[str] = ()) -> None:
        """Replace each document with its new chunks and delete others, in one transaction."""
        with self._transaction() as db:
            for doc_id in delete:
                _delete_document(db, doc_id)
            for write in writes:
                _delete_document(db, write.doc_id)
                db.execute(
                    "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", document_row(write)
                )
                if write.vectors is None or len(write.vectors) != len(write.chunks):
                    raise ValueError(f"{write.doc_id}: one vector per chunk is required")
                for chunk, vector in zip(write.chunks, write.vectors, strict=True):
                    _insert_chunk(db, write.doc_id, chunk, vector)

    def delete_documents(self, doc_ids: Iterable[str]) -> int:
        """Delete documents with their chunks; return how many existed."""
        removed = 0
        with self._transaction() as db:
            for doc_id in doc_ids:
                removed += _delete_document(db, doc_id)
        return removed

    # -- chunks and search ---------------------------------------------------------------

    def get_chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        """Chunks by id (those that exist)."""
        if not chunk_ids:
            return {}
        marks = ",".join("?" * len(chunk_ids))
        rows = self._db().execute(
            f"SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d USING (doc_id)"
            f" WHERE c.chunk_id IN ({marks})",
            list(chunk_ids),
        )
        return {row[0]: chunk_from_row(row) for row in rows}

    def get_chunk(self, chunk_id: str) -> Chunk | None:
        row = (
            self._db()
            .execute(
                f"SELECT {CHUNK_COLUMNS} FROM chunks c JOIN documents d USING (doc_id)"
                " WHERE c.chunk_id = ?",
                (chunk_id,),
            )
            .fetchone()
        )
        return None if row is None else chunk_from_row(row)

    def iter_chunks(self, batch: int = 256) -> Iterable[list[Chunk]]:
        """All chunks in the order they were written, in lists of ``batch``."""
        last = 0
        while True:
            rows = (
                self._db()
                .execute(
                    f"SELECT c.id, {CHUNK_COLUMNS} FROM chunks c JOIN documents d USING (doc_id)"
                    " WHERE c.id > ? ORDER BY c.id LIMIT ?",
                    (last, batch),
                )
                .fetchall()
            )
            if not rows:
                return
            last = rows[-1][0]
            yield [chunk_from_row(row[1:]) for row in rows]

    def replace_vectors(self, vectors: dict[str, np.ndarray], meta: dict[str, str]) -> None:
        """Swap every chunk's vector and the model metadata in one transaction."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE chunks SET embedding = ? WHERE chunk_id = ?",
                ((np.asarray(v, dtype=np.float32).tobytes(), i) for i, v in vectors.items()),
            )
            _put_meta(db, meta)

    def get_vectors(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those chunks that exist."""
        if not chunk_ids:
            return {}
        marks = ",".join("?" * len(chunk_ids))
        rows = self._db().execute(
            f"SELECT chunk_id, embedding FROM chunks WHERE chunk_id IN ({marks})", list(chunk_ids)
        )
        return {chunk_id: np.frombuffer(blob, dtype=np.float32) for chunk_id, blob in rows}

    def replace_terms(self, terms: dict[str, list[str]], meta: dict[str, str]) -> None:
        """Rebuild the BM25 index from new terms for every chunk, in one transaction."""
        with self._transaction() as db:
            db.execute("DELETE FROM chunks_fts")
            db.executemany(
                "INSERT INTO chunks_fts (rowid, terms) SELECT id, ? FROM chunks WHERE chunk_id = ?",
                ((" ".join(words), chunk_id) for chunk_id, words in terms.items()),
            )
            _put_meta(db, meta)

    def _allowed_rows(self, where: SearchFilter | None) -> np.ndarray | None:
        """Row ids of the chunks a filter lets through (None: no filter)."""
        if where is None or where.is_empty():
            return None
        sql, params = _filter_sql(where)
        rows = self._db().execute(
            f"SELECT c.id FROM chunks c JOIN documents d USING (doc_id) WHERE {sql}", params
        )
        return np.fromiter((row[0] for row in rows), dtype=np.int64)

    def keyword_search(
        self, terms: Sequence[str], k: int, where: SearchFilter | None = None
    ) -> list[tuple[str, float]]:
        """BM25 over the FTS5 index: ``(chunk id, score)`` best first, higher is better."""
        terms = self._selective_terms(terms)
        if not terms:
            return []
        query = " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
        sql = "SELECT rowid, -bm25(chunks_fts) AS score FROM chunks_fts WHERE chunks_fts MATCH ?"
        params: list[Any] = [query]
        if where is not None and not where.is_empty():
            filter_sql, filter_params = _filter_sql(where)
            sql += (
                " AND rowid IN (SELECT c.id FROM chunks c JOIN documents d USING (doc_id)"
                f" WHERE {filter_sql})"
            )
            params += filter_params
        sql += " ORDER BY rank LIMIT ?"
        params.append(k)
        ranked = (
            f"SELECT c.chunk_id, best.score FROM ({sql}) best JOIN chunks c ON c.id = best.rowid"
            " ORDER BY best.score DESC"
        )
        return [(chunk_id, float(score)) for chunk_id, score in self._db().execute(ranked, params)]

    def _selective_terms(self, terms: Sequence[str]) -> list[str]:
        """The distinct terms worth querying, rarest first (see MAX_QUERY_TERMS)."""
        unique = list(dict.fromkeys(terms))
        if not unique:
            return []
        marks = ",".join("?" * len(unique))
        frequency = dict(
            self._db().execute(
                f"SELECT term, doc FROM chunks_vocab WHERE term IN ({marks})", unique
            )
        )
        # A term FTS5 splits further ("gpt-3") is not in the vocabulary: keep it, it is specific.
        known = [t for t in unique if t in frequency or not t.isalnum()]
        return rarest_terms(known, frequency, self._chunk_count())

    def _chunk_count(self) -> int:
        generation = self.generation()
        if self._count_cache[0] != generation:
            count = self._db().execute("SELECT count(*) FROM chunks").fetchone()[0]
            self._count_cache = (generation, count)
        return self._count_cache[1]

    def vector_search(
        self, query: np.ndarray, k: int, where: SearchFilter | None = None
    ) -> list[tuple[str, float]]:
        """Exact cosine search: ``(chunk id, similarity)`` best first."""
        index = self._current_vectors()
        return index.search(query, k, self._allowed_rows(where))

    def _current_vectors(self) -> VectorIndex:
        generation = self.generation()
        with self._vectors_lock:
            if self._vectors.generation != generation:
                rows = self._db().execute("SELECT id, chunk_id, embedding FROM chunks ORDER BY id")
                self._vectors = VectorIndex.from_rows(rows, generation)
            return self._vectors


def _filter_sql(where: SearchFilter) -> tuple[str, list[Any]]:
    """A WHERE clause over ``documents d`` and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if where.doc_ids:
        clauses.append(f"d.doc_id IN ({','.join('?' * len(where.doc_ids))})")
        params += where.doc_ids
    if where.source_glob:
        clauses.append("d.source GLOB ?")
        params.append(where.source_glob)
    for key, value in where.meta:
        clauses.append("json_extract(d.meta, ?) = ?")
        params += ['$."' + key.replace('"', '\\"') + '"', value]
    return " AND ".join(clauses) or "1", params


def _put_meta(db: sqlite3.Connection, values: dict[str, str]) -> None:
    db.executemany("INSERT OR REPLACE INTO kb_meta VALUES (?, ?)", values.items())


def _delete_document(db: sqlite3.Connection, doc_id: str) -> int:
    db.execute(
        "DELETE FROM chunks_fts WHERE rowid IN (SELECT id FROM chunks WHERE doc_id = ?)",
        (doc_id,),
    )
    db.execute("DELETE FROM chunks WHERE doc_id = ?", (doc_id,))
    return db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,)).rowcount


def _insert_chunk(
    db: sqlite3.Connection, doc_id: str, chunk: ChunkWrite, vector: np.ndarray
) -> None:
    cursor = db.execute(
        "INSERT INTO chunks (chunk_id, doc_id, ordinal, text, headings, page_start, page_end,"
        " embedding) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            chunk.chunk_id,
            doc_id,
            chunk.ordinal,
            chunk.text,
            json.dumps(list(chunk.headings), ensure_ascii=False),
            chunk.page_start,
            chunk.page_end,
            np.asarray(vector, dtype=np.float32).tobytes(),
        ),
    )
    db.execute(
        "INSERT INTO chunks_fts (rowid, terms) VALUES (?, ?)",
        (cursor.lastrowid, " ".join(chunk.terms)),
    )
