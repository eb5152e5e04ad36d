"""Knowledge bases in PostgreSQL: documents, chunks with pgvector vectors (an HNSW index per
knowledge base) and a BM25 index of the same terms the embedded store indexes.

BM25 is computed in SQL from postings (``chunk_terms``: a term's frequency in a chunk and the
chunk's length, read from the covering index alone) and per-term document frequencies
(``terms``), with the constants and IDF of SQLite FTS5's
``bm25()`` (k1 = 1.2, b = 0.75), so both backends rank alike. Each write takes its knowledge
base's row lock first: writers of one knowledge base take turns, on any machine.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC
from typing import Any

import numpy as np
import psycopg

from streamrag.errors import KnowledgeBaseNotFound
from streamrag.names import check_kb_name
from streamrag.postgres.database import PostgresDatabase
from streamrag.records import Chunk, DocumentInfo, KnowledgeBaseInfo
from streamrag.retrieve.tuning import describe
from streamrag.store.base import (
    BM25_B,
    BM25_K1,
    CHUNK_COLUMNS,
    DocumentWrite,
    SearchFilter,
    chunk_from_row,
    document_row,
    rarest_terms,
)

_CHUNK_JOIN = "chunks c JOIN documents d ON d.kb_id = c.kb_id AND d.doc_id = c.doc_id"


class PostgresCatalog:
    """The knowledge bases of one database."""

    def __init__(self, database: PostgresDatabase) -> None:
        self.database = database
        self.location = database.safe_url

    def list(self) -> list[KnowledgeBaseInfo]:
        with self.database.connection() as db:
            rows = db.execute(
                "SELECT k.name, (SELECT count(*) FROM documents d WHERE d.kb_id = k.kb_id),"
                " k.chunks, k.meta ->> 'embed_model', k.meta ->> 'fusion',"
                " (SELECT coalesce(sum(pg_column_size(c.*)), 0) FROM chunks c"
                "  WHERE c.kb_id = k.kb_id), k.updated_at"
                " FROM knowledge_bases k ORDER BY k.name"
            ).fetchall()
        return [
            KnowledgeBaseInfo(
                name=name,
                location=self.location,
                documents=documents,
                chunks=chunks,
                embed_model=model,
                fusion=describe(fusion),
                size_bytes=int(size),
                updated_at=updated.astimezone(UTC).isoformat(timespec="seconds"),
            )
            for name, documents, chunks, model, fusion, size, updated in rows
        ]

    def exists(self, name: str) -> bool:
        with self.database.connection() as db:
            found = db.execute(
                "SELECT 1 FROM knowledge_bases WHERE name = %s", (check_kb_name(name),)
            ).fetchone()
        return found is not None

    def open(self, name: str) -> PostgresStore:
        with self.database.connection() as db:
            db.execute(
                "INSERT INTO knowledge_bases (name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                (check_kb_name(name),),
            )
        return PostgresStore(self.database, name)

    def drop(self, name: str) -> bool:
        with self.database.transaction() as db:
            row = db.execute(
                "DELETE FROM knowledge_bases WHERE name = %s RETURNING kb_id", (name,)
            ).fetchone()
            if row is not None:
                db.execute(f"DROP INDEX IF EXISTS {_vector_index(row[0])}")
        return row is not None


def _vector_index(kb_id: int) -> str:
    return f"chunks_hnsw_{int(kb_id)}"


class PostgresStore:
    """One knowledge base in PostgreSQL, found by name at every call (a knowledge base
    dropped and made again elsewhere is the new one here too)."""

    def __init__(self, database: PostgresDatabase, name: str) -> None:
        self.database = database
        self.name = name

    def _kb_id(self, db: psycopg.Connection[Any], *, lock: bool = False) -> int:
        row = db.execute(
            "SELECT kb_id FROM knowledge_bases WHERE name = %s" + (" FOR UPDATE" if lock else ""),
            (self.name,),
        ).fetchone()
        if row is None:
            raise KnowledgeBaseNotFound(f"no knowledge base named {self.name!r}")
        return int(row[0])

    @contextmanager
    def _write(self) -> Iterator[tuple[psycopg.Connection[Any], int]]:
        """A write transaction on this knowledge base, holding its row lock (writers of one
        knowledge base take turns, on any machine): ``(connection, kb_id)``."""
        with self.database.transaction() as db:
            kb = self._kb_id(db, lock=True)
            db.execute("UPDATE knowledge_bases SET updated_at = now() WHERE kb_id = %s", (kb,))
            yield db, kb

    def close(self) -> None:
        """Nothing to release: the connections are the backend's."""

    # -- metadata ------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.database.connection() as db:
            row = db.execute(
                "SELECT meta ->> %s FROM knowledge_bases WHERE name = %s", (key, self.name)
            ).fetchone()
        return None if row is None else row[0]

    def set_meta(self, values: dict[str, str]) -> None:
        with self._write() as (db, kb):
            _put_meta(db, kb, values)

    # -- documents -----------------------------------------------------------------------

    def document_states(self, doc_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
        with self.database.connection() as db:
            rows = db.execute(
                "SELECT d.doc_id, d.content_hash, d.pipeline FROM documents d"
                " JOIN knowledge_bases k USING (kb_id) WHERE k.name = %s AND d.doc_id = ANY(%s)",
                (self.name, list(doc_ids)),
            ).fetchall()
        return {doc_id: (digest, pipeline) for doc_id, digest, pipeline in rows}

    def doc_ids_by_source(self, source: str) -> list[str]:
        with self.database.connection() as db:
            rows = db.execute(
                "SELECT d.doc_id FROM documents d JOIN knowledge_bases k USING (kb_id)"
                " WHERE k.name = %s AND d.source = %s",
                (self.name, source),
            ).fetchall()
        return [row[0] for row in rows]

    def sources(self) -> list[str]:
        with self.database.connection() as db:
            rows = db.execute(
                "SELECT DISTINCT d.source FROM documents d JOIN knowledge_bases k USING (kb_id)"
                " WHERE k.name = %s",
                (self.name,),
            ).fetchall()
        return [row[0] for row in rows]

    def list_documents(self) -> list[DocumentInfo]:
        with self.database.connection() as db:
            rows = db.execute(
                "SELECT d.doc_id, d.title, d.source, d.content_hash, d.pipeline, d.size,"
                " d.n_chunks, d.ingested_at, d.meta FROM documents d"
                " JOIN knowledge_bases k USING (kb_id) WHERE k.name = %s"
                " ORDER BY d.source, d.doc_id",
                (self.name,),
            ).fetchall()
        return [DocumentInfo(*row[:8], meta=row[8]) for row in rows]

    def count(self) -> tuple[int, int]:
        """``(documents, chunks)``."""
        with self.database.connection() as db:
            row = db.execute(
                "SELECT (SELECT count(*) FROM documents d WHERE d.kb_id = k.kb_id), k.chunks"
                " FROM knowledge_bases k WHERE k.name = %s",
                (self.name,),
            ).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def write_documents(self, writes: Sequence[DocumentWrite], delete: Iterable[str] = ()) -> None:
        """Replace each document with its new chunks and delete others, in one transaction."""
        for write in writes:
            if write.vectors is None or len(write.vectors) != len(write.chunks):
                raise ValueError(f"{write.doc_id}: one vector per chunk is required")
        with self._write() as (db, kb):
            _delete_documents(db, kb, [*delete, *(write.doc_id for write in writes)])
            for write in writes:
                _insert_document(db, kb, write)

    def delete_documents(self, doc_ids: Iterable[str]) -> int:
        """Delete documents with their chunks; return how many existed."""
        with self._write() as (db, kb):
            return _delete_documents(db, kb, list(doc_ids))

    # -- chunks --------------------------------------------------------------------------

    def get_chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]:
        if not chunk_ids:
            return {}
        with self.database.connection() as db:
            rows = db.execute(
                f"SELECT {CHUNK_COLUMNS} FROM {_CHUNK_JOIN} JOIN knowledge_bases k"
                " ON k.kb_id = c.kb_id WHERE k.name = %s AND c.chunk_id = ANY(%s)",
                (self.name, list(chunk_ids)),
            ).fetchall()
        return {row[0]: chunk_from_row(row) for row in rows}

    def get_chunk(self, chunk_id: str) -> Chunk | None:
        return self.get_chunks([chunk_id]).get(chunk_id)

    def iter_chunks(self, batch: int = 256) -> Iterator[list[Chunk]]:
        """All chunks in the order they were written, in lists of ``batch``."""
        last = 0
        while True:
            with self.database.connection() as db:
                kb = self._kb_id(db)
                rows = db.execute(
                    f"SELECT c.id, {CHUNK_COLUMNS} FROM {_CHUNK_JOIN}"
                    " WHERE c.kb_id = %s AND c.id > %s ORDER BY c.id LIMIT %s",
                    (kb, last, batch),
                ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [chunk_from_row(row[1:]) for row in rows]

    # -- indexes -------------------------------------------------------------------------

    def replace_vectors(self, vectors: dict[str, np.ndarray], meta: dict[str, str]) -> None:
        """Swap every chunk's vector and the model metadata (and the HNSW index, for
        vectors of another dimension) in one transaction."""
        with self._write() as (db, kb):
            db.execute(f"DROP INDEX IF EXISTS {_vector_index(kb)}")
            with db.cursor() as cursor:
                cursor.executemany(
                    "UPDATE chunks SET embedding = %s WHERE kb_id = %s AND chunk_id = %s",
                    [(_vector(v), kb, chunk_id) for chunk_id, v in vectors.items()],
                )
            _put_meta(db, kb, meta)
            if vectors:
                _ensure_vector_index(db, kb, len(next(iter(vectors.values()))))

    def get_vectors(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those chunks that exist."""
        with self.database.connection() as db:
            rows = db.execute(
                "SELECT c.chunk_id, c.embedding FROM chunks c JOIN knowledge_bases k"
                " USING (kb_id) WHERE k.name = %s AND c.chunk_id = ANY(%s)",
                (self.name, list(chunk_ids)),
            ).fetchall()
        return {chunk_id: vector.to_numpy().astype(np.float32) for chunk_id, vector in rows}

    def replace_terms(self, terms: dict[str, list[str]], meta: dict[str, str]) -> None:
        """Rebuild the BM25 index from new terms for every chunk, in one transaction."""
        with self._write() as (db, kb):
            db.execute("DELETE FROM chunk_terms WHERE kb_id = %s", (kb,))
            db.execute("DELETE FROM terms WHERE kb_id = %s", (kb,))
            ids = dict(
                db.execute("SELECT chunk_id, id FROM chunks WHERE kb_id = %s", (kb,)).fetchall()
            )
            rows = [(ids[chunk_id], words) for chunk_id, words in terms.items() if chunk_id in ids]
            with db.cursor() as cursor:
                cursor.executemany(
                    "UPDATE chunks SET n_terms = %s WHERE id = %s",
                    [(len(words), row_id) for row_id, words in rows],
                )
            _insert_terms(db, kb, rows)
            db.execute(
                "UPDATE knowledge_bases SET terms ="
                " (SELECT coalesce(sum(n_terms), 0) FROM chunks WHERE kb_id = %s) WHERE kb_id = %s",
                (kb, kb),
            )
            _put_meta(db, kb, meta)

    def keyword_search(
        self, terms: Sequence[str], k: int, where: SearchFilter | None = None
    ) -> list[tuple[str, float]]:
        """BM25 as FTS5 computes it: ``(chunk id, score)`` best first."""
        unique = list(dict.fromkeys(terms))
        if not unique:
            return []
        with self.database.connection() as db:
            row = db.execute(
                "SELECT kb_id, chunks, terms FROM knowledge_bases WHERE name = %s", (self.name,)
            ).fetchone()
            if row is None:
                raise KnowledgeBaseNotFound(f"no knowledge base named {self.name!r}")
            kb, chunks, total = row
            if not chunks:
                return []
            frequency = dict(
                db.execute(
                    "SELECT term, df FROM terms WHERE kb_id = %s AND term = ANY(%s) AND df > 0",
                    (kb, unique),
                ).fetchall()
            )
            chosen = rarest_terms((t for t in unique if t in frequency), frequency, chunks)
            if not chosen:
                return []
            idf = [_idf(chunks, frequency[term]) for term in chosen]
            length = f"(1 - {BM25_B} + {BM25_B} * t.dl::float8 / %s::float8)"
            # scored from the postings' covering index alone; the chunk ids of the best k last
            sql = (
                f"SELECT t.chunk, sum(q.idf * t.tf * {BM25_K1 + 1} / (t.tf + {BM25_K1} * {length}))"
                " AS score FROM unnest(%s::text[], %s::float8[]) AS q(term, idf)"
                " JOIN chunk_terms t ON t.kb_id = %s AND t.term = q.term"
            )
            params: list[Any] = [max(total / chunks, 1e-9), chosen, idf, kb]
            if where is not None and not where.is_empty():
                filter_sql, filter_params = _filter_sql(where)
                sql += (
                    " JOIN chunks c ON c.id = t.chunk"
                    " JOIN documents d ON d.kb_id = c.kb_id AND d.doc_id = c.doc_id"
                    f" WHERE {filter_sql}"
                )
                params += filter_params
            sql = (
                f"WITH best AS ({sql} GROUP BY t.chunk ORDER BY score DESC, t.chunk LIMIT %s)"
                " SELECT c.chunk_id, best.score FROM best JOIN chunks c ON c.id = best.chunk"
                " ORDER BY best.score DESC, best.chunk"
            )
            params.append(k)
            return [(chunk_id, float(score)) for chunk_id, score in db.execute(sql, params)]

    def vector_search(
        self, query: np.ndarray, k: int, where: SearchFilter | None = None
    ) -> list[tuple[str, float]]:
        """Nearest chunks by inner product (cosine: the vectors are normalized) through the
        knowledge base's HNSW index: ``(chunk id, similarity)`` best first."""
        with self.database.connection() as db:
            row = db.execute(
                "SELECT kb_id, meta ->> 'vector_index_dim' FROM knowledge_bases WHERE name = %s",
                (self.name,),
            ).fetchone()
            if row is None:
                raise KnowledgeBaseNotFound(f"no knowledge base named {self.name!r}")
            kb, dim = int(row[0]), row[1]
            if dim is None:  # nothing written yet
                return []
            # literal kb_id and dimension: the planner matches the partial expression index
            distance = f"c.embedding::vector({int(dim)}) <#> %s::vector({int(dim)})"
            sql = f"SELECT c.chunk_id, -({distance}) AS score FROM chunks c"
            params: list[Any] = [_vector(query)]
            condition = f"c.kb_id = {kb}"
            if where is not None and not where.is_empty():
                filter_sql, filter_params = _filter_sql(where)
                sql += " JOIN documents d ON d.kb_id = c.kb_id AND d.doc_id = c.doc_id"
                condition += f" AND {filter_sql}"
                params += filter_params
            sql += f" WHERE {condition} ORDER BY {distance} LIMIT %s"
            params += [_vector(query), k]
            found = [(chunk_id, float(score)) for chunk_id, score in db.execute(sql, params)]
        return sorted(found, key=lambda hit: -hit[1])  # an iterative scan is relaxed-order


def _put_meta(db: psycopg.Connection[Any], kb: int, values: dict[str, str]) -> None:
    db.execute(
        "UPDATE knowledge_bases SET meta = meta || %s::jsonb WHERE kb_id = %s",
        (json.dumps(values, ensure_ascii=False), kb),
    )


def _ensure_vector_index(db: psycopg.Connection[Any], kb: int, dim: int) -> None:
    """The knowledge base's HNSW index over vectors of ``dim`` dimensions (one per knowledge
    base: a partial expression index, as pgvector suggests for mixed dimensions)."""
    row = db.execute(
        "SELECT meta ->> 'vector_index_dim' FROM knowledge_bases WHERE kb_id = %s", (kb,)
    ).fetchone()
    if row is not None and row[0] == str(dim):
        return
    db.execute(f"DROP INDEX IF EXISTS {_vector_index(kb)}")
    db.execute(
        f"CREATE INDEX {_vector_index(kb)} ON chunks USING hnsw"
        f" ((embedding::vector({int(dim)})) vector_ip_ops) WHERE kb_id = {int(kb)}"
    )
    _put_meta(db, kb, {"vector_index_dim": str(dim)})


def _delete_documents(db: psycopg.Connection[Any], kb: int, doc_ids: list[str]) -> int:
    """Delete documents, their chunks and their terms, keeping the BM25 statistics."""
    if not doc_ids:
        return 0
    db.execute(
        "WITH gone AS (SELECT t.term, count(*) AS n FROM chunk_terms t"
        " JOIN chunks c ON c.id = t.chunk WHERE c.kb_id = %s AND c.doc_id = ANY(%s)"
        " GROUP BY t.term ORDER BY t.term)"
        " UPDATE terms SET df = terms.df - gone.n FROM gone"
        " WHERE terms.kb_id = %s AND terms.term = gone.term",
        (kb, doc_ids, kb),
    )
    db.execute(
        "UPDATE knowledge_bases k SET chunks = k.chunks - gone.n, terms = k.terms - gone.t"
        " FROM (SELECT count(*) AS n, coalesce(sum(n_terms), 0) AS t FROM chunks"
        "  WHERE kb_id = %s AND doc_id = ANY(%s)) gone WHERE k.kb_id = %s",
        (kb, doc_ids, kb),
    )
    cursor = db.execute(
        "DELETE FROM documents WHERE kb_id = %s AND doc_id = ANY(%s)", (kb, doc_ids)
    )
    return cursor.rowcount


def _insert_document(db: psycopg.Connection[Any], kb: int, write: DocumentWrite) -> None:
    db.execute(
        "INSERT INTO documents VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (kb, *document_row(write)),
    )
    if not write.chunks:
        return
    assert write.vectors is not None
    _ensure_vector_index(db, kb, int(write.vectors.shape[1]))
    ids = [
        row[0]
        for row in db.execute(
            "SELECT nextval('chunks_id_seq') FROM generate_series(1, %s)", (len(write.chunks),)
        ).fetchall()
    ]
    with db.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO chunks (id, kb_id, chunk_id, doc_id, ordinal, text, headings,"
            " page_start, page_end, embedding, n_terms)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    row_id,
                    kb,
                    chunk.chunk_id,
                    write.doc_id,
                    chunk.ordinal,
                    chunk.text,
                    json.dumps(list(chunk.headings), ensure_ascii=False),
                    chunk.page_start,
                    chunk.page_end,
                    _vector(vector),
                    len(chunk.terms),
                )
                for row_id, chunk, vector in zip(ids, write.chunks, write.vectors, strict=True)
            ],
        )
    _insert_terms(db, kb, [(row_id, c.terms) for row_id, c in zip(ids, write.chunks, strict=True)])
    db.execute(
        "UPDATE knowledge_bases SET chunks = chunks + %s, terms = terms + %s WHERE kb_id = %s",
        (len(write.chunks), sum(len(c.terms) for c in write.chunks), kb),
    )


