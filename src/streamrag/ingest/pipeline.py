"""The ingest pipeline: files → documents → chunks → vectors → one transaction per batch.

:func:`ingest` is a plain iterator of :class:`IngestEvent` s, so the CLI can draw progress bars
and a server can stream progress, from the same run. Unchanged documents (same content hash and
chunking settings) are skipped. A batch of whole documents is written in one transaction, so a
killed run leaves every document either in its old or in its new state, and the next run
finishes the job.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from streamrag.embed import Embedder
from streamrag.errors import LoadError
from streamrag.ingest.chunker import ChunkDraft, chunk_blocks
from streamrag.ingest.loaders import LOADERS, LoadedDocument, LoadedFile, Origin, loader_for
from streamrag.records import indexed_text
from streamrag.retrieve.tokenize import tokenize
from streamrag.store import ChunkWrite, DocumentWrite, Store

CHUNKER_VERSION = "1"

log = logging.getLogger("streamrag.ingest")

EventKind = Literal[
    "found",  # count = files to read (each then "reading")
    "reading",  # a file is being read: path
    "planned",  # count = chunks to embed for a file just read
    "embedded",  # count = chunks embedded
    "file",  # a file is finished: status says how
    "removed",  # count = documents removed by --sync
    "tuned",  # the knowledge base's fusion was chosen: reason says which, count = queries
]
FileStatus = Literal["ingested", "unchanged", "failed", "ignored"]


@dataclass(frozen=True, slots=True)
class IngestEvent:
    """One step of an ingest run."""

    kind: EventKind
    count: int = 0
    path: str | None = None
    status: FileStatus | None = None
    reason: str | None = None  # why a file failed or was ignored; what moderation masked


@dataclass(slots=True)
class IngestReport:
    """What an ingest run did, summed up from its events."""

    ingested: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    chunks: int = 0
    removed: int = 0
    fusion: str | None = None  # the fusion chosen at the end, if it was chosen again
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @classmethod
    def collect(
        cls,
        events: Iterable[IngestEvent],
        observe: Callable[[IngestEvent], object] | None = None,
    ) -> IngestReport:
        """Drain ``events`` into a timed report, showing each to ``observe`` first."""
        started = time.perf_counter()
        report = cls()
        for event in events:
            if observe is not None:
                observe(event)
            report.add(event)
        report.seconds = time.perf_counter() - started
        return report

    def to_dict(self) -> dict[str, Any]:
        return {
            "ingested": self.ingested,
            "unchanged": self.unchanged,
            "failed": [{"path": path, "reason": reason} for path, reason in self.failed],
            "ignored": self.ignored,
            "chunks": self.chunks,
            "removed": self.removed,
            "fusion": self.fusion,
            "seconds": round(self.seconds, 3),
        }

    def add(self, event: IngestEvent) -> None:
        if event.kind == "embedded":
            self.chunks += event.count
        elif event.kind == "removed":
            self.removed += event.count
        elif event.kind == "tuned":
            self.fusion = event.reason
        elif event.kind == "file" and event.path is not None:
            if event.status == "failed":
                self.failed.append((event.path, event.reason or "failed"))
            elif event.status == "ingested":
                self.ingested.append(event.path)
            elif event.status == "unchanged":
                self.unchanged.append(event.path)
            elif event.status == "ignored":
                self.ignored.append(event.path)


@dataclass(slots=True)
class _Entry:
    """A document waiting for its vectors, or the end of a file (``write`` None)."""

    write: DocumentWrite | None = None
    texts: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    done: IngestEvent | None = None


@dataclass(slots=True)
class _Pending:
    """Entries in file order; ``vectors`` holds the embeddings of their first texts.

    Texts are embedded in full batches as they come; entries whose texts all have vectors
    are written together once there are ``commit_every`` chunks of them (or at the end);
    entries with nothing to embed (unchanged files) are passed on at once.
    """

    entries: list[_Entry] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # texts of all entries, in order


class DocumentCheck(Protocol):
    """A check of each document before it is chunked (moderation): it returns the document
    to store and a note for the report, or raises :class:`LoadError` to refuse it."""

    fingerprint: str  # what decides its result besides the document ("" when it does nothing)

    def __call__(self, doc: LoadedDocument) -> tuple[LoadedDocument, str | None]: ...


def pipeline_fingerprint(chunk_size: int, chunk_overlap: int, check: str = "") -> str:
    """What besides the content decides a document's chunks; a change re-chunks it."""
    fingerprint = f"chunker={CHUNKER_VERSION};size={chunk_size};overlap={chunk_overlap}"
    return f"{fingerprint};check={check}" if check else fingerprint


