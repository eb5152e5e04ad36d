"""Choosing a knowledge base's fusion from its own chunks, without labels.

The pseudo-queries follow the inverse cloze task (Lee et al., 2019, "Latent Retrieval for
Weakly Supervised Open Domain Question Answering"): a sentence taken out of a sampled chunk
is the query, and the rest of that chunk is the passage it should find, so neither BM25 nor
the vectors can win by matching the sentence itself. Each query is ranked in memory over a
random sample of the knowledge base (BM25 as the stores score it, with the same choice of
query terms; cosine over the stored vectors), every candidate :class:`Fusion` of the two
rankings is scored by MRR@10, and the best one replaces the default only when it beats it by
``MIN_GAIN``. A knowledge base that yields fewer than ``MIN_QUERIES`` pseudo-queries keeps
the default (:data:`~streamrag.retrieve.fusion.DEFAULT_FUSION`).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np

from streamrag.embed import Embedder
from streamrag.ingest.chunker import split_sentences
from streamrag.records import Chunk, indexed_text
from streamrag.retrieve.fusion import DEFAULT_FUSION, Fusion, Ranking
from streamrag.retrieve.tokenize import tokenize
from streamrag.store import Store
from streamrag.store.base import BM25_B, BM25_K1, rarest_terms

POOL_CHUNKS = 2000  # the sample ranked against
QUERIES = 200
MIN_QUERIES = 50
MIN_QUERY_TERMS = 4  # a pseudo-query, and what is left of its chunk, has at least this many
MIN_GAIN = 0.01
DEPTH = 50  # candidates per ranking, as Retriever reads them
RETUNE_GROWTH = 0.25  # an ingest that changes the chunk count by this share tunes again

CANDIDATES: tuple[Fusion, ...] = (
    DEFAULT_FUSION,
    Fusion("rrf"),
    *(Fusion("weighted", weight) for weight in (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0)),
)


@dataclass(frozen=True, slots=True)
class Tuning:
    """A knowledge base's chosen fusion and the evidence for it: every candidate's MRR@10
    on ``queries`` pseudo-queries, made when it held ``chunks`` chunks."""

    fusion: Fusion
    queries: int
    chunks: int
    scores: dict[str, float]  # str(candidate) -> MRR@10

    def __str__(self) -> str:
        if self.queries < MIN_QUERIES:
            return f"{self.fusion} (default: too few chunks to tune)"
        default = self.scores[str(DEFAULT_FUSION)]
        if self.fusion == DEFAULT_FUSION:
            return f"{self.fusion} (tuned: MRR {default:.3f} on {self.queries} pseudo-queries)"
        mrr = self.scores[str(self.fusion)]
        return (
            f"{self.fusion} (tuned: MRR {mrr:.3f} vs {default:.3f} for {DEFAULT_FUSION}"
            f" on {self.queries} pseudo-queries)"
        )

    def to_json(self) -> str:
        fields = asdict(self)
        fields["fusion"] = json.loads(self.fusion.to_json())
        return json.dumps(fields, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Tuning:
        fields = json.loads(text)
        return cls(**{**fields, "fusion": Fusion(**fields["fusion"])})

    def is_stale(self, chunks: int) -> bool:
        """Whether a knowledge base now holding ``chunks`` chunks should be tuned again."""
        return abs(chunks - self.chunks) >= RETUNE_GROWTH * max(self.chunks, 1)


def describe(stored: str | None) -> str:
    """A stored tuning (JSON, or None before any) as ``kb list`` shows it."""
    return str(Tuning.from_json(stored)) if stored else f"{DEFAULT_FUSION} (default: not tuned)"


def tune(store: Store, embedder: Embedder, *, seed: int = 0) -> Tuning:
    """Choose the fusion for ``store``'s chunks (see the module)."""
    rng = random.Random(seed)
    pool, chunks = _sample(store, rng)
    made = (query for chunk in pool if (query := _pseudo_query(chunk, rng)) is not None)
    queries = list(itertools.islice(made, QUERIES))
    if len(queries) < MIN_QUERIES:
        return Tuning(DEFAULT_FUSION, len(queries), chunks, {})
    index = {chunk.chunk_id: place for place, chunk in enumerate(pool)}
    stored = store.get_vectors(list(index))
    matrix = np.stack([stored[chunk.chunk_id] for chunk in pool])
    bm25 = _MemoryBM25({chunk.chunk_id: tokenize(chunk.indexed_text) for chunk in pool})
    rests = embedder.embed_documents([rest for _, _, rest in queries])
    reciprocal = dict.fromkeys(map(str, CANDIDATES), 0.0)
    for (chunk_id, query, rest), rest_vector in zip(queries, rests, strict=True):
        gold = index[chunk_id]
        keyword = bm25.search(tokenize(query), gold, tokenize(rest))
        query_vector = embedder.embed_query(query)
        similarity = matrix @ query_vector
        similarity[gold] = float(rest_vector @ query_vector)
        top = np.argsort(-similarity)[:DEPTH]
        vector = [(pool[i].chunk_id, float(similarity[i])) for i in top]
        for fusion in CANDIDATES:
            ranked = [cid for cid, _ in fusion.fuse(keyword, vector)[:10]]
            if chunk_id in ranked:
                reciprocal[str(fusion)] += 1 / (ranked.index(chunk_id) + 1)
    scores = {name: round(total / len(queries), 4) for name, total in reciprocal.items()}
    best = max(CANDIDATES, key=lambda fusion: scores[str(fusion)])
    if scores[str(best)] < scores[str(DEFAULT_FUSION)] + MIN_GAIN:
        best = DEFAULT_FUSION
    return Tuning(best, len(queries), chunks, scores)


