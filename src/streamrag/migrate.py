"""Copy knowledge bases and history from one backend to another
(``streamrag kb migrate --to postgresql://…``).

Documents are copied whole with their chunks, vectors and metadata (nothing is re-embedded);
the BM25 terms are derived again from the chunk text by this version's tokenizer. A document
the target already holds with the same content is skipped, so a copy that stopped half-way
is finished by running it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from streamrag.backends import Backend
from streamrag.errors import EmbeddingModelMismatch, KnowledgeBaseNotFound
from streamrag.records import Chunk, DocumentInfo
from streamrag.retrieve.tokenize import TOKENIZER_VERSION, tokenize
from streamrag.store import ChunkWrite, DocumentWrite, Store

COPIED_META = ("embed_model", "embed_dim")
_DOCUMENTS_PER_WRITE = 50


@dataclass(frozen=True, slots=True)
class Copied:
    """What one step of a migration copied."""

    kind: str  # "documents" (of a knowledge base) or "runs"
    name: str  # the knowledge base, or "history"
    copied: int
    skipped: int


def copy_knowledge_base(source: Backend, target: Backend, name: str) -> Copied:
    """Copy knowledge base ``name`` into ``target`` (created there if needed)."""
    if not source.catalog.exists(name):
        raise KnowledgeBaseNotFound(f"no knowledge base named {name!r} to migrate")
    origin, copy = source.catalog.open(name), target.catalog.open(name)
    try:
        model = origin.get_meta("embed_model")
        recorded = copy.get_meta("embed_model")
        if recorded is not None and recorded != model:
            raise EmbeddingModelMismatch(
                f"the target's knowledge base {name!r} holds vectors of {recorded!r}, not of "
                f"{model!r}: drop it there first"
            )
        meta = {key: value for key in COPIED_META if (value := origin.get_meta(key))}
        copy.set_meta({**meta, "bm25_tokenizer": TOKENIZER_VERSION})  # terms derived anew
        documents = origin.list_documents()
        present = copy.document_states(d.doc_id for d in documents)
        todo = [d for d in documents if present.get(d.doc_id) != (d.content_hash, d.pipeline)]
        chunk_ids: dict[str, list[str]] = {}
        for batch in origin.iter_chunks():
            for chunk in batch:
                chunk_ids.setdefault(chunk.doc_id, []).append(chunk.chunk_id)
        for start in range(0, len(todo), _DOCUMENTS_PER_WRITE):
            part = todo[start : start + _DOCUMENTS_PER_WRITE]
            copy.write_documents(list(_writes(origin, part, chunk_ids)))
        return Copied("documents", name, len(todo), len(documents) - len(todo))
    finally:
        origin.close()
        copy.close()


def _writes(
    origin: Store, documents: list[DocumentInfo], chunk_ids: dict[str, list[str]]
) -> Iterator[DocumentWrite]:
    ids = [chunk_id for d in documents for chunk_id in chunk_ids.get(d.doc_id, [])]
    chunks, vectors = origin.get_chunks(ids), origin.get_vectors(ids)
    for document in documents:
        own = sorted((chunks[c] for c in chunk_ids.get(document.doc_id, [])), key=_ordinal)
        yield DocumentWrite(
            doc_id=document.doc_id,
            title=document.title,
            source=document.source,
            content_hash=document.content_hash,
            pipeline=document.pipeline,
            size=document.size,
            meta=document.meta,
            chunks=[
                ChunkWrite(
                    c.chunk_id,
                    c.ordinal,
                    c.text,
                    c.headings,
                    c.page_start,
                    c.page_end,
                    tokenize(c.indexed_text),
                )
                for c in own
            ],
            vectors=np.stack([vectors[c.chunk_id] for c in own]) if own else np.empty((0, 0)),
        )


def _ordinal(chunk: Chunk) -> int:
    return chunk.ordinal


def copy_history(source: Backend, target: Backend) -> Copied:
    """Copy every session with its runs and their events; runs the target holds already
    (by id, ended) are skipped."""
    copied = skipped = 0
    for session in source.history.sessions(limit=2**31 - 1):
        for run in source.history.runs(session.session_id, limit=2**31 - 1):
            existing = target.history.get_run(run.run_id)
            if existing is not None and existing.finished:
                skipped += 1
                continue
            target.history.begin(run)
            target.history.append_events(run.run_id, source.history.events(run.run_id), run.answer)
            target.history.record(run)
            copied += 1
        target.history.rename_session(session.session_id, session.title)
    return Copied("runs", "history", copied, skipped)