def discover(
    paths: Iterable[Path], exclude: Path | None = None
) -> Iterator[tuple[Path, str | None]]:
    """Files to read, each with None, or with why it is skipped.

    Named files are always yielded (an unsupported type is then an error); inside folders,
    hidden entries and anything under ``exclude`` (the data directory) are passed over and
    unsupported types are yielded as ignored.
    """
    supported = ", ".join(sorted(LOADERS))
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                relative = child.relative_to(path).parts
                if any(part.startswith(".") for part in relative) or not child.is_file():
                    continue
                if exclude is not None and child.resolve().is_relative_to(exclude):
                    continue
                yield child.resolve(), None if loader_for(child) else "ignored"
        elif path.is_file():
            reason = (
                None
                if loader_for(path)
                else (f"unsupported file type {path.suffix or '(none)'!r}; supported: {supported}")
            )
            yield path.resolve(), reason
        else:
            yield path.absolute(), "no such file or directory"


def chunk_id(doc_id: str, occurrence: int, text: str) -> str:
    """A stable id from the document and the chunk's text (and which repeat of it this is)."""
    digest = hashlib.sha256(f"{doc_id}\x00{occurrence}\x00{text}".encode()).hexdigest()
    return digest[:24]


def ingest(
    paths: Sequence[Path],
    store: Store,
    embedder: Embedder,
    *,
    chunk_size: int,
    chunk_overlap: int,
    batch_size: int = 32,
    commit_every: int = 64,
    sync: bool = False,
    exclude: Path | None = None,
    origins: Mapping[Path, Origin] | None = None,
    check: DocumentCheck | None = None,
) -> Iterator[IngestEvent]:
    """Ingest ``paths`` into ``store``, yielding progress events; see the module docstring.

    ``origins`` records the documents of some files (by resolved path) under another id and
    source than their path: uploaded files. Events name a file by its source. ``check`` sees
    each new or changed document first (a refused one is the file's problem).
    """
    pipeline = pipeline_fingerprint(chunk_size, chunk_overlap, check.fingerprint if check else "")
    candidates = list(discover(paths, exclude))
    yield IngestEvent("found", count=sum(1 for _, why in candidates if why is None))
    pending = _Pending()
    seen_sources: set[str] = set()
    for path, why in candidates:
        origin = (origins or {}).get(path) or Origin.of(path)
        source = origin.source
        seen_sources.add(source)
        if why is not None:
            status: FileStatus = "ignored" if why == "ignored" else "failed"
            yield IngestEvent("file", path=source, status=status, reason=why)
            continue
        yield IngestEvent("reading", path=source)
        try:
            loaded = _load(path, origin)
        except LoadError as exc:
            yield IngestEvent("file", path=source, status="failed", reason=str(exc))
            continue
        states = store.document_states(doc.doc_id for doc in loaded.documents)
        fresh = [
            doc
            for doc in loaded.documents
            if states.get(doc.doc_id) != (doc.content_hash, pipeline)
        ]
        kept_ids = {doc.doc_id for doc in loaded.documents}
        stale = [i for i in store.doc_ids_by_source(source) if i not in kept_ids]
        notes: list[str] = []
        for doc in fresh:
            if check is not None:
                try:
                    doc, note = check(doc)
                except LoadError as exc:
                    several = len(loaded.documents) > 1
                    loaded.problems.append(f"{doc.doc_id}: {exc}" if several else str(exc))
                    stale.append(doc.doc_id)
                    continue
                notes += [note] if note else []
            drafts = chunk_blocks(doc.blocks, chunk_size, chunk_overlap)
            if not drafts:
                continue
            write, texts = _prepare(doc, drafts, pipeline)
            pending.entries.append(_Entry(write, texts))
            pending.texts += texts
            yield IngestEvent("planned", count=len(texts))
            yield from _advance(pending, store, embedder, batch_size, commit_every)
        if loaded.problems:
            reason = "; ".join(loaded.problems[:5])
            if len(loaded.problems) > 5:
                reason += f"; and {len(loaded.problems) - 5} more"
            done = IngestEvent("file", path=source, status="failed", reason=reason)
        else:
            status = "ingested" if fresh or not loaded.documents else "unchanged"
            note = "; ".join(notes) or None
            done = IngestEvent("file", path=source, status=status, reason=note)
        pending.entries.append(_Entry(delete=stale, done=done))
        yield from _advance(pending, store, embedder, batch_size, commit_every)
    yield from _advance(pending, store, embedder, batch_size, commit_every, final=True)
    if sync:
        roots = [p.absolute() for p in paths]
        gone = [
            doc_id
            for source in store.sources()
            if source not in seen_sources and _under(Path(source), roots)
            for doc_id in store.doc_ids_by_source(source)
        ]
        if gone:
            store.delete_documents(gone)
        yield IngestEvent("removed", count=len(gone))