def _insert_terms(
    db: psycopg.Connection[Any], kb: int, chunks: Sequence[tuple[int, Sequence[str]]]
) -> None:
    """Index chunks' terms (by row id) and count each term's document frequency."""
    frequency: Counter[str] = Counter()
    with db.cursor() as cursor:
        with cursor.copy("COPY chunk_terms (kb_id, term, chunk, tf, dl) FROM STDIN") as copy:
            for row_id, words in chunks:
                counts = Counter(words)
                frequency.update(counts.keys())
                for term, tf in counts.items():
                    copy.write_row((kb, term, row_id, tf, len(words)))
        if frequency:
            cursor.execute(
                "INSERT INTO terms (kb_id, term, df)"
                " SELECT %s, term, df FROM unnest(%s::text[], %s::int[]) AS u(term, df)"
                " ORDER BY term"
                " ON CONFLICT (kb_id, term) DO UPDATE SET df = terms.df + excluded.df",
                (kb, list(frequency), list(frequency.values())),
            )


def _idf(chunks: int, df: int) -> float:
    """FTS5's IDF: never below a tiny positive value."""
    return max(math.log((chunks - df + 0.5) / (df + 0.5)), 1e-6)


def _vector(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def glob_regex(pattern: str) -> str:
    """A SQLite GLOB pattern (``*``, ``?``, ``[...]``, ``[^...]``; case-sensitive) as an
    anchored POSIX regular expression."""
    out, i = ["^"], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out) + "$"


def _filter_sql(where: SearchFilter) -> tuple[str, list[Any]]:
    """A condition over ``documents d`` and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if where.doc_ids:
        clauses.append("d.doc_id = ANY(%s)")
        params.append(list(where.doc_ids))
    if where.source_glob:
        clauses.append("d.source ~ %s")
        params.append(glob_regex(where.source_glob))
    for key, value in where.meta:
        clauses.append("d.meta -> %s = %s::jsonb")
        params += [key, json.dumps(value, ensure_ascii=False)]
    return " AND ".join(clauses) or "true", params
