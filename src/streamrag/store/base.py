"""The Store protocol and the records written through it.

A store holds one knowledge base: documents, chunks with their vectors, and a BM25 index,
updated in transactions. The embedded default is :class:`streamrag.store.sqlite.SQLiteStore`;
a server engine implements the same methods.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from streamrag.records import Chunk, DocumentInfo


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


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """Restrict a search to some documents: by id, by source path glob, by metadata values."""

    doc_ids: tuple[str, ...] = ()
    source_glob: str | None = None
    meta: tuple[tuple[str, Any], ...] = ()

    def is_empty(self) -> bool:
        return not (self.doc_ids or self.source_glob or self.meta)

    def to_sql(self) -> tuple[str, list[Any]]:
        """A WHERE clause over ``documents d`` and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.doc_ids:
            clauses.append(f"d.doc_id IN ({','.join('?' * len(self.doc_ids))})")
            params += self.doc_ids
        if self.source_glob:
            clauses.append("d.source GLOB ?")
            params.append(self.source_glob)
        for key, value in self.meta:
            clauses.append("json_extract(d.meta, ?) = ?")
            params += ['$."' + key.replace('"', '\\"') + '"', value]
        return " AND ".join(clauses) or "1", params


class Store(Protocol):
    """What retrieval and ingestion need from a knowledge base's storage."""

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
    def get_chunks(self, ids: Sequence[int]) -> dict[int, Chunk]: ...
    def get_chunk(self, chunk_id: str) -> Chunk | None: ...
    def iter_chunks(self, batch: int = 256) -> Iterable[list[tuple[int, Chunk]]]: ...
    def replace_vectors(self, vectors: dict[int, np.ndarray], meta: dict[str, str]) -> None: ...
    def replace_terms(self, terms: dict[int, list[str]], meta: dict[str, str]) -> None: ...
    def keyword_search(
        self, terms: Sequence[str], k: int, where: SearchFilter | None = None
    ) -> list[tuple[int, float]]: ...
    def vector_search(
        self, query: np.ndarray, k: int, where: SearchFilter | None = None
    ) -> list[tuple[int, float]]: ...
    def close(self) -> None: ...
