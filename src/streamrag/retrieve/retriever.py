"""Search a knowledge base by vector, by BM25, or both fused (the default); then, with a
reranker, its order of the best candidates."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Literal, get_args

from streamrag.embed import Embedder
from streamrag.records import SearchHit
from streamrag.retrieve.fusion import DEFAULT_FUSION, Fusion
from streamrag.retrieve.rerank import Reranker, RerankError
from streamrag.retrieve.tokenize import tokenize
from streamrag.store import SearchFilter, Store

Mode = Literal["hybrid", "vector", "bm25"]
MODES: tuple[str, ...] = get_args(Mode)

# BM25 runs here while the calling thread embeds the query (both release the GIL).
_KEYWORD_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="streamrag-bm25")

log = logging.getLogger("streamrag.retrieve")


class SearchResults(list[SearchHit]):
    """Ranked hits, best first; ``degraded`` says why a search fell back (to BM25 alone, or
    to the fused order), None when it did not; ``rerank_ms``: the reranker's time."""

    degraded: str | None = None
    rerank_ms: float | None = None


class Retriever:
    """Ranks a store's chunks for a query.

    ``candidates`` is how deep each ranking is read before ``fusion`` (and at least ``k``); a
    ``reranker`` reorders the best ``rerank_candidates`` of the result.
    """

    def __init__(
        self,
        store: Store,
        embedder: Embedder | None,
        candidates: int = 50,
        *,
        fusion: Fusion = DEFAULT_FUSION,
        reranker: Reranker | None = None,
        rerank_candidates: int = 20,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.candidates = candidates
        self.fusion = fusion
        self.reranker = reranker
        self.rerank_candidates = rerank_candidates

    def search(
        self,
        query: str,
        k: int = 5,
        mode: Mode = "hybrid",
        where: SearchFilter | None = None,
    ) -> SearchResults:
        """The ``k`` best chunks. A hybrid search whose query embedding fails (an embeddings
        API that is down) ranks by BM25 alone and says so in ``degraded``."""
        if mode not in MODES:
            raise ValueError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        depth = max(self.candidates, k)
        vector: list[tuple[str, float]] = []
        keyword: list[tuple[str, float]] = []
        pending: Future[list[tuple[str, float]]] | None = None
        degraded = None
        if mode in ("hybrid", "bm25"):
            pending = _KEYWORD_POOL.submit(self.store.keyword_search, tokenize(query), depth, where)
        if mode in ("hybrid", "vector"):
            if self.embedder is None:
                raise ValueError("vector search needs an embedder")
            try:
                query_vector = self.embedder.embed_query(query)
            except Exception as exc:
                if mode == "vector":
                    raise
                log.warning("query embedding failed, ranking by BM25 alone: %s", exc)
                degraded = f"the query could not be embedded ({exc}); ranked by BM25 alone"
                mode = "bm25"
            else:
                vector = self.store.vector_search(query_vector, depth, where)
        if pending is not None:
            keyword = pending.result()
        if mode == "vector":
            ranked = vector
        elif mode == "bm25":
            ranked = keyword
        else:
            ranked = self.fusion.fuse(keyword, vector)
        rerank_ms, chunks = None, None
        if self.reranker is not None and ranked:
            ranked = ranked[: max(self.rerank_candidates, k)]
            chunks = self.store.get_chunks([chunk_id for chunk_id, _ in ranked])
            ranked = [pair for pair in ranked if pair[0] in chunks]
            started = time.perf_counter()
            try:
                order = self.reranker.rerank(query, [chunks[c].text for c, _ in ranked])
            except RerankError as exc:
                log.warning("reranking failed, keeping the search's order: %s", exc)
                degraded = "; ".join(filter(None, (degraded, f"{exc}; kept the search's order")))
            else:
                ranked = [(ranked[index][0], score) for index, score in order]
            rerank_ms = round((time.perf_counter() - started) * 1000, 2)
        ranked = ranked[:k]
        if chunks is None:
            chunks = self.store.get_chunks([chunk_id for chunk_id, _ in ranked])
        vector_scores = dict(vector)
        bm25_scores = dict(keyword)
        results = SearchResults(
            SearchHit(
                chunk=chunks[chunk_id],
                score=score,
                rank=rank,
                vector_score=vector_scores.get(chunk_id),
                bm25_score=bm25_scores.get(chunk_id),
            )
            for rank, (chunk_id, score) in enumerate(ranked, start=1)
            if chunk_id in chunks
        )
        results.degraded = degraded
        results.rerank_ms = rerank_ms
        return results