def _load(path: Path, origin: Origin) -> LoadedFile:
    """Read one file; whatever goes wrong is this file's :class:`LoadError`, never the run's."""
    loader = loader_for(path)
    assert loader is not None
    try:
        return loader(origin, path.read_bytes())
    except LoadError:
        raise
    except OSError as exc:
        raise LoadError(exc.strerror or str(exc)) from exc
    except MemoryError as exc:
        raise LoadError("the file needs more memory than is available to read") from exc
    except Exception as exc:  # a parser's own error: this file is unreadable
        log.info("could not read %s", origin.source, exc_info=True)
        kind = path.suffix.lower().lstrip(".").upper() or "file"
        raise LoadError(f"unreadable {kind} ({type(exc).__name__}: {exc})") from exc


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _prepare(
    doc: LoadedDocument, drafts: list[ChunkDraft], pipeline: str
) -> tuple[DocumentWrite, list[str]]:
    """Build the document's write (vectors still missing) and the texts to embed."""
    occurrences: dict[str, int] = {}
    chunks: list[ChunkWrite] = []
    texts: list[str] = []
    for ordinal, draft in enumerate(drafts):
        occurrence = occurrences.get(draft.text, 0)
        occurrences[draft.text] = occurrence + 1
        indexed = indexed_text(doc.title, draft.headings, draft.text)
        texts.append(indexed)
        chunks.append(
            ChunkWrite(
                chunk_id=chunk_id(doc.doc_id, occurrence, draft.text),
                ordinal=ordinal,
                text=draft.text,
                headings=draft.headings,
                page_start=draft.page_start,
                page_end=draft.page_end,
                terms=tokenize(indexed),
            )
        )
    write = DocumentWrite(
        doc_id=doc.doc_id,
        title=doc.title,
        source=doc.source,
        content_hash=doc.content_hash,
        pipeline=pipeline,
        size=sum(len(block.text) for block in doc.blocks),
        chunks=chunks,
        meta=doc.meta,
    )
    return write, texts


def _advance(
    pending: _Pending,
    store: Store,
    embedder: Embedder,
    batch_size: int,
    commit_every: int,
    final: bool = False,
) -> Iterator[IngestEvent]:
    """Embed the full batches that are waiting, then write the entries that are complete."""
    while len(pending.texts) - len(pending.vectors) >= (1 if final else batch_size):
        start = len(pending.vectors)
        batch = pending.texts[start : start + batch_size]
        pending.vectors.extend(embedder.embed_documents(batch))
        yield IngestEvent("embedded", count=len(batch))
    ready, chunks, embedded = 0, 0, len(pending.vectors)
    for entry in pending.entries:
        if chunks + len(entry.texts) > embedded:
            break
        ready += 1
        chunks += len(entry.texts)
    if not ready or not (final or chunks >= commit_every or chunks == 0):
        return
    entries = pending.entries[:ready]
    writes, position = [], 0
    for entry in entries:
        if entry.write is not None:
            end = position + len(entry.texts)
            writes.append(replace(entry.write, vectors=np.stack(pending.vectors[position:end])))
            position = end
    deletes = [doc_id for entry in entries for doc_id in entry.delete]
    if writes or deletes:
        store.write_documents(writes, delete=deletes)
    del pending.entries[:ready], pending.vectors[:chunks], pending.texts[:chunks]
    yield from (entry.done for entry in entries if entry.done is not None)
