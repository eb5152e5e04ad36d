"""Plain records passed between the ingest pipeline, the store and retrieval."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def context_of(title: str, headings: tuple[str, ...]) -> str:
    """``title > heading > subheading``, without a first heading that repeats the title."""
    parts = [part for part in (title, *headings) if part]
    if len(parts) > 1 and parts[0] == parts[1]:
        parts.pop(0)
    return " > ".join(parts)


def indexed_text(title: str, headings: tuple[str, ...], text: str) -> str:
    """A chunk's text with its context line, as embedded and indexed."""
    context = context_of(title, headings)
    return f"{context}\n{text}" if context else text


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """A stored document, as listed by ``kb docs``."""

    doc_id: str
    title: str
    source: str
    content_hash: str
    pipeline: str
    size: int
    n_chunks: int
    ingested_at: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KnowledgeBaseInfo:
    """A knowledge base as ``kb list`` shows it."""

    name: str
    location: str  # its file, or the database that holds it (without a password)
    documents: int
    chunks: int
    embed_model: str | None
    fusion: str  # how its hybrid search fuses, and how that was chosen
    size_bytes: int
    updated_at: str  # when it last changed (ISO 8601, UTC)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A stored chunk: the unit that is embedded, indexed, retrieved and cited."""

    chunk_id: str
    doc_id: str
    ordinal: int
    text: str
    headings: tuple[str, ...]
    page_start: int | None
    page_end: int | None
    title: str
    source: str

    @property
    def location(self) -> str:
        """Where the chunk stands: the page(s) of a PDF, the heading path of a text."""
        parts = []
        if self.page_start is not None:
            if self.page_end not in (None, self.page_start):
                parts.append(f"pp. {self.page_start}-{self.page_end}")
            else:
                parts.append(f"p. {self.page_start}")
        if self.headings:
            parts.append(" > ".join(self.headings))
        return ", ".join(parts)

    @property
    def context(self) -> str:
        """Title and heading path, prefixed to the text for embedding and BM25."""
        return context_of(self.title, self.headings)

    @property
    def indexed_text(self) -> str:
        """The text that was embedded and indexed for BM25."""
        return indexed_text(self.title, self.headings, self.text)


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A retrieved chunk with its fused score and the per-mode evidence behind it."""

    chunk: Chunk
    score: float
    rank: int
    vector_score: float | None = None
    bm25_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        c = self.chunk
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            "chunk_id": c.chunk_id,
            "doc_id": c.doc_id,
            "title": c.title,
            "source": c.source,
            "location": c.location,
            "headings": list(c.headings),
            "page_start": c.page_start,
            "page_end": c.page_end,
            "text": c.text,
            "vector_score": None if self.vector_score is None else round(self.vector_score, 6),
            "bm25_score": None if self.bm25_score is None else round(self.bm25_score, 6),
        }