def _sample(store: Store, rng: random.Random) -> tuple[list[Chunk], int]:
    """A uniform sample of ``POOL_CHUNKS`` chunks (reservoir sampling) and the chunk count."""
    pool: list[Chunk] = []
    seen = 0
    for batch in store.iter_chunks():
        for chunk in batch:
            seen += 1
            if len(pool) < POOL_CHUNKS:
                pool.append(chunk)
            elif (slot := rng.randrange(seen)) < POOL_CHUNKS:
                pool[slot] = chunk
    rng.shuffle(pool)
    return pool, seen


def _pseudo_query(chunk: Chunk, rng: random.Random) -> tuple[str, str, str] | None:
    """``(chunk id, a sentence of it, the chunk's indexed text without it)``, or None for a
    chunk without a sentence that leaves enough behind."""
    spans = split_sentences(chunk.text)
    rng.shuffle(spans)
    for start, end in spans:
        sentence = chunk.text[start:end].strip()
        rest = chunk.text[:start] + chunk.text[end:]
        if len(tokenize(sentence)) >= MIN_QUERY_TERMS and len(tokenize(rest)) >= MIN_QUERY_TERMS:
            return chunk.chunk_id, sentence, indexed_text(chunk.title, chunk.headings, rest)
    return None


class _MemoryBM25:
    """BM25 over a few thousand chunks' terms, scored as FTS5's ``bm25()`` scores."""

    def __init__(self, documents: dict[str, list[str]]) -> None:
        self.ids = list(documents)
        self.counts = [Counter(terms) for terms in documents.values()]
        self.lengths = [len(terms) for terms in documents.values()]
        self.average = sum(self.lengths) / max(len(documents), 1)
        self.frequency: Counter[str] = Counter()
        self.postings: dict[str, list[int]] = {}
        for place, counts in enumerate(self.counts):
            self.frequency.update(counts.keys())
            for term in counts:
                self.postings.setdefault(term, []).append(place)

    def search(self, query: list[str], gold: int, gold_terms: list[str]) -> Ranking:
        """The best ``DEPTH`` chunks for ``query``, the chunk in place ``gold`` holding
        ``gold_terms`` instead of its own."""
        n = len(self.counts)
        terms = rarest_terms(set(query) & self.frequency.keys(), self.frequency, n)
        gold_counts, gold_length = Counter(gold_terms), len(gold_terms)
        scores: dict[int, float] = {}
        for term in terms:
            df = self.frequency[term]
            idf = max(math.log((n - df + 0.5) / (df + 0.5)), 1e-6)
            for place in self.postings[term]:
                if place != gold:
                    scores[place] = scores.get(place, 0.0) + idf * self._saturate(
                        self.counts[place][term], self.lengths[place]
                    )
            if gold_counts[term]:
                scores[gold] = scores.get(gold, 0.0) + idf * self._saturate(
                    gold_counts[term], gold_length
                )
        best = sorted(scores.items(), key=lambda item: -item[1])[:DEPTH]
        return [(self.ids[place], score) for place, score in best]

    def _saturate(self, tf: int, length: int) -> float:
        saturation = BM25_K1 * (1 - BM25_B + BM25_B * length / self.average)
        return tf * (BM25_K1 + 1) / (tf + saturation)
