"""Knowledge bases: named stores of the configured backend, with ingest and search.

>>> kb = KnowledgeBase("docs")
>>> kb.ingest(["./handbook"])
>>> kb.search("退货政策是什么？", k=3)
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from streamrag.backends import Backend, open_backend
from streamrag.config import Settings, load_settings
from streamrag.embed import LOCAL_MODELS, Embedder, make_embedder
from streamrag.errors import DocumentNotFound, EmbeddingModelMismatch, KnowledgeBaseNotFound
from streamrag.ingest.loaders import Origin
from streamrag.ingest.pipeline import IngestEvent, IngestReport, ingest
from streamrag.moderation import KB_RULES_META, ModerationCheck, Rules, load_rules, rules_for
from streamrag.names import check_kb_name
from streamrag.records import DocumentInfo, KnowledgeBaseInfo
from streamrag.retrieve.fusion import DEFAULT_FUSION
from streamrag.retrieve.rerank import APIReranker, reranker_from
from streamrag.retrieve.retriever import Mode, Retriever, SearchResults
from streamrag.retrieve.tokenize import TOKENIZER_VERSION, tokenize
from streamrag.retrieve.tuning import Tuning, tune
from streamrag.store import SearchFilter, Store

_EMBEDDERS: dict[tuple[object, ...], Embedder] = {}
_EMBEDDERS_LOCK = threading.Lock()


@contextmanager
def _backend(settings: Settings | None, backend: Backend | None) -> Iterator[Backend]:
    """``backend``, or the configured one opened for this call."""
    if backend is not None:
        yield backend
        return
    opened = open_backend(settings or load_settings())
    try:
        yield opened
    finally:
        opened.close()


def shared_embedder(settings: Settings, model: str | None = None) -> Embedder:
    """One embedder per model and endpoint for the whole process (models load once)."""
    model = model or settings.embed_model
    key = (model, settings.embed_base_url, settings.embed_api_key, settings.embed_threads)
    with _EMBEDDERS_LOCK:
        if key not in _EMBEDDERS:
            _EMBEDDERS[key] = make_embedder(settings.model_copy(update={"embed_model": model}))
        return _EMBEDDERS[key]


def list_knowledge_bases(
    settings: Settings | None = None, backend: Backend | None = None
) -> list[KnowledgeBaseInfo]:
    with _backend(settings, backend) as opened:
        return opened.catalog.list()


def knowledge_base_exists(
    name: str, settings: Settings | None = None, backend: Backend | None = None
) -> bool:
    with _backend(settings, backend) as opened:
        return opened.catalog.exists(name)


def drop_knowledge_base(
    name: str, settings: Settings | None = None, backend: Backend | None = None
) -> None:
    """Delete a knowledge base with its documents (and uploaded files)."""
    with _backend(settings, backend) as opened:
        if not opened.catalog.drop(name):
            raise KnowledgeBaseNotFound(f"no knowledge base named {name!r}")
        opened.uploads.drop(name)


class KnowledgeBase:
    """A named knowledge base: ingest files, search them, list and remove documents.

    ``settings`` defaults to the environment / ``.env`` / config file; ``backend`` to the
    one they configure (opened here and closed by :meth:`close`). With ``create=False`` a
    missing knowledge base raises :class:`KnowledgeBaseNotFound`.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        settings: Settings | None = None,
        embedder: Embedder | None = None,
        backend: Backend | None = None,
        create: bool = True,
    ) -> None:
        self.settings = settings or load_settings()
        self.name = check_kb_name(name or self.settings.kb)
        self._owns_backend = backend is None
        self.backend = backend or open_backend(self.settings)
        catalog = self.backend.catalog
        self._created = not catalog.exists(self.name)
        if self._created and not create:
            self._close_backend()
            raise KnowledgeBaseNotFound(
                f"no knowledge base named {self.name!r}"
                " (create it with 'streamrag ingest PATH --kb NAME')"
            )
        self.store: Store = catalog.open(self.name)
        self._embedder = embedder
        if self.store.get_meta("bm25_tokenizer") != TOKENIZER_VERSION:
            self._rebuild_keyword_index()

    def _rebuild_keyword_index(self) -> None:
        """Re-derive every chunk's BM25 terms from its stored text (the tokenizer changed)."""
        terms = {
            chunk.chunk_id: tokenize(chunk.indexed_text)
            for batch in self.store.iter_chunks()
            for chunk in batch
        }
        self.store.replace_terms(terms, {"bm25_tokenizer": TOKENIZER_VERSION})

    # -- embedding model -----------------------------------------------------------------

    @property
    def embed_model(self) -> str | None:
        """The embedding model this knowledge base was built with (None while empty)."""
        return self.store.get_meta("embed_model")

    @functools.cached_property
    def embedder(self) -> Embedder:
        """The embedder to use here; refuses one that differs from the stored vectors'."""
        recorded = self.embed_model
        embedder = self._embedder
        if embedder is None:
            explicit = "embed_model" in self.settings.model_fields_set
            use_recorded = recorded in LOCAL_MODELS and not explicit
            embedder = shared_embedder(self.settings, recorded if use_recorded else None)
        if recorded is not None and recorded != embedder.name:
            raise EmbeddingModelMismatch(
                f"knowledge base {self.name!r} was built with embedding model {recorded!r} "
                f"({self.store.get_meta('embed_dim')}-d) but {embedder.name!r} is configured; "
                f"use --embed-model {recorded.removeprefix('api:')} (or the matching "
                f"STREAMRAG_EMBED_* settings), or re-embed with "
                f"'streamrag kb reembed {self.name}'"
            )
        return embedder

    def _bind_embedder(self) -> Embedder:
        embedder = self.embedder
        if self.embed_model is None:
            self.store.set_meta({"embed_model": embedder.name, "embed_dim": str(embedder.dim)})
        return embedder

    def reembed(self, embedder: Embedder | None = None) -> int:
        """Re-embed every chunk with ``embedder`` (default: the configured one), atomically."""
        embedder = embedder or shared_embedder(self.settings)
        vectors: dict[str, np.ndarray] = {}
        for batch in self.store.iter_chunks(self.settings.embed_batch_size):
            texts = [chunk.indexed_text for chunk in batch]
            for chunk, vector in zip(batch, embedder.embed_documents(texts), strict=True):
                vectors[chunk.chunk_id] = vector
        self.store.replace_vectors(
            vectors, {"embed_model": embedder.name, "embed_dim": str(embedder.dim)}
        )
        self.__dict__.pop("embedder", None)
        self._embedder = embedder
        return len(vectors)

    # -- ingest --------------------------------------------------------------------------

    def ingest_events(
        self,
        paths: Iterable[str | Path],
        *,
        sync: bool = False,
        origins: Mapping[Path, Origin] | None = None,
    ) -> Iterator[IngestEvent]:
        """Ingest files and folders, yielding progress events as they happen. ``origins``
        gives some files (by resolved path) another document id and source than their
        path (uploads)."""
        embedder = self._bind_embedder()
        changed = False  # then the fusion is chosen again if the chunk count moved enough
        for event in ingest(
            [Path(p).expanduser() for p in paths],
            self.store,
            embedder,
            chunk_size=self.settings.chunk_size,
            chunk_overlap=self.settings.chunk_overlap,
            batch_size=self.settings.embed_batch_size,
            sync=sync,
            exclude=self.settings.home.resolve(),
            origins=origins,
            check=ModerationCheck(self.moderation_rules()),
        ):
            changed = changed or event.kind in ("embedded", "removed")
            yield event
        chunks, tuning = self.store.count()[1], self.tuning
        if chunks and (tuning is None or (changed and tuning.is_stale(chunks))):
            tuning = self.tune()
            yield IngestEvent("tuned", count=tuning.queries, reason=str(tuning))

    def ingest(self, paths: Iterable[str | Path], *, sync: bool = False) -> IngestReport:
        """Ingest files and folders; see :meth:`ingest_events` for progress."""
        return IngestReport.collect(self.ingest_events(paths, sync=sync))

    # -- search --------------------------------------------------------------------------

    @functools.cached_property
    def retriever(self) -> Retriever:
        return self._retriever(self.embedder)

    @functools.cached_property
    def _keyword_retriever(self) -> Retriever:
        """BM25 alone: no embedding model is loaded for it."""
        return self._retriever(None)

    def _retriever(self, embedder: Embedder | None) -> Retriever:
        tuning = self.tuning
        return Retriever(
            self.store,
            embedder,
            fusion=tuning.fusion if tuning else DEFAULT_FUSION,
            reranker=self.reranker,
            rerank_candidates=self.settings.rerank_top_n,
        )

    def moderation_rules(self) -> Rules:
        """The moderation rules here: the deployment's, then this knowledge base's own."""
        return rules_for(self.settings, self.store.get_meta(KB_RULES_META))

    def set_moderation_rules(self, path: Path | None) -> Rules:
        """Give this knowledge base its own rules file (checked now; None: none), and return
        the rules it now answers under. Documents are checked again at their next ingest."""
        if path is not None:
            path = path.expanduser().resolve()
            load_rules(path)
        self.store.set_meta({KB_RULES_META: str(path) if path else ""})
        return self.moderation_rules()

    @property
    def tuning(self) -> Tuning | None:
        """How this knowledge base's fusion was chosen (None: never tuned, the default)."""
        stored = self.store.get_meta("fusion")
        return Tuning.from_json(stored) if stored else None

    def tune(self) -> Tuning:
        """Choose the fusion for this knowledge base's chunks, store it and use it from now
        on (see :mod:`streamrag.retrieve.tuning`)."""
        tuning = tune(self.store, self.embedder)
        self.store.set_meta({"fusion": tuning.to_json()})
        self.__dict__.pop("retriever", None)
        self.__dict__.pop("_keyword_retriever", None)
        return tuning

    @functools.cached_property
    def reranker(self) -> APIReranker | None:
        """The configured reranker (``rerank_base_url``), or None."""
        return reranker_from(self.settings)

    def search(
        self,
        query: str,
        k: int | None = None,
        mode: Mode = "hybrid",
        where: SearchFilter | None = None,
    ) -> SearchResults:
        """The ``k`` best chunks for ``query`` (see :meth:`Retriever.search`)."""
        k = k or self.settings.search_top_k
        if mode == "bm25":  # no embedding model is loaded for it
            return self._keyword_retriever.search(query, k, mode, where)
        if self.embed_model is None:  # nothing ingested yet
            return SearchResults()
        return self.retriever.search(query, k, mode, where)

    # -- documents -----------------------------------------------------------------------

    def documents(self) -> list[DocumentInfo]:
        return self.store.list_documents()

    def remove(self, doc: str, *, by_path: bool = True) -> int:
        """Remove a document by id, or (``by_path``) every document read from a path;
        return the count."""
        doc_ids = [doc] if self.store.document_states([doc]) else []
        if not doc_ids and by_path and "\x00" not in doc:
            source = str(Path(doc).expanduser().resolve())
            doc_ids = self.store.doc_ids_by_source(source)
        if not doc_ids:
            raise DocumentNotFound(f"no document {doc!r} in knowledge base {self.name!r}")
        return self.store.delete_documents(doc_ids)

    def close(self) -> None:
        """Close the store. A knowledge base this handle created and left without a document
        (an ingest where every file failed) is removed again: it never shows up empty."""
        empty = self._created and self.store.count()[0] == 0
        self.store.close()
        if self.__dict__.get("reranker") is not None:
            self.reranker.close()  # type: ignore[union-attr]
        if empty:
            self.backend.catalog.drop(self.name)
        self._close_backend()

    def _close_backend(self) -> None:
        if self._owns_backend:
            self.backend.close()

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
