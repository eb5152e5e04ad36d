"""The Store protocol and the records written through it.

A store holds one knowledge base: documents, chunks with their vectors, and a BM25 index,
updated in transactions: a :class:`DocumentStore` with a :class:`KeywordIndex` and a
:class:`VectorIndex`. Implementations: :class:`streamrag.store.sqlite.SQLiteStore` (embedded)
and :class:`streamrag.postgres.store.PostgresStore`; tests/test_store_contract.py holds both to
the same contract.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from streamrag.records import Chunk, DocumentInfo

# A BM25 query keeps its MAX_QUERY_TERMS rarest terms, drops terms found in more than
# COMMON_TERM_SHARE of the chunks (FTS5 gives a term in over half the chunks an IDF of ~0
# anyway), and stops adding terms, rarest first, once they would make it read more than
# MAX_QUERY_POSTINGS postings: common terms cost most of the query time on large stores. A
# Chinese question of 20 characters has ~35 terms (characters and bigrams); on rgb-zh-int
# (5k chunks), MRR@10 with 32 terms and a 0.25 share is 0.624, with these limits 0.641, the
# same as with every term; at 100k chunks the postings budget keeps a query's cost bounded.
MAX_QUERY_TERMS = 64
COMMON_TERM_SHARE = 0.5
MAX_QUERY_POSTINGS = 40_000
# FTS5's bm25() defaults, which PostgresStore's SQL and the tuning's in-memory BM25 use too.
BM25_K1, BM25_B = 1.2, 0.75

CHUNK_COLUMNS = (
    "c.chunk_id, c.doc_id, c.ordinal, c.text, c.headings, c.page_start, c.page_end, "
    "d.title, d.source"
)
"""What :func:`chunk_from_row` reads, over ``chunks c`` joined to ``documents d``."""


def utc_now() -> str:
    """The current UTC time as stores record it: ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class ChunkWrite:
    """A chunk as the ingest pipeline hands it to the store."""

    chunk_id: str
    ordinal: int
    text: str
    headings: tuple[str, ...]
    page_start: int | None
    page_end: int | None
    terms: list[str]


@dataclass(frozen=True, slots=True)
class DocumentWrite:
    """A whole document, replacing any stored version of it."""

    doc_id: str
    title: str
    source: str
    content_hash: str
    pipeline: str
    size: int
    chunks: list[ChunkWrite]
    meta: dict[str, Any] = field(default_factory=dict)
    vectors: np.ndarray | None = None  # one normalized row per chunk; required to write


def document_row(write: DocumentWrite) -> tuple[Any, ...]:
    """A document's columns as both stores keep them: id, title, source, content hash,
    pipeline, metadata (JSON text), size, chunk count, when it was written."""
    return (
        write.doc_id,
        write.title,
        write.source,
        write.content_hash,
        write.pipeline,
        json.dumps(write.meta, ensure_ascii=False),
        write.size,
        len(write.chunks),
        utc_now(),
    )


def chunk_from_row(row: Sequence[Any]) -> Chunk:
    """A chunk from the columns of :data:`CHUNK_COLUMNS` (headings as JSON text)."""
    chunk_id, doc_id, ordinal, text, headings, page_start, page_end, title, source = row
    return Chunk(
        chunk_id=chunk_id,
        doc_id=doc_id,
        ordinal=ordinal,
        text=text,
        headings=tuple(json.loads(headings)),
        page_start=page_start,
        page_end=page_end,
        title=title,
        source=source,
    )


def rarest_terms(known: Iterable[str], frequency: Mapping[str, int], chunks: int) -> list[str]:
    """Of the ``known`` query terms, those worth a BM25 query, rarest first: at most
    MAX_QUERY_TERMS, none in more than COMMON_TERM_SHARE of the ``chunks`` unless all are
    (then the rarest), and no more than MAX_QUERY_POSTINGS postings in all (but at least
    one term). ``frequency``: each term's chunk count (missing: 0)."""
    ordered = sorted(known, key=lambda term: frequency.get(term, 0))
    selective = [t for t in ordered if frequency.get(t, 0) <= COMMON_TERM_SHARE * chunks]
    kept: list[str] = []
    postings = 0
    for term in (selective or ordered[:1])[:MAX_QUERY_TERMS]:
        postings += frequency.get(term, 0)
        if kept and postings > MAX_QUERY_POSTINGS:
            break
        kept.append(term)
    return kept


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Restrict a search to some documents: by id, by source path glob, by metadata values."""

    doc_ids: tuple[str, ...] = ()
    source_glob: str | None = None
    meta: tuple[tuple[str, Any], ...] = ()

    def is_empty(self) -> bool:
        return not (self.doc_ids or self.source_glob or self.meta)


class DocumentStore(Protocol):
    """A knowledge base's documents and chunks, replaced whole in transactions."""

    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, values: dict[str, str]) -> None: ...
    def document_states(self, doc_ids: Iterable[str]) -> dict[str, tuple[str, str]]: ...
    def doc_ids_by_source(self, source: str) -> list[str]: ...
    def sources(self) -> list[str]: ...
    def list_documents(self) -> list[DocumentInfo]: ...
    def count(self) -> tuple[int, int]: ...
    def write_documents(
        self, writes: Sequence[DocumentWrite], delete: Iterable[str] = ()
    ) -> None: ...
    def delete_documents(self, doc_ids: Iterable[str]) -> int: ...
    def get_chunks(self, chunk_ids: Sequence[str]) -> dict[str, Chunk]: ...
    def get_chunk(self, chunk_id: str) -> Chunk | None: ...
    def iter_chunks(self, batch: int = 256) -> Iterable[list[Chunk]]: ...
    def close(self) -> None: ...


class KeywordIndex(Protocol):
    """BM25 over each chunk's terms (from :func:`streamrag.retrieve.tokenize.tokenize`)."""

    def replace_terms(self, terms: dict[str, list[str]], meta: dict[str, str]) -> None: ...
    def keyword_search(
        self, terms: Sequence[str], k: int, where: SearchFilter | None = None
    ) -> list[tuple[str, float]]: ...


class VectorIndex(Protocol):
    """Nearest chunks by cosine similarity of normalized vectors."""

    def replace_vectors(self, vectors: dict[str, np.ndarray], meta: dict[str, str]) -> None: ...
    def get_vectors(self, chunk_ids: Sequence[str]) -> dict[str, np.ndarray]: ...
    def vector_search(
        self, query: np.ndarray, k: int, where: SearchFilter | None = None
    ) -> list[tuple[str, float]]: ...


class Store(DocumentStore, KeywordIndex, VectorIndex, Protocol):
    """One knowledge base: what ingestion and retrieval need. Search results and chunk
    lookups are keyed by ``chunk_id``, best first."""
